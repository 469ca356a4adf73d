//! CurveZMQ's pieces checked against published vectors, a whole handshake
//! between our two sides, and what must end a connection: a wrong server key,
//! a tampered or replayed frame, a cookie or vouch that is not right.

use super::*;

/// libzmq's test key pair (its tests and docs), public derived from secret.
const SECRET: &str = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs";
const PUBLIC: &str = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";

#[test]
fn z85_follows_rfc_32() {
    let bytes = [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B];
    assert_eq!(z85_encode(&bytes).as_deref(), Some("HelloWorld"));
    assert_eq!(z85_decode("HelloWorld").as_deref(), Some(&bytes[..]));
    let cases: &[(&str, &str)] = &[
        ("length not a multiple of 5", "Hell"),
        ("a character outside the alphabet", "Hello Worl"),
        ("a group above 2^32 - 1", "#####"),
    ];
    for (name, text) in cases {
        assert_eq!(z85_decode(text), None, "{name}");
    }
    assert_eq!(z85_encode(&[1, 2, 3]), None, "length not a multiple of 4");
    assert_eq!(z85_decode("").as_deref(), Some(&[][..]));
}

#[test]
fn a_public_key_follows_from_its_secret_as_in_libzmq() {
    let keys = KeyPair::from_secret(key_from_z85(SECRET).unwrap());
    assert_eq!(keys.public_z85(), PUBLIC);
    assert_eq!(keys.secret_z85(), SECRET);
    let shown = format!("{keys:?}");
    assert!(shown.contains(PUBLIC) && !shown.contains(SECRET), "{shown}");
}

#[test]
fn connection_file_keys_are_checked_without_quoting_them() {
    assert_eq!(
        server_keys(SECRET, Some(PUBLIC)).unwrap().public_z85(),
        PUBLIC
    );
    assert_eq!(server_keys(SECRET, None).unwrap().public_z85(), PUBLIC);
    let other = KeyPair::generate().unwrap().public_z85();
    let cases: Vec<(&str, &str, Option<&str>, &str)> = vec![
        (
            "secret too short",
            "abc",
            None,
            "curve_secretkey is not a Z85 key",
        ),
        (
            "secret not Z85",
            &SECRET[..39],
            None,
            "curve_secretkey is not a Z85 key",
        ),
        (
            "public not Z85",
            SECRET,
            Some("nope"),
            "curve_publickey is not a Z85 key",
        ),
        (
            "public of another pair",
            SECRET,
            Some(&other),
            "is not the public key of",
        ),
    ];
    for (name, secret, public, want) in cases {
        let e = server_keys(secret, public).expect_err(name).to_string();
        assert!(e.contains(want), "{name}: {e}");
        assert!(
            !e.contains(SECRET) && !e.contains(&other),
            "{name} quotes a key: {e}"
        );
    }
}

struct Pair {
    client: Established,
    server: Established,
}

/// A whole handshake: client HELLO, server WELCOME, client INITIATE, server READY.
fn shake(server_keys: &Arc<KeyPair>, server_key_known: [u8; KEY_LEN]) -> Result<Pair, ZmtpError> {
    let client_keys = Arc::new(KeyPair::generate()?);
    let mut client = Client::new(server_key_known, client_keys)?;
    let mut server = Server::new(server_keys.clone())?;
    let hello = client.hello()?;
    assert_eq!(hello.len(), 194, "HELLO is 200 bytes with its name");
    let welcome = server.hello(&hello)?;
    assert_eq!(welcome.len(), 160, "WELCOME is 168 bytes with its name");
    client.welcome(&welcome)?;
    let initiate = client.initiate(&zmtp::properties("DEALER", Some(b"me")))?;
    let (ready, server) = server.initiate(&initiate, |theirs| {
        let props = zmtp::parse_properties(theirs)?;
        assert_eq!(zmtp::property(&props, "Identity"), Some(&b"me"[..]));
        Ok(zmtp::properties("ROUTER", None))
    })?;
    let client = client.ready(&ready)?;
    Ok(Pair { client, server })
}

fn server() -> Arc<KeyPair> {
    Arc::new(KeyPair::generate().unwrap())
}

fn sealed(sealer: &mut Sealer, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    sealer.seal_frame(flags, body, &mut out).unwrap();
    let (outer, frame, rest) = zmtp::split_frame(&out).unwrap();
    assert_eq!(
        outer, 0,
        "the outer frame carries no flags, as libzmq sends it"
    );
    assert!(rest.is_empty());
    frame.to_vec()
}

#[test]
fn a_handshake_carries_metadata_and_then_frames_both_ways() {
    let keys = server();
    let Pair {
        mut client,
        mut server,
    } = shake(&keys, keys.public()).unwrap();
    let props = zmtp::parse_properties(&client.metadata).unwrap();
    assert_eq!(zmtp::property(&props, "Socket-Type"), Some(&b"ROUTER"[..]));
    let props = zmtp::parse_properties(&server.metadata).unwrap();
    assert_eq!(zmtp::property(&props, "Socket-Type"), Some(&b"DEALER"[..]));
    for round in 0..3u8 {
        let frame = sealed(&mut client.sealer, MORE, &[round; 300]);
        assert_eq!(server.opener.open(frame).unwrap(), (MORE, vec![round; 300]));
        let frame = sealed(&mut server.sealer, 0, b"reply");
        assert_eq!(client.opener.open(frame).unwrap(), (0, b"reply".to_vec()));
    }
    let frame = sealed(&mut server.sealer, COMMAND, b"\x04PING\x00\x00");
    assert_eq!(
        client.opener.open(frame).unwrap(),
        (COMMAND, b"\x04PING\x00\x00".to_vec())
    );
    let empty = sealed(&mut client.sealer, 0, b"");
    assert_eq!(server.opener.open(empty).unwrap(), (0, Vec::new()));
}

#[test]
fn plain_zmtp_is_sealed_frame_by_frame() {
    let keys = server();
    let mut pair = shake(&keys, keys.public()).unwrap();
    let mut plain = Vec::new();
    zmtp::encode_message(&[b"a".to_vec(), vec![9u8; 1000], b"c".to_vec()], &mut plain);
    let mut wire = Vec::new();
    pair.client.sealer.seal_encoded(&plain, &mut wire).unwrap();
    let mut rest = &wire[..];
    let mut got = Vec::new();
    while !rest.is_empty() {
        let (_, frame, after) = zmtp::split_frame(rest).unwrap();
        got.push(pair.server.opener.open(frame.to_vec()).unwrap());
        rest = after;
    }
    assert_eq!(
        got,
        vec![
            (MORE, b"a".to_vec()),
            (MORE, vec![9u8; 1000]),
            (0, b"c".to_vec())
        ]
    );
    assert!(
        pair.client
            .sealer
            .seal_encoded(&plain[..plain.len() - 1], &mut wire)
            .is_err()
    );
}

#[test]
fn a_client_with_a_wrong_server_key_is_refused_at_hello() {
    let keys = server();
    let wrong = KeyPair::generate().unwrap().public();
    let e = shake(&keys, wrong).err().expect("refused").to_string();
    assert!(e.contains("HELLO") && e.contains("wrong server key"), "{e}");
}

#[test]
fn tampered_replayed_and_foreign_frames_end_the_connection() {
    let keys = server();
    let mut pair = shake(&keys, keys.public()).unwrap();
    let first = sealed(&mut pair.client.sealer, 0, b"one");
    let second = sealed(&mut pair.client.sealer, 0, b"two");
    let mut flipped = first.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a flipped bit", flipped, "does not open"),
        ("too short", b"\x07MESSAGE".to_vec(), "expected a MESSAGE"),
        (
            "not a MESSAGE",
            [b"\x07MASSAGE".as_slice(), &first[8..]].concat(),
            "expected a MESSAGE",
        ),
    ];
    for (name, frame, want) in cases {
        let e = pair.server.opener.open(frame).expect_err(name).to_string();
        assert!(e.contains(want), "{name}: {e}");
    }
    // In order it opens; the same frame again, or an older one, does not.
    assert_eq!(pair.server.opener.open(first.clone()).unwrap().1, b"one");
    assert_eq!(pair.server.opener.open(second.clone()).unwrap().1, b"two");
    for (name, frame) in [("replayed", second), ("reordered", first)] {
        let e = pair.server.opener.open(frame).expect_err(name).to_string();
        assert!(e.contains("did not grow"), "{name}: {e}");
    }
    // A frame sealed for the other direction does not open here.
    let mut other = shake(&keys, keys.public()).unwrap();
    let theirs = sealed(&mut other.client.sealer, 0, b"x");
    assert!(pair.server.opener.open(theirs).is_err());
}

/// A server after HELLO, and the client's INITIATE for it.
fn until_initiate(keys: &Arc<KeyPair>) -> (Server, Vec<u8>) {
    let mut client = Client::new(keys.public(), Arc::new(KeyPair::generate().unwrap())).unwrap();
    let mut server = Server::new(keys.clone()).unwrap();
    let welcome = server.hello(&client.hello().unwrap()).unwrap();
    client.welcome(&welcome).unwrap();
    (server, client.initiate(b"").unwrap())
}

#[test]
fn initiate_must_return_our_cookie_and_vouch_for_its_keys() {
    let keys = server();
    let ok = |_: &[u8]| Ok(Vec::new());
    type Change = fn(&mut Vec<u8>);
    let cases: &[(&str, Change, &str)] = &[
        ("a cookie changed", |d| d[20] ^= 1, "cookie does not open"),
        (
            "the box changed",
            |d| *d.last_mut().unwrap() ^= 1,
            "INITIATE does not open",
        ),
        (
            "the nonce of HELLO again",
            |d| d[96..104].copy_from_slice(&1u64.to_be_bytes()),
            "nonce did not grow",
        ),
        ("truncated", |d| d.truncate(200), "malformed INITIATE"),
    ];
    for (name, change, want) in cases {
        let (server, mut data) = until_initiate(&keys);
        change(&mut data);
        let e = server.initiate(&data, ok).err().expect(name).to_string();
        assert!(e.contains(want), "{name}: {e}");
    }
    // An INITIATE taken to a server that did not issue its cookie.
    let (_, initiate) = until_initiate(&keys);
    let (other, _) = until_initiate(&keys);
    let e = other
        .initiate(&initiate, ok)
        .err()
        .expect("foreign cookie")
        .to_string();
    assert!(e.contains("cookie does not open"), "{e}");
    // Untouched, it is accepted.
    let (server, initiate) = until_initiate(&keys);
    assert!(server.initiate(&initiate, ok).is_ok());
}

#[test]
fn handshake_commands_of_the_wrong_size_are_malformed() {
    let keys = server();
    let mut s = Server::new(keys.clone()).unwrap();
    assert!(
        s.hello(&[0u8; 10])
            .unwrap_err()
            .to_string()
            .contains("malformed HELLO")
    );
    let mut c = Client::new(keys.public(), Arc::new(KeyPair::generate().unwrap())).unwrap();
    let mut hello = c.hello().unwrap();
    hello[0] = 2;
    assert!(
        s.hello(&hello)
            .unwrap_err()
            .to_string()
            .contains("CurveZMQ 2.0")
    );
    assert!(
        c.welcome(&[0u8; 20])
            .unwrap_err()
            .to_string()
            .contains("malformed WELCOME")
    );
    assert!(
        c.initiate(b"")
            .unwrap_err()
            .to_string()
            .contains("before WELCOME")
    );
}
