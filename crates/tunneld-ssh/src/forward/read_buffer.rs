//! The buffer a forwarded connection's client is read into, on its way to russh.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Where `pipe::upstream` reads a client into: one larger allocation that every read takes a slice of,
/// reused once russh has sent and dropped the slices taken before.
///
/// A buffer per read, as russh's `AsyncWrite` writer copies into, cost a `malloc` here and a
/// `free` on the session's thread for every 32 KiB. glibc returned that memory to the kernel and
/// took it back again and again: `perf record -e page-faults` of an upload put 93 % of tunneld's
/// page faults there, 15,000 to 34,000 per 512 MiB (docs/performance.md).
#[derive(Default)]
pub(super) struct ReadBuffer {
    buffer: BytesMut,
    /// The size of `buffer`'s allocation.
    size: usize,
    /// A read has brought half a small buffer or more: the client sends in bulk, and its buffer
    /// is a large one from then on. A connection that only ever sends requests keeps a small one.
    bulk: bool,
}

impl ReadBuffer {
    /// The least a read is offered, and the buffer of a connection that does not send in bulk:
    /// one channel packet.
    const SMALL: usize = 32 << 10;
    /// The buffer of one that does: eight channel packets.
    const LARGE: usize = 256 << 10;

    /// What one read brings (empty at the end of the stream).
    pub(super) async fn read(
        &mut self,
        from: &mut (impl AsyncRead + Unpin),
    ) -> std::io::Result<Bytes> {
        // After the `split` below the buffer is empty and owns the rest of its allocation; once
        // the slices taken before are all dropped, `try_reclaim` gets the whole of it back.
        let size = if self.bulk { Self::LARGE } else { Self::SMALL };
        if self.size < size || !self.buffer.try_reclaim(Self::SMALL) {
            self.buffer = BytesMut::with_capacity(size);
            self.size = size;
        }
        let n = from.read_buf(&mut self.buffer).await?;
        self.bulk |= n >= Self::SMALL / 2;
        Ok(self.buffer.split().freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::ReadBuffer;

    /// Reads of `step` bytes at most, out of `data`.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl tokio::io::AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let n = self.step.min(self.data.len()).min(buf.remaining());
            let (now, later) = self.data.split_at(n);
            buf.put_slice(now);
            self.data = later;
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn slices_are_intact_and_the_memory_is_reused_once_they_are_dropped() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut from = Trickle {
            data: &data,
            step: 1000,
        };
        let mut buffer = ReadBuffer::default();
        let mut held = Vec::new();
        loop {
            let chunk = buffer.read(&mut from).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            held.push(chunk);
        }
        assert_eq!(held.concat(), data);
        // Reads of 1000 bytes never made this a bulk sender: every buffer was a small one.
        assert!(!buffer.bulk && buffer.size == ReadBuffer::SMALL);

        let mut from = Trickle {
            data: &data,
            step: 1000,
        };
        let first = buffer.read(&mut from).await.unwrap();
        let at = first.as_ptr();
        drop(first);
        assert_eq!(buffer.read(&mut from).await.unwrap().as_ptr(), at);
    }

    #[tokio::test]
    async fn a_client_that_sends_in_bulk_gets_large_buffers() {
        let data = vec![7u8; 1 << 20];
        let mut from = Trickle {
            data: &data,
            step: usize::MAX,
        };
        let mut buffer = ReadBuffer::default();
        let mut total = 0;
        let mut largest = 0;
        loop {
            let chunk = buffer.read(&mut from).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            total += chunk.len();
            largest = largest.max(chunk.len());
        }
        assert_eq!(total, data.len());
        assert!(buffer.bulk);
        assert_eq!(largest, ReadBuffer::LARGE);
    }
}
