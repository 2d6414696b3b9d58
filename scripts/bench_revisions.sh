#!/usr/bin/env bash
# Before/after benchmark of l4lb builds: what each change bought.
#
# Usage: scripts/bench_revisions.sh REV [REV...]
#   REV is any git revision (commit, tag, HEAD~2); the working tree itself is
#   "WORKTREE". Each is built (release) once into the work directory.
#   env ROUNDS=3     interleaved rounds (every build, then HAProxy and nginx,
#                    again...); medians are reported
#       DURATION=4   seconds per timed run
#       SKIP=        comma list of metrics to skip: bulk1, bulk4, connect, rr, udp
#       KEEP=1       keep the work directory
#
# Metrics are those of scripts/bench.sh (same load generator and arguments),
# without the memory row. Next to each rate it reports the CPU time the
# balancer used per operation (user + system, summed over its processes, from
# /proc/PID/stat), which moves much less than rates on a shared machine: per
# request for rr and udp, per connection for connect, per GB relayed for bulk.
# Prints one markdown table: per metric, each build's median, its ratio to the
# first build, and HAProxy's and nginx's medians for reference. Needs the
# tools bench.sh needs (run it once to install them). Every process it starts
# is stopped by PID; every run is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-4}"
SKIP="${SKIP:-}"
die() { echo "bench_revisions.sh: $*" >&2; exit 1; }
[ "$#" -ge 1 ] || die "usage: scripts/bench_revisions.sh REV [REV...]"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer"
for tool in haproxy nginx iperf3 python3 timeout git; do
  command -v "$tool" >/dev/null 2>&1 || die "missing $tool (scripts/bench.sh installs it)"
done
stream_so=/usr/lib/nginx/modules/ngx_stream_module.so
[ -f "$stream_so" ] || die "missing $stream_so (scripts/bench.sh installs it)"
want() { [[ ",$SKIP," != *",$1,"* ]]; }

work=$(mktemp -d /tmp/bench-revs.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for tree in "$work"/tree-*; do
    [ -d "$tree" ] && git worktree remove --force "$tree" >/dev/null 2>&1 || true
  done
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT

# --- builds -------------------------------------------------------------------
target_dir="$work/target"
labels=()
for rev in "$@"; do
  i=${#labels[@]}
  if [ "$rev" = WORKTREE ]; then
    src=.
    label="worktree"
  else
    git rev-parse --verify --quiet "$rev^{commit}" >/dev/null || die "unknown revision $rev"
    src="$work/tree-$i"
    git worktree add --detach "$src" "$rev" >/dev/null 2>&1
    label=$(git log -1 --format=%h "$rev")
  fi
  echo "building $label" >&2
  (cd "$src" && CARGO_TARGET_DIR="$target_dir" cargo build --release --quiet --locked)
  cp "$target_dir/release/l4lb" "$work/l4lb-$i"
  labels+=("$label")
done
cargo build --release --quiet --example loadgen
cp "${CARGO_TARGET_DIR:-target}/release/examples/loadgen" "$work/loadgen"
loadgen="$work/loadgen"

# --- backends and balancers ---------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
b_iperf=$(free_port); b_tcp=$(free_port); b_udp=$(free_port)
iperf3 -s -B 127.0.0.1 -p "$b_iperf" >"$work/iperf3.log" 2>&1 & pids+=($!)
"$loadgen" echo-server --listen "127.0.0.1:$b_tcp" --tcp 2>"$work/echo-tcp.log" & pids+=($!)
"$loadgen" echo-server --listen "127.0.0.1:$b_udp" --udp 2>"$work/echo-udp.log" & pids+=($!)

targets=()
declare -A tcp_port iperf_port udp_port procs
for i in "${!labels[@]}"; do
  t="l4lb-$i"
  tcp_port[$t]=$(free_port); iperf_port[$t]=$(free_port); udp_port[$t]=$(free_port)
  cat >"$work/$t.toml" <<EOF
[global]
workers = 2
shutdown_grace = "2s"
[[service]]
name = "echo"
listen = "127.0.0.1:${tcp_port[$t]}"
[[service.backend]]
address = "127.0.0.1:$b_tcp"
[[service]]
name = "iperf"
listen = "127.0.0.1:${iperf_port[$t]}"
[[service.backend]]
address = "127.0.0.1:$b_iperf"
[[service]]
name = "udp-echo"
protocol = "udp"
listen = "127.0.0.1:${udp_port[$t]}"
idle_timeout = "1h"
[[service.backend]]
address = "127.0.0.1:$b_udp"
EOF
  "$work/l4lb-$i" --log-level warn run "$work/$t.toml" >"$work/$t.log" 2>&1 & pids+=($!)
  procs[$t]=$!
  targets+=("$t")
done

t=haproxy
tcp_port[$t]=$(free_port); iperf_port[$t]=$(free_port)
cat >"$work/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn 9000
defaults
    mode tcp
    timeout connect 3s
    timeout client 1h
    timeout server 1h
listen echo
    bind 127.0.0.1:${tcp_port[$t]}
    server s1 127.0.0.1:$b_tcp
listen iperf
    bind 127.0.0.1:${iperf_port[$t]}
    server s1 127.0.0.1:$b_iperf
EOF
haproxy -W -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 & pids+=($!)
procs[$t]=$!
targets+=(haproxy)

t=nginx
tcp_port[$t]=$(free_port); iperf_port[$t]=$(free_port); udp_port[$t]=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<EOF
load_module $stream_so;
worker_processes 2;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 20000; }
stream {
    proxy_timeout 1h;
    proxy_connect_timeout 3s;
    upstream echo { server 127.0.0.1:$b_tcp; }
    server { listen 127.0.0.1:${tcp_port[$t]}; proxy_pass echo; }
    upstream iperf { server 127.0.0.1:$b_iperf; }
    server { listen 127.0.0.1:${iperf_port[$t]}; proxy_pass iperf; }
    upstream udp_echo { server 127.0.0.1:$b_udp; }
    server { listen 127.0.0.1:${udp_port[$t]} udp; proxy_pass udp_echo; }
}
EOF
nginx -p "$work/nginx/" -c "$work/nginx.conf" -e "$work/nginx-error.log" >"$work/nginx.log" 2>&1 & pids+=($!)
procs[$t]=$!
targets+=(nginx)
sleep 2

# CPU ticks (user + system) of a process and all its descendants.
cpu_ticks() {
  python3 - "$1" <<'PY'
import os, sys
root = sys.argv[1]
kids = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    kids.setdefault(stat[1], []).append((pid, int(stat[11]) + int(stat[12])))
def total(pid):
    own = 0
    try:
        stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        own = int(stat[11]) + int(stat[12])
    except OSError:
        pass
    return own + sum(total(child) for child, _ in kids.get(pid, []))
print(total(root))
PY
}

results="$work/results.jsonl"
: >"$results"
# record METRIC TARGET VALUE CPU_SECONDS OPS [P99]
record() {
  printf '{"metric":"%s","target":"%s","value":%s,"cpu_s":%s,"ops":%s,"p99":%s}\n' \
    "$1" "$2" "$3" "$4" "$5" "${6:-null}" >>"$results"
  echo "  $1 $2: $3 (cpu ${4}s for $5 ops)" >&2
}
hz=$(getconf CLK_TCK)

run_one() { # metric target
  local metric=$1 t=$2 c0 c1 out value ops p99=null
  c0=$(cpu_ticks "${procs[$t]}")
  case "$metric" in
    bulk1 | bulk4)
      out=$(timeout $((DURATION + 30)) iperf3 -c 127.0.0.1 -p "${iperf_port[$t]}" \
        -P "${metric#bulk}" -t "$DURATION" -J) || return 0
      value=$(jq '.end.sum_received.bits_per_second / 1e9' <<<"$out")
      ops=$(jq '.end.sum_received.bytes / 1e9' <<<"$out") ;;
    connect | rr | udp)
      local args
      case "$metric" in
        connect) args=(tcp-connect --target "127.0.0.1:${tcp_port[$t]}" --concurrency 32) ;;
        rr) args=(tcp-pingpong --target "127.0.0.1:${tcp_port[$t]}" --connections 32 --size 64) ;;
        udp) args=(udp-pingpong --target "127.0.0.1:${udp_port[$t]}" --clients 32 --size 64) ;;
      esac
      out=$(timeout $((DURATION + 30)) "$loadgen" "${args[@]}" --duration "$DURATION" \
        2>>"$work/loadgen.log" | tail -n1) || return 0
      value=$(jq '.ops_per_sec' <<<"$out")
      ops=$(jq '.ops' <<<"$out")
      p99=$(jq '.p99_us' <<<"$out") ;;
  esac
  c1=$(cpu_ticks "${procs[$t]}")
  record "$metric" "$t" "$value" "$(python3 -c "print(($c1 - $c0) / $hz)")" "$ops" "$p99"
}

metrics=()
for m in bulk1 bulk4 connect rr udp; do want "$m" && metrics+=("$m"); done
for r in $(seq "$ROUNDS"); do
  echo "round $r" >&2
  for m in "${metrics[@]}"; do
    for t in "${targets[@]}"; do
      [ "$m" = udp ] && [ "$t" = haproxy ] && continue
      run_one "$m" "$t"
    done
  done
done

# --- table --------------------------------------------------------------------
python3 - "$results" "${labels[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
labels = sys.argv[2:]
builds = [f"l4lb-{i}" for i in range(len(labels))]
units = {"bulk1": ("bulk, 1 stream", "Gbit/s", "CPU s per GB", 1),
         "bulk4": ("bulk, 4 streams", "Gbit/s", "CPU s per GB", 1),
         "connect": ("short connections", "conn/s", "CPU µs per connection", 1e6),
         "rr": ("request/response", "req/s", "CPU µs per request", 1e6),
         "udp": ("UDP round trips", "round trips/s", "CPU µs per round trip", 1e6)}
def med(metric, target, key):
    vals = [r[key] for r in rows if r["metric"] == metric and r["target"] == target
            and r[key] is not None]
    return statistics.median(vals) if vals else None
def cpu(metric, target):
    vals = [r["cpu_s"] / r["ops"] * units[metric][3] for r in rows
            if r["metric"] == metric and r["target"] == target and r["ops"]]
    return statistics.median(vals) if vals else None
def fmt(x):
    return "n/a" if x is None else (f"{x:.2f}" if x < 100 else f"{x:.0f}")
print("| metric | " + " | ".join(labels) + " | HAProxy | nginx |")
print("|---|" + "---:|" * (len(labels) + 2))
for metric in [m for m in units if any(r["metric"] == m for r in rows)]:
    name, unit, cpu_unit, _ = units[metric]
    base = med(metric, builds[0], "value")
    cells = []
    for b in builds:
        v = med(metric, b, "value")
        ratio = f" ({v / base:.2f}×)" if v and base and b != builds[0] else ""
        cells.append(fmt(v) + ratio)
    print(f"| {name} ({unit}) | " + " | ".join(cells) +
          f" | {fmt(med(metric, 'haproxy', 'value'))} | {fmt(med(metric, 'nginx', 'value'))} |")
    base = cpu(metric, builds[0])
    cells = []
    for b in builds:
        c = cpu(metric, b)
        ratio = f" ({c / base:.2f}×)" if c and base and b != builds[0] else ""
        cells.append(fmt(c) + ratio)
    print(f"| {name}: {cpu_unit} | " + " | ".join(cells) +
          f" | {fmt(cpu(metric, 'haproxy'))} | {fmt(cpu(metric, 'nginx'))} |")
    if metric in ("rr", "udp"):
        print(f"| {name}: p99 (µs) | " + " | ".join(fmt(med(metric, b, 'p99')) for b in builds) +
              f" | {fmt(med(metric, 'haproxy', 'p99'))} | {fmt(med(metric, 'nginx', 'p99'))} |")
print()
print(f"Medians of the rounds; ratios in parentheses are to the first build ({labels[0]}).")
PY
