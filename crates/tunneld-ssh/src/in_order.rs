//! Keeping the order in which clients arrive.
//!
//! Each forwarded connection runs as its own task, and tasks start in no particular order. But
//! the first thing each one does (send its CHANNEL_OPEN, or connect to the target) must happen
//! in the order the clients came, as it does with ssh: some applications tell their connections
//! apart by the order they were opened. iperf3 --bidir does. Through a forwarder that swaps two
//! of them, both of its ends send on one connection and read neither, and the test hangs.

use std::pin::Pin;
use std::task::Poll;

/// Runs `future` here until it first waits, and hands back the rest to be spawned (`None` if it
/// already finished).
pub(crate) async fn first_step<F: Future>(mut future: Pin<Box<F>>) -> Option<Pin<Box<F>>> {
    let finished =
        std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_ready())).await;
    (!finished).then_some(future)
}
