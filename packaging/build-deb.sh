#!/usr/bin/env bash
# Builds tunneld's Debian packages with cargo-deb (metadata: [package.metadata.deb] in
# crates/tunneld/Cargo.toml; how and why: docs/packaging.md).
#
#   packaging/build-deb.sh                      # this machine's architecture
#   packaging/build-deb.sh --arch arm64         # amd64 | arm64 | armhf | all
#   packaging/build-deb.sh --revision 2         # the Debian revision (default 1)
#   packaging/build-deb.sh --no-build           # package the binaries built before, as they are
#
# Writes target/debian/tunneld_<version>-<revision>_<arch>.deb (target/ is $CARGO_TARGET_DIR
# when set), replacing the other versions of that architecture there (cargo-deb does). The last
# lines it prints are the paths of the packages it wrote, one per line; everything else goes to
# stderr.
#
# The release binary of each architecture comes from packaging/cross-build.sh (linked by zig
# against glibc 2.31, ARM's std built from Debian's Rust sources: docs/cross-building.md). Run as
# root, this script and that one install what they miss; otherwise they say what is missing and
# exit 3.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"

cargo_deb_version=3.8.0
target_dir="${CARGO_TARGET_DIR:-$here/target}"

log() { echo "build-deb: $*" >&2; }
die() { log "$*"; exit 1; }

arches=()
revision=1
build=yes
while [ $# -gt 0 ]; do
    case "$1" in
        --arch)
            [ $# -ge 2 ] || die "--arch needs a value: amd64, arm64, armhf or all"
            case "$2" in
                all) arches=(amd64 arm64 armhf) ;;
                amd64 | arm64 | armhf) arches+=("$2") ;;
                *) die "unknown architecture $2 (amd64, arm64, armhf or all)" ;;
            esac
            shift 2 ;;
        --revision)
            [[ "${2:-}" =~ ^[0-9A-Za-z.+~]+$ ]] || die "--revision needs a Debian revision such as 1 or 2"
            revision="$2"; shift 2 ;;
        --no-build) build=no; shift ;;
        -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
if [ ${#arches[@]} -eq 0 ]; then
    command -v dpkg >/dev/null || die "dpkg not found: pass --arch"
    arches=("$(dpkg --print-architecture)")
fi

# What it needs: cargo-deb, and readelf (binutils) to check each binary's glibc floor.
missing=()
command -v readelf >/dev/null || missing+=("binutils (apt-get install binutils)")
if ! cargo deb --version 2>/dev/null | grep -q "$cargo_deb_version"; then
    missing+=("cargo-deb $cargo_deb_version (cargo install --locked cargo-deb --version $cargo_deb_version)")
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        log "missing:"
        for m in "${missing[@]}"; do log "  $m"; done
        exit 3
    fi
    if ! command -v readelf >/dev/null; then
        log "installing binutils"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils >/dev/null
    fi
    if ! cargo deb --version 2>/dev/null | grep -q "$cargo_deb_version"; then
        log "installing cargo-deb $cargo_deb_version (a few minutes, once)"
        cargo install --locked --quiet cargo-deb --version "$cargo_deb_version"
    fi
fi

# The package says `Depends: libc6 (>= FLOOR)` (crates/tunneld/Cargo.toml). Refuse a binary
# that needs a later glibc symbol version, or a shared library that libc6 does not provide:
# it would install where it cannot run.
floor=$(sed -n 's/^depends = "libc6 (>= \([0-9.]*\)).*/\1/p' crates/tunneld/Cargo.toml)
[ -n "$floor" ] || die "no 'libc6 (>= X)' in the depends of crates/tunneld/Cargo.toml"
check_libc_floor() { # check_libc_floor ARCH BINARY
    local needs libs
    needs=$(readelf --version-info --wide "$2" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' |
        sort -uV | tail -n 1)
    [ -n "$needs" ] || die "$1: $2 references no GLIBC_ symbol version: not a glibc binary?"
    if [ "$(printf '%s\n%s\n' "$needs" "$floor" | sort -V | tail -n 1)" != "$floor" ]; then
        die "$1: $2 needs glibc $needs, but the package promises it runs with libc6 >= $floor"
    fi
    libs=$(readelf --dynamic --wide "$2" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' |
        grep -vxE 'libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux.*\.so\.[0-9]+' || true)
    [ -z "$libs" ] || die "$1: $2 needs libraries outside libc6: $libs"
    log "$1: needs glibc $needs (the package depends on libc6 >= $floor)"
}

debs=()
for arch in "${arches[@]}"; do
    if [ "$build" = yes ]; then
        log "$arch: building the release binary (packaging/cross-build.sh $arch)"
        started=$(date +%s)
        triple=$("$here/packaging/cross-build.sh" "$arch" | tail -n 1)
        log "$arch: built for $triple in $(($(date +%s) - started)) s"
    else
        triple=$("$here/packaging/cross-build.sh" "$arch" --print-target | tail -n 1)
    fi
    binary="$target_dir/$triple/release/tunneld"
    [ -x "$binary" ] || die "$arch: $binary is missing (build it first, without --no-build)"
    log "$arch: $binary is $(stat -c %s "$binary") bytes"
    check_libc_floor "$arch" "$binary"

    # --no-build: the binary is the one just built (cargo-deb would build without the cross
    # toolchain's settings). cargo-deb takes the Debian architecture from the target triple.
    deb=$(cargo deb -p tunneld --no-build --target "$triple" --deb-revision "$revision" \
        --output "$target_dir/debian/" 2> >(sed 's/^/cargo-deb: /' >&2) | tail -n 1)
    [ -f "$deb" ] || die "$arch: cargo deb did not report a package (got: $deb)"
    debs+=("$(realpath "$deb")")
done

for deb in "${debs[@]}"; do
    echo "$deb"
done
