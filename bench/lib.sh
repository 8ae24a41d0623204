# What the bench scripts share: a scratch directory cleaned up on exit with the processes they
# start, free ports, waiting for a port, and an OpenSSH sshd on loopback with a client key.
# Sourced, not run:   . "$(dirname "$0")/lib.sh"
# shellcheck shell=bash

# bench_init PREFIX: $work (a new temp dir) and $pids, both cleaned up on exit.
bench_init() {
    work="$(mktemp -d "/tmp/$1.XXXXXX")"
    pids=()
    trap bench_cleanup EXIT
}
bench_cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_port PORT: until something accepts on 127.0.0.1:PORT (about 30 s at most).
wait_port() {
    for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
    echo "nothing on $1" >&2; return 1
}

# start_sshd [EXTRA_CONFIG_LINE...]: an sshd on 127.0.0.1:$ssh_port in the background, with a
# host key, a client key ($work/client) it accepts, and $work/known_hosts that pins it.
start_sshd() {
    ssh_port=$(free_port)
    ssh-keygen -q -t ed25519 -N '' -f "$work/host"; ssh-keygen -q -t ed25519 -N '' -f "$work/client"
    cp "$work/client.pub" "$work/authorized_keys"
    {
        echo "ListenAddress 127.0.0.1:$ssh_port"
        echo "HostKey $work/host"
        echo "PidFile $work/sshd.pid"
        echo "AuthorizedKeysFile $work/authorized_keys"
        echo "UsePAM no"
        echo "StrictModes no"
        echo "PermitRootLogin prohibit-password"
        for line in "$@"; do echo "$line"; done
    } > "$work/sshd_config"
    if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd; fi
    /usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" & sshd_pid=$!; pids+=("$sshd_pid")
    echo "[127.0.0.1]:$ssh_port $(cat "$work/host.pub")" > "$work/known_hosts"
    wait_port "$ssh_port"
}

# bench_hosts_toml: the start of a tunneld config for that sshd: its client key and known_hosts
# as [defaults], and the sshd as the host "bench". Tunnels add `host = "bench"`.
bench_hosts_toml() {
    printf '[defaults]\nidentity_files = ["%s"]\nknown_hosts = "%s"\n' "$work/client" "$work/known_hosts"
    printf '[hosts.bench]\nhostname = "127.0.0.1"\nport = %s\n' "$ssh_port"
}

# stop_sshd: SIGKILLs the sshd of start_sshd and its session processes (its children), as a
# crash or a reboot of the server would: the clients see their connections close at once.
stop_sshd() {
    local sessions
    sessions=$(pgrep -P "$sshd_pid" | tr '\n' ' ' || true)
    # shellcheck disable=SC2086 # a list of pids
    kill -KILL $sessions "$sshd_pid" 2>/dev/null || true
    wait "$sshd_pid" 2>/dev/null || true
}
# relaunch_sshd: starts it again, same port, keys and config, without waiting for it.
relaunch_sshd() {
    /usr/sbin/sshd -D -e -f "$work/sshd_config" 2>>"$work/sshd.log" & sshd_pid=$!; pids+=("$sshd_pid")
}

# release_tunneld: $tunneld, the release binary of this checkout (built if needed), or
# $TUNNELD_BIN when set (a binary already built: no build on a busy machine).
release_tunneld() {
    if [ -n "${TUNNELD_BIN:-}" ]; then
        tunneld=$TUNNELD_BIN
    else
        cargo build --quiet --release --bin tunneld
        tunneld="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/tunneld"
    fi
    [ -x "$tunneld" ] || { echo "no tunneld binary at $tunneld" >&2; return 1; }
}
