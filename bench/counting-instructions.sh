#!/usr/bin/env bash
# What a change costs tunneld in CPU instructions, which a busy machine does not blur the way
# it blurs throughput (bench/counting.sh): each binary runs under valgrind's callgrind, which
# counts the instructions the process executes, while the same work goes through a `local`
# forward to one sshd on loopback: REQUESTS small request/response round trips (64 bytes each
# way), then BULK_MIB down and BULK_MIB up. Prints the instructions of each run, the medians and
# the ratio NEW/OLD, and instructions per byte moved.
#
#   bench/counting-instructions.sh OLD_TUNNELD NEW_TUNNELD [RUNS] [BULK_MIB] [REQUESTS]   (3, 32, 500)
#
# The count covers the whole process from start to SIGTERM (handshake and key exchange
# included, the same for both). Runs of one binary still differ a little: how the runtime's
# threads and wakeups fall out depends on timing. Not part of CI (a few minutes, and valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
old="$1"; new="$2"; runs="${3:-3}"; mib="${4:-32}"; requests="${5:-500}"
command -v valgrind >/dev/null || { echo "counting-instructions: needs valgrind" >&2; exit 1; }

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init tunneld-instr
# shellcheck disable=SC2119 # no extra sshd_config lines
start_sshd
target_port=$(free_port)

# The target: the first byte of a connection says what it is. 'r': answer each 64-byte request
# with 64 bytes. 'd': send BULK_MIB. 'u': read until EOF, then answer with the count.
python3 - "$target_port" "$mib" <<'PY' & pids+=($!)
import socket, sys, threading
port, mib = int(sys.argv[1]), int(sys.argv[2])
def recv_exact(c, n):
    b = b""
    while len(b) < n:
        chunk = c.recv(n - len(b))
        if not chunk: return None
        b += chunk
    return b
def serve(c):
    with c:
        kind = c.recv(1)
        if kind == b"r":
            while (req := recv_exact(c, 64)) is not None: c.sendall(req[::-1])
        elif kind == b"d":
            block = bytes(range(256)) * 256
            for _ in range(mib * 16): c.sendall(block)
        elif kind == b"u":
            n = 0
            while chunk := c.recv(1 << 16): n += len(chunk)
            c.sendall(str(n).encode())
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(64)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
wait_port "$target_port"

# The client side of the work; exits non-zero if a byte is wrong.
cat > "$work/work.py" <<'PY'
import socket, sys, time
port, mib, requests = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def connect():
    for _ in range(600):
        try: return socket.create_connection(("127.0.0.1", port), timeout=120)
        except OSError: time.sleep(0.1)
    raise SystemExit("no forward")
with connect() as c:
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.sendall(b"r")
    for i in range(requests):
        req = (i.to_bytes(4, "big") * 16)
        c.sendall(req)
        got = b""
        while len(got) < 64: got += c.recv(64 - len(got))
        assert got == req[::-1], "a reply differs"
with connect() as c:
    c.sendall(b"d"); n = 0
    while chunk := c.recv(1 << 16): n += len(chunk)
    assert n == mib << 20, f"downloaded {n}"
with connect() as c:
    c.sendall(b"u"); block = b"x" * (1 << 16)
    for _ in range(mib * 16): c.sendall(block)
    c.shutdown(socket.SHUT_WR)
    assert c.recv(64) == str(mib << 20).encode(), "upload count differs"
PY

count() {
    local bin="$1" label="$2" run="$3" port out
    port=$(free_port); out="$work/callgrind.$label.$run"
    cat > "$work/t.toml" <<CFG
[tunnels.count]
host = "127.0.0.1:$ssh_port"
identity_files = ["$work/client"]
known_hosts = "$work/known_hosts"
connect_timeout = "60s"
local = ["$port:127.0.0.1:$target_port"]
CFG
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" run --config "$work/t.toml" \
        2>"$work/valgrind.$label.$run.log" &
    local pid=$!
    python3 "$work/work.py" "$port" "$mib" "$requests"
    kill -TERM "$pid"; wait "$pid" || true
    awk '/^summary:/ {print $2}' "$out"
}

printf "%-4s %16s %16s\n" run old new
olds=(); news=()
for run in $(seq "$runs"); do
    o=$(count "$old" old "$run"); n=$(count "$new" new "$run")
    olds+=("$o"); news+=("$n")
    printf "%-4s %16s %16s\n" "$run" "$o" "$n"
done
python3 - "$mib" "${olds[*]}" "${news[*]}" <<'PY'
import statistics, sys
mib = int(sys.argv[1]); old = [int(x) for x in sys.argv[2].split()]; new = [int(x) for x in sys.argv[3].split()]
mo, mn = statistics.median(old), statistics.median(new)
moved = 2 * (mib << 20)
print(f"median instructions: old {mo:,.0f}, new {mn:,.0f}, new/old {mn / mo:.4f}")
print(f"per byte moved (both bulk directions): old {mo / moved:.2f}, new {mn / moved:.2f}")
print(f"spread of each binary's runs: old {(max(old) - min(old)) / mo:.2%}, new {(max(new) - min(new)) / mn:.2%}")
PY
