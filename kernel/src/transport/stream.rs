//! One connection's byte stream: opening it (TCP or Unix socket), reading ZMTP
//! frames and messages from it, and the ZMTP handshake.

use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

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
/// frames) or command.
pub(super) async fn read_incoming(rd: &mut Reader) -> std::io::Result<Incoming> {
    let max = limits::max_message();
    let mut total = 0u64;
    let mut frames = Vec::new();
    loop {
        let (flags, body) = read_frame(rd, max - total).await?;
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

/// Greeting and READY both ways; returns the peer's READY properties.
pub(super) async fn handshake(
    rd: &mut Reader,
    wr: &Writer,
    kind: Kind,
    identity: Option<&[u8]>,
    as_server: bool,
) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let ours = type_name(kind);
    let mut hello = zmtp::greeting(as_server).to_vec();
    hello.extend_from_slice(&zmtp::ready(ours, identity));
    wr.write_all(&hello).await?;
    let mut g = [0u8; GREETING_LEN];
    // The signature first: a peer that is not ZeroMQ is turned away at once.
    rd.read_exact(&mut g[..10]).await?;
    if g[0] != 0xFF {
        return Err(invalid(ZmtpError::Signature));
    }
    rd.read_exact(&mut g[10..]).await?;
    zmtp::parse_greeting(&g).map_err(invalid)?;
    let props = match read_incoming(rd).await? {
        Incoming::Command(name, data) if name == "READY" => {
            zmtp::parse_properties(&data).map_err(invalid)?
        }
        Incoming::Command(name, _) => {
            return Err(invalid(ZmtpError::Handshake(format!(
                "expected READY, got {name}"
            ))));
        }
        Incoming::Message(_) => {
            return Err(invalid(ZmtpError::Handshake("message before READY".into())));
        }
    };
    let peer = zmtp::property(&props, "Socket-Type")
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default();
    if !zmtp::compatible(ours, &peer) {
        return Err(invalid(ZmtpError::Incompatible { ours, peer }));
    }
    Ok(props)
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

    fn error_of(r: std::io::Result<Incoming>) -> String {
        match r {
            Ok(_) => panic!("read a message"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn a_frame_announcing_more_than_a_message_may_hold_ends_the_connection() {
        let e = error_of(read_incoming(&mut bytes(long_header(0, 1 << 62))).await);
        assert_eq!(e, ZmtpError::TooLarge(1 << 62).to_string());
    }

    #[tokio::test]
    async fn memory_follows_the_bytes_that_arrive_not_the_header() {
        // 4 GiB - 1 announced (over the default limit of 1 GiB: refused at once) ...
        let e = error_of(read_incoming(&mut bytes(long_header(0, (4 << 30) - 1))).await);
        assert!(e.contains("larger than the limit"), "{e}");
        // ... and under it, 512 MiB announced, 3 bytes sent: the read fails at the end
        // of the input without having allocated the announced size.
        let mut input = long_header(0, 512 << 20);
        input.extend_from_slice(b"abc");
        let e = read_incoming(&mut bytes(input)).await.err().unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn endless_more_frames_end_the_connection() {
        let input = [MORE, 0].repeat(MAX_FRAMES + 10);
        let e = error_of(read_incoming(&mut bytes(input)).await);
        assert_eq!(e, ZmtpError::TooManyFrames(MAX_FRAMES).to_string());
        // A message of exactly the limit is fine.
        let mut input = [MORE, 0].repeat(MAX_FRAMES - 1);
        input.extend_from_slice(&[0, 0]);
        match read_incoming(&mut bytes(input)).await.unwrap() {
            Incoming::Message(frames) => assert_eq!(frames.len(), MAX_FRAMES),
            Incoming::Command(..) => panic!("a command"),
        }
    }

    #[tokio::test]
    async fn commands_are_small() {
        let e = error_of(read_incoming(&mut bytes(long_header(COMMAND, 100 << 10))).await);
        assert!(e.contains("larger than the limit"), "{e}");
    }

    #[tokio::test]
    async fn large_frames_arrive_whole() {
        let body: Vec<u8> = (0..(3 * READ_STEP + 7)).map(|i| i as u8).collect();
        let mut input = long_header(0, body.len() as u64);
        input.extend_from_slice(&body);
        match read_incoming(&mut bytes(input)).await.unwrap() {
            Incoming::Message(frames) => assert_eq!(frames, vec![body]),
            Incoming::Command(..) => panic!("a command"),
        }
    }
}
