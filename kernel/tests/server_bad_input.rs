//! The kernel server under bad input, seen from a raw frontend: unsigned,
//! wrongly signed, malformed and replayed frames on shell and control are
//! dropped without a reply or a status, and the kernel serves the next good
//! request. Receives are bounded by `pxkernel_testkit::TIMEOUT` as a failure
//! bound only; "nothing came" is shown by order or by a short quiet period.

use std::time::Duration;

use pxkernel_kernel::wire::DELIMITER;
use pxkernel_testkit::{Frontend, describe};
use serde_json::json;

/// Long enough to be a lower bound of "nothing came", short enough for a test suite.
const QUIET: Duration = Duration::from_millis(300);

/// The named kinds of bad frames, built from a correctly signed kernel_info_request.
fn bad_shell_inputs(fe: &Frontend) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let (_, good) = fe.frames("kernel_info_request", &json!({}));
    let mut cases = Vec::new();

    let mut wrong_hmac = good.clone();
    wrong_hmac[1] = fe.codec.sign([b"{}", b"{}", b"{}", b"{}"]);
    cases.push(("wrong HMAC", wrong_hmac));

    let mut unsigned = fe.frames("kernel_info_request", &json!({})).1;
    unsigned[1] = Vec::new();
    cases.push(("unsigned", unsigned));

    let mut no_delimiter = fe.frames("kernel_info_request", &json!({})).1;
    no_delimiter.remove(0);
    cases.push(("no delimiter", no_delimiter));

    let mut too_few = fe.frames("kernel_info_request", &json!({})).1;
    too_few.truncate(4);
    cases.push(("too few frames", too_few));

    cases.push((
        "malformed JSON header",
        fe.signed_frames([b"{\"msg_id\": \"m\", \"msg_type\":", b"{}", b"{}", b"{}"]),
    ));

    // (Invalid UTF-8 in content is replaced, as Python's json does; in a header it is refused.)
    cases.push((
        "non-UTF-8 header",
        fe.signed_frames([
            b"{\"msg_id\": \"\xff\xfe\", \"msg_type\": \"kernel_info_request\"}",
            b"{}",
            b"{}",
            b"{}",
        ]),
    ));

    let header = serde_json::to_vec(&fe.session.header("execute_request")).unwrap();
    cases.push((
        "content that is an array",
        fe.signed_frames([&header, b"{}", b"{}", b"[\"print:no\"]"]),
    ));

    cases.push((
        "header without msg_type",
        fe.signed_frames([br#"{"msg_id":"no-type"}"#, b"{}", b"{}", b"{}"]),
    ));
    cases
}

#[test]
fn bad_input_on_shell_is_dropped_without_reply_or_status() {
    let mut fe = Frontend::start();
    for (name, frames) in bad_shell_inputs(&fe) {
        fe.send_raw_shell(frames);
        // Order proves the drop: the next busy, idle and reply belong to this request.
        let id = fe.send_shell("kernel_info_request", json!({}));
        let msg = fe.recv_iopub();
        assert_eq!(
            (msg.msg_type(), msg.parent_id()),
            ("status", Some(id.as_str())),
            "after {name}: {}",
            describe(&msg)
        );
        fe.recv_iopub_idle(&id);
        let reply = fe.recv_shell();
        assert_eq!(
            reply.parent_id(),
            Some(id.as_str()),
            "after {name}: {}",
            describe(&reply)
        );
    }
    // Still alive and still counting from 1.
    let id = fe.send_execute("print:alive");
    fe.recv_iopub_busy(&id);
    assert_eq!(fe.recv_iopub_execute_input(&id).execution_count, 1);
    assert_eq!(fe.recv_iopub_stream(&id).text, "alive");
    fe.recv_iopub_idle(&id);
    assert_eq!(fe.recv_shell_execute_reply(&id).status, "ok");
}

#[test]
fn bad_input_all_at_once_then_a_good_request() {
    let mut fe = Frontend::start();
    for (_, frames) in bad_shell_inputs(&fe) {
        fe.send_raw_shell(frames);
    }
    fe.assert_kernel_alive();
}

#[test]
fn bad_input_replayed_request_is_answered_once() {
    let mut fe = Frontend::start();
    let (id, frames) = fe.frames("execute_request", &json!({"code": "print:once"}));
    fe.send_raw_shell(frames.clone());
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_execute_input(&id);
    assert_eq!(fe.recv_iopub_stream(&id).text, "once");
    fe.recv_iopub_idle(&id);
    assert_eq!(fe.recv_shell_execute_reply(&id).execution_count, Some(1));

    fe.send_raw_shell(frames);
    fe.assert_no_shell_message_within(QUIET);
    fe.assert_no_iopub_message_within(Duration::ZERO);
    // The next reply answers a new request, and the replay did not run or count.
    fe.run_pass_counted(2);
}

#[test]
fn bad_input_on_control_is_dropped() {
    let mut fe = Frontend::start();
    let mut wrong = fe.frames("shutdown_request", &json!({"restart": false})).1;
    wrong[1] = fe.codec.sign([b"{}", b"{}", b"{}", b"{}"]);
    fe.send_raw_control(wrong);
    let mut unsigned = fe.frames("shutdown_request", &json!({"restart": false})).1;
    unsigned[1] = Vec::new();
    fe.send_raw_control(unsigned);
    fe.send_raw_control(vec![DELIMITER.to_vec(), b"x".to_vec()]);

    let id = fe.send_control("kernel_info_request", json!({}));
    fe.recv_iopub_busy(&id);
    fe.recv_iopub_idle(&id);
    fe.recv_control_reply(&id, "kernel_info_reply");
    assert!(
        fe.state().shutdowns().is_empty(),
        "a forged shutdown was obeyed"
    );
    fe.assert_server_running();
}
