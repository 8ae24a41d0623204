//! Reading `/proc`: process trees, states and resource use of the processes under test.

use std::collections::HashMap;
use std::fs;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// State letter and parent pid from `/proc/PID/stat`.
fn stat_fields(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: the fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The state letter of a process (`R`, `S`, `T` for stopped, `Z`...), `None` once it is gone.
pub fn process_state(pid: u32) -> Option<char> {
    stat_fields(pid).map(|(state, _)| state)
}

/// The parent pid of a process, `None` once it is gone.
pub fn parent_pid(pid: u32) -> Option<u32> {
    stat_fields(pid).map(|(_, ppid)| ppid)
}

/// Every live descendant of `root` (children, grandchildren...), not `root` itself, parents
/// before their children.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((_, ppid)) = stat_fields(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut next = vec![root];
    while let Some(pid) = next.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            out.push(child);
            next.push(child);
        }
    }
    out
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
pub(crate) fn signal_pid(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), signal);
    }
}

/// Sends `signal` to the process group `pgid`, ignoring a group that is already empty.
pub(crate) fn signal_group(pgid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pgid) {
        let _ = killpg(Pid::from_raw(raw), signal);
    }
}

/// SIGSTOPs every descendant of `root` (and `root` too if `include_root`), rescanning until no
/// new process appears: a stopped process cannot fork, so the tree ends up frozen whole even
/// while it was forking. Returns the stopped pids, `root` excluded.
pub(crate) fn stop_tree(root: u32, include_root: bool) -> Vec<u32> {
    if include_root {
        signal_pid(root, Signal::SIGSTOP);
    }
    let mut stopped: Vec<u32> = Vec::new();
    loop {
        let new: Vec<u32> = descendants(root)
            .into_iter()
            .filter(|pid| !stopped.contains(pid))
            .collect();
        if new.is_empty() {
            return stopped;
        }
        for &pid in &new {
            signal_pid(pid, Signal::SIGSTOP);
        }
        stopped.extend(new);
    }
}

/// SIGKILLs `root` and all its descendants. The tree is frozen first: killing a parent first
/// would hand its children to init, out of reach of a scan by parent pid (sshd's per-connection
/// processes call setsid(), so killing the process group does not reach them either).
/// Returns the descendants that were killed; the caller reaps `root` if it is its child.
pub(crate) fn kill_tree(root: u32) -> Vec<u32> {
    let tree = stop_tree(root, true);
    for &pid in &tree {
        signal_pid(pid, Signal::SIGKILL);
    }
    signal_pid(root, Signal::SIGKILL);
    tree
}

/// Whether a process has exited (gone, or a zombie waiting to be reaped).
pub(crate) fn has_exited(pid: u32) -> bool {
    matches!(process_state(pid), None | Some('Z' | 'X'))
}

/// The number of open file descriptors of a process (entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
        .count()
}

/// How many established TCP connections the process holds whose local port is `port`: the
/// clients a listener of it has accepted. Counted by socket inode, so connections of the same
/// process that are still closing on other ports do not count (an fd count would).
pub fn accepted_on(pid: u32, port: u16) -> usize {
    accepted(pid, port, |_| true)
}

/// [`accepted_on`], counting only the clients whose own (remote) port is one of `clients`: those
/// connections and no others, whatever else the listener has accepted or is closing meanwhile.
pub fn accepted_from(pid: u32, port: u16, clients: &[u16]) -> usize {
    accepted(pid, port, |remote| clients.contains(&remote))
}

fn accepted(pid: u32, port: u16, remote_port_wanted: impl Fn(u16) -> bool) -> usize {
    let inodes: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| fs::read_link(entry.path()).ok())
                .filter_map(|target| {
                    let target = target.to_string_lossy().into_owned();
                    let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
                    Some(inode.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let wanted = format!(":{port:04X}");
    let remote_port = |address: &str| {
        let (_, hex) = address.rsplit_once(':')?;
        u16::from_str_radix(hex, 16).ok()
    };
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|line| {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 9
                && fields[1].ends_with(&wanted)
                && fields[3] == "01"
                && remote_port(fields[2]).is_some_and(&remote_port_wanted)
                && inodes.iter().any(|inode| inode == fields[9])
        })
        .count()
}

/// The resident set size of a process in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}
