#!/usr/bin/env bash
# A compressed month: one release tunneld, for DURATION seconds (default 1200), carrying mixed
# traffic through a local, a remote and a dynamic forward while the server side keeps breaking:
#
#   - sshd (with every session) SIGKILLed and restarted 1 s later, every 30 s;
#   - a silent cut every 2 minutes: a TCP proxy between tunneld and sshd, run by this script,
#     stops forwarding for 10 s without closing anything (no FIN, no RST: a black hole), then
#     closes what it held, as the server's ClientAlive would, and forwards again;
#   - a reload (SIGHUP) every minute that changes a second tunnel's forward and must not touch
#     the one carrying the traffic.
#
# At the end it prints RSS and open descriptors sampled every 10 s (first, after warm-up, last,
# max), the transfers (every transfer that overlaps no outage must be intact: echo compared byte
# for byte, HTTP bodies by SHA-256; those that overlap one are counted as cut or completed),
# and each fault with the time until every forward answered again.
#
#   bench/soak.sh [DURATION_SECONDS]     (exit status 1 if a byte was lost or a fault not recovered)
#
# Not part of CI: it takes 20 minutes and its figures are in docs/resilience.md ("Soak").
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-1200}"
# TUNNELD_BIN, as in the tests, runs another binary (one already built) instead of building.
if [ -z "${TUNNELD_BIN:-}" ]; then
    cargo build --quiet --release --bin tunneld
    TUNNELD_BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/tunneld"
fi

work="$(mktemp -d /tmp/tunneld-soak.XXXXXX)"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
# A private copy: the target directory may be shared, and another build could replace the
# binary under a 20-minute run.
cp "$TUNNELD_BIN" "$work/tunneld"
ssh-keygen -q -t ed25519 -N '' -f "$work/host"; ssh-keygen -q -t ed25519 -N '' -f "$work/client"
cp "$work/client.pub" "$work/authorized_keys"
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd

python3 - "$work" "$duration" <<'PY'
import hashlib, os, random, re, select, signal, socket, subprocess, sys, threading, time

work, duration = sys.argv[1], float(sys.argv[2])
WARM = 180.0          # seconds before RSS and descriptors are expected to be flat
CUT_FOR = 10.0        # a silent cut lasts this long: well past the 3 s keepalive budget
T0 = time.monotonic()
now = lambda: time.monotonic() - T0
stop = threading.Event()

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(128); return s

def serve_forever(srv, handler):
    def loop():
        while True:
            c, _ = srv.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()

ssh_port, proxy_port, echo_port, http_port = (free_port() for _ in range(4))
L, R, D, churn_a, churn_b = (free_port() for _ in range(5))

# --- targets: an echo server, and an HTTP server whose body for /N is N bytes known to both sides.
class quiet:
    """A connection cut by a fault ends its thread without a traceback."""
    def __enter__(self): return self
    def __exit__(self, kind, *_): return kind is not None and issubclass(kind, OSError)
def body(n): return random.Random(n).randbytes(n)
def echo(c):
    with c, quiet():
        while data := c.recv(65536): c.sendall(data)
def http(c):
    with c, quiet():
        f = c.makefile("rb")
        line = f.readline()
        if not line: return  # cut before the request arrived
        while f.readline() not in (b"\r\n", b"\n", b""): pass
        parts = line.split()
        if len(parts) < 2: return  # cut in the middle of the request line
        n = int(parts[1].strip(b"/"))
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % n + body(n))
serve_forever(listen(echo_port), echo)
serve_forever(listen(http_port), http)

# --- the proxy in front of sshd. While cut, it neither reads nor writes (the kernel still ACKs
# what fits in its buffers: a silent link, as when a route is lost), and connections accepted
# meanwhile are held the same way. Lifting the cut closes everything it held.
cut = threading.Event()
held, held_lock = set(), threading.Lock()
def pump(src, dst, pair):
    try:
        while True:
            if cut.is_set() or not select.select([src], [], [], 0.1)[0]:
                time.sleep(0.05 if cut.is_set() else 0); continue
            data = src.recv(65536)
            # Bytes or a FIN that arrive as the cut starts are swallowed with the rest of it.
            while cut.is_set(): time.sleep(0.05)
            if not data: break
            dst.sendall(data)
    except (OSError, ValueError):  # ValueError: the other pump closed the socket first
        pass
    for s in pair:
        try: s.close()
        except OSError: pass
    with held_lock: held.discard(pair)
def proxy(c):
    try: up = socket.create_connection(("127.0.0.1", ssh_port))
    except OSError:
        c.close(); return
    pair = (c, up)
    with held_lock: held.add(pair)
    threading.Thread(target=pump, args=(up, c, pair), daemon=True).start()
    pump(c, up, pair)
serve_forever(listen(proxy_port), proxy)
def lift_cut():
    with held_lock: pairs = list(held)
    for pair in pairs:
        for s in pair:
            try: s.shutdown(socket.SHUT_RDWR)
            except OSError: pass
    cut.clear()

# --- sshd, killed with all its sessions (OpenSSH forks one process per connection).
with open(f"{work}/sshd_config", "w") as f:
    f.write(f"""ListenAddress 127.0.0.1:{ssh_port}
HostKey {work}/host
PidFile {work}/sshd.pid
AuthorizedKeysFile {work}/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
MaxSessions 50
""")
sshd_log = open(f"{work}/sshd.log", "ab")
sshd = None
def start_sshd():
    global sshd
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", f"{work}/sshd_config"], stderr=sshd_log)
    for _ in range(200):
        try: socket.create_connection(("127.0.0.1", ssh_port), timeout=1).close(); return
        except OSError: time.sleep(0.02)
    raise SystemExit("sshd did not start")
def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try: ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError: continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop(); out.append(p); todo += children.get(p, [])
    return out
def kill_sshd():
    for p in descendants(sshd.pid):
        try: os.kill(p, signal.SIGKILL)
        except ProcessLookupError: pass
    sshd.wait()
start_sshd()

host_pub = open(f"{work}/host.pub").read().strip()
with open(f"{work}/known_hosts", "w") as f:
    f.write(f"[127.0.0.1]:{ssh_port} {host_pub}\n[127.0.0.1]:{proxy_port} {host_pub}\n")
def write_config(churn_port):
    with open(f"{work}/soak.toml", "w") as f:
        f.write(f"""[defaults]
identity_files = ["{work}/client"]
known_hosts = "{work}/known_hosts"
keepalive_interval = "1s"
keepalive_max = 2
connect_timeout = "4s"
backoff_min = "100ms"
backoff_max = "2s"
[tunnels.main]
host = "127.0.0.1:{proxy_port}"
local = ["{L}:127.0.0.1:{echo_port}"]
remote = ["{R}:127.0.0.1:{echo_port}"]
dynamic = ["{D}"]
[tunnels.churn]
host = "127.0.0.1:{ssh_port}"
local = ["{churn_port}:127.0.0.1:{echo_port}"]
""")
write_config(churn_a)
tunneld_log = open(f"{work}/tunneld.log", "ab")
tunneld = subprocess.Popen([f"{work}/tunneld", "run", "--config", f"{work}/soak.toml"], stderr=tunneld_log)

# --- one transfer of each kind; True if every byte came back as sent.
def echo_through(port, n, timeout=20):
    data = os.urandom(n)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        def send():
            with quiet(): s.sendall(data); s.shutdown(socket.SHUT_WR)
        sender = threading.Thread(target=send)
        sender.start()
        got = bytearray()
        while chunk := s.recv(65536): got += chunk
        sender.join()
    return bytes(got) == data
def http_through_socks(n, timeout=20):
    out = subprocess.run(["curl", "--silent", "--fail", "--max-time", str(timeout), "--socks5-hostname",
                          f"127.0.0.1:{D}", f"http://localhost:{http_port}/{n}"], capture_output=True)
    return out.returncode == 0 and hashlib.sha256(out.stdout).digest() == hashlib.sha256(body(n)).digest()
kinds = {"local": lambda n: echo_through(L, n), "remote": lambda n: echo_through(R, n),
         "dynamic": http_through_socks}

def all_forwards_answer():
    for kind, go in kinds.items():
        try:
            if not go(1024 if kind != "dynamic" else 1000):
                return False
        except OSError:
            return False
    return True
def wait_recovered(limit=60):
    deadline = now() + limit
    while now() < deadline:
        if all_forwards_answer(): return now()
        time.sleep(0.1)
    return None

started = wait_recovered(30)
if started is None:
    tunneld.kill(); kill_sshd(); raise SystemExit("the forwards never answered")
print(f"soak: all forwards answer after {started:.2f} s; running {duration:.0f} s "
      f"(load average {open('/proc/loadavg').read().split()[0]})", flush=True)

# --- traffic: two workers per kind, transfers of 1 KiB to 2 MiB, back to back.
transfers, tlock = [], threading.Lock()
def worker(kind, seed):
    rng = random.Random(seed)
    while not stop.is_set():
        n = int(2 ** rng.uniform(10, 21))
        t = now()
        try: ok, err = kinds[kind](n), ""
        except OSError as e: ok, err = False, str(e)
        with tlock: transfers.append((kind, t, now(), n, ok, err))
        time.sleep(rng.uniform(0.05, 0.3))
workers = [threading.Thread(target=worker, args=(k, i * 10 + j), daemon=True)
           for i, k in enumerate(kinds) for j in range(2)]

# --- samples every 10 s: RSS and open descriptors of the daemon.
samples = []
def sampler():
    while not stop.is_set():
        rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{tunneld.pid}/status").read()).group(1))
        samples.append((now(), rss, len(os.listdir(f"/proc/{tunneld.pid}/fd")),
                        open("/proc/loadavg").read().split()[0]))
        stop.wait(10)

# --- the faults. Outages (when a transfer may be cut) run from the fault to the recovery.
outages, faults, reloads = [], [], []
def main_ups():
    return len(re.findall(r"tunnel=main.*tunnel up|tunnel up.*tunnel=main",
                          open(f"{work}/tunneld.log", errors="replace").read()))
def kill_restart():
    t = now(); kill_sshd(); time.sleep(1); start_sshd(); lifted = now()
    back = wait_recovered(); outages.append((t, back if back else duration + 1e9))
    faults.append(("sshd kill", t, lifted, back))
def silent_cut():
    t = now(); cut.set(); time.sleep(CUT_FOR); lift_cut(); lifted = now()
    back = wait_recovered(); outages.append((t, back if back else duration + 1e9))
    faults.append(("silent cut", t, lifted, back))
churn_ports = [churn_a, churn_b]
def reload():
    churn_ports.reverse(); write_config(churn_ports[0])
    before, t = main_ups(), now()
    tunneld.send_signal(signal.SIGHUP)
    new_port_ok = False
    for _ in range(100):
        try: new_port_ok = echo_through(churn_ports[0], 1024, timeout=5)
        except OSError: pass
        if new_port_ok: break
        time.sleep(0.1)
    time.sleep(2)
    reloads.append((t, now(), new_port_ok, main_ups() - before))

schedule = sorted([(30.0 * k, kill_restart) for k in range(1, int(duration // 30) + 1)] +
                  [(120.0 * k + 40, silent_cut) for k in range(int(duration // 120) + 1)] +
                  [(60.0 * k + 15, reload) for k in range(int(duration // 60) + 1)],
                  key=lambda e: e[0])
schedule = [(at, f) for at, f in schedule if at < duration - 15]
for w in workers: w.start()
threading.Thread(target=sampler, daemon=True).start()
for at, fault in schedule:
    time.sleep(max(0.0, at - now()))
    fault()
time.sleep(max(0.0, duration - now()))
stop.set()
for w in workers: w.join(timeout=30)
end = now()
final_ok = all_forwards_answer()
tunneld.send_signal(signal.SIGTERM)
try: tunneld.wait(10)
except subprocess.TimeoutExpired: tunneld.kill()
kill_sshd()

# --- the report.
failed = False
print(f"\n{'t (s)':>6} {'RSS KiB':>8} {'fds':>4} {'load':>5}   (one sample a minute; all every 10 s in the summary)")
for t, rss, fds, load in samples:
    if round(t) % 60 < 10: print(f"{t:6.0f} {rss:8d} {fds:4d} {load:>5}")
warm = [s for s in samples if s[0] >= WARM]
if warm:
    w, last = warm[0], samples[-1]
    max_rss = max(s[1] for s in warm); max_fds = max(s[2] for s in warm)
    print(f"RSS KiB: first {samples[0][1]}, warm (t={w[0]:.0f} s) {w[1]}, last {last[1]}, "
          f"max after warm-up {max_rss} (last - warm {last[1] - w[1]:+d})")
    print(f"fds:     first {samples[0][2]}, warm {w[2]}, last {last[2]}, max after warm-up {max_fds}")
    # A leak grows with time; memory that malloc keeps after the busiest moment so far (a silent
    # cut that filled every window at once) is a step that does not recur. So the verdict is on
    # the second half of the run, and the step after warm-up is shown beside it.
    half = [x for x in samples if x[0] >= samples[-1][0] / 2]
    grew = max(x[1] for x in half) - half[0][1]
    print(f"second half (t={half[0][0]:.0f} s on): RSS {half[0][1]} -> {last[1]} KiB, max {max(x[1] for x in half)} "
          f"(+{grew} KiB); fds max {max(x[2] for x in half)}")
    if grew > 1024 or max_fds - w[2] > 8:
        print("NOT FLAT: RSS grew by more than 1 MiB in the second half, or descriptors by more than 8 after warm-up"); failed = True

spans = lambda a, b: any(a <= oe and b >= os_ for os_, oe in outages)
print(f"\n{'kind':<8} {'transfers':>9} {'intact':>7} {'MiB':>7} | across an outage: {'completed':>9} {'cut':>4}")
for kind in kinds:
    mine = [x for x in transfers if x[0] == kind]
    clear = [x for x in mine if not spans(x[1], x[2])]
    across = [x for x in mine if spans(x[1], x[2])]
    good = [x for x in clear if x[4]]
    print(f"{kind:<8} {len(clear):>9} {len(good):>7} {sum(x[3] for x in good) / 2**20:7.0f} | "
          f"{'':>17} {sum(1 for x in across if x[4]):>9} {sum(1 for x in across if not x[4]):>4}")
    for x in clear:
        if not x[4]:
            print(f"  LOST: {kind} transfer of {x[3]} bytes at {x[1]:.1f}-{x[2]:.1f} s overlapping no outage: {x[5] or 'bytes differ'}")
            failed = True

print(f"\n{'fault':<11} {'count':>5}  back up after the fault was lifted: median / worst, unrecovered")
for name in ("sshd kill", "silent cut"):
    mine = [f for f in faults if f[0] == name]
    times = sorted(f[3] - f[2] for f in mine if f[3] is not None)
    lost = sum(1 for f in mine if f[3] is None)
    if times:
        print(f"{name:<11} {len(mine):>5}  {times[len(times) // 2]:.2f} / {times[-1]:.2f} s, {lost}")
    failed |= lost > 0
bad_reloads = [r for r in reloads if not r[2] or r[3] != 0]
print(f"reload      {len(reloads):>5}  changed tunnel's new forward answered: {sum(r[2] for r in reloads)}/{len(reloads)}; "
      f"'main' reconnected by a reload: {sum(1 for r in reloads if r[3] != 0)}")
failed |= bool(bad_reloads)
logins = open(f"{work}/sshd.log", errors="replace").read().count("Accepted publickey")
print(f"sshd logins: {logins}; tunneld still answering at the end: {final_ok}; "
      f"load average at the end {open('/proc/loadavg').read().split()[0]} (ran {end:.0f} s)")
failed |= not final_ok
sys.exit(1 if failed else 0)
PY
