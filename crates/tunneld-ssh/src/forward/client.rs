//! The client side of a forwarded connection: a TCP or a Unix-socket stream, split into halves
//! that the pipe reads and writes on their own.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream, tcp, unix};

/// A stream that a forwarded connection carries.
pub trait ClientStream: Send + 'static {
    /// The half the client's bytes are read from.
    type Read: AsyncRead + Send + Unpin;
    /// The half the server's bytes are written to.
    type Write: AsyncWrite + Send + Unpin;

    /// Splits the stream into its halves.
    fn into_halves(self) -> (Self::Read, Self::Write);

    /// Ends the client's connection as abruptly as the stream can: a client that saw a clean
    /// end would take a cut transfer for a complete one.
    fn reset(write: Self::Write);

    /// Turns off Nagle's algorithm, where the stream has it.
    fn no_delay(&self) {}
}

impl ClientStream for TcpStream {
    type Read = tcp::OwnedReadHalf;
    type Write = tcp::OwnedWriteHalf;

    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }

    fn no_delay(&self) {
        let _ = self.set_nodelay(true);
    }

    /// SO_LINGER 0, and no FIN first (a dropped write half would send one).
    fn reset(write: Self::Write) {
        let _ = socket2::SockRef::from(write.as_ref()).set_linger(Some(Duration::ZERO));
        // The read half, inside the upstream future, is dropped with the pipe; the socket
        // closes then, with the reset.
        write.forget();
    }
}

impl ClientStream for UnixStream {
    type Read = unix::OwnedReadHalf;
    type Write = unix::OwnedWriteHalf;

    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }

    /// A stream socket has no reset: the client sees the end without a shutdown of our write
    /// half first, when both halves are gone.
    fn reset(write: Self::Write) {
        // Dropping an owned write half shuts it down (the client would read a clean EOF while
        // the read half lives on); forgetting it leaves the close to the read half's drop.
        write.forget();
    }
}
