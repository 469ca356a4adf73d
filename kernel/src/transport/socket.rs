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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::conn::{Conn, lock, write_loop};
use super::limits::{PENDING_HANDSHAKES, PING_CONTEXT, QUEUE_BYTES};
use super::stream::{
    Address, Incoming, Listener, Reader, Security, Shaken, Writer, dial, handshake, read_incoming,
};
use super::zmtp;
use super::{Frames, Kind};

/// Messages queued for a DEALER while it has no connection.
const DISCONNECTED_QUEUE: usize = 10_000;
/// How long a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn pong(data: &[u8], out: &mut Vec<u8>) {
    // PING carries a 2-byte TTL, then a context that PONG echoes (at most 16 bytes).
    let context = data.get(2..).unwrap_or_default();
    zmtp::encode_command("PONG", &context[..context.len().min(PING_CONTEXT)], out);
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
    security: Security,
    peers: Mutex<Peers>,
    failed_handshakes: AtomicU64,
}

impl Bound {
    pub(super) fn new(kind: Kind, queue: usize, endpoint: String, security: Security) -> Bound {
        Bound {
            kind,
            queue: queue.max(1),
            endpoint,
            security,
            peers: Mutex::new(Peers::default()),
            failed_handshakes: AtomicU64::new(0),
        }
    }

    /// Log a failed handshake: the 1st, 2nd, 4th, 8th… in full (a client with a
    /// wrong key retries ten times a second), the others only at debug level.
    fn handshake_failed(&self, what: &str) {
        let n = self.failed_handshakes.fetch_add(1, Ordering::Relaxed) + 1;
        let endpoint = &self.endpoint;
        if n.is_power_of_two() {
            tracing::warn!(%endpoint, "{what} ({n} so far)");
        } else {
            tracing::debug!(%endpoint, "{what}");
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
    let handshaking = Arc::new(AtomicUsize::new(0));
    let mut turned_away = 0u64;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = closing.changed() => return,
        };
        match accepted {
            Ok((rd, wr)) => {
                if handshaking.load(Ordering::Relaxed) >= PENDING_HANDSHAKES {
                    // Dropping the halves closes the connection.
                    turned_away += 1;
                    if turned_away.is_power_of_two() {
                        tracing::warn!(
                            endpoint = %bound.endpoint,
                            "{PENDING_HANDSHAKES} connections are in their handshake: \
                             closed a new one ({turned_away} so far)"
                        );
                    }
                    continue;
                }
                handshaking.fetch_add(1, Ordering::Relaxed);
                super::spawn(serve_peer(
                    socket.clone(),
                    rd,
                    wr,
                    inbox.clone(),
                    closing.clone(),
                    Handshaking(handshaking.clone()),
                ));
            }
            Err(e) => {
                tracing::warn!(endpoint = %bound.endpoint, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Counts a connection among those in their handshake until dropped.
struct Handshaking(Arc<AtomicUsize>);

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_peer(
    socket: Arc<Socket>,
    mut rd: Reader,
    wr: Writer,
    inbox: mpsc::Sender<Frames>,
    mut closing: watch::Receiver<()>,
    handshaking: Handshaking,
) {
    let Socket::Bound(bound) = &*socket else {
        return;
    };
    let kind = bound.kind;
    let shake = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&mut rd, &wr, kind, None, true, &bound.security),
    );
    let shook = shake.await;
    drop(handshaking);
    let Shaken { props, curve } = match shook {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            bound.handshake_failed(&format!("handshake with a peer failed: {e}"));
            return;
        }
        Err(_) => {
            bound.handshake_failed("handshake with a peer timed out");
            return;
        }
    };
    let serial = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    // Bind-side sockets carry replies and output, which come in bursts: the writer batches them.
    let (sealer, mut opener) = curve.unzip();
    let conn = Conn::new(wr, false, Vec::new(), 0, sealer);
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
            r = read_incoming(&mut rd, opener.as_mut()) => r,
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
                    conn.push_control(|buf| pong(&data, buf));
                }
                "SUBSCRIBE" | "CANCEL" if kind == Kind::XPub => {
                    let mut m = vec![u8::from(name == "SUBSCRIBE")];
                    m.extend_from_slice(&data);
                    subscription(&bound.peers, &id, serial, m, &inbox).await;
                }
                _ => {}
            },
            Err(e) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    tracing::warn!(endpoint = %bound.endpoint, "peer connection dropped: {e}");
                } else if e.kind() != std::io::ErrorKind::UnexpectedEof {
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
    security: Security,
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
    pub(super) fn new(kind: Kind, endpoint: String, security: Security) -> Connected {
        Connected {
            kind,
            endpoint,
            security,
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
        if link.pending_count >= DISCONNECTED_QUEUE
            || (link.pending_count > 0 && link.pending.len() >= QUEUE_BYTES)
        {
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
    let mut refused = 0u64;
    loop {
        let connecting = async {
            let (mut rd, wr) = dial(&addr).await?;
            let shaken = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                handshake(
                    &mut rd,
                    &wr,
                    kind,
                    identity.as_deref(),
                    false,
                    &connected.security,
                ),
            )
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out")
            })??;
            std::io::Result::Ok((rd, wr, shaken.curve))
        };
        let connected_now = tokio::select! {
            c = connecting => c,
            _ = closing.changed() => return,
        };
        let (mut rd, wr, curve) = match connected_now {
            Ok(c) => c,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    // A peer that answers but refuses us (mechanism, keys) is worth a
                    // line, though not one per retry.
                    refused += 1;
                    if refused.is_power_of_two() {
                        tracing::warn!(%endpoint, "handshake failed ({refused} so far), retrying: {e}");
                    }
                } else {
                    tracing::trace!(%endpoint, "connect failed, retrying: {e}");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = closing.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_millis(500));
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        let (sealer, mut opener) = curve.unzip();
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
            let conn = Conn::new(wr, kind == Kind::Dealer, buf, queued, sealer);
            link.conn = Some(conn.clone());
            conn
        };
        super::spawn(write_loop(conn.clone(), closing.clone()));
        loop {
            let incoming = tokio::select! {
                r = read_incoming(&mut rd, opener.as_mut()) => r,
                _ = closing.changed() => return,
            };
            match incoming {
                Ok(Incoming::Message(frames)) => {
                    let _ = inbox.send(frames).await;
                }
                Ok(Incoming::Command(name, data)) => {
                    if name == "PING" {
                        conn.push_control(|buf| pong(&data, buf));
                    }
                }
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        tracing::warn!(%endpoint, "connection dropped, reconnecting: {e}");
                    } else {
                        tracing::debug!(%endpoint, "connection lost, reconnecting: {e}");
                    }
                    break;
                }
            }
        }
        lock(&connected.link).conn = None;
        conn.end();
    }
}
