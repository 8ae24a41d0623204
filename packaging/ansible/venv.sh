#!/usr/bin/env bash
# Creates, once, the Python venv with the pinned Ansible tools that the role is linted and tested
# with (ansible-core, ansible-lint, pytest: requirements.txt, every dependency pinned by
# constraints.txt), and prints its path on stdout.
#
#   packaging/ansible/venv.sh              # ensure it exists; prints VENV (VENV/bin/ansible-lint ...)
#   packaging/ansible/venv.sh --rebuild    # throw it away and create it again
#   packaging/ansible/venv.sh --freeze     # print what a fresh venv resolves to (for constraints.txt)
#
# Exit status: 0 ready, 3 impossible here (no Python venv support and not root to install it,
# or PyPI unreachable), 1 failed.
#
# The venv lives in $TUNNELD_TEST_CACHE (default /var/cache/tunneld-test when root, else
# ~/.cache/tunneld-test), named after the Python version and a hash of the two pin files, so a
# change of pins makes a new one; it is complete when VENV/.complete exists (an interrupted
# creation is removed and done again). Creations are serialised with flock. The interpreter is
# Debian's /usr/bin/python3 (override: $TUNNELD_ANSIBLE_PYTHON): the systemd test also runs this
# venv's packages with the python3 of its Debian container, which must be the same version.
set -euo pipefail
export LC_ALL=C.UTF-8

here="$(cd "$(dirname "$0")" && pwd)"
python="${TUNNELD_ANSIBLE_PYTHON:-/usr/bin/python3}"

log() { echo "venv: $*" >&2; }
die() { log "$*"; exit 1; }

mode=ensure
case "${1:-}" in
    "") ;;
    --rebuild) mode=rebuild ;;
    --freeze) mode=freeze ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
esac

if [ -n "${TUNNELD_TEST_CACHE:-}" ]; then
    cache="$TUNNELD_TEST_CACHE"
elif [ "$(id -u)" = 0 ]; then
    cache=/var/cache/tunneld-test
else
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/tunneld-test"
fi

[ -x "$python" ] || { log "$python not found (set TUNNELD_ANSIBLE_PYTHON)"; exit 3; }
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# Debian splits venv support (ensurepip) into python3-venv.
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "$python has no venv support: apt-get install python3-venv"
        exit 3
    fi
    log "installing python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq --no-install-recommends python3-venv >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }; } ||
        { log "cannot install python3-venv"; exit 3; }
fi

if [ "$mode" = freeze ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$python" -m venv "$tmp/venv"
    "$tmp/venv/bin/pip" install --quiet --no-input --disable-pip-version-check -r "$here/requirements.txt" >&2
    "$tmp/venv/bin/pip" freeze --all --exclude pip --exclude setuptools
    exit 0
fi

hash=$(cat "$here/requirements.txt" "$here/constraints.txt" | sha256sum | cut -c1-12)
venv="$cache/ansible-venv-py$pyver-$hash"
marker="$venv/.complete"

# Fast path, without the lock: a complete venv is never modified again.
if [ "$mode" = ensure ] && [ -f "$marker" ]; then
    echo "$venv"
    exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.ansible-venv.lock"
flock 9

if [ "$mode" = rebuild ] || [ ! -f "$marker" ]; then
    # A venv is not relocatable: it is created where it stays, and marked complete at the end.
    rm -rf "$venv"
    started=$(date +%s)
    log "creating $venv (Python $pyver; about a minute, once)"
    "$python" -m venv "$venv"
    if ! "$venv/bin/pip" install --quiet --no-input --disable-pip-version-check \
        -r "$here/requirements.txt" -c "$here/constraints.txt" >"$cache/ansible-venv.log" 2>&1; then
        tail -n 20 "$cache/ansible-venv.log" >&2
        rm -rf "$venv"
        # Most likely PyPI cannot be reached: impossible here rather than broken.
        if grep -qiE 'connection|network|resolve|timed out|No matching distribution' "$cache/ansible-venv.log"; then
            log "pip could not fetch the pinned packages (full log: $cache/ansible-venv.log)"
            exit 3
        fi
        die "pip install failed (full log: $cache/ansible-venv.log)"
    fi
    # Venvs of other pins that nothing has created for a week (another checkout may still use
    # a recent one) go.
    for old in "$cache"/ansible-venv-py*/.complete; do
        [ -f "$old" ] && [ "${old%/.complete}" != "$venv" ] && [ -n "$(find "$old" -mtime +7)" ] &&
            rm -rf "${old%/.complete}"
    done
    date -u +%FT%TZ >"$marker"
    log "ready in $(($(date +%s) - started)) s: $(du -sh "$venv" | cut -f1)"
fi

echo "$venv"
