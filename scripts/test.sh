#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need when it is missing
# (Debian packages; run as root): promtool, from the `prometheus` package, checks a
# real /metrics scrape; PostgreSQL, Redis, MariaDB and dnsmasq are the real servers
# the protocol health checks are tested against (tests/health_protocols.rs starts
# its own instances on loopback ports); dig (`dnsutils`) and dnsperf query DNS
# through UDP services (tests/udp_flows.rs); openssl (s_server backends with their
# own certificates, s_client) and curl route TLS by server name through l4lb
# (tests/sni.rs). tests/transparent.rs builds network
# namespaces (`ip` from iproute2, `sysctl` from procps), lets
# scripts/transparent-setup.sh add its nftables rule, counts marked packets with
# nft, and drops capabilities with capsh (`libcap2-bin`). Extra arguments go to
# `cargo test`. bird2, socat, curl, nftables and iproute2 run the ECMP lab
# (tests/ecmp_lab.rs runs scripts/ecmp_lab.sh: network namespaces, a BGP router and
# three l4lb instances). systemd-socket-activate (`systemd`) passes sockets to l4lb
# the way a socket unit does (tests/systemd.rs). Headless Chromium (`chromium`) loads
# the admin endpoint's stats page (tests/stats_page.rs); zsh and fish check the
# completion scripts (tests/manual.rs); groff (`groff-base`) renders the man page.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
has promtool || missing+=(prometheus)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
has redis-server || missing+=(redis-server)
has mariadbd || missing+=(mariadb-server)
has dnsmasq || missing+=(dnsmasq)
has dig || missing+=(dnsutils)
has dnsperf || missing+=(dnsperf)
has ip || missing+=(iproute2)
has sysctl || missing+=(procps)
has nft || missing+=(nftables)
has capsh || missing+=(libcap2-bin)
has openssl || missing+=(openssl)
has curl || missing+=(curl)
has bird || missing+=(bird2)
has socat || missing+=(socat)
has systemd-socket-activate || missing+=(systemd)
has chromium || missing+=(chromium)
has zsh || missing+=(zsh)
has fish || missing+=(fish)
has groff || missing+=(groff-base)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo test --locked "$@"
