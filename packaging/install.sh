#!/usr/bin/env bash
# Installs tunneld without a package: the binary, the systemd units, and the sysusers/tmpfiles
# snippets that create the `tunneld` user and its directories. Run as root from the source tree
# after `cargo build --release` (or pass the binary with --binary PATH).
#
#   sudo packaging/install.sh                 # then: edit /etc/tunneld/NAME.toml,
#                                             #       systemctl enable --now tunneld@NAME
#   DESTDIR=/tmp/stage packaging/install.sh   # stage into a directory (no systemctl calls)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
binary="$here/target/release/tunneld"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
destdir="${DESTDIR:-}"

if [ ! -x "$binary" ]; then
    echo "install.sh: $binary not found; run 'cargo build --release' first or pass --binary" >&2
    exit 1
fi

install -D -m 0755 "$binary" "$destdir/usr/local/bin/tunneld"
# The units name the packaged paths (/usr/bin, /usr/share/doc): one set of unit files serves
# both, and a source install points them at /usr/local as it copies them.
for unit in tunneld@.service tunneld.service; do
    install -d -m 0755 "$destdir/etc/systemd/system"
    sed -e 's#/usr/bin/tunneld#/usr/local/bin/tunneld#g' \
        -e 's#/usr/share/doc/tunneld#/usr/local/share/doc/tunneld#g' \
        "$here/systemd/$unit" >"$destdir/etc/systemd/system/$unit"
    chmod 0644 "$destdir/etc/systemd/system/$unit"
done
install -D -m 0644 "$here/systemd/tunneld.sysusers" "$destdir/etc/sysusers.d/tunneld.conf"
install -D -m 0644 "$here/systemd/tunneld.tmpfiles" "$destdir/etc/tmpfiles.d/tunneld.conf"
install -D -m 0644 "$here/README.md" "$destdir/usr/local/share/doc/tunneld/README.md"
for doc in "$here"/docs/*.md; do
    [ -e "$doc" ] && install -D -m 0644 "$doc" "$destdir/usr/local/share/doc/tunneld/$(basename "$doc")"
done
for example in "$here"/examples/*.toml; do
    install -D -m 0644 "$example" "$destdir/usr/local/share/doc/tunneld/examples/$(basename "$example")"
done

if [ -z "$destdir" ]; then
    systemd-sysusers /etc/sysusers.d/tunneld.conf
    systemd-tmpfiles --create /etc/tmpfiles.d/tunneld.conf
    systemctl daemon-reload
    echo "installed. Next: write /etc/tunneld/NAME.toml (examples in /usr/local/share/doc/tunneld/examples),"
    echo "put keys in /etc/tunneld/keys (owned by tunneld, mode 0600), check it with"
    echo "  tunneld check --config /etc/tunneld/NAME.toml"
    echo "and start it with: systemctl enable --now tunneld@NAME"
fi
