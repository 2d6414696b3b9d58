#!/usr/bin/env bash
# Smoke test with the tools operators use: a release l4lb in front of real socat
# echo servers (TCP and UDP) and an iperf3 server, checked with nc, curl and iperf3.
# Prints what it measured; exits non-zero on any failure; stops everything it
# started (by PID). Installs socat, netcat-openbsd, iperf3 and curl when missing.
# Usage: scripts/smoke.sh [iperf-seconds]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-3}"

missing=()
for tool in socat:socat nc:netcat-openbsd iperf3:iperf3 curl:curl; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cargo build --release --quiet

work=$(mktemp -d)
pids=()
cleanup() {
  # Children first (socat forks one per client), then the processes started here.
  for pid in "${pids[@]}"; do pkill -TERM -P "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$work/l4lb.log" ] && tail -20 "$work/l4lb.log" >&2; exit 1; }

# Below the kernel's ephemeral port range (32768-60999), so no outgoing
# connection can be holding one of these ports.
base=$((15000 + RANDOM % 15000))
tcp_backend=$base; udp_backend=$((base + 1)); iperf_backend=$((base + 2))
tcp_front=$((base + 10)); udp_front=$((base + 11)); iperf_front=$((base + 12)); admin=$((base + 13))

socat TCP-LISTEN:$tcp_backend,bind=127.0.0.1,reuseaddr,fork EXEC:cat &
pids+=($!)
socat -T5 UDP-LISTEN:$udp_backend,bind=127.0.0.1,reuseaddr,fork EXEC:cat &
pids+=($!)
iperf3 -s -B 127.0.0.1 -p $iperf_backend >/dev/null 2>&1 &
pids+=($!)

cat >"$work/lb.toml" <<TOML
[admin]
listen = "127.0.0.1:$admin"

[[service]]
name = "tcp-echo"
listen = "127.0.0.1:$tcp_front"
[service.health]
interval = "500ms"
timeout = "250ms"
[[service.backend]]
address = "127.0.0.1:$tcp_backend"

[[service]]
name = "udp-echo"
protocol = "udp"
listen = "127.0.0.1:$udp_front"
idle_timeout = "5s"
[[service.backend]]
address = "127.0.0.1:$udp_backend"

[[service]]
name = "iperf"
listen = "127.0.0.1:$iperf_front"
[[service.backend]]
address = "127.0.0.1:$iperf_backend"
TOML
./target/release/l4lb check "$work/lb.toml" >/dev/null || fail "l4lb check rejected the smoke config"
./target/release/l4lb run "$work/lb.toml" 2>"$work/l4lb.log" &
lb_pid=$!
pids+=($lb_pid)
for _ in $(seq 200); do
  curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null 2>&1 && break
  sleep 0.05
done
curl -sf "http://127.0.0.1:$admin/healthz" | grep -qx ok || fail "/healthz did not answer ok"

# TCP: nc sends a line, half-closes, and must read the same line back.
reply=$(printf 'hello over tcp\n' | timeout 10 nc -N 127.0.0.1 $tcp_front) || fail "nc tcp"
[ "$reply" = "hello over tcp" ] || fail "tcp echo returned '$reply'"
echo "tcp  nc round trip through l4lb: ok"

# UDP: several datagrams from one nc client come back through the same flow.
reply=$( (printf 'ping-1\n'; sleep 0.3; printf 'ping-2\n'; sleep 0.5) | timeout 10 nc -u -w1 127.0.0.1 $udp_front) || true
[ "$reply" = $'ping-1\nping-2' ] || fail "udp echo returned '$reply'"
reply=$(printf 'socat datagram' | timeout 10 socat -T2 - UDP:127.0.0.1:$udp_front) || fail "socat udp"
[ "$reply" = "socat datagram" ] || fail "socat udp echo returned '$reply'"
echo "udp  nc and socat round trips through l4lb: ok"

# Bulk throughput, one stream, through l4lb.
gbits=$(iperf3 -c 127.0.0.1 -p $iperf_front -t "$secs" -J \
  | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))') \
  || fail "iperf3 through l4lb"
echo "iperf3 through l4lb: $gbits Gbit/s"

metrics=$(curl -sf "http://127.0.0.1:$admin/metrics") || fail "/metrics"
grep -q '^l4lb_connections_total{backend="127.0.0.1:'$tcp_backend'",service="tcp-echo"} 1$' <<<"$metrics" \
  || fail "metrics do not show the tcp connection"
grep -q '^l4lb_udp_datagrams_total{backend="127.0.0.1:'$udp_backend'",direction="upstream",service="udp-echo"} 3$' <<<"$metrics" \
  || fail "metrics do not show the 3 udp datagrams"
echo "metrics: tcp connection and udp datagrams counted"

kill -TERM $lb_pid
for _ in $(seq 200); do kill -0 $lb_pid 2>/dev/null || break; sleep 0.05; done
if kill -0 $lb_pid 2>/dev/null; then fail "l4lb did not stop on SIGTERM"; fi
wait $lb_pid || fail "l4lb exited non-zero"
echo "SIGTERM: clean exit"
echo "smoke: all checks passed"
