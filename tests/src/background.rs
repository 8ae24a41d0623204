//! A tokio runtime on a thread of its own, for the servers and the proxy of the harness.
//!
//! They must work the same from sync tests and from async tests on any runtime flavour, and
//! keep running while a test blocks its own thread; and their drop must close every socket
//! before it returns, which dropping a runtime inside an async context cannot do (it panics).

use std::future::Future;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Owns the runtime thread: dropping it cancels every task and joins the thread.
#[derive(Debug)]
pub(crate) struct Background {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts a two-worker runtime on a thread called `name`.
    pub(crate) fn new(name: &str) -> Self {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread_name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(thread_name)
                    .enable_all()
                    .build()
                    .expect("build runtime");
                handle_tx
                    .send(runtime.handle().clone())
                    .expect("send handle");
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Dropping the runtime here drops every task, and with them their sockets.
            })
            .expect("spawn runtime thread");
        let handle = handle_rx.recv().expect("runtime handle");
        Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Spawns a task on the runtime.
    pub(crate) fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.handle.spawn(future));
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
