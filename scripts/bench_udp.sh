#!/usr/bin/env bash
# UDP round trips on loopback: direct to an echo backend, through l4lb, and
# through nginx's stream UDP proxy, with the same backend and the same client.
#
# Usage: scripts/bench_udp.sh
#   env ROUNDS=3     interleaved rounds (direct, l4lb, nginx), at least 3
#       DURATION=5   seconds per run
#       CLIENTS=32   UDP sockets (one flow each) per run, 64-byte datagrams
#       KEEP=1       keep the work directory (configs, logs, raw JSON) at exit
#
# Installs nginx and its stream module (Debian: nginx, libnginx-mod-stream) when
# missing, without starting the system service. Builds the release l4lb and the
# loadgen example (honours CARGO_TARGET_DIR). Starts one `loadgen echo-server
# --udp`, an l4lb (workers = 2, one udp service, idle_timeout 30s) and a private
# nginx (worker_processes 2, proxy_responses 1, its own prefix, config, pid file
# and logs), runs `loadgen udp-pingpong` against each in turn with 1 s pauses,
# then prints a markdown table of medians and the l4lb/nginx and l4lb/direct
# ratios, plus l4lb's UDP counters. Everything it started is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
CLIENTS="${CLIENTS:-32}"
SIZE=64
[ "$ROUNDS" -ge 3 ] || { echo "ROUNDS must be at least 3" >&2; exit 2; }

# --- nginx with the stream module ---------------------------------------------
stream_so=/usr/lib/nginx/modules/ngx_stream_module.so
if ! command -v nginx >/dev/null 2>&1 || [ ! -f "$stream_so" ]; then
  echo "installing nginx and libnginx-mod-stream" >&2
  apt-get update -qq
  # policy-rc.d exit 101 keeps the package from starting the system service.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  install_rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    nginx libnginx-mod-stream >/dev/null || install_rc=$?
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  [ "$install_rc" -eq 0 ] || exit "$install_rc"
  # Belt and braces: a system nginx that the install started anyway is stopped.
  if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
    kill -QUIT "$(cat /run/nginx.pid)" || true
  fi
fi
[ -f "$stream_so" ] || { echo "missing $stream_so" >&2; exit 1; }

# --- build --------------------------------------------------------------------
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet
cargo build --release --quiet --example loadgen
l4lb="$target_dir/release/l4lb"
loadgen="$target_dir/release/examples/loadgen"

# --- processes, cleanup -------------------------------------------------------
work=$(mktemp -d /tmp/bench_udp.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ] || [ "${KEEP:-0}" = 1 ]; then
    echo "work directory kept: $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# Free loopback ports: backend (udp), l4lb (udp), nginx (udp), l4lb admin (tcp).
read -r backend_port lb_port nginx_port admin_port < <(python3 - <<'PY'
import socket
held = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
held.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
for s in held:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in held))
PY
)

"$loadgen" echo-server --listen "127.0.0.1:$backend_port" --udp 2>"$work/echo.log" &
pids+=($!)

cat >"$work/lb.toml" <<TOML
[admin]
listen = "127.0.0.1:$admin_port"

[global]
workers = 2

[[service]]
name = "udp-echo"
protocol = "udp"
listen = "127.0.0.1:$lb_port"
idle_timeout = "30s"

[[service.backend]]
address = "127.0.0.1:$backend_port"
TOML
"$l4lb" --log-level warn run "$work/lb.toml" 2>"$work/l4lb.log" &
pids+=($!)

cat >"$work/nginx.conf" <<CONF
load_module $stream_so;
worker_processes 2;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
stream {
    upstream u { server 127.0.0.1:$backend_port; }
    server {
        listen 127.0.0.1:$nginx_port udp;
        proxy_pass u;
        proxy_responses 1;
        proxy_timeout 30s;
    }
}
CONF
nginx -q -t -p "$work/" -c "$work/nginx.conf" -e "$work/nginx-error.log"
nginx -p "$work/" -c "$work/nginx.conf" -e "$work/nginx-error.log" &
pids+=($!)

declare -A port=([direct]=$backend_port [l4lb]=$lb_port [nginx]=$nginx_port)

# Waits until a target echoes (up to ~10 s).
wait_ready() {
  local name=$1 out
  for _ in $(seq 50); do
    out=$("$loadgen" udp-pingpong --target "127.0.0.1:${port[$name]}" \
      --clients 1 --duration 0.2 --size "$SIZE" 2>/dev/null) || true
    case "$out" in *'"ops":0,'* | '') sleep 0.2 ;; *) return 0 ;; esac
  done
  echo "$name on port ${port[$name]} never answered" >&2
  exit 1
}
for name in direct l4lb nginx; do wait_ready "$name"; done

# --- measure ------------------------------------------------------------------
results="$work/results.jsonl"
for round in $(seq "$ROUNDS"); do
  for name in direct l4lb nginx; do
    json=$("$loadgen" udp-pingpong --target "127.0.0.1:${port[$name]}" \
      --clients "$CLIENTS" --duration "$DURATION" --size "$SIZE" 2>/dev/null)
    printf '{"label":"%s","round":%d,"run":%s}\n' "$name" "$round" "$json" >>"$results"
    echo "round $round $name: $json" >&2
    sleep 1
  done
done

# --- report -------------------------------------------------------------------
echo
echo "UDP ping-pong, $CLIENTS clients x ${SIZE}-byte datagrams, ${DURATION}s x $ROUNDS interleaved rounds (medians):"
echo
python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
med = {}
print("| target | round trips/s | p50 µs | p99 µs | lost (sum) | errors (sum) |")
print("|---|---:|---:|---:|---:|---:|")
for name in ("direct", "l4lb", "nginx"):
    rs = [r["run"] for r in runs if r["label"] == name]
    m = {k: statistics.median(r[k] for r in rs) for k in ("ops_per_sec", "p50_us", "p99_us")}
    med[name] = m
    lost = sum(r["lost"] for r in rs)
    errors = sum(r["errors"] for r in rs)
    print(f"| {name} | {m['ops_per_sec']:.0f} | {m['p50_us']:.0f} | {m['p99_us']:.0f} | {lost} | {errors} |")
print()
print("| ratio | round trips/s | p50 | p99 |")
print("|---|---:|---:|---:|")
for other in ("nginx", "direct"):
    a, b = med["l4lb"], med[other]
    cells = [a[k] / b[k] if b[k] else float("nan") for k in ("ops_per_sec", "p50_us", "p99_us")]
    print(f"| l4lb/{other} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
PY

echo
echo "l4lb UDP counters after the runs:"
python3 - "$admin_port" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
for line in body.splitlines():
    if line.startswith(("l4lb_udp_", "l4lb_backend_connect_failures")):
        print("  " + line)
PY
warnings=$(grep -c . "$work/l4lb.log" || true)
echo "l4lb log lines at warn or above: $warnings"
[ "$warnings" -eq 0 ] || sed -n '1,10p' "$work/l4lb.log"
nginx_errors=$(grep -c . "$work/nginx-error.log" 2>/dev/null || true)
echo "nginx error_log lines: ${nginx_errors:-0}"
