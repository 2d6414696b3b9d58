#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need when it is missing
# (Debian packages; run as root): promtool, from the `prometheus` package, checks a
# real /metrics scrape; dnsmasq, dig (`dnsutils`) and dnsperf serve and query DNS
# through UDP services. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq)
command -v dig >/dev/null 2>&1 || missing+=(dnsutils)
command -v dnsperf >/dev/null 2>&1 || missing+=(dnsperf)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo test --locked "$@"
