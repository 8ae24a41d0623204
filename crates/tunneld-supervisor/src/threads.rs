//! Where tunnels run: each tunnel, with its SSH connection, listeners and forwarded connections,
//! on one thread of a small pool, as `ssh` runs each tunnel in one process.
//!
//! Why not one runtime whose worker threads share everything: a tunnel's work is a chain of
//! hand-offs (the session task decrypts a packet and wakes the connection's pipe task, which
//! writes it out and wakes the session again for more). Spread over two workers, every hand-off
//! can wake the idle one, which steals the task, runs it and sleeps again. A 1 GiB upload through
//! one `local` forward measured about 11,500 context switches on two workers against 3,000 on
//! one thread per tunnel, and 0.79 s of CPU per GiB against 0.65 (docs/performance.md, "The
//! third round"). On one thread the hand-off is a function call away.
//!
//! The pool grows to one thread per CPU, started only when a tunnel needs one: a daemon with one
//! tunnel has one such thread. A new tunnel goes to the thread with the fewest tunnels. A tunnel
//! never uses more than one core (nor does `ssh`); tunnels spread over all of them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;
use tracing::warn;

/// How long a thread's runtime gives what is still running when the daemon stops (the tunnels
/// have had their own grace by then; this is what the supervisor gave up on).
const STOP_TIMEOUT: Duration = Duration::from_millis(200);

/// A pool of threads, each running a single-threaded tokio runtime, for the tunnels.
pub(crate) struct Threads {
    max: usize,
    running: Mutex<Vec<Worker>>,
}

struct Worker {
    handle: Handle,
    tunnels: Arc<AtomicUsize>,
    /// Dropped to stop the thread: its runtime then drops whatever still runs on it.
    _stop: oneshot::Sender<()>,
}

/// A tunnel's place on a thread; dropping it (when the tunnel's task ends) frees the place.
pub(crate) struct Placed(Arc<AtomicUsize>);

impl Drop for Placed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Threads {
    /// A pool of at most `max` threads (at least one), none started yet.
    pub(crate) fn new(max: usize) -> Threads {
        Threads {
            max: max.max(1),
            running: Mutex::new(Vec::new()),
        }
    }

    /// As many threads as this machine has CPUs (or is allowed to use).
    pub(crate) fn per_cpu() -> Threads {
        Threads::new(thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The runtime a new tunnel goes to: the thread with the fewest tunnels, or a new thread
    /// while every running one has some and the pool is not full. `None` only when no thread
    /// could be started at all (the caller runs the tunnel where it is).
    pub(crate) fn place(&self) -> Option<(Handle, Placed)> {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let load = |worker: &Worker| worker.tunnels.load(Ordering::Relaxed);
        let least = (0..running.len()).min_by_key(|&index| load(&running[index]));
        let index = match least {
            Some(index) if load(&running[index]) == 0 || running.len() >= self.max => index,
            // Every running thread has a tunnel and the pool has room: a new thread.
            _ => match start(running.len()) {
                Ok(worker) => {
                    running.push(worker);
                    running.len() - 1
                }
                Err(err) => {
                    warn!("cannot start another thread for tunnels: {err}");
                    least?
                }
            },
        };
        let worker = &running[index];
        worker.tunnels.fetch_add(1, Ordering::Relaxed);
        Some((worker.handle.clone(), Placed(worker.tunnels.clone())))
    }

    /// How many threads are running, and how many tunnels each has (for tests).
    #[cfg(test)]
    fn load(&self) -> Vec<usize> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        running
            .iter()
            .map(|worker| worker.tunnels.load(Ordering::Relaxed))
            .collect()
    }
}

/// Starts thread `index` (`tunnels-INDEX` in `top -H` and `ps -L`) with its runtime.
fn start(index: usize) -> std::io::Result<Worker> {
    let runtime = Builder::new_current_thread().enable_all().build()?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    thread::Builder::new()
        .name(format!("tunnels-{index}"))
        .spawn(move || {
            // The tasks spawned onto `handle` run while this thread waits here.
            let _ = runtime.block_on(stopped);
            runtime.shutdown_timeout(STOP_TIMEOUT);
        })?;
    Ok(Worker {
        handle,
        tunnels: Arc::new(AtomicUsize::new(0)),
        _stop: stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which thread a task spawned onto `handle` runs on.
    fn thread_of(handle: &Handle) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        handle.spawn(async move {
            let _ = tx.send(thread::current().name().unwrap_or_default().to_string());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the thread runs what is spawned onto it")
    }

    #[test]
    fn threads_start_only_when_every_running_one_has_a_tunnel() {
        let threads = Threads::new(2);
        assert_eq!(threads.load(), Vec::<usize>::new());
        let (first, a) = threads.place().unwrap();
        assert_eq!(threads.load(), vec![1]);
        let (second, b) = threads.place().unwrap();
        assert_eq!(threads.load(), vec![1, 1]);
        assert_eq!(thread_of(&first), "tunnels-0");
        assert_eq!(thread_of(&second), "tunnels-1");
        // Full: the third tunnel shares the thread with the fewest.
        drop(a);
        let (third, _c) = threads.place().unwrap();
        assert_eq!(threads.load(), vec![1, 1]);
        assert_eq!(thread_of(&third), "tunnels-0");
        let (_, _d) = threads.place().unwrap();
        assert_eq!(threads.load().iter().sum::<usize>(), 3);
        drop(b);
        assert_eq!(threads.load().iter().sum::<usize>(), 2);
    }

    #[test]
    fn a_freed_thread_is_reused_before_a_new_one_starts() {
        let threads = Threads::new(4);
        let (_, a) = threads.place().unwrap();
        drop(a);
        let (handle, _b) = threads.place().unwrap();
        assert_eq!(threads.load(), vec![1]);
        assert_eq!(thread_of(&handle), "tunnels-0");
    }

    #[test]
    fn dropping_the_pool_stops_its_threads_and_what_runs_on_them() {
        let threads = Threads::new(1);
        let (handle, _placed) = threads.place().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // A task that never ends: the runtime drops it (and with it `tx`) when the pool goes.
        handle.spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(threads);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(30)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
            "the never-ending task was dropped with its runtime"
        );
    }
}
