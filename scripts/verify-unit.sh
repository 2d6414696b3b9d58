#!/usr/bin/env bash
# Checks systemd/l4lb.service and systemd/l4lb.socket with `systemd-analyze verify`.
#
# Usage: scripts/verify-unit.sh [L4LB_BINARY]     (default: target/release/l4lb)
#
# verify insists that every Exec binary exists, so the unit is copied to a temporary
# directory with its /usr/local/bin/l4lb paths pointed at L4LB_BINARY first. Fails
# when verify exits non-zero or prints any line about the unit, and prints those lines.
# Installs systemd-analyze (Debian package `systemd`; run as root) when it is missing.
set -euo pipefail
# A given path is relative to the caller's directory, the default to the repository.
[ $# -gt 0 ] && binary=$(realpath -m -- "$1")
cd "$(dirname "$0")/.."
binary=${binary:-$(realpath -m -- target/release/l4lb)}
units=(systemd/l4lb.service systemd/l4lb.socket)

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "installing: systemd (for systemd-analyze)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
[ -x "$binary" ] || echo "warning: $binary is not an executable file; verify will say so" >&2

tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
# Escape what is special on the right-hand side of a sed substitution.
replacement=$(printf '%s' "$binary" | sed -e 's/[\\&|]/\\&/g')
for unit in "${units[@]}"; do
  sed -e "s|/usr/local/bin/l4lb|$replacement|g" "$unit" >"$tmp/${unit##*/}"
done

rc=0
output=$(systemd-analyze verify "$tmp/l4lb.service" "$tmp/l4lb.socket" 2>&1) || rc=$?
found=$(printf '%s\n' "$output" | grep -F -e 'l4lb.service' -e 'l4lb.socket' -e "$tmp" || true)

echo "systemd $(systemd-analyze --version | awk 'NR == 1 { print $2 }'), units ${units[*]}, binary $binary"
if [ -n "$found" ] || [ "$rc" -ne 0 ]; then
  echo "systemd-analyze verify failed (exit $rc):" >&2
  printf '%s\n' "${found:-$output}" >&2
  exit 1
fi
echo "systemd-analyze verify: ok"
