//! Typed Jupyter messages: headers, the message envelope, the content of every
//! message type of protocol 5.5, MIME bundles and connection files.
//!
//! Pure data: nothing here touches a socket. The envelope keeps `metadata` and
//! `content` as the raw JSON text it was given, so a relay forwards what it does
//! not understand untouched; [`content`] parses that text into typed structs on
//! demand, with an [`content::Content::Unknown`] fallback.

pub mod connection;
pub mod content;
mod header_de;
mod time;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub use connection::ConnectionInfo;
pub use header_de::ParentHeader;
pub use time::now_iso8601;

/// The protocol version this crate speaks. Peers speaking 5.0 and later are accepted.
pub const PROTOCOL_VERSION: &str = "5.5";

/// Errors of the typed layer: content that does not match its message type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The content of a message did not parse as the struct of its type.
    #[error("bad {msg_type} content: {source}")]
    BadContent {
        /// The message type whose content was malformed.
        msg_type: String,
        /// What serde reported.
        source: serde_json::Error,
    },
    /// A connection file could not be read or parsed.
    #[error("connection file {path}: {reason}")]
    ConnectionFile {
        /// The file.
        path: String,
        /// Why it was refused.
        reason: String,
    },
}

/// The five sockets of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Requests and replies (ROUTER on the kernel).
    Shell,
    /// Like shell, served even while shell is busy.
    Control,
    /// Broadcast side effects (XPUB on the kernel).
    Iopub,
    /// The kernel asks the frontend for input.
    Stdin,
    /// Echo, to prove the kernel is alive.
    Heartbeat,
}

impl Channel {
    /// Every channel of a connection.
    pub const ALL: [Channel; 5] = [
        Channel::Shell,
        Channel::Control,
        Channel::Iopub,
        Channel::Stdin,
        Channel::Heartbeat,
    ];
}

impl Channel {
    /// The lowercase name used in connection files and logs.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Shell => "shell",
            Channel::Control => "control",
            Channel::Iopub => "iopub",
            Channel::Stdin => "stdin",
            Channel::Heartbeat => "hb",
        }
    }
}

/// A message header. Unknown fields (for example `subshell_id`) are kept in `extra`
/// and written back, so relayed headers lose nothing. Read by hand (see
/// `header_de`): `session`, `username`, `date` and `version` accept any JSON
/// value, rendered as text (peers send `null` dates); a missing `version` is 5.0.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Header {
    /// Unique id of this message.
    pub msg_id: String,
    /// The session of the sender.
    pub session: String,
    /// The user of the sender.
    pub username: String,
    /// ISO 8601 creation time; any value a peer sends is accepted.
    pub date: String,
    /// The message type, e.g. `execute_request`.
    pub msg_type: String,
    /// The protocol version of the sender.
    pub version: String,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_version() -> String {
    "5.0".to_owned()
}

/// One Jupyter message without its routing identities.
#[derive(Clone, Debug)]
pub struct Message {
    /// This message's header (shared: every reply and output names it as parent).
    pub header: Arc<Header>,
    /// The header of the request this message answers or was caused by.
    pub parent_header: Option<Arc<Header>>,
    /// Metadata, as the raw JSON object text it arrived with.
    pub metadata: Box<RawValue>,
    /// Content, as raw JSON text; parse it with [`Message::parse_content`].
    pub content: Box<RawValue>,
    /// Binary buffers after the four JSON frames.
    pub buffers: Vec<Vec<u8>>,
}

/// The raw JSON text `{}`.
pub fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("{} is JSON")
}

/// Serialize a value to raw JSON text. Serializing our own structs cannot fail;
/// a value that somehow does becomes `{}` rather than a panic.
pub fn to_raw<T: Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| empty_object())
}

impl Message {
    /// The message type from the header.
    pub fn msg_type(&self) -> &str {
        &self.header.msg_type
    }

    /// The parent's msg_id, if there is a parent.
    pub fn parent_id(&self) -> Option<&str> {
        self.parent_header.as_ref().map(|h| h.msg_id.as_str())
    }

    /// Parse the content as `T`.
    pub fn parse_content<T: serde::de::DeserializeOwned>(&self) -> Result<T, ProtocolError> {
        serde_json::from_str(self.content.get()).map_err(|source| ProtocolError::BadContent {
            msg_type: self.header.msg_type.clone(),
            source,
        })
    }

    /// Parse the content as a generic JSON object (empty map when it is not an object).
    pub fn content_map(&self) -> Map<String, Value> {
        serde_json::from_str(self.content.get()).unwrap_or_default()
    }
}

/// The identity of one side of a conversation: its session id, user name and a
/// message counter. Builds headers and messages.
#[derive(Debug)]
pub struct Session {
    id: String,
    username: String,
    counter: AtomicU64,
}

impl Session {
    /// A new session with a random id.
    pub fn new(username: impl Into<String>) -> Self {
        Session {
            id: new_uuid(),
            username: username.into(),
            counter: AtomicU64::new(0),
        }
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A fresh header for a message of `msg_type`.
    pub fn header(&self, msg_type: &str) -> Header {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Header {
            msg_id: format!("{}_{}", self.id, n),
            session: self.id.clone(),
            username: self.username.clone(),
            date: now_iso8601(),
            msg_type: msg_type.to_owned(),
            version: PROTOCOL_VERSION.to_owned(),
            extra: Map::new(),
        }
    }

    /// A new message with the given content and parent.
    pub fn message<T: Serialize + ?Sized>(
        &self,
        msg_type: &str,
        content: &T,
        parent: Option<&Arc<Header>>,
    ) -> Message {
        self.message_raw(msg_type, to_raw(content), parent)
    }

    /// A new message whose content is already JSON text.
    pub fn message_raw(
        &self,
        msg_type: &str,
        content: Box<RawValue>,
        parent: Option<&Arc<Header>>,
    ) -> Message {
        Message {
            header: Arc::new(self.header(msg_type)),
            parent_header: parent.cloned(),
            metadata: empty_object(),
            content,
            buffers: Vec::new(),
        }
    }
}

/// A random RFC 4122 version 4 UUID in its hyphenated form (message and
/// session ids). The random bytes come from the system's source, never from a
/// fallback: [`random_key`] has already checked that source at start-up.
pub fn new_uuid() -> String {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
}

/// A fresh HMAC key: 32 bytes from the system's random source, hex-encoded.
/// Fails, rather than falling back to anything predictable, when that source does.
pub fn random_key() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(hex::encode(b))
}

/// A MIME bundle: MIME type to data.
pub type MimeBundle = Map<String, Value>;

/// A MIME bundle with only `text/plain`.
pub fn text_bundle(text: impl Into<String>) -> MimeBundle {
    let mut m = Map::new();
    m.insert("text/plain".to_owned(), Value::String(text.into()));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_keeps_unknown_fields_and_tolerates_null_date() {
        let h: Header = serde_json::from_str(
            r#"{"msg_id":"a","msg_type":"execute_request","session":"s","username":"u",
                "date":null,"version":"5.5","subshell_id":"x1"}"#,
        )
        .unwrap();
        assert_eq!(h.date, "");
        assert_eq!(h.extra["subshell_id"], "x1");
        let back = serde_json::to_value(&h).unwrap();
        assert_eq!(back["subshell_id"], "x1");
    }

    #[test]
    fn header_of_a_5_0_peer_without_version_defaults() {
        let h: Header =
            serde_json::from_str(r#"{"msg_id":"a","msg_type":"kernel_info_request"}"#).unwrap();
        assert_eq!(h.version, "5.0");
        assert_eq!(h.session, "");
    }

    #[test]
    fn random_keys_are_32_bytes_of_hex_and_differ() {
        let a = random_key().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, random_key().unwrap());
    }

    #[test]
    fn uuid_has_version_4_shape() {
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uuid());
    }

    #[test]
    fn session_headers_are_unique_and_versioned() {
        let s = Session::new("me");
        let a = s.header("status");
        let b = s.header("status");
        assert_ne!(a.msg_id, b.msg_id);
        assert_eq!(a.version, PROTOCOL_VERSION);
        assert_eq!(a.session, s.id());
    }
}
