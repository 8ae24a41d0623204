#!/usr/bin/env bash
# tunneld beside OpenSSH: the same forwards through tunneld (`tunneld run --config FILE`) and
# through `ssh -N` (autossh for the reconnect row), against one throwaway sshd on loopback, the
# two clients alternating run after run (who goes first alternates too, so that a drift in the
# machine's load does not favour one). Every figure is the median of the runs. The traffic
# comes from bench/traffic.py: 1 MiB buffers, every byte count checked; any failed row (a count
# that does not match, a forward that never came up) makes the script exit non-zero.
#
#   bench/run.sh [--runs N] [--write|--no-write] [--rows LIST]   full size: 5 runs, 1 GiB per
#                                    transfer, writes the table into docs/performance.md
#   bench/run.sh --quick             a few seconds per row, 1 run; prints, never writes (CI)
#   TUNNELD_BIN=/path bench/run.sh   a binary already built (otherwise cargo build --release)
#
# --rows takes a comma-separated subset of: bulk remote dynamic jump zlib iperf duplex latency
# requests startup rss reconnect (in that order whatever the list says).
#
# Only the client's CPU is counted in the CPU rows: utime + stime of the tunneld process, or of
# the ssh process and its children (ssh -J runs the jump's ssh as one), read from /proc before
# and after each transfer. sshd and the traffic generator share the 2 cores but are not counted.
set -euo pipefail
cd "$(dirname "$0")/.."
command_line="bench/run.sh${*:+ $*}"

runs=; quick=0; write=; rows="bulk,remote,dynamic,jump,zlib,iperf,duplex,latency,requests,startup,rss,reconnect"
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1 ;;
        --runs) runs=${2:?--runs needs a number}; shift ;;
        --write) write=1 ;;
        --no-write) write=0 ;;
        --rows) rows=${2:?--rows needs a list}; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    # Small enough that the whole run takes well under a minute on a busy machine: this checks
    # that every row works, not what it measures.
    runs=${runs:-1}; mib=16; duplex_mib=16; zlib_mib=16; iperf_secs=1; conns=20; requests=20; many=5; outage=1
    write=0
else
    runs=${runs:-5}; mib=1024; duplex_mib=256; zlib_mib=256; iperf_secs=5; conns=500; requests=300; many=50; outage=3
    write=${write:-1}
fi
case $runs in ''|*[!0-9]*|0) echo "bench/run.sh: --runs takes a positive number" >&2; exit 2 ;; esac

# shellcheck source=bench/lib.sh
. bench/lib.sh
release_tunneld
for tool in ssh autossh iperf3 curl; do
    command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
bench_init tunneld-run
traffic() { python3 bench/traffic.py "$@"; }
# new_port: a free port not handed out before in this run. free_port alone can return the same
# port twice (it releases it at once): two of 50 ssh -L on one port, and one of them exits.
new_port() {
    local port
    while :; do port=$(free_port); grep -qx "$port" "$work/ports" 2>/dev/null || break; done
    echo "$port" >> "$work/ports"; echo "$port"
}
load() { cut -d' ' -f1-3 /proc/loadavg; }
load_start=$(load)
# The CPU time the VM's host gave to other guests ("steal", the 8th value of /proc/stat's cpu
# line), and all CPU time: a run with some stolen is slower for both clients.
cpu_ticks() { awk '/^cpu / { print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
read -r steal_start ticks_start < <(cpu_ticks)
# The cipher of every row but the chacha20 one: AES-GCM is what both pick on a CPU with AES-NI.
aes=aes128-gcm@openssh.com

# 50 ssh -N processes log in at once in the RSS row: sshd's default MaxStartups (10:30:100)
# would drop some of them.
start_sshd "MaxStartups 200:30:400" "MaxSessions 100"
sink_port=$(new_port); echo_port=$(new_port); onebyte_port=$(new_port); web_port=$(new_port)
iperf_port=$(new_port)
# python3 itself, not the traffic function: $! must be the process that cleanup kills.
python3 bench/traffic.py servers "$sink_port" "$echo_port" "$onebyte_port" "$web_port" & pids+=($!)
iperf3 -s -B 127.0.0.1 -p "$iperf_port" >"$work/iperf3.log" 2>&1 & pids+=($!)
# Not wait_port for iperf3: a probe would count as a test's control connection.
for p in "$sink_port" "$echo_port" "$onebyte_port" "$web_port"; do wait_port "$p"; done
for _ in $(seq 200); do ss -Hltn "sport = :$iperf_port" | grep -q . && break; sleep 0.05; done

# One ssh_config for every ssh: -F is passed on to the jump's ssh by -J, -i and -o are not.
# jumphost is the same sshd under another name (tunneld refuses a host as its own jump), with
# the jump's cipher set as tunneld's [hosts.jumphost] sets it.
cat > "$work/ssh_config" <<CFG
Host jumphost
    Ciphers $aes
Host bench jumphost
    HostName 127.0.0.1
    Port $ssh_port
    User $(id -un)
    IdentityFile $work/client
    IdentitiesOnly yes
    UserKnownHostsFile $work/known_hosts
    StrictHostKeyChecking yes
    BatchMode yes
    ExitOnForwardFailure yes
CFG
ssh_cmd=(ssh -F "$work/ssh_config" -N)

# tunneld_config NAME [TOML_LINE...]: $work/NAME.toml, one tunnel to the same sshd.
tunneld_config() {
    local name=$1; shift
    {
        bench_hosts_toml
        printf '[hosts.jumphost]\nhostname = "127.0.0.1"\nport = %s\nciphers = ["%s"]\n' "$ssh_port" "$aes"
        printf '[tunnels.%s]\nhost = "bench"\n' "$name"
        for line in "$@"; do echo "$line"; done
    } > "$work/$name.toml"
}

# start_pair NAME TOML_LINES SSH_ARG...: tunneld ($t_pid) with the tunnel TOML_LINES describe,
# and ssh -N ($o_pid) with SSH_ARGs. Both must carry a local forward to the echo server on
# $t_probe and $o_probe (from new_probes): it returns once both echo.
new_probes() { t_probe=$(new_port); o_probe=$(new_port); }
start_pair() {
    local name=$1 toml=$2; shift 2
    tunneld_config "$name" "$toml"
    "$tunneld" run --config "$work/$name.toml" 2>"$work/tunneld-$name.log" & t_pid=$!; row_pids+=("$t_pid")
    "${ssh_cmd[@]}" "$@" bench 2>"$work/ssh-$name.log" & o_pid=$!; row_pids+=("$o_pid")
    traffic ready 30 "$t_probe" "$o_probe" || {
        echo "the $name tunnels did not come up; tunneld's log, then ssh's:" >&2
        tail -n 5 "$work/tunneld-$name.log" "$work/ssh-$name.log" >&2
        return 1
    }
}
pick() { if [ "$1" = t ]; then echo "$2"; else echo "$3"; fi; }

# alternate FUNCTION: calls FUNCTION t and FUNCTION o, $runs times, the first to go alternating;
# each call prints one line of numbers, collected in $work/v.t and $work/v.o.
alternate() {
    : > "$work/v.t"; : > "$work/v.o"
    local i who order
    for i in $(seq "$runs"); do
        order="t o"; [ $((i % 2)) = 1 ] || order="o t"
        for who in $order; do
            # Not a pipe: FUNCTION runs in this shell, so that what it starts is in $row_pids.
            "$1" "$who" > "$work/line"
            paste -sd' ' "$work/line" >> "$work/v.$who"
        done
    done
}
# result MEASURE BETTER FORMAT [COLUMN]: a table row from the medians of column COLUMN (default 1)
# of $work/v.t and $work/v.o. BETTER: "higher" or "lower".
result() {
    python3 - "$work" "$1" "$2" "$3" "${4:-1}" >> "$work/results" <<'PY'
import statistics, sys
work, measure, better, fmt, col = sys.argv[1:6]
med = lambda who: statistics.median(float(l.split()[int(col) - 1]) for l in open(f"{work}/v.{who}") if l.strip())
t, o = med("t"), med("o")
ratio = f"{t / o:.2f}" if o else "-"
print(f"| {measure} ({better} is better) | {fmt % t} | {fmt % o} | {ratio} |")
PY
}

# ---------------------------------------------------------------- the rows

bulk_once() {  # who: MB/s and CPU s/GiB of one upload through $t_fwd / $o_fwd
    traffic bulk "$(pick "$1" "$t_fwd" "$o_fwd")" "$bytes" "${bulk_opts[@]}" --cpu "$(pick "$1" "$t_pid" "$o_pid")"
}
bulk_rows() {  # LABEL: the two rows of one bulk pair
    alternate bulk_once
    result "$1, MB/s" higher "%.0f" 1
    result "$1, client CPU s/GiB" lower "%.2f" 2
}

row_bulk() {
    local cipher
    bytes=$((mib << 20)); bulk_opts=()
    for cipher in "$aes" chacha20-poly1305@openssh.com; do
        new_probes; t_fwd=$(new_port); o_fwd=$(new_port)
        start_pair "bulk-${cipher%%@*}" "ciphers = [\"$cipher\"]
local = [\"$t_probe:127.0.0.1:$echo_port\", \"$t_fwd:127.0.0.1:$sink_port\"]" \
            -c "$cipher" -L "$o_probe:127.0.0.1:$echo_port" -L "$o_fwd:127.0.0.1:$sink_port"
        bulk_rows "Bulk $mib MiB up through -L, ${cipher%%@*}"
        stop_row
    done
}

row_remote() {
    bytes=$((mib << 20)); bulk_opts=()
    new_probes; t_fwd=$(new_port); o_fwd=$(new_port)
    start_pair remote "ciphers = [\"$aes\"]
local = [\"$t_probe:127.0.0.1:$echo_port\"]
remote = [\"$t_fwd:127.0.0.1:$sink_port\"]" \
        -c "$aes" -L "$o_probe:127.0.0.1:$echo_port" -R "$o_fwd:127.0.0.1:$sink_port"
    # The remote listeners are sshd's: up once the server granted them.
    wait_port "$t_fwd"; wait_port "$o_fwd"
    bulk_rows "Bulk $mib MiB through -R, aes128-gcm"
    stop_row
}

dynamic_once() { bulk_opts=(--socks "$(pick "$1" "$t_socks" "$o_socks")"); bulk_once "$1"; }
row_dynamic() {
    bytes=$((mib << 20))
    new_probes; t_socks=$(new_port); o_socks=$(new_port)
    start_pair dynamic "ciphers = [\"$aes\"]
local = [\"$t_probe:127.0.0.1:$echo_port\"]
dynamic = [\"$t_socks\"]" -c "$aes" -L "$o_probe:127.0.0.1:$echo_port" -D "$o_socks"
    # SOCKS5 CONNECT to localhost:SINK through each proxy (bench/traffic.py).
    t_fwd=$sink_port; o_fwd=$sink_port
    alternate dynamic_once
    result "Bulk $mib MiB through -D (SOCKS5), aes128-gcm, MB/s" higher "%.0f" 1
    result "Bulk $mib MiB through -D (SOCKS5), aes128-gcm, client CPU s/GiB" lower "%.2f" 2
    stop_row
}

row_jump() {
    bytes=$((mib << 20)); bulk_opts=()
    new_probes; t_fwd=$(new_port); o_fwd=$(new_port)
    # The same sshd serves as the jump host and the target.
    start_pair jump "ciphers = [\"$aes\"]
jump = [\"jumphost\"]
local = [\"$t_probe:127.0.0.1:$echo_port\", \"$t_fwd:127.0.0.1:$sink_port\"]" \
        -c "$aes" -J jumphost -L "$o_probe:127.0.0.1:$echo_port" -L "$o_fwd:127.0.0.1:$sink_port"
    bulk_rows "Bulk $mib MiB up through -L via a jump host (-J), aes128-gcm"
    stop_row
}

row_zlib() {
    bytes=$((zlib_mib << 20)); bulk_opts=(--text)
    new_probes; t_fwd=$(new_port); o_fwd=$(new_port)
    start_pair zlib "ciphers = [\"$aes\"]
compression = true
local = [\"$t_probe:127.0.0.1:$echo_port\", \"$t_fwd:127.0.0.1:$sink_port\"]" \
        -c "$aes" -C -L "$o_probe:127.0.0.1:$echo_port" -L "$o_fwd:127.0.0.1:$sink_port"
    bulk_rows "Bulk $zlib_mib MiB of log-like text (zlib shrinks it about 4:1) up through -L, compression on (-C), aes128-gcm"
    stop_row
}

iperf_once() {  # who: Gbit/s received by the iperf3 server with $streams streams
    iperf3 -c 127.0.0.1 -p "$(pick "$1" "$t_fwd" "$o_fwd")" -t "$iperf_secs" -P "$streams" -J | python3 -c '
import json, sys
run = json.load(sys.stdin)
if "error" in run:
    sys.exit("iperf3: " + run["error"])
print("%.3f" % (run["end"]["sum_received"]["bits_per_second"] / 1e9))'
}
row_iperf() {
    new_probes; t_fwd=$(new_port); o_fwd=$(new_port)
    start_pair iperf "ciphers = [\"$aes\"]
local = [\"$t_probe:127.0.0.1:$echo_port\", \"$t_fwd:127.0.0.1:$iperf_port\"]" \
        -c "$aes" -L "$o_probe:127.0.0.1:$echo_port" -L "$o_fwd:127.0.0.1:$iperf_port"
    for streams in 1 4; do
        alternate iperf_once
        result "iperf3 -P $streams through -L, ${iperf_secs} s, aes128-gcm, Gbit/s" higher "%.2f"
    done
    stop_row
}

duplex_once() { traffic duplex "$(pick "$1" "$t_probe" "$o_probe")" $((duplex_mib << 20)); }
row_duplex() {
    new_probes
    start_pair duplex "ciphers = [\"$aes\"]
local = [\"$t_probe:127.0.0.1:$echo_port\"]" -c "$aes" -L "$o_probe:127.0.0.1:$echo_port"
    alternate duplex_once
    result "Full duplex: $duplex_mib MiB sent and echoed back at once through -L, MB/s each way" higher "%.0f"
    stop_row
}

latency_once() { traffic latency "$(pick "$1" "$t_fwd" "$o_fwd")" "$conns"; }
row_latency() {
    new_probes; t_fwd=$(new_port); o_fwd=$(new_port)
    start_pair latency "local = [\"$t_probe:127.0.0.1:$echo_port\", \"$t_fwd:127.0.0.1:$onebyte_port\"]" \
        -L "$o_probe:127.0.0.1:$echo_port" -L "$o_fwd:127.0.0.1:$onebyte_port"
    alternate latency_once
    result "Connect + first byte through -L, p50 of $conns, ms" lower "%.2f" 1
    result "Connect + first byte through -L, p99 of $conns, ms" lower "%.2f" 2
    stop_row
}

# Sequential small HTTP requests (one curl, one keep-alive connection) through -L, -D and -R.
# The web server (bench/traffic.py) writes each response in two pieces, headers then the body
# 1 ms later, as a server that works out its body after sending the headers does, with
# TCP_NODELAY as servers such as nginx set it. sshd then sends two SSH packets, and with Nagle
# on in sshd (it is, for sessions without a pty) the second waits for the client's delayed ACK:
# about 40 ms per request (docs/design.md, pitfall 9). tunneld re-arms TCP_QUICKACK. Without the
# gap both pieces reach sshd at once on loopback and nothing stalls for anyone; the 1 ms caps
# every case below 1000 requests/s.
rate() {  # CURL_PROXY_OPTION URL: requests/s
    local urls=() start end
    for _ in $(seq "$requests"); do urls+=("$2"); done
    start=$(date +%s.%N)
    # $1 is curl's proxy option and its value, or nothing: split on purpose.
    # shellcheck disable=SC2086
    curl --silent --show-error --fail $1 "${urls[@]}" >/dev/null
    end=$(date +%s.%N)
    python3 -c "print(f'{$requests / ($end - $start):.1f}')"
}
requests_once() {
    rate "" "http://127.0.0.1:$(pick "$1" "$t_l" "$o_l")/"
    rate "--socks5-hostname 127.0.0.1:$(pick "$1" "$t_d" "$o_d")" "http://localhost:$web_port/"
    rate "" "http://127.0.0.1:$(pick "$1" "$t_r" "$o_r")/"
}
row_requests() {
    new_probes; t_l=$(new_port); t_d=$(new_port); t_r=$(new_port); o_l=$(new_port); o_d=$(new_port); o_r=$(new_port)
    start_pair requests "local = [\"$t_probe:127.0.0.1:$echo_port\", \"$t_l:127.0.0.1:$web_port\"]
dynamic = [\"$t_d\"]
remote = [\"$t_r:127.0.0.1:$web_port\"]" \
        -L "$o_probe:127.0.0.1:$echo_port" -L "$o_l:127.0.0.1:$web_port" -D "$o_d" -R "$o_r:127.0.0.1:$web_port"
    wait_port "$t_r"; wait_port "$o_r"
    alternate requests_once
    result "Small HTTP requests through -L, sequential, req/s" higher "%.0f" 1
    result "Small HTTP requests through -D, sequential, req/s" higher "%.0f" 2
    result "Small HTTP requests through -R, sequential, req/s" higher "%.0f" 3
    stop_row
}

startup_once() {
    local port; port=$(new_port)
    if [ "$1" = t ]; then
        tunneld_config startup "local = [\"$port:127.0.0.1:$echo_port\"]"
        traffic startup "$port" 30 -- "$tunneld" run --config "$work/startup.toml"
    else
        traffic startup "$port" 30 -- "${ssh_cmd[@]}" -L "$port:127.0.0.1:$echo_port" bench
    fi
}
row_startup() {
    alternate startup_once
    result "Start-up: exec to the first echo through -L, ms" lower "%.0f"
}

# rss_once WHO N: the summed RSS, MiB, of tunneld with N tunnels or of N ssh -N, each with one
# local forward to the echo server, once every forward has echoed.
rss_once() {
    local who=$1 n=$2 ports=() procs=() i
    for i in $(seq "$n"); do ports+=("$(new_port)"); done
    if [ "$who" = t ]; then
        {
            bench_hosts_toml
            for i in "${!ports[@]}"; do
                printf '[tunnels.t%02d]\nhost = "bench"\nlocal = ["%s:127.0.0.1:%s"]\n' "$i" "${ports[$i]}" "$echo_port"
            done
        } > "$work/rss.toml"
        "$tunneld" run --config "$work/rss.toml" 2>"$work/tunneld-rss.log" & procs+=($!)
    else
        for i in "${!ports[@]}"; do
            "${ssh_cmd[@]}" -L "${ports[$i]}:127.0.0.1:$echo_port" bench 2>>"$work/ssh-rss.log" & procs+=($!)
        done
    fi
    row_pids+=("${procs[@]}")
    traffic ready 60 "${ports[@]}"
    traffic rss "${procs[@]}"
    kill "${procs[@]}"; wait "${procs[@]}" 2>/dev/null || true
}
rss_one() { rss_once "$1" 1; }
rss_many() { rss_once "$1" "$many"; }
row_rss() {
    alternate rss_one
    result "RSS with 1 tunnel, MiB" lower "%.1f"
    alternate rss_many
    result "RSS with $many tunnels (one tunneld; $many ssh -N summed), MiB" lower "%.1f"
}

# tunneld and autossh at the same time (not alternating: one sshd restart serves both), each
# with its defaults' dead-peer budget (ServerAliveInterval 15, CountMax 3, as tunneld's
# keepalives). sshd and its sessions are SIGKILLed, down $outage s, started again; the gap runs
# from sshd accepting again to the forward echoing again.
row_reconnect() {
    new_probes
    tunneld_config reconnect "local = [\"$t_probe:127.0.0.1:$echo_port\"]"
    "$tunneld" run --config "$work/reconnect.toml" 2>"$work/tunneld-reconnect.log" & row_pids+=($!)
    AUTOSSH_GATETIME=0 autossh -M 0 -F "$work/ssh_config" -N -o ServerAliveInterval=15 -o ServerAliveCountMax=3 \
        -L "$o_probe:127.0.0.1:$echo_port" bench 2>"$work/autossh.log" & row_pids+=($!)
    traffic ready 30 "$t_probe" "$o_probe"
    : > "$work/v.t"; : > "$work/v.o"
    local watcher
    for _ in $(seq "$runs"); do
        # The watcher runs before sshd is back, so that its return is seen within 2 ms, not
        # after a Python start-up.
        python3 bench/traffic.py reconnect "$ssh_port" 120 "$t_probe" "$o_probe" > "$work/gaps" & watcher=$!; row_pids+=("$watcher")
        stop_sshd
        sleep "$outage"
        relaunch_sshd
        echo "$sshd_pid" > "$work/sshd.current"
        wait "$watcher"
        sed -n 1p "$work/gaps" >> "$work/v.t"; sed -n 2p "$work/gaps" >> "$work/v.o"
    done
    result "Reconnect after sshd restart (down ${outage} s): sshd back to bytes through -L again, autossh as OpenSSH, s" lower "%.2f"
    stop_row
}

# ---------------------------------------------------------------- running them

row_pids=()
stop_row() {
    local pid
    for pid in "${row_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${row_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    row_pids=()
}
# Each row runs in a subshell that stops what it started, whatever happens: one row that fails
# is reported, and the others still run.
failed=()
: > "$work/results"
for row in bulk remote dynamic jump zlib iperf duplex latency requests startup rss reconnect; do
    case ",$rows," in *",$row,"*) ;; *) continue ;; esac
    started=$(date +%s)
    set +e
    ( trap stop_row EXIT; set -e; "row_$row" )
    rc=$?
    set -e
    # The reconnect row restarted sshd in its subshell: this shell learns the new pid for its cleanup.
    [ -s "$work/sshd.current" ] && sshd_pid=$(cat "$work/sshd.current") && pids+=("$sshd_pid")
    if [ "$rc" != 0 ]; then
        failed+=("$row")
        echo "| $row: FAILED (exit status $rc; see above) | | | |" >> "$work/results"
    fi
    echo "bench/run.sh: row $row took $(( $(date +%s) - started )) s" >&2
done
load_end=$(load)
read -r steal_end ticks_end < <(cpu_ticks)
stolen=$(( 100 * (steal_end - steal_start) / (ticks_end - ticks_start + 1) ))

table() {
    echo "| measure | tunneld | OpenSSH | ratio tunneld/OpenSSH |"
    echo "|---|---|---|---|"
    cat "$work/results"
}
table

if [ "$write" = 1 ] && [ ${#failed[@]} = 0 ]; then
    commit=$(git rev-parse --short HEAD)
    git diff --quiet HEAD -- crates || commit="$commit (with uncommitted changes)"
    binary="release build of commit $commit"
    [ -n "${TUNNELD_BIN:-}" ] && binary="\`$TUNNELD_BIN\` (TUNNELD_BIN; bench/run.sh at commit $commit)"
    {
        echo "<!-- bench/run.sh:begin -->"
        echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC'): median of $runs runs per figure, 1 MiB = 2^20 bytes, 1 MB = 10^6 bytes."
        echo
        table
        echo
        echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load average $load_start at the start, $load_end at the end, $stolen % of the CPU time stolen by the VM's host"
        echo "- tunneld: $("$tunneld" --version), $binary"
        echo "- OpenSSH: $(ssh -V 2>&1); kernel $(uname -r)"
        echo "- to reproduce: \`$command_line\`"
        echo "<!-- bench/run.sh:end -->"
    } > "$work/block"
    python3 - "$work/block" docs/performance.md <<'PY'
import sys
block, path = open(sys.argv[1]).read().rstrip("\n"), sys.argv[2]
text = open(path).read()
begin, end = "<!-- bench/run.sh:begin -->", "<!-- bench/run.sh:end -->"
if begin not in text or end not in text:
    sys.exit(f"bench/run.sh: the markers {begin} and {end} are not in {path}")
head, rest = text.split(begin, 1)
open(path, "w").write(head + block + rest.split(end, 1)[1])
PY
    echo "bench/run.sh: written into docs/performance.md" >&2
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "bench/run.sh: failed rows: ${failed[*]}" >&2
    exit 1
fi
