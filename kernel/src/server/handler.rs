//! What a kernel implements ([`Handler`]) and what it is handed for each request
//! ([`Request`]: the message, its routing, IOPub publishing and stdin).
//!
//! Spec: <https://jupyter-client.readthedocs.io/en/latest/messaging.html>

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::protocol::content::{ExecuteRequest, InputRequest, KernelInfoReply};
use crate::protocol::{Channel, Header, Message, Session, empty_object, to_raw};
use crate::transport::Outbox;
use crate::wire::Codec;

/// The result of running one `execute_request`.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecuteOutcome {
    /// It ran.
    Ok {
        /// Payloads (pager, set_next_input, …).
        payload: Vec<Value>,
        /// Results of the request's `user_expressions`.
        user_expressions: Map<String, Value>,
    },
    /// It failed; the handler has already published the `error` output.
    Error {
        /// Exception name.
        ename: String,
        /// Exception value.
        evalue: String,
        /// Traceback lines.
        traceback: Vec<String>,
    },
    /// It was not run.
    Aborted,
}

impl ExecuteOutcome {
    /// An `Ok` with nothing extra.
    pub fn ok() -> Self {
        ExecuteOutcome::Ok {
            payload: Vec::new(),
            user_expressions: Map::new(),
        }
    }
}

/// A reply to send on the request's channel.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The reply's message type.
    pub msg_type: String,
    /// Its content as JSON text.
    pub content: Box<RawValue>,
    /// Its metadata as JSON text.
    pub metadata: Box<RawValue>,
    /// Binary buffers.
    pub buffers: Vec<Vec<u8>>,
}

impl Reply {
    /// A reply with typed content.
    pub fn new<T: Serialize + ?Sized>(msg_type: &str, content: &T) -> Self {
        Reply::raw(msg_type, to_raw(content))
    }

    /// A reply whose content is already JSON text.
    pub fn raw(msg_type: &str, content: Box<RawValue>) -> Self {
        Reply {
            msg_type: msg_type.to_owned(),
            content,
            metadata: empty_object(),
            buffers: Vec::new(),
        }
    }
}

/// A kernel: the server calls these for the requests it does not answer itself.
///
/// The server runs on one thread (a tokio `LocalSet`), so these futures need not be
/// `Send`; shell requests come one at a time, control requests concurrently with them.
#[allow(async_fn_in_trait)]
pub trait Handler {
    /// The content of `kernel_info_reply`; must answer at once.
    fn kernel_info(&self) -> KernelInfoReply;

    /// Run an `execute_request`. The server has already published `execute_input`
    /// (unless silent) and counted the execution; outputs go through `req`.
    async fn execute(&self, req: &Request, content: &ExecuteRequest) -> ExecuteOutcome;

    /// Any other shell request (complete, inspect, history, comms, unknown types).
    /// `None` sends no reply (as for `comm_msg`).
    async fn shell(&self, req: &Request) -> Option<Reply>;

    /// Control requests other than kernel_info, interrupt and shutdown (e.g. debug).
    async fn control(&self, req: &Request) -> Option<Reply> {
        let _ = req;
        None
    }

    /// Interrupt what is running.
    async fn interrupt(&self);

    /// Stop every child and release everything; the process exits afterwards.
    async fn shutdown(&self, restart: bool);
}

/// Why [`Request::input`] gave no value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputError {
    /// The request said `allow_stdin: false`.
    #[error("this frontend does not support input requests")]
    NotAllowed,
    /// The server is shutting down.
    #[error("the kernel is shutting down")]
    Closed,
}

/// Everything a request needs to publish and to ask for input; shared by all requests.
pub(crate) struct ServerIo {
    pub(crate) codec: Arc<Codec>,
    pub(crate) session: Session,
    pub(crate) shell: Outbox,
    pub(crate) control: Outbox,
    pub(crate) stdin: Outbox,
    pub(crate) iopub: Outbox,
    /// input_request msg_id → who waits for the reply.
    pub(crate) stdin_waiters: RefCell<HashMap<String, oneshot::Sender<Message>>>,
}

impl ServerIo {
    pub(crate) fn publish_message(&self, msg: &Message) {
        let (id, msg_type) = (self.session.id(), &msg.header.msg_type);
        let mut topic = Vec::with_capacity(8 + id.len() + msg_type.len());
        for part in [b"kernel.", id.as_bytes(), b".", msg_type.as_bytes()] {
            topic.extend_from_slice(part);
        }
        self.codec
            .encode_with(&[topic], msg, |frames| self.iopub.send_parts(frames));
    }

    pub(crate) fn send_on(&self, channel: Channel, ids: &[Vec<u8>], msg: &Message) {
        let outbox = match channel {
            Channel::Control => &self.control,
            Channel::Stdin => &self.stdin,
            _ => &self.shell,
        };
        self.codec
            .encode_with(ids, msg, |frames| outbox.send_parts(frames));
    }
}

/// Publishes on IOPub outside any request (for output that arrives between requests).
#[derive(Clone)]
pub struct Publisher(pub(crate) Rc<ServerIo>);

impl Publisher {
    /// Publish a new message with the given parent.
    pub fn publish<T: Serialize + ?Sized>(
        &self,
        msg_type: &str,
        content: &T,
        parent: Option<&Arc<Header>>,
    ) {
        let msg = self.0.session.message(msg_type, content, parent);
        self.0.publish_message(&msg);
    }

    /// Publish a message from elsewhere (e.g. a proxied kernel) under `parent`.
    pub fn relay(&self, mut msg: Message, parent: Option<&Arc<Header>>) {
        msg.parent_header = parent.cloned();
        Arc::make_mut(&mut msg.header).session = self.0.session.id().to_owned();
        self.0.publish_message(&msg);
    }

    /// This kernel's session.
    pub fn session(&self) -> &Session {
        &self.0.session
    }
}

/// One request being handled: the message, where it came from, and the means to
/// publish its outputs and ask its frontend for input.
#[derive(Clone)]
pub struct Request {
    /// The channel it arrived on.
    pub channel: Channel,
    /// Routing identities of the sender.
    pub ids: Vec<Vec<u8>>,
    /// The request.
    pub message: Message,
    /// The execution count: of this execution for `execute_request`, else the current one.
    pub execution_count: u32,
    pub(crate) io: Rc<ServerIo>,
}

impl Request {
    /// The request's header (the parent of everything it causes).
    pub fn header(&self) -> &Arc<Header> {
        &self.message.header
    }

    /// The request's message type.
    pub fn msg_type(&self) -> &str {
        &self.message.header.msg_type
    }

    /// A publisher not tied to this request.
    pub fn publisher(&self) -> Publisher {
        Publisher(self.io.clone())
    }

    /// Publish an output of this request.
    pub fn publish<T: Serialize + ?Sized>(&self, msg_type: &str, content: &T) {
        let msg = self
            .io
            .session
            .message(msg_type, content, Some(&self.message.header));
        self.io.publish_message(&msg);
    }

    /// Publish a message from elsewhere as an output of this request.
    pub fn relay(&self, msg: Message) {
        self.publisher().relay(msg, Some(&self.message.header));
    }

    /// Publish a `stream` output.
    pub fn stream(&self, name: &str, text: &str) {
        self.publish("stream", &serde_json::json!({"name": name, "text": text}));
    }

    /// Publish an `error` output.
    pub fn error(&self, ename: &str, evalue: &str, traceback: &[String]) {
        self.publish(
            "error",
            &serde_json::json!({"ename": ename, "evalue": evalue, "traceback": traceback}),
        );
    }

    /// Ask the frontend for a line of input (`input_request` on stdin, to the
    /// identity that sent this request) and wait for its `input_reply`.
    pub async fn input(&self, prompt: &str, password: bool) -> Result<String, InputError> {
        let allowed = self
            .message
            .content_map()
            .get("allow_stdin")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if !allowed {
            return Err(InputError::NotAllowed);
        }
        let reply = self
            .input_raw(&InputRequest {
                prompt: prompt.to_owned(),
                password,
            })
            .await?;
        Ok(reply
            .content_map()
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    /// Send an `input_request` with the given content and return the whole reply.
    pub async fn input_raw<T: Serialize + ?Sized>(
        &self,
        content: &T,
    ) -> Result<Message, InputError> {
        let msg = self
            .io
            .session
            .message("input_request", content, Some(&self.message.header));
        let (tx, rx) = oneshot::channel();
        let id = msg.header.msg_id.clone();
        self.io.stdin_waiters.borrow_mut().insert(id.clone(), tx);
        let _forget = WaiterGuard {
            io: &self.io,
            id: &id,
        };
        self.io.send_on(Channel::Stdin, &self.ids, &msg);
        rx.await.map_err(|_| InputError::Closed)
    }
}

/// Removes a stdin waiter when its future is dropped (interrupted cell).
struct WaiterGuard<'a> {
    io: &'a ServerIo,
    id: &'a str,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.io.stdin_waiters.borrow_mut().remove(self.id);
    }
}
