#!/usr/bin/env bash
# Side-by-side benchmark on loopback: direct (no balancer), l4lb, HAProxy and
# nginx (stream), in front of the same backends, with equivalent configurations.
#
# Usage: scripts/bench.sh
#   env ROUNDS=3      interleaved rounds (direct, l4lb, HAProxy, nginx, again...);
#                     the table shows the median of the rounds
#       DURATION=5    seconds per timed run
#       SKIP=         comma list of metrics to skip:
#                     bulk1, bulk4, connect, rr, rr4, rr16, rr64, open, mem, udp, syscalls
#       IDLE_CONNS=5000  idle connections held for the memory metric
#       KEEP=1        keep the work directory (configs, logs, raw results) at exit
#
# Metrics (each run bounded by `timeout`):
#   bulk1 / bulk4  iperf3 -t DURATION, 1 and 4 streams, Gbit/s at the receiver
#   connect        loadgen tcp-connect --concurrency 32 (connect, 1 byte each way, close)
#   rr             loadgen tcp-pingpong --connections 32 --size 64 (req/s, p50, p99)
#   rr4/rr16/rr64  the same with 4, 16 and 64 connections, also through a second
#                  l4lb with worker_dispatch = "kernel" (l4lb-kernel: each client
#                  stays on the worker the kernel's SO_REUSEPORT hash chose)
#   open           loadgen tcp-pingpong --connections 16 --rate R (open loop: latency
#                  from each request's intended send time) at 50% and 80% of the
#                  round's capacity, the lowest rr16 req/s of l4lb, HAProxy, nginx
#   syscalls       after the rounds, one DURATION/2 run each of connect, rr16 and udp
#                  per balancer under `strace -c -f`: system calls per operation
#                  (strace slows the balancer; only the counts are used)
# Every timed run through a balancer also reads the CPU time (utime + stime)
# of the balancer's whole process tree before and after: CPU per operation
# (per GB for bulk) and the share of it spent in user space.
#   mem            IDLE_CONNS connections held (one byte echoed on each, then idle)
#                  through a freshly started balancer; growth of the summed VmRSS
#                  of all its processes, KiB per connection
#   udp            loadgen udp-pingpong --clients 32 --size 64 (l4lb, nginx; HAProxy
#                  has no UDP proxy)
#
# Installs haproxy, nginx + libnginx-mod-stream and iperf3 with apt-get when
# missing; the system services those packages would start are kept from
# starting, stopped if they started anyway, and disabled. Builds the release
# l4lb and the loadgen example (honours CARGO_TARGET_DIR) and copies both into
# the work directory, so a concurrent rebuild cannot swap them mid-run. Every
# process it starts runs with its own config, pid file and prefix in the work
# directory and is stopped by PID at exit. Exits non-zero when any run failed
# (the table is still printed, from the runs that succeeded).
set -euo pipefail
cd "$(dirname "$0")/.."
me=bench.sh
# shellcheck source=scripts/bench_lib.sh
. scripts/bench_lib.sh

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
export DURATION
SKIP="${SKIP:-}"
IDLE_CONNS="${IDLE_CONNS:-5000}"
CONCURRENCY=32
SIZE=64
TARGETS=(direct l4lb haproxy nginx)
# The rr4/rr16/rr64 rows also run through l4lb with worker_dispatch = "kernel".
RR_TARGETS=(direct l4lb l4lb-kernel haproxy nginx)
METRICS=(bulk1 bulk4 connect rr rr4 rr16 rr64 open mem udp syscalls)

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer (seconds), got '$DURATION'"
[[ "$IDLE_CONNS" =~ ^[1-9][0-9]*$ ]] || die "IDLE_CONNS must be a positive integer, got '$IDLE_CONNS'"

declare -A skip=()
IFS=, read -r -a skip_list <<<"$SKIP"
for m in "${skip_list[@]}"; do
  m="${m// /}"
  [ -n "$m" ] || continue
  case " ${METRICS[*]} " in *" $m "*) skip[$m]=1 ;; *) die "SKIP: unknown metric '$m' (known: ${METRICS[*]})" ;; esac
done
want() { [ -z "${skip[$1]:-}" ]; }

# --- packages, work directory, build ------------------------------------------
bench_packages iperf3 strace
bench_workdir bench
mkdir -p "$work/mem"
bench_build

# The memory metric holds IDLE_CONNS sockets in the client, in the backend and
# twice in the balancer.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((2 * IDLE_CONNS + 1000)) ] ||
  die "open files limit $(ulimit -n) is too low for IDLE_CONNS=$IDLE_CONNS"

# --- machine ------------------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
echo "## Machine"
echo
echo "- CPU: $(nproc) cores, ${cpu_model:-unknown model}"
echo "- memory: $(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "- kernel: $(uname -sr)"
echo "- l4lb: $("$l4lb" --version)"
echo "- HAProxy: $(haproxy -v | head -n1)"
echo "- nginx: $(nginx -v 2>&1)"
echo "- iperf3: $(iperf3 --version | head -n1)"
echo "- load average at start: $(loadavg)"
echo "- ROUNDS=$ROUNDS DURATION=${DURATION}s SKIP=${SKIP:-none} IDLE_CONNS=$IDLE_CONNS"
echo

# --- ports --------------------------------------------------------------------
# Fixed-for-the-run ports below the ephemeral range, free for TCP and UDP, so the
# many short connections cannot occupy a port a balancer binds later.
read -r -a port_list <<<"$(free_ports 16)"
[ "${#port_list[@]}" -eq 16 ] || die "could not find 16 free loopback ports"
read -r b_iperf b_tcp b_udp \
  l_iperf l_tcp l_udp l_admin \
  h_iperf h_tcp \
  n_iperf n_tcp n_udp \
  m_l4lb m_haproxy m_nginx k_tcp <<<"${port_list[*]}"
declare -A iperf_port=([direct]=$b_iperf [l4lb]=$l_iperf [haproxy]=$h_iperf [nginx]=$n_iperf)
declare -A tcp_port=([direct]=$b_tcp [l4lb]=$l_tcp [l4lb-kernel]=$k_tcp [haproxy]=$h_tcp [nginx]=$n_tcp)
declare -A udp_port=([direct]=$b_udp [l4lb]=$l_udp [nginx]=$n_udp)
declare -A mem_port=([l4lb]=$m_l4lb [haproxy]=$m_haproxy [nginx]=$m_nginx)

# --- configurations -----------------------------------------------------------
# write_l4lb FILE ECHO_PORT [IPERF_PORT UDP_PORT ADMIN_PORT [DISPATCH]]
write_l4lb() {
  local file=$1 echo_port=$2 iperf=${3:-} udp=${4:-} admin=${5:-} dispatch=${6:-least_sessions}
  {
    if [ -n "$admin" ]; then printf '[admin]\nlisten = "127.0.0.1:%s"\n\n' "$admin"; fi
    # shutdown_grace only bounds the stop at exit; no connection is open then.
    printf '[global]\nworkers = 2\nshutdown_grace = "2s"\nworker_dispatch = "%s"\n' "$dispatch"
    # Its own control socket: a second l4lb of another file must not meet this one's.
    printf 'control_socket = "%s"\n' "$file.control.sock"
    printf '\n[[service]]\nname = "echo"\nprotocol = "tcp"\nlisten = "127.0.0.1:%s"\n' "$echo_port"
    printf 'strategy = "round_robin"\nidle_timeout = "1h"\n'
    printf '[[service.backend]]\naddress = "127.0.0.1:%s"\n' "$b_tcp"
    if [ -n "$iperf" ]; then
      printf '\n[[service]]\nname = "iperf"\nprotocol = "tcp"\nlisten = "127.0.0.1:%s"\n' "$iperf"
      printf 'strategy = "round_robin"\nidle_timeout = "1h"\n'
      printf '[[service.backend]]\naddress = "127.0.0.1:%s"\n' "$b_iperf"
    fi
    if [ -n "$udp" ]; then
      printf '\n[[service]]\nname = "udp-echo"\nprotocol = "udp"\nlisten = "127.0.0.1:%s"\n' "$udp"
      printf 'strategy = "round_robin"\nidle_timeout = "1h"\n'
      printf '[[service.backend]]\naddress = "127.0.0.1:%s"\n' "$b_udp"
    fi
  } >"$file"
  "$l4lb" check "$file" >/dev/null
}

# write_haproxy FILE PIDFILE ECHO_PORT [IPERF_PORT]
write_haproxy() {
  local file=$1 pidfile=$2 echo_port=$3 iperf=${4:-}
  {
    printf 'global\n    nbthread 2\n    maxconn 20000\n    pidfile %s\n' "$pidfile"
    # maxconn 20000 wants about 40000 descriptors; where the hard limit is lower
    # (containers), run with what there is instead of refusing to start.
    printf '    no strict-limits\n\n'
    printf 'defaults\n    mode tcp\n    balance roundrobin\n    maxconn 20000\n'
    printf '    timeout connect 3s\n    timeout client 1h\n    timeout server 1h\n'
    printf '\nlisten echo\n    bind 127.0.0.1:%s\n    server s1 127.0.0.1:%s\n' "$echo_port" "$b_tcp"
    if [ -n "$iperf" ]; then
      printf '\nlisten iperf\n    bind 127.0.0.1:%s\n    server s1 127.0.0.1:%s\n' "$iperf" "$b_iperf"
    fi
  } >"$file"
  haproxy -q -c -f "$file" >/dev/null
}

# write_nginx FILE PIDFILE ERRLOG ECHO_PORT [IPERF_PORT UDP_PORT]
write_nginx() {
  local file=$1 pidfile=$2 errlog=$3 echo_port=$4 iperf=${5:-} udp=${6:-}
  {
    printf 'load_module %s;\nworker_processes 2;\ndaemon off;\n' "$stream_so"
    printf 'pid %s;\nerror_log %s warn;\n' "$pidfile" "$errlog"
    printf 'events { worker_connections 20000; }\n'
    printf 'stream {\n    proxy_timeout 1h;\n    proxy_connect_timeout 3s;\n'
    printf '    upstream echo { server 127.0.0.1:%s; }\n' "$b_tcp"
    printf '    server { listen 127.0.0.1:%s; proxy_pass echo; }\n' "$echo_port"
    if [ -n "$iperf" ]; then
      printf '    upstream iperf { server 127.0.0.1:%s; }\n' "$b_iperf"
      printf '    server { listen 127.0.0.1:%s; proxy_pass iperf; }\n' "$iperf"
    fi
    if [ -n "$udp" ]; then
      printf '    upstream udp_echo { server 127.0.0.1:%s; }\n' "$b_udp"
      printf '    server { listen 127.0.0.1:%s udp; proxy_pass udp_echo; }\n' "$udp"
    fi
    printf '}\n'
  } >"$file"
  nginx -q -t -p "$work/nginx/" -c "$file" -e "$errlog"
}

# start_balancer KIND NAME (config written beforehand to $work/NAME.*): sets
# started_pid, and adds it to the processes stopped at exit.
started_pid=
start_balancer() {
  local kind=$1 name=$2
  case "$kind" in
    l4lb | l4lb-kernel) "$l4lb" --log-level warn run "$work/$name.toml" >>"$work/$name.log" 2>&1 & ;;
    haproxy) haproxy -W -db -f "$work/$name.cfg" >>"$work/$name.log" 2>&1 & ;;
    nginx) nginx -p "$work/nginx/" -c "$work/$name.conf" -e "$work/$name-error.log" >>"$work/$name.log" 2>&1 & ;;
  esac
  started_pid=$!
  pids+=("$started_pid")
}

# --- backends and balancers ---------------------------------------------------
iperf3 -s -B 127.0.0.1 -p "$b_iperf" >"$work/iperf3-server.log" 2>&1 &
pids+=($!)
"$loadgen" echo-server --listen "127.0.0.1:$b_tcp" --tcp 2>"$work/echo-tcp.log" &
pids+=($!)
"$loadgen" echo-server --listen "127.0.0.1:$b_udp" --udp 2>"$work/echo-udp.log" &
pids+=($!)

write_l4lb "$work/l4lb.toml" "$l_tcp" "$l_iperf" "$l_udp" "$l_admin"
write_l4lb "$work/l4lb-kernel.toml" "$k_tcp" "" "" "" kernel
write_haproxy "$work/haproxy.cfg" "$work/haproxy.pid" "$h_tcp" "$h_iperf"
write_nginx "$work/nginx.conf" "$work/nginx.pid" "$work/nginx-error.log" "$n_tcp" "$n_iperf" "$n_udp"
declare -A main_pid=()
for kind in l4lb l4lb-kernel haproxy nginx; do
  start_balancer "$kind" "$kind"
  main_pid[$kind]=$started_pid
done

wait_listening "$b_iperf"
for t in "${RR_TARGETS[@]}"; do wait_echo tcp "${tcp_port[$t]}"; done
for t in direct l4lb nginx; do wait_echo udp "${udp_port[$t]}"; done
for t in l4lb haproxy nginx; do wait_listening "${iperf_port[$t]}"; done
for kind in haproxy nginx; do
  [ "$(cat "$work/$kind.pid")" = "${main_pid[$kind]}" ] ||
    die "$kind: pid file $(cat "$work/$kind.pid") is not the master we started (${main_pid[$kind]})"
done

# --- measurement --------------------------------------------------------------
results="$work/results.jsonl"
: >"$results"
failed=0

cat >"$work/record.py" <<'PY'
"""record.py RESULTS METRIC TARGET ROUND RC KIND FILE|VALUE [CPU]: appends one JSON
line. CPU is "USER SYSTEM" seconds the balancer's processes used during the run."""
import json, os, sys
results, metric, target, rnd, rc, kind, arg = sys.argv[1:8]
cpu = sys.argv[8].split() if len(sys.argv) > 8 and sys.argv[8].strip() else None
row = {"metric": metric, "target": target, "round": int(rnd), "rc": int(rc), "ok": False}
try:
    if kind == "iperf":
        doc = json.load(open(arg))
        if "error" in doc:
            row["error"] = doc["error"]
        row["value"] = doc["end"]["sum_received"]["bits_per_second"] / 1e9
        row["retransmits"] = doc["end"].get("sum_sent", {}).get("retransmits")
    elif kind == "loadgen":
        run = json.loads(open(arg).read().strip().splitlines()[-1])
        row.update(value=run["ops_per_sec"], p50=run["p50_us"], p99=run["p99_us"],
                   p999=run["p999_us"], errors=run["errors"], lost=run["lost"], ops=run["ops"])
        if "offered_per_sec" in run:
            row.update(offered=run["offered_per_sec"], behind=run["behind"])
    elif kind == "syscalls":
        trace, run = arg.split(",")
        total = [l.split() for l in open(trace) if l.split()[-1:] == ["total"]]
        calls = int(total[-1][3])
        ops = json.loads(open(run).read().strip().splitlines()[-1])["ops"]
        row.update(value=calls / ops if ops else None, calls=calls, ops=ops)
    elif kind == "mem":
        before, after, conns, procs = (int(x) for x in arg.split(","))
        row.update(value=(after - before) / conns, before_kib=before, after_kib=after,
                   conns=conns, procs=procs)
    if cpu is not None:
        user, system = float(cpu[0]), float(cpu[1])
        row.update(cpu_user_s=user, cpu_system_s=system)
        if user + system > 0:
            row["user_share"] = user / (user + system)
        if kind == "loadgen" and row.get("ops"):
            row["cpu_us_per_op"] = (user + system) / row["ops"] * 1e6
        elif kind == "iperf" and row.get("value"):
            gigabytes = row["value"] / 8 * float(os.environ["DURATION"])
            row["cpu_s_per_gb"] = (user + system) / gigabytes
    row["ok"] = (row["rc"] == 0 and "error" not in row and row.get("value") is not None
                 and (row["value"] > 0 or kind == "mem"))
except Exception as e:  # a failed run leaves no parsable output
    row["error"] = f"{type(e).__name__}: {e}"
with open(results, "a") as f:
    f.write(json.dumps(row) + "\n")
print(("ok " if row["ok"] else "FAILED ") + json.dumps(row))
PY

# cpu_of TARGET: "USER SYSTEM" CPU seconds of the target balancer's process tree
# so far (empty for direct).
cpu_of() {
  case "$1" in
    direct) echo "" ;;
    *) tree_times "${main_pid[$1]}" ;;
  esac
}
# cpu_since TARGET "USER SYSTEM": what the target used since that reading.
cpu_since() {
  [ -n "$2" ] || return 0
  local now
  now=$(cpu_of "$1")
  python3 -c 'import sys; a = sys.argv[1].split(); b = sys.argv[2].split(); print(f"{float(b[0]) - float(a[0]):.3f} {float(b[1]) - float(a[1]):.3f}")' "$2" "$now"
}

# record METRIC TARGET ROUND RC KIND FILE|VALUE [CPU]
record() {
  local line
  line=$(python3 "$work/record.py" "$results" "$@")
  echo "  round $3 $1 $2: $line" >&2
  case "$line" in FAILED*) failed=$((failed + 1)) ;; esac
}

run_bulk() { # streams target round
  local streams=$1 t=$2 r=$3 out rc=0 cpu
  out="$work/raw/bulk$streams-$t-$r.json"
  cpu=$(cpu_of "$t")
  timeout $((DURATION + 30)) iperf3 -c 127.0.0.1 -p "${iperf_port[$t]}" -P "$streams" \
    -t "$DURATION" -J >"$out" 2>>"$work/iperf3-client.log" || rc=$?
  record "bulk$streams" "$t" "$r" "$rc" iperf "$out" "$(cpu_since "$t" "$cpu")"
}

run_loadgen() { # metric target round -- loadgen arguments
  local metric=$1 t=$2 r=$3 out rc=0 cpu
  shift 4
  out="$work/raw/$metric-$t-$r.json"
  cpu=$(cpu_of "$t")
  timeout $((DURATION + 30)) "$loadgen" "$@" --duration "$DURATION" \
    >"$out" 2>>"$work/loadgen.log" || rc=$?
  record "$metric" "$t" "$r" "$rc" loadgen "$out" "$(cpu_since "$t" "$cpu")"
}

# Memory: a fresh balancer with one echo service; RSS of all its processes
# before and while IDLE_CONNS idle connections pass through it.
run_mem() { # target round
  local t=$1 r=$2 name="mem-$1-$2" pid hpid before after procs rc=0 ready=0
  case "$t" in
    l4lb) write_l4lb "$work/$name.toml" "${mem_port[$t]}" ;;
    haproxy) write_haproxy "$work/$name.cfg" "$work/$name.pid" "${mem_port[$t]}" ;;
    nginx) write_nginx "$work/$name.conf" "$work/$name.pid" "$work/$name-error.log" "${mem_port[$t]}" ;;
  esac
  start_balancer "$t" "$name"
  pid=$started_pid
  wait_echo tcp "${mem_port[$t]}"
  if [ -f "$work/$name.pid" ] && [ "$(cat "$work/$name.pid")" != "$pid" ]; then
    die "$t: pid file $(cat "$work/$name.pid") is not the master we started ($pid)"
  fi
  sleep 1
  before=$(tree_rss "$pid")
  timeout 300 python3 "$work/holder.py" 127.0.0.1 "${mem_port[$t]}" "$IDLE_CONNS" 240 \
    >"$work/mem/$name.out" 2>"$work/mem/$name.err" &
  hpid=$!
  pids+=("$hpid")
  for _ in $(seq 1200); do
    if grep -q '^ready' "$work/mem/$name.out"; then ready=1; break; fi
    alive "$hpid" || break
    sleep 0.1
  done
  if [ "$ready" = 1 ]; then
    sleep 2
    read -r after procs < <(python3 "$work/proctree.py" rss "$pid")
  else
    rc=1
    after=0 procs=0
    echo "  holder through $t failed: $(tail -n1 "$work/mem/$name.err")" >&2
  fi
  stop_pid "$hpid"
  sleep 1
  stop_pid "$pid"
  record mem "$t" "$r" "$rc" mem "$before,$after,$IDLE_CONNS,$procs"
}

echo "measuring: $ROUNDS rounds of ${DURATION}s runs, interleaved (${TARGETS[*]})" >&2
for r in $(seq "$ROUNDS"); do
  for streams in 1 4; do
    want "bulk$streams" || continue
    for t in "${TARGETS[@]}"; do run_bulk "$streams" "$t" "$r"; sleep 1; done
  done
  if want connect; then
    for t in "${TARGETS[@]}"; do
      run_loadgen connect "$t" "$r" -- tcp-connect --target "127.0.0.1:${tcp_port[$t]}" \
        --concurrency "$CONCURRENCY"
      sleep 2
    done
  fi
  if want rr; then
    for t in "${TARGETS[@]}"; do
      run_loadgen rr "$t" "$r" -- tcp-pingpong --target "127.0.0.1:${tcp_port[$t]}" \
        --connections "$CONCURRENCY" --size "$SIZE"
      sleep 1
    done
  fi
  for conns in 4 16 64; do
    want "rr$conns" || continue
    for t in "${RR_TARGETS[@]}"; do
      run_loadgen "rr$conns" "$t" "$r" -- tcp-pingpong --target "127.0.0.1:${tcp_port[$t]}" \
        --connections "$conns" --size "$SIZE"
      sleep 1
    done
  done
  if want open && want rr16; then
    capacity=$(python3 - "$results" "$r" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rates = [x["value"] for x in rows if x["metric"] == "rr16" and x["round"] == int(sys.argv[2])
         and x["target"] in ("l4lb", "haproxy", "nginx") and x["ok"]]
print(int(min(rates)) if len(rates) == 3 else 0)
PY
)
    if [ "$capacity" -gt 0 ]; then
      for pct in 50 80; do
        for t in l4lb haproxy nginx; do
          run_loadgen "open$pct" "$t" "$r" -- tcp-pingpong --target "127.0.0.1:${tcp_port[$t]}" \
            --connections 16 --size "$SIZE" --rate $((capacity * pct / 100))
          sleep 1
        done
      done
    else
      echo "  round $r: no capacity from rr16; open-loop runs skipped" >&2
      failed=$((failed + 1))
    fi
  fi
  if want mem; then
    for t in l4lb haproxy nginx; do run_mem "$t" "$r"; sleep 2; done
  fi
  if want udp; then
    for t in direct l4lb nginx; do
      run_loadgen udp "$t" "$r" -- udp-pingpong --target "127.0.0.1:${udp_port[$t]}" \
        --clients "$CONCURRENCY" --size "$SIZE"
      sleep 1
    done
  fi
done

# System calls per operation: one short run per balancer and workload under
# `strace -c -f` attached to every process of the balancer (strace slows it
# down; the counts are what matters).
run_syscalls() { # metric target -- loadgen arguments
  local metric=$1 t=$2 trace="$work/raw/sys-$1-$2.strace" out="$work/raw/sys-$1-$2.json" \
    spid rc=0 p args=()
  shift 3
  for p in $(python3 "$work/proctree.py" pids "${main_pid[$t]}"); do args+=(-p "$p"); done
  strace -c -f -o "$trace" "${args[@]}" 2>>"$work/strace.log" &
  spid=$!
  sleep 1
  timeout $((DURATION + 30)) "$loadgen" "$@" --duration "$(((DURATION + 1) / 2))" \
    >"$out" 2>>"$work/loadgen.log" || rc=$?
  kill -INT "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  record "sys_$metric" "$t" 1 "$rc" syscalls "$trace,$out"
}
if want syscalls; then
  echo "counting system calls (strace -c -f)" >&2
  for t in l4lb haproxy nginx; do
    run_syscalls connect "$t" -- tcp-connect --target "127.0.0.1:${tcp_port[$t]}" \
      --concurrency "$CONCURRENCY"
    run_syscalls rr16 "$t" -- tcp-pingpong --target "127.0.0.1:${tcp_port[$t]}" \
      --connections 16 --size "$SIZE"
    if [ "$t" != haproxy ]; then
      run_syscalls udp "$t" -- udp-pingpong --target "127.0.0.1:${udp_port[$t]}" \
        --clients "$CONCURRENCY" --size "$SIZE"
    fi
    sleep 1
  done
fi

# --- report -------------------------------------------------------------------
echo "## Results"
echo
echo "Median of $ROUNDS interleaved rounds, ${DURATION}s per run; loopback; load average at end: $(loadavg)."
echo
python3 - "$results" "$ROUNDS" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
rounds = int(sys.argv[2])
targets = ["direct", "l4lb", "l4lb-kernel", "haproxy", "nginx"]
balancers = ["l4lb", "l4lb-kernel", "haproxy", "nginx"]
classic = ["direct", "l4lb", "haproxy", "nginx"]
rr_targets = targets
open_targets = ["l4lb", "haproxy", "nginx"]

def med(metric, target, field="value"):
    vals = [r[field] for r in rows if r["metric"] == metric and r["target"] == target
            and r["ok"] and r.get(field) is not None]
    if not vals:
        return None, 0
    return statistics.median(vals), len(vals)

# (label, metric, field, higher_is_better, format, targets measured)
spec = [
    ("bulk throughput, 1 stream (Gbit/s, higher is better)", "bulk1", "value", True, "{:.2f}", classic),
    ("bulk throughput, 4 streams (Gbit/s, higher is better)", "bulk4", "value", True, "{:.2f}", classic),
    ("short connections (conn/s, higher is better)", "connect", "value", True, "{:.0f}", classic),
    ("request/response, 64 B (req/s, higher is better)", "rr", "value", True, "{:.0f}", classic),
    ("request/response p50 (µs, lower is better)", "rr", "p50", False, "{:.1f}", classic),
    ("request/response p99 (µs, lower is better)", "rr", "p99", False, "{:.1f}", classic),
] + [row for conns in (4, 16, 64) for row in [
    (f"request/response, {conns} connections (req/s, higher is better)", f"rr{conns}", "value", True, "{:.0f}", rr_targets),
    (f"request/response p50, {conns} connections (µs, lower is better)", f"rr{conns}", "p50", False, "{:.1f}", rr_targets),
    (f"request/response p99, {conns} connections (µs, lower is better)", f"rr{conns}", "p99", False, "{:.1f}", rr_targets),
]] + [row for pct in (50, 80) for row in [
    (f"open loop at {pct}% of capacity, p50 (µs, lower is better)", f"open{pct}", "p50", False, "{:.1f}", open_targets),
    (f"open loop at {pct}% of capacity, p99 (µs, lower is better)", f"open{pct}", "p99", False, "{:.1f}", open_targets),
    (f"open loop at {pct}% of capacity, p99.9 (µs, lower is better)", f"open{pct}", "p999", False, "{:.1f}", open_targets),
]] + [
    ("idle memory (KiB per connection, lower is better)", "mem", "value", False, "{:.2f}", ["l4lb", "haproxy", "nginx"]),
    ("UDP round trips, 64 B (round trips/s, higher is better)", "udp", "value", True, "{:.0f}", ["direct", "l4lb", "nginx"]),
]
print("| metric | direct | l4lb | l4lb, kernel dispatch | HAProxy | nginx | l4lb / best rival |")
print("|---|---:|---:|---:|---:|---:|---:|")
notes = []
def table(spec):
    for label, metric, field, higher, fmt, measured in spec:
        if not any(r["metric"] == metric for r in rows):
            continue
        cells, values = [], {}
        for t in targets:
            if t not in measured:
                cells.append("n/a")
                continue
            v, n = med(metric, t, field)
            values[t] = v
            if v is None:
                cells.append("failed")
            else:
                cells.append(fmt.format(v) + ("" if n == rounds else f" ({n}/{rounds} runs)"))
        rivals = [values[t] for t in ("haproxy", "nginx") if values.get(t) is not None]
        ratio = "n/a"
        l4 = values.get("l4lb")
        if rivals and l4 is not None:
            if higher:
                best = max(rivals)
                ratio = f"{l4 / best:.2f}" if best > 0 else "n/a"
            else:
                best = min(rivals)
                ratio = f"{best / l4:.2f}" if l4 > 0 else "n/a"
        print(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
        if metric.startswith("bulk") and l4 is not None and values.get("direct"):
            notes.append(f"{metric}: l4lb is {100 * l4 / values['direct']:.0f}% of direct")


def cpu_table():
    # (label, metric, field, unit)
    cpu_rows = [
        ("bulk, 1 stream", "bulk1", "cpu_s_per_gb", "CPU s/GB"),
        ("bulk, 4 streams", "bulk4", "cpu_s_per_gb", "CPU s/GB"),
        ("short connections", "connect", "cpu_us_per_op", "CPU µs/conn"),
        ("request/response, 32 connections", "rr", "cpu_us_per_op", "CPU µs/req"),
        ("request/response, 4 connections", "rr4", "cpu_us_per_op", "CPU µs/req"),
        ("request/response, 16 connections", "rr16", "cpu_us_per_op", "CPU µs/req"),
        ("request/response, 64 connections", "rr64", "cpu_us_per_op", "CPU µs/req"),
        ("UDP round trips", "udp", "cpu_us_per_op", "CPU µs/round trip"),
    ]
    print("| CPU per operation (lower is better; user-space share in brackets) | l4lb | l4lb, kernel dispatch | HAProxy | nginx | best rival / l4lb |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, metric, field, unit in cpu_rows:
        if not any(r["metric"] == metric and field in r for r in rows):
            continue
        cells, values = [], {}
        for t in balancers:
            v, n = med(metric, t, field)
            share, _ = med(metric, t, "user_share")
            values[t] = v
            if v is None:
                cells.append("n/a")
            else:
                cells.append(f"{v:.2f} ({100 * share:.0f}% user)" if share is not None else f"{v:.2f}")
        rivals = [values[t] for t in ("haproxy", "nginx") if values.get(t)]
        l4 = values.get("l4lb")
        ratio = f"{min(rivals) / l4:.2f}" if rivals and l4 else "n/a"
        print(f"| {label}, {unit} | " + " | ".join(cells) + f" | {ratio} |")
    sys_rows = [("short connections", "sys_connect"), ("request/response, 16 connections", "sys_rr16"),
                ("UDP round trips", "sys_udp")]
    if any(r["metric"].startswith("sys_") for r in rows):
        print()
        print("| system calls per operation (strace -c -f, lower is better) | l4lb | HAProxy | nginx |")
        print("|---|---:|---:|---:|")
        for label, metric in sys_rows:
            cells = []
            for t in ("l4lb", "haproxy", "nginx"):
                v, _ = med(metric, t)
                cells.append("n/a" if v is None else f"{v:.2f}")
            print(f"| {label} | " + " | ".join(cells) + " |")

table(spec)
print()
print("Ratio: > 1 means l4lb is better (higher-is-better rows: l4lb / best rival; "
      "lower-is-better rows: best rival / l4lb). Rivals are HAProxy and nginx; UDP: nginx only.")
for n in notes:
    print(f"- {n}")
bad = [r for r in rows if not r["ok"]]
noisy = [r for r in rows if r["ok"] and (r.get("errors") or r.get("lost"))]
print(f"- failed runs: {len(bad)}" + "".join(
    f"\n  - round {r['round']} {r['metric']} {r['target']}: rc {r['rc']} {r.get('error', '')}" for r in bad))
print(f"- runs with loadgen errors or lost datagrams: {len(noisy)}" + "".join(
    f"\n  - round {r['round']} {r['metric']} {r['target']}: errors {r.get('errors')}, lost {r.get('lost')}"
    for r in noisy))
print()
cpu_table()
offered = sorted({(r["round"], r["metric"][4:], int(r["offered"])) for r in rows if r.get("offered")})
if offered:
    print()
    print("Open-loop offered rates (16 connections): " + ", ".join(
        f"round {rnd} {pct}%: {rate} req/s" for rnd, pct, rate in offered))
PY

echo
echo "Logs (warnings and errors of the balancers during the run):"
# report_log LABEL FILE [EXTRA_IGNORED_REGEX [quiet]]: lines other than
# HAProxy's notices; `quiet`: say nothing when there are none.
report_log() {
  local label=$1 file=$2 ignore='\[NOTICE\]' lines
  if [ -n "${3:-}" ]; then ignore="$ignore|$3"; fi
  lines=$( (grep -Ev "$ignore" "$file" 2>/dev/null || true) | grep -c .) || true
  if [ "${4:-}" = quiet ] && [ "${lines:-0}" -eq 0 ]; then return 0; fi
  echo "- $label: ${lines:-0} line(s)"
  if [ "${lines:-0}" -gt 0 ]; then
    grep -Ev "$ignore" "$file" | sed -n '1,5p' | cut -c1-300 | sed 's/^/    /'
  fi
}
report_log "l4lb stderr (warn and above)" "$work/l4lb.log"
report_log "HAProxy stderr" "$work/haproxy.log"
report_log "nginx error_log" "$work/nginx-error.log"
# The memory instances: their start-up FD-limit lines (shown above for the main
# HAProxy) and HAProxy's stop messages are expected.
expected='FD limit|Exiting Master process|exited with code 143|All workers exited'
for f in "$work"/mem-*.log; do
  if [ -s "$f" ]; then report_log "$(basename "$f")" "$f" "$expected" quiet; fi
done
metrics=$(http_get "http://127.0.0.1:$l_admin/metrics")
if [ -z "$metrics" ]; then
  echo "- l4lb /metrics: unreadable"
else
  python3 -c '
import sys
body = sys.stdin.read()
keep = ("l4lb_rejected_connections_total", "l4lb_backend_connect_failures_total",
        "l4lb_udp_dropped_datagrams_total", "l4lb_accept_errors_total")
lines = [l for l in body.splitlines() if l.startswith(keep) and not l.endswith(" 0")]
print("- l4lb non-zero failure counters: " + (", ".join(lines) if lines else "none"))' <<<"$metrics"
fi

[ "$failed" -eq 0 ] || die "$failed run(s) failed; see above"
