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
///
/// The step runs outside tokio's cooperative budget: an accept loop that takes many clients in
/// one go would otherwise exhaust it, and the CHANNEL_OPEN of a later client would then wait
/// (for the budget, not for anything real) and be sent after one that came after it. What can
/// still reorder two clients is a full queue into russh's session (10 messages), which only a
/// session too busy to read it fills.
pub(crate) async fn first_step<F: Future>(mut future: Pin<Box<F>>) -> Option<Pin<Box<F>>> {
    let step = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_ready()));
    let finished = tokio::task::unconstrained(step).await;
    (!finished).then_some(future)
}
