//! A fixture frontend for server tests, in the style of ark/amalthea's
//! `DummyFrontend`: it starts a [`Server`] with a scriptable [`TestHandler`] on
//! free ports with a random key, connects raw client sockets (DEALER shell,
//! control and stdin sharing one identity, SUB iopub, DEALER heartbeat) with its
//! own [`Codec`], and offers intent-named, blocking helpers that each wait at most
//! [`TIMEOUT`] and report failures at the test's line.
//!
//! Threads: the server runs on its own thread with a current-thread runtime and a
//! `LocalSet` (it is single-threaded); the frontend's sockets live on a second
//! current-thread runtime owned by the [`Frontend`], driven only while a helper
//! waits. Sends are queued until then, in order.
//!
//! The handler interprets `code` as `;`-separated statements:
//! - `print:TEXT` publishes TEXT on stdout;
//! - `error` publishes an error (`TestError: boom`) and fails the cell;
//! - `sleep:MS` sleeps MS milliseconds (an interrupt ends it with `KeyboardInterrupt`);
//! - `gate` waits until the test calls [`Frontend::open_gate`] (or an interrupt);
//! - `input:PROMPT` asks for input and publishes the answer on stdout, or the
//!   `InputError` text on stderr (an interrupt abandons the question);
//! - `pass` (or nothing) does nothing.

#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pxkernel_kernel::protocol::content::{
    CompleteReply, ErrorContent, ExecuteInput, ExecuteReply, ExecuteRequest, InputRequest,
    KernelInfoReply, LanguageInfo, Status, Stream,
};
use pxkernel_kernel::protocol::{
    Channel, ConnectionInfo, Header, Message, PROTOCOL_VERSION, Session, new_uuid,
};
use pxkernel_kernel::server::{ExecuteOutcome, Handler, Reply, Request, Server, Stopped};
use pxkernel_kernel::transport::{self, Frames, Inbox, Kind, Options, Outbox, Side};
use pxkernel_kernel::wire::{Codec, DELIMITER};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::runtime::Runtime;
use tokio::sync::{Notify, oneshot};

/// The failure bound of every receive. Never a measured duration: a correct kernel
/// answers in milliseconds.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What the handler saw, shared between the server thread and the test.
#[derive(Default)]
pub struct State {
    interrupts: AtomicUsize,
    shutdowns: Mutex<Vec<bool>>,
    shell_requests: Mutex<Vec<String>>,
    interrupt: Notify,
    gate: Notify,
}

impl State {
    /// How many times `Handler::interrupt` was called.
    pub fn interrupts(&self) -> usize {
        self.interrupts.load(Ordering::SeqCst)
    }

    /// The `restart` flag of every `Handler::shutdown` call.
    pub fn shutdowns(&self) -> Vec<bool> {
        self.shutdowns.lock().unwrap().clone()
    }

    /// The msg_type of every request that reached `Handler::shell`.
    pub fn shell_requests(&self) -> Vec<String> {
        self.shell_requests.lock().unwrap().clone()
    }
}

/// The scriptable kernel behind the fixture.
pub struct TestHandler {
    state: Arc<State>,
}

/// The fixed reply to every `complete_request`.
pub fn fixed_complete_reply() -> CompleteReply {
    CompleteReply {
        status: "ok".to_owned(),
        matches: vec!["completed".to_owned()],
        cursor_start: 0,
        cursor_end: 3,
        metadata: Map::new(),
    }
}

fn failed(req: &Request, ename: &str, evalue: &str) -> ExecuteOutcome {
    let traceback = vec![format!("{ename}: {evalue}")];
    req.error(ename, evalue, &traceback);
    ExecuteOutcome::Error {
        ename: ename.to_owned(),
        evalue: evalue.to_owned(),
        traceback,
    }
}

impl TestHandler {
    /// Run `fut` unless an interrupt comes first (then `None`, and `fut` is dropped).
    async fn interruptible<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        let interrupted = self.state.interrupt.notified();
        tokio::select! {
            out = fut => Some(out),
            () = interrupted => None,
        }
    }
}

impl Handler for TestHandler {
    fn kernel_info(&self) -> KernelInfoReply {
        KernelInfoReply {
            status: "ok".to_owned(),
            protocol_version: PROTOCOL_VERSION.to_owned(),
            implementation: "pxkernel-test".to_owned(),
            implementation_version: "0".to_owned(),
            language_info: LanguageInfo {
                name: "test".to_owned(),
                ..LanguageInfo::default()
            },
            banner: "test kernel".to_owned(),
            help_links: Vec::new(),
            debugger: false,
            supported_features: None,
        }
    }

    async fn execute(&self, req: &Request, content: &ExecuteRequest) -> ExecuteOutcome {
        for stmt in content.code.split(';').map(str::trim) {
            if stmt.is_empty() || stmt == "pass" {
                continue;
            }
            if let Some(text) = stmt.strip_prefix("print:") {
                req.stream("stdout", text);
            } else if stmt == "error" {
                return failed(req, "TestError", "boom");
            } else if let Some(ms) = stmt.strip_prefix("sleep:") {
                let Ok(ms) = ms.parse::<u64>() else {
                    return failed(req, "BadSleep", ms);
                };
                let slept = tokio::time::sleep(Duration::from_millis(ms));
                if self.interruptible(slept).await.is_none() {
                    return failed(req, "KeyboardInterrupt", "interrupted");
                }
            } else if stmt == "gate" {
                if self
                    .interruptible(self.state.gate.notified())
                    .await
                    .is_none()
                {
                    return failed(req, "KeyboardInterrupt", "interrupted");
                }
            } else if let Some(prompt) = stmt.strip_prefix("input:") {
                match self.interruptible(req.input(prompt, false)).await {
                    Some(Ok(value)) => req.stream("stdout", &value),
                    Some(Err(e)) => req.stream("stderr", &e.to_string()),
                    None => return failed(req, "KeyboardInterrupt", "interrupted"),
                }
            } else {
                return failed(req, "UnknownStatement", stmt);
            }
        }
        ExecuteOutcome::ok()
    }

    async fn shell(&self, req: &Request) -> Option<Reply> {
        self.state
            .shell_requests
            .lock()
            .unwrap()
            .push(req.msg_type().to_owned());
        match req.msg_type() {
            "complete_request" => Some(Reply::new("complete_reply", &fixed_complete_reply())),
            _ => None,
        }
    }

    async fn interrupt(&self) {
        self.state.interrupts.fetch_add(1, Ordering::SeqCst);
        self.state.interrupt.notify_waiters();
    }

    async fn shutdown(&self, restart: bool) {
        self.state.shutdowns.lock().unwrap().push(restart);
    }
}

/// Five distinct free TCP ports on 127.0.0.1 (all held at once, then released).
fn free_ports() -> [u16; 5] {
    let listeners: Vec<std::net::TcpListener> = (0..5)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let mut ports = [0u16; 5];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l.local_addr().expect("local_addr").port();
    }
    ports
}

/// Bind a server on free ports, retrying when another process takes a port
/// between our probe and the bind.
fn bind_on_free_ports(key: &str) -> Result<(ConnectionInfo, Server), String> {
    let mut last = String::new();
    for _ in 0..20 {
        let [shell, iopub, stdin, control, hb] = free_ports();
        let info = ConnectionInfo {
            transport: "tcp".to_owned(),
            ip: "127.0.0.1".to_owned(),
            shell_port: shell,
            iopub_port: iopub,
            stdin_port: stdin,
            control_port: control,
            hb_port: hb,
            signature_scheme: "hmac-sha256".to_owned(),
            key: key.to_owned(),
            kernel_name: Some("test".to_owned()),
        };
        match Server::bind(&info) {
            Ok(server) => return Ok((info, server)),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// The thread the server runs on.
struct ServerThread {
    /// Ends the thread (and with it every server socket).
    stop: Option<oneshot::Sender<()>>,
    /// What `Server::run` returned (`None`: stopped by the fixture).
    stopped: std::sync::mpsc::Receiver<Option<Stopped>>,
}

/// What the server thread does once `Server::run` has returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterRun {
    /// Keep the runtime (and the socket tasks) alive until the frontend is dropped.
    KeepRuntime,
    /// Drop the runtime at once, as the kernel binary does.
    DropRuntime,
}

fn spawn_server(
    state: Arc<State>,
    key: String,
    after_run: AfterRun,
) -> (ConnectionInfo, ServerThread) {
    let (info_tx, info_rx) = std::sync::mpsc::channel();
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("test-kernel".to_owned())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let server = match bind_on_free_ports(&key) {
                    Ok((info, server)) => {
                        let _ = info_tx.send(Ok(info));
                        server
                    }
                    Err(e) => {
                        let _ = info_tx.send(Err(e));
                        return;
                    }
                };
                let handler = TestHandler { state };
                let stopped = tokio::select! {
                    s = server.run(&handler) => Some(s),
                    _ = &mut stop_rx => None,
                };
                let _ = done_tx.send(stopped);
                if stopped.is_some() && after_run == AfterRun::KeepRuntime {
                    let _ = stop_rx.await;
                }
            });
            drop(local);
            drop(rt);
        })
        .expect("spawn the server thread");
    let info = match info_rx.recv_timeout(TIMEOUT) {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => panic!("the server could not bind: {e}"),
        Err(e) => panic!("the server thread did not start: {e}"),
    };
    (
        info,
        ServerThread {
            stop: Some(stop_tx),
            stopped: done_rx,
        },
    )
}

/// A raw Jupyter frontend connected to a [`TestHandler`] kernel.
pub struct Frontend {
    /// The connection file the kernel was started with.
    pub info: ConnectionInfo,
    /// Signs what the frontend sends and verifies what it receives (its own replay cache).
    pub codec: Codec,
    /// The frontend's session; its id is the DEALER identity.
    pub session: Session,
    /// What the handler saw.
    pub state: Arc<State>,
    welcome: Message,
    shell: Outbox,
    shell_in: Inbox,
    control: Outbox,
    control_in: Inbox,
    stdin: Outbox,
    stdin_in: Inbox,
    iopub_in: Inbox,
    _iopub_out: Outbox,
    hb: Outbox,
    hb_in: Inbox,
    server: ServerThread,
    rt: Runtime,
}

impl Drop for Frontend {
    fn drop(&mut self) {
        if let Some(stop) = self.server.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Receive one frame set, or fail at the caller's line after [`TIMEOUT`].
#[track_caller]
fn recv_frames(rt: &Runtime, inbox: &mut Inbox, channel: &str) -> Frames {
    match rt.block_on(async { tokio::time::timeout(TIMEOUT, inbox.recv()).await }) {
        Ok(Some(frames)) => frames,
        Ok(None) => panic!("the {channel} socket closed"),
        Err(_) => panic!("no message on {channel} within {TIMEOUT:?}"),
    }
}

#[track_caller]
fn decode(codec: &Codec, frames: Frames, channel: &str) -> (Vec<Vec<u8>>, Message) {
    match codec.decode(frames) {
        Ok(decoded) => decoded,
        Err(e) => panic!("the kernel sent a message on {channel} that does not decode: {e}"),
    }
}

/// `msg_type parent=… content` for failure messages.
pub fn describe(msg: &Message) -> String {
    format!(
        "{} (parent {:?}) {}",
        msg.msg_type(),
        msg.parent_id(),
        msg.content.get()
    )
}

#[track_caller]
fn parse<T: DeserializeOwned>(msg: &Message) -> T {
    match msg.parse_content() {
        Ok(c) => c,
        Err(e) => panic!("{e}: {}", describe(msg)),
    }
}

#[track_caller]
fn expect(msg: &Message, msg_type: &str, parent: &str) {
    assert_eq!(
        (msg.msg_type(), msg.parent_id()),
        (msg_type, Some(parent)),
        "expected {msg_type} for {parent}, got {}",
        describe(msg)
    );
}

fn is_starting(msg: &Message) -> bool {
    msg.msg_type() == "status"
        && msg.parent_header.is_none()
        && msg.content_map().get("execution_state") == Some(&json!("starting"))
}

impl Frontend {
    /// Start a kernel and connect to it; returns once IOPub is subscribed (the
    /// kernel's `iopub_welcome` has arrived). Nothing has been sent yet.
    #[track_caller]
    pub fn start() -> Frontend {
        Frontend::start_with(AfterRun::KeepRuntime)
    }

    /// [`Frontend::start`], choosing what the server thread does after `run`.
    #[track_caller]
    pub fn start_with(after_run: AfterRun) -> Frontend {
        let state = Arc::new(State::default());
        let (info, server) = spawn_server(state.clone(), new_uuid(), after_run);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("frontend runtime");
        let codec = match Codec::new(&info.signature_scheme, info.key.as_bytes()) {
            Ok(c) => c,
            Err(e) => panic!("frontend codec: {e}"),
        };
        let session = Session::new("frontend");
        let dealer = Options {
            identity: Some(session.id().as_bytes().to_vec()),
            ..Options::default()
        };
        let open = |kind, channel, opts: &Options| {
            let _enter = rt.enter();
            match transport::open(kind, Side::Connect, &info.endpoint(channel), opts) {
                Ok(sock) => sock,
                Err(e) => panic!("frontend {}: {e}", channel.name()),
            }
        };
        // stdin first: the kernel can route an input_request only to a known peer.
        let (stdin, stdin_in) = open(Kind::Dealer, Channel::Stdin, &dealer);
        let (shell, shell_in) = open(Kind::Dealer, Channel::Shell, &dealer);
        let (control, control_in) = open(Kind::Dealer, Channel::Control, &dealer);
        let (hb, hb_in) = open(Kind::Dealer, Channel::Heartbeat, &Options::default());
        let (iopub_out, mut iopub_in) = open(Kind::Sub, Channel::Iopub, &Options::default());

        // Before the welcome, the only thing a kernel may publish is `starting`
        // (and we may or may not have been subscribed in time to see it).
        let welcome = loop {
            let frames = recv_frames(&rt, &mut iopub_in, "iopub");
            let (ids, msg) = decode(&codec, frames, "iopub");
            if is_starting(&msg) {
                continue;
            }
            assert_eq!(
                msg.msg_type(),
                "iopub_welcome",
                "the first IOPub message after subscribing must be the welcome, got {}",
                describe(&msg)
            );
            assert!(
                ids.is_empty(),
                "a welcome for the empty topic has no topic frame"
            );
            break msg;
        };
        Frontend {
            info,
            codec,
            session,
            state,
            welcome,
            shell,
            shell_in,
            control,
            control_in,
            stdin,
            stdin_in,
            iopub_in,
            _iopub_out: iopub_out,
            hb,
            hb_in,
            server,
            rt,
        }
    }

    /// The `iopub_welcome` that proved the subscription.
    pub fn welcome(&self) -> &Message {
        &self.welcome
    }

    /// Let a `gate` statement of the running (or next) cell proceed.
    pub fn open_gate(&self) {
        self.state.gate.notify_one();
    }

    // ------------------------------------------------------------ sending

    /// A message from this frontend's session.
    pub fn message(&self, msg_type: &str, content: &Value) -> Message {
        self.session.message(msg_type, content, None)
    }

    /// Signed frames of a new message, as the DEALER sends them (no routing ids).
    pub fn frames(&self, msg_type: &str, content: &Value) -> (String, Frames) {
        let msg = self.message(msg_type, content);
        (msg.header.msg_id.clone(), self.codec.encode(&[], &msg))
    }

    /// Frames for four arbitrary JSON parts, correctly signed with the key.
    pub fn signed_frames(&self, parts: [&[u8]; 4]) -> Frames {
        let mut f = vec![DELIMITER.to_vec(), self.codec.sign(parts)];
        f.extend(parts.iter().map(|p| p.to_vec()));
        f
    }

    fn send_on(&self, channel: Channel, frames: Frames) {
        let out = match channel {
            Channel::Control => &self.control,
            Channel::Stdin => &self.stdin,
            Channel::Heartbeat => &self.hb,
            _ => &self.shell,
        };
        assert!(
            out.send(frames),
            "the frontend's {} socket closed",
            channel.name()
        );
    }

    /// Send a request on shell; returns its msg_id.
    pub fn send_shell(&self, msg_type: &str, content: Value) -> String {
        let (id, frames) = self.frames(msg_type, &content);
        self.send_on(Channel::Shell, frames);
        id
    }

    /// Send a request on control; returns its msg_id.
    pub fn send_control(&self, msg_type: &str, content: Value) -> String {
        let (id, frames) = self.frames(msg_type, &content);
        self.send_on(Channel::Control, frames);
        id
    }

    /// Send frames on shell exactly as given.
    pub fn send_raw_shell(&self, frames: Frames) {
        self.send_on(Channel::Shell, frames);
    }

    /// Send frames on control exactly as given.
    pub fn send_raw_control(&self, frames: Frames) {
        self.send_on(Channel::Control, frames);
    }

    /// Send an `execute_request` with the spec's defaults; returns its msg_id.
    pub fn send_execute(&self, code: &str) -> String {
        self.send_execute_with(code, json!({}))
    }

    /// Run `pass` and check its whole exchange: busy, execute_input, idle and the
    /// reply, the last two carrying execution count `count`.
    pub fn run_pass_counted(&mut self, count: u32) {
        let id = self.send_execute("pass");
        self.recv_iopub_busy(&id);
        assert_eq!(self.recv_iopub_execute_input(&id).execution_count, count);
        self.recv_iopub_idle(&id);
        assert_eq!(
            self.recv_shell_execute_reply(&id).execution_count,
            Some(count)
        );
    }

    /// Send an `execute_request`, overriding fields with those of `options`.
    pub fn send_execute_with(&self, code: &str, options: Value) -> String {
        let mut content = json!({
            "code": code,
            "silent": false,
            "store_history": true,
            "user_expressions": {},
            "allow_stdin": true,
            "stop_on_error": true,
        });
        if let (Some(c), Value::Object(o)) = (content.as_object_mut(), options) {
            c.extend(o);
        }
        self.send_shell("execute_request", content)
    }

    /// Answer an `input_request` on stdin.
    pub fn send_input_reply(&self, input_request: &Arc<Header>, value: &str) {
        let msg =
            self.session
                .message("input_reply", &json!({"value": value}), Some(input_request));
        self.send_on(Channel::Stdin, self.codec.encode(&[], &msg));
    }

    /// Answer on stdin without a parent, as jupyter_client's `input()` does.
    pub fn send_input_reply_without_parent(&self, value: &str) {
        let msg = self.message("input_reply", &json!({"value": value}));
        self.send_on(Channel::Stdin, self.codec.encode(&[], &msg));
    }

    // ------------------------------------------------------------ receiving

    /// The next message on shell.
    #[track_caller]
    pub fn recv_shell(&mut self) -> Message {
        let frames = recv_frames(&self.rt, &mut self.shell_in, "shell");
        decode(&self.codec, frames, "shell").1
    }

    /// The next message on control.
    #[track_caller]
    pub fn recv_control(&mut self) -> Message {
        let frames = recv_frames(&self.rt, &mut self.control_in, "control");
        decode(&self.codec, frames, "control").1
    }

    /// The next message on stdin.
    #[track_caller]
    pub fn recv_stdin(&mut self) -> Message {
        let frames = recv_frames(&self.rt, &mut self.stdin_in, "stdin");
        decode(&self.codec, frames, "stdin").1
    }

    /// The next IOPub message with its topic frames (a late `starting` is skipped).
    #[track_caller]
    pub fn recv_iopub_with_topic(&mut self) -> (Vec<Vec<u8>>, Message) {
        loop {
            let frames = recv_frames(&self.rt, &mut self.iopub_in, "iopub");
            let (ids, msg) = decode(&self.codec, frames, "iopub");
            if !is_starting(&msg) {
                return (ids, msg);
            }
        }
    }

    /// The next IOPub message (a late `starting` is skipped).
    #[track_caller]
    pub fn recv_iopub(&mut self) -> Message {
        self.recv_iopub_with_topic().1
    }

    /// The next IOPub message, which must be `msg_type` caused by `parent`.
    #[track_caller]
    pub fn recv_iopub_of(&mut self, msg_type: &str, parent: &str) -> Message {
        let msg = self.recv_iopub();
        expect(&msg, msg_type, parent);
        msg
    }

    #[track_caller]
    fn recv_iopub_status(&mut self, parent: &str, state: &str) {
        let msg = self.recv_iopub_of("status", parent);
        let status: Status = parse(&msg);
        assert_eq!(status.execution_state, state, "{}", describe(&msg));
    }

    /// The next IOPub message is `status: busy` for `parent`.
    #[track_caller]
    pub fn recv_iopub_busy(&mut self, parent: &str) {
        self.recv_iopub_status(parent, "busy");
    }

    /// The next IOPub message is `status: idle` for `parent`.
    #[track_caller]
    pub fn recv_iopub_idle(&mut self, parent: &str) {
        self.recv_iopub_status(parent, "idle");
    }

    /// The next IOPub message is `execute_input` for `parent`.
    #[track_caller]
    pub fn recv_iopub_execute_input(&mut self, parent: &str) -> ExecuteInput {
        parse(&self.recv_iopub_of("execute_input", parent))
    }

    /// The next IOPub message is a `stream` for `parent`.
    #[track_caller]
    pub fn recv_iopub_stream(&mut self, parent: &str) -> Stream {
        parse(&self.recv_iopub_of("stream", parent))
    }

    /// The next IOPub message is an `error` for `parent`.
    #[track_caller]
    pub fn recv_iopub_error(&mut self, parent: &str) -> ErrorContent {
        parse(&self.recv_iopub_of("error", parent))
    }

    /// IOPub messages until every one of `parents` has gone idle, as
    /// `(parent, msg_type or status state)` pairs, for requests whose outputs may
    /// interleave.
    #[track_caller]
    pub fn recv_iopub_until_idle(&mut self, parents: &[&str]) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        let mut waiting: Vec<&str> = parents.to_vec();
        while !waiting.is_empty() {
            let msg = self.recv_iopub();
            let parent = msg.parent_id().unwrap_or_default().to_owned();
            let what = if msg.msg_type() == "status" {
                let status: Status = parse(&msg);
                if status.execution_state == "idle" {
                    waiting.retain(|p| *p != parent);
                }
                status.execution_state
            } else {
                msg.msg_type().to_owned()
            };
            seen.push((parent, what));
        }
        seen
    }

    /// The next shell message is a `msg_type` reply to `parent`.
    #[track_caller]
    pub fn recv_shell_reply(&mut self, parent: &str, msg_type: &str) -> Message {
        let msg = self.recv_shell();
        expect(&msg, msg_type, parent);
        msg
    }

    /// The next control message is a `msg_type` reply to `parent`.
    #[track_caller]
    pub fn recv_control_reply(&mut self, parent: &str, msg_type: &str) -> Message {
        let msg = self.recv_control();
        expect(&msg, msg_type, parent);
        msg
    }

    /// The next shell message is the `execute_reply` to `parent`.
    #[track_caller]
    pub fn recv_shell_execute_reply(&mut self, parent: &str) -> ExecuteReply {
        parse(&self.recv_shell_reply(parent, "execute_reply"))
    }

    /// The next stdin message is an `input_request` caused by `parent`.
    #[track_caller]
    pub fn recv_stdin_input_request(&mut self, parent: &str) -> (Arc<Header>, InputRequest) {
        let msg = self.recv_stdin();
        expect(&msg, "input_request", parent);
        let content = parse(&msg);
        (msg.header, content)
    }

    #[track_caller]
    fn assert_nothing_within(&mut self, channel: Channel, within: Duration) {
        let inbox = match channel {
            Channel::Shell => &mut self.shell_in,
            Channel::Control => &mut self.control_in,
            Channel::Stdin => &mut self.stdin_in,
            Channel::Heartbeat => &mut self.hb_in,
            Channel::Iopub => &mut self.iopub_in,
        };
        if let Ok(Some(frames)) = self
            .rt
            .block_on(async { tokio::time::timeout(within, inbox.recv()).await })
        {
            let what = match self.codec.decode(frames) {
                Ok((_, msg)) => describe(&msg),
                Err(e) => format!("undecodable frames ({e})"),
            };
            panic!("expected nothing on {} but got {what}", channel.name());
        }
    }

    /// Nothing arrives on shell for `within`. Only a lower bound of silence: where
    /// order can prove it, tests prefer "the next message answers a later request".
    #[track_caller]
    pub fn assert_no_shell_message_within(&mut self, within: Duration) {
        self.assert_nothing_within(Channel::Shell, within);
    }

    /// Nothing arrives on stdin for `within`.
    #[track_caller]
    pub fn assert_no_stdin_message_within(&mut self, within: Duration) {
        self.assert_nothing_within(Channel::Stdin, within);
    }

    /// Nothing arrives on IOPub for `within`.
    #[track_caller]
    pub fn assert_no_iopub_message_within(&mut self, within: Duration) {
        self.assert_nothing_within(Channel::Iopub, within);
    }

    /// Ping the heartbeat as jupyter_client does (`["", payload]` on a DEALER) and
    /// expect the same frames back.
    #[track_caller]
    pub fn heartbeat(&mut self, payload: &[u8]) {
        let ping = vec![Vec::new(), payload.to_vec()];
        self.send_on(Channel::Heartbeat, ping.clone());
        let echo = recv_frames(&self.rt, &mut self.hb_in, "hb");
        assert_eq!(echo, ping, "the heartbeat echoes exactly what it got");
    }

    // ------------------------------------------------------------ transcripts

    /// A whole `kernel_info_request` on shell: busy, reply, idle. Proves the kernel
    /// is alive, and that nothing earlier is still pending on shell or IOPub.
    #[track_caller]
    pub fn assert_kernel_alive(&mut self) {
        let id = self.send_shell("kernel_info_request", json!({}));
        self.recv_iopub_busy(&id);
        self.recv_iopub_idle(&id);
        let reply: KernelInfoReply = parse(&self.recv_shell_reply(&id, "kernel_info_reply"));
        assert_eq!(reply.language_info.name, "test");
    }

    /// How `Server::run` ended, once it has.
    #[track_caller]
    pub fn wait_stopped(&mut self) -> Stopped {
        match self.server.stopped.recv_timeout(TIMEOUT) {
            Ok(Some(stopped)) => stopped,
            Ok(None) => panic!("the server was stopped by the fixture"),
            Err(e) => panic!("Server::run did not return within {TIMEOUT:?}: {e}"),
        }
    }

    /// `Server::run` has not returned.
    #[track_caller]
    pub fn assert_server_running(&self) {
        if let Ok(stopped) = self.server.stopped.try_recv() {
            panic!("Server::run returned {stopped:?}");
        }
    }
}
