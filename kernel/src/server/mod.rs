//! The kernel side of the protocol: binds shell, control, stdin (ROUTER), iopub
//! (XPUB) and heartbeat; keeps the rules every request obeys — `busy`, its
//! outputs, its reply, `idle` — the execution counter, `stop_on_error`, the
//! iopub_welcome on each subscription, and serving control while shell is busy.
//! What the kernel *does* is a [`Handler`]'s business.

mod handler;
pub mod parent;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::mpsc;

use handler::ServerIo;
pub use handler::{ExecuteOutcome, Handler, InputError, Publisher, Reply, Request};
pub use parent::ParentWatch;

use crate::protocol::content::{ExecuteRequest, Shutdown, reply_type};
use crate::protocol::{Channel, ConnectionInfo, Message, Session, to_raw};
use crate::transport::{self, Curve, Echo, Frames, Inbox, Kind, Options, Side, TransportError};
use crate::wire::{Codec, WireError};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The connection file's signature settings were refused.
    #[error("cannot start: {0}")]
    Wire(#[from] WireError),
    /// A socket could not be bound.
    #[error("cannot bind: {0}")]
    Transport(#[from] TransportError),
    /// The connection file's CurveZMQ keys were refused.
    #[error("cannot start: {0}")]
    Curve(#[from] transport::zmtp::ZmtpError),
}

/// How [`Server::run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// A `shutdown_request` was answered.
    Shutdown {
        /// The frontend will start a new kernel.
        restart: bool,
    },
    /// Every socket closed.
    Closed,
}

/// A bound kernel server, ready to [`run`](Server::run) a handler.
pub struct Server {
    io: Rc<ServerIo>,
    shell_in: Inbox,
    control_in: Inbox,
    stdin_in: Inbox,
    iopub_in: Inbox,
    _heartbeat: Echo,
}

impl Server {
    /// Bind every socket of `conn`.
    pub fn bind(conn: &ConnectionInfo) -> Result<Server, ServerError> {
        let codec = Arc::new(Codec::new(&conn.signature_scheme, conn.key.as_bytes())?);
        // With CurveZMQ keys (Jupyter's `transport_encryption`), every port serves CURVE.
        let keys = match &conn.curve_secretkey {
            Some(secret) => Some(Arc::new(transport::curve::server_keys(
                secret,
                conn.curve_publickey.as_deref(),
            )?)),
            None => None,
        };
        let none = Options {
            curve: keys.clone().map(Curve::Server),
            ..Options::default()
        };
        let (shell, shell_in) = transport::open(
            Kind::Router,
            Side::Bind,
            &conn.endpoint(Channel::Shell),
            &none,
        )?;
        let (control, control_in) = transport::open(
            Kind::Router,
            Side::Bind,
            &conn.endpoint(Channel::Control),
            &none,
        )?;
        let (stdin, stdin_in) = transport::open(
            Kind::Router,
            Side::Bind,
            &conn.endpoint(Channel::Stdin),
            &none,
        )?;
        // Output must not be dropped under bursts: a generous queue per subscriber.
        let iopub_opts = Options {
            queue: Some(100_000),
            ..none.clone()
        };
        let (iopub, iopub_in) = transport::open(
            Kind::XPub,
            Side::Bind,
            &conn.endpoint(Channel::Iopub),
            &iopub_opts,
        )?;
        let heartbeat = transport::spawn_echo(&conn.endpoint(Channel::Heartbeat), keys)?;
        let username = std::env::var("USER").unwrap_or_else(|_| "kernel".to_owned());
        let io = Rc::new(ServerIo {
            codec,
            session: Session::new(username),
            shell,
            control,
            stdin,
            iopub,
            stdin_waiters: RefCell::new(HashMap::new()),
        });
        Ok(Server {
            io,
            shell_in,
            control_in,
            stdin_in,
            iopub_in,
            _heartbeat: heartbeat,
        })
    }

    /// A publisher for output that belongs to no request.
    pub fn publisher(&self) -> Publisher {
        Publisher(self.io.clone())
    }

    /// Serve requests until a `shutdown_request` has been answered.
    pub async fn run<H: Handler>(self, handler: &H) -> Stopped {
        let Server {
            io,
            shell_in,
            control_in,
            stdin_in,
            iopub_in,
            _heartbeat,
        } = self;
        let state = Dispatch {
            io,
            handler,
            execution_count: Cell::new(0),
        };
        let stopped = tokio::select! {
            stopped = state.shell_loop(shell_in) => stopped,
            stopped = state.control_loop(control_in) => stopped,
            () = state.stdin_loop(stdin_in) => Stopped::Closed,
            () = state.iopub_loop(iopub_in) => Stopped::Closed,
        };
        // The shutdown_reply and the last status are only queued for the socket
        // tasks: hand them to libzmq before the caller can drop the runtime.
        let flushed = async {
            state.io.shell.flush().await;
            state.io.control.flush().await;
            state.io.iopub.flush().await;
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), flushed).await;
        stopped
    }
}

struct Dispatch<'h, H> {
    io: Rc<ServerIo>,
    handler: &'h H,
    execution_count: Cell<u32>,
}

/// A shell message waiting its turn; `aborting` when it arrived before an error
/// reply whose request asked `stop_on_error`.
struct Queued {
    frames: Frames,
    aborting: bool,
}

impl<H: Handler> Dispatch<'_, H> {
    fn decode(&self, channel: Channel, frames: Frames) -> Option<(Vec<Vec<u8>>, Message)> {
        match self.io.codec.decode(frames) {
            Ok(decoded) => Some(decoded),
            Err(e) => {
                tracing::warn!(channel = channel.name(), "dropped a message: {e}");
                None
            }
        }
    }

    fn status(&self, state: &str, parent: &Message) {
        Publisher(self.io.clone()).publish(
            "status",
            &StatusContent {
                execution_state: state,
            },
            Some(&parent.header),
        );
    }

    fn request(&self, channel: Channel, ids: Vec<Vec<u8>>, message: Message) -> Request {
        Request {
            channel,
            ids,
            message,
            execution_count: self.execution_count.get(),
            io: self.io.clone(),
        }
    }

    fn reply(&self, req: &Request, reply: Reply) {
        let mut msg =
            self.io
                .session
                .message_raw(&reply.msg_type, reply.content, Some(&req.message.header));
        msg.metadata = reply.metadata;
        msg.buffers = reply.buffers;
        self.io.send_on(req.channel, &req.ids, &msg);
    }

    async fn shell_loop(&self, mut inbox: Inbox) -> Stopped {
        let mut queue: VecDeque<Queued> = VecDeque::new();
        loop {
            let queued = match queue.pop_front() {
                Some(q) => q,
                None => match inbox.recv().await {
                    Some(frames) => Queued {
                        frames,
                        aborting: false,
                    },
                    None => return Stopped::Closed,
                },
            };
            let Some((ids, message)) = self.decode(Channel::Shell, queued.frames) else {
                continue;
            };
            let mut req = self.request(Channel::Shell, ids, message);
            self.status("busy", &req.message);
            let outcome = self.handle_shell(&mut req, queued.aborting).await;
            self.status("idle", &req.message);
            match outcome {
                ShellOutcome::Done => {}
                ShellOutcome::StopOnError => {
                    // Everything that has arrived by now was queued behind the error.
                    for q in queue.iter_mut() {
                        q.aborting = true;
                    }
                    while let Ok(frames) = inbox.try_recv() {
                        queue.push_back(Queued {
                            frames,
                            aborting: true,
                        });
                    }
                }
                ShellOutcome::Shutdown(restart) => return Stopped::Shutdown { restart },
            }
        }
    }

    async fn handle_shell(&self, req: &mut Request, aborting: bool) -> ShellOutcome {
        match req.msg_type() {
            "execute_request" => self.execute(req, aborting).await,
            "kernel_info_request" => {
                self.reply(
                    req,
                    Reply::new("kernel_info_reply", &self.handler.kernel_info()),
                );
                ShellOutcome::Done
            }
            "shutdown_request" => self.shutdown(req).await,
            _ => {
                if let Some(reply) = self.handler.shell(req).await {
                    self.reply(req, reply);
                }
                ShellOutcome::Done
            }
        }
    }

    async fn execute(&self, req: &mut Request, aborting: bool) -> ShellOutcome {
        let content: ExecuteRequest = match req.message.parse_content() {
            Ok(c) => c,
            Err(e) => {
                let evalue = e.to_string();
                req.error("BadRequest", &evalue, &[]);
                self.reply(
                    req,
                    Reply::new(
                        "execute_reply",
                        &json!({"status": "error", "ename": "BadRequest", "evalue": evalue,
                                "traceback": [], "execution_count": self.execution_count.get()}),
                    ),
                );
                return ShellOutcome::Done;
            }
        };
        if aborting {
            self.reply(
                req,
                Reply::new(
                    "execute_reply",
                    &json!({"status": "aborted", "execution_count": self.execution_count.get()}),
                ),
            );
            return ShellOutcome::Done;
        }
        if !content.silent && content.store_history {
            self.execution_count.set(self.execution_count.get() + 1);
        }
        let count = self.execution_count.get();
        req.execution_count = count;
        let req = &*req;
        if !content.silent {
            req.publish(
                "execute_input",
                &ExecuteInputContent {
                    code: &content.code,
                    execution_count: count,
                },
            );
        }
        let outcome = self.handler.execute(req, &content).await;
        let (body, failed) = match outcome {
            ExecuteOutcome::Ok {
                payload,
                user_expressions,
            } => (
                to_raw(&ExecuteOkContent {
                    status: "ok",
                    execution_count: count,
                    payload: &payload,
                    user_expressions: &user_expressions,
                }),
                false,
            ),
            ExecuteOutcome::Error {
                ename,
                evalue,
                traceback,
            } => (
                to_raw(
                    &json!({"status": "error", "execution_count": count, "ename": ename,
                       "evalue": evalue, "traceback": traceback}),
                ),
                true,
            ),
            ExecuteOutcome::Aborted => (
                to_raw(&json!({"status": "aborted", "execution_count": count})),
                false,
            ),
        };
        self.reply(req, Reply::raw("execute_reply", body));
        if failed && content.stop_on_error {
            ShellOutcome::StopOnError
        } else {
            ShellOutcome::Done
        }
    }

    async fn shutdown(&self, req: &Request) -> ShellOutcome {
        let restart = req
            .message
            .parse_content::<Shutdown>()
            .map(|s| s.restart)
            .unwrap_or(false);
        self.handler.shutdown(restart).await;
        self.reply(
            req,
            Reply::new(
                "shutdown_reply",
                &Shutdown {
                    restart,
                    status: Some("ok".to_owned()),
                },
            ),
        );
        ShellOutcome::Shutdown(restart)
    }

    async fn control_loop(&self, mut inbox: Inbox) -> Stopped {
        while let Some(frames) = inbox.recv().await {
            let Some((ids, message)) = self.decode(Channel::Control, frames) else {
                continue;
            };
            let req = self.request(Channel::Control, ids, message);
            self.status("busy", &req.message);
            let mut stopped = None;
            match req.msg_type() {
                "kernel_info_request" => {
                    self.reply(
                        &req,
                        Reply::new("kernel_info_reply", &self.handler.kernel_info()),
                    );
                }
                "interrupt_request" => {
                    self.handler.interrupt().await;
                    self.reply(
                        &req,
                        Reply::new("interrupt_reply", &json!({"status": "ok"})),
                    );
                }
                "shutdown_request" => {
                    if let ShellOutcome::Shutdown(restart) = self.shutdown(&req).await {
                        stopped = Some(Stopped::Shutdown { restart });
                    }
                }
                other => match self.handler.control(&req).await {
                    Some(reply) => self.reply(&req, reply),
                    None if other.ends_with("_request") => {
                        let t = reply_type(other);
                        self.reply(
                            &req,
                            Reply::new(
                                &t,
                                &json!({"status": "error", "ename": "UnsupportedRequest",
                                        "evalue": format!("{other} is not supported on control"),
                                        "traceback": []}),
                            ),
                        );
                    }
                    None => {}
                },
            }
            self.status("idle", &req.message);
            if let Some(s) = stopped {
                return s;
            }
        }
        Stopped::Closed
    }

    async fn stdin_loop(&self, mut inbox: Inbox) {
        while let Some(frames) = inbox.recv().await {
            let Some((_ids, message)) = self.decode(Channel::Stdin, frames) else {
                continue;
            };
            // Some clients (jupyter_client's `input()`) send the reply without a parent;
            // like ipykernel, give it to the pending request then. A reply naming
            // another request (a stale one, of an interrupted cell) answers nothing.
            let waiter = {
                let mut waiters = self.io.stdin_waiters.borrow_mut();
                let key = match message.parent_id() {
                    Some(id) => waiters.contains_key(id).then(|| id.to_owned()),
                    None => waiters.keys().next().cloned(),
                };
                key.and_then(|k| waiters.remove(&k))
            };
            match waiter {
                Some(tx) => {
                    let _ = tx.send(message);
                }
                None => tracing::warn!(
                    msg_type = message.msg_type(),
                    "stdin message answers no pending input_request; dropped"
                ),
            }
        }
    }

    /// Answers every subscription with an `iopub_welcome`. The one `starting`
    /// status follows the first welcome: published earlier, it could reach a
    /// subscriber that connected during start-up before its welcome.
    async fn iopub_loop(&self, mut inbox: mpsc::Receiver<Frames>) {
        let mut started = false;
        while let Some(frames) = inbox.recv().await {
            for frame in frames {
                // XPUB reports subscriptions as 0x01 + topic, unsubscriptions as 0x00 + topic.
                if frame.first() != Some(&1) {
                    continue;
                }
                let Ok(topic) = String::from_utf8(frame[1..].to_vec()) else {
                    continue;
                };
                let msg =
                    self.io
                        .session
                        .message("iopub_welcome", &json!({"subscription": topic}), None);
                let ids = if topic.is_empty() {
                    Vec::new()
                } else {
                    vec![topic.into_bytes()]
                };
                self.io.iopub.send(self.io.codec.encode(&ids, &msg));
                if !started {
                    started = true;
                    Publisher(self.io.clone()).publish(
                        "status",
                        &json!({"execution_state": "starting"}),
                        None,
                    );
                }
            }
        }
    }
}

/// `status` content, borrowed (the typed one owns its string).
#[derive(serde::Serialize)]
struct StatusContent<'a> {
    execution_state: &'a str,
}

/// `execute_input` content, borrowing the request's code.
#[derive(serde::Serialize)]
struct ExecuteInputContent<'a> {
    code: &'a str,
    execution_count: u32,
}

/// An `ok` execute_reply: `payload` and `user_expressions` are always present.
#[derive(serde::Serialize)]
struct ExecuteOkContent<'a> {
    status: &'static str,
    execution_count: u32,
    payload: &'a [serde_json::Value],
    user_expressions: &'a serde_json::Map<String, serde_json::Value>,
}

enum ShellOutcome {
    Done,
    StopOnError,
    Shutdown(bool),
}
