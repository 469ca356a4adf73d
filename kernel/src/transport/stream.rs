//! One connection's byte stream: opening it (TCP or Unix socket), reading ZMTP
//! frames and messages from it, and the ZMTP handshake.

use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

use super::unix;
use super::zmtp::{self, COMMAND, GREETING_LEN, LONG, MORE, ZmtpError};
use super::{Frames, Kind};

/// Frames larger than this end the connection (a broken or hostile peer).
const MAX_FRAME: u64 = 4 << 30;

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

pub(super) async fn read_frame(rd: &mut Reader) -> std::io::Result<(u8, Vec<u8>)> {
    let flags = rd.read_u8().await?;
    let len = if flags & LONG != 0 {
        rd.read_u64().await?
    } else {
        u64::from(rd.read_u8().await?)
    };
    if len > MAX_FRAME {
        return Err(invalid(ZmtpError::TooLarge(len)));
    }
    let mut body = vec![0u8; len as usize];
    rd.read_exact(&mut body).await?;
    Ok((flags, body))
}

pub(super) async fn read_incoming(rd: &mut Reader) -> std::io::Result<Incoming> {
    let mut frames = Vec::new();
    loop {
        let (flags, body) = read_frame(rd).await?;
        if flags & COMMAND != 0 {
            if !frames.is_empty() {
                return Err(invalid(ZmtpError::Handshake(
                    "command inside a multipart message".into(),
                )));
            }
            let (name, data) = zmtp::parse_command(&body).map_err(invalid)?;
            return Ok(Incoming::Command(name.to_owned(), data.to_vec()));
        }
        frames.push(body);
        if flags & MORE == 0 {
            return Ok(Incoming::Message(frames));
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
