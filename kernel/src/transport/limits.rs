//! What one peer may make us hold: the limits that keep a broken or hostile
//! peer (anything that reaches a port) from growing our memory or our file
//! descriptors. Past a limit the peer's connection is dropped and logged, or
//! the message it would have been sent is dropped (as libzmq's high-water
//! mark does); the kernel goes on.

use std::sync::OnceLock;

/// The environment variable that sets [`max_message`] (bytes, or with a `K`,
/// `M` or `G` suffix: powers of 1024).
pub const MAX_MESSAGE_ENV: &str = "PXKERNEL_MAX_MESSAGE";

/// The largest message a peer may send (libzmq's `ZMQ_MAXMSGSIZE`, which is
/// unlimited by default), the sum of its frames: big images and widget buffers
/// fit; a frame header announcing more ends the connection before anything is
/// allocated for it.
pub const DEFAULT_MAX_MESSAGE: u64 = 1 << 30;

/// Frames in one message. A Jupyter message has its routing ids, the delimiter,
/// five parts and its buffers; nothing real comes near this.
pub const MAX_FRAMES: usize = 4096;

/// A frame body is read into memory that grows with the bytes that arrive,
/// in steps of at most this much (a header alone allocates nothing big).
pub const READ_STEP: usize = 1 << 20;

/// A PING's context, echoed in the PONG, is cut to this (RFC 37 allows 16 bytes).
pub const PING_CONTEXT: usize = 16;

/// A PONG is not queued behind this many unwritten bytes: a peer that pings
/// without reading gets no more answers, not more of our memory.
pub const PONG_BACKLOG: usize = 64 << 10;

/// Bytes queued for one connection (or one DEALER without a connection) before
/// new messages are dropped, as well as the queue's message count. A message
/// is always taken into an empty queue, however large.
pub const QUEUE_BYTES: usize = 256 << 20;

/// Connections of one bound socket that may be in their handshake at once
/// (each gets `HANDSHAKE_TIMEOUT`); more are closed as they come.
pub const PENDING_HANDSHAKES: usize = 64;

/// The largest message a peer may send: `PXKERNEL_MAX_MESSAGE`, else
/// [`DEFAULT_MAX_MESSAGE`]. Read once.
pub fn max_message() -> u64 {
    static MAX: OnceLock<u64> = OnceLock::new();
    *MAX.get_or_init(|| match std::env::var(MAX_MESSAGE_ENV) {
        Ok(v) => parse_size(&v).unwrap_or_else(|| {
            tracing::warn!(
                "{MAX_MESSAGE_ENV}={v:?} is not a size (bytes, or with K, M or G); \
                 using {DEFAULT_MAX_MESSAGE}"
            );
            DEFAULT_MAX_MESSAGE
        }),
        Err(_) => DEFAULT_MAX_MESSAGE,
    })
}

/// `123`, `64K`, `512M`, `2G` (powers of 1024); at least 1 KiB.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return None,
    };
    let n: u64 = digits.trim().parse().ok()?;
    let bytes = n.checked_mul(1u64 << shift)?;
    (bytes >= 1024).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases = [
            ("plain bytes", "4096", Some(4096)),
            ("kibibytes", "64K", Some(64 << 10)),
            ("lower-case unit", "512m", Some(512 << 20)),
            ("gibibytes", "2G", Some(2 << 30)),
            ("spaces", " 8 M ", Some(8 << 20)),
            ("too small to carry a message", "10", None),
            ("unknown unit", "5T", None),
            ("not a number", "lots", None),
            ("empty", "", None),
            ("overflow", "99999999999G", None),
        ];
        for (name, text, want) in cases {
            assert_eq!(parse_size(text), want, "{name}");
        }
    }
}
