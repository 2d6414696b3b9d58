#!/usr/bin/env bash
# Installs the Debian package on this machine, checks what it installed, then
# purges it. Run as root.
#
# Usage: scripts/test-deb.sh [DEB]   (default: builds one with scripts/build-deb.sh)
#
# Checks: dpkg -i succeeds; every file is where it belongs; /etc/l4lb/lb.toml is
# a conffile and `l4lb check` accepts it; the man page renders without a groff
# warning; the completion scripts parse (bash -n, and zsh -n / fish -n where
# those shells are installed); `systemd-analyze verify` has nothing to say about
# the installed units (as scripts/verify-unit.sh checks them); nothing was
# started. Then dpkg --purge removes every file, the conffile included.
# Refuses to run where l4lb is installed already (a package, or /etc/l4lb).
# Installs systemd (systemd-analyze), man-db and groff-base when missing.
set -euo pipefail
[ $# -gt 0 ] && deb=$(realpath -- "$1")
cd "$(dirname "$0")/.."
deb=${deb:-$(scripts/build-deb.sh)}

fail() { echo "FAIL: $*" >&2; exit 1; }
if dpkg-query -W -f='${Status}' l4lb 2>/dev/null | grep -q installed; then
  fail "the l4lb package is installed already; this script installs and purges it"
fi
[ -e /etc/l4lb ] && fail "/etc/l4lb exists (an l4lb installed by hand?); this script would take it over"
missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v man >/dev/null 2>&1 || missing+=(man-db)
command -v groff >/dev/null 2>&1 || missing+=(groff-base)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

installed=
cleanup() { [ -n "$installed" ] && dpkg --purge l4lb >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "package: $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --field "$deb" Package Version Architecture Depends
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb"
installed=yes

units=$(dpkg-query -L l4lb | grep -E '/systemd/system/l4lb\.(service|socket)$' | sort)
[ "$(printf '%s\n' "$units" | wc -l)" -eq 2 ] || fail "expected l4lb.service and l4lb.socket, got: $units"
for file in /usr/bin/l4lb /etc/l4lb/lb.toml /usr/share/man/man1/l4lb.1.gz \
  /usr/share/bash-completion/completions/l4lb /usr/share/zsh/vendor-completions/_l4lb \
  /usr/share/fish/vendor_completions.d/l4lb.fish /usr/share/doc/l4lb/dashboards/l4lb.json; do
  [ -f "$file" ] || fail "$file is not installed"
done
dpkg-query -W -f='${Conffiles}\n' l4lb | grep -q '^ /etc/l4lb/lb.toml ' || fail "/etc/l4lb/lb.toml is not a conffile"
/usr/bin/l4lb --version
/usr/bin/l4lb check /etc/l4lb/lb.toml | tail -1

warnings=$(zcat /usr/share/man/man1/l4lb.1.gz | groff -man -Tutf8 -ww -z 2>&1) || fail "groff failed: $warnings"
[ -z "$warnings" ] || fail "groff warns about the man page: $warnings"
MANPAGER=cat man -P cat l4lb 2>/dev/null | grep -q 'L4LB STATUS' || fail "man l4lb does not show the status command"
bash -n /usr/share/bash-completion/completions/l4lb || fail "bash completion does not parse"
! command -v zsh >/dev/null || zsh -n /usr/share/zsh/vendor-completions/_l4lb || fail "zsh completion does not parse"
! command -v fish >/dev/null || fish --no-execute /usr/share/fish/vendor_completions.d/l4lb.fish || fail "fish completion does not parse"
grep -q '^ExecStart=/usr/bin/l4lb run' $units || fail "the unit does not run /usr/bin/l4lb"

rc=0
# shellcheck disable=SC2086 # two paths
output=$(systemd-analyze verify $units 2>&1) || rc=$?
found=$(printf '%s\n' "$output" | grep -F -e 'l4lb.service' -e 'l4lb.socket' || true)
if [ -n "$found" ] || [ "$rc" -ne 0 ]; then
  fail "systemd-analyze verify (exit $rc): ${found:-$output}"
fi
echo "systemd-analyze verify: ok ($(printf '%s ' $units))"
if pgrep -f '^/usr/bin/l4lb ' >/dev/null; then fail "an l4lb process runs after the install (nothing should start)"; fi

dpkg --purge l4lb >/dev/null || fail "dpkg --purge l4lb"
installed=
for gone in /usr/bin/l4lb /etc/l4lb/lb.toml /usr/share/man/man1/l4lb.1.gz $units; do
  [ ! -e "$gone" ] || fail "$gone is still there after the purge"
done
echo "install, checks and purge: ok"
