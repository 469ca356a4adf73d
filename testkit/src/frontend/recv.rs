//! What a [`Frontend`] receives: one blocking helper per intent
//! (`recv_iopub_busy`, `recv_shell_execute_reply`, …), each bounded by
//! [`TIMEOUT`] and `#[track_caller]`, assertions of silence, the heartbeat round
//! trip, and whole transcripts (`assert_kernel_alive`, `run_pass_counted`).

use std::sync::Arc;
use std::time::Duration;

use pxkernel_kernel::protocol::content::{
    DisplayData, ErrorContent, ExecuteInput, ExecuteReply, ExecuteResult, InputRequest,
    KernelInfoReply, Status, Stream,
};
use pxkernel_kernel::protocol::{Channel, Header, Message};
use pxkernel_kernel::transport::{Frames, Inbox};
use pxkernel_kernel::wire::Codec;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::runtime::Runtime;

use super::Frontend;
use crate::TIMEOUT;

/// Receive one frame set, or fail at the caller's line after [`TIMEOUT`].
#[track_caller]
pub(super) fn recv_frames(rt: &Runtime, inbox: &mut Inbox, channel: &str) -> Frames {
    match rt.block_on(async { tokio::time::timeout(TIMEOUT, inbox.recv()).await }) {
        Ok(Some(frames)) => frames,
        Ok(None) => panic!("the {channel} socket closed"),
        Err(_) => panic!("no message on {channel} within {TIMEOUT:?}"),
    }
}

#[track_caller]
pub(super) fn decode(codec: &Codec, frames: Frames, channel: &str) -> (Vec<Vec<u8>>, Message) {
    match codec.decode(frames) {
        Ok(decoded) => decoded,
        Err(e) => panic!("the kernel sent a message on {channel} that does not decode: {e}"),
    }
}

/// `msg_type (parent …) content`, for failure messages.
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

pub(super) fn is_starting(msg: &Message) -> bool {
    msg.msg_type() == "status"
        && msg.parent_header.is_none()
        && msg.content_map().get("execution_state") == Some(&json!("starting"))
}

impl Frontend {
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

    /// The next IOPub message is a `display_data` for `parent`.
    #[track_caller]
    pub fn recv_iopub_display_data(&mut self, parent: &str) -> DisplayData {
        parse(&self.recv_iopub_of("display_data", parent))
    }

    /// The next IOPub message is an `execute_result` for `parent`.
    #[track_caller]
    pub fn recv_iopub_execute_result(&mut self, parent: &str) -> ExecuteResult {
        parse(&self.recv_iopub_of("execute_result", parent))
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
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(frames)) = self
            .rt
            .block_on(async { tokio::time::timeout_at(deadline, inbox.recv()).await })
        {
            let what = match self.codec.decode(frames) {
                // As every IOPub receive does, skip the one late `starting`.
                Ok((_, msg)) if channel == Channel::Iopub && is_starting(&msg) => continue,
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

    /// Nothing arrives on IOPub for `within` (but the late `starting`, skipped).
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
    /// is alive, and that nothing earlier is still pending on shell or IOPub. The
    /// reply of a kernel this frontend owns must be the one it was configured with.
    #[track_caller]
    pub fn assert_kernel_alive(&mut self) -> KernelInfoReply {
        let id = self.send_shell("kernel_info_request", json!({}));
        self.recv_iopub_busy(&id);
        self.recv_iopub_idle(&id);
        let reply: KernelInfoReply = parse(&self.recv_shell_reply(&id, "kernel_info_reply"));
        if let Some(kernel) = &self.kernel {
            assert_eq!(reply, *kernel.kernel_info());
        }
        reply
    }

    /// Run `pass` and check its whole exchange: busy, execute_input, idle and the
    /// reply, the last two carrying execution count `count`.
    #[track_caller]
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
}
