#!/usr/bin/env bash
# Builds tunneld's release binary for a Debian architecture from an x86_64 Debian/Ubuntu machine.
#
#   packaging/cross-build.sh ARCH [--check | --print-target] [--static-musl]
#
#   ARCH           amd64, arm64 or armhf (Debian's names)
#   --check        `cargo check` for that target instead of the release build (what CI runs,
#                  so that the cross build cannot rot); nothing is linked
#   --print-target only print the target triple (no toolchain needed, nothing built)
#   --static-musl  a static musl binary instead (for test-arm.sh: it lets qemu run the ARMv6 code
#                  without Debian's ARMv7 libc); not what the package ships
#
# The last line of stdout is the Rust target triple; the binary is then
# TARGET_DIR/TRIPLE/release/tunneld (TARGET_DIR is the workspace's target/ or $CARGO_TARGET_DIR).
# Everything else goes to stderr. Exit status: 0 built, 2 usage, 3 toolchain missing and not root
# (it says what to install), anything else a failed build or check.
#
# Why this way (docs/cross-building.md has the details):
# - zig links, and compiles ring's C and assembly, through cargo-zigbuild, against glibc 2.31
#   symbol versions (TUNNELD_GLIBC): the binaries run on Debian 11+, Ubuntu 20.04+ and Raspberry Pi
#   OS bullseye+, not only on the bookworm machine that built them. amd64 included.
# - rustup here has x86_64's std only. ARM std is compiled from source (-Zbuild-std) with Debian's
#   rustc-web/cargo-web and its matching rust-web-src: no dpkg foreign architecture, no ARM
#   packages on the host (adding armhf broke `apt-get update` on one mirror).
# - armhf is arm-unknown-linux-gnueabihf: ARMv6 + VFPv2, what Raspberry Pi OS targets, so one
#   package runs on a Pi 1 / Zero as on a Pi 2-5. TUNNELD_ARMHF_TRIPLE=armv7-unknown-linux-gnueabihf
#   builds ARMv7 instead.
#
# As root it installs what is missing: apt packages (--no-install-recommends, and it refuses a
# transaction that would upgrade or remove an installed package), and ziglang + cargo-zigbuild
# (pinned) from PyPI into a venv in /var/cache/tunneld-cross (TUNNELD_CROSS_CACHE).
set -euo pipefail

ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1
GLIBC_FLOOR="${TUNNELD_GLIBC:-2.31}"

log() { printf 'cross-build: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2
    exit "${1:-2}"
}

arch=""
check=0
print_only=0
musl=0
for arg in "$@"; do
    case "$arg" in
        amd64 | arm64 | armhf) [ -z "$arch" ] || usage 2; arch="$arg" ;;
        --check) check=1 ;;
        --print-target) print_only=1 ;;
        --static-musl) musl=1 ;;
        -h | --help) usage 0 ;;
        *) log "unknown argument: $arg"; usage 2 ;;
    esac
done
[ -n "$arch" ] || usage 2

cd "$(dirname "$0")/.."

# The Rust target, whether it needs std built from source, and the ELF machine to expect.
case "$arch" in
    amd64) triple=x86_64-unknown-linux-gnu; build_std=0; machine="X86-64" ;;
    arm64) triple=aarch64-unknown-linux-gnu; build_std=1; machine="AArch64" ;;
    armhf) triple="${TUNNELD_ARMHF_TRIPLE:-arm-unknown-linux-gnueabihf}"; build_std=1; machine="ARM" ;;
esac
if [ "$musl" = 1 ]; then
    triple="${triple/%-gnueabihf/-musleabihf}"
    triple="${triple/%-gnu/-musl}"
    build_std=1 # rustup here has no musl std either
fi
if [ "$print_only" = 1 ]; then
    echo "$triple"
    exit 0
fi

# --- toolchain -----------------------------------------------------------------------------------

is_root=0
[ "$(id -u)" = 0 ] && is_root=1
if [ -n "${TUNNELD_CROSS_CACHE:-}" ]; then
    cache="$TUNNELD_CROSS_CACHE"
elif [ "$is_root" = 1 ] || [ -x /var/cache/tunneld-cross/venv/bin/cargo-zigbuild ]; then
    cache=/var/cache/tunneld-cross
else
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/tunneld-cross"
fi
venv="$cache/venv"

missing_apt=()
missing_what=()

need_deb() { # need_deb PACKAGE WHY
    if [ "$(dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null)" != installed ]; then
        missing_apt+=("$1")
        missing_what+=("apt package $1 ($2)")
    fi
}

# Debian's rustc-web/cargo-web (bookworm-security) for the ARM targets; with rust-web-src,
# -Zbuild-std compiles std for any target its LLVM knows. rustup's cargo/rustc come first on
# PATH, so Debian's are named explicitly.
debian_rust=0
if [ "$build_std" = 1 ]; then
    debian_rust=1
elif ! command -v cargo >/dev/null || ! command -v rustc >/dev/null; then
    debian_rust=1 # amd64 without rustup: Debian's toolchain has x86_64's std
fi
if [ "$debian_rust" = 1 ]; then
    need_deb rustc-web "Rust compiler, Debian's"
    need_deb cargo-web "cargo, Debian's"
    [ "$build_std" = 0 ] || need_deb rust-web-src "std's source, for -Zbuild-std"
fi
need_deb python3-venv "the venv that holds zig and cargo-zigbuild"
need_deb binutils "readelf, to check the result"

venv_ok() {
    [ -x "$venv/bin/cargo-zigbuild" ] &&
        [ "$("$venv/bin/cargo-zigbuild" --version 2>/dev/null)" = "cargo-zigbuild $CARGO_ZIGBUILD_VERSION" ] &&
        [ "$("$venv/bin/python3" -m ziglang version 2>/dev/null)" = "$ZIGLANG_VERSION" ]
}
venv_missing=0
if ! venv_ok; then
    venv_missing=1
    missing_what+=("PyPI ziglang==$ZIGLANG_VERSION and cargo-zigbuild==$CARGO_ZIGBUILD_VERSION in $venv")
fi

if [ ${#missing_what[@]} -gt 0 ] && [ "$is_root" = 0 ]; then
    log "missing (run this script as root to install them, or install them yourself):"
    for what in "${missing_what[@]}"; do log "  - $what"; done
    if [ ${#missing_apt[@]} -gt 0 ]; then
        log "  sudo apt-get update && sudo apt-get install --no-install-recommends ${missing_apt[*]}"
        log "  (rustc-web, cargo-web and rust-web-src come from bookworm-security)"
    fi
    if [ "$venv_missing" = 1 ]; then
        log "  python3 -m venv $venv && $venv/bin/pip install ziglang==$ZIGLANG_VERSION cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
        log "  (or TUNNELD_CROSS_CACHE=DIR for another place than $cache)"
    fi
    exit 3
fi

if [ ${#missing_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -s -q --no-install-recommends "${missing_apt[@]}" >/dev/null 2>&1; then
        log "apt-get update"
        apt-get update -qq >&2
    fi
    # Never upgrade or remove what the host has (its systemd, its toolchain) as a side effect.
    plan="$(apt-get install -s -q --no-install-recommends "${missing_apt[@]}")" ||
        die "apt cannot install ${missing_apt[*]}: $plan"
    if grep -E '^(Remv |Inst [^ ]+ \[)' <<<"$plan" >&2; then
        die "installing ${missing_apt[*]} would upgrade or remove the packages above; install by hand if that is fine"
    fi
    log "apt-get install ${missing_apt[*]}"
    apt-get install -y -q --no-install-recommends "${missing_apt[@]}" >&2
fi
if [ "$venv_missing" = 1 ]; then
    log "installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $CARGO_ZIGBUILD_VERSION into $venv"
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check \
        "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" >&2
    venv_ok || die "the venv in $venv does not work after installing"
fi

# cargo-zigbuild finds zig as `python3 -m ziglang` on PATH; Debian's cargo and rustc are in
# /usr/bin, behind rustup's.
if [ "$debian_rust" = 1 ]; then
    export PATH="$venv/bin:/usr/bin:$PATH" RUSTC=/usr/bin/rustc
else
    export PATH="$venv/bin:$PATH"
fi
[ "$build_std" = 0 ] || export RUSTC_BOOTSTRAP=1 # -Zbuild-std on a stable compiler

# --- build -----------------------------------------------------------------------------------------

# The glibc suffix makes zig link against that version's symbols; musl is static.
zig_target="$triple"
[ "$musl" = 1 ] || zig_target="$triple.$GLIBC_FLOOR"
args=(-p tunneld --bin tunneld --release --target "$zig_target")
[ "$build_std" = 0 ] || args+=(-Zbuild-std)
if [ "$musl" = 1 ]; then
    # zig brings musl's crt1.o and friends; rustc's self-contained ones are not in a sysroot
    # whose std is built from source ("failed to open object crt1.o").
    triple_var="$(tr 'a-z-' 'A-Z_' <<<"$triple")"
    export "CARGO_TARGET_${triple_var}_RUSTFLAGS=-C link-self-contained=no"
fi

log "$(rustc --version) ($(command -v rustc)), $(cargo --version), zig $ZIGLANG_VERSION, cargo-zigbuild $CARGO_ZIGBUILD_VERSION"
start=$SECONDS
if [ "$check" = 1 ]; then
    log "cargo-zigbuild check ${args[*]}"
    cargo-zigbuild check "${args[@]}" >&2
    log "check for $triple passed in $((SECONDS - start)) s"
    echo "$triple"
    exit 0
fi

log "cargo-zigbuild zigbuild ${args[*]}"
cargo-zigbuild zigbuild "${args[@]}" >&2
elapsed=$((SECONDS - start))

target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
bin="$target_dir/$triple/release/tunneld"
[ -f "$bin" ] || die "the build did not produce $bin"

# What the result needs and is: the highest GLIBC_ version it references, its machine.
got_machine="$(readelf -h "$bin" | sed -n 's/^ *Machine: *//p')"
case "$got_machine" in
    *"$machine"*) ;;
    *) die "$bin is for '$got_machine', not $machine" ;;
esac
if [ "$musl" = 1 ]; then
    if readelf -l "$bin" | grep -q INTERP; then die "$bin is not static"; fi
    log "static (musl)"
else
    glibc="$(readelf --version-info "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -n 1)"
    [ -n "$glibc" ] || die "$bin references no GLIBC_ version"
    highest="$(printf '%s\n' "${glibc#GLIBC_}" "$GLIBC_FLOOR" | sort -V | tail -n 1)"
    [ "$highest" = "$GLIBC_FLOOR" ] || die "$bin needs $glibc, more than GLIBC_$GLIBC_FLOOR"
    log "needs at most $glibc; libraries: $(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | xargs)"
fi
if [ "$machine" = ARM ]; then
    log "ARM attributes: $(readelf -A "$bin" | grep -E 'Tag_CPU_arch:|Tag_FP_arch:|Tag_ABI_VFP_args:' | sed 's/^ *//' | paste -sd ';')"
fi
size="$(stat -c %s "$bin")"
log "built $bin: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }') MiB) in ${elapsed} s"
echo "$triple"
