//! The only module that touches ZeroMQ: sockets that speak ZMTP 3.0, the wire
//! protocol of libzmq, implemented on tokio streams (TCP and Unix sockets).
//!
//! Why not libzmq: its I/O thread puts two thread wake-ups on every message;
//! measured here, that was most of the CPU pxkernel spent per cell. These sockets
//! read and write on the runtime that handles the messages, batch writes, and
//! keep libzmq's semantics where they matter: ROUTER routing ids (with handover),
//! XPUB subscriptions reported to the owner, DEALER queueing while disconnected
//! and reconnecting by itself (kernels restart, tunnels come up late), and a SUB
//! that subscribes again after every reconnect.
//!
//! Callers see a socket as an [`Outbox`] (never blocks; sending encodes into the
//! connection's write buffer in the caller's task) and an
//! [`Inbox`] (bounded: a flood pushes back on the peer's TCP connection instead
//! of growing our memory). The heartbeat echo runs on its own thread, so it
//! answers while the main runtime is busy.
//!
//! Security is ZMTP's NULL mechanism (the HMAC of every message is the
//! protection), or CURVE ([`curve`]) when a connection file carries keys.

mod conn;
pub mod curve;
#[doc(hidden)]
pub mod fuzz;
pub mod limits;
mod socket;
mod stream;
mod unix;
pub mod zmtp;

use std::path::PathBuf;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use curve::KeyPair;
use socket::{Bound, Connected, Socket};
use stream::{Address, Listener, Security};

thread_local! {
    static LOCAL_TASKS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `future` on the current-thread runtime `rt` as a task of a fresh
/// [`tokio::task::LocalSet`], with the tasks of every socket opened on this thread
/// meanwhile in the same set; an `Err` when the task panicked.
///
/// Why a task, and why local sockets: on a current-thread runtime, a wake-up of
/// the future `block_on` polls, or of a local task by a runtime task (a reader
/// handing a message to its consumer), makes the runtime poll its driver once more
/// before it runs the set: one extra `epoll_wait` per message. With everything a
/// task of one set, wake-ups stay inside it.
pub fn block_on_local<F>(
    rt: &tokio::runtime::Runtime,
    future: F,
) -> Result<F::Output, tokio::task::JoinError>
where
    F: std::future::Future + 'static,
    F::Output: 'static,
{
    /// Sockets' tasks are local while it lives (spawning a local task outside a
    /// `LocalSet` would panic, so the choice must not outlive the set's run).
    struct LocalTasks;
    impl Drop for LocalTasks {
        fn drop(&mut self) {
            LOCAL_TASKS.with(|l| l.set(false));
        }
    }
    tokio::task::LocalSet::new().block_on(rt, async move {
        LOCAL_TASKS.with(|l| l.set(true));
        let _local = LocalTasks;
        tokio::task::spawn_local(future).await
    })
}

/// Spawn one of a socket's tasks: a local task inside [`block_on_local`].
pub(crate) fn spawn<F>(task: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    if LOCAL_TASKS.with(std::cell::Cell::get) {
        tokio::task::spawn_local(task);
    } else {
        tokio::spawn(task);
    }
}

/// One multipart message as frames.
pub type Frames = Vec<Vec<u8>>;

/// How many received messages may wait for their consumer before reading stops.
const INBOX_CAPACITY: usize = 1024;

/// Default per-peer queue of a bind-side socket, in messages.
const DEFAULT_QUEUE: usize = 10_000;

/// A socket could not be opened, with what we were doing and where.
#[derive(Debug, thiserror::Error)]
#[error("{op} {endpoint}: {source}")]
pub struct TransportError {
    op: &'static str,
    endpoint: String,
    source: std::io::Error,
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
    /// Connect to the endpoint; retried until the peer listens, and after it goes.
    Connect,
}

/// Options beyond the socket type.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Our routing id, announced to ROUTER peers (DEALER sockets).
    pub identity: Option<Vec<u8>>,
    /// Messages queued per peer before new ones are dropped (bind-side sockets).
    pub queue: Option<usize>,
    /// CURVE instead of NULL.
    pub curve: Option<Curve>,
}

/// A socket's part in CURVE.
#[derive(Clone, Debug)]
pub enum Curve {
    /// The server, with its key pair (a kernel's, from its connection file).
    Server(Arc<KeyPair>),
    /// A client of the server with this public key (the socket makes its own pair).
    Client([u8; curve::KEY_LEN]),
}

impl Options {
    fn security(&self, endpoint: &str) -> Result<Security, TransportError> {
        Ok(match &self.curve {
            None => Security::Null,
            Some(Curve::Server(keys)) => Security::CurveServer(keys.clone()),
            Some(Curve::Client(server)) => Security::CurveClient {
                server: *server,
                ours: Arc::new(KeyPair::generate().map_err(|e| TransportError {
                    op: "make a CURVE key for",
                    endpoint: endpoint.to_owned(),
                    source: std::io::Error::other(e),
                })?),
            },
        })
    }
}

/// The sending half of a socket. Cloneable; sends never block (a peer whose
/// queue is full loses the message, as with libzmq's high-water mark). When every
/// clone is dropped the socket writes what is queued and closes.
#[derive(Clone)]
pub struct Outbox(Arc<OutboxHandle>);

struct OutboxHandle {
    socket: Arc<Socket>,
    /// Dropped with the last clone: tells the socket's tasks to close.
    _closing: watch::Sender<()>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

impl Outbox {
    fn new(socket: Arc<Socket>, closing: watch::Sender<()>) -> Outbox {
        Outbox(Arc::new(OutboxHandle {
            socket,
            _closing: closing,
        }))
    }

    /// Queue a message; false when it was dropped (no peer with that routing id, a
    /// full queue, or a socket type that does not send).
    pub fn send(&self, frames: Frames) -> bool {
        self.0.socket.send(&frames)
    }

    /// Queue a message given as borrowed frames, without building a [`Frames`].
    pub fn send_parts(&self, frames: &[&[u8]]) -> bool {
        self.0.socket.send(frames)
    }

    /// Wait until every message queued so far has been written to the connected peers.
    pub async fn flush(&self) {
        self.0.socket.flush().await;
    }
}

/// The receiving half of a socket.
pub type Inbox = mpsc::Receiver<Frames>;

fn parse_endpoint(endpoint: &str) -> Result<Address, TransportError> {
    let bad = |why: &str| TransportError {
        op: "parse",
        endpoint: endpoint.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_owned()),
    };
    if let Some(rest) = endpoint.strip_prefix("tcp://") {
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        port.parse::<u16>().map_err(|_| bad("bad port"))?;
        let host = match host {
            "*" => "0.0.0.0",
            h => h,
        };
        Ok(Address::Tcp(format!("{host}:{port}")))
    } else if let Some(path) = endpoint.strip_prefix("ipc://") {
        Ok(Address::Ipc(PathBuf::from(path)))
    } else {
        Err(bad("only tcp:// and ipc:// endpoints are supported"))
    }
}

/// A listener bound now, before any runtime takes it.
enum StdListener {
    Tcp(std::net::TcpListener),
    Ipc(std::os::unix::net::UnixListener),
}

fn bind_std(endpoint: &str) -> Result<StdListener, TransportError> {
    let err = |op| {
        let endpoint = endpoint.to_owned();
        move |source| TransportError {
            op,
            endpoint,
            source,
        }
    };
    match parse_endpoint(endpoint)? {
        Address::Tcp(addr) => {
            let l = std::net::TcpListener::bind(addr.as_str()).map_err(err("bind"))?;
            l.set_nonblocking(true).map_err(err("bind"))?;
            Ok(StdListener::Tcp(l))
        }
        Address::Ipc(path) => {
            // As libzmq does: a stale socket file of a dead process is replaced.
            let _ = std::fs::remove_file(&path);
            let l = std::os::unix::net::UnixListener::bind(&path).map_err(err("bind"))?;
            l.set_nonblocking(true).map_err(err("bind"))?;
            Ok(StdListener::Ipc(l))
        }
    }
}

/// Hand a bound listener to the current runtime.
fn adopt(l: StdListener, endpoint: &str) -> Result<Listener, TransportError> {
    let err = |source| TransportError {
        op: "bind",
        endpoint: endpoint.to_owned(),
        source,
    };
    Ok(match l {
        StdListener::Tcp(l) => Listener::Tcp(tokio::net::TcpListener::from_std(l).map_err(err)?),
        StdListener::Ipc(l) => Listener::Ipc(tokio::net::UnixListener::from_std(l).map_err(err)?),
    })
}

/// Open a socket and start its task on the current tokio runtime. Binding
/// happens now (errors are returned); connecting happens in the background.
pub fn open(
    kind: Kind,
    side: Side,
    endpoint: &str,
    options: &Options,
) -> Result<(Outbox, Inbox), TransportError> {
    let security = options.security(endpoint)?;
    match side {
        Side::Bind => {
            let listener = adopt(bind_std(endpoint)?, endpoint)?;
            let queue = options.queue.unwrap_or(DEFAULT_QUEUE);
            Ok(serve_bound(kind, listener, queue, endpoint, security))
        }
        Side::Connect => {
            let addr = parse_endpoint(endpoint)?;
            let (in_tx, in_rx) = mpsc::channel(INBOX_CAPACITY);
            let (closing_tx, closing) = watch::channel(());
            let socket = Arc::new(Socket::Connected(Connected::new(
                kind,
                endpoint.to_owned(),
                security,
            )));
            spawn(socket::run_connected(
                socket.clone(),
                addr,
                options.identity.clone(),
                in_tx,
                closing,
            ));
            Ok((Outbox::new(socket, closing_tx), in_rx))
        }
    }
}

/// Serve a bound listener as a ROUTER or XPUB on the current runtime.
fn serve_bound(
    kind: Kind,
    listener: Listener,
    queue: usize,
    endpoint: &str,
    security: Security,
) -> (Outbox, Inbox) {
    let (in_tx, in_rx) = mpsc::channel(INBOX_CAPACITY);
    let (closing_tx, closing) = watch::channel(());
    let socket = Arc::new(Socket::Bound(Bound::new(
        kind,
        queue,
        endpoint.to_owned(),
        security,
    )));
    spawn(socket::run_bound(socket.clone(), listener, in_tx, closing));
    (Outbox::new(socket, closing_tx), in_rx)
}

/// The heartbeat echo of a kernel: a ROUTER on its own thread that sends every
/// message back to its sender. Stops when dropped.
pub struct Echo {
    _stop: oneshot::Sender<()>,
}

/// Bind a heartbeat echo on `endpoint` (a CURVE server with `curve`) and serve
/// it from its own thread.
pub fn spawn_echo(endpoint: &str, curve: Option<Arc<KeyPair>>) -> Result<Echo, TransportError> {
    // Bind here so errors reach the caller; the runtime lives only in the thread
    // (a runtime must never be dropped inside the caller's async context).
    let bound = bind_std(endpoint)?;
    let security = match curve {
        Some(keys) => Security::CurveServer(keys),
        None => Security::Null,
    };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let name = endpoint.to_owned();
    std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(endpoint = %name, "heartbeat runtime failed: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match adopt(bound, &name) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("heartbeat: {e}");
                        return;
                    }
                };
                let (outbox, mut inbox) =
                    serve_bound(Kind::Router, listener, DEFAULT_QUEUE, &name, security);
                let echo = async {
                    while let Some(frames) = inbox.recv().await {
                        outbox.send(frames);
                    }
                };
                tokio::select! {
                    () = echo => {}
                    _ = stop_rx => {}
                }
            });
        })
        .map_err(|source| TransportError {
            op: "start heartbeat",
            endpoint: endpoint.to_owned(),
            source,
        })?;
    Ok(Echo { _stop: stop_tx })
}

#[cfg(test)]
mod curve_sockets;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    pub(super) fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    pub(super) async fn recv(inbox: &mut Inbox) -> Frames {
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

    #[tokio::test(flavor = "current_thread")]
    async fn messages_queued_before_the_outbox_is_dropped_are_still_delivered() {
        let ep = format!("tcp://127.0.0.1:{}", free_port());
        let (_rout, mut rin) = open(Kind::Router, Side::Bind, &ep, &Options::default()).unwrap();
        let (dout, _din) = open(Kind::Dealer, Side::Connect, &ep, &Options::default()).unwrap();
        dout.send(vec![b"hello".to_vec()]);
        assert_eq!(recv(&mut rin).await[1], b"hello");
        for i in 0..200u32 {
            assert!(dout.send_parts(&[&i.to_le_bytes()]));
        }
        // Closing writes what is queued before the connection goes.
        drop(dout);
        for i in 0..200u32 {
            assert_eq!(recv(&mut rin).await[1], i.to_le_bytes());
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_peer_queue_drops_instead_of_growing() {
        let ep = format!("tcp://127.0.0.1:{}", free_port());
        let opts = Options {
            queue: Some(3),
            ..Options::default()
        };
        let (rout, mut rin) = open(Kind::Router, Side::Bind, &ep, &opts).unwrap();
        let id = Options {
            identity: Some(b"slow".to_vec()),
            ..Options::default()
        };
        let (dout, mut din) = open(Kind::Dealer, Side::Connect, &ep, &id).unwrap();
        dout.send(vec![b"hi".to_vec()]);
        recv(&mut rin).await;
        // Queued in one step of the runtime: the writer has not run yet.
        let sent: Vec<bool> = (0..5u8)
            .map(|i| rout.send(vec![b"slow".to_vec(), vec![i]]))
            .collect();
        assert_eq!(sent, [true, true, true, false, false]);
        assert!(
            !rout.send(vec![b"nobody".to_vec(), vec![9]]),
            "unknown routing id"
        );
        for i in 0..3u8 {
            assert_eq!(recv(&mut din).await, vec![vec![i]]);
        }
        rout.flush().await;
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

    #[test]
    fn sockets_serve_as_local_tasks_and_the_thread_is_plain_again_afterwards() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}/local.sock", dir.path().display());
        // Rc: the future need not be Send, as pxkernel's is not.
        let got = block_on_local(&rt, async move {
            let marker = std::rc::Rc::new(b"local".to_vec());
            let (_rout, mut rin) =
                open(Kind::Router, Side::Bind, &endpoint, &Options::default()).unwrap();
            let (dout, _din) =
                open(Kind::Dealer, Side::Connect, &endpoint, &Options::default()).unwrap();
            assert!(dout.send(vec![(*marker).clone()]));
            recv(&mut rin).await
        })
        .unwrap();
        assert_eq!(got[1], b"local");
        // Outside the set, sockets are runtime tasks again (a local task here would panic).
        rt.block_on(async {
            let ep = format!("tcp://127.0.0.1:{}", free_port());
            let (_rout, mut rin) =
                open(Kind::Router, Side::Bind, &ep, &Options::default()).unwrap();
            let (dout, _din) = open(Kind::Dealer, Side::Connect, &ep, &Options::default()).unwrap();
            dout.send(vec![b"plain".to_vec()]);
            assert_eq!(recv(&mut rin).await[1], b"plain");
        });
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dealer_connects_before_the_peer_listens_and_queues_meanwhile() {
        let ep = format!("tcp://127.0.0.1:{}", free_port());
        let opts = Options {
            identity: Some(b"early".to_vec()),
            ..Options::default()
        };
        let (dout, _din) = open(Kind::Dealer, Side::Connect, &ep, &opts).unwrap();
        assert!(dout.send(vec![b"queued".to_vec()]));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_rout, mut rin) = open(Kind::Router, Side::Bind, &ep, &Options::default()).unwrap();
        assert_eq!(
            recv(&mut rin).await,
            vec![b"early".to_vec(), b"queued".to_vec()]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dealer_reconnects_after_the_peer_restarts() {
        let ep = format!("tcp://127.0.0.1:{}", free_port());
        let (dout, mut din) = open(Kind::Dealer, Side::Connect, &ep, &Options::default()).unwrap();
        {
            let (rout, mut rin) = open(Kind::Router, Side::Bind, &ep, &Options::default()).unwrap();
            dout.send(vec![b"one".to_vec()]);
            let got = recv(&mut rin).await;
            assert_eq!(got[1], b"one");
            rout.send(vec![got[0].clone(), b"reply".to_vec()]);
            assert_eq!(recv(&mut din).await, vec![b"reply".to_vec()]);
            rout.flush().await;
        }
        // The old ROUTER is gone (its outbox dropped); a new one takes the port.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_rout, mut rin) = loop {
            match open(Kind::Router, Side::Bind, &ep, &Options::default()) {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        // Messages sent while reconnecting may be lost (as with libzmq); keep sending.
        let got = loop {
            dout.send(vec![b"two".to_vec()]);
            match tokio::time::timeout(Duration::from_millis(200), rin.recv()).await {
                Ok(Some(m)) => break m,
                _ => continue,
            }
        };
        assert_eq!(got[1], b"two");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn xpub_reports_subscriptions_and_filters_by_topic() {
        let ep = format!("tcp://127.0.0.1:{}", free_port());
        let (pout, mut pin) = open(Kind::XPub, Side::Bind, &ep, &Options::default()).unwrap();
        let (_sout, mut sin) = open(Kind::Sub, Side::Connect, &ep, &Options::default()).unwrap();
        // Our SUB subscribes to everything: the XPUB reports 0x01 + empty topic.
        assert_eq!(recv(&mut pin).await, vec![vec![1u8]]);
        pout.send(vec![b"topic".to_vec(), b"body".to_vec()]);
        assert_eq!(
            recv(&mut sin).await,
            vec![b"topic".to_vec(), b"body".to_vec()]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sub_subscribes_again_after_the_publisher_restarts() {
        let ep = format!("tcp://127.0.0.1:{}", free_port());
        let (_sout, mut sin) = open(Kind::Sub, Side::Connect, &ep, &Options::default()).unwrap();
        for round in 0..2u8 {
            let (pout, mut pin) = loop {
                match open(Kind::XPub, Side::Bind, &ep, &Options::default()) {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            assert_eq!(recv(&mut pin).await, vec![vec![1u8]], "round {round}");
            pout.send(vec![vec![round]]);
            assert_eq!(recv(&mut sin).await, vec![vec![round]]);
            pout.flush().await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_peer_that_is_not_zeromq_is_dropped_and_the_socket_lives_on() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port = free_port();
        let ep = format!("tcp://127.0.0.1:{port}");
        let (_rout, mut rin) = open(Kind::Router, Side::Bind, &ep, &Options::default()).unwrap();
        let mut junk = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        junk.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 128];
        // We send our greeting, then close on the bad one.
        let mut total = 0;
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(5), junk.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            total += n;
        }
        assert!(total >= 10, "greeting was sent");
        let (dout, _din) = open(Kind::Dealer, Side::Connect, &ep, &Options::default()).unwrap();
        dout.send(vec![b"still here".to_vec()]);
        assert_eq!(recv(&mut rin).await[1], b"still here");
    }
}
