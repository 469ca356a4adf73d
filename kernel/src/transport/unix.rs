//! Unix-socket streams that wake the runtime only for what it waits for.
//!
//! A tokio `UnixStream` is registered for readability and writability at once,
//! with edge-triggered epoll. Linux signals a Unix stream writable every time
//! its peer consumes a message, so each request sent to a kernel on a Unix
//! socket woke pxkernel once more, for nothing, when that kernel read it. Here
//! the stream is registered for readability only; a write that would block
//! waits on a duplicate descriptor registered for writability for just that
//! wait (epoll reports a descriptor's current state when it is added, so no
//! edge is missed).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};

/// One connected Unix stream, shared by its read and write halves.
#[derive(Clone)]
pub(super) struct Stream(Arc<AsyncFd<UnixStream>>);

impl Stream {
    /// Adopt a connected tokio stream, re-registering it for readability only.
    pub(super) fn new(s: tokio::net::UnixStream) -> std::io::Result<Stream> {
        let std = s.into_std()?;
        std.set_nonblocking(true)?;
        Ok(Stream(Arc::new(register(std, Interest::READABLE)?)))
    }

    /// Write what the socket takes now, without waiting.
    pub(super) fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        (&mut self.0.get_ref()).write(bytes)
    }

    /// Wait until the socket takes more bytes.
    pub(super) async fn writable(&self) -> std::io::Result<()> {
        let dup = self.0.get_ref().try_clone()?;
        let watch = register(dup, Interest::WRITABLE)?;
        let _ready = watch.writable().await?;
        Ok(())
    }
}

fn register(s: UnixStream, interest: Interest) -> std::io::Result<AsyncFd<UnixStream>> {
    // SAFETY: the `UnixStream` owns its descriptor and is never swapped out while
    // registered, so the descriptor stays open and the same until deregistration.
    unsafe { AsyncFd::register_with_interest(s, interest) }.map_err(std::io::Error::from)
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let wanted = unfilled.len();
            match guard.try_io(|fd| (&mut fd.get_ref()).read(unfilled)) {
                Ok(Ok(n)) => {
                    // A short read drained the socket: skip the read that would only
                    // say so (a new edge sets readiness again), as tokio's own streams do.
                    if n > 0 && n < wanted {
                        guard.clear_ready();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_full_socket_waits_for_its_peer_then_takes_the_rest() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let (a, mut b) = (Stream::new(a).unwrap(), Stream::new(b).unwrap());
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0usize;
        // Fill the socket until the kernel refuses more.
        loop {
            match a.try_write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let writer = tokio::spawn({
            let a = a.clone();
            async move {
                a.writable().await.unwrap();
                a.try_write(b"end").unwrap()
            }
        });
        let mut got = vec![0u8; sent];
        b.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&x| x == 7));
        assert_eq!(writer.await.unwrap(), 3);
        let mut end = [0u8; 3];
        b.read_exact(&mut end).await.unwrap();
        assert_eq!(&end, b"end");
    }

    #[tokio::test]
    async fn a_closed_peer_reads_as_end_of_stream() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let mut b = Stream::new(b).unwrap();
        drop(a);
        let mut rest = Vec::new();
        assert_eq!(b.read_to_end(&mut rest).await.unwrap(), 0);
    }
}
