#!/usr/bin/env bash
# Builds, once, the minimal Debian rootfs that tests/tests/systemd.rs boots with systemd-nspawn
# (docs/testing.md, "Real systemd in a container"), and prints its path on stdout.
#
#   tests/systemd/build-rootfs.sh            # ensure it exists; prints ROOTFS
#   tests/systemd/build-rootfs.sh --rebuild  # throw it away and build it again
#
# Exit status: 0 ready, 3 impossible here (not root, or the tools cannot be installed), 1 failed.
#
# The rootfs lives in $TUNNELD_TEST_CACHE (default /var/cache/tunneld-test), which survives
# between CI runs on the same machine: the first run takes one to three minutes (debootstrap
# from the mirror of the apt sources), later runs nothing.
# It is complete when ROOTFS/.tunneld-rootfs-complete exists; anything else found there (a build
# that was interrupted) is removed and built again. Builds are serialised with flock.
#
# Installs `debootstrap` and `systemd-container` if missing, with --no-install-recommends and
# systemd-container pinned to the installed systemd's version (otherwise apt upgrades the host's
# systemd). The rootfs is only ever booted as a separate tree: never boot systemd against the
# host's own / (its systemd-tmpfiles would wipe the host's /tmp).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

# Bump when the contents below change: a rootfs of another version is rebuilt.
format=2
suite="${TUNNELD_TEST_SUITE:-bookworm}"
cache="${TUNNELD_TEST_CACHE:-/var/cache/tunneld-test}"
rootfs="$cache/rootfs-$suite"
marker="$rootfs/.tunneld-rootfs-complete"
# python3 and python3-apt: tests/tests/ansible_role.rs runs Ansible inside, with -c local (the
# apt module needs python3-apt); the container has no network to install them later.
include=systemd,systemd-sysv,dbus,openssh-server,openssh-client,procps,iproute2,curl,python3,python3-apt

log() { echo "build-rootfs: $*" >&2; }
die() { log "$*"; exit 1; }

rebuild=no
case "${1:-}" in
    "") ;;
    --rebuild) rebuild=yes ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
esac

[ "$(id -u)" = 0 ] || { log "must run as root"; exit 3; }

complete() { [ -f "$marker" ] && [ "$(cat "$marker")" = "format=$format suite=$suite" ]; }

# Fast path, without the lock: a complete rootfs is never modified again.
if [ "$rebuild" = no ] && complete && command -v systemd-nspawn >/dev/null; then
    echo "$rootfs"
    exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

# The mirror the machine's apt sources use (deb822 or one-line format), unless given.
mirror() {
    if [ -n "${TUNNELD_TEST_MIRROR:-}" ]; then
        echo "$TUNNELD_TEST_MIRROR"
        return
    fi
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # The stanza whose Suites has the suite itself (not -security or -updates).
        uri=$(awk -v suite="$suite" '
            BEGIN { RS = ""; FS = "\n" }
            {
                u = ""; ok = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); u = a[2] }
                    if ($i ~ /^Suites:/) {
                        n = split($i, s, /[ \t]+/)
                        for (j = 2; j <= n; j++) if (s[j] == suite) ok = 1
                    }
                }
                if (ok && u != "") { print u; exit }
            }' "$f")
        if [ -n "$uri" ]; then
            echo "$uri"
            return
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk -v suite="$suite" '$1 == "deb" && $0 !~ /\[/ && $3 == suite { print $2; exit }
                                     $1 == "deb" && $0 ~ /\[/ { sub(/\[[^]]*\][ \t]*/, ""); if ($3 == suite) { print $2; exit } }' "$f")
        if [ -n "$uri" ]; then
            echo "$uri"
            return
        fi
    done
    die "no apt source for $suite found; set TUNNELD_TEST_MIRROR"
}

install_tools() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if ! command -v systemd-nspawn >/dev/null; then
        local version
        version=$(dpkg-query -W -f='${Version}' systemd) || die "systemd is not installed"
        missing+=("systemd-container=$version")
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        # Exit status 3: the tools cannot be had here (the test skips outside CI).
        apt-get update -qq || { log "apt-get update failed"; exit 3; }
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
            { log "cannot install ${missing[*]}"; exit 3; }
    fi
}

install_tools
if [ "$rebuild" = yes ] || ! complete; then
    if [ -e "$rootfs" ]; then
        log "removing the incomplete or outdated $rootfs"
        # A build's mounts (proc, sys) lived in its own mount namespace and died with it; still,
        # never cross into another filesystem.
        rm -rf --one-file-system "$rootfs"
    fi
    partial="$rootfs.partial"
    rm -rf --one-file-system "$partial"
    url=$(mirror)
    log "debootstrap $suite from $url into $rootfs (one to three minutes)"
    started=$(date +%s)
    # Its own mount namespace: whatever debootstrap mounts under the target goes away with it.
    if ! unshare --mount --propagation private -- \
        debootstrap --variant=minbase --include="$include" "$suite" "$partial" "$url" \
        >"$cache/debootstrap.log" 2>&1; then
        tail -n 30 "$cache/debootstrap.log" >&2
        rm -rf --one-file-system "$partial"
        die "debootstrap failed (full log: $cache/debootstrap.log)"
    fi

    # A container gets its hostname from nspawn and always the same machine id.
    rm -f "$partial/etc/hostname"
    echo 5e1fd0c0a4b04c3b9e2f6a7d8c9b0a11 >"$partial/etc/machine-id"
    # Nothing to log in on, and nothing periodic to disturb a test.
    mask=(getty@.service serial-getty@.service console-getty.service container-getty@.service
          systemd-networkd-wait-online.service)
    for timer in "$partial"/lib/systemd/system/*.timer "$partial"/etc/systemd/system/*.timer; do
        [ -e "$timer" ] && mask+=("$(basename "$timer")")
    done
    systemctl --root="$partial" mask "${mask[@]}" >/dev/null 2>&1
    # The account that the test's tunnel logs in as on the container's own sshd.
    chroot "$partial" useradd --create-home --shell /bin/bash tunnel
    # debootstrap leaves its apt lists and package cache behind; the tests need neither.
    rm -rf "$partial"/var/cache/apt/archives/*.deb "$partial"/var/lib/apt/lists/*_Packages
    mv "$partial" "$rootfs"
    echo "format=$format suite=$suite" >"$marker"
    log "rootfs ready in $(($(date +%s) - started)) s: $(du -sh --one-file-system "$rootfs" | cut -f1)"
fi

echo "$rootfs"
