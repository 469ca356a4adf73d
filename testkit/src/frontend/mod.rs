//! [`Frontend`]: a raw Jupyter frontend in the style of ark/amalthea's
//! `DummyFrontend`. It connects its own client sockets (DEALER shell, control and
//! stdin sharing one identity, a SUB iopub, a DEALER heartbeat) with its own
//! [`Codec`], sends exactly what a test asks (signed frames, or any bytes), and
//! receives through intent-named, blocking helpers
//! ([`recv_iopub_busy`](Frontend::recv_iopub_busy),
//! [`recv_shell_execute_reply`](Frontend::recv_shell_execute_reply), …; the `recv`
//! module) that each wait at most [`TIMEOUT`](crate::TIMEOUT) and report failures
//! at the test's line.
//!
//! Its sockets live on a current-thread runtime owned by the frontend and driven
//! only while a helper waits; sends are queued until then, in order. It talks to
//! any kernel by its connection info, and may own the [`FakeKernel`] it talks to.

mod recv;

pub use recv::describe;

use std::sync::Arc;

use pxkernel_kernel::protocol::{Channel, ConnectionInfo, Header, Message, Session};
use pxkernel_kernel::server::Stopped;
use pxkernel_kernel::transport::{self, Frames, Inbox, Kind, Options, Outbox, Side};
use pxkernel_kernel::wire::{Codec, DELIMITER};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::fake::{Config, FakeKernel, State};

/// A raw Jupyter frontend connected to a kernel.
pub struct Frontend {
    /// The connection info of the kernel it talks to.
    pub info: ConnectionInfo,
    /// Signs what the frontend sends and verifies what it receives (its own replay cache).
    pub codec: Codec,
    /// The frontend's session; its id is the DEALER identity.
    pub session: Session,
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
    rt: Runtime,
    /// The fake kernel this frontend started, if it did.
    kernel: Option<FakeKernel>,
}

impl Frontend {
    /// Start a [`FakeKernel`] and connect to it; returns once IOPub is subscribed
    /// (the kernel's `iopub_welcome` has arrived). Nothing has been sent yet.
    #[track_caller]
    pub fn start() -> Frontend {
        Frontend::start_with(Config::default())
    }

    /// [`Frontend::start`] with a [`Config`] for the kernel.
    #[track_caller]
    pub fn start_with(config: Config) -> Frontend {
        Frontend::owning(FakeKernel::start_with(config))
    }

    /// Connect to `kernel` and own it (it is killed when the frontend is dropped).
    #[track_caller]
    pub fn owning(kernel: FakeKernel) -> Frontend {
        let mut fe = Frontend::connect(kernel.info());
        fe.kernel = Some(kernel);
        fe
    }

    /// Connect to the kernel of `info`, which must speak protocol 5.5 (an
    /// `iopub_welcome` on subscription); returns once IOPub is subscribed.
    /// Nothing has been sent yet.
    #[track_caller]
    pub fn connect(info: &ConnectionInfo) -> Frontend {
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
            let frames = recv::recv_frames(&rt, &mut iopub_in, "iopub");
            let (ids, msg) = recv::decode(&codec, frames, "iopub");
            if recv::is_starting(&msg) {
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
            info: info.clone(),
            codec,
            session,
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
            rt,
            kernel: None,
        }
    }

    /// The `iopub_welcome` that proved the subscription.
    pub fn welcome(&self) -> &Message {
        &self.welcome
    }

    // ------------------------------------------------------------ its fake kernel

    /// The fake kernel this frontend started (or was given to own).
    #[track_caller]
    pub fn kernel(&self) -> &FakeKernel {
        match &self.kernel {
            Some(k) => k,
            None => panic!("this frontend does not own a fake kernel"),
        }
    }

    /// [`Frontend::kernel`], mutable (to kill or freeze it).
    #[track_caller]
    pub fn kernel_mut(&mut self) -> &mut FakeKernel {
        match &mut self.kernel {
            Some(k) => k,
            None => panic!("this frontend does not own a fake kernel"),
        }
    }

    /// What the fake kernel's handler saw.
    #[track_caller]
    pub fn state(&self) -> &Arc<State> {
        self.kernel().state()
    }

    /// Let a `gate` statement of the running (or next) cell proceed.
    #[track_caller]
    pub fn open_gate(&self) {
        self.kernel().open_gate();
    }

    /// How the fake kernel's `Server::run` ended, once it has.
    #[track_caller]
    pub fn wait_stopped(&mut self) -> Stopped {
        self.kernel().wait_stopped()
    }

    /// The fake kernel's `Server::run` has not returned.
    #[track_caller]
    pub fn assert_server_running(&self) {
        self.kernel().assert_running();
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

    #[track_caller]
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
    #[track_caller]
    pub fn send_shell(&self, msg_type: &str, content: Value) -> String {
        let (id, frames) = self.frames(msg_type, &content);
        self.send_on(Channel::Shell, frames);
        id
    }

    /// Send a request on control; returns its msg_id.
    #[track_caller]
    pub fn send_control(&self, msg_type: &str, content: Value) -> String {
        let (id, frames) = self.frames(msg_type, &content);
        self.send_on(Channel::Control, frames);
        id
    }

    /// Send frames on shell exactly as given.
    #[track_caller]
    pub fn send_raw_shell(&self, frames: Frames) {
        self.send_on(Channel::Shell, frames);
    }

    /// Send frames on control exactly as given.
    #[track_caller]
    pub fn send_raw_control(&self, frames: Frames) {
        self.send_on(Channel::Control, frames);
    }

    /// Send an `execute_request` with the spec's defaults; returns its msg_id.
    #[track_caller]
    pub fn send_execute(&self, code: &str) -> String {
        self.send_execute_with(code, json!({}))
    }

    /// Send an `execute_request`, overriding fields with those of `options`.
    #[track_caller]
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
    #[track_caller]
    pub fn send_input_reply(&self, input_request: &Arc<Header>, value: &str) {
        let msg =
            self.session
                .message("input_reply", &json!({"value": value}), Some(input_request));
        self.send_on(Channel::Stdin, self.codec.encode(&[], &msg));
    }

    /// Answer on stdin without a parent, as jupyter_client's `input()` does.
    #[track_caller]
    pub fn send_input_reply_without_parent(&self, value: &str) {
        let msg = self.message("input_reply", &json!({"value": value}));
        self.send_on(Channel::Stdin, self.codec.encode(&[], &msg));
    }
}
