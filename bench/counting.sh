#!/usr/bin/env bash
# Two tunneld binaries side by side, to show what a change costs in throughput: small sequential
# HTTP requests and a bulk download and upload through a `local` forward, against one sshd on
# loopback. The binaries run one after the other, alternating, RUNS times; it prints each
# run and the medians with the ratio NEW/OLD. Written for the traffic counters (docs/metrics.md),
# which must cost nothing measurable.
#
#   bench/counting.sh OLD_TUNNELD NEW_TUNNELD [RUNS] [BULK_MIB] [REQUESTS]   (5, 256, 300)
set -euo pipefail
cd "$(dirname "$0")/.."
old="$1"; new="$2"; runs="${3:-5}"; mib="${4:-256}"; requests="${5:-300}"

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init tunneld-bench
# shellcheck disable=SC2119 # no extra sshd_config lines
start_sshd
web_port=$(free_port); bulk_port=$(free_port)

# Small requests: the HTTP server of bench/run.sh (headers, then the body 1 ms later).
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
# Bulk: the first byte says which way: "d" sends MIB MiB to the client, "u" reads them from it;
# then it writes one byte back ("done") and closes.
python3 - "$bulk_port" "$mib" <<'PY' & pids+=($!)
import socket, sys, threading
size = int(sys.argv[2]) << 20
chunk = b"\x5a" * (1 << 20)
def serve(c):
    way = c.recv(1)
    if way == b"d":
        for _ in range(size >> 20): c.sendall(chunk)
    else:
        left = size
        while left > 0:
            n = len(c.recv(1 << 20))
            if n == 0: break
            left -= n
        c.sendall(b"k")
    try: c.shutdown(socket.SHUT_WR)
    except OSError: pass  # the client already went away: it had all it wanted
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
wait_port "$ssh_port"; wait_port "$web_port"; wait_port "$bulk_port"

# One curl, one keep-alive connection, $requests sequential requests; prints requests/s.
rate() {
    local urls=() start end
    for _ in $(seq "$requests"); do urls+=("$1"); done
    start=$(date +%s.%N)
    curl --silent --fail "${urls[@]}" >/dev/null
    end=$(date +%s.%N)
    python3 -c "print(f'{$requests / ($end - $start):.0f}')"
}

# MiB/s of a download ("d") or an upload ("u") of $mib MiB through the forward on port $2.
bulk() {
    python3 - "$1" "$2" "$mib" <<'PY'
import socket, sys, time
way, port, mib = sys.argv[1].encode(), int(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection(("127.0.0.1", port))
start = time.monotonic()
c.sendall(way)
if way == b"d":
    got = 0
    while True:
        n = len(c.recv(1 << 20))
        if n == 0: break
        got += n
    assert got == mib << 20, got
else:
    chunk = b"\xa5" * (1 << 20)
    for _ in range(mib): c.sendall(chunk)
    assert c.recv(1) == b"k"
print(f"{mib / (time.monotonic() - start):.0f}")
PY
}

# The CPU time (user + system, in clock ticks) that process $1 has used so far.
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# Runs one binary for one measurement of each kind; prints "requests/s download upload cpu":
# the last is tunneld's CPU time over the three measurements, in clock ticks (usually 1/100 s),
# which a busy machine disturbs less than the rates.
measure() {
    local port bulk_fwd log pid
    port=$(free_port); bulk_fwd=$(free_port); log="$work/tunneld.$RANDOM.log"
    cat > "$work/bench.toml" <<CFG
[defaults]
identity_files = ["$work/client"]
known_hosts = "$work/known_hosts"
[tunnels.bench]
host = "127.0.0.1:$ssh_port"
local = ["$port:127.0.0.1:$web_port"]
[tunnels.bulk]
host = "127.0.0.1:$ssh_port"
local = ["$bulk_fwd:127.0.0.1:$bulk_port"]
CFG
    "$1" run --config "$work/bench.toml" 2>"$log" & pid=$!
    for _ in $(seq 200); do [ "$(grep -c 'tunnel up' "$log")" -ge 2 ] && break; sleep 0.05; done
    wait_port "$port"; wait_port "$bulk_fwd"
    local before
    before=$(cpu "$pid")
    echo "$(rate "http://127.0.0.1:$port/") $(bulk d "$bulk_fwd") $(bulk u "$bulk_fwd") $(( $(cpu "$pid") - before ))"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

printf "%-4s %-4s %10s %14s %12s %10s\n" run bin "req/s" "download MiB/s" "upload MiB/s" "CPU ticks"
for run in $(seq "$runs"); do
    for which in old new; do
        bin="$old"; [ "$which" = new ] && bin="$new"
        read -r r d u c < <(measure "$bin")
        printf "%-4s %-4s %10s %14s %12s %10s\n" "$run" "$which" "$r" "$d" "$u" "$c"
        echo "$which $r $d $u $c" >> "$work/results"
    done
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {w: [statistics.median(float(r[i]) for r in rows if r[0] == w) for i in (1, 2, 3, 4)] for w in ("old", "new")}
print()
print(f"{'median':<9} {'req/s':>10} {'download MiB/s':>14} {'upload MiB/s':>12} {'CPU ticks':>10}")
for w in ("old", "new"):
    print(f"{w:<9} {med[w][0]:>10.0f} {med[w][1]:>14.0f} {med[w][2]:>12.0f} {med[w][3]:>10.0f}")
print(f"{'new/old':<9} " + " ".join(f"{med['new'][i] / med['old'][i]:>{w}.3f}" for i, w in enumerate((10, 14, 12, 10))))
PY
