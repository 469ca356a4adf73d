//! The proxied home kernel: started in the background when pxkernel starts,
//! restarted by the next cell after it dies, stopped with pxkernel.
//!
//! A request is forwarded with a fresh header of ours over a [`Link`]; what the
//! home kernel sends for it comes back in order: IOPub output is republished at
//! once under the frontend's request (its `busy`/`idle`/`execute_input` are ours
//! to send, so they are dropped), and `input_request`s are relayed to the
//! frontend's stdin and the answer back. A request completes when the home
//! kernel has sent both its reply and its `idle`, so every output is out before
//! our reply and our `idle`. Output of no live request (a thread printing after
//! its cell ended) is relayed under the request that caused it.
//!
//! `execute` holds the execute_request path: [`Home::execute`], and the
//! execution count kept in step with the home's by [`Home::forward`].

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use pxkernel_kernel::client;
use pxkernel_kernel::kernelspec::{
    self, InterruptMode, KernelSpec, KernelspecError, LaunchOptions, Location, RunningKernel,
};
use pxkernel_kernel::protocol::content::{ExecuteResult, KernelInfoReply};
use pxkernel_kernel::protocol::{Channel, ConnectionInfo, Header, Message, to_raw};
use pxkernel_kernel::server::{InputError, Publisher, Request};
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::watch;

pub use crate::error::HomeError;
use crate::link::{HeartbeatLoss, Link, LinkEvent, channel_listener};

mod execute;

/// How long to wait for the home kernel's first answer.
const START_WAIT: Duration = Duration::from_secs(60);
/// After a reply, how long `idle` may keep us waiting with no other sign of life.
const IDLE_GRACE: Duration = Duration::from_secs(5);
/// After `idle`, how long a missing reply may keep us waiting.
const REPLY_GRACE: Duration = Duration::from_secs(2);
/// How many forwarded requests remember their frontend parent, for late output.
const RECENT_PARENTS: usize = 512;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
    Failed(String),
    Died(String),
    Stopped,
}

/// Home msg_id → frontend parent, bounded, oldest forgotten first.
#[derive(Default)]
struct Recent {
    map: HashMap<String, Arc<Header>>,
    order: VecDeque<String>,
}

impl Recent {
    fn insert(&mut self, id: String, parent: Arc<Header>) {
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
    /// Where it comes from.
    source: Source,
    /// Said once on the next request's stderr (a recorded home replaced).
    notice: RefCell<Option<String>>,
    publisher: Publisher,
    phase: watch::Sender<Phase>,
    link: RefCell<Option<Rc<Link>>>,
    recent: Rc<RefCell<Recent>>,
    /// The execution count the home kernel will give its next stored cell.
    home_next_count: Cell<Option<u32>>,
    /// Helpers installed in the current home kernel (by key), with that kernel's link.
    installed: RefCell<Vec<(&'static str, usize)>>,
}

/// Where the home kernel comes from.
enum Source {
    /// Started by us from its kernelspec (the one `pxkernel install` recorded,
    /// while it is there), and started again after it died.
    Spec(Option<Location>),
    /// A kernel that already runs, reached by its connection info.
    Running(ConnectionInfo),
}

/// Republish home output that belongs to no live request.
fn relay_unrouted(publisher: &Publisher, recent: &RefCell<Recent>, channel: Channel, msg: Message) {
    if channel != Channel::Iopub
        || matches!(msg.msg_type(), "status" | "execute_input" | "iopub_welcome")
    {
        return;
    }
    let parent = msg
        .parent_id()
        .and_then(|p| recent.borrow().map.get(p).cloned());
    let parent = parent.or_else(|| msg.parent_header.clone());
    publisher.relay(msg, parent.as_ref());
}

impl Home {
    /// A home kernel of kernelspec `name` (at `recorded` while that is there),
    /// starting now in the background.
    pub fn spawn(name: &str, recorded: Option<Location>, publisher: Publisher) -> Rc<Home> {
        Home::new(name, Source::Spec(recorded), publisher)
    }

    /// A home kernel that already runs, connecting now in the background: the
    /// router in front of a kernel started elsewhere (tests run one in process).
    pub fn attach(name: &str, info: ConnectionInfo, publisher: Publisher) -> Rc<Home> {
        Home::new(name, Source::Running(info), publisher)
    }

    fn new(name: &str, source: Source, publisher: Publisher) -> Rc<Home> {
        let home = Rc::new(Home {
            name: name.to_owned(),
            source,
            notice: RefCell::new(None),
            publisher,
            phase: watch::Sender::new(Phase::Starting),
            link: RefCell::new(None),
            recent: Rc::new(RefCell::new(Recent::default())),
            home_next_count: Cell::new(None),
            installed: RefCell::new(Vec::new()),
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
        self.link.borrow().as_ref().map(|l| l.info.clone())
    }

    /// The pid of the running home kernel.
    pub fn pid(&self) -> Option<u32> {
        self.link
            .borrow()
            .as_ref()
            .and_then(|l| l.process().map(|p| p.pid()))
    }

    async fn start(self: &Rc<Self>) {
        self.phase.send_replace(Phase::Starting);
        let opts = LaunchOptions {
            log_prefix: format!("home {}", self.name),
            wait: START_WAIT,
            ..LaunchOptions::default()
        };
        let started = match &self.source {
            Source::Spec(recorded) => match self.find_spec(recorded.as_ref()) {
                Ok(spec) => kernelspec::start(&spec, &opts)
                    .await
                    .map(|k| {
                        let mode = k.process.interrupt_mode;
                        (k.sender, k.receiver, k.info, Some(k.process), mode)
                    })
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Source::Running(info) => {
                client::connect(info, &opts.username, opts.wait, opts.heartbeat)
                    .await
                    // A kernel we did not start can only be interrupted by message.
                    .map(|(s, r, i)| (s, r, i, None, InterruptMode::Message))
                    .map_err(|e| e.to_string())
            }
        };
        if *self.phase.borrow() == Phase::Stopped {
            return;
        }
        match started {
            Ok((sender, receiver, info, process, interrupt_mode)) => {
                let pid = process.as_ref().map(RunningKernel::pid);
                tracing::info!(home = %self.name, ?pid, "home kernel ready");
                let is_ipython = info.implementation == "ipython";
                let (publisher, recent) = (self.publisher.clone(), self.recent.clone());
                let link = Link::new(
                    sender,
                    receiver,
                    info,
                    process,
                    interrupt_mode,
                    HeartbeatLoss::Log,
                    move |channel, msg| relay_unrouted(&publisher, &recent, channel, msg),
                );
                // A fresh IPython counts from 1.
                self.home_next_count.set(is_ipython.then_some(1));
                *self.link.borrow_mut() = Some(link.clone());
                self.phase.send_replace(Phase::Running);
                let h = self.clone();
                tokio::task::spawn_local(async move {
                    let reason = link.died().await;
                    if *h.phase.borrow() == Phase::Stopped {
                        tracing::info!(home = %h.name, %reason, "home kernel stopped");
                    } else {
                        tracing::warn!(home = %h.name, %reason, "home kernel ended");
                    }
                    let current = h
                        .link
                        .borrow()
                        .as_ref()
                        .is_some_and(|l| Rc::ptr_eq(l, &link));
                    if current {
                        *h.link.borrow_mut() = None;
                        if *h.phase.borrow() != Phase::Stopped {
                            h.phase.send_replace(Phase::Died(reason));
                        }
                    }
                });
            }
            Err(reason) => {
                tracing::warn!(home = %self.name, "home kernel failed to start: {reason}");
                self.phase.send_replace(Phase::Failed(reason));
            }
        }
    }

    /// The home's kernelspec: the one install recorded while it is there (pinned,
    /// so that engines "like the home" run it too), else found by name.
    fn find_spec(&self, recorded: Option<&Location>) -> Result<KernelSpec, KernelspecError> {
        let Some(recorded) = recorded else {
            return kernelspec::find(&self.name);
        };
        let (spec, notice) = kernelspec::find_recorded(&self.name, recorded)?;
        if let Some(notice) = notice {
            tracing::warn!("{notice}");
            *self.notice.borrow_mut() = Some(notice);
        }
        kernelspec::pin(spec.clone());
        Ok(spec)
    }

    /// The running home kernel, starting (or restarting) it when needed. A restart
    /// after a death is announced on the request's stderr.
    async fn ready(self: &Rc<Self>, req: &Request) -> Result<Rc<Link>, HomeError> {
        let mut rx = self.phase.subscribe();
        let mut waited = false;
        loop {
            let phase = rx.borrow_and_update().clone();
            match phase {
                Phase::Running => {
                    if let Some(l) = self.link.borrow().clone() {
                        if let Some(notice) = self.notice.borrow_mut().take() {
                            req.stream("stderr", &format!("pxkernel: {notice}\n"));
                        }
                        return Ok(l);
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

    async fn exchange(
        &self,
        link: &Rc<Link>,
        req: &Request,
        fwd: Forward<'_>,
        buffers: Vec<Vec<u8>>,
    ) -> Result<Option<Message>, HomeError> {
        let mut msg = link
            .sender
            .session()
            .message_raw(fwd.msg_type, fwd.content, None);
        msg.metadata = req.message.metadata.clone();
        msg.buffers = buffers;
        self.recent
            .borrow_mut()
            .insert(msg.header.msg_id.clone(), req.header().clone());
        let (listener, mut rx) = channel_listener();
        let _route = link
            .request(fwd.channel, msg, listener)
            .map_err(|reason| self.died(reason))?;

        let mut reply: Option<Message> = None;
        let mut idle = false;
        let mut input: Option<(Arc<Header>, PendingInput<'_>)> = None;
        loop {
            if idle && (reply.is_some() || !fwd.expects_reply) {
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
                    Some(LinkEvent::Message(Channel::Iopub, m)) => {
                        if self.relay_output(req, fwd.count, m) {
                            idle = true;
                        }
                    }
                    Some(LinkEvent::Message(Channel::Stdin, m)) => {
                        if m.msg_type() == "input_request" {
                            let content = m.content.clone();
                            input = Some((m.header, Box::pin(async move { req.input_raw(&content).await })));
                        }
                    }
                    Some(LinkEvent::Message(_, m)) => reply = Some(m),
                    Some(LinkEvent::Died(status) | LinkEvent::Lost(status)) => {
                    return Err(self.died(status));
                }
                    None => return Err(HomeError::Stopped),
                },
                answer = async { input.as_mut().map(|(_, f)| f.as_mut()).expect("guarded").await }, if input.is_some() => {
                    let (parent, _) = input.take().expect("guarded");
                    let content = match answer {
                        Ok(m) => m.content,
                        // The frontend cannot answer: give the kernel an empty line rather than a hang.
                        Err(_) => to_raw(&json!({"value": ""})),
                    };
                    let msg = link.sender.session().message_raw("input_reply", content, Some(&parent));
                    link.sender.send_message(Channel::Stdin, &msg);
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

    /// Republish one IOPub message of a live request; true when it was its `idle`.
    fn relay_output(&self, req: &Request, count: Option<u32>, mut msg: Message) -> bool {
        match msg.msg_type() {
            "status" => return msg.content.get().contains("\"idle\""),
            // The server publishes its own execute_input; welcomes are per connection.
            "execute_input" | "iopub_welcome" => return false,
            "execute_result" => {
                if let Some(count) = count
                    && let Ok(mut result) = msg.parse_content::<ExecuteResult>()
                {
                    result.execution_count = count;
                    msg.content = to_raw(&result);
                }
            }
            _ => {}
        }
        req.relay(msg);
        false
    }

    /// Whether the home kernel runs Python (IPython), which the helpers need.
    pub async fn is_python(self: &Rc<Self>, req: &Request) -> Result<bool, HomeError> {
        let link = self.ready(req).await?;
        Ok(link.info.language_info.name.eq_ignore_ascii_case("python"))
    }

    /// Run `code` once per home kernel (again after a restart), silently.
    pub async fn install(
        self: &Rc<Self>,
        req: &Request,
        key: &'static str,
        code: &str,
    ) -> Result<(), HomeError> {
        let link = self.ready(req).await?;
        let id = Rc::as_ptr(&link) as usize;
        if self.installed.borrow().contains(&(key, id)) {
            return Ok(());
        }
        let content = json!({"code": code, "silent": true, "store_history": false,
                             "allow_stdin": false, "stop_on_error": false, "user_expressions": {}});
        let fwd = Forward {
            channel: Channel::Shell,
            msg_type: "execute_request",
            content: to_raw(&content),
            count: None,
            expects_reply: true,
        };
        let reply = self.exchange(&link, req, fwd, Vec::new()).await?;
        let ok = reply.as_ref().is_some_and(|r| {
            r.content_map()
                .get("status")
                .and_then(serde_json::Value::as_str)
                == Some("ok")
        });
        if !ok {
            let why = reply
                .map(|r| {
                    let c = r.content_map();
                    format!(
                        "{}: {}",
                        c.get("ename")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("error"),
                        c.get("evalue")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("")
                    )
                })
                .unwrap_or_else(|| "no reply".to_owned());
            return Err(HomeError::Start {
                name: self.name.clone(),
                reason: format!("could not set up its {key} helper: {why}"),
            });
        }
        self.installed.borrow_mut().push((key, id));
        Ok(())
    }

    /// Open a comm to `target` in the home kernel with `data` and `buffers`, and
    /// return the data of the first message the target sends back.
    pub async fn comm_call(
        self: &Rc<Self>,
        req: &Request,
        target: &str,
        data: serde_json::Value,
        buffers: Vec<Vec<u8>>,
    ) -> Result<serde_json::Value, HomeError> {
        let link = self.ready(req).await?;
        let mut msg = link.message(
            "comm_open",
            &json!({"comm_id": pxkernel_kernel::protocol::new_uuid(), "target_name": target, "data": data}),
        );
        msg.buffers = buffers;
        let (listener, mut rx) = channel_listener();
        let _route = link
            .request(Channel::Shell, msg, listener)
            .map_err(|reason| self.died(reason))?;
        let mut answer: Option<serde_json::Value> = None;
        loop {
            match rx.recv().await {
                Some(LinkEvent::Message(Channel::Iopub, m)) => match m.msg_type() {
                    "comm_msg" => {
                        if answer.is_none() {
                            answer = m.content_map().remove("data");
                        }
                    }
                    "comm_close" | "comm_open" => {}
                    _ => {
                        if self.relay_output(req, None, m) {
                            break;
                        }
                    }
                },
                Some(LinkEvent::Message(..)) => {}
                Some(LinkEvent::Died(status) | LinkEvent::Lost(status)) => {
                    return Err(self.died(status));
                }
                None => return Err(HomeError::Stopped),
            }
        }
        answer.ok_or_else(|| HomeError::Start {
            name: self.name.clone(),
            reason: format!("its {target} helper did not answer"),
        })
    }

    fn died(&self, status: String) -> HomeError {
        HomeError::Died {
            name: self.name.clone(),
            reason: status,
        }
    }

    /// Interrupt the running home kernel the way its kernelspec asks.
    pub async fn interrupt(&self) {
        let link = self.link.borrow().clone();
        if let Some(link) = link {
            link.interrupt();
        }
    }

    /// Stop the home kernel: a polite shutdown_request, then its process group.
    pub async fn shutdown(&self) {
        self.phase.send_replace(Phase::Stopped);
        let link = self.link.borrow_mut().take();
        if let Some(link) = link {
            link.shutdown(Duration::from_millis(1500)).await;
        }
    }
}

/// The frontend's answer to a relayed input_request, still to come.
type PendingInput<'a> = Pin<Box<dyn Future<Output = Result<Message, InputError>> + 'a>>;
