#!/usr/bin/env bash
# Many concurrent forwarded connections on one tunnel (a `local` forward through one OpenSSH
# sshd on loopback to an echo server): every connection echoes bytes that are checked, all of
# them stay open at once, then a second round trip runs on all of them together. Prints the
# time to open them all, tunneld's RSS and descriptors before, with them open and after, and the
# RSS per connection. Not run in CI: it needs thousands of descriptors and a few minutes.
#
#   bench/many-connections.sh [CONNECTIONS]   (default 10000)
#   TUNNELD_BIN=path bench/...                (use that binary instead of building --release)
#   CONCURRENCY=200 bench/...                 (connections being opened at once)
#
# Limits it has to raise (as root, or under a hard limit that allows it):
# - `ulimit -n` for tunneld (one descriptor per connection; the daemon keeps 64 in reserve, see
#   docs/design.md, "Limits"), for sshd (one socket per channel toward the echo server), for
#   the echo server and for the client (one each per connection): set once below, inherited.
# - sshd: `MaxSessions` counts session channels only, not direct-tcpip ones; what caps channels
#   per connection in OpenSSH 9.2 is the compile-time CHANNELS_MAX_CHANNELS (16384, channels.c),
#   which no config line raises. So at most about 16000 connections per tunnel with OpenSSH.
# - The ephemeral port range (net.ipv4.ip_local_port_range, usually 28000 ports) bounds the
#   client and sshd's connections to the echo server.
set -euo pipefail
cd "$(dirname "$0")/.."
connections="${1:-10000}"
concurrency="${CONCURRENCY:-200}"
# Every process below holds about one descriptor per connection (none holds two).
ulimit -n $((connections + 1024)) || {
    echo "cannot raise ulimit -n to $((connections + 1024)) (hard limit $(ulimit -Hn))" >&2
    exit 1
}
if [ -n "${TUNNELD_BIN:-}" ]; then
    tunneld="$TUNNELD_BIN"
else
    cargo build --quiet --release --bin tunneld
    tunneld="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/tunneld"
fi

work="$(mktemp -d /tmp/tunneld-bench.XXXXXX)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "nothing on $1" >&2; return 1; }

ssh_port=$(free_port); echo_port=$(free_port); forward_port=$(free_port)
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
LogLevel ERROR
CFG
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" & pids+=($!)
echo "[127.0.0.1]:$ssh_port $(cat "$work/host.pub")" > "$work/known_hosts"

python3 - "$echo_port" <<'PY' & pids+=($!)
import asyncio, sys
async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await server.serve_forever()
asyncio.run(main())
PY
wait_port "$ssh_port"; wait_port "$echo_port"

cat > "$work/bench.toml" <<CFG
[defaults]
identity_files = ["$work/client"]
known_hosts = "$work/known_hosts"
[tunnels.bench]
host = "127.0.0.1:$ssh_port"
local = ["127.0.0.1:$forward_port:127.0.0.1:$echo_port"]
CFG
"$tunneld" run --config "$work/bench.toml" 2>"$work/tunneld.log" & pids+=($!)
tunneld_pid=$!
for _ in $(seq 200); do grep -q "tunnel up" "$work/tunneld.log" && break; sleep 0.05; done
grep -q "tunnel up" "$work/tunneld.log" || { cat "$work/tunneld.log" >&2; exit 1; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; tunneld: $tunneld"
python3 - "$forward_port" "$connections" "$concurrency" "$tunneld_pid" <<'PY'
import asyncio, os, sys, time
port, n, concurrency, pid = (int(a) for a in sys.argv[1:5])

def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))

async def round_trip(reader, writer, payload):
    writer.write(payload)
    await writer.drain()
    back = await reader.readexactly(len(payload))
    if back != payload:
        raise RuntimeError(f"wrong echo: {back!r} for {payload!r}")

async def main():
    rss0, fds0 = rss_kib(), fds()
    gate = asyncio.Semaphore(concurrency)
    async def open_one(i):
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await round_trip(reader, writer, b"open %06d %s\n" % (i, os.urandom(8).hex().encode()))
            return reader, writer
    start = time.monotonic()
    conns = await asyncio.gather(*(open_one(i) for i in range(n)))
    opened = time.monotonic() - start
    rss1, fds1 = rss_kib(), fds()
    # Every connection at once, all still open: a second checked round trip.
    start = time.monotonic()
    await asyncio.gather(*(round_trip(r, w, b"again %06d %s\n" % (i, os.urandom(8).hex().encode()))
                           for i, (r, w) in enumerate(conns)))
    again = time.monotonic() - start
    rss2 = rss_kib()
    for _, w in conns:
        w.close()
    await asyncio.gather(*(w.wait_closed() for _, w in conns), return_exceptions=True)
    deadline = time.monotonic() + 30
    while fds() > fds0 + 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)
    rss3, fds3 = rss_kib(), fds()
    print(f"{n} connections echoed and held open at once; {concurrency} opened at a time")
    print(f"time to open all:           {opened:.2f} s ({n / opened:.0f} connections/s)")
    print(f"second round trip on all:   {again:.2f} s")
    print(f"tunneld RSS idle:           {rss0} KiB, {fds0} fds")
    print(f"tunneld RSS with all open:  {rss1} KiB, {fds1} fds (after the second round: {rss2} KiB)")
    print(f"RSS per connection:         {(max(rss1, rss2) - rss0) / n:.1f} KiB")
    print(f"tunneld RSS after closing:  {rss3} KiB, {fds3} fds")

asyncio.run(main())
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
if grep -E "WARN|ERROR" "$work/tunneld.log" >/dev/null; then
    echo "tunneld warnings:"; grep -E "WARN|ERROR" "$work/tunneld.log" | head -5
fi
