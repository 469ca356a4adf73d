//! The kernel server seen from a raw frontend: every test reads as a protocol
//! transcript. Receives are bounded by `pxkernel_testkit::TIMEOUT` as a failure bound only;
//! nothing asserts how long anything took. Where a test must show that something
//! did *not* happen, it relies on order (shell requests are served one at a time,
//! and each socket delivers in order): the next message answers a later request.

use std::time::Duration;

use pxkernel_kernel::protocol::content::{
    CompleteReply, IopubWelcome, KernelInfoReply, Shutdown, StatusReply,
};
use pxkernel_kernel::server::{InputError, Stopped};
use pxkernel_testkit::{AfterRun, Config, Frontend, fixed_complete_reply};
use serde_json::json;

/// Long enough to be a lower bound of "nothing came", short enough for a test suite.
const QUIET: Duration = Duration::from_millis(300);

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

fn of(seen: &[(String, String)], parent: &str) -> Vec<String> {
    seen.iter()
        .filter(|(p, _)| p == parent)
        .map(|(_, what)| what.clone())
        .collect()
}

// ---------------------------------------------------------------- iopub

#[test]
fn iopub_welcome_arrives_after_subscribing_before_anything_is_sent() {
    // Frontend::start sends nothing: it only subscribes and waits.
    let fe = Frontend::start();
    let welcome = fe.welcome();
    assert_eq!(welcome.msg_type(), "iopub_welcome");
    assert!(welcome.parent_header.is_none());
    let content: IopubWelcome = welcome.parse_content().unwrap();
    assert_eq!(content.subscription, "");
}

#[test]
fn iopub_messages_carry_the_kernel_topic() {
    let mut fe = Frontend::start();
    let id = fe.send_execute("print:x");
    let (topic, busy) = fe.recv_iopub_with_topic();
    assert_eq!(busy.msg_type(), "status");
    assert_eq!(busy.parent_id(), Some(id.as_str()));
    let expected = format!("kernel.{}.status", busy.header.session);
    assert_eq!(topic, vec![expected.into_bytes()]);
    assert_ne!(
        busy.header.session,
        fe.session.id(),
        "the kernel's own session"
    );
}

// ---------------------------------------------------------------- execute

#[test]
fn execute_busy_input_stream_reply_idle() {
    let mut fe = Frontend::start();
    let id = fe.send_execute("print:hello");

    fe.recv_iopub_busy(&id);
    let input = fe.recv_iopub_execute_input(&id);
    assert_eq!(input.code, "print:hello");
    assert_eq!(input.execution_count, 1);
    let out = fe.recv_iopub_stream(&id);
    assert_eq!((out.name.as_str(), out.text.as_str()), ("stdout", "hello"));
    fe.recv_iopub_idle(&id);

    let reply = fe.recv_shell_execute_reply(&id);
    assert_eq!(reply.status, "ok");
    assert_eq!(reply.execution_count, Some(1));
}

#[test]
fn execute_counts_each_execution() {
    let mut fe = Frontend::start();
    for n in 1..=3 {
        let id = fe.send_execute("pass");
        fe.recv_iopub_busy(&id);
        assert_eq!(fe.recv_iopub_execute_input(&id).execution_count, n);
        fe.recv_iopub_idle(&id);
        let reply = fe.recv_shell_execute_reply(&id);
        assert_eq!(reply.execution_count, Some(n));
    }
}

#[test]
fn execute_silent_publishes_no_input_and_does_not_count() {
    let mut fe = Frontend::start();
    fe.run_pass_counted(1);

    let silent = fe.send_execute_with("pass", json!({"silent": true}));
    fe.recv_iopub_busy(&silent);
    fe.recv_iopub_idle(&silent); // no execute_input in between
    let reply = fe.recv_shell_execute_reply(&silent);
    assert_eq!(reply.status, "ok");
    assert_eq!(reply.execution_count, Some(1));

    fe.run_pass_counted(2);
}

#[test]
fn execute_without_store_history_does_not_count() {
    let mut fe = Frontend::start();
    fe.run_pass_counted(1);

    let unstored = fe.send_execute_with("print:u", json!({"store_history": false}));
    fe.recv_iopub_busy(&unstored);
    assert_eq!(fe.recv_iopub_execute_input(&unstored).execution_count, 1);
    assert_eq!(fe.recv_iopub_stream(&unstored).text, "u");
    fe.recv_iopub_idle(&unstored);
    assert_eq!(
        fe.recv_shell_execute_reply(&unstored).execution_count,
        Some(1)
    );

    fe.run_pass_counted(2);
}

#[test]
fn execute_error_publishes_error_and_replies_error() {
    let mut fe = Frontend::start();
    let id = fe.send_execute("error");
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_execute_input(&id);
    let err = fe.recv_iopub_error(&id);
    assert_eq!(
        (err.ename.as_str(), err.evalue.as_str()),
        ("TestError", "boom")
    );
    fe.recv_iopub_idle(&id);
    let reply = fe.recv_shell_execute_reply(&id);
    assert_eq!(reply.status, "error");
    assert_eq!(reply.ename.as_deref(), Some("TestError"));
    assert_eq!(reply.evalue.as_deref(), Some("boom"));
    assert_eq!(reply.traceback, Some(vec!["TestError: boom".to_owned()]));
    assert_eq!(reply.execution_count, Some(1));
}

#[test]
fn execute_request_without_code_gets_a_bad_request_error_reply() {
    let mut fe = Frontend::start();
    // Signed and well-formed on the wire, but not a valid execute_request.
    let id = fe.send_shell("execute_request", json!({"silent": false}));
    fe.recv_iopub_busy(&id);
    let err = fe.recv_iopub_error(&id);
    assert_eq!(err.ename, "BadRequest");
    fe.recv_iopub_idle(&id);
    let reply = fe.recv_shell_execute_reply(&id);
    assert_eq!(reply.status, "error");
    assert_eq!(reply.ename.as_deref(), Some("BadRequest"));
    let evalue = reply.evalue.unwrap_or_default();
    assert!(evalue.contains("execute_request"), "{evalue}");
    assert!(evalue.contains("code"), "{evalue}");
    assert_eq!(reply.execution_count, Some(0), "nothing was counted");
    fe.assert_kernel_alive();
}

// ---------------------------------------------------------------- kernel_info

#[test]
fn kernel_info_is_answered_on_shell() {
    let mut fe = Frontend::start();
    let id = fe.send_shell("kernel_info_request", json!({}));
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_idle(&id);
    let reply = fe.recv_shell_reply(&id, "kernel_info_reply");
    let info: KernelInfoReply = reply.parse_content().unwrap();
    assert_eq!(info.language_info.name, "test");
    assert_eq!(info.status, "ok");
    assert_eq!(info.protocol_version, "5.5");
}

#[test]
fn kernel_info_is_answered_on_control() {
    let mut fe = Frontend::start();
    let id = fe.send_control("kernel_info_request", json!({}));
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_idle(&id);
    let reply = fe.recv_control_reply(&id, "kernel_info_reply");
    let info: KernelInfoReply = reply.parse_content().unwrap();
    assert_eq!(info.language_info.name, "test");
    // The reply went to control only: shell gets the answer to a later request first.
    fe.assert_kernel_alive();
}

// ---------------------------------------------------------------- stop_on_error

#[test]
fn stop_on_error_aborts_queued_executes_but_answers_other_requests() {
    let mut fe = Frontend::start();
    // The failing cell waits at its gate until everything behind it has been sent.
    let failing = fe.send_execute("gate;error");
    let queued_1 = fe.send_execute("print:never-1");
    let complete = fe.send_shell("complete_request", json!({"code": "com", "cursor_pos": 3}));
    let queued_2 = fe.send_execute("print:never-2");

    fe.recv_iopub_busy(&failing);
    assert_eq!(fe.recv_iopub_execute_input(&failing).execution_count, 1);
    // A control round trip while the cell waits: by its end, the requests sent
    // right behind the failing one have long reached the kernel.
    let info = fe.send_control("kernel_info_request", json!({}));
    fe.recv_iopub_busy(&info);
    fe.recv_iopub_idle(&info);
    fe.recv_control_reply(&info, "kernel_info_reply");
    fe.open_gate();

    fe.recv_iopub_error(&failing);
    fe.recv_iopub_idle(&failing);
    let reply = fe.recv_shell_execute_reply(&failing);
    assert_eq!(reply.status, "error");

    // Aborted: busy and idle, no execute_input, no output.
    fe.recv_iopub_busy(&queued_1);
    fe.recv_iopub_idle(&queued_1);
    let reply = fe.recv_shell_execute_reply(&queued_1);
    assert_eq!(reply.status, "aborted");

    fe.recv_iopub_busy(&complete);
    fe.recv_iopub_idle(&complete);
    let reply: CompleteReply = fe
        .recv_shell_reply(&complete, "complete_reply")
        .parse_content()
        .unwrap();
    assert_eq!(reply, fixed_complete_reply());

    fe.recv_iopub_busy(&queued_2);
    fe.recv_iopub_idle(&queued_2);
    let reply = fe.recv_shell_execute_reply(&queued_2);
    assert_eq!(reply.status, "aborted");

    // Sent after the error reply arrived: runs, and aborted cells were not counted.
    let after = fe.send_execute("print:runs");
    fe.recv_iopub_busy(&after);
    assert_eq!(fe.recv_iopub_execute_input(&after).execution_count, 2);
    assert_eq!(fe.recv_iopub_stream(&after).text, "runs");
    fe.recv_iopub_idle(&after);
    let reply = fe.recv_shell_execute_reply(&after);
    assert_eq!(reply.status, "ok");
    assert_eq!(reply.execution_count, Some(2));
}

#[test]
fn stop_on_error_false_does_not_abort() {
    let mut fe = Frontend::start();
    let failing = fe.send_execute_with("gate;error", json!({"stop_on_error": false}));
    let queued = fe.send_execute("print:still-runs");

    fe.recv_iopub_busy(&failing);
    fe.recv_iopub_execute_input(&failing);
    let info = fe.send_control("kernel_info_request", json!({}));
    fe.recv_iopub_busy(&info);
    fe.recv_iopub_idle(&info);
    fe.recv_control_reply(&info, "kernel_info_reply");
    fe.open_gate();

    fe.recv_iopub_error(&failing);
    fe.recv_iopub_idle(&failing);
    assert_eq!(fe.recv_shell_execute_reply(&failing).status, "error");

    fe.recv_iopub_busy(&queued);
    assert_eq!(fe.recv_iopub_execute_input(&queued).execution_count, 2);
    assert_eq!(fe.recv_iopub_stream(&queued).text, "still-runs");
    fe.recv_iopub_idle(&queued);
    assert_eq!(fe.recv_shell_execute_reply(&queued).status, "ok");
}

// ---------------------------------------------------------------- control while busy

/// Start a cell that only an interrupt ends, and wait until it runs.
#[track_caller]
fn start_long_cell(fe: &mut Frontend) -> String {
    let id = fe.send_execute("sleep:600000");
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_execute_input(&id);
    id
}

#[test]
fn control_kernel_info_is_answered_while_shell_is_busy() {
    let mut fe = Frontend::start();
    let cell = start_long_cell(&mut fe);

    let info = fe.send_control("kernel_info_request", json!({}));
    fe.recv_iopub_busy(&info);
    fe.recv_iopub_idle(&info);
    fe.recv_control_reply(&info, "kernel_info_reply");
    // The cell cannot have finished: only an interrupt ends it.
    assert_eq!(fe.state().interrupts(), 0);
    fe.assert_no_shell_message_within(QUIET);

    let interrupt = fe.send_control("interrupt_request", json!({}));
    fe.recv_control_reply(&interrupt, "interrupt_reply");
    let reply = fe.recv_shell_execute_reply(&cell);
    assert_eq!(reply.ename.as_deref(), Some("KeyboardInterrupt"));
}

#[test]
fn control_interrupt_reaches_the_handler_while_shell_is_busy() {
    let mut fe = Frontend::start();
    let cell = start_long_cell(&mut fe);

    let interrupt = fe.send_control("interrupt_request", json!({}));
    let reply: StatusReply = fe
        .recv_control_reply(&interrupt, "interrupt_reply")
        .parse_content()
        .unwrap();
    assert_eq!(reply.status, "ok");
    assert_eq!(fe.state().interrupts(), 1);

    // The interrupted cell ends with an error; both requests go idle.
    let seen = fe.recv_iopub_until_idle(&[&interrupt, &cell]);
    assert_eq!(of(&seen, &interrupt), ["busy", "idle"]);
    assert_eq!(of(&seen, &cell), ["error", "idle"]);
    let reply = fe.recv_shell_execute_reply(&cell);
    assert_eq!(reply.status, "error");
    assert_eq!(reply.ename.as_deref(), Some("KeyboardInterrupt"));

    // Shell serves the next request.
    fe.assert_kernel_alive();
}

#[test]
fn control_unknown_request_gets_an_unsupported_error_reply() {
    let mut fe = Frontend::start();
    let id = fe.send_control("frobnicate_request", json!({}));
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_idle(&id);
    let reply = fe.recv_control_reply(&id, "frobnicate_reply").content_map();
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["ename"], "UnsupportedRequest");
}

// ---------------------------------------------------------------- heartbeat

#[test]
fn heartbeat_echoes() {
    let mut fe = Frontend::start();
    fe.heartbeat(b"ping");
    fe.heartbeat(b"\x00\xffbinary ping");
}

#[test]
fn heartbeat_echoes_while_shell_is_busy() {
    let mut fe = Frontend::start();
    let cell = start_long_cell(&mut fe);
    fe.heartbeat(b"ping while busy");
    // Still busy: the cell only ends when interrupted.
    let interrupt = fe.send_control("interrupt_request", json!({}));
    fe.recv_control_reply(&interrupt, "interrupt_reply");
    assert_eq!(
        fe.recv_shell_execute_reply(&cell).ename.as_deref(),
        Some("KeyboardInterrupt")
    );
}

// ---------------------------------------------------------------- stdin

#[test]
fn stdin_input_request_is_answered_by_the_frontend() {
    let mut fe = Frontend::start();
    let id = fe.send_execute("input:Name?");
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_execute_input(&id);

    let (request, content) = fe.recv_stdin_input_request(&id);
    assert_eq!(content.prompt, "Name?");
    assert!(!content.password);
    fe.send_input_reply(&request, "Ada");

    let out = fe.recv_iopub_stream(&id);
    assert_eq!((out.name.as_str(), out.text.as_str()), ("stdout", "Ada"));
    fe.recv_iopub_idle(&id);
    assert_eq!(fe.recv_shell_execute_reply(&id).status, "ok");
}

#[test]
fn stdin_not_allowed_when_the_request_says_so() {
    let mut fe = Frontend::start();
    let id = fe.send_execute_with("input:Name?", json!({"allow_stdin": false}));
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_execute_input(&id);
    let out = fe.recv_iopub_stream(&id);
    assert_eq!(out.name, "stderr");
    assert_eq!(out.text, InputError::NotAllowed.to_string());
    fe.recv_iopub_idle(&id);
    assert_eq!(fe.recv_shell_execute_reply(&id).status, "ok");
    fe.assert_no_stdin_message_within(QUIET);
}

#[test]
fn stdin_reply_to_nothing_is_dropped() {
    let mut fe = Frontend::start();
    let stray = std::sync::Arc::new(fe.session.header("input_request"));
    fe.send_input_reply(&stray, "nobody asked");
    // A later real exchange is unaffected.
    let id = fe.send_execute("input:again?");
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_execute_input(&id);
    let (request, content) = fe.recv_stdin_input_request(&id);
    assert_eq!(content.prompt, "again?");
    fe.send_input_reply(&request, "yes");
    assert_eq!(fe.recv_iopub_stream(&id).text, "yes");
    fe.recv_iopub_idle(&id);
    fe.recv_shell_execute_reply(&id);
}

#[test]
fn stdin_reply_without_parent_answers_the_pending_request() {
    let mut fe = Frontend::start();
    let id = fe.send_execute("input:Who?");
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_execute_input(&id);
    let (_, content) = fe.recv_stdin_input_request(&id);
    assert_eq!(content.prompt, "Who?");
    fe.send_input_reply_without_parent("Grace");
    assert_eq!(fe.recv_iopub_stream(&id).text, "Grace");
    fe.recv_iopub_idle(&id);
    assert_eq!(fe.recv_shell_execute_reply(&id).status, "ok");
}

#[test]
fn stdin_stale_reply_of_an_interrupted_cell_does_not_answer_the_next_one() {
    let mut fe = Frontend::start();
    let first = fe.send_execute("input:first?");
    fe.recv_iopub_busy(&first);
    fe.recv_iopub_execute_input(&first);
    let (abandoned, _) = fe.recv_stdin_input_request(&first);
    let interrupt = fe.send_control("interrupt_request", json!({}));
    fe.recv_control_reply(&interrupt, "interrupt_reply");
    let reply = fe.recv_shell_execute_reply(&first);
    assert_eq!(reply.ename.as_deref(), Some("KeyboardInterrupt"));
    fe.recv_iopub_until_idle(&[&interrupt, &first]);

    let second = fe.send_execute("input:second?");
    fe.recv_iopub_busy(&second);
    fe.recv_iopub_execute_input(&second);
    let (asked, content) = fe.recv_stdin_input_request(&second);
    assert_eq!(content.prompt, "second?");
    // The user's late answer to the first question arrives first, on the same socket.
    fe.send_input_reply(&abandoned, "late answer to first");
    fe.send_input_reply(&asked, "answer to second");
    assert_eq!(fe.recv_iopub_stream(&second).text, "answer to second");
    fe.recv_iopub_idle(&second);
    assert_eq!(fe.recv_shell_execute_reply(&second).status, "ok");
}

// ---------------------------------------------------------------- other shell requests

#[test]
fn complete_request_is_answered_by_the_handler() {
    let mut fe = Frontend::start();
    let id = fe.send_shell("complete_request", json!({"code": "com", "cursor_pos": 3}));
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_idle(&id);
    let reply: CompleteReply = fe
        .recv_shell_reply(&id, "complete_reply")
        .parse_content()
        .unwrap();
    assert_eq!(reply, fixed_complete_reply());
    assert_eq!(fe.state().shell_requests(), ["complete_request"]);
}

#[test]
fn unknown_msg_type_on_shell_goes_to_the_handler_without_reply() {
    let mut fe = Frontend::start();
    let unknown = fe.send_shell("frobnicate_request", json!({"x": 1}));
    fe.recv_iopub_busy(&unknown);
    fe.recv_iopub_idle(&unknown);
    let comm = fe.send_shell("comm_msg", json!({"comm_id": "c", "data": {}}));
    fe.recv_iopub_busy(&comm);
    fe.recv_iopub_idle(&comm);
    // No reply to either: the next shell message answers this request.
    let id = fe.send_shell("kernel_info_request", json!({}));
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_idle(&id);
    fe.recv_shell_reply(&id, "kernel_info_reply");
    assert_eq!(
        fe.state().shell_requests(),
        ["frobnicate_request", "comm_msg"]
    );
}

#[test]
fn request_from_a_5_0_peer_is_answered() {
    let mut fe = Frontend::start();
    // No version and no date, as protocol 5.0 frontends send.
    let header = br#"{"msg_id":"old-peer-1","session":"old-session","username":"old","msg_type":"kernel_info_request"}"#;
    fe.send_raw_shell(fe.signed_frames([header, b"{}", b"{}", b"{}"]));
    fe.recv_iopub_busy("old-peer-1");
    fe.recv_iopub_idle("old-peer-1");
    let reply = fe.recv_shell_reply("old-peer-1", "kernel_info_reply");
    let parent = reply.parent_header.unwrap();
    assert_eq!(parent.version, "5.0");
    assert_eq!(parent.session, "old-session");

    let header = br#"{"msg_id":"old-peer-2","session":"old-session","username":"old","msg_type":"execute_request"}"#;
    fe.send_raw_shell(fe.signed_frames([header, b"{}", b"{}", br#"{"code":"print:old"}"#]));
    fe.recv_iopub_busy("old-peer-2");
    fe.recv_iopub_execute_input("old-peer-2");
    assert_eq!(fe.recv_iopub_stream("old-peer-2").text, "old");
    fe.recv_iopub_idle("old-peer-2");
    assert_eq!(fe.recv_shell_execute_reply("old-peer-2").status, "ok");
}

#[test]
fn request_from_a_5_5_peer_keeps_its_subshell_id_in_the_parent() {
    let mut fe = Frontend::start();
    let mut msg = fe.message("kernel_info_request", &json!({}));
    std::sync::Arc::make_mut(&mut msg.header)
        .extra
        .insert("subshell_id".to_owned(), json!("sub-1"));
    let id = msg.header.msg_id.clone();
    fe.send_raw_shell(fe.codec.encode(&[], &msg));
    let busy = fe.recv_iopub_of("status", &id);
    assert_eq!(busy.parent_header.unwrap().extra["subshell_id"], "sub-1");
    fe.recv_iopub_idle(&id);
    let reply = fe.recv_shell_reply(&id, "kernel_info_reply");
    assert_eq!(reply.parent_header.unwrap().extra["subshell_id"], "sub-1");
}

// ---------------------------------------------------------------- shutdown

#[test]
fn shutdown_request_on_control_stops_the_server() {
    let mut fe = Frontend::start();
    let id = fe.send_control("shutdown_request", json!({"restart": false}));
    let reply: Shutdown = fe
        .recv_control_reply(&id, "shutdown_reply")
        .parse_content()
        .unwrap();
    assert_eq!(
        reply,
        Shutdown {
            restart: false,
            status: Some("ok".to_owned())
        }
    );
    assert_eq!(fe.state().shutdowns(), [false]);
    assert_eq!(fe.wait_stopped(), Stopped::Shutdown { restart: false });
    assert_eq!(
        fe.recv_iopub_until_idle(&[&id]),
        pairs(&[(&id, "busy"), (&id, "idle")])
    );
}

#[test]
fn shutdown_request_with_restart_on_shell_stops_the_server() {
    let mut fe = Frontend::start();
    let id = fe.send_shell("shutdown_request", json!({"restart": true}));
    let reply: Shutdown = fe
        .recv_shell_reply(&id, "shutdown_reply")
        .parse_content()
        .unwrap();
    assert!(reply.restart);
    assert_eq!(reply.status.as_deref(), Some("ok"));
    assert_eq!(fe.state().shutdowns(), [true]);
    assert_eq!(fe.wait_stopped(), Stopped::Shutdown { restart: true });
}

#[test]
fn shutdown_reply_is_delivered_when_the_runtime_ends_with_run() {
    // As in the kernel binary: the runtime is dropped as soon as Server::run returns,
    // so the reply must have left the socket tasks by then.
    let mut fe = Frontend::start_with(Config {
        after_run: AfterRun::DropRuntime,
        ..Config::default()
    });
    let id = fe.send_control("shutdown_request", json!({"restart": false}));
    fe.recv_control_reply(&id, "shutdown_reply");
    assert_eq!(fe.wait_stopped(), Stopped::Shutdown { restart: false });
}
