//! The wire format: multipart frames to and from [`Message`]s.
//!
//! A message on the wire is `[ids…, "<IDS|MSG>", signature, header, parent_header,
//! metadata, content, buffers…]`. The signature is the hex HMAC-SHA256 of the four
//! JSON frames exactly as received. This module verifies it in constant time
//! *before* parsing any JSON, refuses unsigned messages when a key is set, drops
//! replayed signatures (remembered only once verified, in a bounded cache), and
//! reports every malformed frame set as a [`WireError`] for the caller to log and
//! drop. Pure: no sockets.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::value::RawValue;
use sha2::Sha256;

use crate::protocol::{Header, Message, ParentHeader};

/// The frame that separates routing identities from the message.
pub const DELIMITER: &[u8] = b"<IDS|MSG>";

/// How many verified signatures each connection remembers to refuse replays.
/// Each costs about 40 bytes (a 128-bit prefix of the digest, indexed twice).
pub const REPLAY_CACHE_SIZE: usize = 1 << 14;

type HmacSha256 = Hmac<Sha256>;

/// Why a frame set was refused. None of these ever carries the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The connection file asked for a scheme other than `hmac-sha256`.
    #[error("unsupported signature scheme {0:?} (only hmac-sha256 is supported)")]
    UnknownScheme(String),
    /// No `<IDS|MSG>` frame.
    #[error("no <IDS|MSG> delimiter among {frames} frames")]
    NoDelimiter {
        /// How many frames arrived.
        frames: usize,
    },
    /// Fewer than the five frames after the delimiter.
    #[error("only {found} frames after the delimiter, need 5")]
    TooFewFrames {
        /// How many there were.
        found: usize,
    },
    /// A key is set but the message carried no signature.
    #[error("unsigned message refused")]
    Unsigned,
    /// The signature did not match.
    #[error("bad signature")]
    BadSignature,
    /// The signature was seen before.
    #[error("replayed signature")]
    Replayed,
    /// A JSON frame did not parse (including non-UTF-8 text).
    #[error("malformed {frame}: {reason}")]
    Json {
        /// `header`, `parent_header`, `metadata` or `content`.
        frame: &'static str,
        /// What the parser said.
        reason: String,
    },
}

/// Signs, verifies and decodes messages for one connection (one key).
/// Shared by every socket of that connection, like jupyter_client's `Session`.
pub struct Codec {
    mac: Option<HmacSha256>,
    replay: Mutex<ReplayCache>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("signed", &self.mac.is_some())
            .finish()
    }
}

impl Codec {
    /// A codec for `scheme` (`hmac-sha256`) and `key`. An empty key means unsigned
    /// messages; an unknown scheme with a key is refused.
    pub fn new(scheme: &str, key: &[u8]) -> Result<Self, WireError> {
        let mac = if key.is_empty() {
            None
        } else if scheme == "hmac-sha256" {
            Some(HmacSha256::new_from_slice(key).map_err(|_| WireError::BadSignature)?)
        } else {
            return Err(WireError::UnknownScheme(scheme.to_owned()));
        };
        Ok(Codec {
            mac,
            replay: Mutex::new(ReplayCache::new(REPLAY_CACHE_SIZE)),
        })
    }

    /// Whether messages are signed.
    pub fn is_signed(&self) -> bool {
        self.mac.is_some()
    }

    fn digest(&self, parts: [&[u8]; 4]) -> Option<HmacSha256> {
        let mut mac = self.mac.clone()?;
        for p in parts {
            mac.update(p);
        }
        Some(mac)
    }

    /// The hex signature of the four JSON frames (empty when unsigned).
    pub fn sign(&self, parts: [&[u8]; 4]) -> Vec<u8> {
        self.sign_hex(parts).map(|h| h.to_vec()).unwrap_or_default()
    }

    fn sign_hex(&self, parts: [&[u8]; 4]) -> Option<[u8; 64]> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = self.digest(parts)?.finalize().into_bytes();
        let mut out = [0u8; 64];
        for (pair, byte) in out.chunks_exact_mut(2).zip(digest) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        Some(out)
    }

    /// Split, verify and parse a frame set. Returns the routing ids and the message.
    pub fn decode(&self, mut frames: Vec<Vec<u8>>) -> Result<(Vec<Vec<u8>>, Message), WireError> {
        let n = frames.len();
        let delim = frames
            .iter()
            .position(|f| f.as_slice() == DELIMITER)
            .ok_or(WireError::NoDelimiter { frames: n })?;
        let after = n - delim - 1;
        if after < 5 {
            return Err(WireError::TooFewFrames { found: after });
        }
        let buffers = frames.split_off(delim + 6);
        let mut msg_frames = frames.split_off(delim + 1);
        frames.truncate(delim);
        let ids = frames;
        let content = msg_frames.pop().unwrap_or_default();
        let metadata = msg_frames.pop().unwrap_or_default();
        let parent = msg_frames.pop().unwrap_or_default();
        let header = msg_frames.pop().unwrap_or_default();
        let signature = msg_frames.pop().unwrap_or_default();

        if let Some(mac) = self.digest([&header, &parent, &metadata, &content]) {
            if signature.is_empty() {
                return Err(WireError::Unsigned);
            }
            let sig = hex::decode(&signature).map_err(|_| WireError::BadSignature)?;
            mac.verify_slice(&sig)
                .map_err(|_| WireError::BadSignature)?;
            let mut cache = self.replay.lock().unwrap_or_else(|p| p.into_inner());
            // 128 bits of a verified HMAC are as unique as the whole of it.
            let mut prefix = [0u8; 16];
            prefix.copy_from_slice(&sig[..16]);
            if !cache.insert(u128::from_le_bytes(prefix)) {
                return Err(WireError::Replayed);
            }
        }

        let header: Header = serde_json::from_slice(&header).map_err(|e| json_err("header", e))?;
        let parent_header = parse_parent(&parent)?;
        let metadata = raw_object(metadata, "metadata")?;
        let content = raw_object(content, "content")?;
        Ok((
            ids,
            Message {
                header: Arc::new(header),
                parent_header: parent_header.map(Arc::new),
                metadata,
                content,
                buffers,
            },
        ))
    }

    /// Serialize and sign a message behind the given routing ids.
    pub fn encode(&self, ids: &[Vec<u8>], msg: &Message) -> Vec<Vec<u8>> {
        self.encode_with(ids, msg, |frames| {
            frames.iter().map(|f| f.to_vec()).collect()
        })
    }

    /// Serialize and sign a message behind the given routing ids, and hand its
    /// frames to `send` borrowed: metadata, content and buffers are not copied.
    pub fn encode_with<I: AsRef<[u8]>, R>(
        &self,
        ids: &[I],
        msg: &Message,
        send: impl FnOnce(&[&[u8]]) -> R,
    ) -> R {
        let header = to_json(&*msg.header);
        let parent = match &msg.parent_header {
            Some(p) => to_json(&**p),
            None => b"{}".to_vec(),
        };
        let metadata = msg.metadata.get().as_bytes();
        let content = msg.content.get().as_bytes();
        let signature = self.sign_hex([&header, &parent, metadata, content]);
        let signature: &[u8] = signature.as_ref().map_or(&[], |s| s.as_slice());
        let head = [DELIMITER, signature, &header, &parent, metadata, content];
        let count = ids.len() + head.len() + msg.buffers.len();
        // The usual message (one routing id or topic, no buffers) is framed on the stack.
        if count <= 8 {
            let mut frames: [&[u8]; 8] = [&[]; 8];
            let all = ids
                .iter()
                .map(AsRef::as_ref)
                .chain(head)
                .chain(msg.buffers.iter().map(Vec::as_slice));
            for (slot, f) in frames.iter_mut().zip(all) {
                *slot = f;
            }
            send(&frames[..count])
        } else {
            let frames: Vec<&[u8]> = ids
                .iter()
                .map(AsRef::as_ref)
                .chain(head)
                .chain(msg.buffers.iter().map(Vec::as_slice))
                .collect();
            send(&frames)
        }
    }
}

/// A header as JSON; serializing our own header cannot fail, `{}` if it somehow does.
fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => out,
        Err(_) => b"{}".to_vec(),
    }
}

fn json_err(frame: &'static str, e: serde_json::Error) -> WireError {
    WireError::Json {
        frame,
        reason: e.to_string(),
    }
}

/// `{}` (or any header without a msg_id) and `null` mean "no parent".
fn parse_parent(bytes: &[u8]) -> Result<Option<Header>, WireError> {
    if !matches!(bytes.trim_ascii_start().first(), Some(b'{' | b'n')) {
        return Err(WireError::Json {
            frame: "parent_header",
            reason: "not an object".to_owned(),
        });
    }
    serde_json::from_slice::<ParentHeader>(bytes)
        .map(|p| p.0)
        .map_err(|e| json_err("parent_header", e))
}

fn raw_object(bytes: Vec<u8>, frame: &'static str) -> Result<Box<RawValue>, WireError> {
    // Invalid UTF-8 inside a signed message (ipykernel sends lone surrogates
    // as-is) is replaced, as Python's json does, rather than losing the message.
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(frame, "invalid UTF-8 replaced");
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    };
    let raw = RawValue::from_string(text).map_err(|e| json_err(frame, e))?;
    if !raw.get().trim_start().starts_with('{') {
        return Err(WireError::Json {
            frame,
            reason: "not an object".to_owned(),
        });
    }
    Ok(raw)
}

/// A bounded set of signatures, oldest forgotten first.
struct ReplayCache {
    seen: HashSet<u128>,
    order: VecDeque<u128>,
    capacity: usize,
}

impl ReplayCache {
    fn new(capacity: usize) -> Self {
        ReplayCache {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Remember `sig`; false when it was already there.
    fn insert(&mut self, sig: u128) -> bool {
        if self.seen.contains(&sig) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(sig);
        self.order.push_back(sig);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_cache_is_bounded_and_forgets_oldest() {
        let mut c = ReplayCache::new(2);
        assert!(c.insert(1));
        assert!(!c.insert(1));
        assert!(c.insert(2));
        assert!(c.insert(3));
        assert_eq!(c.seen.len(), 2);
        assert!(c.insert(1), "oldest was forgotten");
    }
}
