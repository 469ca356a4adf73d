//! The client side: one connection to another kernel from its connection info —
//! DEALER shell/control/stdin sharing one identity, a SUB iopub, and a heartbeat
//! monitor — using the same wire code as the server.
//!
//! [`connect`] returns only once IOPub is known to be subscribed (an
//! `iopub_welcome`, or for pre-5.5 kernels any IOPub message caused by our
//! `kernel_info_request`), so no output of the first request can be missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};

use crate::protocol::content::KernelInfoReply;
use crate::protocol::{Channel, ConnectionInfo, Header, Message, Session};
use crate::transport::{self, Curve, Inbox, Kind, Options, Outbox, Side, TransportError};
use crate::wire::{Codec, WireError};

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Signature settings refused.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A socket failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The connection file's CurveZMQ key was refused.
    #[error(transparent)]
    Curve(#[from] crate::transport::zmtp::ZmtpError),
    /// The kernel did not answer in time.
    #[error("no {what} from the kernel within {after:?}")]
    Timeout {
        /// What we waited for.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// The connection was closed.
    #[error("the connection to the kernel is closed")]
    Closed,
}

/// What a connection delivers.
// Nearly every event is a message: boxing it would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// A message on a channel.
    Message(Channel, Message),
    /// The heartbeat went unanswered (the kernel is dead or frozen).
    HeartbeatLost,
    /// The heartbeat answers again after being lost.
    HeartbeatRestored,
}

/// Sends requests to a kernel. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ClientSender {
    session: Arc<Session>,
    codec: Arc<Codec>,
    shell: Outbox,
    control: Outbox,
    stdin: Outbox,
    /// When the heartbeat last answered.
    last_beat: Arc<BeatClock>,
}

/// When a heartbeat last answered, on the monotonic clock (as uptimes are
/// measured): a wall clock that jumps must not age it.
#[derive(Debug)]
struct BeatClock {
    origin: std::time::Instant,
    /// Microseconds from `origin` to the last answer, plus one (0: never).
    last: AtomicU64,
}

impl BeatClock {
    fn new() -> BeatClock {
        BeatClock {
            origin: std::time::Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn answered(&self) {
        let micros = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        self.last.store(micros + 1, Ordering::Relaxed);
    }

    fn age(&self) -> Option<Duration> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            t => Some(
                self.origin
                    .elapsed()
                    .saturating_sub(Duration::from_micros(t - 1)),
            ),
        }
    }
}

impl ClientSender {
    /// Our session with the kernel.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Time since the heartbeat last answered (None when never, or not monitored).
    pub fn heartbeat_age(&self) -> Option<Duration> {
        self.last_beat.age()
    }

    /// Build and send a message; returns its header.
    pub fn send<T: Serialize + ?Sized>(
        &self,
        channel: Channel,
        msg_type: &str,
        content: &T,
        parent: Option<&Arc<Header>>,
    ) -> Arc<Header> {
        let msg = self.session.message(msg_type, content, parent);
        let header = msg.header.clone();
        self.send_message(channel, &msg);
        header
    }

    /// Send a message built elsewhere (e.g. relayed content with our header).
    pub fn send_message(&self, channel: Channel, msg: &Message) -> bool {
        let outbox = match channel {
            Channel::Control => &self.control,
            Channel::Stdin => &self.stdin,
            _ => &self.shell,
        };
        self.codec
            .encode_with::<&[u8], _>(&[], msg, |frames| outbox.send_parts(frames))
    }
}

/// Receives everything a kernel sends us.
pub struct ClientReceiver {
    codec: Arc<Codec>,
    shell: Inbox,
    control: Inbox,
    stdin: Inbox,
    iopub: Inbox,
    heartbeat: mpsc::Receiver<Event>,
    // Dropping the SUB socket's outbox closes it: it lives as long as the receiver.
    _iopub_out: Outbox,
}

impl ClientReceiver {
    /// The next event; `None` when every socket has closed.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            let (channel, frames) = tokio::select! {
                biased;
                Some(f) = self.iopub.recv() => (Channel::Iopub, f),
                Some(f) = self.shell.recv() => (Channel::Shell, f),
                Some(f) = self.stdin.recv() => (Channel::Stdin, f),
                Some(f) = self.control.recv() => (Channel::Control, f),
                Some(ev) = self.heartbeat.recv() => return Some(ev),
                else => return None,
            };
            match self.codec.decode(frames) {
                Ok((_, msg)) => return Some(Event::Message(channel, msg)),
                Err(e) => tracing::warn!(
                    channel = channel.name(),
                    "dropped a message from a kernel: {e}"
                ),
            }
        }
    }
}

/// How often the heartbeat is sent, and how many missed echoes mean "lost".
#[derive(Clone, Copy, Debug)]
pub struct HeartbeatPolicy {
    /// Time between pings (each ping waits this long for its echo).
    pub period: Duration,
    /// Consecutive misses before [`Event::HeartbeatLost`].
    pub misses: u32,
}

impl Default for HeartbeatPolicy {
    fn default() -> Self {
        HeartbeatPolicy {
            period: Duration::from_millis(1000),
            misses: 2,
        }
    }
}

/// Connect to a kernel and wait until it answers `kernel_info` with IOPub subscribed.
pub async fn connect(
    info: &ConnectionInfo,
    username: &str,
    wait: Duration,
    heartbeat: Option<HeartbeatPolicy>,
) -> Result<(ClientSender, ClientReceiver, KernelInfoReply), ClientError> {
    let codec = Arc::new(Codec::new(&info.signature_scheme, info.key.as_bytes())?);
    let session = Arc::new(Session::new(username));
    // A kernel with CurveZMQ keys is reached as its CURVE client on every port.
    let plain = Options {
        curve: match &info.curve_publickey {
            Some(public) => Some(Curve::Client(transport::curve::public_key_from_z85(
                public,
            )?)),
            None => None,
        },
        ..Options::default()
    };
    let dealer = Options {
        identity: Some(session.id().as_bytes().to_vec()),
        ..plain.clone()
    };
    let open = |kind, channel, opts: &Options| {
        transport::open(kind, Side::Connect, &info.endpoint(channel), opts)
    };
    let (shell, shell_in) = open(Kind::Dealer, Channel::Shell, &dealer)?;
    let (control, control_in) = open(Kind::Dealer, Channel::Control, &dealer)?;
    let (stdin, stdin_in) = open(Kind::Dealer, Channel::Stdin, &dealer)?;
    let (iopub_out, iopub_in) = open(Kind::Sub, Channel::Iopub, &plain)?;
    let (hb_tx, hb_rx) = mpsc::channel(4);
    let last_beat = Arc::new(BeatClock::new());
    if let Some(policy) = heartbeat {
        let (hb_out, hb_in) = open(Kind::Dealer, Channel::Heartbeat, &plain)?;
        transport::spawn(monitor_heartbeat(
            hb_out,
            hb_in,
            hb_tx,
            policy,
            last_beat.clone(),
        ));
    }
    let sender = ClientSender {
        session,
        codec: codec.clone(),
        shell,
        control,
        stdin,
        last_beat,
    };
    let mut receiver = ClientReceiver {
        codec,
        shell: shell_in,
        control: control_in,
        stdin: stdin_in,
        iopub: iopub_in,
        heartbeat: hb_rx,
        _iopub_out: iopub_out,
    };
    let kernel_info = handshake(&sender, &mut receiver, wait).await?;
    Ok((sender, receiver, kernel_info))
}

async fn handshake(
    sender: &ClientSender,
    receiver: &mut ClientReceiver,
    wait: Duration,
) -> Result<KernelInfoReply, ClientError> {
    let deadline = Instant::now() + wait;
    let mut iopub_ready = false;
    let mut info: Option<KernelInfoReply> = None;
    let mut asked: Vec<String> = Vec::new();
    loop {
        if info.is_none() || !iopub_ready {
            // Ask again: until IOPub is subscribed, the status of earlier asks is lost.
            let h = sender.send(Channel::Shell, "kernel_info_request", &json!({}), None);
            asked.push(h.msg_id.clone());
        }
        let round = Instant::now() + Duration::from_millis(if iopub_ready { 2000 } else { 200 });
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::Timeout {
                    what: if info.is_none() {
                        "kernel_info_reply"
                    } else {
                        "IOPub message"
                    },
                    after: wait,
                });
            }
            let Ok(ev) = timeout(round.min(deadline) - now, receiver.recv()).await else {
                break;
            };
            match ev {
                None => return Err(ClientError::Closed),
                Some(Event::Message(Channel::Iopub, m)) => {
                    let ours = m.parent_id().is_some_and(|p| asked.iter().any(|a| a == p));
                    if m.msg_type() == "iopub_welcome" || ours {
                        iopub_ready = true;
                    }
                }
                Some(Event::Message(Channel::Shell, m))
                    if m.msg_type() == "kernel_info_reply"
                        && m.parent_id().is_some_and(|p| asked.iter().any(|a| a == p)) =>
                {
                    match m.parse_content::<KernelInfoReply>() {
                        Ok(reply) => info = Some(reply),
                        Err(e) => tracing::warn!("kernel_info_reply did not parse: {e}"),
                    }
                }
                Some(_) => {}
            }
            if iopub_ready && info.is_some() {
                return info.ok_or(ClientError::Closed);
            }
        }
    }
}

async fn monitor_heartbeat(
    out: Outbox,
    mut inbox: Inbox,
    events: mpsc::Sender<Event>,
    policy: HeartbeatPolicy,
    last_beat: Arc<BeatClock>,
) {
    let mut missed = 0u32;
    let mut lost = false;
    let mut seq: u64 = 0;
    // The first pings may go out before the kernel listens; give it a head start.
    sleep(policy.period).await;
    loop {
        if events.is_closed() {
            return;
        }
        seq += 1;
        let ping = seq.to_le_bytes().to_vec();
        // The empty frame makes this work against REP as well as ROUTER echoes.
        out.send(vec![Vec::new(), ping.clone()]);
        let started = Instant::now();
        let mut answered = false;
        while let Ok(Some(frames)) = timeout(
            policy.period.saturating_sub(started.elapsed()),
            inbox.recv(),
        )
        .await
        {
            if frames.last() == Some(&ping) {
                answered = true;
                break;
            }
        }
        if answered {
            last_beat.answered();
            missed = 0;
            if lost {
                lost = false;
                let _ = events.send(Event::HeartbeatRestored).await;
            }
            sleep(policy.period.saturating_sub(started.elapsed())).await;
        } else {
            missed += 1;
            if missed >= policy.misses && !lost {
                lost = true;
                let _ = events.send(Event::HeartbeatLost).await;
            }
        }
    }
}
