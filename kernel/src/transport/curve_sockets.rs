//! Sockets over CURVE: requests and replies, subscriptions and output, messages
//! queued before the connection; and the peers a CURVE socket turns away (a
//! wrong server key, no security at all) while it goes on serving the rest.

use std::sync::Arc;
use std::time::Duration;

use super::curve::KeyPair;
use super::*;

use super::tests::{free_port, recv};

fn free_endpoint() -> String {
    format!("tcp://127.0.0.1:{}", free_port())
}

/// A DEALER connected to `ep`: CURVE's client of `server`, or NULL without it.
fn dealer(ep: &str, server: Option<[u8; curve::KEY_LEN]>, identity: &[u8]) -> (Outbox, Inbox) {
    let options = Options {
        identity: Some(identity.to_vec()),
        curve: server.map(Curve::Client),
        ..Options::default()
    };
    open(Kind::Dealer, Side::Connect, ep, &options).unwrap()
}

fn server_options(keys: &Arc<KeyPair>) -> Options {
    Options {
        curve: Some(Curve::Server(keys.clone())),
        ..Options::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn requests_and_replies_travel_sealed() {
    let keys = Arc::new(KeyPair::generate().unwrap());
    let ep = free_endpoint();
    // Queued before the ROUTER listens: sealed once the connection is up.
    let (dout, mut din) = dealer(&ep, Some(keys.public()), b"me");
    assert!(dout.send(vec![b"early".to_vec(), vec![7u8; 70_000]]));
    let (rout, mut rin) = open(Kind::Router, Side::Bind, &ep, &server_options(&keys)).unwrap();
    assert_eq!(
        recv(&mut rin).await,
        vec![b"me".to_vec(), b"early".to_vec(), vec![7u8; 70_000]]
    );
    for i in 0..500u32 {
        assert!(dout.send(vec![i.to_le_bytes().to_vec()]));
    }
    for i in 0..500u32 {
        let got = recv(&mut rin).await;
        assert_eq!(got[1], i.to_le_bytes());
        rout.send(got);
    }
    for i in 0..500u32 {
        assert_eq!(recv(&mut din).await, vec![i.to_le_bytes().to_vec()]);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn subscriptions_and_output_travel_sealed() {
    let keys = Arc::new(KeyPair::generate().unwrap());
    let ep = free_endpoint();
    let (pout, mut pin) = open(Kind::XPub, Side::Bind, &ep, &server_options(&keys)).unwrap();
    let sub = Options {
        curve: Some(Curve::Client(keys.public())),
        ..Options::default()
    };
    let (_sout, mut sin) = open(Kind::Sub, Side::Connect, &ep, &sub).unwrap();
    assert_eq!(recv(&mut pin).await, vec![vec![1u8]]);
    pout.send(vec![b"topic".to_vec(), b"body".to_vec()]);
    assert_eq!(
        recv(&mut sin).await,
        vec![b"topic".to_vec(), b"body".to_vec()]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_server_key_or_no_curve_is_turned_away_and_the_socket_serves_on() {
    let keys = Arc::new(KeyPair::generate().unwrap());
    let ep = free_endpoint();
    let (_rout, mut rin) = open(Kind::Router, Side::Bind, &ep, &server_options(&keys)).unwrap();
    let wrong = KeyPair::generate().unwrap().public();
    let (bad, _bad_in) = dealer(&ep, Some(wrong), b"bad");
    bad.send(vec![b"from a wrong key".to_vec()]);
    let (null, _null_in) = dealer(&ep, None, b"plain");
    null.send(vec![b"in the clear".to_vec()]);
    // Neither arrives while they retry.
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), rin.recv())
            .await
            .is_err(),
        "a message passed without the server's key"
    );
    let (good, _good_in) = dealer(&ep, Some(keys.public()), b"good");
    good.send(vec![b"hello".to_vec()]);
    assert_eq!(
        recv(&mut rin).await,
        vec![b"good".to_vec(), b"hello".to_vec()]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_curve_client_does_not_talk_to_a_server_without_curve() {
    let keys = Arc::new(KeyPair::generate().unwrap());
    let ep = free_endpoint();
    let (_rout, mut rin) = open(Kind::Router, Side::Bind, &ep, &Options::default()).unwrap();
    let (dout, _din) = dealer(&ep, Some(keys.public()), b"c");
    dout.send(vec![b"secret".to_vec()]);
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), rin.recv())
            .await
            .is_err(),
        "a CURVE client fell back to the clear"
    );
}
