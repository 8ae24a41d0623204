#!/usr/bin/env bash
# 200 tunnels in one release tunneld, against one sshd on loopback, each tunnel with one local
# forward. Prints:
#   - the time from start to every tunnel up (tunneld's own log timestamps: "starting" to the
#     last first "tunnel up"), then checks that every forward echoes;
#   - the daemon's RSS, descriptors and threads with all of them up;
#   - its CPU time (utime + stime, /proc/PID/stat) over an idle minute: what the keepalive
#     wakeups cost (default keepalive_interval, 15 s);
#   - what a reload that moves one tunnel's forward (the middle one) to another port touches:
#     sshd logins and tunneld's "tunnel up" lines before and after the SIGHUP (expected: one
#     each, for that tunnel);
#   - how many connections sshd dropped under MaxStartups throttling;
#   - sshd (with every session) killed and restarted 1 s later: how long until every tunnel is
#     up again, and how many reconnects sshd dropped. Reconnects are not spread by the start-up
#     spacing, only by the jitter of the retry.
#
#   bench/scale.sh [TUNNELS] [MAXSTARTUPS]      (defaults 200 and 400:30:800)
#
# sshd's MaxStartups (default 10:30:100) drops unauthenticated connections at random once 10
# are pending. The default here is raised so that sshd is not what is measured; run with
# MAXSTARTUPS=10:30:100 to see that tunneld's start-up spread (crates/tunneld-supervisor/src/
# startup.rs) keeps 200 tunnels clear of OpenSSH's default throttling.
set -euo pipefail
cd "$(dirname "$0")/.."
tunnels="${1:-200}"
maxstartups="${2:-400:30:800}"
# TUNNELD_BIN, as in the tests, runs another binary (one already built) instead of building.
if [ -z "${TUNNELD_BIN:-}" ]; then
    cargo build --quiet --release --bin tunneld
    TUNNELD_BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/tunneld"
fi

work="$(mktemp -d /tmp/tunneld-scale.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    # sshd forks a process per connection; each ends when tunneld's connection does.
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# A private copy: the target directory may be shared, and another build could replace it.
cp "$TUNNELD_BIN" "$work/tunneld"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "nothing on $1" >&2; return 1; }

ssh_port=$(free_port); echo_port=$(free_port)
ssh-keygen -q -t ed25519 -N '' -f "$work/host"; ssh-keygen -q -t ed25519 -N '' -f "$work/client"
cp "$work/client.pub" "$work/authorized_keys"
cat > "$work/sshd_config" <<CFG
ListenAddress 127.0.0.1:$ssh_port
HostKey $work/host
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
MaxSessions 50
MaxStartups $maxstartups
CFG
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" & sshd_pid=$!; pids+=("$sshd_pid")
echo "[127.0.0.1]:$ssh_port $(cat "$work/host.pub")" > "$work/known_hosts"

python3 - "$echo_port" <<'PY' & pids+=($!)
import socket, sys, threading
def echo(c):
    with c:
        while data := c.recv(65536): c.sendall(data)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(256)
while True:
    c, _ = s.accept(); threading.Thread(target=echo, args=(c,), daemon=True).start()
PY
wait_port "$ssh_port"; wait_port "$echo_port"

# Ports for the forwards: held all at once while chosen, so that no two are the same; one more
# for the reload to move a forward to.
mapfile -t ports < <(python3 - "$((tunnels + 1))" <<'PY'
import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held: s.bind(("127.0.0.1", 0))
for s in held: print(s.getsockname()[1])
PY
)
moved=$((tunnels / 2))
write_config() {  # $1: the port of the forward of tunnel number $moved
    {
        printf '[defaults]\nidentity_files = ["%s"]\nknown_hosts = "%s"\n' "$work/client" "$work/known_hosts"
        printf '[hosts.server]\nhostname = "127.0.0.1"\nport = %s\n' "$ssh_port"
        for i in $(seq 0 $((tunnels - 1))); do
            port=${ports[$i]}; [ "$i" = "$moved" ] && port=$1
            printf '[tunnels.t%03d]\nhost = "server"\nlocal = ["%s:127.0.0.1:%s"]\n' "$i" "$port" "$echo_port"
        done
    } > "$work/scale.toml.new"
    mv "$work/scale.toml.new" "$work/scale.toml"
}
write_config "${ports[$moved]}"
"$work/tunneld" run --config "$work/scale.toml" 2>"$work/tunneld.log" & tunneld_pid=$!; pids+=("$tunneld_pid")

python3 - "$work" "$tunneld_pid" "$tunnels" "$moved" "$sshd_pid" "${ports[@]}" <<'PY'
import datetime, os, re, signal, socket, subprocess, sys, time
work, pid, n, moved, sshd_pid = (sys.argv[1],) + tuple(int(a) for a in sys.argv[2:6])
ports = [int(p) for p in sys.argv[6:]]
log = lambda: open(f"{work}/tunneld.log", errors="replace").read()
stamp = lambda line: datetime.datetime.fromisoformat(line.split()[0]).timestamp()
ups = lambda text: [(stamp(m.group(0)), m.group(1)) for m in
                    re.finditer(r"^\S+ +INFO tunnel\{tunnel=(\S+)\}: tunnel up.*$", text, re.M)]
load = lambda: open("/proc/loadavg").read().split()[0]
print(f"scale: {n} tunnels, one local forward each, one sshd "
      f"({open(f'{work}/sshd_config').read().split('MaxStartups ')[1].strip()}); load average {load()}")

deadline = time.time() + 120
while len({name for _, name in ups(log())}) < n:
    if time.time() > deadline:
        sys.exit(f"only {len({name for _, name in ups(log())})}/{n} tunnels up after 120 s")
    time.sleep(0.2)
text = log()
started = stamp(next(l for l in text.splitlines() if " INFO starting " in l))
first_up = {}
for t, name in ups(text): first_up.setdefault(name, t)
print(f"all {n} up {max(first_up.values()) - started:.2f} s after start "
      f"(first up at {min(first_up.values()) - started:.2f} s); "
      f"first attempts failed: {text.count('tunnel down')}")

def echoes(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"ping %d\n" % port); s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(4096): got += chunk
        return got == b"ping %d\n" % port
answering = sum(echoes(p) for p in ports[:n])
print(f"forwards echoing: {answering}/{n}")

def proc():
    status = open(f"/proc/{pid}/status").read()
    field = lambda k: int(re.search(rf"{k}:\s+(\d+)", status).group(1))
    return field("VmRSS"), field("VmHWM"), len(os.listdir(f"/proc/{pid}/fd")), field("Threads")
def cpu_ticks():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime
time.sleep(5)
rss, hwm, fds, threads = proc()
print(f"RSS {rss} KiB (peak {hwm} KiB), {fds} descriptors, {threads} threads")

hz = os.sysconf("SC_CLK_TCK")
t0, c0, l0 = time.time(), cpu_ticks(), load()
time.sleep(60)
t1, c1 = time.time(), cpu_ticks()
cpu = (c1 - c0) / hz
print(f"idle CPU over {t1 - t0:.0f} s: {cpu:.2f} s ({100 * cpu / (t1 - t0):.2f}% of one core; "
      f"load average {l0} -> {load()})")

logins = lambda: open(f"{work}/sshd.log", errors="replace").read().count("Accepted publickey")
before_logins, before_ups = logins(), len(ups(log()))
text = open(f"{work}/scale.toml").read()
open(f"{work}/scale.toml.new", "w").write(text.replace(f'"{ports[moved]}:', f'"{ports[n]}:'))
os.replace(f"{work}/scale.toml.new", f"{work}/scale.toml")
reloaded = time.time()
os.kill(pid, signal.SIGHUP)
while True:
    try:
        if echoes(ports[n]): break
    except OSError:
        pass
    if time.time() - reloaded > 30: sys.exit("the moved forward never answered")
    time.sleep(0.05)
took = time.time() - reloaded
time.sleep(5)
after = ups(log())[before_ups:]
print(f"reload moving t{moved:03d}'s forward: answering on the new port after {took:.2f} s; "
      f"sshd logins +{logins() - before_logins}, 'tunnel up' lines +{len(after)} "
      f"({', '.join(sorted(name for _, name in after)) or 'none'})")
old_port_free = True
try: socket.create_connection(("127.0.0.1", ports[moved]), timeout=1).close(); old_port_free = False
except OSError: pass
print(f"old port released: {old_port_free}; forwards echoing after the reload: "
      f"{sum(echoes(p) for p in ports[:n] if p != ports[moved]) + echoes(ports[n])}/{n}")
sshd_log = open(f"{work}/sshd.log", errors="replace").read()
print(f"sshd: {sshd_log.count('Accepted publickey')} logins, "
      f"{len(re.findall('drop connection|MaxStartups throttling', sshd_log))} lines about MaxStartups drops")

def descendants(root):
    children = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try: ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
        except OSError: continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        p = todo.pop(); out.append(p); todo += children.get(p, [])
    return out
def kill_tree(root):
    for p in descendants(root):
        try: os.kill(p, signal.SIGKILL)
        except ProcessLookupError: pass
before = len(ups(log()))
kill_tree(sshd_pid)
time.sleep(1)
with open(f"{work}/sshd-restarted.log", "wb") as err:
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", f"{work}/sshd_config"], stderr=err)
restarted = time.time()
try:
    while len({name for _, name in ups(log())[before:]}) < n:
        if time.time() - restarted > 180:
            print(f"after the sshd restart only {len({name for _, name in ups(log())[before:]})}/{n} up after 180 s"); break
        time.sleep(0.2)
    else:
        again = [t for t, _ in ups(log())[before:]]
        restarted_log = open(f"{work}/sshd-restarted.log", errors="replace").read()
        print(f"sshd killed and restarted: all {n} up again {max(again) - restarted:.2f} s after the restart; "
              f"{len(re.findall('drop connection|MaxStartups throttling', restarted_log))} lines about MaxStartups drops; "
              f"load average {load()}")
finally:
    kill_tree(sshd.pid)
PY
