# Shared helpers for scripts/bench.sh, scripts/bench_change.sh,
# scripts/bench_scale.sh and scripts/bench_reload.sh (sourced, not run). The approach: packages installed
# without starting their system services, release binaries copied into a work
# directory under /tmp, every process started here stopped by PID at exit,
# free loopback ports checked before use.
#
# The sourcing script sets `me` (its name, for messages) before sourcing, then
# calls, in order: bench_packages, bench_workdir PREFIX, bench_build.
# After that: $work, $l4lb, $loadgen, $stream_so, the array `pids` (stopped at
# exit, last first) and the functions below.
# shellcheck shell=bash

die() { echo "${me:-bench}: $*" >&2; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
stream_so=/usr/lib/nginx/modules/ngx_stream_module.so

# --- packages -----------------------------------------------------------------
# Stops and disables a system service that a package install started.
stop_system_service() {
  local svc=$1 pidfile="/run/$1.pid" pid
  if [ -s "$pidfile" ]; then
    pid=$(cat "$pidfile")
    if [ -e "/proc/$pid" ]; then
      echo "stopping the system $svc (pid $pid) started by the package install" >&2
      kill -TERM "$pid" 2>/dev/null || true
    fi
  fi
  if command -v systemctl >/dev/null 2>&1; then
    systemctl stop "$svc" >/dev/null 2>&1 || true
    systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
  if command -v update-rc.d >/dev/null 2>&1; then
    update-rc.d "$svc" disable >/dev/null 2>&1 || true
  fi
}

# bench_packages [TOOL...]: installs haproxy, nginx and libnginx-mod-stream when
# missing, with policy-rc.d keeping their services from starting; each TOOL
# (a command shipped by the package of the same name, e.g. iperf3) likewise.
# shellcheck disable=SC2120 # the TOOLs are optional
bench_packages() {
  local need=() own_policy=0 install_rc=0 pkg tool
  command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
  command -v nginx >/dev/null 2>&1 || need+=(nginx)
  [ -f "$stream_so" ] || need+=(libnginx-mod-stream)
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
  done
  if [ "${#need[@]}" -gt 0 ]; then
    echo "installing: ${need[*]}" >&2
    timeout 300 apt-get update -qq
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
      "${need[@]}" >/dev/null || install_rc=$?
    if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    [ "$install_rc" -eq 0 ] || exit "$install_rc"
    for pkg in "${need[@]}"; do
      case "$pkg" in haproxy | nginx) stop_system_service "$pkg" ;; esac
    done
  fi
  [ -f "$stream_so" ] || die "missing $stream_so"
  for tool in haproxy nginx python3 ss timeout "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "missing $tool"
  done
}

# --- work directory and processes ---------------------------------------------
pids=()
work=

# bench_workdir PREFIX: creates $work (/tmp/PREFIX.XXXXXX) with the helper
# scripts proctree.py and holder.py, and the exit trap that stops every process
# in `pids` and removes $work (kept with KEEP=1 or on failure).
bench_workdir() {
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  mkdir -p "$work/raw" "$work/nginx"
  trap bench_cleanup EXIT
  cat >"$work/proctree.py" <<'PY'
"""proctree.py pids|rss|cpu|times ROOT: ROOT and all its descendants (from
/proc/*/status PPid). `rss`: summed VmRSS in KiB and the number of processes;
`cpu`: summed utime+stime+cutime+cstime in clock ticks and the number of
processes; `times`: summed utime and stime (without exited children), in
seconds: "USER SYSTEM"."""
import os, sys

def status(pid):
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except OSError:
        pass
    return fields

def ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        # fields 14-17: utime, stime, and those of waited-for children (a
        # worker that exited, e.g. after a reload, still counts)
        return sum(int(x) for x in rest[11:15])
    except (OSError, IndexError, ValueError):
        return 0

mode, root = sys.argv[1], int(sys.argv[2])
children = {}
for entry in os.listdir("/proc"):
    if entry.isdigit():
        ppid = status(entry).get("PPid")
        if ppid is not None:
            children.setdefault(int(ppid), []).append(int(entry))
tree, todo = [], [root]
while todo:
    pid = todo.pop()
    if os.path.exists(f"/proc/{pid}"):
        tree.append(pid)
    todo.extend(children.get(pid, []))
if mode == "pids":
    print(*tree)
elif mode == "rss":
    print(sum(int(status(p).get("VmRSS", "0 kB").split()[0]) for p in tree), len(tree))
elif mode == "times":
    user = system = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11]); system += int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    tick = os.sysconf("SC_CLK_TCK")
    print(f"{user / tick:.3f} {system / tick:.3f}")
else:
    print(sum(ticks(p) for p in tree), len(tree))
PY
  cat >"$work/holder.py" <<'PY'
"""holder.py HOST PORT N HOLD_S: opens N TCP connections, echoes one byte on
each (proof that each one reaches the backend), prints `ready N`, then holds
them idle for HOLD_S seconds or until killed."""
import socket, sys, time
host, port, n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
held = []
while len(held) < n:
    batch = []
    for _ in range(min(100, n - len(held))):
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"x")
        batch.append(s)
    for s in batch:
        if s.recv(1) != b"x":
            sys.exit("wrong echo")
    held.extend(batch)
print("ready", len(held), flush=True)
time.sleep(hold)
PY
}

bench_cleanup() {
  local rc=$? i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[$i]}"; done
  if [ -n "$work" ]; then
    if [ "$rc" -ne 0 ] || [ "${KEEP:-0}" = 1 ]; then
      echo "work directory kept: $work" >&2
    else
      rm -rf "$work"
    fi
  fi
}

alive() { # pid: running (not a zombie)
  local state
  [ -r "/proc/$1/stat" ] || return 1
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# stop_pid PID: stops a process this script started, and its descendants, by PID.
stop_pid() {
  local pid=$1 tree p
  tree=$(python3 "$work/proctree.py" pids "$pid" 2>/dev/null || true)
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
  fi
  for p in $tree; do
    if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
  done
  wait "$pid" 2>/dev/null || true
}

# forget_pid PID: stops PID and takes it off the exit list.
forget_pid() {
  local pid=$1 i
  stop_pid "$pid"
  for i in "${!pids[@]}"; do
    if [ "${pids[$i]}" = "$pid" ]; then unset 'pids[i]'; fi
  done
  pids=("${pids[@]}")
}

# tree_rss PID / tree_ticks PID: summed VmRSS (KiB) / CPU time (ticks, with
# that of exited children) of PID and its descendants.
tree_rss() { python3 "$work/proctree.py" rss "$1" | cut -d' ' -f1; }
tree_ticks() { python3 "$work/proctree.py" cpu "$1" | cut -d' ' -f1; }
# tree_times PID: "USER SYSTEM" CPU seconds of PID and its descendants (without
# exited children).
tree_times() { python3 "$work/proctree.py" times "$1"; }

# --- binaries -----------------------------------------------------------------
# bench_build: release l4lb and the loadgen example, built under `nice -n 19`
# (honours CARGO_TARGET_DIR) and copied into $work, so a concurrent rebuild
# cannot swap them mid-run.
bench_build() {
  local target_dir="${CARGO_TARGET_DIR:-target}"
  nice -n 19 cargo build --release --quiet
  nice -n 19 cargo build --release --quiet --example loadgen
  cp "$target_dir/release/l4lb" "$work/l4lb"
  cp "$target_dir/release/examples/loadgen" "$work/loadgen"
  # shellcheck disable=SC2034 # used by the sourcing script
  l4lb="$work/l4lb"
  # shellcheck disable=SC2034
  loadgen="$work/loadgen"
}

# --- ports and readiness ------------------------------------------------------
# free_ports N: N ports (20000-29999, below the ephemeral range) that are
# free on 127.0.0.1 and 0.0.0.0 for both TCP and UDP right now.
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
found = []
candidates = list(range(20000, 30000))
random.shuffle(candidates)
for port in candidates:
    ok = True
    for host in ("127.0.0.1", "0.0.0.0"):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind((host, port))
            except OSError:
                ok = False
            finally:
                s.close()
    if ok:
        found.append(port)
    if len(found) == n:
        break
print(*found)
PY
}

# wait_echo tcp|udp PORT [HOST]: waits until an echo answers (about 10 s at most).
wait_echo() {
  local proto=$1 port=$2 host=${3:-127.0.0.1} out args
  case "$proto" in
    tcp) args=(tcp-pingpong --connections 1) ;;
    udp) args=(udp-pingpong --clients 1) ;;
  esac
  for _ in $(seq 40); do
    out=$(timeout 5 "$loadgen" "${args[@]}" --target "$host:$port" \
      --duration 0.2 --size 8 2>/dev/null) || true
    case "$out" in *'"ops":0,'* | '') sleep 0.25 ;; *) return 0 ;; esac
  done
  die "nothing echoes on $proto $host:$port"
}

# wait_listening PORT [TRIES]: waits until something listens on tcp PORT (0.25 s per try).
wait_listening() {
  local port=$1 tries=${2:-40}
  for _ in $(seq "$tries"); do
    [ -n "$(ss -Hltn "sport = :$port")" ] && return 0
    sleep 0.25
  done
  die "nothing listens on tcp port $port"
}

# http_get URL: the body, or nothing (5 s at most).
http_get() {
  timeout 10 python3 -c '
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end="")' "$1" 2>/dev/null || true
}

# fleet_addr I: the I-th (0-based) address of a backend fleet sharing one
# port: 127.0.1.1 .. 127.0.1.250, 127.0.2.1 ..., all on loopback.
fleet_addr() { echo "127.0.$((1 + $1 / 250)).$((1 + $1 % 250))"; }
