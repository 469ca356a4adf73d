//! The proxied home kernel: started in the background when pxkernel starts,
//! restarted by the next cell after it dies, stopped with pxkernel.
//!
//! A request is forwarded with a fresh header of ours; a pump task reads
//! everything the home kernel sends and routes it: IOPub output is republished
//! at once under the frontend's request (its `busy`/`idle`/`execute_input` are
//! ours to send, so they are dropped), replies and `idle` go to the waiting
//! request, and `input_request`s are relayed to the frontend's stdin and the
//! answer back. A request completes when the home kernel has sent both its reply
//! and its `idle`, so every output is out before our reply and our `idle`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use pxkernel_kernel::client::{ClientReceiver, ClientSender, Event};
use pxkernel_kernel::kernelspec::{self, InterruptMode, LaunchOptions, RunningKernel};
use pxkernel_kernel::protocol::content::{ExecuteResult, KernelInfoReply};
use pxkernel_kernel::protocol::{Channel, Header, Message, to_raw};
use pxkernel_kernel::server::{InputError, Publisher, Request};
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch};

/// How long to wait for the home kernel's first answer.
const START_WAIT: Duration = Duration::from_secs(60);
/// After a reply, how long `idle` may keep us waiting with no other sign of life.
const IDLE_GRACE: Duration = Duration::from_secs(5);
/// After `idle`, how long a missing reply may keep us waiting.
const REPLY_GRACE: Duration = Duration::from_secs(2);
/// How many forwarded requests remember their frontend parent, for late output.
const RECENT_PARENTS: usize = 512;

/// Why a request could not be served by the home kernel.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum HomeError {
    /// It could not be started.
    #[error("the home kernel {name:?} could not start: {reason}")]
    Start {
        /// Kernelspec name.
        name: String,
        /// Why.
        reason: String,
    },
    /// It died while serving the request.
    #[error("the home kernel {name:?} died ({reason}); the next cell starts a fresh one")]
    Died {
        /// Kernelspec name.
        name: String,
        /// How it ended.
        reason: String,
    },
    /// pxkernel is shutting down.
    #[error("pxkernel is shutting down")]
    Stopped,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
    Failed(String),
    Died(String),
    Stopped,
}

enum RouteEvent {
    Reply(Message),
    Idle,
    Output,
    Input(Message),
    Died(String),
}

struct Route {
    parent: Header,
    count: Option<u32>,
    events: mpsc::UnboundedSender<RouteEvent>,
}

/// One running home kernel and what is in flight on it.
struct Connection {
    process: RunningKernel,
    sender: ClientSender,
    info: KernelInfoReply,
    routes: RefCell<HashMap<String, Route>>,
    recent: RefCell<Recent>,
}

impl Connection {
    fn is_ipython(&self) -> bool {
        self.info.implementation == "ipython"
    }
}

/// Home msg_id → frontend parent, bounded, oldest forgotten first.
#[derive(Default)]
struct Recent {
    map: HashMap<String, Header>,
    order: VecDeque<String>,
}

impl Recent {
    fn insert(&mut self, id: String, parent: Header) {
        if self.order.len() >= RECENT_PARENTS
            && let Some(old) = self.order.pop_front()
        {
            self.map.remove(&old);
        }
        self.order.push_back(id.clone());
        self.map.insert(id, parent);
    }
}

/// What a forwarded request needs besides its content.
pub struct Forward<'a> {
    /// The channel to send it on.
    pub channel: Channel,
    /// Its message type.
    pub msg_type: &'a str,
    /// Its content, as JSON text.
    pub content: Box<RawValue>,
    /// For store_history executions: our execution count, which the home's must match.
    pub count: Option<u32>,
    /// Whether the home kernel answers it with a reply.
    pub expects_reply: bool,
}

/// The home kernel, as pxkernel sees it.
pub struct Home {
    name: String,
    publisher: Publisher,
    phase: watch::Sender<Phase>,
    conn: RefCell<Option<Rc<Connection>>>,
    /// The execution count the home kernel will give its next stored cell.
    home_next_count: Cell<Option<u32>>,
}

impl Home {
    /// A home kernel of kernelspec `name`, starting now in the background.
    pub fn spawn(name: &str, publisher: Publisher) -> Rc<Home> {
        let home = Rc::new(Home {
            name: name.to_owned(),
            publisher,
            phase: watch::Sender::new(Phase::Starting),
            conn: RefCell::new(None),
            home_next_count: Cell::new(None),
        });
        let h = home.clone();
        tokio::task::spawn_local(async move { h.start().await });
        home
    }

    /// The kernelspec name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The home's kernel_info, once it has answered.
    pub fn kernel_info(&self) -> Option<KernelInfoReply> {
        self.conn.borrow().as_ref().map(|c| c.info.clone())
    }

    /// The pid of the running home kernel.
    pub fn pid(&self) -> Option<u32> {
        self.conn.borrow().as_ref().map(|c| c.process.pid())
    }

    async fn start(self: &Rc<Self>) {
        self.phase.send_replace(Phase::Starting);
        let opts = LaunchOptions {
            log_prefix: format!("home {}", self.name),
            wait: START_WAIT,
            ..LaunchOptions::default()
        };
        let started = match kernelspec::find(&self.name) {
            Ok(spec) => kernelspec::start(&spec, &opts)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if *self.phase.borrow() == Phase::Stopped {
            return;
        }
        match started {
            Ok(k) => {
                tracing::info!(home = %self.name, pid = k.process.pid(), "home kernel ready");
                let conn = Rc::new(Connection {
                    process: k.process,
                    sender: k.sender,
                    info: k.info,
                    routes: RefCell::new(HashMap::new()),
                    recent: RefCell::new(Recent::default()),
                });
                // A fresh IPython counts from 1.
                self.home_next_count.set(conn.is_ipython().then_some(1));
                *self.conn.borrow_mut() = Some(conn.clone());
                let h = self.clone();
                tokio::task::spawn_local(async move { h.pump(conn, k.receiver).await });
                self.phase.send_replace(Phase::Running);
            }
            Err(reason) => {
                tracing::warn!(home = %self.name, "home kernel failed to start: {reason}");
                self.phase.send_replace(Phase::Failed(reason));
            }
        }
    }

    /// The running home kernel, starting (or restarting) it when needed. A restart
    /// after a death is announced on the request's stderr.
    async fn ready(self: &Rc<Self>, req: &Request) -> Result<Rc<Connection>, HomeError> {
        let mut rx = self.phase.subscribe();
        let mut waited = false;
        loop {
            let phase = rx.borrow_and_update().clone();
            match phase {
                Phase::Running => {
                    if let Some(c) = self.conn.borrow().clone() {
                        return Ok(c);
                    }
                    self.phase.send_replace(Phase::Died("lost".to_owned()));
                }
                Phase::Starting => {
                    waited = true;
                    if rx.changed().await.is_err() {
                        return Err(HomeError::Stopped);
                    }
                }
                // A start this request waited for failed: report it; the next request retries.
                Phase::Failed(reason) if waited => {
                    return Err(HomeError::Start {
                        name: self.name.clone(),
                        reason,
                    });
                }
                Phase::Failed(_) => {
                    waited = true;
                    self.start().await;
                }
                Phase::Died(reason) => {
                    self.start().await;
                    if *self.phase.borrow() == Phase::Running {
                        req.stream(
                            "stderr",
                            &format!(
                                "pxkernel: the home kernel {} had died ({reason}); started a fresh \
                                 one, earlier variables are gone.\n",
                                self.name
                            ),
                        );
                    }
                    waited = true;
                }
                Phase::Stopped => return Err(HomeError::Stopped),
            }
        }
    }

    /// Forward a request to the home kernel and relay everything it causes.
    /// Returns the home's reply (None when none was expected or it never came).
    pub async fn forward(
        self: &Rc<Self>,
        req: &Request,
        fwd: Forward<'_>,
    ) -> Result<Option<Message>, HomeError> {
        let conn = self.ready(req).await?;
        if let Some(n) = fwd.count
            && conn.is_ipython()
            && self.home_next_count.get() != Some(n)
        {
            let sync = json!({
                "code": format!("get_ipython().execution_count = {n}"),
                "silent": true, "store_history": false, "allow_stdin": false,
                "stop_on_error": false, "user_expressions": {},
            });
            let sync = Forward {
                channel: Channel::Shell,
                msg_type: "execute_request",
                content: to_raw(&sync),
                count: None,
                expects_reply: true,
            };
            self.exchange(&conn, req, sync, Vec::new()).await?;
            self.home_next_count.set(Some(n));
        }
        let counted = fwd.count.is_some();
        let reply = self
            .exchange(&conn, req, fwd, req.message.buffers.clone())
            .await?;
        if counted && let Some(r) = &reply {
            let home_count = r
                .content_map()
                .get("execution_count")
                .and_then(serde_json::Value::as_u64)
                .map(|c| c as u32 + 1);
            self.home_next_count
                .set(home_count.filter(|_| conn.is_ipython()));
        }
        Ok(reply)
    }

    async fn exchange(
        &self,
        conn: &Rc<Connection>,
        req: &Request,
        fwd: Forward<'_>,
        buffers: Vec<Vec<u8>>,
    ) -> Result<Option<Message>, HomeError> {
        let mut msg = conn
            .sender
            .session()
            .message_raw(fwd.msg_type, fwd.content, None);
        msg.metadata = req.message.metadata.clone();
        msg.buffers = buffers;
        let id = msg.header.msg_id.clone();
        let (tx, mut rx) = mpsc::unbounded_channel();
        conn.routes.borrow_mut().insert(
            id.clone(),
            Route {
                parent: req.header().clone(),
                count: fwd.count,
                events: tx,
            },
        );
        conn.recent
            .borrow_mut()
            .insert(id.clone(), req.header().clone());
        let _unroute = Unroute { conn, id: &id };
        if let Some(status) = conn.process.exit_status() {
            return Err(self.died(status));
        }
        conn.sender.send_message(fwd.channel, &msg);

        let mut reply: Option<Message> = None;
        let mut idle = false;
        let mut input: Option<(Header, PendingInput<'_>)> = None;
        loop {
            let done_waiting = idle && (reply.is_some() || !fwd.expects_reply);
            if done_waiting {
                break;
            }
            // Past the essential message, a missing `idle` or reply must not hang the cell.
            let grace = if idle {
                Some(REPLY_GRACE)
            } else if reply.is_some() || !fwd.expects_reply {
                Some(IDLE_GRACE)
            } else {
                None
            };
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(RouteEvent::Reply(m)) => reply = Some(m),
                    Some(RouteEvent::Idle) => idle = true,
                    Some(RouteEvent::Output) => {}
                    Some(RouteEvent::Input(m)) => {
                        let content = m.content.clone();
                        input = Some((m.header, Box::pin(async move { req.input_raw(&content).await })));
                    }
                    Some(RouteEvent::Died(status)) => return Err(self.died(status)),
                    None => return Err(HomeError::Stopped),
                },
                answer = async { input.as_mut().map(|(_, f)| f.as_mut()).expect("guarded").await }, if input.is_some() => {
                    let (parent, _) = input.take().expect("guarded");
                    let content = match answer {
                        Ok(m) => m.content,
                        // The frontend cannot answer: give the kernel an empty line rather than a hang.
                        Err(_) => to_raw(&json!({"value": ""})),
                    };
                    let msg = conn.sender.session().message_raw("input_reply", content, Some(&parent));
                    conn.sender.send_message(Channel::Stdin, &msg);
                }
                () = tokio::time::sleep(grace.unwrap_or(Duration::MAX)), if grace.is_some() => {
                    tracing::warn!(msg_type = fwd.msg_type, reply = reply.is_some(), idle,
                        "home kernel went quiet without completing a request; moving on");
                    break;
                }
            }
        }
        Ok(reply)
    }

    fn died(&self, status: String) -> HomeError {
        HomeError::Died {
            name: self.name.clone(),
            reason: status,
        }
    }

    /// Reads everything the home kernel sends, for as long as it lives.
    async fn pump(self: Rc<Self>, conn: Rc<Connection>, mut receiver: ClientReceiver) {
        let status = loop {
            tokio::select! {
                ev = receiver.recv() => match ev {
                    Some(Event::Message(channel, msg)) => self.route(&conn, channel, msg),
                    Some(Event::HeartbeatLost) => tracing::warn!(home = %self.name, "home kernel heartbeat lost"),
                    Some(Event::HeartbeatRestored) => tracing::info!(home = %self.name, "home kernel heartbeat back"),
                    None => break "connection closed".to_owned(),
                },
                status = conn.process.exited() => break status,
            }
        };
        tracing::warn!(home = %self.name, %status, "home kernel ended");
        let still_current = self
            .conn
            .borrow()
            .as_ref()
            .is_some_and(|c| Rc::ptr_eq(c, &conn));
        if still_current {
            *self.conn.borrow_mut() = None;
            if *self.phase.borrow() != Phase::Stopped {
                self.phase.send_replace(Phase::Died(status.clone()));
            }
        }
        for route in conn.routes.borrow().values() {
            let _ = route.events.send(RouteEvent::Died(status.clone()));
        }
    }

    fn route(&self, conn: &Connection, channel: Channel, mut msg: Message) {
        let routes = conn.routes.borrow();
        let route = msg.parent_id().and_then(|p| routes.get(p));
        let notify = |ev: RouteEvent| {
            if let Some(r) = route {
                let _ = r.events.send(ev);
            }
        };
        match channel {
            Channel::Iopub => {
                match msg.msg_type() {
                    "status" => {
                        if msg.content.get().contains("\"idle\"") {
                            notify(RouteEvent::Idle);
                        }
                        return;
                    }
                    // The server publishes its own execute_input; welcomes are per connection.
                    "execute_input" | "iopub_welcome" => return,
                    "execute_result" => {
                        if let Some(count) = route.and_then(|r| r.count)
                            && let Ok(mut result) = msg.parse_content::<ExecuteResult>()
                        {
                            result.execution_count = count;
                            msg.content = to_raw(&result);
                        }
                    }
                    _ => {}
                }
                let parent = match route {
                    Some(r) => Some(r.parent.clone()),
                    None => msg
                        .parent_id()
                        .and_then(|p| conn.recent.borrow().map.get(p).cloned()),
                };
                notify(RouteEvent::Output);
                match parent {
                    Some(p) => self.publisher.relay(msg, Some(&p)),
                    None => {
                        let original = msg.parent_header.clone();
                        self.publisher.relay(msg, original.as_ref());
                    }
                }
            }
            Channel::Stdin => {
                if msg.msg_type() == "input_request" && route.is_some() {
                    notify(RouteEvent::Input(msg));
                } else {
                    tracing::warn!(
                        msg_type = msg.msg_type(),
                        "unexpected stdin message from the home kernel"
                    );
                }
            }
            Channel::Shell | Channel::Control => notify(RouteEvent::Reply(msg)),
            Channel::Heartbeat => {}
        }
    }

    /// Interrupt the running home kernel the way its kernelspec asks.
    pub async fn interrupt(&self) {
        let Some(conn) = self.conn.borrow().clone() else {
            return;
        };
        match conn.process.interrupt_mode {
            InterruptMode::Signal => {
                conn.process.interrupt_signal();
            }
            InterruptMode::Message => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let h = conn
                    .sender
                    .send(Channel::Control, "interrupt_request", &json!({}), None);
                conn.routes.borrow_mut().insert(
                    h.msg_id.clone(),
                    Route {
                        parent: h.clone(),
                        count: None,
                        events: tx,
                    },
                );
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Some(ev) = rx.recv().await {
                        if matches!(ev, RouteEvent::Reply(_) | RouteEvent::Died(_)) {
                            break;
                        }
                    }
                })
                .await;
                conn.routes.borrow_mut().remove(&h.msg_id);
            }
        }
    }

    /// Stop the home kernel: a polite shutdown_request, then its process group.
    pub async fn shutdown(&self) {
        self.phase.send_replace(Phase::Stopped);
        let conn = self.conn.borrow_mut().take();
        if let Some(conn) = conn {
            conn.sender.send(
                Channel::Control,
                "shutdown_request",
                &json!({"restart": false}),
                None,
            );
            let _ = tokio::time::timeout(Duration::from_millis(1500), conn.process.exited()).await;
            conn.process.terminate(Duration::from_secs(2)).await;
        }
    }
}

/// The frontend's answer to a relayed input_request, still to come.
type PendingInput<'a> = Pin<Box<dyn Future<Output = Result<Message, InputError>> + 'a>>;

/// Forgets a route when its request is done (or dropped by an interrupt).
struct Unroute<'a> {
    conn: &'a Connection,
    id: &'a str,
}

impl Drop for Unroute<'_> {
    fn drop(&mut self) {
        self.conn.routes.borrow_mut().remove(self.id);
    }
}
