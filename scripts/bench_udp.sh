#!/usr/bin/env bash
# UDP round trips per second through l4lb and nginx's stream UDP proxy, next to
# direct: scripts/bench.sh with every other metric skipped (same environment
# variables: ROUNDS, DURATION, KEEP).
set -euo pipefail
SKIP=bulk1,bulk4,connect,rr,mem exec "$(dirname "$0")/bench.sh" "$@"
