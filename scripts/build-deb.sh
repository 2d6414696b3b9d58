#!/usr/bin/env bash
# Builds the Debian package of l4lb with cargo-deb ([package.metadata.deb] in
# Cargo.toml): /usr/bin/l4lb, the systemd units (not enabled, not started),
# /etc/l4lb/lb.toml as a conffile, the man page and bash/zsh/fish completions.
#
# Usage: scripts/build-deb.sh        prints the path of the .deb it built
#
# Installs cargo-deb (`cargo install cargo-deb --locked --debug`, bounded to 25
# minutes) when missing: an unoptimised build of the packager takes about a
# minute here instead of about ten, and packaging one binary does not need it
# to be fast. Builds target/release/l4lb (a no-op when it is up to date), then
# has that binary write its man page and completions to target/assets/, where
# the package metadata takes them from, with the unit pointed at /usr/bin/l4lb.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "installing cargo-deb (cargo install cargo-deb --locked --debug)" >&2
  timeout 1500 cargo install cargo-deb --locked --debug --quiet
fi
cargo build --release --locked --quiet

assets=target/assets
rm -rf "$assets"
install -d "$assets/completions" "$assets/units"
target/release/l4lb manpage | gzip -9n >"$assets/l4lb.1.gz"
target/release/l4lb completions bash >"$assets/completions/l4lb"
target/release/l4lb completions zsh >"$assets/completions/_l4lb"
target/release/l4lb completions fish >"$assets/completions/l4lb.fish"
sed -e 's|/usr/local/bin/l4lb|/usr/bin/l4lb|g' systemd/l4lb.service >"$assets/units/l4lb.service"
cp systemd/l4lb.socket "$assets/units/l4lb.socket"
if grep -q /usr/local "$assets/units/l4lb.service" "$assets/units/l4lb.socket"; then
  echo "error: a packaged unit still names /usr/local" >&2
  exit 1
fi

rm -f target/debian/l4lb_*.deb
cargo deb --no-build --locked --quiet >/dev/null
deb=$(ls target/debian/l4lb_*.deb)
echo "$deb"
