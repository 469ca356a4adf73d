//! The write side of one connection: the buffer senders encode into (sealing
//! each frame in its CURVE box on a CURVE connection), the high-water mark,
//! flushes, and the writer task that writes each batch in one syscall.

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, oneshot, watch};

use super::curve::Sealer;
use super::limits::{PONG_BACKLOG, QUEUE_BYTES};
use super::stream::Writer;

/// Poisoning only means a panic elsewhere; the data is still consistent.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The write side of one connection: senders append encoded messages, its
/// writer task writes them. With `write_through`, a sender that finds nothing
/// queued writes its message at once, in its own task: a request leaves
/// before the outputs queued on other sockets in the same step are written.
pub(super) struct Conn {
    state: Mutex<WriteState>,
    wake: Notify,
    wr: Writer,
    write_through: bool,
}

#[derive(Default)]
struct WriteState {
    buf: Vec<u8>,
    /// Messages in `buf`, for the high-water mark.
    queued: usize,
    /// Waiting for everything queued so far to be written.
    flushes: Vec<oneshot::Sender<()>>,
    /// The writer holds a batch it has not finished writing.
    writing: bool,
    /// The connection has ended: nothing more is written.
    gone: bool,
    /// CURVE: seals each frame; messages are encoded into `plain` first.
    sealer: Option<Sealer>,
    plain: Vec<u8>,
}

impl Conn {
    /// A connection whose first bytes are `buf` (`queued` messages, encoded
    /// plain: a CURVE connection seals them now).
    pub(super) fn new(
        wr: Writer,
        write_through: bool,
        mut buf: Vec<u8>,
        queued: usize,
        mut sealer: Option<Sealer>,
    ) -> Arc<Conn> {
        if let Some(s) = &mut sealer {
            let mut sealed = Vec::with_capacity(buf.len() + queued * 64);
            match s.seal_encoded(&buf, &mut sealed) {
                Ok(()) => buf = sealed,
                Err(e) => {
                    tracing::warn!("messages queued before the connection dropped: {e}");
                    buf.clear();
                }
            }
        }
        let conn = Arc::new(Conn {
            state: Mutex::new(WriteState {
                buf,
                queued,
                sealer,
                ..WriteState::default()
            }),
            wake: Notify::new(),
            wr,
            write_through,
        });
        if conn.has_queued() {
            conn.wake.notify_one();
        }
        conn
    }

    pub(super) fn has_queued(&self) -> bool {
        !lock(&self.state).buf.is_empty()
    }

    /// Append one message unless `limit` messages, or [`QUEUE_BYTES`], already
    /// wait; false when it was dropped.
    pub(super) fn push(&self, limit: usize, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        self.push_within(limit, QUEUE_BYTES, encode)
    }

    /// Append a command we answer with (PONG) unless [`PONG_BACKLOG`] bytes
    /// already wait: a peer that does not read gets no more answers.
    pub(super) fn push_control(&self, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        self.push_within(usize::MAX, PONG_BACKLOG, encode)
    }

    fn push_within(&self, limit: usize, bytes: usize, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        let was_idle = {
            let mut s = lock(&self.state);
            if s.gone || s.queued >= limit || (!s.buf.is_empty() && s.buf.len() >= bytes) {
                return false;
            }
            let was_idle = s.buf.is_empty();
            let state = &mut *s;
            match &mut state.sealer {
                None => encode(&mut state.buf),
                Some(sealer) => {
                    state.plain.clear();
                    encode(&mut state.plain);
                    if let Err(e) = sealer.seal_encoded(&state.plain, &mut state.buf) {
                        tracing::warn!("message dropped: {e}");
                        return false;
                    }
                }
            }
            s.queued += 1;
            if was_idle && !s.writing && self.write_through {
                // Whatever the socket does not take now, the writer writes later;
                // an error is the writer's to see.
                match self.wr.try_write(&s.buf) {
                    Ok(n) if n == s.buf.len() => {
                        s.buf.clear();
                        s.queued = 0;
                        return true;
                    }
                    Ok(n) => {
                        s.buf.drain(..n);
                    }
                    Err(_) => {}
                }
            }
            was_idle
        };
        if was_idle {
            self.wake.notify_one();
        }
        true
    }

    /// Resolves once everything queued before the call is written (or the connection ended).
    pub(super) fn flushed(&self) -> Option<oneshot::Receiver<()>> {
        let rx = {
            let mut s = lock(&self.state);
            if s.gone || (s.buf.is_empty() && !s.writing) {
                return None;
            }
            let (tx, rx) = oneshot::channel();
            s.flushes.push(tx);
            rx
        };
        self.wake.notify_one();
        Some(rx)
    }

    /// The connection ended: drop what is queued and release the writer and flushes.
    pub(super) fn end(&self) {
        {
            let mut s = lock(&self.state);
            s.gone = true;
            s.buf = Vec::new();
            s.queued = 0;
            s.flushes.clear();
        }
        self.wake.notify_one();
    }
}

/// Writes what senders queue on `conn` until the connection ends, or until the
/// socket closes (then what is queued is written first).
pub(super) async fn write_loop(conn: Arc<Conn>, mut closing: watch::Receiver<()>) {
    let mut spare: Vec<u8> = Vec::new();
    let mut closed = false;
    loop {
        let batch = {
            let mut s = lock(&conn.state);
            if s.gone {
                break;
            }
            if s.buf.is_empty() {
                for ack in s.flushes.drain(..) {
                    let _ = ack.send(());
                }
                s.writing = false;
                None
            } else {
                s.queued = 0;
                s.writing = true;
                Some(std::mem::replace(&mut s.buf, std::mem::take(&mut spare)))
            }
        };
        match batch {
            Some(mut bytes) => {
                let written = conn.wr.write_all(&bytes).await;
                bytes.clear();
                // A buffer grown by a burst goes back to the allocator.
                if bytes.capacity() <= 1 << 20 {
                    spare = bytes;
                }
                if written.is_err() {
                    break;
                }
            }
            None if closed => break,
            None => {
                tokio::select! {
                    () = conn.wake.notified() => {}
                    _ = closing.changed() => closed = true,
                }
            }
        }
    }
    // The write half shuts down when the last holder of the connection lets go.
    conn.end();
}
