#!/usr/bin/env bash
# Sets up the return path that l4lb's `source = "client"` needs, in the network
# namespace this script runs in. Run as root; no arguments; safe to run again
# (every step replaces what an earlier run made instead of adding a copy).
#
# Why: with source = "client", l4lb connects to a backend from the client's
# address. The backend answers to that address, and its route back to the
# clients must go through this host. Here the answer's destination is not a
# local address, so the kernel would forward it (or drop it). This script makes
# it deliver such packets locally, to l4lb's socket:
#   1. a packet that belongs to a transparent socket (the nftables `socket
#      transparent` match; iptables `-m socket --transparent`) gets firewall
#      mark $L4LB_TPROXY_MARK;
#   2. `ip rule fwmark $L4LB_TPROXY_MARK lookup $L4LB_TPROXY_TABLE` sends marked
#      packets to a routing table that has one route:
#   3. `local 0.0.0.0/0 dev lo` (and `local ::/0`): every destination is local.
# IPv4 and IPv6 both. Nothing else is routed differently.
#
# Environment (optional):
#   L4LB_TPROXY_MARK    firewall mark for the return path (default 1). A service's
#                       own `mark` must differ from it: a backend connection
#                       carrying it would be routed to this host itself.
#   L4LB_TPROXY_TABLE   routing table number (default 100)
#
# Installs nftables (Debian) when neither nft nor iptables is present.
set -euo pipefail

mark=${L4LB_TPROXY_MARK:-1}
table=${L4LB_TPROXY_TABLE:-100}
case $mark in '' | *[!0-9]*) echo "error: L4LB_TPROXY_MARK must be a decimal number, got '$mark'" >&2; exit 1 ;; esac
case $table in '' | *[!0-9]*) echo "error: L4LB_TPROXY_TABLE must be a decimal number, got '$table'" >&2; exit 1 ;; esac
if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root (it changes routing rules and the firewall)" >&2
  exit 1
fi

has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
if ! has nft && ! has iptables; then
  if ! has apt-get; then
    echo "error: neither nft nor iptables is installed; install nftables" >&2
    exit 1
  fi
  echo "installing: nftables" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"

# The local routes go through lo (down in a namespace just made).
ip link set lo up

# Policy routing, for each family: one rule (older copies removed first) and
# the local route of the table.
for family in -4 -6; do
  for _ in $(seq 1 100); do
    ip "$family" rule del fwmark "$mark" lookup "$table" 2>/dev/null || break
  done
  ip "$family" rule add fwmark "$mark" lookup "$table"
done
ip -4 route replace local 0.0.0.0/0 dev lo table "$table"
ip -6 route replace local ::/0 dev lo table "$table"

# The socket rule: an nftables table of its own, rebuilt whole each time.
if has nft; then
  nft -f - <<NFT
table inet l4lb_transparent
delete table inet l4lb_transparent
table inet l4lb_transparent {
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    socket transparent 1 meta mark set $mark accept
  }
}
NFT
  echo "nftables: table inet l4lb_transparent marks packets of transparent sockets with $mark"
else
  for tool in iptables ip6tables; do
    rule=(PREROUTING -m socket --transparent -j MARK --set-mark "$mark")
    "$tool" -t mangle -C "${rule[@]}" 2>/dev/null || "$tool" -t mangle -A "${rule[@]}"
  done
  echo "iptables: mangle PREROUTING marks packets of transparent sockets with $mark"
fi
echo "policy routing: fwmark $mark -> table $table (local 0.0.0.0/0 and ::/0 dev lo)"
