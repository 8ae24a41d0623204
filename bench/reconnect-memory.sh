#!/usr/bin/env bash
# Does anything pile up per connection? One release tunneld with a local, a remote and a
# dynamic forward; COUNT times (default 1000): one small echo through each forward, then sshd's
# process for tunneld's session is SIGKILLed (the listening sshd stays), and tunneld reconnects.
# RSS and open descriptors are printed every 100 reconnects, with a least-squares slope over the
# second half (after warm-up): a leak of even 1 KiB per connection shows as a steady slope, while
# memory that malloc keeps after a busy moment does not grow with the count.
#
#   bench/reconnect-memory.sh [COUNT]
#
# Not part of CI (a few minutes); its figures are in docs/resilience.md ("Soak").
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-1000}"
if [ -z "${TUNNELD_BIN:-}" ]; then
    cargo build --quiet --release --bin tunneld
    TUNNELD_BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/tunneld"
fi
work="$(mktemp -d /tmp/tunneld-reconnect.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cp "$TUNNELD_BIN" "$work/tunneld"
ssh-keygen -q -t ed25519 -N '' -f "$work/host"; ssh-keygen -q -t ed25519 -N '' -f "$work/client"
cp "$work/client.pub" "$work/authorized_keys"
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd

python3 - "$work" "$count" <<'PY'
import os, re, signal, socket, struct, subprocess, sys, threading, time

work, count = sys.argv[1], int(sys.argv[2])

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
ssh_port, echo_port, L, R, D = (free_port() for _ in range(5))

echo_srv = socket.socket(); echo_srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
echo_srv.bind(("127.0.0.1", echo_port)); echo_srv.listen(64)
def echo(c):
    with c:
        try:
            while data := c.recv(65536): c.sendall(data)
        except OSError: pass
def accept():
    while True:
        c, _ = echo_srv.accept(); threading.Thread(target=echo, args=(c,), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()

with open(f"{work}/sshd_config", "w") as f:
    f.write(f"ListenAddress 127.0.0.1:{ssh_port}\nHostKey {work}/host\nPidFile {work}/sshd.pid\n"
            f"AuthorizedKeysFile {work}/authorized_keys\nUsePAM no\nStrictModes no\n"
            f"PermitRootLogin prohibit-password\nMaxStartups 100\n")
sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", f"{work}/sshd_config"],
                        stderr=open(f"{work}/sshd.log", "ab"))
with open(f"{work}/known_hosts", "w") as f:
    f.write(f"[127.0.0.1]:{ssh_port} {open(f'{work}/host.pub').read().strip()}\n")
with open(f"{work}/t.toml", "w") as f:
    f.write(f"""[tunnels.main]
host = "127.0.0.1:{ssh_port}"
identity_files = ["{work}/client"]
known_hosts = "{work}/known_hosts"
backoff_min = "100ms"
backoff_max = "1s"
local = ["{L}:127.0.0.1:{echo_port}"]
remote = ["{R}:127.0.0.1:{echo_port}"]
dynamic = ["{D}"]
""")
log = open(f"{work}/tunneld.log", "ab")
tunneld = subprocess.Popen([f"{work}/tunneld", "run", "--config", f"{work}/t.toml"], stderr=log)

def echo_once(port, socks=False):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        if socks:
            s.sendall(b"\x05\x01\x00"); assert s.recv(2) == b"\x05\x00"
            s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", echo_port))
            if s.recv(10)[1] != 0: return False
        data = os.urandom(4096); s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(65536)
            if not chunk: return False
            got += chunk
        return got == data
def all_answer(deadline=30):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if echo_once(L) and echo_once(R) and echo_once(D, socks=True): return True
        except (OSError, AssertionError, IndexError): pass
        time.sleep(0.05)
    return False
def session_pids():
    # sshd's per-connection processes are its children (and theirs).
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try: ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError: continue
            if ppid == sshd.pid: out.append(int(entry))
    return out
def sample():
    rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{tunneld.pid}/status").read()).group(1))
    return rss, len(os.listdir(f"/proc/{tunneld.pid}/fd"))

if not all_answer():
    raise SystemExit("reconnect-memory: the forwards never answered")
samples, failed = [], 0
t0 = time.monotonic()
for n in range(1, count + 1):
    for p in session_pids():
        try: os.kill(p, signal.SIGKILL)
        except ProcessLookupError: pass
    time.sleep(0.05)
    if not all_answer():
        failed += 1
    if n % 100 == 0 or n == 1:
        rss, fds = sample(); samples.append((n, rss, fds))
        print(f"{n:6d} reconnects  RSS {rss:6d} KiB  fds {fds:3d}  ({time.monotonic() - t0:.0f} s)", flush=True)
tunneld.send_signal(signal.SIGTERM); tunneld.wait(10); sshd.kill()
ups = len(re.findall(r"tunnel up", open(f"{work}/tunneld.log", errors="replace").read()))
half = [s for s in samples if s[0] >= count // 2]
if len(half) >= 2:
    xs = [s[0] for s in half]; ys = [s[1] for s in half]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    print(f"second half: RSS {half[0][1]} -> {half[-1][1]} KiB, slope {slope * 1024:.0f} bytes per reconnect; "
          f"fds {half[0][2]} -> {half[-1][2]}")
print(f"connections up: {ups} (asked for {count} reconnects); rounds where a forward did not answer: {failed}")
sys.exit(1 if failed else 0)
PY
