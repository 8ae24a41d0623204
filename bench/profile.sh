#!/usr/bin/env bash
# Where a bulk transfer's client CPU goes: one transfer through a `local` forward (tunneld, or
# OpenSSH's ssh -N -L for comparison) against a throwaway sshd on loopback, with the client's
# CPU seconds per GiB, and optionally a profile of the client while it runs.
#
#   bench/profile.sh [up|down|duplex] [CIPHER] [MIB]  (default: down aes128-gcm@openssh.com 1024)
#   CLIENT=ssh bench/profile.sh ...                OpenSSH's ssh instead of tunneld
#   PROFILE=perf bench/profile.sh ...              perf record -e cpu-clock (this VM has no
#                                                  hardware counters); prints the top symbols
#     PERF_EVENT=page-faults PERF_ARGS="-c 1 --call-graph dwarf" PERF_DATA=FILE: another event,
#     other options, and perf.data kept in FILE for `perf report -i FILE`
#   PROFILE=strace bench/profile.sh ...            strace -c: the system calls, counted
#   PROFILE=stat bench/profile.sh ...              perf stat: CPU time, context switches, CPU
#                                                  migrations and page faults of the client
#   TUNNELD_BIN=PATH                               the binary (otherwise the release build)
#
# `up` sends from the client through the forward to a sink; `down` reads from a source behind
# it; `duplex` sends MIB through it to an echo server and reads them back at the same time (its
# figures are per GiB each way). perf needs symbols, which the release binary strips. An
# optimised binary that keeps them:
#   CARGO_PROFILE_MEASURE_STRIP=none CARGO_PROFILE_MEASURE_DEBUG=line-tables-only \
#       cargo build --profile measure --bin tunneld
# A profile's percentages hold under load; CPU seconds per GiB move by 10-20 % from run to run
# on a busy machine, so compare medians of several runs (docs/performance.md, "Where a
# transfer's CPU goes").
set -euo pipefail
cd "$(dirname "$0")/.."
direction=${1:-down}; cipher=${2:-aes128-gcm@openssh.com}; mib=${3:-1024}
case $direction in up|down|duplex) ;; *) echo "bench/profile.sh: up, down or duplex, not $direction" >&2; exit 2 ;; esac
bytes=$((mib << 20))

# shellcheck source=bench/lib.sh
. bench/lib.sh
[ "${CLIENT:-tunneld}" = ssh ] || release_tunneld
bench_init tunneld-profile
# shellcheck disable=SC2119 # no extra sshd_config lines
start_sshd
target=$(free_port); forward=$(free_port)
# The server behind the forward, and traffic.py's client mode for the direction.
case $direction in
    up) mode=bulk
        python3 bench/traffic.py servers "$target" "$(free_port)" "$(free_port)" "$(free_port)" & traffic=$! ;;
    duplex) mode=duplex
        python3 bench/traffic.py servers "$(free_port)" "$target" "$(free_port)" "$(free_port)" & traffic=$! ;;
    down) mode=drain
        python3 bench/traffic.py source "$target" "$bytes" & traffic=$! ;;
esac
pids+=("$traffic")

if [ "${CLIENT:-tunneld}" = ssh ]; then
    ssh -N -F /dev/null -o BatchMode=yes -o UserKnownHostsFile="$work/known_hosts" \
        -o Ciphers="$cipher" -i "$work/client" -p "$ssh_port" \
        -L "$forward:127.0.0.1:$target" "$(id -un)@127.0.0.1" 2>"$work/client.log" & client=$!
else
    { bench_hosts_toml; cat <<CFG; } > "$work/tunneld.toml"
[tunnels.profile]
host = "bench"
ciphers = ["$cipher"]
local = ["$forward:127.0.0.1:$target"]
CFG
    "$tunneld" run --config "$work/tunneld.toml" 2>"$work/client.log" & client=$!
fi
pids+=("$client")
# Not wait_port on the forward: a probe through it would start a download from the source.
for _ in $(seq 600); do
    ss -Hltn "sport = :$forward" | grep -q . && ss -Hltn "sport = :$target" | grep -q . && break
    sleep 0.05
done

# PROFILE_TARGET=sshd: the server's side of the same transfer, its processes for this session.
profiled=$client
if [ "${PROFILE_TARGET:-client}" = sshd ]; then
    for _ in $(seq 600); do
        sessions=$(pgrep -d, -P "$sshd_pid" || true)
        [ -z "$sessions" ] || break
        sleep 0.05
    done
    [ -n "$sessions" ] || { echo "bench/profile.sh: the client never logged in to sshd" >&2; exit 1; }
    profiled=$sessions
    while grandchildren=$(pgrep -d, -P "$sessions"); do sessions=$grandchildren; profiled+=",$sessions"; done
fi

case ${PROFILE:-} in
    perf) read -r -a perf_args <<< "${PERF_ARGS:--F 2000}"
          perf record -q -e "${PERF_EVENT:-cpu-clock}" "${perf_args[@]}" -p "$profiled" \
              -o "$work/perf.data" 2>/dev/null & profiler=$! ;;
    strace) read -r -a strace_pids <<< "${profiled//,/ -p }"
            strace -f -c -p "${strace_pids[@]}" -o "$work/strace.txt" 2>/dev/null & profiler=$! ;;
    stat) perf stat -e task-clock,context-switches,cpu-migrations,page-faults -p "$profiled" \
              -o "$work/stat.txt" 2>/dev/null & profiler=$! ;;
    '') profiler= ;;
    *) echo "bench/profile.sh: PROFILE is perf, strace or stat, not $PROFILE" >&2; exit 2 ;;
esac
[ -z "$profiler" ] || sleep 0.5 # the profiler attaches

budget="sshd=$sshd_pid,traffic=$traffic"
result=$(python3 bench/traffic.py "$mode" "$forward" "$bytes" --cpu "$client" --budget "$budget")
{ read -r mbs; read -r cpu; read -r _ sshd; read -r _ server; read -r _ driver; read -r _ machine
  read -r _ other; read -r _ busy; read -r _ stolen; } <<<"$result"
echo "${CLIENT:-tunneld} $direction $cipher $mib MiB: $mbs MB/s, client CPU $cpu s/GiB"
# Everyone's CPU per GiB: on loopback they share the same cores, so when the machine is busy
# all the time, throughput is its core count divided by the sum (docs/performance.md).
echo "  s/GiB: client $cpu, sshd $sshd, traffic $server + $driver, other $other;" \
    "machine $machine, busy $busy % of $(nproc) cores, $stolen % stolen by the VM's host"

if [ -n "$profiler" ]; then
    kill -INT "$profiler"; wait "$profiler" 2>/dev/null || true
    case $PROFILE in
        perf) [ -z "${PERF_DATA:-}" ] || cp "$work/perf.data" "$PERF_DATA"
              perf report -i "$work/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null |
                  grep '%' | head -n 30 ;;
        strace) head -n 15 "$work/strace.txt" ;;
        stat) grep -E 'task-clock|switches|migrations|faults' "$work/stat.txt" ;;
    esac
fi
