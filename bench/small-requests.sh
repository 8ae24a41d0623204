#!/usr/bin/env bash
# Sequential small HTTP requests per second through a forward: tunneld's -L, -D and -R side by
# side with OpenSSH's ssh -L, -D and -R, in the same run, against the same sshd on loopback.
#
# The web server writes each response in two pieces (headers, then body), as many servers do.
# With Nagle on in sshd (it is, for sessions without a pty) the body waits for the client's
# delayed ACK: about 40 ms per request (docs/design.md, pitfall 9). tunneld re-arms TCP_QUICKACK.
#
#   bench/small-requests.sh [REQUESTS]      (default 300 per case; prints requests/s and ratios)
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-300}"
cargo build --quiet --release --bin tunneld
tunneld="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/tunneld"

work="$(mktemp -d /tmp/tunneld-bench.XXXXXX)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "nothing on $1" >&2; return 1; }

ssh_port=$(free_port); web_port=$(free_port)
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
MaxSessions 50
CFG
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" & pids+=($!)
echo "[127.0.0.1]:$ssh_port $(cat "$work/host.pub")" > "$work/known_hosts"

# HTTP/1.1 keep-alive server: headers flushed, then the body 1 ms later (a server that works out
# its body after sending the headers, as most frameworks do), TCP_NODELAY set as servers such as
# nginx do (otherwise its own Nagle stalls the hop between it and sshd, which no SSH client can
# change). sshd then sends two SSH packets, and Nagle holds the second until the client ACKs the
# first: the stall of pitfall 9. Without the gap, on loopback both pieces reach sshd at once and
# nothing stalls for anyone. The 1 ms caps every case below 1000 requests/s.
python3 - "$web_port" <<'PY' & pids+=($!)
import socket, sys, threading, time
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = c.makefile("rb")
    while True:
        line = f.readline()
        if not line: break
        while f.readline() not in (b"\r\n", b"\n", b""): pass
        body = b"hello\n"
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n" % len(body))
        time.sleep(0.001)
        c.sendall(body)
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
wait_port "$ssh_port"; wait_port "$web_port"

t_l=$(free_port); t_d=$(free_port); t_r=$(free_port); o_l=$(free_port); o_d=$(free_port); o_r=$(free_port)
cat > "$work/bench.toml" <<CFG
[defaults]
identity_files = ["$work/client"]
known_hosts = "$work/known_hosts"
[tunnels.bench]
host = "127.0.0.1:$ssh_port"
local = ["$t_l:127.0.0.1:$web_port"]
dynamic = ["$t_d"]
remote = ["$t_r:127.0.0.1:$web_port"]
CFG
"$tunneld" run --config "$work/bench.toml" 2>"$work/tunneld.log" & pids+=($!)
ssh -F /dev/null -N -o BatchMode=yes -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes \
    -i "$work/client" -p "$ssh_port" -L "$o_l:127.0.0.1:$web_port" -D "$o_d" -R "$o_r:127.0.0.1:$web_port" \
    "$(id -un)@127.0.0.1" 2>"$work/ssh.log" & pids+=($!)
for p in $t_l $t_d $t_r $o_l $o_d $o_r; do wait_port "$p"; done

# One curl, one keep-alive connection, $requests sequential requests; prints requests/s.
rate() {
    local urls=() start end
    for _ in $(seq "$requests"); do urls+=("$2"); done
    start=$(date +%s.%N)
    # $1 is curl's proxy option and its value, or nothing: split on purpose.
    # shellcheck disable=SC2086
    curl --silent --fail $1 "${urls[@]}" >/dev/null
    end=$(date +%s.%N)
    python3 -c "print(f'{$requests / ($end - $start):.0f}')"
}
printf "%-10s %14s %14s %8s\n" forward "tunneld req/s" "OpenSSH req/s" ratio
for kind in local dynamic remote; do
    case $kind in
        local)   t=$(rate "" "http://127.0.0.1:$t_l/"); o=$(rate "" "http://127.0.0.1:$o_l/") ;;
        dynamic) t=$(rate "--socks5-hostname 127.0.0.1:$t_d" "http://localhost:$web_port/")
                 o=$(rate "--socks5-hostname 127.0.0.1:$o_d" "http://localhost:$web_port/") ;;
        remote)  t=$(rate "" "http://127.0.0.1:$t_r/"); o=$(rate "" "http://127.0.0.1:$o_r/") ;;
    esac
    printf "%-10s %14s %14s %7.1fx\n" "$kind" "$t" "$o" "$(python3 -c "print($t / $o)")"
done
