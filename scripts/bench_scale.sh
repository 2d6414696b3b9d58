#!/usr/bin/env bash
# Cost at scale, on loopback: what l4lb's reload time, memory and health
# checks cost as services, backends, connections and UDP flows grow, beside
# HAProxy and nginx (stream) where they do the same job.
#
# Usage: scripts/bench_scale.sh
#   env SKIP=                comma list of sections to skip: reload, checks, idle, udp
#       SERVICE_COUNTS="10 100 1000"     services (3 backends each) for the reload rows
#       BACKEND_COUNTS="10 1000 10000"   backends in one service for the reload rows
#       RELOADS=5            reloads per configuration (the median is shown)
#       CHECK_COUNTS="1000 10000"        health-checked backends for the CPU rows
#       CPU_SECONDS=20       length of each CPU window
#       IDLE_COUNTS="1000 9000"          idle connections held for the memory rows
#       IDLE_SPLIT_COUNTS="15000"        idle connections held by two processes of each
#                            balancer sharing the listening address (see "idle")
#       UDP_FLOWS=5000       concurrent UDP flows (client sockets)
#       ROUNDS=3 DURATION=5  UDP: interleaved rounds (median shown), seconds per run
#       KEEP=1               keep the work directory (configs, logs, raw results) at exit
#
# Sections (each row of the tables):
#   reload  l4lb alone. A fresh l4lb (no health checks) with N services of 3
#           backends each (each service on its own loopback address, all on one
#           port), or one service with N backends. RSS = VmRSS once /ready says
#           200, and again after the reloads. Then RELOADS times: one backend's
#           weight changes in the file and l4lb gets SIGHUP. Reload time = from
#           l4lb's "reloading" log line (written when the signal arrives) to its
#           "configuration reloaded" line, from the lines' timestamps: reading,
#           parsing and checking the file plus applying the diff. (l4lb logs no
#           duration of its own for a reload.)
#   checks  N backends (distinct addresses 127.0.1.1, 127.0.1.2, ... on one
#           port, all served by one `loadgen echo-server` on 0.0.0.0, so a whole
#           fleet costs the backend side one listening descriptor), TCP checks
#           every 1 s (timeout 1 s, rise 2, fall 3): l4lb [service.health],
#           HAProxy `check inter 1s`. After 5 s, the balancer's CPU time
#           (all its processes) over CPU_SECONDS ÷ CPU_SECONDS, in % of one
#           core; l4lb's checks per second (l4lb_health_checks_total); failed
#           checks in the window (l4lb's counter, HAProxy's `show stat`
#           chkfail); backends up at the end; the echo listener's own CPU.
#   idle    a fresh balancer with one TCP echo service; the summed VmRSS of its
#           processes before and 2 s after a python3 holder opened N connections
#           through it (one byte echoed on each, then idle): KiB per connection.
#           A proxied connection costs the balancer 2 descriptors, and the open
#           file limit here is 20000 per process, so l4lb (one process) and
#           HAProxy (one worker) cannot hold more than about 9,900; the holder
#           and the echo backend are separate processes with their own limits.
#           So IDLE_SPLIT_COUNTS rows run two processes of each balancer on one
#           listening address (SO_REUSEPORT; the kernel spreads the connections
#           between their sockets): two l4lb instances (own admin port and
#           control socket), two HAProxy instances, and nginx's own two worker
#           processes with `listen ... reuseport`. RSS is summed over both.
#   udp     `loadgen udp-pingpong --clients UDP_FLOWS --size 64`: UDP_FLOWS
#           client sockets (distinct source ports), each with one datagram in
#           flight, direct, through l4lb (max_flows 9000, within the ~9,900
#           flows its descriptor budget allows here; idle_timeout 1h) and
#           nginx (stream udp, no proxy_responses, `listen ... udp rcvbuf=4m`:
#           the 4 MiB receive buffer l4lb asks for on its UDP listeners; with
#           the default 208 KiB nginx drops thousands of datagrams a second
#           here); a fresh balancer per run, so flows of earlier runs do not
#           pile up. Round trips/s, p50, p99, lost datagrams, the balancer's
#           CPU µs per round trip, and the CPU of the backend (a python3 echo
#           with 32 MiB socket buffers, see below; near 100% it is the
#           bottleneck).
#
# Installs haproxy, nginx and libnginx-mod-stream when missing (system services
# kept from starting), builds the release l4lb and loadgen under `nice -n 19`,
# copies them into the work directory (/tmp/bench-scale.XXXXXX), stops every
# process it started by PID at exit. Exits non-zero when any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."
me=bench_scale.sh
# shellcheck source=scripts/bench_lib.sh
. scripts/bench_lib.sh

SKIP="${SKIP:-}"
SERVICE_COUNTS="${SERVICE_COUNTS:-10 100 1000}"
BACKEND_COUNTS="${BACKEND_COUNTS:-10 1000 10000}"
RELOADS="${RELOADS:-5}"
CHECK_COUNTS="${CHECK_COUNTS:-1000 10000}"
CPU_SECONDS="${CPU_SECONDS:-20}"
IDLE_COUNTS="${IDLE_COUNTS:-1000 9000}"
IDLE_SPLIT_COUNTS="${IDLE_SPLIT_COUNTS-15000}"
UDP_FLOWS="${UDP_FLOWS:-5000}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
SECTIONS=(reload checks idle udp)

for v in RELOADS CPU_SECONDS UDP_FLOWS ROUNDS DURATION; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
for n in $SERVICE_COUNTS $BACKEND_COUNTS $CHECK_COUNTS $IDLE_COUNTS $IDLE_SPLIT_COUNTS; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "counts must be positive integers, got '$n'"
done
for n in $SERVICE_COUNTS $CHECK_COUNTS; do
  [ "$n" -le 60000 ] || die "at most 60000 services or checked backends (loopback addresses), got $n"
done
for n in $IDLE_SPLIT_COUNTS; do
  [ "$n" -le 18000 ] || die "IDLE_SPLIT_COUNTS: at most 18000 (the holder's open files), got $n"
done
[ "$UDP_FLOWS" -le 15000 ] || die "UDP_FLOWS must be at most 15000 (open files), got $UDP_FLOWS"
declare -A skip=()
IFS=, read -r -a skip_list <<<"$SKIP"
for s in "${skip_list[@]}"; do
  s="${s// /}"
  [ -n "$s" ] || continue
  case " ${SECTIONS[*]} " in *" $s "*) skip[$s]=1 ;; *) die "SKIP: unknown section '$s' (known: ${SECTIONS[*]})" ;; esac
done
want() { [ -z "${skip[$1]:-}" ]; }

bench_packages
bench_workdir bench-scale
bench_build
ulimit -n 20000 2>/dev/null || true
clk_tck=$(getconf CLK_TCK)

echo "## Machine"
echo
echo "- CPU: $(nproc) cores, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
echo "- kernel: $(uname -sr); open files limit: $(ulimit -n)"
echo "- l4lb: $("$l4lb" --version); $(haproxy -v | head -n1); $(nginx -v 2>&1)"
echo "- started: $(date '+%Y-%m-%d %H:%M:%S %Z'); load average at start: $(loadavg)"
echo

read -r -a ports <<<"$(free_ports 8)"
[ "${#ports[@]}" -eq 8 ] || die "could not find 8 free loopback ports"
read -r fleet_port b_tcp b_udp listen_port admin_port admin_port2 _ _ <<<"${ports[*]}"

"$loadgen" echo-server --listen "0.0.0.0:$fleet_port" --tcp 2>"$work/echo-fleet.log" &
pids+=($!)
fleet_pid=$!
"$loadgen" echo-server --listen "127.0.0.1:$b_tcp" --tcp 2>"$work/echo-tcp.log" &
pids+=($!)
# The UDP backend: a python3 echo whose socket buffers are 32 MiB
# (SO_RCVBUFFORCE, as root), because 5000 datagrams arriving at once overflow
# the default 208 KiB buffer of `loadgen echo-server --udp`, and each datagram
# dropped there stalls its client for loadgen's 1 s reply timeout: the rows
# would measure the backend's drops, not the balancers.
cat >"$work/udp_echo.py" <<'PY'
"""udp_echo.py PORT: echoes every datagram on 127.0.0.1:PORT to its sender."""
import socket, sys
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for plain, force in ((socket.SO_RCVBUF, SO_RCVBUFFORCE), (socket.SO_SNDBUF, SO_SNDBUFFORCE)):
    try:
        s.setsockopt(socket.SOL_SOCKET, force, 32 << 20)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, plain, 32 << 20)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("udp echo: receive buffer", s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), file=sys.stderr, flush=True)
recv, send = s.recvfrom, s.sendto
while True:
    data, peer = recv(65536)
    try:
        send(data, peer)
    except OSError:
        pass
PY
python3 "$work/udp_echo.py" "$b_udp" 2>"$work/echo-udp.log" &
pids+=($!)
udp_echo_pid=$!
wait_echo tcp "$fleet_port" 127.0.1.1
wait_echo tcp "$b_tcp"
wait_echo udp "$b_udp"

results="$work/results.jsonl"
: >"$results"
failed=0
# record SECTION JSON: appends one result line (a JSON object).
record() {
  echo "$2" >>"$results"
  echo "  $1: $2" >&2
  case "$2" in *'"ok": false'*) failed=$((failed + 1)) ;; esac
}

l4lb_head() { # FILE-NAME [ADMIN-PORT]: the [admin] and [global] tables
  printf '[admin]\nlisten = "127.0.0.1:%s"\n\n' "${2:-$admin_port}"
  printf '[global]\nworkers = 2\nshutdown_grace = "2s"\ncontrol_socket = "%s"\n' "$work/$1.sock"
}

# start_l4lb NAME LEVEL: starts l4lb on $work/NAME.toml; sets started_pid.
started_pid=
start_l4lb() {
  "$l4lb" --log-level "$2" run "$work/$1.toml" >>"$work/$1.log" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
}
start_haproxy() { # NAME (a second argument is ignored)
  haproxy -W -db -f "$work/$1.cfg" >>"$work/$1.log" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
}
start_nginx() { # NAME (a second argument is ignored)
  nginx -p "$work/nginx/" -c "$work/$1.conf" -e "$work/$1-error.log" >>"$work/$1.log" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
}

# wait_ready PID SECONDS: waits until l4lb's /ready says 200 (0 on success).
wait_ready() {
  local pid=$1 tries=$(($2 * 10))
  for _ in $(seq "$tries"); do
    alive "$pid" || return 1
    case "$(http_get "http://127.0.0.1:$admin_port/ready")" in ready*) return 0 ;; esac
    sleep 0.1
  done
  return 1
}

# --- reload time and RSS -------------------------------------------------------
# write_reload_config NAME SHAPE N WEIGHT: SHAPE services (N services of 3
# backends) or backends (one service of N backends); the first backend of the
# first service has WEIGHT.
write_reload_config() {
  local name=$1 shape=$2 n=$3 weight=$4 i j
  {
    l4lb_head "$name"
    if [ "$shape" = services ]; then
      for ((i = 0; i < n; i++)); do
        printf '\n[[service]]\nname = "s%d"\nprotocol = "tcp"\n' "$i"
        printf 'listen = "127.1.%d.%d:%s"\n' $((i / 250)) $((1 + i % 250)) "$listen_port"
        for j in 1 2 3; do
          printf '[[service.backend]]\naddress = "127.0.1.%d:%s"\n' "$j" "$fleet_port"
          if [ "$i" -eq 0 ] && [ "$j" -eq 1 ]; then printf 'weight = %s\n' "$weight"; fi
        done
      done
    else
      printf '\n[[service]]\nname = "big"\nprotocol = "tcp"\nlisten = "127.0.0.1:%s"\n' "$listen_port"
      for ((i = 0; i < n; i++)); do
        printf '[[service.backend]]\naddress = "127.0.%d.%d:%s"\n' $((1 + i / 250)) $((1 + i % 250)) "$fleet_port"
        if [ "$i" -eq 0 ]; then printf 'weight = %s\n' "$weight"; fi
      done
    fi
  } >"$work/$name.toml.tmp"
  mv "$work/$name.toml.tmp" "$work/$name.toml"
}

cat >"$work/reload_times.py" <<'PY'
"""reload_times.py LOG: the duration (ms) of each reload, from the timestamp of
each "reloading" line to that of the next "configuration reloaded" line."""
import datetime, json, sys
def ts(line):
    return datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))
start, out, refused = None, [], 0
for line in open(sys.argv[1], errors="replace"):
    if " reloading" in line and "signal" in line:
        start = ts(line)
    elif "configuration reloaded" in line and start is not None:
        out.append(round((ts(line) - start).total_seconds() * 1000, 2))
        start = None
    elif "reload refused" in line:
        refused += 1
        start = None
print(json.dumps({"times_ms": out, "refused": refused}))
PY

run_reload() { # SHAPE N
  local shape=$1 n=$2 name="reload-$1-$2" pid t0 t1 rss0 rss1 k got times ok=true
  write_reload_config "$name" "$shape" "$n" 1
  "$l4lb" check "$work/$name.toml" >/dev/null
  t0=$(date +%s.%N)
  start_l4lb "$name" info
  pid=$started_pid
  if ! wait_ready "$pid" 120; then
    record reload "{\"section\": \"reload\", \"shape\": \"$shape\", \"n\": $n, \"ok\": false, \"error\": \"not ready\"}"
    forget_pid "$pid"
    return
  fi
  t1=$(date +%s.%N)
  sleep 1
  rss0=$(tree_rss "$pid")
  for k in $(seq "$RELOADS"); do
    write_reload_config "$name" "$shape" "$n" $((k + 1))
    kill -HUP "$pid"
    got=0
    for _ in $(seq 1200); do
      got=$(grep -cE 'configuration reloaded|reload refused' "$work/$name.log" || true)
      [ "$got" -ge "$k" ] && break
      sleep 0.05
    done
    [ "$got" -ge "$k" ] || { ok=false; break; }
    sleep 0.3
  done
  sleep 1
  rss1=$(tree_rss "$pid")
  times=$(python3 "$work/reload_times.py" "$work/$name.log")
  forget_pid "$pid"
  record reload "$(python3 -c '
import json, sys
shape, n, t0, t1, rss0, rss1, times, ok = sys.argv[1:9]
d = json.loads(times)
row = {"section": "reload", "shape": shape, "n": int(n), "start_s": round(float(t1) - float(t0), 2),
       "rss_kib": int(rss0), "rss_after_kib": int(rss1), "times_ms": d["times_ms"],
       "refused": d["refused"]}
row["ok"] = ok == "true" and d["refused"] == 0 and len(d["times_ms"]) > 0
print(json.dumps(row))' "$shape" "$n" "$t0" "$t1" "$rss0" "$rss1" "$times" "$ok")"
}

# --- CPU of active checks ------------------------------------------------------
write_checks_l4lb() { # NAME N
  local name=$1 n=$2 i
  {
    l4lb_head "$name"
    printf '\n[[service]]\nname = "fleet"\nprotocol = "tcp"\nlisten = "127.0.0.1:%s"\n' "$listen_port"
    printf '[service.health]\nkind = "tcp"\ninterval = "1s"\ntimeout = "1s"\nrise = 2\nfall = 3\n'
    for ((i = 0; i < n; i++)); do
      printf '[[service.backend]]\naddress = "127.0.%d.%d:%s"\n' $((1 + i / 250)) $((1 + i % 250)) "$fleet_port"
    done
  } >"$work/$name.toml"
  "$l4lb" check "$work/$name.toml" >/dev/null
}
write_checks_haproxy() { # NAME N
  local name=$1 n=$2 i
  {
    printf 'global\n    nbthread 2\n    maxconn 20000\n    pidfile %s\n    no strict-limits\n' "$work/$name.pid"
    printf '    stats socket %s mode 600 level admin\n\n' "$work/$name.stats"
    printf 'defaults\n    mode tcp\n    balance roundrobin\n    maxconn 20000\n'
    printf '    timeout connect 3s\n    timeout client 1h\n    timeout server 1h\n    timeout check 1s\n'
    printf '\nlisten fleet\n    bind 127.0.0.1:%s\n' "$listen_port"
    for ((i = 0; i < n; i++)); do
      printf '    server f%d 127.0.%d.%d:%s check inter 1s rise 2 fall 3\n' \
        "$i" $((1 + i / 250)) $((1 + i % 250)) "$fleet_port"
    done
  } >"$work/$name.cfg"
  haproxy -q -c -f "$work/$name.cfg" >/dev/null
}

# l4lb_checks: "checks_total failures backends_up" from /metrics.
l4lb_checks() {
  http_get "http://127.0.0.1:$admin_port/metrics" | awk '
    /^l4lb_health_checks_total/ { t += $2; if ($0 !~ /result="success"/) f += $2 }
    /^l4lb_backend_up/ { u += $2 }
    END { printf "%d %d %d\n", t, f, u }'
}
# haproxy_checks NAME: "failed_checks servers_up" from `show stat`.
haproxy_checks() {
  python3 - "$work/$1.stats" <<'PY'
import csv, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
rows = list(csv.reader(data.decode().lstrip("# ").splitlines()))
head = rows[0]
ix = {k: i for i, k in enumerate(head)}
fails = up = 0
for r in rows[1:]:
    if len(r) < len(head) or r[ix["svname"]] in ("FRONTEND", "BACKEND"):
        continue
    fails += int(r[ix["chkfail"]] or 0)
    up += r[ix["status"]].startswith("UP")
print(fails, up)
PY
}

run_checks() { # KIND N
  local kind=$1 n=$2 name="checks-$1-$2" pid c0 c1 e0 e1 w0 w1 a b
  "write_checks_$kind" "$name" "$n"
  "start_$kind" "$name" warn
  pid=$started_pid
  wait_listening "$listen_port" 120
  sleep 5
  if [ "$kind" = l4lb ]; then a=$(l4lb_checks); else a=$(haproxy_checks "$name"); fi
  w0=$(date +%s.%N)
  c0=$(tree_ticks "$pid")
  e0=$(tree_ticks "$fleet_pid")
  sleep "$CPU_SECONDS"
  c1=$(tree_ticks "$pid")
  e1=$(tree_ticks "$fleet_pid")
  w1=$(date +%s.%N)
  if [ "$kind" = l4lb ]; then b=$(l4lb_checks); else b=$(haproxy_checks "$name"); fi
  forget_pid "$pid"
  record checks "$(python3 -c '
import json, sys
kind, n, c0, c1, e0, e1, w0, w1, a, b, secs, tck = sys.argv[1:13]
tck, secs = int(tck), float(secs)
a, b = [int(x) for x in a.split()], [int(x) for x in b.split()]
wall = float(w1) - float(w0)
row = {"section": "checks", "kind": kind, "n": int(n),
       "cpu_pct": round((int(c1) - int(c0)) / tck / secs * 100, 2),
       "listener_cpu_pct": round((int(e1) - int(e0)) / tck / secs * 100, 2)}
if kind == "l4lb":
    row.update(checks_per_s=round((b[0] - a[0]) / wall, 1), failed_checks=b[1] - a[1], up=b[2])
else:
    row.update(failed_checks=b[0] - a[0], up=b[1])
row["ok"] = row["up"] == int(n)
print(json.dumps(row))' "$kind" "$n" "$c0" "$c1" "$e0" "$e1" "$w0" "$w1" "$a" "$b" "$CPU_SECONDS" "$clk_tck")"
}

# --- idle memory per connection ------------------------------------------------
write_idle() { # KIND NAME [ADMIN-PORT [REUSEPORT]]
  local kind=$1 name=$2 admin=${3:-$admin_port} reuseport=${4:+ reuseport}
  case "$kind" in
    l4lb)
      {
        l4lb_head "$name" "$admin"
        printf '\n[[service]]\nname = "echo"\nprotocol = "tcp"\nlisten = "127.0.0.1:%s"\n' "$listen_port"
        printf 'strategy = "round_robin"\nidle_timeout = "1h"\n'
        printf '[[service.backend]]\naddress = "127.0.0.1:%s"\n' "$b_tcp"
      } >"$work/$name.toml"
      "$l4lb" check "$work/$name.toml" >/dev/null
      ;;
    haproxy)
      {
        printf 'global\n    nbthread 2\n    maxconn 20000\n    pidfile %s\n    no strict-limits\n\n' "$work/$name.pid"
        printf 'defaults\n    mode tcp\n    balance roundrobin\n    maxconn 20000\n'
        printf '    timeout connect 3s\n    timeout client 1h\n    timeout server 1h\n'
        printf '\nlisten echo\n    bind 127.0.0.1:%s\n    server s1 127.0.0.1:%s\n' "$listen_port" "$b_tcp"
      } >"$work/$name.cfg"
      haproxy -q -c -f "$work/$name.cfg" >/dev/null
      ;;
    nginx)
      {
        printf 'load_module %s;\nworker_processes 2;\ndaemon off;\n' "$stream_so"
        printf 'pid %s;\nerror_log %s warn;\n' "$work/$name.pid" "$work/$name-error.log"
        printf 'events { worker_connections 20000; }\n'
        printf 'stream {\n    proxy_timeout 1h;\n    proxy_connect_timeout 3s;\n'
        printf '    upstream echo { server 127.0.0.1:%s; }\n' "$b_tcp"
        printf '    server { listen 127.0.0.1:%s%s; proxy_pass echo; }\n}\n' "$listen_port" "$reuseport"
      } >"$work/$name.conf"
      nginx -q -t -p "$work/nginx/" -c "$work/$name.conf" -e "$work/$name-error.log"
      ;;
  esac
}

# start_idle KIND NAME SPLIT: starts the balancer(s) of an idle row; sets
# idle_pids. SPLIT=1: one l4lb or HAProxy process, nginx as configured;
# SPLIT=2: two l4lb or two HAProxy instances on the same listening address
# (NAME-a and NAME-b), nginx with `reuseport` on its two workers.
idle_pids=()
start_idle() {
  local kind=$1 name=$2 split=$3
  idle_pids=()
  if [ "$split" = 1 ]; then
    write_idle "$kind" "$name"
    "start_$kind" "$name" warn
    idle_pids+=("$started_pid")
  elif [ "$kind" = nginx ]; then
    write_idle nginx "$name" "$admin_port" reuseport
    start_nginx "$name"
    idle_pids+=("$started_pid")
  else
    write_idle "$kind" "$name-a" "$admin_port"
    write_idle "$kind" "$name-b" "$admin_port2"
    "start_$kind" "$name-a" warn
    idle_pids+=("$started_pid")
    wait_echo tcp "$listen_port"
    "start_$kind" "$name-b" warn
    idle_pids+=("$started_pid")
  fi
}

# sum_rss PID...: summed VmRSS (KiB) of the process trees.
sum_rss() {
  local total=0 p
  for p in "$@"; do total=$((total + $(tree_rss "$p"))); done
  echo "$total"
}

run_idle() { # KIND N SPLIT
  local kind=$1 n=$2 split=$3 name="idle-$1-$2-$3" hpid before after=0 procs=0 ready=0 err="" p
  local -a bal
  start_idle "$kind" "$name" "$split"
  bal=("${idle_pids[@]}")
  wait_echo tcp "$listen_port"
  sleep 1
  before=$(sum_rss "${bal[@]}")
  timeout 300 python3 "$work/holder.py" 127.0.0.1 "$listen_port" "$n" 240 \
    >"$work/raw/$name.out" 2>"$work/raw/$name.err" &
  hpid=$!
  pids+=("$hpid")
  for _ in $(seq 1200); do
    if grep -q '^ready' "$work/raw/$name.out"; then ready=1; break; fi
    alive "$hpid" || break
    sleep 0.1
  done
  if [ "$ready" = 1 ]; then
    sleep 2
    after=$(sum_rss "${bal[@]}")
  else
    err=$(tail -n1 "$work/raw/$name.err" | cut -c1-200)
  fi
  for p in "${bal[@]}"; do
    procs=$((procs + $(python3 "$work/proctree.py" pids "$p" | wc -w)))
  done
  forget_pid "$hpid"
  sleep 1
  for p in "${bal[@]}"; do forget_pid "$p"; done
  record idle "$(python3 -c '
import json, sys
kind, n, split, before, after, procs, ready, err = sys.argv[1:9]
row = {"section": "idle", "kind": kind, "n": int(n), "split": int(split), "before_kib": int(before),
       "after_kib": int(after), "procs": int(procs), "ok": ready == "1"}
if row["ok"]:
    row["kib_per_conn"] = round((int(after) - int(before)) / int(n), 2)
else:
    row["error"] = err
print(json.dumps(row))' "$kind" "$n" "$split" "$before" "$after" "$procs" "$ready" "$err")"
}

# --- UDP with many flows -------------------------------------------------------
run_udp() { # TARGET ROUND
  local t=$1 r=$2 name="udp-$1-$2" pid="" port c0=0 c1=0 e0 e1 rc=0 out
  case "$t" in
    direct) port=$b_udp ;;
    l4lb)
      {
        l4lb_head "$name"
        printf '\n[[service]]\nname = "udp-echo"\nprotocol = "udp"\nlisten = "127.0.0.1:%s"\n' "$listen_port"
        printf 'strategy = "round_robin"\nidle_timeout = "1h"\nmax_flows = 9000\n'
        printf '[[service.backend]]\naddress = "127.0.0.1:%s"\n' "$b_udp"
      } >"$work/$name.toml"
      "$l4lb" check "$work/$name.toml" >/dev/null
      start_l4lb "$name" warn
      pid=$started_pid
      port=$listen_port
      ;;
    nginx)
      {
        printf 'load_module %s;\nworker_processes 2;\ndaemon off;\n' "$stream_so"
        printf 'pid %s;\nerror_log %s warn;\n' "$work/$name.pid" "$work/$name-error.log"
        printf 'events { worker_connections 20000; }\n'
        printf 'stream {\n    proxy_timeout 1h;\n    proxy_connect_timeout 3s;\n'
        printf '    upstream udp_echo { server 127.0.0.1:%s; }\n' "$b_udp"
        printf '    server { listen 127.0.0.1:%s udp rcvbuf=4m; proxy_pass udp_echo; }\n}\n' "$listen_port"
      } >"$work/$name.conf"
      nginx -q -t -p "$work/nginx/" -c "$work/$name.conf" -e "$work/$name-error.log"
      start_nginx "$name"
      pid=$started_pid
      port=$listen_port
      ;;
  esac
  wait_echo udp "$port"
  sleep 1
  if [ -n "$pid" ]; then c0=$(tree_ticks "$pid"); fi
  e0=$(tree_ticks "$udp_echo_pid")
  out="$work/raw/$name.json"
  timeout $((DURATION + 60)) "$loadgen" udp-pingpong --target "127.0.0.1:$port" \
    --clients "$UDP_FLOWS" --size 64 --duration "$DURATION" >"$out" 2>>"$work/loadgen.log" || rc=$?
  e1=$(tree_ticks "$udp_echo_pid")
  if [ -n "$pid" ]; then
    c1=$(tree_ticks "$pid")
    forget_pid "$pid"
  fi
  record udp "$(python3 -c '
import json, sys
t, r, rc, out, c0, c1, tck, e0, e1, dur = sys.argv[1:11]
row = {"section": "udp", "target": t, "round": int(r), "rc": int(rc), "ok": False}
try:
    run = json.loads(open(out).read().strip().splitlines()[-1])
    row.update(rps=run["ops_per_sec"], p50=run["p50_us"], p99=run["p99_us"],
               lost=run["lost"], errors=run["errors"], ops=run["ops"])
    row["backend_cpu_pct"] = round((int(e1) - int(e0)) / int(tck) / float(dur) * 100, 1)
    if t != "direct" and run["ops"]:
        row["cpu_us_per_rt"] = round((int(c1) - int(c0)) / int(tck) * 1e6 / run["ops"], 2)
    row["ok"] = row["rc"] == 0 and run["ops"] > 0
except Exception as e:
    row["error"] = f"{type(e).__name__}: {e}"
print(json.dumps(row))' "$t" "$r" "$rc" "$out" "$c0" "$c1" "$clk_tck" "$e0" "$e1" "$DURATION")"
}

# --- measurement ---------------------------------------------------------------
if want reload; then
  echo "reload: services $SERVICE_COUNTS; backends $BACKEND_COUNTS; $RELOADS reloads each" >&2
  for n in $SERVICE_COUNTS; do run_reload services "$n"; sleep 1; done
  for n in $BACKEND_COUNTS; do run_reload backends "$n"; sleep 1; done
fi
if want checks; then
  echo "checks: $CHECK_COUNTS backends, ${CPU_SECONDS}s windows" >&2
  for n in $CHECK_COUNTS; do
    for kind in l4lb haproxy; do run_checks "$kind" "$n"; sleep 2; done
  done
fi
if want idle; then
  echo "idle: $IDLE_COUNTS connections; $IDLE_SPLIT_COUNTS over two processes" >&2
  for n in $IDLE_COUNTS; do
    for kind in l4lb haproxy nginx; do run_idle "$kind" "$n" 1; sleep 2; done
  done
  for n in $IDLE_SPLIT_COUNTS; do
    for kind in l4lb haproxy nginx; do run_idle "$kind" "$n" 2; sleep 2; done
  done
fi
if want udp; then
  echo "udp: $UDP_FLOWS flows, $ROUNDS rounds of ${DURATION}s" >&2
  for r in $(seq "$ROUNDS"); do
    for t in direct l4lb nginx; do run_udp "$t" "$r"; sleep 2; done
  done
fi

# --- report --------------------------------------------------------------------
echo "## Cost at scale"
echo
echo "Finished $(date '+%Y-%m-%d %H:%M:%S %Z'); load average at end: $(loadavg)."
echo
python3 - "$results" "$ROUNDS" "$CPU_SECONDS" "$UDP_FLOWS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds, cpu_s, flows = int(sys.argv[2]), sys.argv[3], sys.argv[4]
def sec(s):
    return [r for r in rows if r["section"] == s]

rel = sec("reload")
if rel:
    print("### Reload time and RSS (l4lb, no health checks)")
    print()
    print("| configuration | start to ready (s) | RSS (MiB) | RSS after reloads (MiB) | reload median (ms) | reload min–max (ms) | growth |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for shape, unit in (("services", "service"), ("backends", "backend")):
        prev = None
        for r in [x for x in rel if x["shape"] == shape]:
            label = (f"{r['n']} services × 3 backends" if shape == "services"
                     else f"1 service × {r['n']} backends")
            if not r["ok"]:
                print(f"| {label} | failed: {r.get('error', 'reload refused or missing')} | | | | | |")
                continue
            t = r["times_ms"]
            growth = ""
            if prev:
                dn = r["n"] - prev["n"]
                growth = (f"+{(r['rss_kib'] - prev['rss_kib']) / dn:.2f} KiB and "
                          f"+{(statistics.median(t) - statistics.median(prev['times_ms'])) / dn * 1000:.1f} µs "
                          f"reload per {unit}")
            print(f"| {label} | {r['start_s']:.2f} | {r['rss_kib'] / 1024:.1f} | {r['rss_after_kib'] / 1024:.1f} | "
                  f"{statistics.median(t):.2f} | {min(t):.2f}–{max(t):.2f} | {growth} |")
            prev = r
    print()
    print("Growth: between this row and the one above, per added service or backend.")
    print()

chk = sec("checks")
if chk:
    print(f"### CPU of active TCP checks at 1 s ({cpu_s} s window)")
    print()
    print("| backends | l4lb CPU (% of a core) | HAProxy CPU (% of a core) | l4lb checks/s | failed checks in window (l4lb / HAProxy) | backends up (l4lb / HAProxy) | listener CPU during l4lb / HAProxy (%) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in sorted({r["n"] for r in chk}):
        l = next((r for r in chk if r["n"] == n and r["kind"] == "l4lb"), {})
        h = next((r for r in chk if r["n"] == n and r["kind"] == "haproxy"), {})
        g = lambda r, k, f="{}": f.format(r[k]) if k in r else "n/a"
        print(f"| {n} | {g(l, 'cpu_pct', '{:.2f}')} | {g(h, 'cpu_pct', '{:.2f}')} | {g(l, 'checks_per_s', '{:.0f}')} | "
              f"{g(l, 'failed_checks')} / {g(h, 'failed_checks')} | {g(l, 'up')} / {g(h, 'up')} | "
              f"{g(l, 'listener_cpu_pct', '{:.1f}')} / {g(h, 'listener_cpu_pct', '{:.1f}')} |")
    print()

idle = sec("idle")
if idle:
    print("### Idle memory per proxied TCP connection (summed VmRSS growth)")
    print()
    print("| connections | processes | l4lb (KiB/conn) | HAProxy (KiB/conn) | nginx (KiB/conn) |")
    print("|---:|---|---:|---:|---:|")
    shapes = {1: "one l4lb, one HAProxy worker, nginx's 2 workers",
              2: "two l4lb, two HAProxy, nginx's 2 workers with reuseport"}
    for n, split in sorted({(r["n"], r.get("split", 1)) for r in idle}):
        cells = []
        for k in ("l4lb", "haproxy", "nginx"):
            r = next((x for x in idle if x["n"] == n and x.get("split", 1) == split and x["kind"] == k), None)
            if r is None:
                cells.append("n/a")
            elif not r["ok"]:
                cells.append("failed: " + r.get("error", "")[:60])
            else:
                cells.append(f"{r['kib_per_conn']:.2f} ({r['before_kib'] / 1024:.1f} → {r['after_kib'] / 1024:.1f} MiB)")
        print(f"| {n} | {shapes[split]} | " + " | ".join(cells) + " |")
    print()

udp = sec("udp")
if udp:
    print(f"### UDP, {flows} concurrent flows (median of {rounds} rounds)")
    print()
    print("| target | round trips/s | p50 (µs) | p99 (µs) | lost (all rounds) | errors (all rounds) | balancer CPU µs per round trip | backend CPU (% of a core) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for t in ("direct", "l4lb", "nginx"):
        ok = [r for r in udp if r["target"] == t and r["ok"]]
        if not ok:
            print(f"| {t} | failed | | | | | | |")
            continue
        m = lambda f: statistics.median([r[f] for r in ok if f in r]) if any(f in r for r in ok) else None
        cpu = m("cpu_us_per_rt")
        note = "" if len(ok) == rounds else f" ({len(ok)}/{rounds} runs)"
        print(f"| {t} | {m('rps'):.0f}{note} | {m('p50'):.0f} | {m('p99'):.0f} | {sum(r['lost'] for r in ok)} | "
              f"{sum(r['errors'] for r in ok)} | {'n/a' if cpu is None else f'{cpu:.2f}'} | {m('backend_cpu_pct'):.0f} |")
    print()
    print("Per round (round trips/s): " + "; ".join(
        f"{t} " + " / ".join(f"{r['rps']:.0f}" if r["ok"] else "failed"
                             for r in udp if r["target"] == t) for t in ("direct", "l4lb", "nginx")))
    print()
bad = [r for r in rows if not r["ok"]]
print(f"- failed runs: {len(bad)}" + "".join(f"\n  - {json.dumps(r)}" for r in bad))
PY

echo
echo "Logs:"
for f in "$work"/*.log; do
  case "$(basename "$f")" in loadgen.log | echo-*.log) continue ;; esac
  # HAProxy's start-up warning that 20000 descriptors are fewer than maxconn
  # 20000 wants, and its worker stopped by SIGTERM at the end, are expected.
  n=$(grep -E ' (WARN|ERROR) |\[(ALERT|error|crit|alert|emerg)\]' "$f" | grep -vcE 'FD limit|exited with code 143' || true)
  if [ "${n:-0}" -gt 0 ]; then
    echo "- $(basename "$f"): $n warn/error line(s)"
    grep -E ' (WARN|ERROR) |\[(ALERT|error|crit|alert|emerg)\]' "$f" | grep -vE 'FD limit|exited with code 143' |
      sed -n '1,3p' | cut -c1-300 | sed 's/^/    /'
  fi
done
[ "$failed" -eq 0 ] || die "$failed run(s) failed; see above"
