#!/usr/bin/env bash
# Soak test on loopback: a release l4lb (least_connections, health checks every
# 200ms) in front of two echo backends carries CONNECTIONS persistent ping-pong
# connections for DURATION seconds. Midway, one backend is killed and restarted
# on the same port, and l4lb is reloaded with SIGHUP. Then it checks:
#   - the load generator's errors (I/O errors and wrong replies) are at most the
#     number of sessions on the killed backend: those open when it was killed,
#     plus those that reached it while it was dying;
#   - every l4lb_active_connections series is back to 0;
#   - l4lb_config_reloads_total{result="success"} is 1;
#   - l4lb's RSS after the run (settled 2 s) is within 10% + 8 MiB of before,
#     "before" being after a 2 s warm-up at the same concurrency (see below).
# Prints the figures as a table; exits non-zero when a check fails. Everything it
# starts is stopped by PID on exit. Honours CARGO_TARGET_DIR.
#
# Usage: [DURATION=10] [CONNECTIONS=5000] scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-5000}"
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || { echo "DURATION must be a whole number of seconds" >&2; exit 2; }
[[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ ]] || { echo "CONNECTIONS must be a positive integer" >&2; exit 2; }

# Each proxied connection costs l4lb 2 fds, the load generator 1 and a backend 1.
ulimit -n 20000 || { echo "cannot raise the open-file limit to 20000" >&2; exit 2; }
if [ $((CONNECTIONS * 2 + 100)) -gt 20000 ]; then
  echo "CONNECTIONS=$CONNECTIONS needs more than 20000 fds in l4lb" >&2
  exit 2
fi

if ! command -v curl >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl >/dev/null
fi
cargo build --release --quiet
cargo build --release --quiet --example loadgen
target="${CARGO_TARGET_DIR:-target}"
l4lb="$target/release/l4lb"
loadgen="$target/release/examples/loadgen"

work=$(mktemp -d)
backend_pids=()
lb_pid=""
gen_pid=""
cleanup() {
  local pid
  for pid in "$gen_pid" "$lb_pid" "${backend_pids[@]}"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  done
  for pid in "$gen_pid" "$lb_pid" "${backend_pids[@]}"; do
    if [ -n "$pid" ]; then wait "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  [ -f "$work/l4lb.log" ] && tail -20 "$work/l4lb.log" >&2
  exit 1
}

# Ports below the ephemeral range, so no outgoing connection can hold the killed
# backend's port when it is restarted.
low=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range)
[ "$low" -gt 12000 ] || fail "the ephemeral port range starts too low ($low)"
base=$((10000 + RANDOM % (low - 10010)))
b1=$base; b2=$((base + 1)); front=$((base + 2)); admin=$((base + 3))
metrics_url="http://127.0.0.1:$admin/metrics"

# Starts an echo backend on $1 and waits until it accepts; sets $started_pid.
start_backend() {
  "$loadgen" echo-server --listen "127.0.0.1:$1" --tcp 2>>"$work/backend-$1.log" &
  started_pid=$!
  backend_pids+=("$started_pid")
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  fail "echo backend on port $1 did not start"
}

write_config() {
  cat >"$work/lb.toml" <<TOML
[admin]
listen = "127.0.0.1:$admin"

[global]
shutdown_grace = "$1"

[[service]]
name = "soak"
listen = "127.0.0.1:$front"
strategy = "least_connections"
[service.health]
interval = "200ms"
timeout = "100ms"
[[service.backend]]
address = "127.0.0.1:$b1"
[[service.backend]]
address = "127.0.0.1:$b2"
TOML
}

# One scrape of /metrics (a few tries); the script stops if l4lb never answers.
metrics() {
  local try
  for try in 1 2 3; do
    curl -sf --max-time 5 "$metrics_url" && return 0
    sleep "0.$try"
  done
  echo "FAIL: cannot scrape $metrics_url" >&2
  return 1
}

# The value of one exact series (name with labels), or empty.
series() { metrics | awk -v s="$1" '$1 == s { print $2 }'; }

active_total() { metrics | awk '/^l4lb_active_connections\{/ { n += $2 } END { print n + 0 }'; }

# Waits (at most 20 s) until no session is open; fails if some remain.
wait_idle() {
  for _ in $(seq 200); do
    [ "$(active_total)" -eq 0 ] && return 0
    sleep 0.1
  done
  return 1
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$lb_pid/status"; }

json_field() { grep -o "\"$1\":[0-9.e+-]*" "$work/loadgen.json" | head -1 | cut -d: -f2; }

start_backend "$b1"; b1_pid=$started_pid
start_backend "$b2"
write_config "2s"
"$l4lb" check "$work/lb.toml" >/dev/null || fail "l4lb check rejected the soak config"
"$l4lb" --log-level warn run "$work/lb.toml" 2>"$work/l4lb.log" &
lb_pid=$!
for _ in $(seq 200); do
  curl -sf --max-time 1 "http://127.0.0.1:$admin/healthz" >/dev/null 2>&1 && break
  sleep 0.05
done
curl -sf --max-time 5 "http://127.0.0.1:$admin/healthz" >/dev/null || fail "l4lb did not become ready"
rss_cold=$(rss_kib)

# Warm-up at the same concurrency: freed heap memory stays mapped in the allocator
# (a high-water mark of a few KiB per peak connection, which malloc_trim would
# return), so the leak check compares against memory after the same peak.
"$loadgen" tcp-pingpong --target "127.0.0.1:$front" --connections "$CONNECTIONS" \
  --duration 2 --size 64 >/dev/null 2>"$work/warmup.log" \
  || { cat "$work/warmup.log" >&2; fail "the warm-up load failed"; }
wait_idle || fail "sessions still open after the warm-up"
sleep 2
rss_before=$(rss_kib)

"$loadgen" tcp-pingpong --target "127.0.0.1:$front" --connections "$CONNECTIONS" \
  --duration "$DURATION" --size 64 >"$work/loadgen.json" 2>"$work/loadgen.log" &
gen_pid=$!

# The run's clock starts once every connection is open.
connected=0
for _ in $(seq 1200); do
  kill -0 "$gen_pid" 2>/dev/null || break
  connected=$(active_total)
  [ "$connected" -ge "$CONNECTIONS" ] && break
  sleep 0.05
done
if [ "$connected" -lt "$CONNECTIONS" ]; then
  cat "$work/loadgen.log" >&2
  fail "the load generator opened only $connected of $CONNECTIONS connections"
fi
echo "soak: $CONNECTIONS connections open; running for ${DURATION}s"

kill_at=$(( DURATION * 3 / 10 )); [ "$kill_at" -ge 1 ] || kill_at=1
sleep "$kill_at"
# Each session on the killed backend may cost its client one error. Besides the
# sessions open at the kill, a client that reconnects at once can land on the
# dying backend (its listener completes handshakes until the kernel closes it):
# those sessions are counted from l4lb_connections_total, which counts successful
# backend connects only.
b1_series="{backend=\"127.0.0.1:$b1\",service=\"soak\"}"
on_killed=$(series "l4lb_active_connections$b1_series")
on_killed=${on_killed:-0}
connects_before=$(series "l4lb_connections_total$b1_series")
echo "soak: killing backend 127.0.0.1:$b1 with $on_killed sessions on it"
kill -KILL "$b1_pid"
wait "$b1_pid" 2>/dev/null || true
# Reaped: forget its PID so the exit trap cannot signal a reused one.
mapfile -t backend_pids < <(printf '%s\n' "${backend_pids[@]}" | grep -vx "$b1_pid")
sleep 1
landed_dying=$(( $(series "l4lb_connections_total$b1_series") - connects_before ))
allowed_errors=$(( on_killed + landed_dying ))
echo "soak: $landed_dying new sessions reached the backend while it died"
start_backend "$b1"
echo "soak: backend 127.0.0.1:$b1 restarted"

reload_at=$(( DURATION * 6 / 10 - kill_at - 1 ))
if [ "$reload_at" -gt 0 ]; then sleep "$reload_at"; fi
write_config "3s"
kill -HUP "$lb_pid"
echo "soak: SIGHUP sent (shutdown_grace 2s -> 3s)"

wait "$gen_pid" || { cat "$work/loadgen.log" >&2; fail "the load generator failed"; }
gen_pid=""
[ -s "$work/loadgen.json" ] || fail "the load generator reported nothing"

wait_idle || true
active_after=$(active_total)
reloads_ok=$(series 'l4lb_config_reloads_total{result="success"}')
reloads_failed=$(series 'l4lb_config_reloads_total{result="failure"}')
sleep 2
rss_after=$(rss_kib)
rss_limit=$(( rss_before * 11 / 10 + 8 * 1024 ))

errors=$(json_field errors)
printf '\n%-40s %s\n' "figure" "value"
printf '%-40s %s\n' \
  "connections" "$CONNECTIONS" \
  "duration (s)" "$DURATION" \
  "ops completed" "$(json_field ops)" \
  "ops/s" "$(json_field ops_per_sec)" \
  "p50 / p99 / p99.9 (us)" "$(json_field p50_us) / $(json_field p99_us) / $(json_field p999_us)" \
  "loadgen errors (I/O + wrong replies)" "$errors" \
  "sessions on the killed backend at kill" "$on_killed" \
  "sessions that reached it while it died" "$landed_dying" \
  "active connections after the run" "$active_after" \
  "reloads success / failure" "${reloads_ok:-missing} / ${reloads_failed:-missing}" \
  "l4lb RSS at start (KiB)" "$rss_cold" \
  "l4lb RSS after warm-up = before (KiB)" "$rss_before" \
  "l4lb RSS after, settled (KiB)" "$rss_after" \
  "l4lb RSS limit (KiB)" "$rss_limit"
echo

status=0
# check DESCRIPTION TEST...: runs the test command and records the outcome.
check() {
  local what=$1
  shift
  if "$@"; then echo "ok:   $what"; else echo "FAIL: $what" >&2; status=1; fi
}
check "errors ($errors) <= sessions on the killed backend ($allowed_errors)" [ "${errors:-x}" -le "$allowed_errors" ]
check "every active count back to 0" [ "$active_after" -eq 0 ]
check "exactly one successful reload" [ "${reloads_ok:-0}" = 1 ]
check "RSS after ($rss_after KiB) <= $rss_limit KiB" [ "$rss_after" -le "$rss_limit" ]
[ "$status" -eq 0 ] || { tail -20 "$work/l4lb.log" >&2; exit 1; }
echo "soak: all checks passed"
