#!/usr/bin/env bash
# The per-connection cost of routing TLS by server name: one release l4lb with
# two services in front of the same echo backend, "plain" (no routes) and
# "routed" (three routes, the clients' name matching one of them). Each client
# of examples/loadgen/ connects, sends a ClientHello naming
# bench.example.com, reads it back and closes, so both services carry the same
# bytes; the routed one also peeks at the hello, parses it and picks a route.
# Interleaved rounds; prints the median rate and l4lb's CPU time per
# connection (user + system, from /proc/PID/stat) for each, and the difference.
#   ROUNDS (default 3), DURATION seconds per run (default 5), CONCURRENCY (32).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONCURRENCY=${CONCURRENCY:-32}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet --locked
cargo build --release --quiet --locked --example loadgen
target=${CARGO_TARGET_DIR:-target}/release
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend=$(free_port); plain=$(free_port); routed=$(free_port)
"$target/examples/loadgen" echo-server --listen "127.0.0.1:$backend" --tcp 2>"$work/echo.log" & pids+=($!)
cat >"$work/lb.toml" <<EOF
[global]
workers = 1
shutdown_grace = "1s"
[[service]]
name = "plain"
listen = "127.0.0.1:$plain"
access_log = "off"
[[service.backend]]
address = "127.0.0.1:$backend"
[[service]]
name = "routed"
listen = "127.0.0.1:$routed"
access_log = "off"
[[service.route]]
sni = ["db.example.com"]
[[service.route.backend]]
address = "127.0.0.2:$backend"
[[service.route]]
sni = ["*.api.example.com"]
[[service.route.backend]]
address = "127.0.0.3:$backend"
[[service.route]]
sni = ["bench.example.com"]
[[service.route.backend]]
address = "127.0.0.1:$backend"
EOF
"$target/l4lb" --log-level warn run "$work/lb.toml" >"$work/l4lb.log" 2>&1 & pids+=($!)
lb=$!
sleep 1

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
: >"$work/results"
for r in $(seq "$ROUNDS"); do
  for svc in plain routed; do
    port=$plain; [ "$svc" = routed ] && port=$routed
    c0=$(cpu_ticks "$lb")
    out=$("$target/examples/loadgen" tcp-connect --target "127.0.0.1:$port" \
      --concurrency "$CONCURRENCY" --duration "$DURATION" --sni bench.example.com | tail -n1)
    c1=$(cpu_ticks "$lb")
    ops=$(jq '.ops' <<<"$out"); rate=$(jq '.ops_per_sec' <<<"$out")
    errors=$(jq '.errors' <<<"$out")
    echo "round $r $svc: $rate conn/s, $ops connections, $errors errors, $(( c1 - c0 )) ticks" >&2
    echo "$svc $rate $ops $(( c1 - c0 ))" >>"$work/results"
  done
done
python3 - "$work/results" "$hz" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
hz = int(sys.argv[2])
def med(svc, f):
    return statistics.median(f(r) for r in rows if r[0] == svc)
rate = {s: med(s, lambda r: float(r[1])) for s in ("plain", "routed")}
cpu = {s: med(s, lambda r: int(r[3]) / hz / max(int(r[2]), 1) * 1e6) for s in ("plain", "routed")}
print(f"{'service':8} {'conn/s':>10} {'l4lb CPU us/conn':>17}")
for s in ("plain", "routed"):
    print(f"{s:8} {rate[s]:10.0f} {cpu[s]:17.1f}")
print(f"routing by SNI: {cpu['routed'] - cpu['plain']:+.1f} us of l4lb CPU per connection "
      f"({(cpu['routed'] / cpu['plain'] - 1) * 100:+.0f}%), rate {(rate['routed'] / rate['plain'] - 1) * 100:+.0f}%")
PY
