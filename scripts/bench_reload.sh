#!/usr/bin/env bash
# Reloads at scale, side by side: how long l4lb, HAProxy and nginx (stream)
# take from the operator's reload command to the first client served by the
# new configuration, whether any client is refused or served by the old one
# meanwhile, and what their processes hold in memory, with many services or
# many backends.
#
# Usage: scripts/bench_reload.sh
#   env SERVICE_COUNTS="10 1000"   services (3 backends each) for the rows
#       BACKEND_COUNTS="10000"     backends in one service for the rows
#       RELOADS=5                  reloads per balancer and configuration
#       KEEP=1                     keep the work directory at exit
#
# Each configuration has, besides its N services (each on its own loopback
# address, all on one port; backends 127.0.1.1, 127.0.1.2, ... on one port,
# served by one `loadgen echo-server`) or its one service of N backends, a
# "probe" service on 127.0.0.1 with one backend: one of two python3 servers
# that answer every connection with their tag ("A" or "B") and close. Each
# reload rewrites the file with the probe's backend switched to the other tag
# (nothing else changes), then runs the reload as an operator would:
#   l4lb:    SIGHUP to its pid;
#   HAProxy: master-worker (`haproxy -W`), the Debian unit's reload:
#            `haproxy -c -q -f cfg`, then SIGUSR2 to the master;
#   nginx:   `nginx -s reload`.
# From just before that command, a python3 client connects to the probe every
# millisecond or so. "Reload to effect" is the time to the first answer with the
# new tag. Then it goes on for 300 ms more and counts answers with the old tag
# (stale: an old process still accepting). Connects refused, reset or closed
# without a tag from the command to the end are counted as failed probes.
# "Start" is from launching the balancer to the probe's first tagged answer.
# RSS is the summed VmRSS of the balancer's processes 1 s after that, and again
# 2 s after the last reload (HAProxy's and nginx's old workers have exited by
# then: the probes hold no connection).
#
# Installs haproxy, nginx and libnginx-mod-stream when missing (system services
# kept from starting), builds the release l4lb and loadgen under `nice -n 19`,
# copies them into the work directory (/tmp/bench-reload.XXXXXX), stops every
# process it started by PID at exit. Exits non-zero when any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."
me=bench_reload.sh
# shellcheck source=scripts/bench_lib.sh
. scripts/bench_lib.sh

SERVICE_COUNTS="${SERVICE_COUNTS:-10 1000}"
BACKEND_COUNTS="${BACKEND_COUNTS:-10000}"
RELOADS="${RELOADS:-5}"
[[ "$RELOADS" =~ ^[1-9][0-9]*$ ]] || die "RELOADS must be a positive integer, got '$RELOADS'"
for n in $SERVICE_COUNTS $BACKEND_COUNTS; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "counts must be positive integers, got '$n'"
done
for n in $SERVICE_COUNTS; do
  [ "$n" -le 5000 ] || die "SERVICE_COUNTS: at most 5000 (listening sockets per process), got $n"
done

bench_packages
bench_workdir bench-reload
bench_build
ulimit -n 20000 2>/dev/null || true

echo "## Machine"
echo
echo "- CPU: $(nproc) cores, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
echo "- l4lb: $("$l4lb" --version); $(haproxy -v | head -n1); $(nginx -v 2>&1)"
echo "- started: $(date '+%Y-%m-%d %H:%M:%S %Z'); load average at start: $(loadavg)"
echo

read -r -a ports <<<"$(free_ports 6)"
[ "${#ports[@]}" -eq 6 ] || die "could not find 6 free loopback ports"
read -r fleet_port tag_a tag_b listen_port probe_port admin_port <<<"${ports[*]}"

"$loadgen" echo-server --listen "0.0.0.0:$fleet_port" --tcp 2>"$work/echo-fleet.log" &
pids+=($!)
cat >"$work/tags.py" <<'PY'
"""tags.py PORT_A PORT_B: on 127.0.0.1:PORT_A every connection gets "A\n", on
PORT_B "B\n", then is closed."""
import socket, sys, threading
def serve(port, tag):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1024)
    while True:
        c, _ = s.accept()
        try:
            c.sendall(tag)
        except OSError:
            pass
        c.close()
threading.Thread(target=serve, args=(int(sys.argv[1]), b"A\n"), daemon=True).start()
serve(int(sys.argv[2]), b"B\n")
PY
python3 "$work/tags.py" "$tag_a" "$tag_b" 2>"$work/tags.log" &
pids+=($!)
wait_echo tcp "$fleet_port" 127.0.1.1
wait_listening "$tag_a"
wait_listening "$tag_b"

cat >"$work/probe.py" <<'PY'
"""probe.py PORT TAG TIMEOUT [COMMAND]: runs COMMAND (a shell line) if given, then connects to
127.0.0.1:PORT over and over until an answer is TAG (or TIMEOUT s pass), then 300
ms more. Prints one JSON line: ms from before COMMAND to the first TAG and
that moment's wall-clock time, the command's own ms, answers with another tag after the first TAG, failed probes."""
import json, socket, subprocess, sys, time
port, want, timeout = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
command = sys.argv[4] if len(sys.argv) > 4 else None
def ask():
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(16)
                if not chunk:
                    break
                data += chunk
            return data.decode().strip() or None
    except OSError:
        return None
t0 = time.monotonic()
command_ms = None
if command:
    subprocess.run(command, shell=True, check=True, stdout=subprocess.DEVNULL, timeout=60)
    command_ms = (time.monotonic() - t0) * 1000
effect = None
stale = failed = 0
while time.monotonic() - t0 < timeout:
    tag = ask()
    now = time.monotonic()
    if tag is None:
        failed += 1
    elif tag == want and effect is None:
        effect = now
    elif tag != want and effect is not None:
        stale += 1
    if effect is not None and now - effect >= 0.3:
        break
    time.sleep(0.001)
print(json.dumps({"effect_ms": None if effect is None else round((effect - t0) * 1000, 2),
                  "effect_at": None if effect is None else time.time() - (time.monotonic() - effect),
                  "command_ms": None if command_ms is None else round(command_ms, 2),
                  "stale": stale, "failed": failed}))
PY

# write_config KIND NAME SHAPE N TAG-PORT: SHAPE services (N services of 3
# backends) or backends (one service of N backends), and the probe service
# whose backend is on TAG-PORT; to $work/NAME.toml, .cfg or .conf.
write_config() {
  local kind=$1 name=$2 shape=$3 n=$4 tag_port=$5 file
  case "$kind" in l4lb) file=$work/$name.toml ;; haproxy) file=$work/$name.cfg ;; *) file=$work/$name.conf ;; esac
  "write_$kind" "$shape" "$n" "$tag_port" "$name" >"$file.tmp"
  mv "$file.tmp" "$file"
}
service_addr() { echo "127.1.$(($1 / 250)).$((1 + $1 % 250))"; } # I: service I's listening address

write_l4lb() { # SHAPE N TAG-PORT NAME
  local shape=$1 n=$2 i j
  printf '[admin]\nlisten = "127.0.0.1:%s"\n\n' "$admin_port"
  printf '[global]\nworkers = 2\nshutdown_grace = "2s"\ncontrol_socket = "%s"\n' "$work/$4.sock"
  if [ "$shape" = services ]; then
    for ((i = 0; i < n; i++)); do
      printf '\n[[service]]\nname = "s%d"\nlisten = "%s:%s"\n' "$i" "$(service_addr "$i")" "$listen_port"
      for j in 1 2 3; do printf '[[service.backend]]\naddress = "127.0.1.%d:%s"\n' "$j" "$fleet_port"; done
    done
  else
    printf '\n[[service]]\nname = "big"\nlisten = "127.0.0.1:%s"\n' "$listen_port"
    for ((i = 0; i < n; i++)); do
      printf '[[service.backend]]\naddress = "%s:%s"\n' "$(fleet_addr "$i")" "$fleet_port"
    done
  fi
  printf '\n[[service]]\nname = "probe"\nlisten = "127.0.0.1:%s"\n' "$probe_port"
  printf '[[service.backend]]\naddress = "127.0.0.1:%s"\n' "$3"
}

write_haproxy() { # SHAPE N TAG-PORT NAME
  local shape=$1 n=$2 i j
  printf 'global\n    nbthread 2\n    maxconn 20000\n    pidfile %s\n    no strict-limits\n\n' "$work/$4.pid"
  printf 'defaults\n    mode tcp\n    balance roundrobin\n    maxconn 20000\n'
  printf '    timeout connect 3s\n    timeout client 1h\n    timeout server 1h\n'
  if [ "$shape" = services ]; then
    for ((i = 0; i < n; i++)); do
      printf '\nlisten s%d\n    bind %s:%s\n' "$i" "$(service_addr "$i")" "$listen_port"
      for j in 1 2 3; do printf '    server b%d 127.0.1.%d:%s\n' "$j" "$j" "$fleet_port"; done
    done
  else
    printf '\nlisten big\n    bind 127.0.0.1:%s\n' "$listen_port"
    for ((i = 0; i < n; i++)); do printf '    server b%d %s:%s\n' "$i" "$(fleet_addr "$i")" "$fleet_port"; done
  fi
  printf '\nlisten probe\n    bind 127.0.0.1:%s\n    server tag 127.0.0.1:%s\n' "$probe_port" "$3"
}

write_nginx() { # SHAPE N TAG-PORT NAME
  local shape=$1 n=$2 i j
  printf 'load_module %s;\nworker_processes 2;\ndaemon off;\n' "$stream_so"
  printf 'pid %s;\nerror_log %s notice;\n' "$work/$4.pid" "$work/$4-error.log"
  printf 'events { worker_connections 20000; }\nworker_rlimit_nofile 20000;\n'
  printf 'stream {\n    proxy_timeout 1h;\n    proxy_connect_timeout 3s;\n'
  if [ "$shape" = services ]; then
    for ((i = 0; i < n; i++)); do
      printf '    upstream s%d {' "$i"
      for j in 1 2 3; do printf ' server 127.0.1.%d:%s;' "$j" "$fleet_port"; done
      printf ' }\n    server { listen %s:%s; proxy_pass s%d; }\n' "$(service_addr "$i")" "$listen_port" "$i"
    done
  else
    printf '    upstream big {\n'
    for ((i = 0; i < n; i++)); do printf '        server %s:%s;\n' "$(fleet_addr "$i")" "$fleet_port"; done
    printf '    }\n    server { listen 127.0.0.1:%s; proxy_pass big; }\n' "$listen_port"
  fi
  printf '    upstream probe { server 127.0.0.1:%s; }\n' "$3"
  printf '    server { listen 127.0.0.1:%s; proxy_pass probe; }\n}\n' "$probe_port"
}

check_config() { # KIND NAME
  case "$1" in
    l4lb) "$l4lb" check "$work/$2.toml" >/dev/null ;;
    haproxy) haproxy -q -c -f "$work/$2.cfg" >/dev/null ;;
    nginx) nginx -q -t -p "$work/nginx/" -c "$work/$2.conf" -e "$work/$2-error.log" ;;
  esac
}

start_balancer() { # KIND NAME: starts it; sets started_pid
  case "$1" in
    l4lb) "$l4lb" run "$work/$2.toml" >>"$work/$2.log" 2>&1 & ;;
    haproxy) haproxy -W -db -f "$work/$2.cfg" >>"$work/$2.log" 2>&1 & ;;
    nginx) nginx -p "$work/nginx/" -c "$work/$2.conf" -e "$work/$2-error.log" >>"$work/$2.log" 2>&1 & ;;
  esac
  started_pid=$!
  pids+=("$started_pid")
}

reload_command() { # KIND NAME PID: the operator's reload, as a command line
  case "$1" in
    l4lb) echo "kill -HUP $3" ;;
    haproxy) echo "haproxy -c -q -f $work/$2.cfg && kill -USR2 $3" ;;
    nginx) echo "nginx -q -p $work/nginx/ -c $work/$2.conf -e $work/$2-error.log -s reload" ;;
  esac
}

results="$work/results.jsonl"
: >"$results"
failed=0
record() { # JSON: appends one result line
  echo "$1" >>"$results"
  echo "  $1" >&2
  case "$1" in *'"ok": false'*) failed=$((failed + 1)) ;; esac
}

run_one() { # KIND SHAPE N
  local kind=$1 shape=$2 n=$3 name="$1-$2-$3" pid t0 start rss0 rss1 tag port probes=()
  write_config "$kind" "$name" "$shape" "$n" "$tag_a"
  check_config "$kind" "$name"
  t0=$(date +%s.%N)
  start_balancer "$kind" "$name"
  pid=$started_pid
  start=$(python3 "$work/probe.py" "$probe_port" A 120)
  start=$(python3 -c 'import json, sys
at = json.loads(sys.argv[1])["effect_at"]
print("null" if at is None else round(at - float(sys.argv[2]), 3))' "$start" "$t0")
  if [ "$start" = null ] || ! alive "$pid"; then
    record "{\"kind\": \"$kind\", \"shape\": \"$shape\", \"n\": $n, \"ok\": false, \"error\": \"never served\"}"
    forget_pid "$pid"
    return
  fi
  sleep 1
  rss0=$(tree_rss "$pid")
  tag=A
  for _ in $(seq "$RELOADS"); do
    if [ "$tag" = A ]; then tag=B port=$tag_b; else tag=A port=$tag_a; fi
    write_config "$kind" "$name" "$shape" "$n" "$port"
    probes+=("$(python3 "$work/probe.py" "$probe_port" "$tag" 60 "$(reload_command "$kind" "$name" "$pid")")")
    sleep 0.5
  done
  sleep 2
  rss1=$(tree_rss "$pid")
  forget_pid "$pid"
  record "$(python3 -c '
import json, sys
kind, shape, n, start_s, rss0, rss1 = sys.argv[1:7]
probes = [json.loads(p) for p in sys.argv[7:]]
effects = [p["effect_ms"] for p in probes]
row = {"kind": kind, "shape": shape, "n": int(n), "start_s": float(start_s),
       "rss_kib": int(rss0), "rss_after_kib": int(rss1), "effect_ms": effects,
       "command_ms": [p["command_ms"] for p in probes],
       "stale": sum(p["stale"] for p in probes), "failed": sum(p["failed"] for p in probes)}
row["ok"] = all(e is not None for e in effects)
print(json.dumps(row))' "$kind" "$shape" "$n" "$start" "$rss0" "$rss1" "${probes[@]}")"
}

echo "services: $SERVICE_COUNTS; backends: $BACKEND_COUNTS; $RELOADS reloads each" >&2
for n in $SERVICE_COUNTS; do
  for kind in l4lb haproxy nginx; do run_one "$kind" services "$n"; sleep 1; done
done
for n in $BACKEND_COUNTS; do
  for kind in l4lb haproxy nginx; do run_one "$kind" backends "$n"; sleep 1; done
done

echo "## Reloads at scale (${RELOADS} reloads per row)"
echo
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = {"l4lb": "l4lb", "haproxy": "HAProxy", "nginx": "nginx"}
print("| configuration | balancer | start to first answer (s) | RSS (MiB) | RSS after reloads (MiB) "
      "| reload to effect, median (ms) | min–max (ms) | of which the command, median (ms) | stale answers | failed probes |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    label = (f"{r['n']} services × 3 backends" if r["shape"] == "services"
             else f"1 service × {r['n']} backends")
    if not r["ok"]:
        print(f"| {label} | {names[r['kind']]} | failed: {r.get('error', 'a reload never took effect')} | | | | | | | |")
        continue
    e = r["effect_ms"]
    print(f"| {label} | {names[r['kind']]} | {r['start_s']:.2f} | {r['rss_kib'] / 1024:.1f} | "
          f"{r['rss_after_kib'] / 1024:.1f} | {statistics.median(e):.1f} | {min(e):.1f}–{max(e):.1f} | "
          f"{statistics.median(r['command_ms']):.1f} | {r['stale']} | {r['failed']} |")
print()
print("Reload to effect: from the start of the reload command (HAProxy's includes its `haproxy -c`) "
      "to the first probe served by the new configuration; the command: until the reload command "
      "returned (l4lb: `kill -HUP`; HAProxy: `haproxy -c` and `kill -USR2`; nginx: `nginx -s reload`). Stale: probes served by the old one after "
      "that, within 300 ms. Failed: probes refused, reset or closed unanswered, from the command on.")
PY
echo
echo "- finished: $(date '+%Y-%m-%d %H:%M:%S %Z'); load average at end: $(loadavg)"
[ "$failed" -eq 0 ] || die "$failed rows failed"
