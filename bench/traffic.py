#!/usr/bin/env python3
"""The servers and clients of bench/run.sh: traffic generators and sinks fast enough (1 MiB
buffers, GB/s on loopback) not to be what is measured, and every byte count checked.

Servers (one process, a thread per connection, bound to 127.0.0.1):
  servers SINK ECHO ONEBYTE HTTP
    SINK     reads until EOF, then answers the byte count (8 bytes, big-endian)
    ECHO     echoes everything back
    ONEBYTE  writes one byte on accept, then closes
    HTTP     keep-alive HTTP/1.1, headers then the body 1 ms later (see bench/run.sh, small requests)

Clients (print one number on stdout; exit non-zero, saying why on stderr, on any mismatch):
  bulk PORT BYTES [--socks PORT] [--text] [--cpu PID]   MB/s, then CPU seconds per GiB of PID's tree
  duplex PORT BYTES [--cpu PID]                         MB/s each way, through an echo server,
                                                        then CPU seconds per GiB (each way) of PID's tree
  latency PORT COUNT                                    p50 and p99 ms of connect + first byte
  ready TIMEOUT PORT...                                 waits until each PORT echoes
  startup PORT TIMEOUT -- CMD...                        ms from exec of CMD to its first echo on PORT
  reconnect SSH_PORT TIMEOUT PORT...                    seconds from sshd's return (after it was
                                                        down) until each PORT echoes
  rss PID...                                            summed VmRSS of the PIDs, MiB

For bench/profile.sh's downloads:
  source PORT BYTES                                     a server that sends BYTES to each
                                                        connection, then closes it
  drain PORT BYTES [--cpu PID]                          reads BYTES through PORT: MB/s, then CPU
                                                        seconds per GiB of PID's tree
  bulk, drain and duplex also take --budget NAME=PID,...: after those two numbers, one line per NAME
  with the CPU seconds per GiB of PID's tree, then `driver` (this process), `machine` (every
  CPU's busy time, from /proc/stat), `other` (the machine's less everything counted, --cpu
  included), `busy` (the machine's busy share, in % of all its CPUs) and `stolen` (the share
  its virtual machine host gave to others, in %)
"""
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time

CHUNK = 1 << 20
ADDR = "127.0.0.1"


def die(msg):
    sys.exit(f"traffic.py: {msg}")


# ---------------------------------------------------------------- servers

def listen(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ADDR, port))
    s.listen(512)
    return s


def serve_forever(port, handler):
    s = listen(port)

    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=guarded, args=(handler, c), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def guarded(handler, c):
    try:
        with c:
            handler(c)
    except OSError:
        pass  # a client that went away: its own side reports that


def sink(c):
    buf = bytearray(CHUNK)
    total = 0
    while n := c.recv_into(buf):
        total += n
    c.sendall(struct.pack(">Q", total))


def echo(c):
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := c.recv_into(buf):
        c.sendall(view[:n])


def onebyte(c):
    c.sendall(b"!")


def http(c):
    # TCP_NODELAY as servers such as nginx set it; the 1 ms gap between headers and body is what
    # exposes the delayed-ACK stall (bench/run.sh, row "small requests").
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = c.makefile("rb")
    while f.readline():
        while f.readline() not in (b"\r\n", b"\n", b""):
            pass
        body = b"hello\n"
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n" % len(body))
        time.sleep(0.001)
        c.sendall(body)


def source_server(args):
    port, total = int(args[0]), int(args[1])
    block = payload(False)

    def send(c):
        left = total
        while left:
            n = min(left, CHUNK)
            c.sendall(block[:n])
            left -= n
    serve_forever(port, send)
    while True:
        time.sleep(3600)


def servers(args):
    for port, handler in zip(map(int, args), (sink, echo, onebyte, http)):
        serve_forever(port, handler)
    while True:
        time.sleep(3600)


# ---------------------------------------------------------------- clients

def connect(port, socks=None, timeout=60):
    """A connection to 127.0.0.1:port, directly or through the SOCKS5 proxy on 127.0.0.1:socks."""
    if socks is None:
        return socket.create_connection((ADDR, port), timeout=timeout)
    s = socket.create_connection((ADDR, socks), timeout=timeout)
    s.sendall(b"\x05\x01\x00")
    if recv_exactly(s, 2) != b"\x05\x00":
        die(f"SOCKS5 proxy on {socks} refused the greeting")
    host = b"localhost"
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host + struct.pack(">H", port))
    reply = recv_exactly(s, 4)
    if reply[1] != 0:
        die(f"SOCKS5 proxy on {socks} refused CONNECT localhost:{port} (reply {reply[1]})")
    # The bound address (IPv4, name, IPv6) and port, unused.
    length = {1: 4, 4: 16}[reply[3]] if reply[3] != 3 else recv_exactly(s, 1)[0]
    recv_exactly(s, length + 2)
    return s


def recv_exactly(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            die(f"connection closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def tree(pid):
    """pid and its descendants (ssh -J runs the jump's ssh as a child)."""
    children = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_seconds(pids):
    """utime + stime of the processes, in seconds (/proc/PID/stat fields 14 and 15)."""
    ticks = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def payload(text):
    """1 MiB to send over and over. --text: log-like lines that zlib shrinks about 4:1 (each
    line differs, and the buffer is far larger than zlib's 32 KiB window, so repeating it does
    not help the compressor). Otherwise zeros: the ciphers do not care what they encrypt."""
    if not text:
        return memoryview(bytes(CHUNK))
    rnd = random.Random(1)
    lines = []
    size = 0
    while size < CHUNK:
        line = (f"2026-11-26T16:{rnd.randrange(60):02d}:{rnd.randrange(60):02d}.{rnd.randrange(1000):03d}Z "
                f"INFO request id={rnd.randrange(10**8)} path=/api/v1/items/{rnd.randrange(10**5)} "
                f"status={rnd.choice((200, 200, 200, 304, 404))} bytes={rnd.randrange(10**6)}\n").encode()
        lines.append(line)
        size += len(line)
    return memoryview(b"".join(lines)[:CHUNK])


def machine_busy():
    """Seconds every CPU together spent busy, and stolen (a virtual machine's CPU time that its
    host gave to someone else), from /proc/stat's `cpu` line, whose first values are these, in
    ticks: user nice system idle iowait irq softirq steal."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


class Watch:
    """What a client measures over a transfer, sampled once at each end: the time it took, the
    CPU time of --cpu PID's process tree, and with --budget NAME=PID,... where the machine's CPU
    went: each named process tree, this process, and the machine as a whole. On loopback the
    client, sshd and the traffic all share the same cores, so a client's throughput is bounded
    by what the others leave it."""

    def __init__(self, args):
        self.client = int(args[args.index("--cpu") + 1]) if "--cpu" in args else None
        spec = args[args.index("--budget") + 1] if "--budget" in args else ""
        self.named = [(name, int(pid)) for name, pid in
                      (item.split("=", 1) for item in spec.split(",") if item)]

    def start(self):
        # The trees are read now, once the connection is up: sshd forks a process per session
        # (and ssh -J runs the jump's ssh as a child).
        self.client_pids = tree(self.client) if self.client else []
        self.parties = [(name, tree(pid)) for name, pid in self.named]
        self.before = self.sample()

    def stop(self):
        self.after = self.sample()

    def sample(self):
        return (time.perf_counter(), cpu_seconds(self.client_pids),
                [cpu_seconds(pids) for _, pids in self.parties], time.process_time(),
                machine_busy())

    def report(self, size):
        """MB/s, then (with --cpu) the client's CPU seconds per GiB, then (with --budget) one
        line per party."""
        (t0, c0, p0, d0, (m0, s0)), (t1, c1, p1, d1, (m1, s1)) = self.before, self.after
        per_gib = (1 << 30) / size
        print(f"{size / (t1 - t0) / 1e6:.1f}")
        if self.client:
            print(f"{(c1 - c0) * per_gib:.3f}")
        if not self.named:
            return
        for (name, _), a, b in zip(self.parties, p0, p1):
            print(f"{name} {(b - a) * per_gib:.3f}")
        print(f"driver {(d1 - d0) * per_gib:.3f}")
        print(f"machine {(m1 - m0) * per_gib:.3f}")
        counted = (c1 - c0) + sum(b - a for a, b in zip(p0, p1)) + (d1 - d0)
        print(f"other {(m1 - m0 - counted) * per_gib:.3f}")
        print(f"busy {100 * (m1 - m0) / (t1 - t0) / os.cpu_count():.0f}")
        print(f"stolen {100 * (s1 - s0) / (t1 - t0) / os.cpu_count():.0f}")


def bulk(args):
    port, size = int(args[0]), int(args[1])
    socks = int(args[args.index("--socks") + 1]) if "--socks" in args else None
    data = payload("--text" in args)
    watch = Watch(args)
    s = connect(port, socks)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * CHUNK)
    watch.start()
    left = size
    while left:
        n = min(left, CHUNK)
        s.sendall(data[:n])
        left -= n
    s.shutdown(socket.SHUT_WR)
    got = struct.unpack(">Q", recv_exactly(s, 8))[0]
    watch.stop()
    s.close()
    if got != size:
        die(f"bulk through port {port}: the sink received {got} of {size} bytes")
    watch.report(size)


def drain(args):
    port, size = int(args[0]), int(args[1])
    watch = Watch(args)
    s = connect(port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * CHUNK)
    buf = bytearray(CHUNK)
    watch.start()
    got = 0
    while n := s.recv_into(buf):
        got += n
    watch.stop()
    s.close()
    if got != size:
        die(f"drain through port {port}: received {got} of {size} bytes")
    watch.report(size)


def duplex(args):
    port, size = int(args[0]), int(args[1])
    watch = Watch(args)
    data = payload(False)
    s = connect(port)
    got = [0]

    def reader():
        buf = bytearray(CHUNK)
        while got[0] < size:
            n = s.recv_into(buf)
            if not n:
                break
            got[0] += n
    watch.start()
    r = threading.Thread(target=reader)
    r.start()
    left = size
    while left:
        n = min(left, CHUNK)
        s.sendall(data[:n])
        left -= n
    r.join()
    watch.stop()
    s.close()
    if got[0] != size:
        die(f"duplex through port {port}: {got[0]} of {size} bytes echoed back")
    watch.report(size)


def latency(args):
    port, count = int(args[0]), int(args[1])
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        with connect(port, timeout=10) as s:
            if s.recv(1) != b"!":
                die(f"latency through port {port}: no byte from the server")
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(f"{pick(0.5):.3f}")
    print(f"{pick(0.99):.3f}")


def echoes(port, timeout=10):
    try:
        with connect(port, timeout=timeout) as s:
            s.sendall(b"ping\n")
            return recv_exactly(s, 5) == b"ping\n"
    except (OSError, SystemExit):
        return False


def wait_echo(port, timeout, probe_timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if echoes(port, probe_timeout):
            return True
        time.sleep(0.005)
    return False


def startup(args):
    port, timeout, cmd = int(args[0]), float(args[1]), args[3:]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        if not wait_echo(port, timeout, timeout):
            die(f"start-up: nothing echoed on {port} within {timeout} s of starting {cmd[0]}")
        print(f"{(time.perf_counter() - t0) * 1000:.1f}")
    finally:
        proc.terminate()
        proc.wait()


def reconnect(args):
    """Started while sshd is being stopped: waits until SSH_PORT refuses (sshd down), then until it
    accepts again (polled every 2 ms), then until each forward echoes; prints each forward's gap
    from sshd's return, in seconds, one a line (the forwards are probed at once, in threads)."""
    ssh_port, timeout, ports = int(args[0]), float(args[1]), [int(p) for p in args[2:]]
    deadline = time.time() + timeout
    down = False
    while True:
        try:
            socket.create_connection((ADDR, ssh_port), timeout=1).close()
            if down:
                break
        except OSError:
            down = True
        if time.time() > deadline:
            die(f"reconnect: sshd never went down and came back on {ssh_port}")
        time.sleep(0.002)
    back = time.time()
    gaps = {}

    def probe(port):
        if wait_echo(port, timeout, 15):
            gaps[port] = time.time() - back
    threads = [threading.Thread(target=probe, args=(p,)) for p in ports]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in ports:
        if p not in gaps:
            die(f"reconnect: the forward on {p} did not echo again within {timeout} s of sshd's return")
        print(f"{gaps[p]:.2f}")


def rss(args):
    total = 0
    for p in args:
        try:
            with open(f"/proc/{p}/status") as f:
                total += int(next(l for l in f if l.startswith("VmRSS:")).split()[1])
        except FileNotFoundError:
            die(f"rss: process {p} has exited (its log is in the bench's work directory)")
    print(f"{total / 1024:.1f}")


def ready(args):
    """Waits until every forward echoes (the listeners may not exist yet), TIMEOUT in all."""
    timeout, ports = float(args[0]), [int(p) for p in args[1:]]
    deadline = time.time() + timeout
    for p in ports:
        if not wait_echo(p, max(0.1, deadline - time.time()), 10):
            die(f"the forward on {p} did not echo within {timeout} s")


if __name__ == "__main__":
    commands = {"servers": servers, "bulk": bulk, "duplex": duplex, "latency": latency,
                "ready": ready, "startup": startup, "reconnect": reconnect, "rss": rss,
                "source": source_server, "drain": drain}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        die(__doc__)
    commands[sys.argv[1]](sys.argv[2:])
