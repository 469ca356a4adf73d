//! The fixture itself: the statements the kernel crate's tests do not use, its
//! connection file, its faults, and a real server with a handler of the test's
//! own. Receives are bounded by `TIMEOUT` as a failure bound only.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use pxkernel_kernel::protocol::content::{ExecuteRequest, KernelInfoReply, LanguageInfo};
use pxkernel_kernel::protocol::{ConnectionInfo, PROTOCOL_VERSION};
use pxkernel_kernel::server::{ExecuteOutcome, Handler, Publisher, Reply, Request, Stopped};
use pxkernel_testkit::{AfterRun, Config, FakeKernel, Frontend, KernelThread, test_kernel_info};
use serde_json::json;

/// Long enough to be a lower bound of "nothing came", short enough for a test suite.
const QUIET: Duration = Duration::from_millis(300);

#[test]
fn display_and_result_statements_publish_their_text() {
    let mut fe = Frontend::start();
    let id = fe.send_execute("display:a picture;result:the answer");
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_execute_input(&id);
    let display = fe.recv_iopub_display_data(&id);
    assert_eq!(
        display.data,
        json!({"text/plain": "a picture"})
            .as_object()
            .cloned()
            .unwrap()
    );
    let result = fe.recv_iopub_execute_result(&id);
    assert_eq!(result.data["text/plain"], "the answer");
    assert_eq!(result.execution_count, 1);
    fe.recv_iopub_idle(&id);
    assert_eq!(fe.recv_shell_execute_reply(&id).status, "ok");
}

#[test]
fn state_records_the_code_that_ran_but_not_aborted_cells() {
    let mut fe = Frontend::start();
    let failing = fe.send_execute("gate;error");
    let aborted = fe.send_execute("print:never");
    fe.recv_iopub_busy(&failing);
    fe.recv_iopub_execute_input(&failing);
    // A control round trip while the cell waits: the aborted request has arrived.
    let info = fe.send_control("kernel_info_request", json!({}));
    fe.recv_control_reply(&info, "kernel_info_reply");
    fe.open_gate();
    assert_eq!(fe.recv_shell_execute_reply(&failing).status, "error");
    assert_eq!(fe.recv_shell_execute_reply(&aborted).status, "aborted");
    fe.recv_iopub_until_idle(&[&info, &failing, &aborted]);
    fe.run_pass_counted(2);
    assert_eq!(fe.state().executed(), ["gate;error", "pass"]);
}

#[test]
fn configured_kernel_info_is_answered() {
    let mut kernel_info = test_kernel_info();
    kernel_info.language_info.name = "python".to_owned();
    let mut fe = Frontend::start_with(Config {
        kernel_info: kernel_info.clone(),
        ..Config::default()
    });
    assert_eq!(fe.assert_kernel_alive(), kernel_info);
}

#[test]
fn connection_file_is_private_and_describes_the_kernel() {
    let kernel = FakeKernel::start();
    let dir = tempfile::tempdir().unwrap();
    let file = kernel.write_connection_file(dir.path());
    assert_eq!(file.parent(), Some(dir.path()));
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("kernel-") && name.ends_with(".json"),
        "{name}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let read = ConnectionInfo::from_file(&file).unwrap();
    assert_eq!(&read, kernel.info());
    assert_eq!(
        (read.ip.as_str(), read.signature_scheme.as_str()),
        ("127.0.0.1", "hmac-sha256")
    );
    assert_eq!(read.key.len(), 64, "32 random bytes, hex");
    // Each file is new.
    assert_ne!(kernel.write_connection_file(dir.path()), file);
}

#[test]
fn killed_kernel_closes_every_port() {
    let mut fe = Frontend::start();
    fe.heartbeat(b"alive");
    let info = fe.info.clone();
    fe.kernel_mut().kill();
    for port in [
        info.shell_port,
        info.iopub_port,
        info.stdin_port,
        info.control_port,
        info.hb_port,
    ] {
        let refused = std::net::TcpStream::connect(("127.0.0.1", port));
        assert!(refused.is_err(), "port {port} still accepts connections");
    }
    // Killing twice is harmless; the info stays readable.
    fe.kernel_mut().kill();
    assert_eq!(fe.kernel().info(), &info);
}

#[test]
fn frozen_kernel_answers_nothing_until_thawed() {
    let mut fe = Frontend::start();
    fe.kernel_mut().freeze();
    let id = fe.send_shell("kernel_info_request", json!({}));
    let ping = fe.send_control("kernel_info_request", json!({}));
    fe.assert_no_shell_message_within(QUIET);
    fe.assert_no_iopub_message_within(Duration::ZERO);
    fe.kernel_mut().thaw();
    fe.recv_shell_reply(&id, "kernel_info_reply");
    fe.recv_control_reply(&ping, "kernel_info_reply");
    fe.heartbeat(b"thawed");
}

#[test]
fn frozen_kernel_can_be_killed() {
    let mut kernel = FakeKernel::start();
    kernel.freeze();
    assert!(kernel.thread().is_frozen());
    kernel.kill();
    assert!(kernel.thread().is_killed());
}

#[test]
fn shutdown_then_stop() {
    let mut fe = Frontend::start_with(Config {
        after_run: AfterRun::KeepRuntime,
        ..Config::default()
    });
    let id = fe.send_shell("shutdown_request", json!({"restart": false}));
    fe.recv_shell_reply(&id, "shutdown_reply");
    assert_eq!(fe.wait_stopped(), Stopped::Shutdown { restart: false });
    fe.kernel_mut().kill();
}

/// A handler of the test's own: it announces itself between requests.
struct Greeter {
    publisher: Publisher,
}

impl Handler for Greeter {
    fn kernel_info(&self) -> KernelInfoReply {
        KernelInfoReply {
            language_info: LanguageInfo {
                name: "greeter".to_owned(),
                ..LanguageInfo::default()
            },
            protocol_version: PROTOCOL_VERSION.to_owned(),
            ..test_kernel_info()
        }
    }
    async fn execute(&self, _: &Request, content: &ExecuteRequest) -> ExecuteOutcome {
        self.publisher.publish(
            "stream",
            &json!({"name": "stdout", "text": content.code}),
            None,
        );
        ExecuteOutcome::ok()
    }
    async fn shell(&self, _: &Request) -> Option<Reply> {
        None
    }
    async fn interrupt(&self) {}
    async fn shutdown(&self, _: bool) {}
}

#[test]
fn kernel_thread_serves_any_handler() {
    let thread = KernelThread::spawn(AfterRun::KeepRuntime, |publisher| async move {
        Greeter { publisher }
    });
    let mut fe = Frontend::connect(thread.info());
    assert_eq!(fe.assert_kernel_alive().language_info.name, "greeter");
    let id = fe.send_execute("hello");
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_execute_input(&id);
    let out = fe.recv_iopub();
    assert_eq!((out.msg_type(), out.parent_id()), ("stream", None));
    fe.recv_iopub_idle(&id);
    assert_eq!(fe.recv_shell_execute_reply(&id).status, "ok");
    thread.stop();
}
