#!/usr/bin/env bash
# Measures how long l4lb's active health checks take to notice a backend that dies
# (detection) and one that comes back (recovery), with the real binary and a real
# backend process on loopback.
# Usage: scripts/health_timeline.sh [interval] [fall] [rise]   (defaults: 1s 3 2)
# Prints the measured times next to the bounds the health model predicts, and stops
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
interval="${1:-1s}"; fall="${2:-3}"; rise="${3:-2}"
cargo build --release --quiet

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

backend_port=15301
lb_port=15302
start_backend() {
  python3 -m http.server "$backend_port" --bind 127.0.0.1 >/dev/null 2>&1 &
  backend_pid=$!
  pids+=("$backend_pid")
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$backend_port) 2>/dev/null && return; sleep 0.05; done
  echo "backend did not start" >&2; exit 1
}
now() { date +%s.%N; }
# Waits until the l4lb log has its Nth line containing $1; prints the time it appeared.
wait_log() {
  local pattern=$1 count=$2
  for _ in $(seq 1200); do
    if [ "$(grep -c "$pattern" "$work/l4lb.log" || true)" -ge "$count" ]; then now; return; fi
    sleep 0.01
  done
  echo "timed out waiting for: $pattern" >&2; exit 1
}

cat >"$work/lb.toml" <<TOML
[[service]]
name = "web"
listen = "127.0.0.1:$lb_port"
[service.health]
interval = "$interval"
timeout = "500ms"
fall = $fall
rise = $rise
[[service.backend]]
address = "127.0.0.1:$backend_port"
TOML
start_backend
./target/release/l4lb --log-format json run "$work/lb.toml" 2>"$work/l4lb.log" &
pids+=($!)
wait_log '"message":"health probes started"' 1 >/dev/null
sleep 2

killed=$(now); kill "$backend_pid"
down=$(wait_log '"message":"backend down"' 1)
sleep 1
started=$(now); start_backend
up=$(wait_log '"message":"backend up"' 1)

python3 - "$interval" "$fall" "$rise" "$killed" "$down" "$started" "$up" <<'PY'
import re, sys
interval_text, fall, rise, killed, down, started, up = sys.argv[1:]
units = {"ms": 0.001, "s": 1.0, "m": 60.0}
value, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", interval_text).groups()
interval = float(value) * units[unit]
fall, rise = int(fall), int(rise)
detection, recovery = float(down) - float(killed), float(up) - float(started)
print(f"| interval {interval_text}, fall {fall}, rise {rise} | measured | health model |")
print("|---|---|---|")
print(f"| detection (kill -> marked down) | {detection:.2f} s | "
      f"{(fall - 1) * interval * 0.9:.2f}..{fall * interval * 1.1:.2f} s (about fall x interval) |")
print(f"| recovery (restart -> marked up) | {recovery:.2f} s | "
      f"{(rise - 1) * interval * 0.9:.2f}..{rise * interval * 1.1:.2f} s (about rise x interval) |")
PY
