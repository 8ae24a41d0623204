#!/usr/bin/env bash
# Runs the ARM release binaries under qemu-user with real Raspberry Pi CPU models, against a real
# OpenSSH sshd on this machine's loopback, with Debian bookworm's libc and with bullseye's glibc
# 2.31 (the floor they are built for). Slow (about half an hour with the builds): not for CI.
#
#   packaging/test-arm.sh [amd64] [arm64] [armhf]      (arm64 and armhf when none is named)
#
# Binaries: $TUNNELD_ARM64_BIN, $TUNNELD_ARMHF_BIN, $TUNNELD_AMD64_BIN (the shipped, dynamically
# linked ones) and $TUNNELD_ARMV6_STATIC_BIN (armhf's code as a static musl binary, see below);
# each one not given is built with packaging/cross-build.sh (a no-op when cargo finds it up to
# date). The native tunneld that outputs are compared with: $TUNNELD_NATIVE_BIN, else a debug
# build. TUNNELD_TEST_MIB (default 16) sets the payload of each transfer; NO_CARGO_TESTS=1 skips
# the Rust end-to-end tests; TUNNELD_TEST_KEEP=1 keeps its temporary directory (logs, wrappers).
#
# Each run (binary, CPU, libc) must pass:
#   version   `tunneld --version` prints what the native binary prints
#   check     `tunneld check` on every examples/*.toml as shipped, on a copy whose key files,
#             credential and SOCKS password file exist (must exit 0), and on broken copies (a
#             bad forward, a world-readable key: must exit 78); stdout, stderr and exit status
#             must equal the native binary's on the same files
#   transfer  `tunneld run` with a local forward through a throwaway sshd on 127.0.0.1 to an
#             echo server; TUNNELD_TEST_MIB MiB come back byte-identical, once per cipher
#             (aes256-gcm, chacha20-poly1305, as sshd's log confirms); then SIGTERM stops it
#             with status 0
#   cargo     the Rust end-to-end tests that run the binary as a child: tests/tests/daemon.rs
#             (host keys, authentication, agent, signals, exit codes) and reload.rs (SIGHUP), with
#             TUNNELD_BIN pointing at a wrapper that execs qemu. Not run: local_forward.rs and
#             the other files that run tunneld inside the test process (TUNNELD_BIN does not
#             reach them); notify.rs (under qemu the first STATUS= is "t: starting", which its
#             ordering assertion does not allow); pitfalls.rs (RSS, CPU ticks and fd limits of the
#             qemu process, 20000 connections: measures qemu more than tunneld)
#
# The runs:
#   arm64/cortex-a53 (Pi 3/4/Zero 2 W) with libc6-arm64-cross's bookworm libc, and again with
#       bullseye's glibc 2.31
#   armhf/cortex-a7 (Pi 2) with libc6-armhf-cross's bookworm libc, and again with bullseye's
#   armhf-static/arm1176 (Pi 1/Zero): Debian's armhf libc is ARMv7 Thumb-2 code, so under
#       arm1176 the shipped binary dies in ld.so before any of its own code runs (shown as
#       information). The static musl build is the same source, compiler and CPU flags (ARMv6 +
#       VFPv2) with a libc zig compiled for ARMv6 too, so qemu runs only ARMv6 code there.
#   armv6-scan: the shipped armhf binary disassembled: any instruction an arm1176 lacks (v6T2/v7,
#       barriers, divide, NEON, VFPv3, d16-d31, Thumb) must be in a literal pool or in code that
#       runs only on CPUs that have it (ring's NEON functions, libunwind's d16-d31 save/restore),
#       found by matching those objects' bytes in the binary
#   amd64/glibc-2.31 (only when amd64 is named): the amd64 binary with bullseye's ld.so and libc
#
# Bullseye's libc comes from `debootstrap --foreign --variant=minbase` (unpacked, never run) into
# /var/cache/tunneld-cross/bullseye-ARCH, once, as root (TUNNELD_BULLSEYE_MIRROR: another mirror).
# Needs (installed when root, else listed and exit 3): qemu-user-static, libc6-arm64-cross,
# libc6-armhf-cross, binutils-arm-linux-gnueabihf, debootstrap, openssh-server, openssh-client,
# python3. Everything listens and connects on 127.0.0.1 only; everything it starts is stopped on
# exit.
set -euo pipefail

cd "$(dirname "$0")/.."
log() { printf 'test-arm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

arches=()
for arg in "$@"; do
    case "$arg" in
        amd64 | arm64 | armhf) arches+=("$arg") ;;
        -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
        *) die "unknown argument: $arg (amd64, arm64, armhf)" ;;
    esac
done
[ ${#arches[@]} -gt 0 ] || arches=(arm64 armhf)
mib="${TUNNELD_TEST_MIB:-16}"
[ "$mib" -ge 1 ] || die "TUNNELD_TEST_MIB must be a number of MiB"

# --- what it needs ---------------------------------------------------------------------------------

missing=()
for pkg in qemu-user-static libc6-arm64-cross libc6-armhf-cross binutils-arm-linux-gnueabihf \
    debootstrap openssh-server openssh-client python3; do
    if [ "$(dpkg-query -W -f '${db:Status-Status}' "$pkg" 2>/dev/null)" != installed ]; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        log "missing: ${missing[*]}"
        log "  sudo apt-get update && sudo apt-get install --no-install-recommends ${missing[*]}"
        exit 3
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -s -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
        apt-get update -qq >&2
    fi
    plan="$(apt-get install -s -q --no-install-recommends "${missing[@]}")"
    if grep -E '^(Remv |Inst [^ ]+ \[)' <<<"$plan" >&2; then
        die "installing ${missing[*]} would upgrade or remove the packages above; install by hand if that is fine"
    fi
    log "apt-get install ${missing[*]}"
    # openssh-server starts the system's sshd where systemd runs; this script does not use it.
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# --- the binaries ----------------------------------------------------------------------------------

target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

# built ARCH [cross-build.sh options]: the path of a cross-built binary.
built() {
    local triple
    triple="$(packaging/cross-build.sh "$@" | tail -n 1)"
    echo "$target_dir/$triple/release/tunneld"
}

native="${TUNNELD_NATIVE_BIN:-}"
if [ -z "$native" ]; then
    log "building the native tunneld (debug) to compare outputs with"
    cargo build --quiet -p tunneld --bin tunneld >&2
    native="$target_dir/debug/tunneld"
fi

work="$(mktemp -d /tmp/tunneld-test-arm.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${TUNNELD_TEST_KEEP:-0}" = 1 ] || [ "${failed:-0}" = 1 ]; then
        log "kept $work (logs, wrappers, inputs)"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# wrapper NAME BINARY COMMAND...: a script that runs BINARY through COMMAND (qemu, or ld.so)
# like a native program.
wrapper() {
    local name="$1" bin="$2" path="$work/bin/$1"
    shift 2
    [ -f "$bin" ] || die "no binary at $bin"
    bin="$(realpath "$bin")" # cargo test runs the tests in another directory
    mkdir -p "$work/bin"
    printf '#!/bin/sh\nexec %s '\''%s'\'' "$@"\n' "$*" "$bin" >"$path"
    chmod +x "$path"
    echo "$path"
}

# qemu for a sysroot: -L SYSROOT, and LD_LIBRARY_PATH because with libc6:ARCH also installed,
# ld.so would otherwise mix the host's multiarch libc with the sysroot's (threaded programs hung).
qemu_args() { # qemu_args QEMU CPU SYSROOT LIBDIR
    echo "$1 -cpu $2 -L $3 -E LD_LIBRARY_PATH=$4"
}

# Debian bullseye's libc (glibc 2.31, the floor the binaries are built for), unpacked once by
# `debootstrap --foreign` (nothing of it runs) into the cross-build cache.
bullseye() { # bullseye DEBIAN_ARCH: the directory
    local dir="$cache/bullseye-$1"
    if [ ! -e "$dir/.unpacked" ]; then
        [ "$(id -u)" = 0 ] || die "no bullseye libc for $1 in $dir: run this script as root once"
        log "unpacking Debian bullseye ($1) into $dir (once, about 50 s)"
        rm -rf "$dir"
        mkdir -p "$cache"
        debootstrap --foreign --variant=minbase --arch="$1" bullseye "$dir" \
            "${TUNNELD_BULLSEYE_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap-$1.log" 2>&1 ||
            die "debootstrap bullseye $1 failed: $(tail -n 3 "$work/debootstrap-$1.log")"
        touch "$dir/.unpacked"
    fi
    compgen -G "$dir/lib/*-linux-gnu*/libc-2.31.so" >/dev/null || die "$dir has no glibc 2.31"
    echo "$dir"
}
cache="${TUNNELD_CROSS_CACHE:-/var/cache/tunneld-cross}"

runs=() # NAME=WRAPPER
for arch in "${arches[@]}"; do
    case "$arch" in
        amd64)
            bin="${TUNNELD_AMD64_BIN:-$(built amd64)}"
            root="$(bullseye amd64)"
            lib="$root/lib/x86_64-linux-gnu"
            runs+=("amd64/glibc-2.31=$(wrapper amd64-bullseye "$bin" "$lib/ld-2.31.so" --library-path "$lib")")
            ;;
        arm64)
            bin="${TUNNELD_ARM64_BIN:-$(built arm64)}"
            root="$(bullseye arm64)"
            runs+=("arm64/cortex-a53=$(wrapper arm64 "$bin" \
                "$(qemu_args qemu-aarch64-static cortex-a53 /usr/aarch64-linux-gnu /usr/aarch64-linux-gnu/lib)")")
            runs+=("arm64/cortex-a53/glibc-2.31=$(wrapper arm64-bullseye "$bin" \
                "$(qemu_args qemu-aarch64-static cortex-a53 "$root" "$root/lib/aarch64-linux-gnu")")")
            ;;
        armhf)
            armhf_bin="${TUNNELD_ARMHF_BIN:-$(built armhf)}"
            static_bin="${TUNNELD_ARMV6_STATIC_BIN:-$(built armhf --static-musl)}"
            root="$(bullseye armhf)"
            runs+=("armhf/cortex-a7=$(wrapper armhf "$armhf_bin" \
                "$(qemu_args qemu-arm-static cortex-a7 /usr/arm-linux-gnueabihf /usr/arm-linux-gnueabihf/lib)")")
            runs+=("armhf/cortex-a7/glibc-2.31=$(wrapper armhf-bullseye "$armhf_bin" \
                "$(qemu_args qemu-arm-static cortex-a7 "$root" "$root/lib/arm-linux-gnueabihf")")")
            runs+=("armhf-static/arm1176=$(wrapper armv6-static "$static_bin" qemu-arm-static -cpu arm1176)")
            armv6_debian_libc="$(wrapper armhf-arm1176 "$armhf_bin" \
                "$(qemu_args qemu-arm-static arm1176 /usr/arm-linux-gnueabihf /usr/arm-linux-gnueabihf/lib)")"
            ;;
    esac
done

# --- the checks ------------------------------------------------------------------------------------

results=()
failed=0
record() { # record NAME STEP pass|FAIL|info DETAIL
    results+=("$(printf '%-27s %-29s %-4s %s' "$1" "$2" "$3" "$4")")
    [ "$3" != FAIL ] || failed=1
    log "$1 $2: $3 $4"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for_port() { # wait_for_port PORT SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# The check inputs, made once: the examples as shipped, a copy whose files exist, broken copies.
cases="$work/cases"
mkdir -p "$cases/shipped" "$cases/ready" "$cases/broken" "$cases/files/keys" "$cases/files/creds"
cp examples/*.toml "$cases/shipped/"
for key in id_ed25519 bastion vps legacy; do
    ssh-keygen -q -t ed25519 -N '' -C "test-arm $key" -f "$cases/files/keys/$key"
done
ssh-keygen -q -t rsa -b 2048 -N '' -C "test-arm office" -f "$cases/files/creds/office"
printf 'alice:correct horse\nbob:battery staple\n' >"$cases/files/socks-users"
chmod 600 "$cases/files/socks-users"
for example in examples/*.toml; do
    sed -e "s|/etc/tunneld/keys/|$cases/files/keys/|g" \
        -e "s|/etc/tunneld/socks-users|$cases/files/socks-users|g" \
        "$example" >"$cases/ready/$(basename "$example")"
done
sed 's|"5432:localhost:5432"|"5432:localhost"|' examples/a-postgres.toml >"$cases/broken/bad-forward.toml"
cp "$cases/files/keys/vps" "$cases/files/world-readable"
chmod 644 "$cases/files/world-readable"
sed "s|/etc/tunneld/keys/vps|$cases/files/world-readable|" examples/d-raspberry-pi-reverse-ssh.toml \
    >"$cases/broken/world-readable-key.toml"
n_examples="$(find "$cases/shipped" -name '*.toml' | wc -l)"
[ "$n_examples" -ge 7 ] || die "only $n_examples examples found"

# run_check BIN FILE OUTDIR: stdout, stderr and status of `BIN check --config FILE` into OUTDIR.
run_check() {
    mkdir -p "$3"
    local status=0
    CREDENTIALS_DIRECTORY="$cases/files/creds" "$1" check --config "$2" >"$3/out" 2>"$3/err" || status=$?
    echo "$status" >"$3/status"
}

check_step() { # check_step NAME WRAPPER
    local name="$1" bin="$2" problems=() file kind base want got
    for kind in shipped ready broken; do
        for file in "$cases/$kind"/*.toml; do
            base="$kind/$(basename "$file")"
            run_check "$native" "$file" "$work/out/native/$base"
            run_check "$bin" "$file" "$work/out/$name/$base"
            want="$(cat "$work/out/native/$base/status")"
            got="$(cat "$work/out/$name/$base/status")"
            case "$kind" in
                ready) [ "$want" = 0 ] || problems+=("native check of $base exits $want, not 0") ;;
                broken) [ "$want" = 78 ] || problems+=("native check of $base exits $want, not 78") ;;
            esac
            if ! diff -r "$work/out/native/$base" "$work/out/$name/$base" >"$work/diff" 2>&1; then
                problems+=("$base: differs from native (status $got vs $want): $(head -c 400 "$work/diff")")
            fi
        done
    done
    if [ ${#problems[@]} -eq 0 ]; then
        record "$name" check pass "$(find "$cases" -name '*.toml' | wc -l) files, same output and status as native"
    else
        printf '%s\n' "${problems[@]}" >&2
        record "$name" check FAIL "${problems[0]}"
    fi
}

# The throwaway sshd (as in examples/demo.sh), an echo server behind it, and the client.
sshd_dir="$work/sshd"
mkdir -p "$sshd_dir"
ssh-keygen -q -t ed25519 -N '' -f "$sshd_dir/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$sshd_dir/client_key"
cp "$sshd_dir/client_key.pub" "$sshd_dir/authorized_keys"
ssh_port="$(free_port)"
cat >"$sshd_dir/sshd_config" <<CFG
ListenAddress 127.0.0.1:$ssh_port
HostKey $sshd_dir/host_key
PidFile $sshd_dir/sshd.pid
AuthorizedKeysFile $sshd_dir/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
AllowTcpForwarding yes
LogLevel DEBUG1
CFG
echo "[127.0.0.1]:$ssh_port $(cat "$sshd_dir/host_key.pub")" >"$sshd_dir/known_hosts"
if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd; fi
/usr/sbin/sshd -D -e -f "$sshd_dir/sshd_config" 2>"$sshd_dir/sshd.log" &
pids+=($!)
wait_for_port "$ssh_port" 10 || die "sshd did not start: $(cat "$sshd_dir/sshd.log")"

cat >"$work/echo.py" <<'PY'
import socket, sys, threading
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(16)
with open(sys.argv[1], "w") as f:
    f.write(str(server.getsockname()[1]))
def serve(conn):
    with conn:
        while data := conn.recv(1 << 16):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
PY
cat >"$work/client.py" <<'PY'
# client.py PORT MIB SEED: sends MIB MiB through 127.0.0.1:PORT and checks the echo.
import hashlib, random, socket, sys, threading, time
port, mib, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
payload = random.Random(seed).randbytes(mib << 20)
start = time.monotonic()
conn = socket.create_connection(("127.0.0.1", port), timeout=120)
def send():
    conn.sendall(payload)
    conn.shutdown(socket.SHUT_WR)
sender = threading.Thread(target=send, daemon=True)
sender.start()
back = bytearray()
while chunk := conn.recv(1 << 16):
    back += chunk
elapsed = time.monotonic() - start
sender.join(5)
same = bytes(back) == payload
print(f"{len(back)} of {len(payload)} bytes back, {'identical' if same else 'DIFFERENT'}, "
      f"sha256 {hashlib.sha256(back).hexdigest()[:16]}, {elapsed:.1f} s, "
      f"{2 * len(payload) / 1048576 / elapsed:.1f} MiB/s both ways")
sys.exit(0 if same else 1)
PY
cat >"$work/armv6_scan.py" <<'PY'
# armv6_scan.py BINARY DISASSEMBLY OBJECT_OR_ARCHIVE...
# Every ARMv7-only instruction of BINARY must be inside code that runs only on CPUs that have
# the feature (ring's NEON assembly, libunwind's d16-d31 save/restore), found by matching the
# bytes of those objects in the binary, or in data; exit 1 otherwise.
import collections, os, re, struct, sys

binary, disasm, inputs = sys.argv[1], sys.argv[2], sys.argv[3:]

def members(path):
    """(name, bytes) of an object file, or of each object in an ar archive."""
    data = open(path, "rb").read()
    if not data.startswith(b"!<arch>\n"):
        return [(os.path.basename(path), data)]
    out, pos, names = [], 8, b""
    while pos + 60 <= len(data):
        name, size = data[pos:pos + 16].decode().strip(), int(data[pos + 48:pos + 58])
        body = data[pos + 60:pos + 60 + size]
        if name == "//":
            names = body
        elif name.startswith("/") and name[1:].isdigit():
            off = int(name[1:])
            name = names[off:names.index(b"/\n", off)].decode()
        if name not in ("/", "//", "/SYM64/") and body[:4] == b"\x7fELF":
            out.append((f"{os.path.basename(path)}({name.rstrip('/')})", body))
        pos += 60 + size + (size & 1)
    return out

def elf32(data):
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise SystemExit("not a little-endian ELF32 file")
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    secs = []
    for i in range(shnum):
        f = struct.unpack_from("<10I", data, shoff + i * shentsize)
        secs.append(dict(zip("name type flags addr off size link info align entsize".split(), f)))
    def cstr(off):
        return data[off:data.index(b"\0", off)].decode()
    for s in secs:
        s["name"] = cstr(secs[shstrndx]["off"] + s["name"])
    return data, secs, cstr

# Not in ARMv6/v6K/v6KZ + VFPv2 (the Pi 1's arm1176jzf-s): v6T2/v7 integer instructions,
# barriers, divide, NEON and the ARMv8 crypto extension, VFPv3/v4 (immediates, fixed-point
# conversions, half precision, fused multiply-add, d16-d31), and a switch to Thumb(-2) code.
V7 = re.compile(r"^(movw|movt|dmb|dsb|isb|bfc|bfi|sbfx|ubfx|rbit|mls|sdiv|udiv|pli|pldw|ldrht|strht"
                r"|ldrsht|ldrsbt|vfma|vfms|vfnma|vfnms|aes|sha1|sha256)|^v(ld|st)[1-4]\b"
                r"|\.(i8|i16|i32|i64|u8|u16|u32|u64|s8|s16|s32|s64|p8|p64|f16)\b")
D32 = re.compile(r"\b(d(1[6-9]|2[0-9]|3[01])|q[0-9]+)\b")
INSN = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
PCREL = re.compile(r"\[pc.*@\s*(?:0x)?([0-9a-f]+)")

pool, hits, total = set(), [], 0
for line in open(disasm):
    m = INSN.match(line)
    if not m:
        continue
    total += 1
    addr, op, args = int(m.group(1), 16), m.group(2), m.group(3)
    ref = PCREL.search(args)
    if op.startswith(("ldr", "vldr")) and ref:
        base = int(ref.group(1), 16)
        pool.update((base, base + 4))  # a word (or two) the code loads: data
    if (V7.match(op) or D32.search(args)
            or (op.startswith("vmov.f") and "#" in args)                # VFPv3 immediate
            or (op.startswith("vcvt") and "#" in args)                  # VFPv3 fixed point
            or (op == "blx" and not re.match(r"(r\d+|ip|lr|sl|fp|sb)\b", args))):  # to Thumb
        hits.append((addr, op, args))
hits = [h for h in hits if h[0] not in pool]

# Where ring's assembly and C objects sit in the binary: each executable section of each object,
# its relocated words masked, found once in the binary's bytes.
bdata, bsecs, _ = elf32(open(binary, "rb").read())
text = next(s for s in bsecs if s["name"] == ".text")
regions = []  # (start, end, object, section data, symbols [(off, name)], data ranges [(lo, hi)])
objects = [m for path in inputs for m in members(path)]
for obj, raw in objects:
    if raw[4] != 1 or raw[18] != 40:  # ELF32, EM_ARM
        continue
    odata, osecs, ostr = elf32(raw)
    symtab = next((s for s in osecs if s["type"] == 2), None)
    syms = collections.defaultdict(list)  # section index -> [(value, name)]
    if symtab:
        strtab = osecs[symtab["link"]]["off"]
        for i in range(symtab["size"] // 16):
            name_off, value, size, info, other, shndx = struct.unpack_from(
                "<IIIBBH", odata, symtab["off"] + 16 * i)
            name = ostr(strtab + name_off)
            if name and shndx < len(osecs):
                syms[shndx].append((value, name, info & 0xF))
    masked = collections.defaultdict(set)
    for s in osecs:
        if s["type"] == 9:  # SHT_REL
            for i in range(s["size"] // 8):
                r_off, _ = struct.unpack_from("<II", odata, s["off"] + 8 * i)
                masked[s["info"]].update(range(r_off, r_off + 4))
    for idx, s in enumerate(osecs):
        if not (s["flags"] & 4) or s["size"] < 32 or s["type"] != 1:
            continue
        body = odata[s["off"]:s["off"] + s["size"]]
        # the longest run of unrelocated bytes, up to 64, anchors the search
        best, run_start = (0, 0), None
        for i in range(len(body) + 1):
            if i < len(body) and i not in masked[idx]:
                run_start = i if run_start is None else run_start
                if i + 1 - run_start > best[1] - best[0]:
                    best = (run_start, i + 1)
                if best[1] - best[0] >= 64:
                    break
            else:
                run_start = None
        if best[1] - best[0] < 16:
            continue
        anchor = body[best[0]:best[1]]
        found, at = [], bdata.find(anchor, text["off"], text["off"] + text["size"])
        while at >= 0:
            start = at - best[0]
            if all(bdata[start + j] == body[j] for j in range(len(body)) if j not in masked[idx]):
                found.append(start)
            at = bdata.find(anchor, at + 1, text["off"] + text["size"])
        if len(found) != 1:
            continue
        vaddr = found[0] - text["off"] + text["addr"]
        # functions (STT_FUNC) name the code; mapping symbols mark data ($d) and code ($a, $t)
        named = sorted((v, n) for v, n, kind in syms[idx] if kind == 2)
        marks = sorted((v, n[:2]) for v, n, _ in syms[idx] if n[:2] in ("$a", "$t", "$d"))
        data_ranges = []
        for k, (v, kind) in enumerate(marks):
            if kind == "$d":
                end = marks[k + 1][0] if k + 1 < len(marks) else s["size"]
                data_ranges.append((v, end))
        regions.append((vaddr, vaddr + s["size"], obj, named, data_ranges))

# ring calls its NEON functions only when the kernel reports NEON (AT_HWCAP); libunwind saves and
# restores d16-d31 only for a frame whose unwind info says it used them, which VFPv2 code never does.
ALLOWED = re.compile(r"neon|NEON|vpaes|bsaes|Registers_arm12restoreVFPv3|Registers_arm9saveVFPv3")
by_place = collections.Counter()
bad = []
for addr, op, args in hits:
    region = next((r for r in regions if r[0] <= addr < r[1]), None)
    if region is None:
        bad.append((addr, op, args, "outside ring's assembly"))
        continue
    off = addr - region[0]
    if any(lo <= off < hi for lo, hi in region[4]):
        by_place[f"{region[2]}: data"] += 1
        continue
    name = max(((v, n) for v, n in region[3] if v <= off), default=(0, "?"))[1]
    if ALLOWED.search(name):
        by_place[f"{region[2]}: {name}"] += 1
    else:
        bad.append((addr, op, args, f"in {name} of {region[2]}"))

print(f"{total} instructions, {len(pool) // 2} literal-pool words, {len(hits)} ARMv7-only outside "
      f"them: {len(hits) - len(bad)} in code run only where the CPU has it (or data), {len(bad)} elsewhere; "
      f"{len(regions)} code sections of {len(objects)} objects found in the binary")
for place, n in sorted(by_place.items()):
    print(f"  {n:5d} {place}")
for addr, op, args, why in bad[:30]:
    print(f"  NOT ARMv6: {addr:x}: {op} {args} ({why})")
sys.exit(1 if bad or total < 100000 or not regions else 0)
PY
python3 "$work/echo.py" "$work/echo.port" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/echo.port" ] && break; sleep 0.1; done
echo_port="$(cat "$work/echo.port")"

transfer_step() { # transfer_step NAME WRAPPER CIPHER
    local name="$1" bin="$2" cipher="$3" port config pid status=0 out
    port="$(free_port)"
    config="$work/transfer-${name//\//-}-${cipher%%@*}.toml"
    cat >"$config" <<CFG
[defaults]
identity_files = ["$sshd_dir/client_key"]
known_hosts = "$sshd_dir/known_hosts"

[tunnels.bulk]
host = "127.0.0.1:$ssh_port"
ciphers = ["$cipher"]
local = ["127.0.0.1:$port:127.0.0.1:$echo_port"]
CFG
    local kex="kex: client->server cipher: $cipher" kex_before
    kex_before="$(grep -c -F "$kex" "$sshd_dir/sshd.log" || true)"
    "$bin" run --config "$config" >"$config.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    if ! wait_for_port "$port" 30; then
        record "$name" "$cipher" FAIL "tunneld did not listen within 30 s: $(tail -n 3 "$config.log")"
        kill "$pid" 2>/dev/null || true
        return
    fi
    out="$(timeout 600 python3 "$work/client.py" "$port" "$mib" "$RANDOM" 2>&1)" || status=$?
    local stopped=0 waited
    kill -TERM "$pid"
    for waited in $(seq 100); do
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    wait "$pid" || stopped=$?
    if [ "$status" != 0 ]; then
        record "$name" "$cipher" FAIL "$mib MiB: $out; tunneld log: $(tail -n 5 "$config.log")"
    elif [ "$stopped" != 0 ]; then
        record "$name" "$cipher" FAIL "$mib MiB ok, but SIGTERM ended it with status $stopped"
    elif ! grep -q "tunnel up" "$config.log"; then
        record "$name" "$cipher" FAIL "no 'tunnel up' in its log"
    elif [ "$(grep -c -F "$kex" "$sshd_dir/sshd.log" || true)" -le "$kex_before" ]; then
        record "$name" "$cipher" FAIL "sshd did not negotiate $cipher"
    else
        record "$name" "$cipher" pass "$mib MiB: $out; SIGTERM: exit 0 in ~$((waited / 10)).$((waited % 10)) s"
    fi
}

cargo_step() { # cargo_step NAME WRAPPER
    local name="$1" bin="$2" status=0 summary cargo_log="$work/cargo-${1//\//-}.log"
    TUNNELD_BIN="$bin" cargo test -p tunneld-tests --test daemon --test reload -- --test-threads 1 \
        >"$cargo_log" 2>&1 || status=$?
    summary="$(grep -E '^test result:' "$cargo_log" | sed -E 's/^test result: //; s/; [0-9]+ ignored.*finished in/ in/' |
        paste -sd ',' | sed 's/,/, /g' || true)"
    if [ "$status" = 0 ] && [ "$(grep -c '^test result: ok' "$cargo_log")" = 2 ]; then
        record "$name" cargo pass "tests/tests/{daemon,reload}.rs: $summary"
    else
        sed -n '/^failures:$/,$p' "$cargo_log" | head -n 80 >&2 || true
        record "$name" cargo FAIL "tests/tests/{daemon,reload}.rs: ${summary:-did not run}; log: $cargo_log"
    fi
}

for entry in "${runs[@]}"; do
    name="${entry%%=*}"
    bin="${entry#*=}"
    want="$("$native" --version)"
    if got="$("$bin" --version 2>&1)" && [ "$got" = "$want" ]; then
        record "$name" version pass "$got"
    else
        record "$name" version FAIL "printed '$got', native prints '$want'"
        continue # nothing else can work
    fi
    check_step "$name" "$bin"
    transfer_step "$name" "$bin" aes256-gcm@openssh.com
    transfer_step "$name" "$bin" chacha20-poly1305@openssh.com
    if [ "${NO_CARGO_TESTS:-0}" != 1 ]; then cargo_step "$name" "$bin"; fi
done

if [ -n "${armhf_bin:-}" ]; then
    # The shipped armhf binary on an ARMv6 CPU with Debian's (ARMv7) libc: expected to die in
    # ld.so or libc, before any of tunneld's code runs. Information, not a verdict.
    status=0
    out="$("$armv6_debian_libc" --version 2>&1)" || status=$?
    record "armhf/arm1176+deb-libc" version info "status $status: $(head -c 200 <<<"$out" | tr '\n' ' ')"

    # Every instruction of the shipped armhf binary is ARMv6, except in code that runs only on a
    # CPU that has the instructions: found by matching the bytes of ring's objects (from the
    # build directory) and of zig's libunwind (from zig's cache) in the binary.
    status=0
    arm-linux-gnueabihf-objdump -d --no-show-raw-insn "$armhf_bin" >"$work/armhf.dis"
    mapfile -t scan_inputs < <(
        find "$target_dir/arm-unknown-linux-gnueabihf/release/build" -path '*/ring-*/out/*.o' 2>/dev/null
        find "${ZIG_GLOBAL_CACHE_DIR:-$HOME/.cache/zig}" -name libunwind.a 2>/dev/null
    )
    out="$(python3 "$work/armv6_scan.py" "$armhf_bin" "$work/armhf.dis" "${scan_inputs[@]}")" || status=$?
    printf '%s\n' "$out" >&2
    if [ "$status" = 0 ]; then
        record armv6-scan disasm pass "$(head -n 1 <<<"$out")"
    else
        record armv6-scan disasm FAIL "$(head -n 1 <<<"$out")"
    fi
    record armv6-scan attributes info "$(readelf -A "$armhf_bin" | grep -E 'Tag_CPU_arch:|Tag_FP_arch:' | sed 's/^ *//' | paste -sd ';')"
fi

echo "test-arm: summary"
printf '  %s\n' "${results[@]}"
if [ "$failed" = 0 ]; then
    echo "test-arm: all passed"
else
    echo "test-arm: FAILED"
    exit 1
fi
