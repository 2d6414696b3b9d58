#!/usr/bin/env bash
# Several l4lb instances behind ECMP with BGP, on one machine, in network namespaces.
#
#   clients (200 addresses) ── router (BIRD, ECMP) ──┬── lb1 (l4lb + BIRD, VIP on lo) ──┐
#                                                     ├── lb2                           ├── router ── backends
#                                                     └── lb3                           ┘
#
# Every l4lb instance has the service address (VIP 10.100.0.1) on its loopback,
# and its own BIRD announces the VIP to the router over BGP (BFD, 1 s keepalive,
# 3 s hold) only while l4lb's `GET /ready` answers 200: a small health loop
# here polls /ready every 200 ms and enables or disables BIRD's static VIP
# route (`birdc enable|disable vip`). The router's BIRD merges the equal routes
# into one multipath kernel route (`merge paths on`), and the kernel spreads
# flows by their L4 hash (fib_multipath_hash_policy=1). By default the router
# also pins each established flow to the instance it first reached (conntrack
# mark -> policy route), as a stateful Linux router or resilient-hashing switch
# does; `--plain-ecmp` leaves that out, so a change of the nexthop set rehashes
# flows in flight.
#
# What it shows, with numbers (and fails, exit 1, when one does not hold):
#   A. flows from 200 client addresses spread over the three instances, and
#      every client reaches the same backend through every instance (maglev
#      and source_hash services);
#   B. SIGKILL of one instance: time until the router drops its route, open
#      sessions lost (only the killed instance's), new connections succeed;
#   C. SIGTERM of one instance: /ready says 503 first, the route goes while the
#      listeners still accept (drain_delay), no connection is lost;
#   D. an instance whose backends are all unreachable withdraws itself.
#
# Usage: scripts/ecmp_lab.sh [--plain-ecmp]      (root; bird2, socat, curl, iproute2, nftables)
# L4LB_BIN=path uses that l4lb binary (default: builds target/release/l4lb);
# LAB_KEEP_LOGS=dir copies the lab's files (configs, logs, results) there at the end.
# Every namespace, veth and process it creates is named l4ecmp-*; all are removed
# on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

PINNED=1
[ "${1:-}" = "--plain-ecmp" ] && PINNED=0
P=l4ecmp
VIP=10.100.0.1
LBS=(1 2 3)
CLIENTS=200
SESSIONS=30

fail() { echo "FAIL: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }
LAB_START=$(now_ms)
note() { echo "== [$(( ($(now_ms) - LAB_START) / 1000 )) s] $*"; }

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for tool in bird birdc socat curl ip nft; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] ||
    { echo "SKIP: $tool is not installed (apt-get install -y bird2 socat curl iproute2 nftables)"; exit 77; }
done
export PATH="$PATH:/usr/sbin"

L4LB=${L4LB_BIN:-}
if [ -z "$L4LB" ]; then
  cargo build --release --locked --bin l4lb >&2
  L4LB=target/release/l4lb
fi
L4LB=$(realpath "$L4LB")

WORK=$(mktemp -d /tmp/l4ecmp.XXXXXX)
NAMESPACES=("$P-rtr" "$P-be" "$P-cli" "$P-lb1" "$P-lb2" "$P-lb3")

# Ends every process still running inside this lab's namespaces, then deletes
# the namespaces (their veths go with them).
remove_namespaces() {
  for ns in "${NAMESPACES[@]}"; do
    if ip netns list | grep -qw "$ns"; then
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
      ip netns del "$ns"
    fi
  done
}

# Removes what this script created, by name: its processes (by recorded PID,
# then anything still running inside its namespaces), then the namespaces
# (their veths go with them).
cleanup() {
  set +e
  for pidfile in "$WORK"/*.pid; do
    [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null
  done
  remove_namespaces
  [ -n "${LAB_KEEP_LOGS:-}" ] && cp -r "$WORK" "$LAB_KEEP_LOGS"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
remove_namespaces # left over by a run that was killed (SIGKILL skips the trap)
mkdir -p "$WORK"

in_ns() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }

# --- network -----------------------------------------------------------------
link() { # link NS_A IF_A ADDR_A NS_B IF_B ADDR_B
  ip link add "$2" netns "$P-$1" type veth peer name "$5" netns "$P-$4"
  in_ns "$1" ip addr add "$3" dev "$2"; in_ns "$1" ip link set "$2" up
  in_ns "$4" ip addr add "$6" dev "$5"; in_ns "$4" ip link set "$5" up
}

build_network() {
  for ns in "${NAMESPACES[@]}"; do
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  done
  in_ns rtr sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1
  for n in "${LBS[@]}"; do
    link rtr "$P-r$n" "10.99.$n.1/24" "lb$n" "$P-l$n" "10.99.$n.2/24"
    in_ns "lb$n" ip route add default via "10.99.$n.1"
    in_ns "lb$n" ip addr add "$VIP/32" dev lo
  done
  link rtr "$P-rb" 10.98.0.254/24 be "$P-b" 10.98.0.1/24
  in_ns be ip addr add 10.98.0.2/24 dev "$P-b"
  in_ns be ip addr add 10.98.0.3/24 dev "$P-b"
  in_ns be ip route add default via 10.98.0.254
  link rtr "$P-rc" 10.200.0.254/24 cli "$P-c" 10.200.0.1/24
  for i in $(seq 2 "$CLIENTS"); do in_ns cli ip addr add "10.200.0.$i/24" dev "$P-c"; done
  in_ns cli ip route add default via 10.200.0.254
  [ "$PINNED" -eq 1 ] && pin_flows
  return 0
}

# Established flows to the VIP keep the instance their first packet was routed
# to: the nexthop is saved in the conntrack mark, and marked packets follow a
# per-instance policy route instead of the ECMP route.
pin_flows() {
  local map=""
  for n in "${LBS[@]}"; do
    map+="10.99.$n.2 : $n, "
    in_ns rtr ip route add "$VIP/32" via "10.99.$n.2" table "10$n"
    in_ns rtr ip rule add fwmark "$n" table "10$n" pref 100
  done
  in_ns rtr nft -f - <<EOF
table ip l4ecmp_pin {
  chain pre { type filter hook prerouting priority mangle; ip daddr $VIP meta mark set ct mark; }
  chain post {
    type filter hook postrouting priority mangle;
    ip daddr $VIP ct state new ct mark set rt ip nexthop map { ${map%, } };
  }
}
EOF
}

# --- BIRD ------------------------------------------------------------------------
router_bird_conf() {
  cat <<EOF
router id 10.99.0.1;
protocol device { scan time 1; }
# Equal BGP routes to the VIP become one multipath kernel route.
protocol kernel { ipv4 { import none; export all; }; merge paths on; }
protocol bfd { interface "$P-r*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
template bgp lb {
  local as 65000;
  hold time 3; keepalive time 1; connect retry time 1; connect delay time 1;
  bfd on;
  ipv4 { import where net = $VIP/32; export none; };
}
EOF
  for n in "${LBS[@]}"; do echo "protocol bgp lb$n from lb { neighbor 10.99.$n.2 as 65001; }"; done
}

lb_bird_conf() {
  local n=$1
  cat <<EOF
router id 10.99.$n.2;
protocol device { scan time 1; }
# The VIP route exists only while l4lb's /ready says 200 (the health loop enables it).
protocol static vip { disabled; ipv4; route $VIP/32 blackhole; }
protocol bfd { interface "$P-l$n" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
protocol bgp uplink {
  local as 65001; neighbor 10.99.$n.1 as 65000;
  hold time 3; keepalive time 1; connect retry time 1; connect delay time 1;
  bfd on;
  ipv4 { import none; export where proto = "vip"; };
}
EOF
}

start_birds() {
  router_bird_conf > "$WORK/rtr.bird.conf"
  in_ns rtr bird -c "$WORK/rtr.bird.conf" -s "$WORK/rtr.ctl" -P "$WORK/bird-rtr.pid"
  for n in "${LBS[@]}"; do
    lb_bird_conf "$n" > "$WORK/lb$n.bird.conf"
    in_ns "lb$n" bird -c "$WORK/lb$n.bird.conf" -s "$WORK/lb$n.ctl" -P "$WORK/bird-lb$n.pid"
  done
}

# --- l4lb, backends, health loops ----------------------------------------------
l4lb_conf() {
  cat <<EOF
[admin]
listen = "127.0.0.1:9100"

[global]
drain_delay = "5s"
shutdown_grace = "15s"
EOF
  for svc in maglev:7000 source_hash:7001; do
    cat <<EOF

[[service]]
name = "${svc%:*}"
listen = "0.0.0.0:${svc#*:}"
strategy = "${svc%:*}"
hash_key = "source_ip"
access_log = "errors"

[service.health]
interval = "200ms"
timeout = "100ms"
rise = 1
fall = 2
EOF
    for b in 1 2 3; do printf '\n[[service.backend]]\naddress = "10.98.0.%s:8000"\n' "$b"; done
  done
}

start_l4lb() {
  local n=$1
  # Not through in_ns: $! must be l4lb itself (ip netns exec execs it), for kill.
  ip netns exec "$P-lb$n" "$L4LB" run "$WORK/l4lb.toml" >>"$WORK/l4lb-lb$n.log" 2>&1 &
  echo $! > "$WORK/l4lb-lb$n.pid"; disown $!
}

# Each backend answers "bN <l4lb instance address>" and then echoes.
start_backends() {
  for b in 1 2 3; do
    ip netns exec "$P-be" socat -t 5 TCP-LISTEN:8000,bind=10.98.0.$b,fork,reuseaddr,backlog=1024 \
      SYSTEM:"echo b$b \$SOCAT_PEERADDR; exec cat" 2>/dev/null &
    echo $! > "$WORK/backend-$b.pid"; disown $!
  done
}

# Announces lbN's VIP route while its /ready is 200, withdraws it otherwise.
health_loop() {
  local n=$1 state=down want
  for ((i = 0; i < 100000; i++)); do
    if in_ns "lb$n" curl -sf -m 1 -o /dev/null http://127.0.0.1:9100/ready; then want=up; else want=down; fi
    if [ "$want" != "$state" ]; then
      local verb=disable
      [ "$want" = up ] && verb=enable
      if birdc -s "$WORK/lb$n.ctl" "$verb" vip >/dev/null 2>&1; then
        state=$want
        echo "$(now_ms) lb$n $want" >> "$WORK/health.log"
      fi
    fi
    sleep 0.2
  done
}

start_health_loops() {
  for n in "${LBS[@]}"; do
    health_loop "$n" &
    echo $! > "$WORK/health-lb$n.pid"; disown $!
  done
}

# --- observing -------------------------------------------------------------------
# The instances the router's VIP route leads to (ECMP route, main table).
nexthops() { in_ns rtr ip -o route show "$VIP/32" | grep -o 'via 10\.99\.[0-9]*\.2' | awk '{print $2}' | sort | tr '\n' ' '; }

# Waits (at most $2 s) until the route leads to exactly the instances "$1".
wait_nexthops() {
  local want=$1 limit=$(( $2 * 20 ))
  for ((i = 0; i < limit; i++)); do
    [ "$(nexthops)" = "$want" ] && return 0
    sleep 0.05
  done
  fail "router's VIP route leads to '$(nexthops)', expected '$want' (health: $(tr '\n' ';' < "$WORK/health.log" 2>/dev/null))"
}

lb_addrs() { local s=""; for n in "$@"; do s+="10.99.$n.2 "; done; echo "$s"; }

# One short connection per client index on stdin, from 10.200.0.<index> to
# $1:$2, 32 at a time; prints "<index> <backend> <instance>" or "<index> FAIL <why>".
probe() {
  local dst=$1 port=$2
  in_ns cli env DST="$dst" PORT="$port" xargs -P 32 -I{} bash -c '
    r=$(socat -t 5 -T 5 - TCP:$DST:$PORT,bind=10.200.0.{},connect-timeout=5 </dev/null 2>&1 | head -1)
    case $r in b[0-9]*) echo "{} $r" ;; *) echo "{} FAIL ${r:-no reply}" ;; esac' | sort -n
}

all_clients() { seq 1 "$CLIENTS"; }

# A session from 10.200.0.$1 to the VIP sending $LINES lines, one per 100 ms;
# it survived when every line came back.
start_session() {
  local i=$1 out=$2
  in_ns cli bash -c "for n in \$(seq 1 $LINES); do echo p\$n; sleep 0.1; done |
    socat -t 5 -T 5 - TCP:$VIP:7000,bind=10.200.0.$i,connect-timeout=5 > $out 2>/dev/null" &
  echo $! > "$out.pid"; disown $!
}

# Prints "<sessions> <on instance $1> <lost on $1> <lost elsewhere>" once all
# sessions under $2 have ended (at most 20 s).
session_report() {
  local victim=$1 dir=$2 total=0 on=0 lost_on=0 lost_else=0
  for pidfile in "$dir"/*.pid; do
    for ((i = 0; i < 200; i++)); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
  done
  for out in "$dir"/s*; do
    [[ $out == *.pid ]] && continue
    total=$((total + 1))
    local instance; instance=$(head -1 "$out" | awk '{print $2}')
    local survived=0; [ "$(tail -1 "$out")" = "p$LINES" ] && survived=1
    if [ "$instance" = "10.99.$victim.2" ]; then
      on=$((on + 1)); [ $survived -eq 1 ] || lost_on=$((lost_on + 1))
    else
      [ $survived -eq 1 ] || lost_else=$((lost_else + 1))
    fi
  done
  echo "$total $on $lost_on $lost_else"
}

start_sessions() { # start_sessions DIR FIRST_CLIENT
  mkdir -p "$1"
  for i in $(seq "$2" $(($2 + SESSIONS - 1))); do start_session "$i" "$1/s$i"; done
  sleep 1.5
}

# --- the lab ------------------------------------------------------------------
note "building namespaces (router pins established flows: $([ $PINNED -eq 1 ] && echo yes || echo 'no, plain ECMP'))"
build_network
l4lb_conf > "$WORK/l4lb.toml"
"$L4LB" check "$WORK/l4lb.toml" >/dev/null
start_backends
start_birds
for n in "${LBS[@]}"; do start_l4lb "$n"; done
start_health_loops
started=$(now_ms)
wait_nexthops "$(lb_addrs 1 2 3)" 30
note "all three instances announced and in the router's ECMP route after $(( $(now_ms) - started )) ms:"
in_ns rtr ip route show "$VIP/32" | sed 's/^/   /'

note "A. 200 client addresses through the VIP"
probe "$VIP" 7000 < <(all_clients) > "$WORK/a-vip"
failed=$(grep -c FAIL "$WORK/a-vip" || true)
[ "$failed" -eq 0 ] || fail "$failed of $CLIENTS connections through the VIP failed"
spread=""
for n in "${LBS[@]}"; do
  count=$(awk -v ip="10.99.$n.2" '$3 == ip' "$WORK/a-vip" | wc -l)
  [ "$count" -ge 20 ] || fail "instance lb$n served only $count of $CLIENTS clients"
  spread+="lb$n=$count "
done
echo "   spread over instances: $spread"
echo "RESULT spread $spread"
for svc in maglev:7000 source_hash:7001; do
  port=${svc#*:}
  probe "$VIP" "$port" < <(all_clients) | awk '{print $1, $2}' > "$WORK/a-$port-vip"
  same=$CLIENTS
  for n in "${LBS[@]}"; do
    probe "10.99.$n.2" "$port" < <(all_clients) | awk '{print $1, $2}' > "$WORK/a-$port-lb$n"
    differ=$(paste -d' ' "$WORK/a-$port-vip" "$WORK/a-$port-lb$n" | awk '$2 != $4 || $2 == "FAIL"' | wc -l)
    [ "$differ" -eq 0 ] || fail "${svc%:*}: $differ clients reached another backend through lb$n than through the VIP"
  done
  backends=$(awk '{print $2}' "$WORK/a-$port-vip" | sort | uniq -c | awk '{printf "%s=%s ", $2, $1}')
  echo "   ${svc%:*}: $same/$CLIENTS clients reach the same backend through lb1, lb2, lb3 and the VIP ($backends)"
  echo "RESULT same_backend ${svc%:*} $same/$CLIENTS"
done

note "B. SIGKILL lb3 with $SESSIONS sessions open"
LINES=60
start_sessions "$WORK/b" 1
killed=$(now_ms)
kill -9 "$(cat "$WORK/l4lb-lb3.pid")"
echo "$killed lb3 SIGKILL" >> "$WORK/health.log"
wait_nexthops "$(lb_addrs 1 2)" 10
failover=$(( $(now_ms) - killed ))
detected=$(( $(awk '$2 == "lb3" && $3 == "down" {t = $1} END {print t}' "$WORK/health.log") - killed ))
probe "$VIP" 7000 < <(all_clients) > "$WORK/b-after"
failed=$(grep -c FAIL "$WORK/b-after" || true)
read -r total on lost_on lost_else < <(session_report 3 "$WORK/b")
echo "   route withdrawn ${failover} ms after SIGKILL (the health loop saw /ready fail after ${detected} ms); then $((CLIENTS - failed))/$CLIENTS new connections succeeded"
echo "   open sessions: $total, $on on lb3: lost $lost_on on lb3, $lost_else on the others"
echo "RESULT sigkill failover_ms=$failover detected_ms=$detected new_failed=$failed sessions=$total on_killed=$on lost_on_killed=$lost_on lost_elsewhere=$lost_else"
[ "$failed" -eq 0 ] || fail "$failed new connections failed after lb3's route was withdrawn"
[ "$failover" -le 5000 ] || fail "lb3's route took ${failover} ms to go"
if [ "$PINNED" -eq 1 ]; then
  [ "$lost_else" -eq 0 ] || fail "$lost_else sessions on surviving instances were lost"
fi
start_l4lb 3
wait_nexthops "$(lb_addrs 1 2 3)" 20

note "C. SIGTERM lb2 (drain_delay 5s) with $SESSIONS sessions open and a stream of new connections"
LINES=100  # 10 s: they outlive the drain delay and finish while lb2 drains
start_sessions "$WORK/c" 31
touch "$WORK/stream.run"
in_ns cli bash -c "for ((k = 0; k < 3000; k++)); do
    [ -f $WORK/stream.run ] || break
    i=\$(( k % $CLIENTS + 1 ))
    r=\$(socat -t 5 -T 5 - TCP:$VIP:7000,bind=10.200.0.\$i,connect-timeout=5 </dev/null 2>/dev/null | head -1)
    echo \"\$i \${r:-FAIL}\"
  done" > "$WORK/c-stream" &
echo $! > "$WORK/stream.pid"; disown $!
sleep 0.5
termed=$(now_ms)
kill -TERM "$(cat "$WORK/l4lb-lb2.pid")"
wait_nexthops "$(lb_addrs 1 3)" 10
withdrawn=$(( $(now_ms) - termed ))
# The route is gone, the listener must still accept (drain_delay).
reply=$(in_ns cli socat -t 5 -T 5 - TCP:10.99.2.2:7000,bind=10.200.0.$CLIENTS,connect-timeout=5 </dev/null 2>/dev/null | head -1 || true)
ready=$(in_ns lb2 curl -s -o /dev/null -w '%{http_code}' -m 1 http://127.0.0.1:9100/ready || true)
for ((i = 0; i < 400; i++)); do kill -0 "$(cat "$WORK/l4lb-lb2.pid")" 2>/dev/null || break; sleep 0.05; done
kill -0 "$(cat "$WORK/l4lb-lb2.pid")" 2>/dev/null && fail "lb2 did not exit after its drain"
stopped=$(( $(now_ms) - termed ))
sleep 0.5
rm -f "$WORK/stream.run"
for ((i = 0; i < 100; i++)); do kill -0 "$(cat "$WORK/stream.pid")" 2>/dev/null || break; sleep 0.1; done
streamed=$(wc -l < "$WORK/c-stream")
stream_failed=$(grep -c FAIL "$WORK/c-stream" || true)
read -r total on lost_on lost_else < <(session_report 2 "$WORK/c")
echo "   /ready on lb2 during the drain: $ready; route withdrawn ${withdrawn} ms after SIGTERM; lb2 still accepted then: ${reply:-no}"
echo "   lb2 exited ${stopped} ms after SIGTERM; new connections during the stop: $((streamed - stream_failed))/$streamed succeeded"
echo "   open sessions: $total, $on on lb2: lost $lost_on on lb2, $lost_else on the others"
echo "RESULT sigterm withdrawn_ms=$withdrawn stream=$streamed stream_failed=$stream_failed sessions=$total on_stopped=$on lost_on_stopped=$lost_on lost_elsewhere=$lost_else"
[ "$ready" = 503 ] || fail "lb2's /ready said '$ready' while draining, expected 503"
[ -n "$reply" ] || fail "lb2 refused a connection right after its route was withdrawn (drain_delay)"
if [ "$PINNED" -eq 1 ]; then
  [ "$stream_failed" -eq 0 ] || fail "$stream_failed connections failed during a graceful stop"
  [ $((lost_on + lost_else)) -eq 0 ] || fail "$((lost_on + lost_else)) sessions were lost in a graceful stop"
  [ "$on" -gt 0 ] || fail "no session was on lb2, so the graceful stop was not exercised"
fi
start_l4lb 2
wait_nexthops "$(lb_addrs 1 2 3)" 20

note "D. lb1 loses every backend"
in_ns lb1 ip route add blackhole 10.98.0.0/24
cut=$(now_ms)
wait_nexthops "$(lb_addrs 2 3)" 10
gone=$(( $(now_ms) - cut ))
body=$(in_ns lb1 curl -s -m 1 http://127.0.0.1:9100/ready || true)
echo "   lb1's /ready: ${body%$'\n'}; route withdrawn ${gone} ms after its backends became unreachable"
in_ns lb1 ip route del blackhole 10.98.0.0/24
cut=$(now_ms)
wait_nexthops "$(lb_addrs 1 2 3)" 10
echo "   backends back: lb1 re-announced after $(( $(now_ms) - cut )) ms"
echo "RESULT all_down withdrawn_ms=$gone"
note "all checks passed"
