//! ZeroMQ socket semantics over tokio streams: ROUTER and XPUB (bind side, many
//! peers) and DEALER and SUB (connect side, one peer, reconnecting).
//!
//! Sending happens in the caller's task: [`Socket::send`] routes a message — to
//! one peer by routing id (ROUTER), to every matching subscriber (XPUB), or to the
//! connection, queueing while there is none (DEALER) — and encodes it straight
//! into that connection's write buffer. Each connection has a writer task that
//! writes whatever has gathered in one syscall (the messages one step of the
//! runtime queues go out together) and a reader task (frames → the socket's
//! inbox). There is no task between a sender and a connection: a message costs
//! one encode and, at most, one wake-up of the writer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::unix;
use super::zmtp::{self, COMMAND, GREETING_LEN, LONG, MORE, ZmtpError};
use super::{Frames, Kind};

/// Frames larger than this end the connection (a broken or hostile peer).
const MAX_FRAME: u64 = 4 << 30;
/// Messages queued for a DEALER while it has no connection.
const DISCONNECTED_QUEUE: usize = 10_000;
/// How long a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) type Reader = BufReader<Box<dyn AsyncRead + Send + Unpin>>;

/// The write half of a connection. Its writes need only `&self`, so a sender
/// can write through it directly while the writer task also holds it.
pub(super) enum Writer {
    Tcp(tokio::net::tcp::OwnedWriteHalf),
    Ipc(unix::Stream),
}

impl Writer {
    /// Write what the socket takes now, without waiting.
    fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Writer::Tcp(w) => w.try_write(bytes),
            Writer::Ipc(w) => w.try_write(bytes),
        }
    }

    async fn writable(&self) -> std::io::Result<()> {
        match self {
            Writer::Tcp(w) => w.writable().await,
            Writer::Ipc(w) => w.writable().await,
        }
    }

    async fn write_all(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            match self.try_write(bytes) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Where a socket binds or connects.
#[derive(Clone, Debug)]
pub(super) enum Address {
    Tcp(String),
    Ipc(PathBuf),
}

/// A bound listener.
pub(super) enum Listener {
    Tcp(tokio::net::TcpListener),
    Ipc(tokio::net::UnixListener),
}

fn reader<R: AsyncRead + Send + Unpin + 'static>(r: R) -> Reader {
    BufReader::with_capacity(64 * 1024, Box::new(r) as Box<dyn AsyncRead + Send + Unpin>)
}

fn split_tcp(s: tokio::net::TcpStream) -> std::io::Result<(Reader, Writer)> {
    s.set_nodelay(true)?;
    let (r, w) = s.into_split();
    Ok((reader(r), Writer::Tcp(w)))
}

fn split_ipc(s: tokio::net::UnixStream) -> std::io::Result<(Reader, Writer)> {
    let s = unix::Stream::new(s)?;
    Ok((reader(s.clone()), Writer::Ipc(s)))
}

impl Listener {
    async fn accept(&self) -> std::io::Result<(Reader, Writer)> {
        match self {
            Listener::Tcp(l) => split_tcp(l.accept().await?.0),
            Listener::Ipc(l) => split_ipc(l.accept().await?.0),
        }
    }
}

async fn dial(addr: &Address) -> std::io::Result<(Reader, Writer)> {
    match addr {
        Address::Tcp(a) => split_tcp(tokio::net::TcpStream::connect(a.as_str()).await?),
        Address::Ipc(p) => split_ipc(tokio::net::UnixStream::connect(p).await?),
    }
}

fn type_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Router => "ROUTER",
        Kind::Dealer => "DEALER",
        Kind::XPub => "XPUB",
        Kind::Sub => "SUB",
    }
}

/// One message read from a peer.
enum Incoming {
    Message(Frames),
    Command(String, Vec<u8>),
}

fn invalid(e: ZmtpError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

async fn read_frame(rd: &mut Reader) -> std::io::Result<(u8, Vec<u8>)> {
    let flags = rd.read_u8().await?;
    let len = if flags & LONG != 0 {
        rd.read_u64().await?
    } else {
        u64::from(rd.read_u8().await?)
    };
    if len > MAX_FRAME {
        return Err(invalid(ZmtpError::TooLarge(len)));
    }
    let mut body = vec![0u8; len as usize];
    rd.read_exact(&mut body).await?;
    Ok((flags, body))
}

async fn read_incoming(rd: &mut Reader) -> std::io::Result<Incoming> {
    let mut frames = Vec::new();
    loop {
        let (flags, body) = read_frame(rd).await?;
        if flags & COMMAND != 0 {
            if !frames.is_empty() {
                return Err(invalid(ZmtpError::Handshake(
                    "command inside a multipart message".into(),
                )));
            }
            let (name, data) = zmtp::parse_command(&body).map_err(invalid)?;
            return Ok(Incoming::Command(name.to_owned(), data.to_vec()));
        }
        frames.push(body);
        if flags & MORE == 0 {
            return Ok(Incoming::Message(frames));
        }
    }
}

/// Greeting and READY both ways; returns the peer's READY properties.
async fn handshake(
    rd: &mut Reader,
    wr: &Writer,
    kind: Kind,
    identity: Option<&[u8]>,
    as_server: bool,
) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let ours = type_name(kind);
    let mut hello = zmtp::greeting(as_server).to_vec();
    hello.extend_from_slice(&zmtp::ready(ours, identity));
    wr.write_all(&hello).await?;
    let mut g = [0u8; GREETING_LEN];
    // The signature first: a peer that is not ZeroMQ is turned away at once.
    rd.read_exact(&mut g[..10]).await?;
    if g[0] != 0xFF {
        return Err(invalid(ZmtpError::Signature));
    }
    rd.read_exact(&mut g[10..]).await?;
    zmtp::parse_greeting(&g).map_err(invalid)?;
    let props = match read_incoming(rd).await? {
        Incoming::Command(name, data) if name == "READY" => {
            zmtp::parse_properties(&data).map_err(invalid)?
        }
        Incoming::Command(name, _) => {
            return Err(invalid(ZmtpError::Handshake(format!(
                "expected READY, got {name}"
            ))));
        }
        Incoming::Message(_) => {
            return Err(invalid(ZmtpError::Handshake("message before READY".into())));
        }
    };
    let peer = zmtp::property(&props, "Socket-Type")
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default();
    if !zmtp::compatible(ours, &peer) {
        return Err(invalid(ZmtpError::Incompatible { ours, peer }));
    }
    Ok(props)
}

/// Poisoning only means a panic elsewhere; the data is still consistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
}

impl Conn {
    fn new(wr: Writer, write_through: bool, buf: Vec<u8>, queued: usize) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            state: Mutex::new(WriteState {
                buf,
                queued,
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

    fn has_queued(&self) -> bool {
        !lock(&self.state).buf.is_empty()
    }

    /// Append one message unless `limit` messages already wait; false when it was dropped.
    fn push(&self, limit: usize, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        let was_idle = {
            let mut s = lock(&self.state);
            if s.gone || s.queued >= limit {
                return false;
            }
            let was_idle = s.buf.is_empty();
            encode(&mut s.buf);
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
    fn flushed(&self) -> Option<oneshot::Receiver<()>> {
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
    fn end(&self) {
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
async fn write_loop(conn: Arc<Conn>, mut closing: watch::Receiver<()>) {
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

fn pong(data: &[u8], out: &mut Vec<u8>) {
    // PING carries a 2-byte TTL, then a context that PONG echoes.
    zmtp::encode_command("PONG", data.get(2..).unwrap_or_default(), out);
}

/// A socket as its senders see it.
pub(super) enum Socket {
    Bound(Bound),
    Connected(Connected),
}

impl Socket {
    /// Route and queue one message; false when it was dropped (no such peer, queue full).
    pub(super) fn send<T: AsRef<[u8]>>(&self, frames: &[T]) -> bool {
        match self {
            Socket::Bound(b) => b.send(frames),
            Socket::Connected(c) => c.send(frames),
        }
    }

    /// Every connection this socket has now.
    fn conns(&self) -> Vec<Arc<Conn>> {
        match self {
            Socket::Bound(b) => lock(&b.peers)
                .by_id
                .values()
                .map(|p| p.conn.clone())
                .collect(),
            Socket::Connected(c) => lock(&c.link).conn.iter().cloned().collect(),
        }
    }

    /// Wait until everything queued so far has been written to the connected peers.
    pub(super) async fn flush(&self) {
        for conn in self.conns() {
            if let Some(done) = conn.flushed() {
                let _ = done.await;
            }
        }
    }
}

/// A connected peer of a bind-side socket.
struct Peer {
    id: u64,
    conn: Arc<Conn>,
    subscriptions: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Peers {
    next_auto_id: u32,
    by_id: HashMap<Vec<u8>, Peer>,
}

static CONNECTIONS: AtomicU64 = AtomicU64::new(1);

/// A bind-side socket (ROUTER or XPUB): its peers by routing id.
pub(super) struct Bound {
    kind: Kind,
    queue: usize,
    endpoint: String,
    peers: Mutex<Peers>,
}

impl Bound {
    pub(super) fn new(kind: Kind, queue: usize, endpoint: String) -> Bound {
        Bound {
            kind,
            queue: queue.max(1),
            endpoint,
            peers: Mutex::new(Peers::default()),
        }
    }

    fn send<T: AsRef<[u8]>>(&self, frames: &[T]) -> bool {
        let peers = lock(&self.peers);
        let endpoint = &self.endpoint;
        match self.kind {
            Kind::Router => {
                let Some((id, frames)) = frames.split_first() else {
                    return false;
                };
                match peers.by_id.get(id.as_ref()) {
                    Some(p) => {
                        let queued = p.conn.push(self.queue, |buf| {
                            zmtp::encode_message(frames, buf);
                        });
                        if !queued {
                            tracing::warn!(%endpoint, "peer queue full or gone: message dropped");
                        }
                        queued
                    }
                    None => {
                        tracing::debug!(%endpoint, "no peer with that routing id: message dropped");
                        false
                    }
                }
            }
            Kind::XPub => {
                let topic = frames.first().map(AsRef::as_ref).unwrap_or_default();
                let mut all = true;
                for p in peers.by_id.values() {
                    if p.subscriptions.iter().any(|s| topic.starts_with(s))
                        && !p
                            .conn
                            .push(self.queue, |buf| zmtp::encode_message(frames, buf))
                    {
                        tracing::warn!(%endpoint, "subscriber too slow: message dropped");
                        all = false;
                    }
                }
                all
            }
            Kind::Dealer | Kind::Sub => false,
        }
    }
}

/// Accept and serve peers of a bind-side socket until it closes.
pub(super) async fn run_bound(
    socket: Arc<Socket>,
    listener: Listener,
    inbox: mpsc::Sender<Frames>,
    mut closing: watch::Receiver<()>,
) {
    let Socket::Bound(bound) = &*socket else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = closing.changed() => return,
        };
        match accepted {
            Ok((rd, wr)) => {
                super::spawn(serve_peer(
                    socket.clone(),
                    rd,
                    wr,
                    inbox.clone(),
                    closing.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(endpoint = %bound.endpoint, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_peer(
    socket: Arc<Socket>,
    mut rd: Reader,
    wr: Writer,
    inbox: mpsc::Sender<Frames>,
    mut closing: watch::Receiver<()>,
) {
    let Socket::Bound(bound) = &*socket else {
        return;
    };
    let kind = bound.kind;
    let props =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut rd, &wr, kind, None, true))
            .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!("handshake with a peer failed: {e}");
                return;
            }
            Err(_) => {
                tracing::warn!("handshake with a peer timed out");
                return;
            }
        };
    let serial = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    // Bind-side sockets carry replies and output, which come in bursts: the writer batches them.
    let conn = Conn::new(wr, false, Vec::new(), 0);
    let id = {
        let mut table = lock(&bound.peers);
        let given = zmtp::property(&props, "Identity").filter(|i| !i.is_empty() && i[0] != 0);
        let id = match (kind, given) {
            (Kind::Router, Some(i)) => i.to_vec(),
            _ => {
                table.next_auto_id = table.next_auto_id.wrapping_add(1);
                let mut v = vec![0u8];
                v.extend_from_slice(&table.next_auto_id.to_be_bytes());
                v
            }
        };
        // A peer reconnecting with the same identity takes over (ROUTER_HANDOVER).
        let old = table.by_id.insert(
            id.clone(),
            Peer {
                id: serial,
                conn: conn.clone(),
                subscriptions: Vec::new(),
            },
        );
        if let Some(old) = old {
            old.conn.end();
        }
        id
    };
    super::spawn(write_loop(conn.clone(), closing.clone()));
    loop {
        let incoming = tokio::select! {
            r = read_incoming(&mut rd) => r,
            _ = closing.changed() => break,
        };
        match incoming {
            Ok(Incoming::Message(frames)) => match kind {
                Kind::Router => {
                    let mut routed = Vec::with_capacity(frames.len() + 1);
                    routed.push(id.clone());
                    routed.extend(frames);
                    let _ = inbox.send(routed).await;
                }
                Kind::XPub => {
                    if let Some(first) = frames.into_iter().next() {
                        subscription(&bound.peers, &id, serial, first, &inbox).await;
                    }
                }
                Kind::Dealer | Kind::Sub => {}
            },
            Ok(Incoming::Command(name, data)) => match name.as_str() {
                "PING" => {
                    conn.push(usize::MAX, |buf| pong(&data, buf));
                }
                "SUBSCRIBE" | "CANCEL" if kind == Kind::XPub => {
                    let mut m = vec![u8::from(name == "SUBSCRIBE")];
                    m.extend_from_slice(&data);
                    subscription(&bound.peers, &id, serial, m, &inbox).await;
                }
                _ => {}
            },
            Err(e) => {
                if e.kind() != std::io::ErrorKind::UnexpectedEof {
                    tracing::debug!("peer connection ended: {e}");
                }
                // What is still queued for a peer that left cannot reach it.
                conn.end();
                break;
            }
        }
    }
    let mut table = lock(&bound.peers);
    if table.by_id.get(&id).is_some_and(|p| p.id == serial) {
        table.by_id.remove(&id);
    }
}

/// A subscription message (`0x01` + topic) or unsubscription (`0x00` + topic):
/// recorded for routing first, then reported to the owner (XPUB_VERBOSE).
async fn subscription(
    peers: &Mutex<Peers>,
    id: &[u8],
    serial: u64,
    msg: Vec<u8>,
    inbox: &mpsc::Sender<Frames>,
) {
    let Some((&op, topic)) = msg.split_first() else {
        return;
    };
    if op > 1 {
        return;
    }
    {
        let mut table = lock(peers);
        if let Some(p) = table.by_id.get_mut(id).filter(|p| p.id == serial) {
            if op == 1 {
                p.subscriptions.push(topic.to_vec());
            } else if let Some(i) = p.subscriptions.iter().position(|s| s == topic) {
                p.subscriptions.remove(i);
            }
        }
    }
    let _ = inbox.send(vec![msg]).await;
}

/// A connect-side socket (DEALER or SUB): its connection, or what waits for one.
pub(super) struct Connected {
    kind: Kind,
    endpoint: String,
    link: Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    conn: Option<Arc<Conn>>,
    /// Encoded messages sent while there is no connection, and how many.
    pending: Vec<u8>,
    pending_count: usize,
}

impl Connected {
    pub(super) fn new(kind: Kind, endpoint: String) -> Connected {
        Connected {
            kind,
            endpoint,
            link: Mutex::new(LinkState::default()),
        }
    }

    fn send<T: AsRef<[u8]>>(&self, frames: &[T]) -> bool {
        if self.kind != Kind::Dealer {
            return false;
        }
        let endpoint = &self.endpoint;
        let mut link = lock(&self.link);
        if let Some(conn) = &link.conn {
            let queued = conn.push(DISCONNECTED_QUEUE, |buf| zmtp::encode_message(frames, buf));
            if !queued {
                tracing::warn!(%endpoint, "send queue full: message dropped");
            }
            return queued;
        }
        if link.pending_count >= DISCONNECTED_QUEUE {
            tracing::warn!(%endpoint, "not connected and queue full: message dropped");
            return false;
        }
        zmtp::encode_message(frames, &mut link.pending);
        link.pending_count += 1;
        true
    }
}

/// Connect, and connect again whenever the connection is lost, until the socket closes.
pub(super) async fn run_connected(
    socket: Arc<Socket>,
    addr: Address,
    identity: Option<Vec<u8>>,
    inbox: mpsc::Sender<Frames>,
    mut closing: watch::Receiver<()>,
) {
    let Socket::Connected(connected) = &*socket else {
        return;
    };
    let (kind, endpoint) = (connected.kind, &connected.endpoint);
    let mut backoff = Duration::from_millis(10);
    loop {
        let connecting = async {
            let (mut rd, wr) = dial(&addr).await?;
            tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                handshake(&mut rd, &wr, kind, identity.as_deref(), false),
            )
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out")
            })??;
            std::io::Result::Ok((rd, wr))
        };
        let connected_now = tokio::select! {
            c = connecting => c,
            _ = closing.changed() => return,
        };
        let (mut rd, wr) = match connected_now {
            Ok(c) => c,
            Err(e) => {
                tracing::trace!(%endpoint, "connect failed, retrying: {e}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = closing.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_millis(500));
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        let conn = {
            let mut link = lock(&connected.link);
            let mut buf = Vec::new();
            let mut queued = std::mem::take(&mut link.pending_count);
            if kind == Kind::Sub {
                // Subscribe to everything, again after every reconnect.
                zmtp::encode_message(&[[1u8]], &mut buf);
                queued += 1;
            }
            buf.append(&mut link.pending);
            // A DEALER sends requests, one at a time: each goes out at once.
            let conn = Conn::new(wr, kind == Kind::Dealer, buf, queued);
            link.conn = Some(conn.clone());
            conn
        };
        super::spawn(write_loop(conn.clone(), closing.clone()));
        loop {
            let incoming = tokio::select! {
                r = read_incoming(&mut rd) => r,
                _ = closing.changed() => return,
            };
            match incoming {
                Ok(Incoming::Message(frames)) => {
                    let _ = inbox.send(frames).await;
                }
                Ok(Incoming::Command(name, data)) => {
                    if name == "PING" {
                        conn.push(usize::MAX, |buf| pong(&data, buf));
                    }
                }
                Err(e) => {
                    tracing::debug!(%endpoint, "connection lost, reconnecting: {e}");
                    break;
                }
            }
        }
        lock(&connected.link).conn = None;
        conn.end();
    }
}
