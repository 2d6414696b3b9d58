#!/usr/bin/env bash
# Flat tails under change: request/response latency through l4lb, HAProxy and
# nginx (stream) on loopback while the balancer is quiet, while its
# configuration is reloaded every 100 ms, and while it runs active health
# checks of 1000 backends.
#
# Usage: scripts/bench_change.sh
#   env ROUNDS=3          interleaved rounds (each condition, each balancer, again...);
#                         the table shows the median of the rounds
#       DURATION=5        seconds per timed run
#       CONNECTIONS=16    loadgen tcp-pingpong connections (64-byte requests)
#       RELOAD_EVERY=0.1  seconds between reloads in the "reload" condition
#       FLEET=1000        backends health-checked in the "health" condition
#       KEEP=1            keep the work directory (configs, logs, raw results) at exit
#
# Each run is a freshly started balancer with the condition's configuration,
# one service "echo" with two backends (two loadgen echo servers, round robin,
# weights 1 and 1), measured with `loadgen tcp-pingpong --connections 16
# --size 64 --duration 5` (req/s, p50, p99, errors). Conditions (the rows):
#   quiet   nothing else happens.
#   reload  every RELOAD_EVERY s the configuration file is rewritten with the
#           second backend's weight changed (2..10, never the previous value)
#           and the balancer is told to reload:
#             l4lb:    SIGHUP to its pid (it re-reads the file it was started with);
#             HAProxy: master-worker mode (`haproxy -W`), the Debian unit's
#                      reload: `haproxy -c -q -f cfg`, then SIGUSR2 to the master;
#             nginx:   `nginx -s reload` (SIGHUP to the master).
#           Reloads done are counted from the balancer itself: l4lb's
#           l4lb_config_reloads_total{result="success"} (and "failure") on
#           /metrics; HAProxy's master's "Loading success." lines; nginx's
#           "reconfiguring" lines in its error log (at notice).
#   health  a second service "fleet" with FLEET backends, active TCP checks
#           every 1 s (timeout 1 s, rise 2, fall 3), no clients: l4lb
#           [service.health] interval = "1s"; HAProxy `check inter 1s` on each
#           server. The backends are distinct addresses 127.0.1.1, 127.0.1.2, ...
#           on one port, all served by one `loadgen echo-server` bound to
#           0.0.0.0 (one descriptor for the whole fleet). nginx open source has
#           no active checks: n/a. Measuring starts 3 s after the start, so the
#           checks are under way.
# The table gives, per balancer and condition, the median req/s, p50 and p99,
# the ratio of the condition's p99 to the quiet p99 (l4lb's target: <= 1.10),
# the balancer's CPU time per request (all its processes during the run, with
# the time of workers that exited and were waited for by their master; not the
# `haproxy -c` and `nginx -s reload` commands the reloader runs), client errors
# summed over the rounds, and reloads done / requested.
#
# Installs haproxy, nginx and libnginx-mod-stream when missing (system services
# kept from starting), builds the release l4lb and loadgen under `nice -n 19`,
# copies them into the work directory (/tmp/bench-change.XXXXXX), stops every
# process it started by PID at exit. Exits non-zero when any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."
me=bench_change.sh
# shellcheck source=scripts/bench_lib.sh
. scripts/bench_lib.sh

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
CONNECTIONS="${CONNECTIONS:-16}"
RELOAD_EVERY="${RELOAD_EVERY:-0.1}"
FLEET="${FLEET:-1000}"
SIZE=64
SETTLE=3
KINDS=(l4lb haproxy nginx)
CONDITIONS=(quiet reload health)

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer (seconds), got '$DURATION'"
[[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive integer, got '$CONNECTIONS'"
[[ "$RELOAD_EVERY" =~ ^[0-9]*\.?[0-9]+$ ]] || die "RELOAD_EVERY must be seconds, got '$RELOAD_EVERY'"
if ! [[ "$FLEET" =~ ^[1-9][0-9]*$ ]] || [ "$FLEET" -gt 10000 ]; then
  die "FLEET must be 1..10000, got '$FLEET'"
fi

bench_packages
bench_workdir bench-change
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
read -r b1 b2 fleet_port listen_port fleet_listen admin_port _ _ <<<"${ports[*]}"

# --- backends -------------------------------------------------------------------
"$loadgen" echo-server --listen "127.0.0.1:$b1" --tcp 2>"$work/echo1.log" &
pids+=($!)
"$loadgen" echo-server --listen "127.0.0.1:$b2" --tcp 2>"$work/echo2.log" &
pids+=($!)
"$loadgen" echo-server --listen "0.0.0.0:$fleet_port" --tcp 2>"$work/echo-fleet.log" &
pids+=($!)
wait_echo tcp "$b1"
wait_echo tcp "$b2"
wait_echo tcp "$fleet_port" 127.0.1.1

# --- configurations: each writer takes FILE WEIGHT CONDITION NAME ---------------
write_l4lb() {
  local file=$1 weight=$2 cond=$3 name=$4 i
  {
    printf '[admin]\nlisten = "127.0.0.1:%s"\n\n' "$admin_port"
    printf '[global]\nworkers = 2\nshutdown_grace = "2s"\ncontrol_socket = "%s"\n' "$work/$name.sock"
    printf '\n[[service]]\nname = "echo"\nprotocol = "tcp"\nlisten = "127.0.0.1:%s"\n' "$listen_port"
    printf 'strategy = "round_robin"\nidle_timeout = "1h"\n'
    printf '[[service.backend]]\naddress = "127.0.0.1:%s"\nweight = 1\n' "$b1"
    printf '[[service.backend]]\naddress = "127.0.0.1:%s"\nweight = %s\n' "$b2" "$weight"
    if [ "$cond" = health ]; then
      printf '\n[[service]]\nname = "fleet"\nprotocol = "tcp"\nlisten = "127.0.0.1:%s"\n' "$fleet_listen"
      printf 'strategy = "round_robin"\n'
      printf '[service.health]\nkind = "tcp"\ninterval = "1s"\ntimeout = "1s"\nrise = 2\nfall = 3\n'
      for ((i = 0; i < FLEET; i++)); do
        printf '[[service.backend]]\naddress = "127.0.%d.%d:%s"\n' $((1 + i / 250)) $((1 + i % 250)) "$fleet_port"
      done
    fi
  } >"$file"
}

write_haproxy() {
  local file=$1 weight=$2 cond=$3 name=$4 i
  {
    printf 'global\n    nbthread 2\n    maxconn 20000\n    pidfile %s\n' "$work/$name.pid"
    printf '    no strict-limits\n\n'
    printf 'defaults\n    mode tcp\n    balance roundrobin\n    maxconn 20000\n'
    printf '    timeout connect 3s\n    timeout client 1h\n    timeout server 1h\n    timeout check 1s\n'
    printf '\nlisten echo\n    bind 127.0.0.1:%s\n' "$listen_port"
    printf '    server s1 127.0.0.1:%s weight 1\n    server s2 127.0.0.1:%s weight %s\n' "$b1" "$b2" "$weight"
    if [ "$cond" = health ]; then
      printf '\nlisten fleet\n    bind 127.0.0.1:%s\n' "$fleet_listen"
      for ((i = 0; i < FLEET; i++)); do
        printf '    server f%d 127.0.%d.%d:%s check inter 1s rise 2 fall 3\n' \
          "$i" $((1 + i / 250)) $((1 + i % 250)) "$fleet_port"
      done
    fi
  } >"$file"
}

write_nginx() {
  local file=$1 weight=$2 name=$4
  {
    printf 'load_module %s;\nworker_processes 2;\ndaemon off;\n' "$stream_so"
    printf 'pid %s;\nerror_log %s notice;\n' "$work/$name.pid" "$work/$name-error.log"
    printf 'events { worker_connections 20000; }\n'
    printf 'stream {\n    proxy_timeout 1h;\n    proxy_connect_timeout 3s;\n'
    printf '    upstream echo { server 127.0.0.1:%s weight=1; server 127.0.0.1:%s weight=%s; }\n' \
      "$b1" "$b2" "$weight"
    printf '    server { listen 127.0.0.1:%s; proxy_pass echo; }\n}\n' "$listen_port"
  } >"$file"
}

config_file() { # KIND NAME
  case "$1" in l4lb) echo "$work/$2.toml" ;; haproxy) echo "$work/$2.cfg" ;; nginx) echo "$work/$2.conf" ;; esac
}

# check_config KIND FILE
check_config() {
  case "$1" in
    l4lb) "$l4lb" check "$2" >/dev/null ;;
    haproxy) haproxy -q -c -f "$2" >/dev/null ;;
    nginx) nginx -q -t -p "$work/nginx/" -c "$2" -e "$work/nginx-test-error.log" ;;
  esac
}

# start KIND NAME: starts a balancer on its config; sets started_pid.
started_pid=
start() {
  local kind=$1 name=$2 file
  file=$(config_file "$kind" "$name")
  case "$kind" in
    l4lb) "$l4lb" --log-level info run "$file" >>"$work/$name.log" 2>&1 & ;;
    haproxy) haproxy -W -db -f "$file" >>"$work/$name.log" 2>&1 & ;;
    nginx) nginx -p "$work/nginx/" -c "$file" -e "$work/$name-error.log" >>"$work/$name.log" 2>&1 & ;;
  esac
  started_pid=$!
  pids+=("$started_pid")
}

# The reloader: every INTERVAL s for DURATION s, rewrites the config with a new
# weight (the template's @WEIGHT@) and asks the balancer to reload.
cat >"$work/reloader.py" <<'PY'
"""reloader.py KIND DURATION INTERVAL TEMPLATE FILE PID NGINX_PREFIX NGINX_ERRLOG:
prints one JSON line: reloads requested, commands that failed, slowest request."""
import json, os, signal, subprocess, sys, time
kind, duration, interval, template, target, pid, prefix, errlog = sys.argv[1:9]
duration, interval, pid = float(duration), float(interval), int(pid)
text = open(template).read()
start = time.monotonic()
sent = failed = 0
slowest = 0.0
weight = 1
i = 0
while True:
    due = start + i * interval
    now = time.monotonic()
    if due >= start + duration:
        break
    if due > now:
        time.sleep(due - now)
    elif now - due > interval:  # fell behind: skip the missed slots
        i += 1
        continue
    i += 1
    weight = 2 + (weight - 1) % 9  # 2..10, never the previous value
    t0 = time.monotonic()
    tmp = target + ".tmp"
    with open(tmp, "w") as f:
        f.write(text.replace("@WEIGHT@", str(weight)))
    os.replace(tmp, target)
    try:
        if kind == "l4lb":
            os.kill(pid, signal.SIGHUP)
        elif kind == "haproxy":
            subprocess.run(["haproxy", "-c", "-q", "-f", target], check=True,
                           stdout=subprocess.DEVNULL, timeout=10)
            os.kill(pid, signal.SIGUSR2)
        else:
            subprocess.run(["nginx", "-q", "-p", prefix, "-c", target, "-e", errlog,
                            "-s", "reload"], check=True, timeout=10)
        sent += 1
    except (OSError, subprocess.SubprocessError):
        failed += 1
    slowest = max(slowest, time.monotonic() - t0)
print(json.dumps({"requested": sent, "request_failed": failed,
                  "slowest_request_ms": round(slowest * 1000, 1)}))
PY

# l4lb_metric NAME_AND_LABELS: the value on /metrics (0 when absent).
l4lb_metric() {
  http_get "http://127.0.0.1:$admin_port/metrics" |
    awk -v key="$1" 'index($0, key) == 1 { v = $2 } END { print (v == "" ? 0 : v) }'
}
# l4lb_checks: health checks counted so far, all results: "success failure timeout".
l4lb_checks() {
  http_get "http://127.0.0.1:$admin_port/metrics" | awk '
    /^l4lb_health_checks_total/ {
      if ($0 ~ /result="success"/) s += $2; else if ($0 ~ /result="failure"/) f += $2; else t += $2
    } END { printf "%d %d %d\n", s, f, t }'
}

# reloads_done KIND NAME: reloads the balancer itself reports so far.
reloads_done() {
  case "$1" in
    l4lb) l4lb_metric 'l4lb_config_reloads_total{result="success"}' ;;
    haproxy) grep -c 'Loading success' "$work/$2.log" || true ;;
    nginx) grep -c ': reconfiguring$' "$work/$2-error.log" || true ;;
  esac
}
reloads_failed() {
  case "$1" in
    l4lb) l4lb_metric 'l4lb_config_reloads_total{result="failure"}' ;;
    haproxy) grep -c 'Loading failure' "$work/$2.log" || true ;;
    nginx) grep -cE '\[emerg\]' "$work/$2-error.log" || true ;;
  esac
}

results="$work/results.jsonl"
: >"$results"
failed=0

# run_one COND KIND ROUND
run_one() {
  local cond=$1 kind=$2 r=$3 name="$1-$2-$3" file pid rpid out rc=0 reload_json='{}'
  local before_ok before_fail after_ok after_fail cpu0 cpu1 checks_before='0 0 0 0' checks_after='0 0 0 0'
  file=$(config_file "$kind" "$name")
  "write_$kind" "$file" 1 "$cond" "$name"
  check_config "$kind" "$file"
  if [ "$cond" = reload ]; then "write_$kind" "$work/$name.template" @WEIGHT@ "$cond" "$name"; fi
  start "$kind" "$name"
  pid=$started_pid
  wait_echo tcp "$listen_port"
  if [ "$cond" = health ]; then sleep "$SETTLE"; else sleep 1; fi
  if [ "$kind" = l4lb ] && [ "$cond" = health ]; then checks_before="$(l4lb_checks) $(date +%s.%N)"; fi
  before_ok=$(reloads_done "$kind" "$name")
  before_fail=$(reloads_failed "$kind" "$name")
  if [ "$cond" = reload ]; then
    timeout $((DURATION + 30)) python3 "$work/reloader.py" "$kind" "$DURATION" "$RELOAD_EVERY" \
      "$work/$name.template" "$file" "$pid" "$work/nginx/" "$work/$name-error.log" \
      >"$work/raw/$name.reloader" 2>>"$work/reloader.log" &
    rpid=$!
  fi
  out="$work/raw/$name.json"
  cpu0=$(tree_ticks "$pid")
  timeout $((DURATION + 30)) "$loadgen" tcp-pingpong --target "127.0.0.1:$listen_port" \
    --connections "$CONNECTIONS" --size "$SIZE" --duration "$DURATION" \
    >"$out" 2>>"$work/loadgen.log" || rc=$?
  cpu1=$(tree_ticks "$pid")
  if [ "$cond" = reload ]; then
    wait "$rpid" || rc=$?
    reload_json=$(tail -n1 "$work/raw/$name.reloader")
    sleep 1 # the last reload finishes
  fi
  if [ "$kind" = l4lb ] && [ "$cond" = health ]; then checks_after="$(l4lb_checks) $(date +%s.%N)"; fi
  after_ok=$(reloads_done "$kind" "$name")
  after_fail=$(reloads_failed "$kind" "$name")
  forget_pid "$pid"
  local line
  line=$(python3 - "$results" "$cond" "$kind" "$r" "$rc" "$out" "$reload_json" \
    "$((after_ok - before_ok))" "$((after_fail - before_fail))" "$checks_before" "$checks_after" \
    "$((cpu1 - cpu0))" "$clk_tck" <<'PY'
import json, sys
results, cond, kind, rnd, rc, out, reload_json, done, bad, cb, ca, ticks, tck = sys.argv[1:14]
row = {"cond": cond, "kind": kind, "round": int(rnd), "rc": int(rc), "ok": False}
try:
    run = json.loads(open(out).read().strip().splitlines()[-1])
    row.update(rps=run["ops_per_sec"], p50=run["p50_us"], p99=run["p99_us"],
               p999=run["p999_us"], max=run["max_us"], errors=run["errors"])
    if run["ops"]:
        row["cpu_us_per_req"] = round(int(ticks) / int(tck) * 1e6 / run["ops"], 2)
    if cond == "reload":
        row.update(json.loads(reload_json), reloads_done=int(done), reloads_failed=int(bad))
    if cond == "health" and kind == "l4lb":
        b, a = [float(x) for x in cb.split()], [float(x) for x in ca.split()]
        d = [y - x for x, y in zip(b, a)]  # success, failure, timeout, seconds
        row.update(checks_per_s=round(sum(d[:3]) / d[3], 1), check_failures=int(d[1] + d[2]))
    row["ok"] = row["rc"] == 0 and row["rps"] > 0
except Exception as e:
    row["error"] = f"{type(e).__name__}: {e}"
with open(results, "a") as f:
    f.write(json.dumps(row) + "\n")
print(("ok " if row["ok"] else "FAILED ") + json.dumps(row))
PY
)
  echo "  round $r $cond $kind: $line" >&2
  case "$line" in FAILED*) failed=$((failed + 1)) ;; esac
}

echo "measuring: $ROUNDS rounds of ${DURATION}s runs (${CONDITIONS[*]} x ${KINDS[*]})" >&2
for r in $(seq "$ROUNDS"); do
  for cond in "${CONDITIONS[@]}"; do
    for kind in "${KINDS[@]}"; do
      if [ "$cond" = health ] && [ "$kind" = nginx ]; then continue; fi
      run_one "$cond" "$kind" "$r"
      sleep 1
    done
  done
done

echo "## Under change"
echo
echo "Median of $ROUNDS interleaved rounds, ${DURATION}s per run, loadgen tcp-pingpong --connections $CONNECTIONS --size $SIZE; reloads every ${RELOAD_EVERY}s; $FLEET health-checked backends at 1 s."
echo "Finished $(date '+%Y-%m-%d %H:%M:%S %Z'); load average at end: $(loadavg)."
echo
python3 - "$results" "$ROUNDS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds = int(sys.argv[2])
kinds = [("l4lb", "l4lb"), ("haproxy", "HAProxy"), ("nginx", "nginx")]
conds = ["quiet", "reload", "health"]
def sel(c, k):
    return [r for r in rows if r["cond"] == c and r["kind"] == k and r["ok"]]
def med(c, k, f):
    v = [r[f] for r in sel(c, k) if r.get(f) is not None]
    return statistics.median(v) if v else None
print("| balancer | condition | req/s | p50 (µs) | p99 (µs) | p99 ÷ quiet p99 | balancer CPU µs per request | client errors | reloads done / requested |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for k, label in kinds:
    q99 = med("quiet", k, "p99")
    for c in conds:
        if c == "health" and k == "nginx":
            print(f"| {label} | health | n/a | n/a | n/a | n/a | n/a | n/a | no active checks in nginx open source |")
            continue
        got = sel(c, k)
        n = len(got)
        if not n:
            print(f"| {label} | {c} | failed | | | | | | |")
            continue
        rps, p50, p99 = med(c, k, "rps"), med(c, k, "p50"), med(c, k, "p99")
        ratio = f"{p99 / q99:.2f}" if q99 else "n/a"
        errs = sum(r.get("errors", 0) for r in got)
        rel = "—"
        if c == "reload":
            done = sum(r.get("reloads_done", 0) for r in got)
            req = sum(r.get("requested", 0) for r in got)
            bad = sum(r.get("reloads_failed", 0) + r.get("request_failed", 0) for r in got)
            rel = f"{done} / {req}" + (f" ({bad} failed)" if bad else "")
        note = "" if n == rounds else f" ({n}/{rounds} runs)"
        cpu = med(c, k, "cpu_us_per_req")
        cpu = "n/a" if cpu is None else f"{cpu:.2f}"
        print(f"| {label} | {c} | {rps:.0f}{note} | {p50:.1f} | {p99:.1f} | {ratio} | {cpu} | {errs} | {rel} |")
print()
print("Per round (p99 µs; reload runs: reloads done/requested):")
print()
print("| balancer | condition | " + " | ".join(f"round {i}" for i in range(1, rounds + 1)) + " |")
print("|---|---|" + "---|" * rounds)
for k, label in kinds:
    for c in conds:
        cells = []
        for i in range(1, rounds + 1):
            r = [x for x in rows if x["cond"] == c and x["kind"] == k and x["round"] == i]
            if not r:
                cells.append("n/a")
                continue
            r = r[0]
            if not r["ok"]:
                cells.append("failed")
                continue
            cell = f"{r['p99']:.0f}"
            if c == "reload":
                cell += f" ({r.get('reloads_done')}/{r.get('requested')})"
            if c == "health" and "checks_per_s" in r:
                cell += f" ({r['checks_per_s']:.0f} checks/s, {r['check_failures']} failed)"
            cells.append(cell)
        if all(x == "n/a" for x in cells):
            continue
        print(f"| {label} | {c} | " + " | ".join(cells) + " |")
bad = [r for r in rows if not r["ok"]]
print()
print(f"- failed runs: {len(bad)}" + "".join(
    f"\n  - round {r['round']} {r['cond']} {r['kind']}: rc {r['rc']} {r.get('error', '')}" for r in bad))
PY

echo
echo "Logs:"
for f in "$work"/*-l4lb-*.log; do
  n=$(grep -cE ' (WARN|ERROR) ' "$f" || true)
  if [ "${n:-0}" -gt 0 ]; then
    echo "- $(basename "$f"): $n warn/error line(s)"
    grep -E ' (WARN|ERROR) ' "$f" | sed -n '1,3p' | cut -c1-300 | sed 's/^/    /'
  fi
done
for f in "$work"/*-haproxy-*.log; do
  # A worker stopped with SIGTERM at the end of each run is expected.
  # and so is the start-up warning that 20000 descriptors are fewer than maxconn 20000 wants.
  n=$(grep -E '\[ALERT\]' "$f" | grep -vcE 'exited with code 143|FD limit' || true)
  if [ "${n:-0}" -gt 0 ]; then
    echo "- $(basename "$f"): $n alert line(s)"
    grep -E '\[ALERT\]' "$f" | grep -vE 'exited with code 143|FD limit' | sed -n '1,3p' | cut -c1-300 | sed 's/^/    /'
  fi
done
for f in "$work"/*-nginx-*-error.log; do
  n=$(grep -cE '\[(warn|error|crit|alert|emerg)\]' "$f" || true)
  if [ "${n:-0}" -gt 0 ]; then
    echo "- $(basename "$f"): $n warn-or-worse line(s)"
    grep -E '\[(warn|error|crit|alert|emerg)\]' "$f" | sed -n '1,3p' | cut -c1-300 | sed 's/^/    /'
  fi
done
[ "$failed" -eq 0 ] || die "$failed run(s) failed; see above"
