//! Ports for the programs that must be told theirs before they bind it: sshd (`ListenAddress`),
//! tunneld's forwards (`local = ["PORT:host:port"]`, `dynamic`), a `remote` forward's port on
//! the server. Everything else binds port 0 and keeps its listener.
//!
//! The obvious way, binding port 0 and releasing it, races under parallel tests: the port goes
//! back to the kernel's ephemeral pool, and the next `bind(0)` or outgoing connection of any test
//! (the harness's own sshd probes, tunneld's connections, another test binary) may get it before
//! the program under test binds it. So [`free_port`] hands out ports that the kernel never picks
//! by itself and that no other test takes:
//!
//! - they come from outside the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), so no
//!   `bind(0)` and no outgoing connection can get one;
//! - one process never hands out the same port twice (an atomic counter walks the range);
//! - each process starts at an offset derived from its pid, so test binaries that run at the same
//!   time (two `cargo test`s, `cargo nextest`) walk different parts of the range;
//! - a port is still bound once before it is handed out, to skip one that some other program
//!   (a service on this machine, a test binary that got round to the same block) holds.
//!
//! What is left is a program outside the tests binding the port in the moment between the check
//! and the program under test's bind; `Sshd` retries with a fresh port when that happens.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

/// How many consecutive ports one process walks before it reaches the start of the next pid's
/// block: more than any test binary uses.
const BLOCK: u32 = 256;

/// A gap beside the ephemeral range smaller than this is not worth using: the whole range is
/// used instead (ports then only get the bind check).
const MIN_GAP: u32 = 1024;

/// A TCP port on 127.0.0.1 that no other test will be handed and that the kernel does not give
/// out by itself (see the module's documentation). Only for programs that must be told their port
/// before they bind it; anything else should bind port 0 and keep its listener.
///
/// Panics once the range is used up (tens of thousands of ports in one process).
pub fn free_port() -> u16 {
    let range = Range::get();
    loop {
        let index = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(
            index < range.len,
            "free_port: all {} ports of {}..{} handed out",
            range.len,
            range.first,
            range.first + range.len
        );
        let port = range.port(index);
        if bindable(port) {
            return port;
        }
    }
}

/// How many ports this process has handed out or skipped so far.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The ports [`free_port`] walks: `len` ports from `first`, starting at `first + offset`.
#[derive(Debug)]
struct Range {
    first: u32,
    len: u32,
    offset: u32,
}

impl Range {
    fn get() -> &'static Range {
        static RANGE: OnceLock<Range> = OnceLock::new();
        RANGE.get_or_init(|| Range::outside_ephemeral(std::process::id()))
    }

    /// The larger of the two gaps beside the ephemeral range (from the lowest unprivileged port
    /// to below the range, or above it), with this process's block in it.
    fn outside_ephemeral(pid: u32) -> Range {
        let lowest = read_numbers("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .and_then(|n| n.first().copied())
            .unwrap_or(1024)
            .max(1024);
        let (ephemeral_low, ephemeral_high) =
            match read_numbers("/proc/sys/net/ipv4/ip_local_port_range").as_deref() {
                Some(&[low, high]) => (low, high),
                // Linux's default.
                _ => (32768, 60999),
            };
        let below = (lowest, ephemeral_low.saturating_sub(lowest));
        let above = (ephemeral_high + 1, 65535u32.saturating_sub(ephemeral_high));
        let (first, len) = if below.1 >= above.1 { below } else { above };
        let (first, len) = if len >= MIN_GAP {
            (first, len)
        } else {
            (lowest, 65536 - lowest)
        };
        let blocks = (len / BLOCK).max(1);
        Range {
            first,
            len,
            offset: (pid % blocks) * BLOCK,
        }
    }

    /// The `index`th port this process walks.
    fn port(&self, index: u32) -> u16 {
        let port = self.first + (self.offset + index) % self.len;
        u16::try_from(port).expect("ports are below 65536")
    }
}

/// The whitespace-separated numbers of a file such as `/proc/sys/net/ipv4/ip_local_port_range`.
fn read_numbers(path: &str) -> Option<Vec<u32>> {
    let text = fs::read_to_string(path).ok()?;
    text.split_whitespace().map(|n| n.parse().ok()).collect()
}

/// Whether 127.0.0.1:`port` can be bound right now: nothing listens there, and no socket is
/// bound to it (not even one in TIME_WAIT: the check sets no `SO_REUSEADDR`). It only binds, never
/// listens, so the check itself cannot turn away another program's bind.
fn bindable(port: u16) -> bool {
    let Ok(socket) = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)) else {
        return false;
    };
    socket
        .bind(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_outside_the_ephemeral_range_and_never_twice() {
        let (low, high) = match read_numbers("/proc/sys/net/ipv4/ip_local_port_range").as_deref() {
            Some(&[low, high]) => (low, high),
            _ => (32768, 60999),
        };
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            ports.len(),
            "a port was handed out twice: {ports:?}"
        );
        if Range::get().len < 65536 - 1024 {
            assert!(
                ports
                    .iter()
                    .all(|&p| u32::from(p) < low || u32::from(p) > high),
                "a port in the ephemeral range {low}..={high}: {ports:?}"
            );
        }
        assert!(ports.iter().all(|&p| p >= 1024), "{ports:?}");
    }

    #[test]
    fn processes_start_in_different_blocks() {
        let a = Range::outside_ephemeral(1000);
        let b = Range::outside_ephemeral(1001);
        assert_eq!(a.first, b.first);
        assert_ne!(a.offset, b.offset);
        // The first BLOCK ports of each do not overlap.
        let of = |r: &Range| (0..BLOCK).map(|i| r.port(i)).collect::<Vec<_>>();
        assert!(of(&a).iter().all(|p| !of(&b).contains(p)));
    }
}
