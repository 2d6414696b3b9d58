#!/usr/bin/env bash
# Installs a built l4lb and its systemd unit; starts nothing.
#
# Usage: cargo build --release && sudo scripts/install.sh [BINARY]
#
#   BINARY    the l4lb to install (default: target/release/l4lb)
#   PREFIX    install prefix for the binary (default: /usr/local); the unit's
#             ExecStartPre/ExecStart are pointed at $PREFIX/bin/l4lb
#   DESTDIR   staging root for packaging (default: empty, i.e. the live system)
#
# Installs $PREFIX/bin/l4lb, /etc/systemd/system/l4lb.service (and l4lb.socket,
# not enabled) and, only when no
# config exists yet, the example lb.toml as /etc/l4lb/lb.toml (an existing config is
# never overwritten). Then runs `l4lb check` on the installed config and prints the
# systemctl commands to enable and start the service.
set -euo pipefail
# A given path is relative to the caller's directory, the default to the repository.
[ $# -gt 0 ] && binary=$(realpath -m -- "$1")
cd "$(dirname "$0")/.."
binary=${binary:-target/release/l4lb}

prefix=${PREFIX:-/usr/local}
prefix=${prefix%/}
destdir=${DESTDIR:-}
destdir=${destdir%/}

bin_path=$prefix/bin/l4lb
unit_path=/etc/systemd/system/l4lb.service
config_path=/etc/l4lb/lb.toml

if [ ! -x "$binary" ] || [ -d "$binary" ]; then
  echo "error: $binary is not an executable file; build it first: cargo build --release" >&2
  exit 1
fi

install -d -m 0755 "$destdir$prefix/bin" "$destdir${unit_path%/*}" "$destdir${config_path%/*}"
install -m 0755 "$binary" "$destdir$bin_path"
echo "installed $destdir$bin_path"

# The unit names /usr/local/bin/l4lb; follow PREFIX. Escape what sed would interpret.
tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
replacement=$(printf '%s' "$bin_path" | sed -e 's/[\\&|]/\\&/g')
sed -e "s|/usr/local/bin/l4lb|$replacement|g" systemd/l4lb.service >"$tmp/l4lb.service"
install -m 0644 "$tmp/l4lb.service" "$destdir$unit_path"
echo "installed $destdir$unit_path"
# Optional socket activation (see the README); installed, never enabled here.
install -m 0644 systemd/l4lb.socket "$destdir${unit_path%.service}.socket"
echo "installed $destdir${unit_path%.service}.socket (not enabled)"

# Readable by everyone: the service runs as a dynamic (unprivileged) user.
if [ -e "$destdir$config_path" ]; then
  echo "kept existing $destdir$config_path"
else
  install -m 0644 lb.toml "$destdir$config_path"
  echo "installed example config $destdir$config_path; edit it before starting"
fi

if ! "$destdir$bin_path" check "$destdir$config_path"; then
  echo "error: $destdir$config_path does not validate; fix it before starting l4lb" >&2
  exit 1
fi

cat <<EOF

Nothing was started. To start l4lb now and at every boot:
  systemctl daemon-reload
  systemctl enable --now l4lb
After installing a new binary under a running l4lb (no connection refused,
UDP flows kept, open sessions finish on the old process):
  systemctl daemon-reload && systemctl kill --kill-whom=main --signal=SIGUSR2 l4lb
After editing $config_path (keeps established connections):
  $bin_path check $config_path && systemctl reload l4lb
EOF
