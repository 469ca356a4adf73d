//! The wire format: a frame set as a socket hands it to `wire::Codec::decode`
//! (routing ids, `<IDS|MSG>`, signature, header, parent header, metadata,
//! content, buffers), HMAC-SHA256 check first.
//!
//! Input: one mode byte, then the frames, separated by `FF FE`. Mode bit 0x01:
//! sign the frames with the key before decoding (put the right signature in the
//! frame after the delimiter), so the fuzzer gets past the HMAC to the JSON;
//! bit 0x02: decode with no key (unsigned messages). The key is [`KEY`], the one
//! `fuzz/seeds/capture.py` records real messages with.
//!
//! Besides not panicking, a frame set that decodes must (a) be refused as a
//! replay when it comes again to the same codec, and (b) decode to the same
//! message once encoded again (a relay loses nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pxkernel_kernel::wire::{Codec, DELIMITER, WireError};

/// The connection key of the seeds and of the signing mode.
const KEY: &[u8] = b"pxkernel-fuzz-key";

fn frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == 0xFF && bytes[i + 1] == 0xFE {
            out.push(bytes[start..i].to_vec());
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push(bytes[start..].to_vec());
    out
}

fn codec(signed: bool) -> Codec {
    Codec::new("hmac-sha256", if signed { KEY } else { b"" }).expect("a codec")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let signed = mode & 0x02 == 0;
    let mut frames = frames(rest);
    if mode & 0x01 != 0
        && let Some(d) = frames.iter().position(|f| f.as_slice() == DELIMITER)
        && frames.len() >= d + 6
    {
        let sig = codec(true).sign([
            &frames[d + 2],
            &frames[d + 3],
            &frames[d + 4],
            &frames[d + 5],
        ]);
        frames[d + 1] = sig;
    }

    let c = codec(signed);
    let Ok((ids, msg)) = c.decode(frames.clone()) else {
        return;
    };
    if signed {
        assert_eq!(
            c.decode(frames).err(),
            Some(WireError::Replayed),
            "a verified frame set decoded twice"
        );
    }

    // What a relay sends on decodes to the same message.
    let again = codec(signed).encode(&ids, &msg);
    let (ids2, msg2) = match codec(signed).decode(again) {
        Ok(m) => m,
        Err(e) => panic!("a decoded message, encoded again, does not decode: {e}"),
    };
    assert_eq!(ids2, ids);
    assert_eq!(msg2.header, msg.header);
    assert_eq!(msg2.parent_header, msg.parent_header);
    assert_eq!(msg2.metadata.get(), msg.metadata.get());
    assert_eq!(msg2.content.get(), msg.content.get());
    assert_eq!(msg2.buffers, msg.buffers);
});
