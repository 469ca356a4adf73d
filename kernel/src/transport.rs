//! The only module that touches ZeroMQ (libzmq through the `zmq` crate).
//!
//! Each socket is owned by one tokio task. The task waits on the socket's
//! `ZMQ_FD` through [`AsyncFd`], so sockets live on the same runtime as the
//! handlers that use them: no extra thread hop per message. `ZMQ_FD` is
//! edge-triggered and only says "something changed": the task therefore always
//! re-reads `ZMQ_EVENTS` (which also re-arms the edge) and drains every ready
//! message before it waits again. Callers see a socket as an [`Outbox`]
//! (unbounded, never blocks) and an [`Inbox`] (bounded: a flood pushes back on
//! libzmq's high-water mark instead of growing our memory).
//!
//! The heartbeat echo runs on its own thread so it answers while the runtime is busy.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

/// One multipart message as frames.
pub type Frames = Vec<Vec<u8>>;

/// How many received messages may wait for their consumer before the socket task
/// stops reading (and libzmq's own queue takes over).
const INBOX_CAPACITY: usize = 1024;

/// Messages drained in one go before the task yields to others.
const DRAIN_BATCH: usize = 256;

/// A ZeroMQ failure, with what we were doing and where.
#[derive(Debug, thiserror::Error)]
#[error("zmq {op} {endpoint}: {source}")]
pub struct TransportError {
    op: &'static str,
    endpoint: String,
    source: zmq::Error,
}

/// The socket types the protocol uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Kernel shell, control and stdin.
    Router,
    /// Client shell, control, stdin and heartbeat.
    Dealer,
    /// Kernel IOPub: sees subscriptions.
    XPub,
    /// Client IOPub.
    Sub,
}

/// Bind (kernel side) or connect (client side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Listen on the endpoint.
    Bind,
    /// Connect to the endpoint; libzmq retries until the peer listens.
    Connect,
}

/// Options beyond the socket type.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `ZMQ_IDENTITY` (routing id) for DEALER sockets.
    pub identity: Option<Vec<u8>>,
    /// Send high-water mark in messages (0 = unlimited); libzmq's default when None.
    pub send_hwm: Option<i32>,
}

static CONTEXT: Mutex<Option<zmq::Context>> = Mutex::new(None);

fn context() -> zmq::Context {
    let mut guard = CONTEXT.lock().unwrap_or_else(|p| p.into_inner());
    guard.get_or_insert_with(zmq::Context::new).clone()
}

/// Close the ZeroMQ context, letting queued outgoing messages flush for up to
/// `timeout`. Call once every socket task has ended, just before the process exits.
pub fn terminate(timeout: Duration) {
    let ctx = CONTEXT.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(ctx) = ctx {
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("zmq-term".into())
            .spawn(move || {
                drop(ctx);
                let _ = tx.send(());
            });
        if spawned.is_ok() {
            let _ = rx.recv_timeout(timeout);
        }
    }
}

/// What a socket task is asked to do, in order.
enum Outgoing {
    Frames(Frames),
    /// Signal once everything queued before it has been handed to libzmq.
    Flush(oneshot::Sender<()>),
}

/// The sending half of a socket. Cloneable; sends never block. When every clone
/// is dropped the socket flushes what is queued and closes.
#[derive(Clone, Debug)]
pub struct Outbox(mpsc::UnboundedSender<Outgoing>);

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outgoing::Frames(fr) => write!(f, "Frames({})", fr.len()),
            Outgoing::Flush(_) => write!(f, "Flush"),
        }
    }
}

impl Outbox {
    /// Queue a message; false when the socket has closed.
    pub fn send(&self, frames: Frames) -> bool {
        self.0.send(Outgoing::Frames(frames)).is_ok()
    }

    /// Wait until every message queued so far has been handed to libzmq (which
    /// then delivers it, within the linger period, even if the process exits).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.0.send(Outgoing::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The receiving half of a socket.
pub type Inbox = mpsc::Receiver<Frames>;

struct ZmqFd(RawFd);

impl AsRawFd for ZmqFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

fn zerr(op: &'static str, endpoint: &str) -> impl FnOnce(zmq::Error) -> TransportError + use<> {
    let endpoint = endpoint.to_owned();
    move |source| TransportError {
        op,
        endpoint,
        source,
    }
}

/// Open a socket and start its task on the current tokio runtime.
pub fn open(
    kind: Kind,
    side: Side,
    endpoint: &str,
    options: &Options,
) -> Result<(Outbox, Inbox), TransportError> {
    let zkind = match kind {
        Kind::Router => zmq::ROUTER,
        Kind::Dealer => zmq::DEALER,
        Kind::XPub => zmq::XPUB,
        Kind::Sub => zmq::SUB,
    };
    let sock = context().socket(zkind).map_err(zerr("socket", endpoint))?;
    // Give queued replies a moment to leave at shutdown, but never hang on a dead peer.
    sock.set_linger(1000).map_err(zerr("linger", endpoint))?;
    if let Some(id) = &options.identity {
        sock.set_identity(id).map_err(zerr("identity", endpoint))?;
    }
    if let Some(hwm) = options.send_hwm {
        sock.set_sndhwm(hwm).map_err(zerr("sndhwm", endpoint))?;
    }
    match kind {
        Kind::Sub => sock
            .set_subscribe(b"")
            .map_err(zerr("subscribe", endpoint))?,
        // Report every subscription, so each new subscriber gets its welcome.
        Kind::XPub => sock
            .set_xpub_verbose(true)
            .map_err(zerr("xpub_verbose", endpoint))?,
        Kind::Router => sock
            .set_router_handover(true)
            .map_err(zerr("router_handover", endpoint))?,
        Kind::Dealer => {}
    }
    match side {
        Side::Bind => sock.bind(endpoint).map_err(zerr("bind", endpoint))?,
        Side::Connect => sock.connect(endpoint).map_err(zerr("connect", endpoint))?,
    }
    let fd = sock.get_fd().map_err(zerr("fd", endpoint))?;
    // SAFETY: libzmq keeps ZMQ_FD open until the socket closes, and `drive` drops
    // this registration before it drops the socket.
    let afd =
        unsafe { AsyncFd::register_with_interest(ZmqFd(fd), Interest::READABLE) }.map_err(|e| {
            TransportError {
                op: "register",
                endpoint: endpoint.to_owned(),
                source: zmq::Error::from_raw(
                    e.into_parts().1.raw_os_error().unwrap_or(libc::EBADF),
                ),
            }
        })?;
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::channel(INBOX_CAPACITY);
    let name = endpoint.to_owned();
    tokio::spawn(drive(sock, afd, in_tx, out_rx, name));
    Ok((Outbox(out_tx), in_rx))
}

/// Send one multipart message without blocking. `Ok(false)` means "would block".
fn try_send(sock: &zmq::Socket, frames: &Frames) -> Result<bool, zmq::Error> {
    let last = frames.len().saturating_sub(1);
    for (i, f) in frames.iter().enumerate() {
        let flags = if i < last {
            zmq::DONTWAIT | zmq::SNDMORE
        } else {
            zmq::DONTWAIT
        };
        loop {
            match sock.send(f.as_slice(), flags) {
                Ok(()) => break,
                Err(zmq::Error::EINTR) => continue,
                // Only the first part can block: the rest of a multipart message is
                // accepted once its first part is.
                Err(zmq::Error::EAGAIN) if i == 0 => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(true)
}

async fn drive(
    sock: zmq::Socket,
    afd: AsyncFd<ZmqFd>,
    inbox: mpsc::Sender<Frames>,
    mut outbox: mpsc::UnboundedReceiver<Outgoing>,
    endpoint: String,
) {
    let mut pending: VecDeque<Outgoing> = VecDeque::new();
    let mut outbox_open = true;
    loop {
        while let Some(front) = pending.front() {
            let sent = match front {
                Outgoing::Frames(frames) => try_send(&sock, frames),
                Outgoing::Flush(_) => Ok(true),
            };
            match sent {
                Ok(true) => {
                    if let Some(Outgoing::Flush(done)) = pending.pop_front() {
                        let _ = done.send(());
                    }
                }
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(%endpoint, "send failed, message dropped: {e}");
                    pending.pop_front();
                }
            }
        }
        let mut drained = 0;
        while drained < DRAIN_BATCH {
            match sock.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => {
                    drained += 1;
                    if !inbox.is_closed() {
                        // Waiting here is the back-pressure: libzmq queues meanwhile.
                        let _ = inbox.send(frames).await;
                    }
                }
                Err(zmq::Error::EAGAIN) => break,
                Err(zmq::Error::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(%endpoint, "receive failed: {e}");
                    break;
                }
            }
        }
        if drained == DRAIN_BATCH {
            tokio::task::yield_now().await;
            continue;
        }
        if !outbox_open {
            // Closed by its owner: what libzmq cannot take now is dropped (a dead peer
            // must not keep this task alive); linger flushes what it took.
            break;
        }
        // Reading ZMQ_EVENTS processes libzmq's pending commands and re-arms the
        // edge of ZMQ_FD; only when nothing is ready may we sleep on the fd.
        match sock.get_events() {
            Ok(ev) => {
                if ev.contains(zmq::POLLIN) || (!pending.is_empty() && ev.contains(zmq::POLLOUT)) {
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(%endpoint, "socket failed: {e}");
                break;
            }
        }
        tokio::select! {
            ready = afd.readable() => {
                if let Ok(mut guard) = ready {
                    guard.clear_ready();
                }
            }
            msg = outbox.recv(), if outbox_open => match msg {
                Some(out) => pending.push_back(out),
                None => outbox_open = false,
            },
        }
    }
    // Deregister before libzmq closes the descriptor.
    drop(afd);
    drop(sock);
}

/// The heartbeat echo thread of a kernel: a ROUTER that sends every message back
/// to its sender. Stops when dropped.
pub struct Echo {
    stop: Arc<AtomicBool>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Bind a heartbeat echo on `endpoint` in its own thread.
pub fn spawn_echo(endpoint: &str) -> Result<Echo, TransportError> {
    let sock = context()
        .socket(zmq::ROUTER)
        .map_err(zerr("socket", endpoint))?;
    sock.set_linger(0).map_err(zerr("linger", endpoint))?;
    sock.bind(endpoint).map_err(zerr("bind", endpoint))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let name = endpoint.to_owned();
    std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match sock.poll(zmq::POLLIN, 200) {
                    Ok(0) | Err(zmq::Error::EINTR) => continue,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(endpoint = %name, "heartbeat poll failed: {e}");
                        break;
                    }
                }
                while let Ok(frames) = sock.recv_multipart(zmq::DONTWAIT) {
                    let _ = sock.send_multipart(frames, zmq::DONTWAIT);
                }
            }
        })
        .map_err(|e| TransportError {
            op: "thread",
            endpoint: endpoint.to_owned(),
            source: zmq::Error::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN)),
        })?;
    Ok(Echo { stop })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn recv(inbox: &mut Inbox) -> Frames {
        tokio::time::timeout(Duration::from_secs(10), inbox.recv())
            .await
            .expect("no message within 10 s")
            .expect("socket closed")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn router_dealer_round_trip_many() {
        let ep = format!("tcp://127.0.0.1:{}", free_port());
        let (rout, mut rin) = open(Kind::Router, Side::Bind, &ep, &Options::default()).unwrap();
        let opts = Options {
            identity: Some(b"me".to_vec()),
            ..Options::default()
        };
        let (dout, mut din) = open(Kind::Dealer, Side::Connect, &ep, &opts).unwrap();
        // Batches below the ROUTER's per-peer high-water mark (beyond it ROUTER drops).
        for batch in 0..6u32 {
            let ids = batch * 500..(batch + 1) * 500;
            for i in ids.clone() {
                assert!(dout.send(vec![i.to_le_bytes().to_vec()]));
            }
            for i in ids.clone() {
                let got = recv(&mut rin).await;
                assert_eq!(got, vec![b"me".to_vec(), i.to_le_bytes().to_vec()]);
                rout.send(got);
            }
            rout.flush().await;
            for i in ids {
                assert_eq!(recv(&mut din).await, vec![i.to_le_bytes().to_vec()]);
            }
        }
    }

    #[test]
    fn bind_twice_is_an_error_naming_the_endpoint() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let ep = format!("tcp://127.0.0.1:{}", free_port());
            let _a = open(Kind::Router, Side::Bind, &ep, &Options::default()).unwrap();
            let e = open(Kind::Router, Side::Bind, &ep, &Options::default()).unwrap_err();
            assert!(e.to_string().contains(&ep), "{e}");
        });
    }
}
