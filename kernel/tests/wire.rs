//! The wire format against independently computed golden vectors, and every kind
//! of bad input a peer (or an attacker) can send.
//!
//! The expected signatures were computed with Python's standard library, not with
//! this crate:
//!
//! ```text
//! python3 -c 'import hmac, hashlib
//! key = b"a0436f6c-1916-498b-8eb9-e81ab9368e84"
//! print(hmac.new(key, HEADER + PARENT + METADATA + CONTENT, hashlib.sha256).hexdigest())'
//! ```

use pxkernel_kernel::protocol::content::{Content, ExecuteRequest};
use pxkernel_kernel::protocol::{Header, Message, ProtocolError, Session};
use pxkernel_kernel::wire::{Codec, DELIMITER, WireError};

const KEY: &[u8] = b"a0436f6c-1916-498b-8eb9-e81ab9368e84";
const SCHEME: &str = "hmac-sha256";

/// An execute_request as jupyter_client would send it (fields in the order this
/// crate serializes a header, so re-encoding is byte-identical).
const HEADER: &[u8] = br#"{"msg_id":"6f1d2c3b-golden-0001","session":"9a8b7c6d-golden-session","username":"tester","date":"2024-01-02T03:04:05.000006Z","msg_type":"execute_request","version":"5.3"}"#;
const PARENT: &[u8] = b"{}";
const METADATA: &[u8] = br#"{"cellId":"c1"}"#;
/// Contains a non-ASCII character: the HMAC is over the UTF-8 bytes.
const CONTENT: &str = r#"{"code":"print('héllo')","silent":false,"store_history":true,"user_expressions":{},"allow_stdin":true,"stop_on_error":true}"#;
/// hmac.new(KEY, HEADER + PARENT + METADATA + CONTENT, sha256).hexdigest()
const SIGNATURE: &str = "6aed1ab26baaf7610109dbc5ca81fc414a636a61648568cb25feded6b6fec912";

/// A reply whose parent is the request above.
const REPLY_HEADER: &[u8] = br#"{"msg_id":"6f1d2c3b-golden-0002","session":"kernel-session","username":"kernel","date":"2024-01-02T03:04:05.100000Z","msg_type":"execute_reply","version":"5.5"}"#;
const REPLY_METADATA: &[u8] = b"{}";
const REPLY_CONTENT: &[u8] =
    br#"{"status":"ok","execution_count":1,"user_expressions":{},"payload":[]}"#;
/// hmac.new(KEY, REPLY_HEADER + HEADER + REPLY_METADATA + REPLY_CONTENT, sha256).hexdigest()
const REPLY_SIGNATURE: &str = "9892712bd430d4383114741f61d78da9f93444e5492bc7a8763c9f00348ed890";

fn codec() -> Codec {
    Codec::new(SCHEME, KEY).expect("hmac-sha256 with a key is accepted")
}

/// `[ids…, <IDS|MSG>, signature, header, parent, metadata, content, buffers…]`.
fn frames(ids: &[&[u8]], signature: &[u8], parts: [&[u8]; 4], buffers: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut f: Vec<Vec<u8>> = ids.iter().map(|i| i.to_vec()).collect();
    f.push(DELIMITER.to_vec());
    f.push(signature.to_vec());
    f.extend(parts.iter().map(|p| p.to_vec()));
    f.extend(buffers.iter().map(|b| b.to_vec()));
    f
}

/// The golden request, behind two routing ids and followed by two binary buffers.
fn golden_frames() -> Vec<Vec<u8>> {
    frames(
        &[b"router-id-1", b"\x00\x80\xffid2"],
        SIGNATURE.as_bytes(),
        [HEADER, PARENT, METADATA, CONTENT.as_bytes()],
        &[b"\x00\x01\x02binary", b""],
    )
}

/// Frames for arbitrary JSON parts, correctly signed with KEY: what reaches the
/// JSON parser is exactly what a key holder sent.
fn signed(parts: [&[u8]; 4]) -> Vec<Vec<u8>> {
    let sig = codec().sign(parts);
    frames(&[], &sig, parts, &[])
}

#[track_caller]
fn decode_err(codec: &Codec, frames: Vec<Vec<u8>>) -> WireError {
    match codec.decode(frames) {
        Ok((_, msg)) => panic!("expected an error, decoded {msg:?}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_json_error(e: WireError, frame: &str, reason_contains: &str) {
    match e {
        WireError::Json {
            frame: f,
            ref reason,
        } => {
            assert_eq!(f, frame, "{e}");
            assert!(
                reason.contains(reason_contains),
                "reason {reason:?} should mention {reason_contains:?}"
            );
        }
        other => panic!("expected a JSON error in {frame}, got {other:?}"),
    }
}

// ---------------------------------------------------------------- golden vectors

#[test]
fn golden_sign_matches_python_hmac() {
    let c = codec();
    assert!(c.is_signed());
    assert_eq!(
        c.sign([HEADER, PARENT, METADATA, CONTENT.as_bytes()]),
        SIGNATURE.as_bytes()
    );
    assert_eq!(
        c.sign([REPLY_HEADER, HEADER, REPLY_METADATA, REPLY_CONTENT]),
        REPLY_SIGNATURE.as_bytes()
    );
}

#[test]
fn golden_sign_depends_on_every_part_and_on_the_key() {
    let c = codec();
    let parts = [HEADER, PARENT, METADATA, CONTENT.as_bytes()];
    for i in 0..4 {
        let mut changed = parts;
        let longer = [parts[i], b" "].concat();
        changed[i] = &longer;
        assert_ne!(c.sign(changed), SIGNATURE.as_bytes(), "part {i}");
    }
    let other = Codec::new(SCHEME, b"another key").unwrap();
    assert_ne!(other.sign(parts), SIGNATURE.as_bytes());
}

#[test]
fn golden_decode_splits_ids_message_and_buffers() {
    let (ids, msg) = codec()
        .decode(golden_frames())
        .expect("golden frames decode");
    assert_eq!(
        ids,
        vec![b"router-id-1".to_vec(), b"\x00\x80\xffid2".to_vec()]
    );
    assert_eq!(msg.header.msg_id, "6f1d2c3b-golden-0001");
    assert_eq!(msg.header.session, "9a8b7c6d-golden-session");
    assert_eq!(msg.header.username, "tester");
    assert_eq!(msg.header.date, "2024-01-02T03:04:05.000006Z");
    assert_eq!(msg.msg_type(), "execute_request");
    assert_eq!(msg.header.version, "5.3");
    assert!(msg.header.extra.is_empty());
    assert!(msg.parent_header.is_none(), "{{}} means no parent");
    assert_eq!(msg.metadata.get(), r#"{"cellId":"c1"}"#);
    assert_eq!(msg.content.get(), CONTENT, "content is kept as sent");
    assert_eq!(
        msg.buffers,
        vec![b"\x00\x01\x02binary".to_vec(), Vec::new()]
    );
    let req: ExecuteRequest = msg.parse_content().unwrap();
    assert_eq!(req.code, "print('héllo')");
}

#[test]
fn golden_decode_of_a_reply_with_parent() {
    let f = frames(
        &[],
        REPLY_SIGNATURE.as_bytes(),
        [REPLY_HEADER, HEADER, REPLY_METADATA, REPLY_CONTENT],
        &[],
    );
    let (ids, msg) = codec().decode(f).unwrap();
    assert!(ids.is_empty());
    assert_eq!(msg.msg_type(), "execute_reply");
    assert_eq!(msg.parent_id(), Some("6f1d2c3b-golden-0001"));
    let parent = msg.parent_header.as_ref().unwrap();
    assert_eq!(parent.msg_type, "execute_request");
    assert_eq!(parent.version, "5.3");
    assert!(msg.buffers.is_empty());
}

#[test]
fn golden_encode_reproduces_the_frames_byte_for_byte() {
    let (ids, msg) = codec().decode(golden_frames()).unwrap();
    // A fresh codec: the golden signature is already in the first one's replay cache.
    let encoded = codec().encode(&ids, &msg);
    assert_eq!(encoded, golden_frames());
}

#[test]
fn decode_of_encode_round_trips() {
    let (ids, msg) = codec().decode(golden_frames()).unwrap();
    let sender = codec();
    let encoded = sender.encode(&ids, &msg);
    let parts: [&[u8]; 4] = [&encoded[4], &encoded[5], &encoded[6], &encoded[7]];
    assert_eq!(encoded[3], sender.sign(parts), "signature of what is sent");

    let (ids2, back) = codec().decode(encoded).expect("re-encoded frames verify");
    assert_eq!(ids2, ids);
    assert_eq!(back.header, msg.header);
    assert_eq!(back.parent_header, msg.parent_header);
    assert_eq!(back.metadata.get(), msg.metadata.get());
    assert_eq!(back.content.get(), msg.content.get());
    assert_eq!(back.buffers, msg.buffers);
}

#[test]
fn session_messages_round_trip_with_parent_and_buffers() {
    let session = Session::new("rt");
    let request = session.message("kernel_info_request", &serde_json::json!({}), None);
    let mut reply = session.message(
        "comm_msg",
        &serde_json::json!({"comm_id": "c", "data": {"x": [1, "é"]}}),
        Some(&request.header),
    );
    reply.buffers = vec![vec![0, 255, 1], vec![]];
    let frames = codec().encode(&[b"id".to_vec()], &reply);
    let (ids, back) = codec().decode(frames).unwrap();
    assert_eq!(ids, vec![b"id".to_vec()]);
    assert_eq!(back.header, reply.header);
    assert_eq!(back.parent_header.as_ref(), Some(&request.header));
    assert_eq!(back.content_map()["data"]["x"][1], "é");
    assert_eq!(back.buffers, reply.buffers);
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_input_wrong_hmac_is_refused() {
    let mut f = golden_frames();
    let sig = &mut f[3];
    let last = sig.len() - 1;
    sig[last] = if sig[last] == b'0' { b'1' } else { b'0' };
    assert_eq!(decode_err(&codec(), f), WireError::BadSignature);
}

#[test]
fn bad_input_signature_of_another_key_is_refused() {
    let other = Codec::new(SCHEME, b"not the key").unwrap();
    let sig = other.sign([HEADER, PARENT, METADATA, CONTENT.as_bytes()]);
    let f = frames(
        &[],
        &sig,
        [HEADER, PARENT, METADATA, CONTENT.as_bytes()],
        &[],
    );
    assert_eq!(decode_err(&codec(), f), WireError::BadSignature);
}

#[test]
fn bad_input_signature_that_is_not_hex_is_refused() {
    let f = frames(
        &[],
        b"zz-not-hex",
        [HEADER, PARENT, METADATA, CONTENT.as_bytes()],
        &[],
    );
    assert_eq!(decode_err(&codec(), f), WireError::BadSignature);
}

#[test]
fn bad_input_truncated_signature_is_refused() {
    let f = frames(
        &[],
        &SIGNATURE.as_bytes()[..32],
        [HEADER, PARENT, METADATA, CONTENT.as_bytes()],
        &[],
    );
    assert_eq!(decode_err(&codec(), f), WireError::BadSignature);
}

#[test]
fn bad_input_unsigned_is_refused_when_a_key_is_set() {
    let f = frames(
        &[],
        b"",
        [HEADER, PARENT, METADATA, CONTENT.as_bytes()],
        &[],
    );
    assert_eq!(decode_err(&codec(), f), WireError::Unsigned);
}

#[test]
fn bad_input_replayed_frames_are_refused() {
    let c = codec();
    c.decode(golden_frames()).expect("first delivery");
    assert_eq!(decode_err(&c, golden_frames()), WireError::Replayed);
    // Different routing ids or buffers do not make it a new message.
    let mut f = golden_frames();
    f[0] = b"someone-else".to_vec();
    assert_eq!(decode_err(&c, f), WireError::Replayed);
}

#[test]
fn bad_input_replay_is_recorded_only_after_verification() {
    let c = codec();
    // The golden signature on tampered content: refused, and must not poison the cache.
    let mut tampered = golden_frames();
    tampered[7] = br#"{"code":"import os; os.system('rm -rf ~')"}"#.to_vec();
    assert_eq!(decode_err(&c, tampered), WireError::BadSignature);
    let (_, msg) = c
        .decode(golden_frames())
        .expect("the genuine message after a forged one is accepted");
    assert_eq!(msg.header.msg_id, "6f1d2c3b-golden-0001");
}

#[test]
fn bad_input_no_delimiter() {
    let mut f = golden_frames();
    f.remove(2);
    let n = f.len();
    assert_eq!(
        decode_err(&codec(), f),
        WireError::NoDelimiter { frames: n }
    );
    assert_eq!(
        decode_err(&codec(), Vec::new()),
        WireError::NoDelimiter { frames: 0 }
    );
}

#[test]
fn bad_input_too_few_frames_after_delimiter() {
    let mut f = golden_frames();
    f.truncate(2 + 1 + 4); // ids, delimiter, signature, header, parent, metadata
    assert_eq!(
        decode_err(&codec(), f),
        WireError::TooFewFrames { found: 4 }
    );
    assert_eq!(
        decode_err(&codec(), vec![DELIMITER.to_vec()]),
        WireError::TooFewFrames { found: 0 }
    );
}

#[test]
fn bad_input_malformed_json_in_header() {
    let f = signed([b"{\"msg_id\": \"x\", ", PARENT, METADATA, b"{}"]);
    assert_json_error(decode_err(&codec(), f), "header", "EOF");
}

#[test]
fn non_utf8_in_content_of_a_signed_message_is_replaced_not_dropped() {
    // ipykernel sends lone surrogates as-is; Python's json replaces them, so do we.
    let f = signed([HEADER, PARENT, METADATA, b"{\"code\": \"a\xff\xfeb\"}"]);
    let (_, msg) = codec().decode(f).expect("decoded");
    let v: serde_json::Value = serde_json::from_str(msg.content.get()).unwrap();
    assert_eq!(v["code"], "a\u{fffd}\u{fffd}b");
}

#[test]
fn bad_input_non_utf8_in_header() {
    let f = signed([
        b"{\"msg_id\":\"\xc3\x28\",\"msg_type\":\"x\"}",
        PARENT,
        METADATA,
        b"{}",
    ]);
    assert_json_error(
        decode_err(&codec(), f),
        "header",
        "invalid unicode code point",
    );
}

#[test]
fn bad_input_header_missing_msg_type() {
    let f = signed([
        br#"{"msg_id":"m","session":"s","username":"u","version":"5.3"}"#,
        PARENT,
        METADATA,
        b"{}",
    ]);
    assert_json_error(decode_err(&codec(), f), "header", "msg_type");
}

#[test]
fn bad_input_header_missing_msg_id() {
    let f = signed([br#"{"msg_type":"status"}"#, PARENT, METADATA, b"{}"]);
    assert_json_error(decode_err(&codec(), f), "header", "msg_id");
}

#[test]
fn bad_input_content_that_is_an_array() {
    let f = signed([HEADER, PARENT, METADATA, b"[1, 2, 3]"]);
    assert_json_error(decode_err(&codec(), f), "content", "not an object");
}

#[test]
fn bad_input_metadata_that_is_a_string() {
    let f = signed([HEADER, PARENT, b"\"meta\"", b"{}"]);
    assert_json_error(decode_err(&codec(), f), "metadata", "not an object");
}

#[test]
fn bad_input_parent_header_that_is_an_array() {
    let f = signed([HEADER, b"[]", METADATA, b"{}"]);
    assert_json_error(decode_err(&codec(), f), "parent_header", "not an object");
}

#[test]
fn bad_input_empty_content_frame() {
    let f = signed([HEADER, PARENT, METADATA, b""]);
    assert_json_error(decode_err(&codec(), f), "content", "EOF");
}

#[test]
fn parent_header_empty_object_or_null_means_no_parent() {
    for parent in [&b"{}"[..], b" { } ", b"null", br#"{"date": null}"#] {
        let f = signed([HEADER, parent, METADATA, b"{}"]);
        let (_, msg) = codec().decode(f).unwrap();
        assert!(
            msg.parent_header.is_none(),
            "{:?}",
            String::from_utf8_lossy(parent)
        );
    }
}

#[test]
fn unknown_signature_scheme_is_refused() {
    let e = Codec::new("hmac-md5", KEY).unwrap_err();
    assert_eq!(e, WireError::UnknownScheme("hmac-md5".to_owned()));
    assert!(!e.to_string().contains("a0436f6c"), "{e}");
}

#[test]
fn empty_key_means_unsigned_mode() {
    let c = Codec::new(SCHEME, b"").unwrap();
    assert!(!c.is_signed());
    assert!(
        c.sign([HEADER, PARENT, METADATA, CONTENT.as_bytes()])
            .is_empty()
    );
    let f = frames(
        &[],
        b"",
        [HEADER, PARENT, METADATA, CONTENT.as_bytes()],
        &[],
    );
    let (_, msg) = c.decode(f.clone()).expect("unsigned message accepted");
    assert_eq!(msg.header.msg_id, "6f1d2c3b-golden-0001");
    // Unsigned mode has no signature to remember: the same frames decode again.
    c.decode(f).expect("no replay detection without a key");
    // And it encodes with an empty signature frame.
    let out = c.encode(&[], &msg);
    assert_eq!(out[1], b"");
    // Whatever the scheme says, as no key means nothing to sign with.
    assert!(!Codec::new("hmac-md5", b"").unwrap().is_signed());
}

#[test]
fn bad_input_never_panics() {
    let golden = golden_frames();
    let mut cases: Vec<Vec<Vec<u8>>> = Vec::new();
    // Every prefix and every single-frame removal.
    for n in 0..=golden.len() {
        cases.push(golden[..n].to_vec());
    }
    for i in 0..golden.len() {
        let mut f = golden.clone();
        f.remove(i);
        cases.push(f);
    }
    // Every frame emptied, replaced by garbage, or by the delimiter.
    let garbage: [&[u8]; 5] = [
        b"",
        b"\xff\xfe\xfd",
        b"null",
        b"<IDS|MSG>",
        b"{\"msg_id\":1}",
    ];
    for i in 0..golden.len() {
        for g in garbage {
            let mut f = golden.clone();
            f[i] = g.to_vec();
            cases.push(f);
        }
    }
    for (i, case) in cases.into_iter().enumerate() {
        let outcome = std::panic::catch_unwind(|| {
            let _ = codec().decode(case.clone());
            let _ = Codec::new(SCHEME, b"").unwrap().decode(case);
        });
        assert!(outcome.is_ok(), "case {i} panicked");
    }
}

// ---------------------------------------------------------------- typed layer

#[test]
fn execute_request_without_code_fails_naming_the_type() {
    let f = signed([HEADER, PARENT, METADATA, br#"{"silent":false}"#]);
    let (_, msg) = codec()
        .decode(f)
        .expect("the wire layer does not check content");
    let e = Content::parse(&msg).unwrap_err();
    assert!(
        matches!(&e, ProtocolError::BadContent { msg_type, .. } if msg_type == "execute_request"),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("execute_request"), "{text}");
    assert!(text.contains("code"), "{text}");
}

#[test]
fn golden_content_parses_as_execute_request() {
    let (_, msg) = codec().decode(golden_frames()).unwrap();
    match Content::parse(&msg).unwrap() {
        Content::ExecuteRequest(r) => {
            assert_eq!(r.code, "print('héllo')");
            assert!(!r.silent && r.store_history && r.allow_stdin && r.stop_on_error);
        }
        other => panic!("wrong variant {other:?}"),
    }
}

#[test]
fn header_of_a_5_0_peer_parses() {
    let header =
        br#"{"msg_id":"old-1","session":"s","username":"u","msg_type":"kernel_info_request"}"#;
    let f = signed([header, PARENT, b"{}", b"{}"]);
    let (_, msg) = codec().decode(f).unwrap();
    assert_eq!(msg.header.msg_id, "old-1");
    assert_eq!(msg.header.version, "5.0", "a missing version is 5.0");
    assert_eq!(msg.header.date, "", "a missing date is tolerated");
    assert!(msg.header.extra.is_empty());
    assert!(matches!(
        Content::parse(&msg).unwrap(),
        Content::KernelInfoRequest
    ));
}

#[test]
fn header_of_a_5_5_peer_keeps_subshell_id_through_re_encoding() {
    let header = br#"{"msg_id":"new-1","session":"s","username":"u","date":"2025-01-01T00:00:00Z","msg_type":"execute_request","version":"5.5","subshell_id":"sub-7"}"#;
    let f = signed([header, PARENT, b"{}", br#"{"code":"1"}"#]);
    let (_, msg) = codec().decode(f).unwrap();
    assert_eq!(msg.header.version, "5.5");
    assert_eq!(msg.header.extra["subshell_id"], "sub-7");

    let encoded = codec().encode(&[], &msg);
    let text = String::from_utf8(encoded[2].clone()).unwrap();
    assert!(text.contains(r#""subshell_id":"sub-7""#), "{text}");
    let (_, back) = codec().decode(encoded).unwrap();
    assert_eq!(back.header, msg.header);

    // And as a parent: a reply to it carries the field back.
    let reply =
        Session::new("k").message("execute_reply", &serde_json::json!({}), Some(&msg.header));
    let (_, back) = codec().decode(codec().encode(&[], &reply)).unwrap();
    let parent: &Header = back.parent_header.as_ref().unwrap();
    assert_eq!(parent.extra["subshell_id"], "sub-7");
}

#[test]
fn null_date_and_numeric_fields_in_header_are_tolerated() {
    let header =
        br#"{"msg_id":"n-1","session":null,"username":7,"date":null,"msg_type":"status","version":null}"#;
    let f = signed([header, PARENT, b"{}", br#"{"execution_state":"idle"}"#]);
    let (_, msg): (_, Message) = codec().decode(f).unwrap();
    assert_eq!(msg.header.session, "");
    assert_eq!(msg.header.username, "7");
    assert_eq!(msg.header.date, "");
    assert_eq!(msg.header.version, "");
}

/// Found by the wire_decode fuzz target: a number in an unknown header field came
/// out one ULP off after decode → encode → decode (serde_json without
/// `float_roundtrip`), so it drifted on every relay hop.
#[test]
fn numbers_in_relayed_headers_come_out_as_they_came_in() {
    let header = br#"{"msg_id":"1","msg_type":"t","x":9900000000000001413340681}"#;
    let codec = codec();
    let (_, first) = codec
        .decode(signed([header, b"{}", b"{}", b"{}"]))
        .expect("decodes");
    let again = codec.encode(&[], &first);
    let (_, second) = codec.decode(again).expect("decodes again");
    assert_eq!(first.header, second.header);
}
