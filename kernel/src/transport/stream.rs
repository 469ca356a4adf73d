//! One connection's byte stream: opening it (TCP or Unix socket), reading ZMTP
//! frames and messages from it (opening CURVE's boxes), and the ZMTP handshake
//! with either mechanism.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

use super::curve::{self, Established, KeyPair, Opener};
use super::limits::{self, MAX_FRAMES, READ_STEP};
use super::unix;
use super::zmtp::{self, COMMAND, GREETING_LEN, LONG, MORE, ZmtpError};
use super::{Frames, Kind};

/// The largest command frame (READY with its properties, PING, SUBSCRIBE).
const MAX_COMMAND: u64 = 64 << 10;

pub(super) type Reader = BufReader<Box<dyn AsyncRead + Send + Unpin>>;

/// The write half of a connection. Its writes need only `&self`, so a sender
/// can write through it directly while the writer task also holds it.
pub(super) enum Writer {
    Tcp(tokio::net::tcp::OwnedWriteHalf),
    Ipc(unix::Stream),
}

impl Writer {
    /// Write what the socket takes now, without waiting.
    pub(super) fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Writer::Tcp(w) => w.try_write(bytes),
            Writer::Ipc(w) => w.try_write(bytes),
        }
    }

    pub(super) async fn writable(&self) -> std::io::Result<()> {
        match self {
            Writer::Tcp(w) => w.writable().await,
            Writer::Ipc(w) => w.writable().await,
        }
    }

    pub(super) async fn write_all(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            match self.try_write(bytes) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Where a socket binds or connects.
#[derive(Clone, Debug)]
pub(super) enum Address {
    Tcp(String),
    Ipc(PathBuf),
}

/// A bound listener.
pub(super) enum Listener {
    Tcp(tokio::net::TcpListener),
    Ipc(tokio::net::UnixListener),
}

pub(super) fn reader<R: AsyncRead + Send + Unpin + 'static>(r: R) -> Reader {
    BufReader::with_capacity(64 * 1024, Box::new(r) as Box<dyn AsyncRead + Send + Unpin>)
}

pub(super) fn split_tcp(s: tokio::net::TcpStream) -> std::io::Result<(Reader, Writer)> {
    s.set_nodelay(true)?;
    let (r, w) = s.into_split();
    Ok((reader(r), Writer::Tcp(w)))
}

pub(super) fn split_ipc(s: tokio::net::UnixStream) -> std::io::Result<(Reader, Writer)> {
    let s = unix::Stream::new(s)?;
    Ok((reader(s.clone()), Writer::Ipc(s)))
}

impl Listener {
    pub(super) async fn accept(&self) -> std::io::Result<(Reader, Writer)> {
        match self {
            Listener::Tcp(l) => split_tcp(l.accept().await?.0),
            Listener::Ipc(l) => split_ipc(l.accept().await?.0),
        }
    }
}

pub(super) async fn dial(addr: &Address) -> std::io::Result<(Reader, Writer)> {
    match addr {
        Address::Tcp(a) => split_tcp(tokio::net::TcpStream::connect(a.as_str()).await?),
        Address::Ipc(p) => split_ipc(tokio::net::UnixStream::connect(p).await?),
    }
}

pub(super) fn type_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Router => "ROUTER",
        Kind::Dealer => "DEALER",
        Kind::XPub => "XPUB",
        Kind::Sub => "SUB",
    }
}

/// One message read from a peer.
pub(super) enum Incoming {
    Message(Frames),
    Command(String, Vec<u8>),
}

pub(super) fn invalid(e: ZmtpError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// One frame, whose body may be at most `room` bytes (a command's, at most
/// [`MAX_COMMAND`]). The body's memory grows with the bytes that arrive, not
/// with what the header announces.
pub(super) async fn read_frame(rd: &mut Reader, room: u64) -> std::io::Result<(u8, Vec<u8>)> {
    let flags = rd.read_u8().await?;
    let len = if flags & LONG != 0 {
        rd.read_u64().await?
    } else {
        u64::from(rd.read_u8().await?)
    };
    let limit = if flags & COMMAND != 0 {
        room.min(MAX_COMMAND)
    } else {
        room
    };
    if len > limit {
        return Err(invalid(ZmtpError::TooLarge(len)));
    }
    let len = usize::try_from(len).map_err(|_| invalid(ZmtpError::TooLarge(len)))?;
    if len <= READ_STEP {
        let mut body = vec![0u8; len];
        rd.read_exact(&mut body).await?;
        return Ok((flags, body));
    }
    let mut body = Vec::new();
    while body.len() < len {
        let start = body.len();
        body.resize(start + (len - start).min(READ_STEP), 0);
        rd.read_exact(&mut body[start..]).await?;
    }
    Ok((flags, body))
}

/// One message (at most [`limits::max_message`] bytes in at most [`MAX_FRAMES`]
/// frames) or command; each frame out of its CURVE box when `opener` is given.
pub(super) async fn read_incoming(
    rd: &mut Reader,
    mut opener: Option<&mut Opener>,
) -> std::io::Result<Incoming> {
    let max = limits::max_message();
    let mut total = 0u64;
    let mut frames = Vec::new();
    loop {
        let room = max - total;
        let (flags, body) = match opener.as_deref_mut() {
            None => read_frame(rd, room).await?,
            Some(o) => {
                // What the box holds is its frame less the overhead: at most `room`.
                let (_, sealed) = read_frame(rd, room + curve::MESSAGE_OVERHEAD).await?;
                let (flags, body) = o.open(sealed).map_err(invalid)?;
                // A command in a box is as small as one in the clear.
                if flags & COMMAND != 0 && body.len() as u64 > MAX_COMMAND {
                    return Err(invalid(ZmtpError::TooLarge(body.len() as u64)));
                }
                (flags, body)
            }
        };
        if flags & COMMAND != 0 {
            if !frames.is_empty() {
                return Err(invalid(ZmtpError::Handshake(
                    "command inside a multipart message".into(),
                )));
            }
            let (name, data) = zmtp::parse_command(&body).map_err(invalid)?;
            return Ok(Incoming::Command(name.to_owned(), data.to_vec()));
        }
        total += body.len() as u64;
        frames.push(body);
        if flags & MORE == 0 {
            return Ok(Incoming::Message(frames));
        }
        if frames.len() >= MAX_FRAMES {
            return Err(invalid(ZmtpError::TooManyFrames(MAX_FRAMES)));
        }
    }
}

/// Who this end of a connection is, for its security mechanism.
#[derive(Clone)]
pub(super) enum Security {
    /// No security (ZMTP's NULL): the HMAC of every message is the protection.
    Null,
    /// CURVE's server, with its long-term key pair.
    CurveServer(Arc<KeyPair>),
    /// CURVE's client of the server with this public key, with our own pair.
    CurveClient {
        server: [u8; curve::KEY_LEN],
        ours: Arc<KeyPair>,
    },
}

impl Security {
    fn mechanism(&self) -> &'static str {
        match self {
            Security::Null => "NULL",
            Security::CurveServer(_) | Security::CurveClient { .. } => "CURVE",
        }
    }
}

/// A finished handshake: the peer's properties, and with CURVE the boxes.
pub(super) struct Shaken {
    pub(super) props: Vec<(String, Vec<u8>)>,
    pub(super) curve: Option<(curve::Sealer, Opener)>,
}

/// Greeting and the mechanism's handshake both ways (NULL: READY; CURVE: HELLO,
/// WELCOME, INITIATE, READY); checks the peer's socket type.
pub(super) async fn handshake(
    rd: &mut Reader,
    wr: &Writer,
    kind: Kind,
    identity: Option<&[u8]>,
    as_server: bool,
    security: &Security,
) -> std::io::Result<Shaken> {
    let ours = type_name(kind);
    let mechanism = security.mechanism();
    let as_server = match security {
        Security::Null => as_server,
        Security::CurveServer(_) => true,
        Security::CurveClient { .. } => false,
    };
    let mut hello = zmtp::greeting(mechanism, as_server).to_vec();
    if let Security::Null = security {
        // NULL's READY needs nothing from the peer: it goes with the greeting.
        hello.extend_from_slice(&zmtp::ready(ours, identity));
    }
    wr.write_all(&hello).await?;
    let mut g = [0u8; GREETING_LEN];
    // The signature first: a peer that is not ZeroMQ is turned away at once.
    rd.read_exact(&mut g[..10]).await?;
    if g[0] != 0xFF {
        return Err(invalid(ZmtpError::Signature));
    }
    rd.read_exact(&mut g[10..]).await?;
    let peer = zmtp::parse_greeting(&g).map_err(invalid)?;
    if peer.mechanism != mechanism {
        return Err(invalid(ZmtpError::Mechanism {
            ours: mechanism,
            peer: peer.mechanism,
        }));
    }
    let (props, curve) = match security {
        Security::Null => (
            zmtp::parse_properties(&expect(rd, "READY").await?).map_err(invalid)?,
            None,
        ),
        Security::CurveServer(keys) => {
            let mut server = curve::Server::new(keys.clone()).map_err(invalid)?;
            let welcome = server.hello(&expect(rd, "HELLO").await?).map_err(invalid)?;
            send_command(wr, "WELCOME", &welcome).await?;
            let initiate = expect(rd, "INITIATE").await?;
            let (ready, done) = server
                .initiate(&initiate, |theirs| {
                    let props = zmtp::parse_properties(theirs)?;
                    check_peer_type(ours, &props)?;
                    Ok(zmtp::properties(ours, identity))
                })
                .map_err(invalid)?;
            send_command(wr, "READY", &ready).await?;
            established(done)?
        }
        Security::CurveClient { server, ours: keys } => {
            let mut client = curve::Client::new(*server, keys.clone()).map_err(invalid)?;
            send_command(wr, "HELLO", &client.hello().map_err(invalid)?).await?;
            client
                .welcome(&expect(rd, "WELCOME").await?)
                .map_err(invalid)?;
            let initiate = client
                .initiate(&zmtp::properties(ours, identity))
                .map_err(invalid)?;
            send_command(wr, "INITIATE", &initiate).await?;
            established(client.ready(&expect(rd, "READY").await?).map_err(invalid)?)?
        }
    };
    check_peer_type(ours, &props).map_err(invalid)?;
    Ok(Shaken { props, curve })
}

type CurveProps = (Vec<(String, Vec<u8>)>, Option<(curve::Sealer, Opener)>);

fn established(done: Established) -> std::io::Result<CurveProps> {
    let props = zmtp::parse_properties(&done.metadata).map_err(invalid)?;
    Ok((props, Some((done.sealer, done.opener))))
}

fn check_peer_type(ours: &'static str, props: &[(String, Vec<u8>)]) -> Result<(), ZmtpError> {
    let peer = zmtp::property(props, "Socket-Type")
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default();
    if zmtp::compatible(ours, &peer) {
        Ok(())
    } else {
        Err(ZmtpError::Incompatible { ours, peer })
    }
}

async fn send_command(wr: &Writer, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(10 + name.len() + data.len());
    zmtp::encode_command(name, data, &mut out);
    wr.write_all(&out).await
}

/// The data of the handshake command `name`, the next thing the peer must send.
/// An ERROR command (CURVE's refusal) becomes an error with the peer's reason.
async fn expect(rd: &mut Reader, name: &str) -> std::io::Result<Vec<u8>> {
    match read_incoming(rd, None).await? {
        Incoming::Command(got, data) if got == name => Ok(data),
        Incoming::Command(got, data) if got == "ERROR" => {
            let reason = data
                .get(1..)
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            Err(invalid(ZmtpError::Handshake(format!(
                "the peer refused the handshake: {reason}"
            ))))
        }
        Incoming::Command(got, _) => Err(invalid(ZmtpError::Handshake(format!(
            "expected {name}, got {got}"
        )))),
        Incoming::Message(_) => Err(invalid(ZmtpError::Handshake(format!(
            "message before {name}"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(b: Vec<u8>) -> Reader {
        reader(std::io::Cursor::new(b))
    }

    fn long_header(flags: u8, len: u64) -> Vec<u8> {
        let mut v = vec![flags | LONG];
        v.extend_from_slice(&len.to_be_bytes());
        v
    }

    async fn read_incoming_plain(rd: &mut Reader) -> std::io::Result<Incoming> {
        read_incoming(rd, None).await
    }

    fn error_of(r: std::io::Result<Incoming>) -> String {
        match r {
            Ok(_) => panic!("read a message"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn a_frame_announcing_more_than_a_message_may_hold_ends_the_connection() {
        let e = error_of(read_incoming_plain(&mut bytes(long_header(0, 1 << 62))).await);
        assert_eq!(e, ZmtpError::TooLarge(1 << 62).to_string());
    }

    #[tokio::test]
    async fn memory_follows_the_bytes_that_arrive_not_the_header() {
        // 4 GiB - 1 announced (over the default limit of 1 GiB: refused at once) ...
        let e = error_of(read_incoming_plain(&mut bytes(long_header(0, (4 << 30) - 1))).await);
        assert!(e.contains("larger than the limit"), "{e}");
        // ... and under it, 512 MiB announced, 3 bytes sent: the read fails at the end
        // of the input without having allocated the announced size.
        let mut input = long_header(0, 512 << 20);
        input.extend_from_slice(b"abc");
        let e = read_incoming_plain(&mut bytes(input)).await.err().unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn endless_more_frames_end_the_connection() {
        let input = [MORE, 0].repeat(MAX_FRAMES + 10);
        let e = error_of(read_incoming_plain(&mut bytes(input)).await);
        assert_eq!(e, ZmtpError::TooManyFrames(MAX_FRAMES).to_string());
        // A message of exactly the limit is fine.
        let mut input = [MORE, 0].repeat(MAX_FRAMES - 1);
        input.extend_from_slice(&[0, 0]);
        match read_incoming_plain(&mut bytes(input)).await.unwrap() {
            Incoming::Message(frames) => assert_eq!(frames.len(), MAX_FRAMES),
            Incoming::Command(..) => panic!("a command"),
        }
    }

    #[tokio::test]
    async fn commands_are_small() {
        let e = error_of(read_incoming_plain(&mut bytes(long_header(COMMAND, 100 << 10))).await);
        assert!(e.contains("larger than the limit"), "{e}");
    }

    #[tokio::test]
    async fn large_frames_arrive_whole() {
        let body: Vec<u8> = (0..(3 * READ_STEP + 7)).map(|i| i as u8).collect();
        let mut input = long_header(0, body.len() as u64);
        input.extend_from_slice(&body);
        match read_incoming_plain(&mut bytes(input)).await.unwrap() {
            Incoming::Message(frames) => assert_eq!(frames, vec![body]),
            Incoming::Command(..) => panic!("a command"),
        }
    }
}
