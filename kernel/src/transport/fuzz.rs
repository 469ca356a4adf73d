//! Entry points for the fuzz targets in `fuzz/`: each feeds bytes to the code
//! that reads what a peer sends, as a peer would send them, and must return
//! (an error is fine: the connection would be dropped) without panicking,
//! hanging, or allocating what the bytes merely announce. They are public only
//! so that the fuzz crate can reach code that is otherwise the transport's own;
//! the unit tests below run each on a few inputs, so they keep building.

use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use super::Kind;
use super::curve::{self, KeyPair};
use super::stream::{self, Security};
use super::zmtp;

/// The fixed server key of the CURVE targets (a fuzzer must be repeatable).
fn server_keys() -> Arc<KeyPair> {
    static KEYS: OnceLock<Arc<KeyPair>> = OnceLock::new();
    KEYS.get_or_init(|| Arc::new(KeyPair::from_secret([7u8; curve::KEY_LEN])))
        .clone()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime for fuzzing")
    })
}

/// Serve `bytes` as what a peer sends to a bound ROUTER: the greeting, the
/// mechanism's handshake (NULL, or CURVE with `curve`), then messages and
/// commands until the bytes end or one would drop the connection. Returns how
/// many messages and commands were read.
pub fn serve_peer_bytes(bytes: &[u8], curve: bool) -> usize {
    let security = if curve {
        Security::CurveServer(server_keys())
    } else {
        Security::Null
    };
    let input = bytes.to_vec();
    runtime().block_on(async move {
        // What we answer goes to a socket nobody reads: a handshake's few
        // hundred bytes fit its buffer.
        let Ok((ours, theirs)) = tokio::net::UnixStream::pair() else {
            return 0;
        };
        let Ok((_, wr)) = stream::split_ipc(ours) else {
            return 0;
        };
        let mut rd = stream::reader(Cursor::new(input));
        let read = async {
            let Ok(shaken) =
                stream::handshake(&mut rd, &wr, Kind::Router, None, true, &security).await
            else {
                return 0;
            };
            let (_, mut opener) = shaken.curve.unzip();
            let mut read = 0;
            while stream::read_incoming(&mut rd, opener.as_mut())
                .await
                .is_ok()
            {
                read += 1;
            }
            read
        }
        .await;
        // The runtime frees a closed socket's bookkeeping only when its driver
        // runs: without a turn here, a fuzzer's millions of calls pile it up.
        drop((wr, theirs));
        tokio::task::yield_now().await;
        read
    })
}

/// Read `bytes` as frames after a CURVE handshake that succeeded: each chunk of
/// the input (split at `0xFF 0xFE`) is sealed as the client would seal one
/// frame, so the fuzzer reaches what comes out of the box (flags, commands,
/// multipart messages, limits) and not only the boxes it cannot forge.
/// Returns how many messages and commands were read.
pub fn read_sealed_frames(bytes: &[u8]) -> usize {
    // A handshake costs several X25519 multiplications: made once, its two
    // boxes start over, with fresh nonces, for each input.
    let Some((sealer, opener)) = established_pair() else {
        return 0;
    };
    let (mut client, mut opener) = (sealer.replica_for_fuzzing(), opener.replica_for_fuzzing());
    let mut wire = Vec::new();
    for chunk in split_chunks(bytes) {
        // The first byte of a chunk is its ZMTP flags (MORE, COMMAND).
        let (flags, body) = chunk.split_first().unwrap_or((&0, &[]));
        if client.seal_frame(*flags, body, &mut wire).is_err() {
            break;
        }
    }
    runtime().block_on(async move {
        let mut rd = stream::reader(Cursor::new(wire));
        let mut read = 0;
        while stream::read_incoming(&mut rd, Some(&mut opener))
            .await
            .is_ok()
        {
            read += 1;
        }
        read
    })
}

/// A client's sealer and a server's opener after one CURVE handshake between
/// them, made on first use.
fn established_pair() -> Option<&'static (curve::Sealer, curve::Opener)> {
    static PAIR: OnceLock<Option<(curve::Sealer, curve::Opener)>> = OnceLock::new();
    PAIR.get_or_init(|| {
        let client_keys = Arc::new(KeyPair::from_secret([9u8; curve::KEY_LEN]));
        let mut client = curve::Client::new(server_keys().public(), client_keys).ok()?;
        let mut server = curve::Server::new(server_keys()).ok()?;
        let welcome = server.hello(&client.hello().ok()?).ok()?;
        client.welcome(&welcome).ok()?;
        let initiate = client.initiate(&zmtp::properties("DEALER", None)).ok()?;
        let (ready, server) = server
            .initiate(&initiate, |_| Ok(zmtp::properties("ROUTER", None)))
            .ok()?;
        let client = client.ready(&ready).ok()?;
        Some((client.sealer, server.opener))
    })
    .as_ref()
}

fn split_chunks(bytes: &[u8]) -> Vec<&[u8]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == 0xFF && bytes[i + 1] == 0xFE {
            chunks.push(&bytes[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    chunks.push(&bytes[start..]);
    chunks
}

/// Take `bytes` as a CURVE client's HELLO data, and what follows the first 194
/// bytes as its INITIATE data, at a server (no answer can be forged without
/// the keys; this is the parsing in front of the boxes).
pub fn curve_server_commands(bytes: &[u8]) {
    let Ok(mut server) = curve::Server::new(server_keys()) else {
        return;
    };
    let (hello, initiate) = bytes.split_at(bytes.len().min(194));
    if server.hello(hello).is_ok() {
        let _ = server.initiate(initiate, |m| {
            zmtp::parse_properties(m)?;
            Ok(Vec::new())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn null_peer(messages: &[&[&[u8]]]) -> Vec<u8> {
        let mut bytes = zmtp::greeting("NULL", false).to_vec();
        bytes.extend_from_slice(&zmtp::ready("DEALER", Some(b"fz")));
        for m in messages {
            zmtp::encode_message(m, &mut bytes);
        }
        bytes
    }

    #[test]
    fn a_well_behaved_null_peer_is_read_to_the_end() {
        let bytes = null_peer(&[&[b"a", b"b"], &[b"c"]]);
        assert_eq!(serve_peer_bytes(&bytes, false), 2);
        // The same bytes offered to a CURVE server: its mechanism is refused.
        assert_eq!(serve_peer_bytes(&bytes, true), 0);
        assert_eq!(serve_peer_bytes(b"", false), 0);
        assert_eq!(serve_peer_bytes(&bytes[..70], false), 0);
    }

    #[test]
    fn sealed_frames_are_read_as_messages() {
        // Two messages: "a" (MORE) + "b", then a PING command.
        let input = [
            &[zmtp::MORE, b'a'][..],
            &[0xFF, 0xFE],
            &[0, b'b'],
            &[0xFF, 0xFE],
            &[zmtp::COMMAND, 4, b'P', b'I', b'N', b'G', 0, 0],
        ]
        .concat();
        assert_eq!(read_sealed_frames(&input), 2);
        assert_eq!(read_sealed_frames(b""), 1, "one empty frame");
        // A command in a box is held to the 64 KiB of one in the clear.
        let big_command = [&[zmtp::COMMAND, 4][..], b"PING", &vec![0u8; 70_000]].concat();
        assert_eq!(read_sealed_frames(&big_command), 0);
    }

    #[test]
    fn garbage_curve_commands_are_refused() {
        curve_server_commands(&[0u8; 500]);
        curve_server_commands(b"");
    }
}
