//! A connection to one kernel pxkernel drives (the home kernel or an engine):
//! a pump task reads everything the kernel sends and hands each message to the
//! request it belongs to (by parent msg_id), or to a fallback for messages of no
//! live request; it notices the kernel's death (process exit, lost heartbeat)
//! and tells every waiting request.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use pxkernel_kernel::client::{ClientReceiver, ClientSender, Event};
use pxkernel_kernel::kernelspec::{InterruptMode, RunningKernel};
use pxkernel_kernel::protocol::content::KernelInfoReply;
use pxkernel_kernel::protocol::{Channel, Message};
use serde_json::json;
use tokio::sync::{mpsc, watch};

/// How long a resync waits for its first probe's answer before it sends another.
const RESYNC_FIRST_INTERVAL: Duration = Duration::from_secs(2);
/// The longest wait between probes of a resync (a long cell holds them back).
const RESYNC_LONGEST_INTERVAL: Duration = Duration::from_secs(60);
/// How long a probe's `idle` may follow its reply.
const RESYNC_IDLE_WAIT: Duration = Duration::from_secs(2);
/// Answered probes whose `idle` a resync may miss before it settles without one
/// (the replies alone prove the earlier requests' replies are in).
const RESYNC_IDLE_MISSES: usize = 5;

/// What a resync has heard of one of its probes.
#[derive(Clone, Copy, Default)]
struct ProbeSeen {
    reply: bool,
    idle: bool,
}

/// What a request hears from its kernel.
// Nearly every event is a message: boxing it would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum LinkEvent {
    /// A message whose parent is the request.
    Message(Channel, Message),
    /// The kernel died; the request will get nothing more.
    Died(String),
    /// The connection to the kernel dropped and came back, and the request's
    /// reply or output was lost with it; the kernel lives on.
    Lost(String),
}

/// Receives the events of one request.
pub type Listener = Rc<dyn Fn(LinkEvent)>;

/// How a link reacts to a lost heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatLoss {
    /// Only log it (the process watch decides).
    Log,
    /// Treat the kernel as dead (engines: a frozen or unreachable kernel must not block cells).
    Dead,
}

/// A running kernel and the requests in flight on it.
pub struct Link {
    /// Sends to the kernel.
    pub sender: ClientSender,
    /// Its kernel_info_reply.
    pub info: KernelInfoReply,
    process: Option<RunningKernel>,
    interrupt_mode: InterruptMode,
    routes: RefCell<HashMap<String, Listener>>,
    dead: watch::Sender<Option<String>>,
    detached: tokio::sync::Notify,
    busy: Cell<bool>,
    /// Resyncs under way: shell requests wait for them in `deferred`.
    settling: Cell<u32>,
    deferred: RefCell<Vec<Message>>,
}

impl Link {
    /// Wrap a started kernel and start its pump. `unrouted` gets every message that
    /// belongs to no live request.
    pub fn new(
        sender: ClientSender,
        receiver: ClientReceiver,
        info: KernelInfoReply,
        process: Option<RunningKernel>,
        interrupt_mode: InterruptMode,
        heartbeat_loss: HeartbeatLoss,
        unrouted: impl Fn(Channel, Message) + 'static,
    ) -> Rc<Link> {
        let link = Rc::new(Link {
            sender,
            info,
            process,
            interrupt_mode,
            routes: RefCell::new(HashMap::new()),
            dead: watch::Sender::new(None),
            detached: tokio::sync::Notify::new(),
            busy: Cell::new(false),
            settling: Cell::new(0),
            deferred: RefCell::new(Vec::new()),
        });
        let l = link.clone();
        tokio::task::spawn_local(async move { l.pump(receiver, heartbeat_loss, unrouted).await });
        link
    }

    /// The process, when we started it.
    pub fn process(&self) -> Option<&RunningKernel> {
        self.process.as_ref()
    }

    /// Why it died, once it has.
    pub fn death(&self) -> Option<String> {
        self.dead.borrow().clone()
    }

    /// Resolves when the kernel has died, with why.
    pub async fn died(&self) -> String {
        let mut rx = self.dead.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return "connection closed".to_owned();
            }
        }
    }

    /// Whether its last status was busy.
    pub fn is_busy(&self) -> bool {
        self.busy.get()
    }

    /// Time since the heartbeat last answered (None when it never has).
    pub fn heartbeat_age(&self) -> Option<Duration> {
        self.sender.heartbeat_age()
    }

    /// Send a request and route everything it causes to `listener` until the
    /// returned guard is dropped. Returns the guard and the request's msg_id.
    /// While a [`resync`](Link::resync) settles, a shell request waits for it:
    /// its output would be lost if it ran before IOPub has subscribed again.
    pub fn request(
        self: &Rc<Self>,
        channel: Channel,
        msg: Message,
        listener: Listener,
    ) -> Result<RouteGuard, String> {
        let defer = channel == Channel::Shell && self.settling.get() > 0;
        self.route_and_send(channel, msg, listener, defer)
    }

    fn route_and_send(
        self: &Rc<Self>,
        channel: Channel,
        mut msg: Message,
        listener: Listener,
        defer: bool,
    ) -> Result<RouteGuard, String> {
        if let Some(reason) = self.death() {
            return Err(reason);
        }
        if msg.header.session.is_empty() {
            std::sync::Arc::make_mut(&mut msg.header).session =
                self.sender.session().id().to_owned();
        }
        let id = msg.header.msg_id.clone();
        self.routes.borrow_mut().insert(id.clone(), listener);
        if defer {
            tracing::debug!(kernel = %self.info.implementation, msg_id = %id, "shell request held until the connection settles");
            self.deferred.borrow_mut().push(msg);
        } else {
            self.sender.send_message(channel, &msg);
        }
        Ok(RouteGuard {
            link: self.clone(),
            id,
        })
    }

    /// Send a request whose outcome nobody waits for; its route is forgotten once
    /// its reply and its `idle` have come (or the kernel died).
    pub fn send_detached(self: &Rc<Self>, channel: Channel, msg: Message) {
        let id = msg.header.msg_id.clone();
        let link = Rc::downgrade(self);
        let seen = Cell::new((false, false));
        let route_id = id.clone();
        let listener: Listener = Rc::new(move |ev| {
            let (mut reply, mut idle) = seen.get();
            match ev {
                LinkEvent::Message(Channel::Iopub, m) => {
                    idle |= m.msg_type() == "status" && m.content.get().contains("\"idle\"");
                }
                LinkEvent::Message(_, _) => reply = true,
                LinkEvent::Died(_) | LinkEvent::Lost(_) => (reply, idle) = (true, true),
            }
            seen.set((reply, idle));
            if reply
                && idle
                && let Some(l) = link.upgrade()
            {
                l.routes.borrow_mut().remove(&route_id);
            }
        });
        if self.death().is_none() {
            self.routes.borrow_mut().insert(id, listener);
            self.sender.send_message(channel, &msg);
        }
    }

    /// After the connection to the kernel dropped and came back: tell the requests
    /// then in flight whose reply or `idle` was lost with it ([`LinkEvent::Lost`]).
    /// A kernel handles its shell requests in order and publishes in order, so once
    /// a `kernel_info_request` sent now has its reply and its `idle`, whatever its
    /// earlier requests caused has arrived or never will. A request still running
    /// holds the probe back until it ends, and then its reply comes first.
    ///
    /// A probe can itself be lost: one sent before the socket saw its old
    /// connection end goes nowhere, and its `idle` can be missed while IOPub
    /// subscribes again. So probes are sent again, at growing intervals while none
    /// is answered (a long cell holds them all back, and they queue harmlessly
    /// behind it), and every probe's route is kept: the first to have both its
    /// reply and its `idle` settles the resync. Its `idle` also proves IOPub has
    /// subscribed again, so shell requests made meanwhile wait until then.
    pub fn resync(self: &Rc<Self>, reason: String) {
        // In flight: sent before the drop. Requests held meanwhile were never sent.
        let waiting: Vec<String> = {
            let held = self.deferred.borrow();
            self.routes
                .borrow()
                .keys()
                .filter(|id| !held.iter().any(|m| &m.header.msg_id == *id))
                .cloned()
                .collect()
        };
        let link = Rc::downgrade(self);
        let settled = self.hold_shell();
        tokio::task::spawn_local(async move {
            let _settled = settled;
            let (tx, mut events) = mpsc::unbounded_channel::<(usize, LinkEvent)>();
            let mut probes = Vec::new();
            let mut seen: Vec<ProbeSeen> = Vec::new();
            let mut interval = RESYNC_FIRST_INTERVAL;
            let mut idle_misses = 0;
            'probing: loop {
                let Some(l) = link.upgrade() else { return };
                let index = probes.len();
                let tx = tx.clone();
                let listener: Listener = Rc::new(move |ev| {
                    let _ = tx.send((index, ev));
                });
                let probe = l.message("kernel_info_request", &json!({}));
                let Ok(route) = l.route_and_send(Channel::Shell, probe, listener, false) else {
                    return;
                };
                drop(l);
                probes.push(route);
                seen.push(ProbeSeen::default());
                let mut deadline = tokio::time::Instant::now() + interval;
                loop {
                    let (index, ev) = match tokio::time::timeout_at(deadline, events.recv()).await {
                        Ok(Some(got)) => got,
                        Ok(None) => return,
                        Err(_) => break,
                    };
                    match ev {
                        LinkEvent::Message(Channel::Shell, _) => {
                            seen[index].reply = true;
                            // Shell answers in order: the cells before it are over,
                            // and only the probe's `idle` is still to come.
                            deadline = deadline.min(tokio::time::Instant::now() + RESYNC_IDLE_WAIT);
                        }
                        LinkEvent::Message(Channel::Iopub, m)
                            if m.msg_type() == "status" && m.content.get().contains("\"idle\"") =>
                        {
                            seen[index].idle = true;
                        }
                        LinkEvent::Message(..) => {}
                        // Dead: every request heard it. Lost: a later resync
                        // settled this probe, and with it the requests before it.
                        LinkEvent::Died(_) | LinkEvent::Lost(_) => return,
                    }
                    if seen[index].reply && seen[index].idle {
                        break 'probing;
                    }
                }
                tracing::debug!(
                    probes = probes.len(),
                    replied = seen.iter().any(|s| s.reply),
                    "resync probe unanswered"
                );
                if seen.iter().any(|s| s.reply) {
                    idle_misses += 1;
                    if idle_misses >= RESYNC_IDLE_MISSES {
                        break;
                    }
                    interval = RESYNC_FIRST_INTERVAL;
                } else {
                    interval = (interval * 2).min(RESYNC_LONGEST_INTERVAL);
                }
            }
            drop(probes);
            let Some(l) = link.upgrade() else { return };
            let lost: Vec<Listener> = {
                let routes = l.routes.borrow();
                waiting
                    .iter()
                    .filter_map(|id| routes.get(id).cloned())
                    .collect()
            };
            for listener in lost {
                listener(LinkEvent::Lost(reason.clone()));
            }
        });
    }

    /// Hold shell requests back until the returned guard is dropped: while the
    /// connection is down, so that none runs before IOPub has subscribed again
    /// (its output would be lost); a [`resync`](Link::resync) takes over.
    pub fn hold_shell(self: &Rc<Self>) -> ShellHold {
        self.settling.set(self.settling.get() + 1);
        ShellHold(Rc::downgrade(self))
    }

    /// Build a message of our session (to pass to [`Link::request`]).
    pub fn message<T: serde::Serialize + ?Sized>(&self, msg_type: &str, content: &T) -> Message {
        self.sender.session().message(msg_type, content, None)
    }

    /// Interrupt the kernel the way its kernelspec asks (a message, or SIGINT).
    pub fn interrupt(self: &Rc<Self>) {
        match (self.interrupt_mode, &self.process) {
            (InterruptMode::Signal, Some(p)) => {
                p.interrupt_signal();
            }
            // Connected kernels we did not start can only be asked.
            _ => {
                self.sender
                    .send(Channel::Control, "interrupt_request", &json!({}), None);
            }
        }
    }

    /// Ask the kernel to shut down, then stop its process group.
    pub async fn shutdown(&self, grace: Duration) {
        self.sender.send(
            Channel::Control,
            "shutdown_request",
            &json!({"restart": false}),
            None,
        );
        if let Some(p) = &self.process {
            let _ = tokio::time::timeout(grace, p.exited()).await;
            p.terminate(Duration::from_secs(2)).await;
        }
    }

    fn declare_dead(&self, reason: String) {
        if self.dead.borrow().is_some() {
            return;
        }
        self.dead.send_replace(Some(reason.clone()));
        let listeners: Vec<Listener> = self.routes.borrow().values().cloned().collect();
        for l in listeners {
            l(LinkEvent::Died(reason.clone()));
        }
    }

    async fn pump(
        self: Rc<Self>,
        mut receiver: ClientReceiver,
        heartbeat_loss: HeartbeatLoss,
        unrouted: impl Fn(Channel, Message),
    ) {
        let exited = async {
            match &self.process {
                Some(p) => p.exited().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(exited);
        let reason = loop {
            tokio::select! {
                ev = receiver.recv() => match ev {
                    Some(Event::Message(channel, msg)) => self.dispatch(channel, msg, &unrouted),
                    Some(Event::HeartbeatLost) => {
                        tracing::warn!(kernel = %self.info.implementation, "heartbeat lost");
                        if heartbeat_loss == HeartbeatLoss::Dead {
                            break "heartbeat lost".to_owned();
                        }
                    }
                    Some(Event::HeartbeatRestored) => {}
                    None => break "connection closed".to_owned(),
                },
                status = &mut exited => break status,
                () = self.detached.notified() => break "detached".to_owned(),
            }
        };
        self.busy.set(false);
        self.declare_dead(reason);
        // A frozen kernel of ours is not left behind once we gave up on it.
        if let Some(p) = &self.process
            && p.exit_status().is_none()
        {
            p.terminate(Duration::from_secs(1)).await;
        }
    }

    /// The kernel is gone, as its launcher found out (an engine's process on a
    /// remote host ended, its host lost for too long): every waiting request is
    /// told, and the link stops.
    pub fn gone(&self, reason: String) {
        self.declare_dead(reason);
        self.detached.notify_one();
    }

    /// Forget the kernel without stopping it (it was not ours to start).
    pub fn detach(&self) {
        self.declare_dead("detached".to_owned());
        self.detached.notify_one();
    }

    fn dispatch(&self, channel: Channel, msg: Message, unrouted: &impl Fn(Channel, Message)) {
        let listener = msg
            .parent_id()
            .and_then(|p| self.routes.borrow().get(p).cloned());
        // Busy/idle of our own requests only (not of the start-up handshake).
        if listener.is_some() && channel == Channel::Iopub && msg.msg_type() == "status" {
            self.busy.set(msg.content.get().contains("\"busy\""));
        }
        match listener {
            Some(l) => l(LinkEvent::Message(channel, msg)),
            None => unrouted(channel, msg),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The process (if ours) is killed by RunningKernel's own Drop.
        self.routes.borrow_mut().clear();
    }
}

/// Holds shell requests back while it lives ([`Link::hold_shell`]); the last
/// hold to go sends what waited, in order (or forgets it, when the kernel died
/// meanwhile).
pub struct ShellHold(std::rc::Weak<Link>);

impl Drop for ShellHold {
    fn drop(&mut self) {
        let Some(link) = self.0.upgrade() else { return };
        link.settling.set(link.settling.get().saturating_sub(1));
        if link.settling.get() > 0 {
            return;
        }
        let waiting = std::mem::take(&mut *link.deferred.borrow_mut());
        tracing::debug!(
            held = waiting.len(),
            dead = link.death().is_some(),
            "shell requests released"
        );
        if link.death().is_none() {
            for msg in &waiting {
                link.sender.send_message(Channel::Shell, msg);
            }
        }
    }
}

/// Keeps a request routed; dropping it forgets the route (late messages then
/// go to the link's fallback).
pub struct RouteGuard {
    link: Rc<Link>,
    id: String,
}

impl RouteGuard {
    /// The request's msg_id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.link.routes.borrow_mut().remove(&self.id);
    }
}

/// Collects a listener's events into a channel, for a request that waits in a loop.
pub fn channel_listener() -> (Listener, mpsc::UnboundedReceiver<LinkEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Rc::new(move |ev| {
            let _ = tx.send(ev);
        }),
        rx,
    )
}
