//! The scriptable [`Handler`] behind a [`FakeKernel`](super::FakeKernel): its
//! code language, and the [`State`] it shares with the test.
//!
//! `code` is a `;`-separated list of statements:
//! - `print:TEXT` publishes TEXT on stdout;
//! - `display:TEXT` publishes a `display_data` whose bundle is TEXT as `text/plain`;
//! - `result:TEXT` publishes an `execute_result` (TEXT as `text/plain`, this
//!   execution's count);
//! - `error` publishes an error (`TestError: boom`) and fails the cell;
//! - `sleep:MS` sleeps MS milliseconds (an interrupt ends it with `KeyboardInterrupt`);
//! - `gate` waits until the test opens the gate ([`State::open_gate`]), or an interrupt;
//! - `input:PROMPT` asks for input and publishes the answer on stdout, or the
//!   `InputError` text on stderr (an interrupt abandons the question);
//! - `pass` (or nothing) does nothing.
//!
//! Anything else fails the cell with `UnknownStatement`.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pxkernel_kernel::protocol::content::{
    CompleteReply, DisplayData, ExecuteRequest, ExecuteResult, KernelInfoReply, LanguageInfo,
};
use pxkernel_kernel::protocol::{PROTOCOL_VERSION, text_bundle};
use pxkernel_kernel::server::{ExecuteOutcome, Handler, Reply, Request};
use serde_json::Map;
use tokio::sync::Notify;

/// What the fake kernel's handler saw, shared between its thread and the test.
#[derive(Debug, Default)]
pub struct State {
    interrupts: AtomicUsize,
    shutdowns: Mutex<Vec<bool>>,
    shell_requests: Mutex<Vec<String>>,
    executed: Mutex<Vec<String>>,
    interrupt: Notify,
    gate: Notify,
}

/// A lock that a panicked test thread cannot spoil for the others.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// How many times `Handler::interrupt` was called.
    pub fn interrupts(&self) -> usize {
        self.interrupts.load(Ordering::SeqCst)
    }

    /// The `restart` flag of every `Handler::shutdown` call.
    pub fn shutdowns(&self) -> Vec<bool> {
        lock(&self.shutdowns).clone()
    }

    /// The msg_type of every request that reached `Handler::shell` (everything
    /// but execute, kernel_info and shutdown requests).
    pub fn shell_requests(&self) -> Vec<String> {
        lock(&self.shell_requests).clone()
    }

    /// The code of every `execute_request` that reached `Handler::execute`, in
    /// order (requests aborted by `stop_on_error` never do).
    pub fn executed(&self) -> Vec<String> {
        lock(&self.executed).clone()
    }

    /// Let a `gate` statement of the running (or next) cell proceed.
    pub fn open_gate(&self) {
        self.gate.notify_one();
    }
}

/// The `kernel_info_reply` of a fake kernel unless configured otherwise:
/// language `test`, implementation `pxkernel-test`, protocol 5.5.
pub fn test_kernel_info() -> KernelInfoReply {
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

/// The scriptable kernel.
pub(crate) struct ScriptHandler {
    pub(crate) state: Arc<State>,
    pub(crate) kernel_info: KernelInfoReply,
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

impl ScriptHandler {
    /// Run `fut` unless an interrupt comes first (then `None`, and `fut` is dropped).
    async fn interruptible<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        let interrupted = self.state.interrupt.notified();
        tokio::select! {
            out = fut => Some(out),
            () = interrupted => None,
        }
    }
}

impl Handler for ScriptHandler {
    fn kernel_info(&self) -> KernelInfoReply {
        self.kernel_info.clone()
    }

    async fn execute(&self, req: &Request, content: &ExecuteRequest) -> ExecuteOutcome {
        lock(&self.state.executed).push(content.code.clone());
        for stmt in content.code.split(';').map(str::trim) {
            if stmt.is_empty() || stmt == "pass" {
                continue;
            }
            if let Some(text) = stmt.strip_prefix("print:") {
                req.stream("stdout", text);
            } else if let Some(text) = stmt.strip_prefix("display:") {
                let display = DisplayData {
                    data: text_bundle(text),
                    metadata: Map::new(),
                    transient: Map::new(),
                };
                req.publish("display_data", &display);
            } else if let Some(text) = stmt.strip_prefix("result:") {
                let result = ExecuteResult {
                    execution_count: req.execution_count,
                    data: text_bundle(text),
                    metadata: Map::new(),
                    transient: Map::new(),
                };
                req.publish("execute_result", &result);
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
        lock(&self.state.shell_requests).push(req.msg_type().to_owned());
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
        lock(&self.state.shutdowns).push(restart);
    }
}
