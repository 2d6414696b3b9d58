#!/usr/bin/env bash
# Bulk TCP throughput with iperf3, direct and through l4lb, on loopback.
# Usage: scripts/throughput.sh [seconds-per-run]   (default 5)
# Builds l4lb in release mode, starts an iperf3 server and an l4lb in front of it,
# runs 1 and 4 parallel streams each way, prints Gbit/s and the l4lb/direct ratio,
# and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
command -v iperf3 >/dev/null || { apt-get update -qq && apt-get install -y -qq iperf3; }
cargo build --release --quiet

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

backend_port=15201
lb_port=15202
iperf3 -s -B 127.0.0.1 -p "$backend_port" >/dev/null 2>&1 &
pids+=($!)
cat >"$work/lb.toml" <<TOML
[[service]]
name = "iperf"
listen = "127.0.0.1:$lb_port"
[[service.backend]]
address = "127.0.0.1:$backend_port"
TOML
RUST_LOG=warn ./target/release/l4lb run "$work/lb.toml" &
pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$lb_port) 2>/dev/null && break; sleep 0.05; done
sleep 0.5

gbits() { # port streams
  iperf3 -c 127.0.0.1 -p "$1" -P "$2" -t "$secs" -J \
    | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
printf '| streams | direct Gbit/s | l4lb Gbit/s | l4lb/direct |\n|---|---|---|---|\n'
for streams in 1 4; do
  direct=$(gbits "$backend_port" "$streams"); sleep 1
  through=$(gbits "$lb_port" "$streams"); sleep 1
  ratio=$(python3 -c "print('%.2f' % ($through/$direct))")
  printf '| %s | %s | %s | %s |\n' "$streams" "$direct" "$through" "$ratio"
done
