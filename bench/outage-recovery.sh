#!/usr/bin/env bash
# How soon a tunnel is back after its server returns from an outage: tunneld beside autossh
# (when installed), in the same run, against the same sshd on loopback, with their defaults.
#
# Two cases, each with sshd stopped for OUTAGE seconds (default 45):
#   start-up    the tunnels start while sshd is down (never up yet);
#   long-lived  the tunnels have been up for UP seconds (default 40, past tunneld's 30 s
#               STABLE_AFTER), then sshd and its sessions are SIGKILLed.
# "Back" is the first moment a client of the forward reads sshd's banner through it again; the
# gap is measured from the moment sshd listens again. tunneld holds a client that arrives while
# the tunnel is down, so the probe waits on it; ssh -L has no listener then, so it is retried
# every 50 ms.
#
#   bench/outage-recovery.sh [OUTAGE] [UP]       (seconds; takes about 2 x OUTAGE + UP + 20 s)
#   TUNNELD_BIN=/path/to/tunneld bench/outage-recovery.sh    (another build, to compare)
#
# autossh runs as commonly set up under systemd: AUTOSSH_GATETIME=0 (retry even if the first
# connection fails), -M 0 with ServerAliveInterval=15 and ServerAliveCountMax=3 (the same dead
# peer budget as tunneld's default keepalives), ExitOnForwardFailure. Install it with
# `apt-get install autossh`; without it only tunneld is measured. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
outage="${1:-45}"
up="${2:-40}"
if [ -z "${TUNNELD_BIN:-}" ]; then
    # The dev build is enough: what is measured is waiting, not speed.
    cargo build --quiet --bin tunneld
    TUNNELD_BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/tunneld"
fi
have_autossh=0
command -v autossh >/dev/null && have_autossh=1

work="$(mktemp -d /tmp/tunneld-outage.XXXXXX)"
pids=()
sshd_pid=
stop_sshd() {
    [ -n "$sshd_pid" ] || return 0
    # sshd's session processes are its children: kill them by pid with it.
    local sessions
    sessions=$(pgrep -P "$sshd_pid" | tr '\n' ' ' || true)
    # shellcheck disable=SC2086 # a list of pids
    kill -KILL $sessions "$sshd_pid" 2>/dev/null || true
    wait "$sshd_pid" 2>/dev/null || true
    sshd_pid=
}
cleanup() {
    stop_sshd
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

ssh_port=$(free_port)
ssh-keygen -q -t ed25519 -N '' -f "$work/host"; ssh-keygen -q -t ed25519 -N '' -f "$work/client"
cp "$work/client.pub" "$work/authorized_keys"
cat > "$work/sshd_config" <<CFG
ListenAddress 127.0.0.1:$ssh_port
HostKey $work/host
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
CFG
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd
echo "[127.0.0.1]:$ssh_port $(cat "$work/host.pub")" > "$work/known_hosts"

# Starts sshd (in this shell, so that stop_sshd knows its pid) and writes the moment it accepts
# connections to $work/sshd_back.
start_sshd() {
    /usr/sbin/sshd -D -e -f "$work/sshd_config" >/dev/null 2>>"$work/sshd.log" &
    sshd_pid=$!
    python3 - "$ssh_port" > "$work/sshd_back" <<'PY'
import socket, sys, time
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.01)
print(f"{time.time():.3f}")
PY
}

# Prints the moment sshd's banner is first read through the forward on port $1 ("never" after
# 10 minutes).
wait_back() {
    python3 - "$1" <<'PY'
import socket, sys, time
deadline = time.time() + 600
while True:
    if time.time() > deadline:
        print("never")
        break
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as c:
            c.settimeout(15)
            if c.recv(64).startswith(b"SSH-"):
                print(f"{time.time():.3f}")
                break
    except OSError:
        pass
    time.sleep(0.05)
PY
}

# Runs one case: starts the tunnels (sshd running or not), prints each one's gap.
run_case() {
    local case=$1 t_port o_port tunneld_pid autossh_pid=
    t_port=$(free_port); o_port=$(free_port)
    cat > "$work/$case.toml" <<CFG
[tunnels.$case]
host = "127.0.0.1:$ssh_port"
identity_files = ["$work/client"]
known_hosts = "$work/known_hosts"
local = ["$t_port:127.0.0.1:$ssh_port"]
CFG
    "$TUNNELD_BIN" run --config "$work/$case.toml" 2>"$work/tunneld-$case.log" &
    tunneld_pid=$!; pids+=("$tunneld_pid")
    if [ "$have_autossh" = 1 ]; then
        AUTOSSH_GATETIME=0 autossh -M 0 -N -F /dev/null -o BatchMode=yes \
            -o ServerAliveInterval=15 -o ServerAliveCountMax=3 -o ExitOnForwardFailure=yes \
            -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes \
            -i "$work/client" -p "$ssh_port" -L "$o_port:127.0.0.1:$ssh_port" \
            "$(id -un)@127.0.0.1" 2>"$work/autossh-$case.log" &
        autossh_pid=$!; pids+=("$autossh_pid")
    fi
    if [ "$case" = long-lived ]; then
        wait_back "$t_port" >/dev/null
        [ -z "$autossh_pid" ] || wait_back "$o_port" >/dev/null
        sleep "$up"
        stop_sshd
    fi
    sleep "$outage"
    start_sshd
    local back_at t_back o_back=
    back_at=$(cat "$work/sshd_back")
    wait_back "$t_port" > "$work/t_back" &
    local t_wait=$!
    if [ -n "$autossh_pid" ]; then o_back=$(wait_back "$o_port"); fi
    wait "$t_wait"; t_back=$(cat "$work/t_back")
    gap() { python3 -c "import sys; print('never' if sys.argv[1] == 'never' else f'{float(sys.argv[1]) - $back_at:.2f} s')" "$1"; }
    printf "%-11s %-8s %9s\n" "$case" tunneld "$(gap "$t_back")"
    if [ -n "$autossh_pid" ]; then
        printf "%-11s %-8s %9s\n" "$case" autossh "$(gap "$o_back")"
        kill "$autossh_pid"
    fi
    kill "$tunneld_pid"
    grep -cE "tunnel down|still failing" "$work/tunneld-$case.log" | xargs printf "%-11s tunneld logged %s failure line(s) in the outage\n" "$case"
}

echo "sshd down ${outage} s; long-lived tunnels up ${up} s first; $TUNNELD_BIN"
printf "%-11s %-8s %9s\n" case client "back after sshd"
run_case start-up
stop_sshd
start_sshd
run_case long-lived
