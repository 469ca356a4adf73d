//! [`FakeKernel`]: a real kernel server, with a scriptable handler instead of a
//! language, on a thread of its own — a stand-in for ipykernel (a home kernel, an
//! engine) in tests that must run without Python. What it runs is the code
//! language of [`script`]; what it saw is its [`State`].

pub mod script;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pxkernel_kernel::protocol::ConnectionInfo;
use pxkernel_kernel::protocol::content::KernelInfoReply;
use pxkernel_kernel::server::Stopped;

pub use script::{State, fixed_complete_reply, test_kernel_info};

use crate::thread::{AfterRun, KernelThread};
use script::ScriptHandler;

/// How a [`FakeKernel`] is started.
#[derive(Clone, Debug)]
pub struct Config {
    /// What its thread does once `Server::run` has returned.
    pub after_run: AfterRun,
    /// What it answers to `kernel_info_request` (default: [`test_kernel_info`]).
    pub kernel_info: KernelInfoReply,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            after_run: AfterRun::KeepRuntime,
            kernel_info: test_kernel_info(),
        }
    }
}

/// A scriptable kernel on free 127.0.0.1 ports with a random key, served by the
/// kernel crate's real [`Server`](pxkernel_kernel::server::Server) on its own
/// thread. Dropping it kills it.
pub struct FakeKernel {
    thread: KernelThread,
    state: Arc<State>,
    kernel_info: KernelInfoReply,
}

impl FakeKernel {
    /// Start a fake kernel with the default [`Config`]; returns once its sockets
    /// are bound (connecting clients need not wait for anything else).
    #[track_caller]
    pub fn start() -> FakeKernel {
        FakeKernel::start_with(Config::default())
    }

    /// [`FakeKernel::start`] with a [`Config`].
    #[track_caller]
    pub fn start_with(config: Config) -> FakeKernel {
        let state = Arc::new(State::default());
        let handler = ScriptHandler {
            state: state.clone(),
            kernel_info: config.kernel_info.clone(),
        };
        let thread = KernelThread::spawn(config.after_run, move |_| async move { handler });
        FakeKernel {
            thread,
            state,
            kernel_info: config.kernel_info,
        }
    }

    /// Its connection info.
    pub fn info(&self) -> &ConnectionInfo {
        self.thread.info()
    }

    /// What it answers to `kernel_info_request`.
    pub fn kernel_info(&self) -> &KernelInfoReply {
        &self.kernel_info
    }

    /// What its handler saw.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Let a `gate` statement of the running (or next) cell proceed.
    pub fn open_gate(&self) {
        self.state.open_gate();
    }

    /// Write its connection file into `dir` (`kernel-<uuid>.json`, mode 0600).
    #[track_caller]
    pub fn write_connection_file(&self, dir: &Path) -> PathBuf {
        self.thread.write_connection_file(dir)
    }

    /// The thread it runs on.
    pub fn thread(&self) -> &KernelThread {
        &self.thread
    }

    /// How `Server::run` ended, once it has (a `shutdown_request` was answered).
    #[track_caller]
    pub fn wait_stopped(&self) -> Stopped {
        self.thread.wait_stopped()
    }

    /// `Server::run` has not returned.
    #[track_caller]
    pub fn assert_running(&self) {
        self.thread.assert_running();
    }

    /// Hang it: sockets open, nothing answered, heartbeat included
    /// ([`KernelThread::freeze`]).
    #[track_caller]
    pub fn freeze(&mut self) {
        self.thread.freeze();
    }

    /// Let it run again after [`freeze`](FakeKernel::freeze).
    #[track_caller]
    pub fn thaw(&mut self) {
        self.thread.thaw();
    }

    /// Kill it: no reply, sockets closed, heartbeat gone ([`KernelThread::kill`]).
    #[track_caller]
    pub fn kill(&mut self) {
        self.thread.kill();
    }

    /// Stop it and wait for its thread to end (what dropping it does).
    #[track_caller]
    pub fn stop(self) {
        self.thread.stop();
    }
}
