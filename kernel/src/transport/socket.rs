//! ZeroMQ socket semantics over tokio streams: ROUTER and XPUB (bind side, many
//! peers) and DEALER and SUB (connect side, one peer, reconnecting).
//!
//! Every connection has a reader task (frames → the socket's inbox) and a writer
//! task that drains a queue of pre-encoded messages, batching whatever is queued
//! into one write. The socket task owns the outbox: it encodes each message once
//! and routes it — to one peer by routing id (ROUTER), to every matching
//! subscriber (XPUB), or to the connection, queueing while there is none (DEALER).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use super::zmtp::{self, COMMAND, GREETING_LEN, LONG, MORE, ZmtpError};
use super::{Frames, Kind, Outgoing};

/// Frames larger than this end the connection (a broken or hostile peer).
const MAX_FRAME: u64 = 4 << 30;
/// Messages queued for a DEALER while it has no connection.
const DISCONNECTED_QUEUE: usize = 10_000;
/// How long a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) type Reader = BufReader<Box<dyn AsyncRead + Send + Unpin>>;
pub(super) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

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

fn split_stream<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(s: S) -> (Reader, Writer) {
    let (r, w) = tokio::io::split(s);
    (
        BufReader::with_capacity(64 * 1024, Box::new(r) as Box<dyn AsyncRead + Send + Unpin>),
        Box::new(w),
    )
}

impl Listener {
    async fn accept(&self) -> std::io::Result<(Reader, Writer)> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok(split_stream(s))
            }
            Listener::Ipc(l) => {
                let (s, _) = l.accept().await?;
                Ok(split_stream(s))
            }
        }
    }
}

async fn dial(addr: &Address) -> std::io::Result<(Reader, Writer)> {
    match addr {
        Address::Tcp(a) => {
            let s = tokio::net::TcpStream::connect(a.as_str()).await?;
            s.set_nodelay(true)?;
            Ok(split_stream(s))
        }
        Address::Ipc(p) => Ok(split_stream(tokio::net::UnixStream::connect(p).await?)),
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
    wr: &mut Writer,
    kind: Kind,
    identity: Option<&[u8]>,
    as_server: bool,
) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let ours = type_name(kind);
    let mut hello = zmtp::greeting(as_server).to_vec();
    hello.extend_from_slice(&zmtp::ready(ours, identity));
    wr.write_all(&hello).await?;
    wr.flush().await?;
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

/// What a writer task is given.
enum WriteItem {
    Bytes(Arc<Vec<u8>>),
    Flush(oneshot::Sender<()>),
}

async fn write_loop(mut wr: Writer, mut rx: mpsc::Receiver<WriteItem>) {
    let mut batch: Vec<u8> = Vec::new();
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(item) = rx.recv().await {
        let mut single: Option<Arc<Vec<u8>>> = None;
        match item {
            WriteItem::Bytes(b) => single = Some(b),
            WriteItem::Flush(ack) => acks.push(ack),
        }
        // Batch what else is queued into one write: one syscall for a burst.
        while batch.len() < (1 << 20) {
            match rx.try_recv() {
                Ok(WriteItem::Bytes(b)) => {
                    if let Some(first) = single.take() {
                        batch.extend_from_slice(&first);
                    }
                    batch.extend_from_slice(&b);
                }
                Ok(WriteItem::Flush(ack)) => acks.push(ack),
                Err(_) => break,
            }
        }
        let result = match single {
            Some(b) => wr.write_all(&b).await,
            None if !batch.is_empty() => wr.write_all(&batch).await,
            None => Ok(()),
        };
        batch.clear();
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        if result.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

fn encode(frames: &[Vec<u8>]) -> Arc<Vec<u8>> {
    let mut out = Vec::with_capacity(zmtp::encoded_len(frames));
    zmtp::encode_message(frames, &mut out);
    Arc::new(out)
}

fn pong(data: &[u8]) -> Arc<Vec<u8>> {
    // PING carries a 2-byte TTL, then a context that PONG echoes.
    let mut out = Vec::new();
    zmtp::encode_command("PONG", data.get(2..).unwrap_or_default(), &mut out);
    Arc::new(out)
}

/// A connected peer of a bind-side socket.
struct Peer {
    conn: u64,
    tx: mpsc::Sender<WriteItem>,
    subscriptions: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Peers {
    next_auto_id: u32,
    by_id: HashMap<Vec<u8>, Peer>,
}

static CONNECTIONS: AtomicU64 = AtomicU64::new(1);

/// Run a bind-side socket (ROUTER or XPUB) until its outbox closes.
pub(super) async fn run_bound(
    kind: Kind,
    listener: Listener,
    queue: usize,
    inbox: mpsc::Sender<Frames>,
    mut outbox: mpsc::UnboundedReceiver<Outgoing>,
    endpoint: String,
) {
    let peers = Arc::new(Mutex::new(Peers::default()));
    let (closed_tx, closed) = watch::channel(());
    let acceptor = {
        let peers = peers.clone();
        let closed = closed.clone();
        let endpoint = endpoint.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok((rd, wr)) => {
                        tokio::spawn(serve_peer(
                            kind,
                            rd,
                            wr,
                            peers.clone(),
                            queue,
                            inbox.clone(),
                            closed.clone(),
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(%endpoint, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    };
    let sender = async {
        while let Some(out) = outbox.recv().await {
            match out {
                Outgoing::Frames(frames) => route(kind, &peers, frames, &endpoint),
                Outgoing::Flush(done) => {
                    let txs: Vec<_> = peers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .by_id
                        .values()
                        .map(|p| p.tx.clone())
                        .collect();
                    for tx in txs {
                        let (ack, acked) = oneshot::channel();
                        if tx.send(WriteItem::Flush(ack)).await.is_ok() {
                            let _ = acked.await;
                        }
                    }
                    let _ = done.send(());
                }
            }
        }
    };
    tokio::select! {
        () = acceptor => {}
        () = sender => {}
    }
    // Closing: connections end their reads, writers drain what is queued.
    drop(closed_tx);
}

fn route(kind: Kind, peers: &Mutex<Peers>, mut frames: Frames, endpoint: &str) {
    let peers = peers.lock().unwrap_or_else(|p| p.into_inner());
    match kind {
        Kind::Router => {
            if frames.is_empty() {
                return;
            }
            let id = frames.remove(0);
            match peers.by_id.get(&id) {
                Some(p) => {
                    if p.tx.try_send(WriteItem::Bytes(encode(&frames))).is_err() {
                        tracing::warn!(%endpoint, "peer queue full or gone: message dropped");
                    }
                }
                None => tracing::debug!(%endpoint, "no peer with that routing id: message dropped"),
            }
        }
        Kind::XPub => {
            let topic = frames.first().map(Vec::as_slice).unwrap_or_default();
            let mut bytes: Option<Arc<Vec<u8>>> = None;
            for p in peers.by_id.values() {
                if p.subscriptions.iter().any(|s| topic.starts_with(s)) {
                    let b = bytes.get_or_insert_with(|| encode(&frames)).clone();
                    if p.tx.try_send(WriteItem::Bytes(b)).is_err() {
                        tracing::warn!(%endpoint, "subscriber too slow: message dropped");
                    }
                }
            }
        }
        Kind::Dealer | Kind::Sub => {}
    }
}

async fn serve_peer(
    kind: Kind,
    mut rd: Reader,
    mut wr: Writer,
    peers: Arc<Mutex<Peers>>,
    queue: usize,
    inbox: mpsc::Sender<Frames>,
    mut closed: watch::Receiver<()>,
) {
    let props = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&mut rd, &mut wr, kind, None, true),
    )
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
    let conn = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(queue.max(1));
    let id = {
        let mut table = peers.lock().unwrap_or_else(|p| p.into_inner());
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
        table.by_id.insert(
            id.clone(),
            Peer {
                conn,
                tx: tx.clone(),
                subscriptions: Vec::new(),
            },
        );
        id
    };
    tokio::spawn(write_loop(wr, rx));
    loop {
        let incoming = tokio::select! {
            r = read_incoming(&mut rd) => r,
            _ = closed.changed() => break,
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
                        subscription(&peers, &id, conn, first, &inbox).await;
                    }
                }
                Kind::Dealer | Kind::Sub => {}
            },
            Ok(Incoming::Command(name, data)) => match name.as_str() {
                "PING" => {
                    let _ = tx.try_send(WriteItem::Bytes(pong(&data)));
                }
                "SUBSCRIBE" | "CANCEL" if kind == Kind::XPub => {
                    let mut m = vec![u8::from(name == "SUBSCRIBE")];
                    m.extend_from_slice(&data);
                    subscription(&peers, &id, conn, m, &inbox).await;
                }
                _ => {}
            },
            Err(e) => {
                if e.kind() != std::io::ErrorKind::UnexpectedEof {
                    tracing::debug!("peer connection ended: {e}");
                }
                break;
            }
        }
    }
    let mut table = peers.lock().unwrap_or_else(|p| p.into_inner());
    if table.by_id.get(&id).is_some_and(|p| p.conn == conn) {
        table.by_id.remove(&id);
    }
}

/// A subscription message (`0x01` + topic) or unsubscription (`0x00` + topic):
/// recorded for routing first, then reported to the owner (XPUB_VERBOSE).
async fn subscription(
    peers: &Mutex<Peers>,
    id: &[u8],
    conn: u64,
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
        let mut table = peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = table.by_id.get_mut(id).filter(|p| p.conn == conn) {
            if op == 1 {
                p.subscriptions.push(topic.to_vec());
            } else if let Some(i) = p.subscriptions.iter().position(|s| s == topic) {
                p.subscriptions.remove(i);
            }
        }
    }
    let _ = inbox.send(vec![msg]).await;
}

/// The connection of a connect-side socket, or what waits for one.
struct Link {
    tx: Option<mpsc::Sender<WriteItem>>,
    pending: VecDeque<Arc<Vec<u8>>>,
}

/// Run a connect-side socket (DEALER or SUB) until its outbox closes.
pub(super) async fn run_connected(
    kind: Kind,
    addr: Address,
    identity: Option<Vec<u8>>,
    inbox: mpsc::Sender<Frames>,
    mut outbox: mpsc::UnboundedReceiver<Outgoing>,
    endpoint: String,
) {
    let link = Arc::new(Mutex::new(Link {
        tx: None,
        pending: VecDeque::new(),
    }));
    let connector = {
        let link = link.clone();
        let endpoint = endpoint.clone();
        async move {
            let mut backoff = Duration::from_millis(10);
            loop {
                let connected = async {
                    let (mut rd, mut wr) = dial(&addr).await?;
                    tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        handshake(&mut rd, &mut wr, kind, identity.as_deref(), false),
                    )
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out")
                    })??;
                    std::io::Result::Ok((rd, wr))
                }
                .await;
                let (mut rd, wr) = match connected {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::trace!(%endpoint, "connect failed, retrying: {e}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                        continue;
                    }
                };
                backoff = Duration::from_millis(10);
                let (tx, rx) = mpsc::channel(DISCONNECTED_QUEUE);
                tokio::spawn(write_loop(wr, rx));
                {
                    let mut l = link.lock().unwrap_or_else(|p| p.into_inner());
                    if kind == Kind::Sub {
                        // Subscribe to everything, again after every reconnect.
                        let _ = tx.try_send(WriteItem::Bytes(encode(&[vec![1u8]])));
                    }
                    while let Some(b) = l.pending.pop_front() {
                        let _ = tx.try_send(WriteItem::Bytes(b));
                    }
                    l.tx = Some(tx.clone());
                }
                loop {
                    match read_incoming(&mut rd).await {
                        Ok(Incoming::Message(frames)) => {
                            let _ = inbox.send(frames).await;
                        }
                        Ok(Incoming::Command(name, data)) => {
                            if name == "PING" {
                                let _ = tx.try_send(WriteItem::Bytes(pong(&data)));
                            }
                        }
                        Err(e) => {
                            tracing::debug!(%endpoint, "connection lost, reconnecting: {e}");
                            break;
                        }
                    }
                }
                link.lock().unwrap_or_else(|p| p.into_inner()).tx = None;
            }
        }
    };
    let sender = async {
        while let Some(out) = outbox.recv().await {
            match out {
                Outgoing::Frames(frames) => {
                    if kind != Kind::Dealer {
                        continue;
                    }
                    let bytes = encode(&frames);
                    let mut l = link.lock().unwrap_or_else(|p| p.into_inner());
                    match &l.tx {
                        Some(tx) => {
                            if tx.try_send(WriteItem::Bytes(bytes)).is_err() {
                                tracing::warn!(%endpoint, "send queue full: message dropped");
                            }
                        }
                        None if l.pending.len() < DISCONNECTED_QUEUE => l.pending.push_back(bytes),
                        None => {
                            tracing::warn!(%endpoint, "not connected and queue full: message dropped")
                        }
                    }
                }
                Outgoing::Flush(done) => {
                    let tx = link.lock().unwrap_or_else(|p| p.into_inner()).tx.clone();
                    if let Some(tx) = tx {
                        let (ack, acked) = oneshot::channel();
                        if tx.send(WriteItem::Flush(ack)).await.is_ok() {
                            let _ = acked.await;
                        }
                    }
                    let _ = done.send(());
                }
            }
        }
    };
    tokio::select! {
        () = connector => {}
        () = sender => {}
    }
}
