//! ZMTP 3.0 (ZeroMQ's wire protocol, RFC 23) as pure functions: the greeting, the
//! NULL mechanism's READY command and its properties (which CURVE's INITIATE and
//! READY carry too, see [`super::curve`]), and frame encoding and decoding. No
//! I/O here; [`super::socket`] drives these over streams.
//!
//! We announce version 3.0, so libzmq peers send subscriptions as messages
//! (`0x01` + topic); SUBSCRIBE/CANCEL commands of 3.1 peers are understood too.

/// Frame flag: more frames of this message follow.
pub const MORE: u8 = 0x01;
/// Frame flag: the size is 8 bytes.
pub const LONG: u8 = 0x02;
/// Frame flag: a command frame.
pub const COMMAND: u8 = 0x04;

/// Length of a greeting.
pub const GREETING_LEN: usize = 64;

/// A malformed or unsupported handshake or frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ZmtpError {
    /// Not a ZMTP greeting.
    #[error("not a ZeroMQ peer (bad greeting signature)")]
    Signature,
    /// ZMTP before 3.0.
    #[error("peer speaks ZMTP {0}.x; 3.0 or later is required")]
    Version(u8),
    /// The peer's security mechanism is not this socket's.
    #[error("peer wants security mechanism {peer:?}; this socket uses {ours}")]
    Mechanism {
        /// Ours (NULL or CURVE).
        ours: &'static str,
        /// Theirs.
        peer: String,
    },
    /// A CURVE handshake or message that fails its checks.
    #[error("CURVE: {0}")]
    Curve(String),
    /// The first command was not READY, or it was malformed.
    #[error("bad handshake: {0}")]
    Handshake(String),
    /// The two socket types cannot talk to each other.
    #[error("socket type {peer} cannot talk to {ours}")]
    Incompatible {
        /// Ours.
        ours: &'static str,
        /// Theirs.
        peer: String,
    },
    /// A frame larger than we accept.
    #[error("frame of {0} bytes is larger than the limit")]
    TooLarge(u64),
    /// A message of more frames than we accept.
    #[error("message of more than {0} frames")]
    TooManyFrames(usize),
}

/// Our greeting: signature, version 3.0, `mechanism` (NULL or CURVE), as-server flag.
pub fn greeting(mechanism: &str, as_server: bool) -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3;
    g[11] = 0;
    let name = &mechanism.as_bytes()[..mechanism.len().min(20)];
    g[12..12 + name.len()].copy_from_slice(name);
    g[32] = u8::from(as_server);
    g
}

/// What a peer's greeting says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerGreeting {
    /// Major version (3).
    pub major: u8,
    /// Minor version (0 or 1).
    pub minor: u8,
    /// Its security mechanism (NULL, CURVE, PLAIN…).
    pub mechanism: String,
    /// Whether it says it is the server (CURVE's roles).
    pub as_server: bool,
}

/// Check a peer's greeting.
pub fn parse_greeting(g: &[u8; GREETING_LEN]) -> Result<PeerGreeting, ZmtpError> {
    if g[0] != 0xFF || g[9] & 0x01 != 0x01 {
        return Err(ZmtpError::Signature);
    }
    if g[10] < 3 {
        return Err(ZmtpError::Version(g[10]));
    }
    let mech = &g[12..32];
    let end = mech.iter().position(|&b| b == 0).unwrap_or(mech.len());
    Ok(PeerGreeting {
        major: g[10],
        minor: g[11],
        mechanism: String::from_utf8_lossy(&mech[..end]).into_owned(),
        as_server: g[32] == 1,
    })
}

/// Append a frame header (flags, then the size in one byte or eight) to `out`.
pub fn encode_header(flags: u8, len: usize, out: &mut Vec<u8>) {
    if len > 255 {
        out.push(flags | LONG);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    } else {
        out.push(flags);
        out.push(len as u8);
    }
}

/// Append one frame (flags, size, body) to `out`.
pub fn encode_frame(flags: u8, body: &[u8], out: &mut Vec<u8>) {
    encode_header(flags, body.len(), out);
    out.extend_from_slice(body);
}

/// The first whole frame of encoded bytes: its flags (without [`LONG`]), body,
/// and the bytes after it; None when they do not hold a whole frame.
pub fn split_frame(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&flags, rest) = bytes.split_first()?;
    let (len, rest) = if flags & LONG != 0 {
        let (size, rest) = rest.split_first_chunk::<8>()?;
        (usize::try_from(u64::from_be_bytes(*size)).ok()?, rest)
    } else {
        let (&size, rest) = rest.split_first()?;
        (usize::from(size), rest)
    };
    if rest.len() < len {
        return None;
    }
    let (body, rest) = rest.split_at(len);
    Some((flags & !LONG, body, rest))
}

/// Append a whole multipart message to `out`.
pub fn encode_message<T: AsRef<[u8]>>(frames: &[T], out: &mut Vec<u8>) {
    let last = frames.len().saturating_sub(1);
    for (i, f) in frames.iter().enumerate() {
        encode_frame(if i < last { MORE } else { 0 }, f.as_ref(), out);
    }
}

/// The encoded size of a message, to reserve buffers.
pub fn encoded_len<T: AsRef<[u8]>>(frames: &[T]) -> usize {
    frames
        .iter()
        .map(|f| {
            let n = f.as_ref().len();
            n + if n > 255 { 9 } else { 2 }
        })
        .sum()
}

/// Append a command frame.
pub fn encode_command(name: &str, data: &[u8], out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(1 + name.len() + data.len());
    body.push(name.len() as u8);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    encode_frame(COMMAND, &body, out);
}

/// Our properties: the socket type and, when set, our identity.
pub fn properties(socket_type: &str, identity: Option<&[u8]>) -> Vec<u8> {
    let mut props = Vec::new();
    push_property(&mut props, "Socket-Type", socket_type.as_bytes());
    if let Some(id) = identity {
        push_property(&mut props, "Identity", id);
    }
    props
}

/// The NULL mechanism's READY command with our [`properties`].
pub fn ready(socket_type: &str, identity: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_command("READY", &properties(socket_type, identity), &mut out);
    out
}

fn push_property(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

/// Split a command body into its name and data.
pub fn parse_command(body: &[u8]) -> Result<(&str, &[u8]), ZmtpError> {
    let n = *body
        .first()
        .ok_or_else(|| ZmtpError::Handshake("empty command".into()))? as usize;
    if body.len() < 1 + n {
        return Err(ZmtpError::Handshake("truncated command name".into()));
    }
    let name = std::str::from_utf8(&body[1..1 + n])
        .map_err(|_| ZmtpError::Handshake("command name is not text".into()))?;
    Ok((name, &body[1 + n..]))
}

/// Parse READY's properties. Names compare case-insensitively, as the RFC says.
pub fn parse_properties(mut data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ZmtpError> {
    let mut props = Vec::new();
    let bad = || ZmtpError::Handshake("malformed READY properties".into());
    while !data.is_empty() {
        let n = data[0] as usize;
        if data.len() < 1 + n + 4 {
            return Err(bad());
        }
        let name = String::from_utf8_lossy(&data[1..1 + n]).into_owned();
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&data[1 + n..5 + n]);
        let vlen = u32::from_be_bytes(len_bytes) as usize;
        if data.len() < 5 + n + vlen {
            return Err(bad());
        }
        props.push((name, data[5 + n..5 + n + vlen].to_vec()));
        data = &data[5 + n + vlen..];
    }
    Ok(props)
}

/// The value of a property.
pub fn property<'a>(props: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    props
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// Whether socket types `ours` and `peer` may talk (RFC 23's table, for the types we use).
pub fn compatible(ours: &str, peer: &str) -> bool {
    let allowed: &[&str] = match ours {
        "ROUTER" => &["DEALER", "REQ", "ROUTER"],
        "DEALER" => &["ROUTER", "REP", "DEALER"],
        "XPUB" | "PUB" => &["SUB", "XSUB"],
        "SUB" | "XSUB" => &["PUB", "XPUB"],
        _ => &[],
    };
    allowed.iter().any(|a| a.eq_ignore_ascii_case(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_layout() {
        let g = greeting("NULL", true);
        assert_eq!(g[0], 0xFF);
        assert_eq!(g[9], 0x7F);
        assert_eq!((g[10], g[11]), (3, 0));
        assert_eq!(&g[12..17], b"NULL\0");
        assert_eq!(g[32], 1);
        assert!(g[33..].iter().all(|&b| b == 0));
        let parsed = PeerGreeting {
            major: 3,
            minor: 0,
            mechanism: "NULL".into(),
            as_server: true,
        };
        assert_eq!(parse_greeting(&g), Ok(parsed));
        let g = greeting("CURVE", false);
        assert_eq!(&g[12..18], b"CURVE\0");
        let peer = parse_greeting(&g).unwrap();
        assert_eq!((peer.mechanism.as_str(), peer.as_server), ("CURVE", false));
    }

    #[test]
    fn frames_split_as_they_were_encoded() {
        let mut out = Vec::new();
        encode_message(&[b"ab".to_vec(), vec![7u8; 300]], &mut out);
        encode_command("PONG", b"x", &mut out);
        let (f, body, rest) = split_frame(&out).unwrap();
        assert_eq!((f, body), (MORE, &b"ab"[..]));
        let (f, body, rest) = split_frame(rest).unwrap();
        assert_eq!((f, body.len()), (0, 300));
        let (f, body, rest) = split_frame(rest).unwrap();
        assert_eq!((f, body), (COMMAND, &b"\x04PONGx"[..]));
        assert!(rest.is_empty());
        assert_eq!(split_frame(&out[..3]), None, "a partial frame");
        assert_eq!(split_frame(&[]), None);
    }

    #[test]
    fn greeting_errors() {
        let mut g = greeting("NULL", false);
        g[0] = 0;
        assert_eq!(parse_greeting(&g), Err(ZmtpError::Signature));
        let mut g = greeting("NULL", false);
        g[10] = 2;
        assert_eq!(parse_greeting(&g), Err(ZmtpError::Version(2)));
    }

    #[test]
    fn frames_short_and_long() {
        let mut out = Vec::new();
        encode_message(&[b"ab".to_vec(), vec![7u8; 300]], &mut out);
        assert_eq!(&out[..4], &[MORE, 2, b'a', b'b']);
        assert_eq!(out[4], LONG);
        assert_eq!(&out[5..13], &300u64.to_be_bytes());
        assert_eq!(out.len(), 4 + 9 + 300);
        assert_eq!(encoded_len(&[b"ab".to_vec(), vec![7u8; 300]]), out.len());
    }

    #[test]
    fn ready_round_trips_its_properties() {
        let r = ready("DEALER", Some(b"id-1"));
        // COMMAND flag, then a one-byte size.
        assert_eq!(r[0], COMMAND);
        assert_eq!(r[1] as usize, r.len() - 2);
        let (name, data) = parse_command(&r[2..]).unwrap();
        assert_eq!(name, "READY");
        let props = parse_properties(data).unwrap();
        assert_eq!(property(&props, "socket-type"), Some(&b"DEALER"[..]));
        assert_eq!(property(&props, "Identity"), Some(&b"id-1"[..]));
    }

    #[test]
    fn malformed_properties_are_errors() {
        assert!(parse_properties(&[5, b'a']).is_err());
        assert!(parse_properties(&[1, b'a', 0, 0, 0, 9, 1]).is_err());
        assert!(parse_command(&[]).is_err());
        assert!(parse_command(&[9, b'R']).is_err());
    }

    #[test]
    fn compatibility_table() {
        assert!(compatible("ROUTER", "REQ"));
        assert!(compatible("XPUB", "SUB"));
        assert!(compatible("SUB", "PUB"));
        assert!(!compatible("ROUTER", "SUB"));
        assert!(!compatible("DEALER", "PUB"));
    }
}
