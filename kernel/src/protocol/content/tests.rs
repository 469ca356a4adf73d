//! Cases for message content: spec defaults, tolerance of unknown types and fields,
//! and every message type parsing to its own variant and round-tripping.

use super::*;
use crate::protocol::Session;
use serde_json::json;

fn msg(msg_type: &str, content: Value) -> Message {
    Session::new("t").message(msg_type, &content, None)
}

#[test]
fn execute_request_defaults_follow_the_spec() {
    let Content::ExecuteRequest(r) =
        Content::parse(&msg("execute_request", json!({"code": "1"}))).unwrap()
    else {
        panic!("wrong variant")
    };
    assert!(r.store_history && r.allow_stdin && r.stop_on_error && !r.silent);
}

#[test]
fn execute_request_without_code_is_an_error() {
    let e = Content::parse(&msg("execute_request", json!({"silent": true}))).unwrap_err();
    assert!(e.to_string().contains("execute_request"), "{e}");
    assert!(e.to_string().contains("code"), "{e}");
}

#[test]
fn unknown_type_keeps_its_content() {
    let c = Content::parse(&msg("frobnicate_request", json!({"x": [1, 2]}))).unwrap();
    assert_eq!(
        c,
        Content::Unknown {
            msg_type: "frobnicate_request".into(),
            content: json!({"x": [1, 2]})
        }
    );
}

#[test]
fn unknown_fields_are_tolerated() {
    let c = Content::parse(&msg(
        "stream",
        json!({"name": "stdout", "text": "hi", "future_field": 1}),
    ))
    .unwrap();
    assert_eq!(
        c,
        Content::Stream(Stream {
            name: "stdout".into(),
            text: "hi".into()
        })
    );
}

#[test]
fn language_info_keeps_extra_fields() {
    let li: LanguageInfo = serde_json::from_value(json!({
        "name": "python", "version": "3.11", "mimetype": "text/x-python",
        "codemirror_mode": {"name": "ipython", "version": 3}, "extra_thing": true
    }))
    .unwrap();
    assert_eq!(li.extra["extra_thing"], true);
    let back = serde_json::to_value(&li).unwrap();
    assert_eq!(back["codemirror_mode"]["version"], 3);
    assert_eq!(back["extra_thing"], true);
}

/// The message type a parsed variant stands for, and its content as it would be
/// sent again. Exhaustive: a new variant must say which type it is.
fn wire_form(c: &Content) -> (String, Value) {
    fn json<T: Serialize>(t: &T) -> Value {
        serde_json::to_value(t).expect("content serializes")
    }
    let (t, v) = match c {
        Content::ExecuteRequest(x) => ("execute_request", json(x)),
        Content::ExecuteReply(x) => ("execute_reply", json(x)),
        Content::InspectRequest(x) => ("inspect_request", json(x)),
        Content::InspectReply(x) => ("inspect_reply", json(x)),
        Content::CompleteRequest(x) => ("complete_request", json(x)),
        Content::CompleteReply(x) => ("complete_reply", json(x)),
        Content::HistoryRequest(x) => ("history_request", json(x)),
        Content::HistoryReply(x) => ("history_reply", json(x)),
        Content::IsCompleteRequest(x) => ("is_complete_request", json(x)),
        Content::IsCompleteReply(x) => ("is_complete_reply", json(x)),
        Content::KernelInfoRequest => ("kernel_info_request", json!({})),
        Content::KernelInfoReply(x) => ("kernel_info_reply", json(x)),
        Content::CommInfoRequest(x) => ("comm_info_request", json(x)),
        Content::CommInfoReply(x) => ("comm_info_reply", json(x)),
        Content::CommOpen(x) => ("comm_open", json(x)),
        Content::CommMsg(x) => ("comm_msg", json(x)),
        Content::CommClose(x) => ("comm_close", json(x)),
        Content::ShutdownRequest(x) => ("shutdown_request", json(x)),
        Content::ShutdownReply(x) => ("shutdown_reply", json(x)),
        Content::InterruptRequest => ("interrupt_request", json!({})),
        Content::InterruptReply(x) => ("interrupt_reply", json(x)),
        Content::InputRequest(x) => ("input_request", json(x)),
        Content::InputReply(x) => ("input_reply", json(x)),
        Content::Stream(x) => ("stream", json(x)),
        Content::DisplayData(x) => ("display_data", json(x)),
        Content::UpdateDisplayData(x) => ("update_display_data", json(x)),
        Content::ExecuteInput(x) => ("execute_input", json(x)),
        Content::ExecuteResult(x) => ("execute_result", json(x)),
        Content::Error(x) => ("error", json(x)),
        Content::Status(x) => ("status", json(x)),
        Content::ClearOutput(x) => ("clear_output", json(x)),
        Content::IopubWelcome(x) => ("iopub_welcome", json(x)),
        Content::Debug { msg_type, content } => (msg_type.as_str(), content.clone()),
        Content::Unknown { msg_type, .. } => panic!("{msg_type} parsed as an unknown type"),
    };
    (t.to_owned(), v)
}

#[test]
fn every_message_type_parses_to_its_own_variant_and_round_trips() {
    let cases = [
        ("execute_request", json!({"code": "1", "silent": true})),
        (
            "execute_reply",
            json!({"status": "ok", "execution_count": 3, "payload": [{"source": "page"}]}),
        ),
        (
            "inspect_request",
            json!({"code": "x", "cursor_pos": 1, "detail_level": 1}),
        ),
        (
            "inspect_reply",
            json!({"status": "ok", "found": true, "data": {"text/plain": "x"}, "metadata": {}}),
        ),
        ("complete_request", json!({"code": "pri", "cursor_pos": 3})),
        (
            "complete_reply",
            json!({"status": "ok", "matches": ["print"], "cursor_start": 0, "cursor_end": 3,
                   "metadata": {}}),
        ),
        (
            "history_request",
            json!({"hist_access_type": "tail", "n": 10}),
        ),
        (
            "history_reply",
            json!({"status": "ok", "history": [[1, 1, "x"]]}),
        ),
        ("is_complete_request", json!({"code": "for x in y:"})),
        (
            "is_complete_reply",
            json!({"status": "incomplete", "indent": "    "}),
        ),
        ("kernel_info_request", json!({})),
        (
            "kernel_info_reply",
            json!({"status": "ok", "protocol_version": "5.5", "implementation": "t",
                   "implementation_version": "1", "language_info": {"name": "python"},
                   "banner": "b"}),
        ),
        ("comm_info_request", json!({"target_name": "t"})),
        (
            "comm_info_reply",
            json!({"status": "ok", "comms": {"c": {"target_name": "t"}}}),
        ),
        (
            "comm_open",
            json!({"comm_id": "c", "target_name": "t", "data": {}}),
        ),
        ("comm_msg", json!({"comm_id": "c", "data": {"a": 1}})),
        ("comm_close", json!({"comm_id": "c", "data": {}})),
        ("shutdown_request", json!({"restart": true})),
        ("shutdown_reply", json!({"restart": false, "status": "ok"})),
        ("interrupt_request", json!({})),
        ("interrupt_reply", json!({"status": "ok"})),
        ("input_request", json!({"prompt": "> ", "password": true})),
        ("input_reply", json!({"value": "x"})),
        ("stream", json!({"name": "stderr", "text": "oops"})),
        (
            "display_data",
            json!({"data": {"text/plain": "x"}, "metadata": {}}),
        ),
        (
            "update_display_data",
            json!({"data": {}, "metadata": {}, "transient": {"display_id": "d"}}),
        ),
        ("execute_input", json!({"code": "1", "execution_count": 3})),
        (
            "execute_result",
            json!({"execution_count": 3, "data": {"text/plain": "1"}, "metadata": {}}),
        ),
        (
            "error",
            json!({"ename": "E", "evalue": "v", "traceback": ["t"]}),
        ),
        ("status", json!({"execution_state": "busy"})),
        ("clear_output", json!({"wait": true})),
        ("iopub_welcome", json!({"subscription": "kernel"})),
        (
            "debug_request",
            json!({"seq": 1, "type": "request", "command": "initialize"}),
        ),
        (
            "debug_reply",
            json!({"seq": 2, "type": "response", "success": true}),
        ),
        ("debug_event", json!({"event": "stopped"})),
    ];
    for (t, c) in cases {
        let parsed = Content::parse(&msg(t, c.clone())).unwrap_or_else(|e| panic!("{t}: {e}"));
        let (parsed_as, again) = wire_form(&parsed);
        assert_eq!(parsed_as, t, "{t} parsed as {parsed:?}");
        let reparsed = Content::parse(&msg(t, again)).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(reparsed, parsed, "{t} does not round-trip");
    }
}

#[test]
fn reply_types() {
    assert_eq!(reply_type("execute_request"), "execute_reply");
    assert_eq!(reply_type("kernel_info_request"), "kernel_info_reply");
    assert_eq!(reply_type("odd"), "odd_reply");
}
