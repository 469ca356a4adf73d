//! CurveZMQ (RFC 26), as ZMTP's CURVE mechanism (RFC 25), in pure functions and
//! state: Z85 keys (RFC 32), the four handshake commands of either side (HELLO,
//! WELCOME, INITIATE, READY), and the boxes every frame travels in afterwards
//! (MESSAGE). No I/O here: [`super::stream`] drives the handshake and
//! [`super::conn`] seals what it writes.
//!
//! The cryptography is the `crypto_box` crate's (X25519 and XSalsa20-Poly1305,
//! NaCl's `crypto_box` and `crypto_secretbox`); what is ours is the layout of
//! the commands, which key opens which box, and the nonce rules: each side
//! counts its short nonces up from 1, and a peer's must only ever grow, so a
//! replayed or reordered frame ends the connection.
//!
//! As with libzmq without a ZAP handler, any client that knows the server's
//! public key may connect (Jupyter's model: the kernel's key is in the
//! connection file, and the HMAC key still signs every message).

use std::sync::Arc;

use crypto_box::aead::{self, AeadInPlace};
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use crypto_secretbox::{KeyInit, XSalsa20Poly1305};

use super::zmtp::{self, COMMAND, MORE, ZmtpError};

/// Length of a key, public or secret.
pub const KEY_LEN: usize = 32;
/// What a box adds to its plaintext: the Poly1305 tag, in front.
const TAG_LEN: usize = 16;
/// What a MESSAGE adds to its frame: the command name, the short nonce, the
/// tag and the flags byte.
pub const MESSAGE_OVERHEAD: u64 = 8 + 8 + TAG_LEN as u64 + 1;
/// A MESSAGE's flag bits (inside the box): more frames follow; a command.
const BOX_MORE: u8 = 0x01;
const BOX_COMMAND: u8 = 0x02;

fn curve(why: &str) -> ZmtpError {
    ZmtpError::Curve(why.to_owned())
}

// ---------------------------------------------------------------------------
// Z85 (RFC 32): how Jupyter's connection files and pyzmq write keys.

const Z85: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Z85 text of `data`, whose length must be a multiple of 4.
pub fn z85_encode(data: &[u8]) -> Option<String> {
    if !data.len().is_multiple_of(4) {
        return None;
    }
    let mut out = String::with_capacity(data.len() / 4 * 5);
    for chunk in data.chunks_exact(4) {
        let mut value = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let mut digits = [0u8; 5];
        for d in digits.iter_mut().rev() {
            *d = Z85[(value % 85) as usize];
            value /= 85;
        }
        out.extend(digits.iter().map(|&b| b as char));
    }
    Some(out)
}

/// The bytes of Z85 `text` (a multiple of 5 characters of its alphabet).
pub fn z85_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(5) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 5 * 4);
    for chunk in bytes.chunks_exact(5) {
        let mut value: u64 = 0;
        for &c in chunk {
            let digit = Z85.iter().position(|&z| z == c)?;
            value = value * 85 + digit as u64;
        }
        let value = u32::try_from(value).ok()?;
        out.extend_from_slice(&value.to_be_bytes());
    }
    Some(out)
}

/// A key from its Z85 text (40 characters).
pub fn key_from_z85(text: &str) -> Option<[u8; KEY_LEN]> {
    z85_decode(text)?.try_into().ok()
}

/// A server's public key from a connection file's `curve_publickey`.
pub fn public_key_from_z85(text: &str) -> Result<[u8; KEY_LEN], ZmtpError> {
    key_from_z85(text.trim())
        .ok_or_else(|| curve("curve_publickey is not a Z85 key of 40 characters"))
}

/// A kernel's key pair from its connection file's `curve_secretkey` (and the
/// `curve_publickey` beside it, which must be its own). Errors never quote a key.
pub fn server_keys(secret: &str, public: Option<&str>) -> Result<KeyPair, ZmtpError> {
    let secret = key_from_z85(secret.trim())
        .ok_or_else(|| curve("curve_secretkey is not a Z85 key of 40 characters"))?;
    let keys = KeyPair::from_secret(secret);
    if let Some(public) = public
        && public_key_from_z85(public)? != keys.public()
    {
        return Err(curve(
            "curve_publickey is not the public key of curve_secretkey",
        ));
    }
    Ok(keys)
}

// ---------------------------------------------------------------------------
// Keys and boxes.

fn random<const N: usize>() -> Result<[u8; N], ZmtpError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| curve(&format!("no randomness: {e}")))?;
    Ok(b)
}

/// A long-term key pair: a server's (from its connection file) or a client's.
pub struct KeyPair {
    public: PublicKey,
    secret: SecretKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("KeyPair")
            .field("public", &self.public_z85())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh pair from the system's randomness.
    pub fn generate() -> Result<KeyPair, ZmtpError> {
        Ok(KeyPair::from_secret(random::<KEY_LEN>()?))
    }

    /// The pair of a secret key (its public key follows from it).
    pub fn from_secret(secret: [u8; KEY_LEN]) -> KeyPair {
        let secret = SecretKey::from(secret);
        KeyPair {
            public: secret.public_key(),
            secret,
        }
    }

    /// The public key.
    pub fn public(&self) -> [u8; KEY_LEN] {
        *self.public.as_bytes()
    }

    /// The public key in Z85.
    pub fn public_z85(&self) -> String {
        z85_encode(self.public.as_bytes()).unwrap_or_default()
    }

    /// The secret key in Z85, for a connection file (and nowhere else).
    pub fn secret_z85(&self) -> String {
        z85_encode(&self.secret.to_bytes()).unwrap_or_default()
    }
}

/// A 24-byte nonce: a text prefix, then the rest (a counter or random bytes).
fn nonce(prefix: &[u8], rest: &[u8]) -> [u8; 24] {
    let mut n = [0u8; 24];
    n[..prefix.len()].copy_from_slice(prefix);
    n[prefix.len()..].copy_from_slice(rest);
    n
}

/// Both of CurveZMQ's ciphers (crypto_box and crypto_secretbox) take 24-byte nonces.
fn as_nonce<A: AeadInPlace>(n: &[u8; 24]) -> &aead::Nonce<A> {
    aead::Nonce::<A>::from_slice(n)
}

/// Box `plain` as NaCl does (tag first), appending it to `out`.
fn seal_into<A: AeadInPlace>(
    cipher: &A,
    nonce: &[u8; 24],
    plain: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), ZmtpError> {
    let tag_at = out.len();
    out.extend_from_slice(&[0u8; TAG_LEN]);
    let start = out.len();
    out.extend_from_slice(plain);
    let tag = cipher
        .encrypt_in_place_detached(as_nonce::<A>(nonce), b"", &mut out[start..])
        .map_err(|_| curve("cannot seal a box"))?;
    out[tag_at..start].copy_from_slice(&tag);
    Ok(())
}

fn seal<A: AeadInPlace>(cipher: &A, nonce: &[u8; 24], plain: &[u8]) -> Result<Vec<u8>, ZmtpError> {
    let mut out = Vec::with_capacity(TAG_LEN + plain.len());
    seal_into(cipher, nonce, plain, &mut out)?;
    Ok(out)
}

/// Open a box (tag first); `what` names it in the error.
fn open<A: AeadInPlace>(
    cipher: &A,
    nonce: &[u8; 24],
    boxed: &[u8],
    what: &str,
) -> Result<Vec<u8>, ZmtpError> {
    if boxed.len() < TAG_LEN {
        return Err(curve(&format!("{what} is too short")));
    }
    let tag = aead::Tag::<A>::from_slice(&boxed[..TAG_LEN]);
    let mut plain = boxed[TAG_LEN..].to_vec();
    cipher
        .decrypt_in_place_detached(as_nonce::<A>(nonce), b"", &mut plain, tag)
        .map_err(|_| curve(&format!("{what} does not open")))?;
    Ok(plain)
}

fn short_nonce(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

fn public_key(bytes: &[u8]) -> PublicKey {
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(&bytes[..KEY_LEN]);
    PublicKey::from(k)
}

// ---------------------------------------------------------------------------
// After the handshake: every frame in a MESSAGE box.

/// Seals the frames one side sends, counting its nonces.
pub struct Sealer {
    session: Arc<SalsaBox>,
    prefix: &'static [u8; 16],
    next: u64,
}

impl Sealer {
    /// Append one frame (ZMTP flags: [`MORE`], [`COMMAND`]) as a sealed MESSAGE frame.
    pub fn seal_frame(
        &mut self,
        flags: u8,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ZmtpError> {
        let n = self.next;
        self.next = n.checked_add(1).ok_or_else(|| curve("nonces used up"))?;
        let len = MESSAGE_OVERHEAD as usize + body.len();
        zmtp::encode_header(0, len, out);
        out.extend_from_slice(b"\x07MESSAGE");
        out.extend_from_slice(&n.to_be_bytes());
        let tag_at = out.len();
        out.extend_from_slice(&[0u8; TAG_LEN]);
        let start = out.len();
        let mut inner = 0;
        if flags & MORE != 0 {
            inner |= BOX_MORE;
        }
        if flags & COMMAND != 0 {
            inner |= BOX_COMMAND;
        }
        out.push(inner);
        out.extend_from_slice(body);
        let tag = self
            .session
            .encrypt_in_place_detached(
                as_nonce::<SalsaBox>(&nonce(self.prefix, &n.to_be_bytes())),
                b"",
                &mut out[start..],
            )
            .map_err(|_| curve("cannot seal a message"))?;
        out[tag_at..start].copy_from_slice(&tag);
        Ok(())
    }

    /// A sealer with this one's key and nonce count, for the fuzz entry points
    /// only (they replay one handshake's boxes for every input): two sealers
    /// that seal for one peer reuse nonces, which breaks the box.
    pub(super) fn replica_for_fuzzing(&self) -> Sealer {
        Sealer {
            session: Arc::clone(&self.session),
            prefix: self.prefix,
            next: self.next,
        }
    }

    /// Seal every frame of plain ZMTP (as [`zmtp`] encodes it) into `out`.
    pub fn seal_encoded(&mut self, mut plain: &[u8], out: &mut Vec<u8>) -> Result<(), ZmtpError> {
        while !plain.is_empty() {
            let (flags, body, rest) =
                zmtp::split_frame(plain).ok_or_else(|| curve("cannot seal a partial frame"))?;
            self.seal_frame(flags, body, out)?;
            plain = rest;
        }
        Ok(())
    }
}

/// Opens the frames the peer sends, checking its nonces only grow.
pub struct Opener {
    session: Arc<SalsaBox>,
    prefix: &'static [u8; 16],
    last: u64,
}

impl Opener {
    /// An opener with this one's key and last nonce, for the fuzz entry points
    /// only (see [`Sealer::replica_for_fuzzing`]).
    pub(super) fn replica_for_fuzzing(&self) -> Opener {
        Opener {
            session: Arc::clone(&self.session),
            prefix: self.prefix,
            last: self.last,
        }
    }

    /// Open a MESSAGE frame's body: its ZMTP flags ([`MORE`], [`COMMAND`]) and content.
    pub fn open(&mut self, mut frame: Vec<u8>) -> Result<(u8, Vec<u8>), ZmtpError> {
        if frame.len() < MESSAGE_OVERHEAD as usize || !frame.starts_with(b"\x07MESSAGE") {
            return Err(curve("expected a MESSAGE"));
        }
        let n = short_nonce(&frame[8..16]);
        if n <= self.last {
            return Err(curve(
                "a MESSAGE nonce did not grow (replayed or reordered)",
            ));
        }
        let tag = crypto_box::Tag::clone_from_slice(&frame[16..32]);
        self.session
            .decrypt_in_place_detached(
                as_nonce::<SalsaBox>(&nonce(self.prefix, &frame[8..16])),
                b"",
                &mut frame[32..],
                &tag,
            )
            .map_err(|_| curve("a MESSAGE does not open"))?;
        self.last = n;
        let inner = frame[32];
        frame.drain(..MESSAGE_OVERHEAD as usize);
        let mut flags = 0;
        if inner & BOX_MORE != 0 {
            flags |= MORE;
        }
        if inner & BOX_COMMAND != 0 {
            flags |= COMMAND;
        }
        Ok((flags, frame))
    }
}

/// What a finished handshake leaves: the peer's metadata (READY properties) and
/// the two directions' boxes.
pub struct Established {
    /// The peer's properties (Socket-Type, Identity), as NULL's READY carries them.
    pub metadata: Vec<u8>,
    /// Seals what we send.
    pub sealer: Sealer,
    /// Opens what the peer sends.
    pub opener: Opener,
}

// ---------------------------------------------------------------------------
// The client's side of the handshake.

/// A client's handshake: HELLO, then INITIATE once WELCOME came, then READY.
pub struct Client {
    server: PublicKey,
    ours: Arc<KeyPair>,
    short: SecretKey,
    next: u64,
    /// After WELCOME: the server's short-term key and the cookie to return.
    welcomed: Option<(PublicKey, Vec<u8>)>,
}

impl Client {
    /// Start a handshake with the server whose public key is `server`.
    pub fn new(server: [u8; KEY_LEN], ours: Arc<KeyPair>) -> Result<Client, ZmtpError> {
        Ok(Client {
            server: PublicKey::from(server),
            ours,
            short: SecretKey::from(random::<KEY_LEN>()?),
            next: 1,
            welcomed: None,
        })
    }

    fn take_nonce(&mut self) -> u64 {
        let n = self.next;
        self.next += 1;
        n
    }

    /// HELLO's data: version 1.0, padding, C', and a box only the server can open.
    pub fn hello(&mut self) -> Result<Vec<u8>, ZmtpError> {
        let n = self.take_nonce().to_be_bytes();
        let signature = seal(
            &SalsaBox::new(&self.server, &self.short),
            &nonce(b"CurveZMQHELLO---", &n),
            &[0u8; 64],
        )?;
        let mut data = Vec::with_capacity(194);
        data.extend_from_slice(&[1, 0]);
        data.extend_from_slice(&[0u8; 72]);
        data.extend_from_slice(self.short.public_key().as_bytes());
        data.extend_from_slice(&n);
        data.extend_from_slice(&signature);
        Ok(data)
    }

    /// Take WELCOME's data: the server's short-term key and its cookie.
    pub fn welcome(&mut self, data: &[u8]) -> Result<(), ZmtpError> {
        if data.len() != 160 {
            return Err(curve("malformed WELCOME"));
        }
        let plain = open(
            &SalsaBox::new(&self.server, &self.short),
            &nonce(b"WELCOME-", &data[..16]),
            &data[16..],
            "WELCOME (is the server key right?)",
        )?;
        self.welcomed = Some((public_key(&plain[..32]), plain[32..128].to_vec()));
        Ok(())
    }

    /// INITIATE's data: the cookie, and a box with our long-term key, the vouch
    /// for our short-term key, and our `metadata`.
    pub fn initiate(&mut self, metadata: &[u8]) -> Result<Vec<u8>, ZmtpError> {
        let (server_short, cookie) = self
            .welcomed
            .clone()
            .ok_or_else(|| curve("INITIATE before WELCOME"))?;
        let vouch_nonce = random::<16>()?;
        let mut vouched = Vec::with_capacity(64);
        vouched.extend_from_slice(self.short.public_key().as_bytes());
        vouched.extend_from_slice(self.server.as_bytes());
        let vouch = seal(
            &SalsaBox::new(&server_short, &self.ours.secret),
            &nonce(b"VOUCH---", &vouch_nonce),
            &vouched,
        )?;
        let mut plain = Vec::with_capacity(128 + metadata.len());
        plain.extend_from_slice(self.ours.public.as_bytes());
        plain.extend_from_slice(&vouch_nonce);
        plain.extend_from_slice(&vouch);
        plain.extend_from_slice(metadata);
        let n = self.take_nonce().to_be_bytes();
        let mut data = Vec::with_capacity(96 + 8 + TAG_LEN + plain.len());
        data.extend_from_slice(&cookie);
        data.extend_from_slice(&n);
        seal_into(
            &SalsaBox::new(&server_short, &self.short),
            &nonce(b"CurveZMQINITIATE", &n),
            &plain,
            &mut data,
        )?;
        Ok(data)
    }

    /// Take READY's data: the server's metadata; the handshake is done.
    pub fn ready(self, data: &[u8]) -> Result<Established, ZmtpError> {
        let (server_short, _) = self.welcomed.ok_or_else(|| curve("READY before WELCOME"))?;
        if data.len() < 8 + TAG_LEN {
            return Err(curve("malformed READY"));
        }
        let session = Arc::new(SalsaBox::new(&server_short, &self.short));
        let metadata = open(
            &*session,
            &nonce(b"CurveZMQREADY---", &data[..8]),
            &data[8..],
            "READY",
        )?;
        let last = short_nonce(&data[..8]);
        Ok(Established {
            metadata,
            sealer: Sealer {
                session: session.clone(),
                prefix: b"CurveZMQMESSAGEC",
                next: self.next,
            },
            opener: Opener {
                session,
                prefix: b"CurveZMQMESSAGES",
                last,
            },
        })
    }
}

// ---------------------------------------------------------------------------
// The server's side of the handshake.

/// A server's handshake: WELCOME to a HELLO, READY to an INITIATE.
pub struct Server {
    ours: Arc<KeyPair>,
    short: SecretKey,
    cookie_key: [u8; KEY_LEN],
    /// After HELLO: the client's short-term key, and its last nonce.
    client_short: Option<PublicKey>,
    peer_nonce: u64,
}

impl Server {
    /// Start a handshake as the server of `ours`.
    pub fn new(ours: Arc<KeyPair>) -> Result<Server, ZmtpError> {
        Ok(Server {
            ours,
            short: SecretKey::from(random::<KEY_LEN>()?),
            cookie_key: random::<KEY_LEN>()?,
            client_short: None,
            peer_nonce: 0,
        })
    }

    /// Take HELLO's data; returns WELCOME's.
    pub fn hello(&mut self, data: &[u8]) -> Result<Vec<u8>, ZmtpError> {
        if data.len() != 194 {
            return Err(curve("malformed HELLO"));
        }
        if data[..2] != [1, 0] {
            return Err(curve(&format!(
                "HELLO of CurveZMQ {}.{}; 1.0 is spoken here",
                data[0], data[1]
            )));
        }
        let client_short = public_key(&data[74..106]);
        open(
            &SalsaBox::new(&client_short, &self.ours.secret),
            &nonce(b"CurveZMQHELLO---", &data[106..114]),
            &data[114..],
            "HELLO (the client has a wrong server key)",
        )?;
        self.peer_nonce = short_nonce(&data[106..114]);
        // The cookie: C' and s' under a key only this handshake knows.
        let cookie_nonce = random::<16>()?;
        let mut cookie_plain = Vec::with_capacity(64);
        cookie_plain.extend_from_slice(client_short.as_bytes());
        cookie_plain.extend_from_slice(&self.short.to_bytes());
        let cookie = seal(
            &XSalsa20Poly1305::new(&self.cookie_key.into()),
            &nonce(b"COOKIE--", &cookie_nonce),
            &cookie_plain,
        )?;
        let mut plain = Vec::with_capacity(128);
        plain.extend_from_slice(self.short.public_key().as_bytes());
        plain.extend_from_slice(&cookie_nonce);
        plain.extend_from_slice(&cookie);
        let welcome_nonce = random::<16>()?;
        let mut data = Vec::with_capacity(160);
        data.extend_from_slice(&welcome_nonce);
        seal_into(
            &SalsaBox::new(&client_short, &self.ours.secret),
            &nonce(b"WELCOME-", &welcome_nonce),
            &plain,
            &mut data,
        )?;
        self.client_short = Some(client_short);
        Ok(data)
    }

    /// Take INITIATE's data; returns the client's metadata and READY's data, and
    /// the handshake is done.
    pub fn initiate(
        self,
        data: &[u8],
        metadata: impl FnOnce(&[u8]) -> Result<Vec<u8>, ZmtpError>,
    ) -> Result<(Vec<u8>, Established), ZmtpError> {
        let client_short = self
            .client_short
            .ok_or_else(|| curve("INITIATE before HELLO"))?;
        if data.len() < 96 + 8 + TAG_LEN + 128 {
            return Err(curve("malformed INITIATE"));
        }
        let cookie = open(
            &XSalsa20Poly1305::new(&self.cookie_key.into()),
            &nonce(b"COOKIE--", &data[..16]),
            &data[16..96],
            "INITIATE's cookie",
        )?;
        if cookie[..32] != *client_short.as_bytes() || cookie[32..] != self.short.to_bytes() {
            return Err(curve("INITIATE's cookie is not ours"));
        }
        let n = short_nonce(&data[96..104]);
        if n <= self.peer_nonce {
            return Err(curve("INITIATE's nonce did not grow"));
        }
        let session = Arc::new(SalsaBox::new(&client_short, &self.short));
        let plain = open(
            &*session,
            &nonce(b"CurveZMQINITIATE", &data[96..104]),
            &data[104..],
            "INITIATE",
        )?;
        let client_long = public_key(&plain[..32]);
        let vouched = open(
            &SalsaBox::new(&client_long, &self.short),
            &nonce(b"VOUCH---", &plain[32..48]),
            &plain[48..128],
            "INITIATE's vouch",
        )?;
        if vouched[..32] != *client_short.as_bytes() || vouched[32..] != self.ours.public() {
            return Err(curve("INITIATE's vouch is for other keys"));
        }
        let ready_metadata = metadata(&plain[128..])?;
        let mut ready = 1u64.to_be_bytes().to_vec();
        seal_into(
            &*session,
            &nonce(b"CurveZMQREADY---", &1u64.to_be_bytes()),
            &ready_metadata,
            &mut ready,
        )?;
        Ok((
            ready,
            Established {
                metadata: plain[128..].to_vec(),
                sealer: Sealer {
                    session: session.clone(),
                    prefix: b"CurveZMQMESSAGES",
                    next: 2,
                },
                opener: Opener {
                    session,
                    prefix: b"CurveZMQMESSAGEC",
                    last: n,
                },
            },
        ))
    }
}

#[cfg(test)]
mod tests;
