#!/usr/bin/env bash
# tunneld end to end on this machine, with nothing but loopback:
#   a throwaway OpenSSH sshd on 127.0.0.1 (its own keys, config and known_hosts in a temp dir),
#   a small web server standing for a service only the SSH server can reach,
#   tunneld forwarding a local port to it through sshd, like `ssh -N -L`,
#   and a request through the tunnel, whose answer is printed.
# Everything it starts is stopped and removed on exit. It does not touch the system's sshd.
set -euo pipefail

cd "$(dirname "$0")/.."
for tool in /usr/sbin/sshd ssh-keygen curl python3 cargo; do
    if ! command -v "$tool" >/dev/null; then
        echo "demo: $tool is missing (sudo apt-get install -y openssh-server openssh-client curl python3)" >&2
        exit 1
    fi
done

echo "demo: building tunneld"
cargo build --quiet --bin tunneld
tunneld="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/tunneld"

work="$(mktemp -d /tmp/tunneld-demo.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls until 127.0.0.1:$1 accepts connections, for at most 10 s.
wait_for_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "demo: nothing listens on 127.0.0.1:$1 after 10 s" >&2
    return 1
}

ssh_port="$(free_port)"
web_port="$(free_port)"
tunnel_port="$(free_port)"

# The SSH server: its own host key, one authorized client key, forwarding allowed.
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
cat > "$work/sshd_config" <<CFG
ListenAddress 127.0.0.1:$ssh_port
HostKey $work/host_key
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
AllowTcpForwarding yes
CFG
if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd; fi
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
pids+=($!)
wait_for_port "$ssh_port"
echo "demo: throwaway sshd on 127.0.0.1:$ssh_port (files in $work)"

# The service behind the server.
mkdir -p "$work/www"
echo "hello through the tunnel, served on 127.0.0.1:$web_port" > "$work/www/index.html"
python3 -m http.server "$web_port" --bind 127.0.0.1 --directory "$work/www" >/dev/null 2>&1 &
pids+=($!)
wait_for_port "$web_port"

# tunneld verifies host keys strictly: known_hosts gets the throwaway server's key.
echo "[127.0.0.1]:$ssh_port $(cat "$work/host_key.pub")" > "$work/known_hosts"
cat > "$work/demo.toml" <<CFG
[defaults]
identity_files = ["$work/client_key"]
known_hosts = "$work/known_hosts"

[tunnels.demo]
host = "127.0.0.1:$ssh_port"
local = ["$tunnel_port:127.0.0.1:$web_port"]
CFG
echo "demo: tunneld check:"
"$tunneld" check --config "$work/demo.toml"

echo "demo: tunneld run (its log follows)"
"$tunneld" run --config "$work/demo.toml" &
pids+=($!)
wait_for_port "$tunnel_port"

echo "demo: curl http://127.0.0.1:$tunnel_port/ answers:"
curl --silent --show-error --fail --retry 20 --retry-delay 0 --retry-connrefused --max-time 10 \
    "http://127.0.0.1:$tunnel_port/"
echo "demo: done; stopping everything"
