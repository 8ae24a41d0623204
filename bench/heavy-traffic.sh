#!/usr/bin/env bash
# The full heavy-traffic matrix, outside CI (CI runs a reduced one: tests/tests/heavy_traffic.rs).
#
# 1. tests/tests/heavy_traffic.rs at full size, optimised (`--profile measure`): 4 and then 16 parallel streams of
#    SIZE MiB each (default 1024) through `remote`, `local` and `dynamic` forwards, one direction
#    at a time and both at once, a slow reader beside fast ones, compression, key exchanges
#    started by tunneld (rekey_limit 16M) and by sshd (RekeyLimit 32M), every byte verified, and
#    no reconnect allowed.
# 2. iperf3 --bidir (full duplex at full speed on one connection) through tunneld's -L and
#    OpenSSH's ssh -L, side by side against the same sshd, with nothing closed.
#
#   bench/heavy-traffic.sh [SIZE_MIB]      (default 1024; 64 for a quick run)
#   STREAMS="4 16"                         (the stream counts to run; "" for iperf3 alone)
#   COMPRESSED_MIB=N                       (streams of N MiB in the compressed cases, which run
#                                           at zlib's speed; default SIZE_MIB)
#   TUNNELD_BIN=PATH                       (iperf3: a release binary already built)
#
# It takes a while: at ~1 GB/s, 16 x 1 GiB both ways is half a minute per case, and the matrix
# has 15 cases per stream count.
set -euo pipefail
cd "$(dirname "$0")/.."
size="${1:-1024}"

command -v iperf3 >/dev/null || {
    echo "heavy-traffic: installing iperf3" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iperf3 >/dev/null
}

for streams in ${STREAMS-4 16}; do
    echo "== $streams streams of $size MiB (compressed: ${COMPRESSED_MIB:-$size} MiB)"
    TUNNELD_HEAVY_STREAMS=$streams TUNNELD_HEAVY_MIB=$size \
        TUNNELD_HEAVY_COMPRESSED_MIB=${COMPRESSED_MIB:-$size} \
        TUNNELD_HEAVY_PARALLEL=$streams TUNNELD_HEAVY_PARALLEL_MIB=$size \
        cargo test --quiet --profile measure -p tunneld-tests --test heavy_traffic -- \
        --include-ignored --test-threads 1 --nocapture 2>&1 | grep -E '^\[|test result|panicked|FAILED'
done

# iperf3 --bidir through tunneld -L and ssh -L.
# shellcheck source=bench/lib.sh
. bench/lib.sh
release_tunneld
bench_init tunneld-heavy
start_sshd "RekeyLimit 32M"
iperf_port=$(free_port); t_port=$(free_port); o_port=$(free_port)

{ bench_hosts_toml; cat <<CFG; } > "$work/tunneld.toml"
[tunnels.heavy]
host = "bench"
ciphers = ["aes128-gcm@openssh.com"]
rekey_limit = "16M"
local = ["$t_port:127.0.0.1:$iperf_port"]
CFG
"$tunneld" run --config "$work/tunneld.toml" 2>"$work/tunneld.log" & pids+=($!)
ssh -N -F /dev/null -o BatchMode=yes -o UserKnownHostsFile="$work/known_hosts" \
    -o Ciphers=aes128-gcm@openssh.com -o RekeyLimit=16M -i "$work/client" -p "$ssh_port" \
    -L "$o_port:127.0.0.1:$iperf_port" "$(id -un)@127.0.0.1" 2>"$work/ssh.log" & pids+=($!)
# Probed before iperf3 listens: a probe that reached iperf3 would count as a test's control
# connection, and iperf3 serves one test at a time.
wait_port "$t_port"; wait_port "$o_port"
for _ in $(seq 200); do grep -q "tunnel up" "$work/tunneld.log" && break; sleep 0.05; done
iperf3 -s -B 127.0.0.1 -p "$iperf_port" >"$work/iperf3.log" 2>&1 & pids+=($!)
wait_port "$iperf_port"

for round in 1 2 3; do
    for client in tunneld ssh; do
        port=$t_port; [ "$client" = ssh ] && port=$o_port
        # The sum of both directions, as iperf3 reports it for --bidir.
        rate=$(iperf3 -c 127.0.0.1 -p "$port" --bidir -t 10 -J | python3 -c '
import json, sys
run = json.load(sys.stdin)
if "error" in run:
    print("failed: " + run["error"])
else:
    e = run["end"]
    print("%.2f Gbit/s" % ((e["sum_sent"]["bits_per_second"] + e["sum_sent_bidir_reverse"]["bits_per_second"]) / 1e9))')
        printf "iperf3 --bidir round %s  %-8s %s (both directions)\n" "$round" "$client" "$rate"
        case "$rate" in failed*) cp "$work/tunneld.log" "/tmp/heavy-traffic-tunneld.log"
            echo "  (tunneld's log: /tmp/heavy-traffic-tunneld.log)";; esac
    done
done
if grep -E "tunnel down|closing it" "$work/tunneld.log"; then
    echo "heavy-traffic: tunneld dropped something under load" >&2
    exit 1
fi
echo "tunneld stayed on one connection: $(grep -c 'tunnel up' "$work/tunneld.log") \"tunnel up\" line(s)"
