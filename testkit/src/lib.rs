//! Test fixtures for pxkernel's crates (dev-only, never published): fake kernels
//! served by the kernel crate's real [`Server`](pxkernel_kernel::server::Server),
//! and a raw frontend with intent-named receives in the style of ark/amalthea's
//! `DummyFrontend`. Tests of the router, the home-kernel proxy and px run against
//! [`FakeKernel`]s instead of ipykernel, so they need no Python.
//!
//! # Layout
//! - [`fake`]: [`FakeKernel`], a scriptable kernel (`print:hi;sleep:50;error`, see
//!   [`fake::script`]) with the [`State`] it shares with the test (interrupts,
//!   shutdowns, requests and code seen) and its [`Config`].
//! - [`thread`]: [`KernelThread`], a real server running any handler on its own
//!   thread on free 127.0.0.1 ports with a random key; connection files; faults
//!   (kill, freeze).
//! - [`frontend`]: [`Frontend`], raw client sockets and blocking receives, each
//!   bounded by [`TIMEOUT`] and reported at the test's line.
//! - `heartbeat` (private): the relay in front of the server's heartbeat echo that
//!   lets a frozen kernel stop answering it.
//!
//! The kernel crate uses this crate in its integration tests (`kernel/tests/`)
//! only: its unit tests would link a second copy of `pxkernel-kernel`.
//!
//! # Examples
//!
//! A protocol transcript against a fake kernel:
//!
//! ```
//! use pxkernel_testkit::Frontend;
//!
//! let mut fe = Frontend::start();
//! let id = fe.send_execute("print:hello;result:42");
//! fe.recv_iopub_busy(&id);
//! assert_eq!(fe.recv_iopub_execute_input(&id).execution_count, 1);
//! assert_eq!(fe.recv_iopub_stream(&id).text, "hello");
//! assert_eq!(fe.recv_iopub_execute_result(&id).data["text/plain"], "42");
//! fe.recv_iopub_idle(&id);
//! assert_eq!(fe.recv_shell_execute_reply(&id).status, "ok");
//! assert_eq!(fe.state().executed(), ["print:hello;result:42"]);
//! ```
//!
//! A fake kernel seen by the kernel crate's client, as a home kernel or an engine
//! is, then killed:
//!
//! ```
//! use std::time::Duration;
//! use pxkernel_kernel::client::{self, Event, HeartbeatPolicy};
//! use pxkernel_testkit::{FakeKernel, TIMEOUT};
//!
//! let mut kernel = FakeKernel::start();
//! let dir = tempfile::tempdir().unwrap();
//! let file = kernel.write_connection_file(dir.path());
//! let info = pxkernel_kernel::protocol::ConnectionInfo::from_file(&file).unwrap();
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! rt.block_on(async {
//!     let beat = HeartbeatPolicy { period: Duration::from_millis(100), misses: 2 };
//!     let (_tx, mut rx, kernel_info) =
//!         client::connect(&info, "test", TIMEOUT, Some(beat)).await.unwrap();
//!     assert_eq!(kernel_info.language_info.name, "test");
//!     kernel.kill();
//!     loop {
//!         match tokio::time::timeout(TIMEOUT, rx.recv()).await {
//!             Ok(Some(Event::HeartbeatLost)) => break,
//!             Ok(Some(_)) => continue,
//!             other => panic!("no HeartbeatLost: {other:?}"),
//!         }
//!     }
//! });
//! ```

pub mod fake;
pub mod frontend;
mod heartbeat;
pub mod thread;

use std::time::Duration;

pub use fake::{Config, FakeKernel, State, fixed_complete_reply, test_kernel_info};
pub use frontend::{Frontend, describe};
pub use thread::{AfterRun, KernelThread};

/// The failure bound of every receive and wait. Never a measured duration: a
/// correct kernel answers in milliseconds.
pub const TIMEOUT: Duration = Duration::from_secs(10);
