//! A fake kernel seen through the kernel crate's client, as the router, the
//! home-kernel proxy and px see their kernels: the handshake, a cell's output,
//! and the heartbeat monitor noticing a killed and a frozen kernel. Every wait is
//! bounded by `TIMEOUT` as a failure bound only.

use std::time::Duration;

use pxkernel_kernel::client::{self, ClientReceiver, ClientSender, Event, HeartbeatPolicy};
use pxkernel_kernel::protocol::Channel;
use pxkernel_kernel::protocol::content::{ExecuteReply, Status, Stream};
use pxkernel_testkit::{FakeKernel, TIMEOUT};
use serde_json::json;
use tokio::runtime::Runtime;

/// Fast enough for a test suite; `misses` keeps one late echo from counting.
const BEAT: HeartbeatPolicy = HeartbeatPolicy {
    period: Duration::from_millis(100),
    misses: 2,
};

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime")
}

async fn connect(kernel: &FakeKernel) -> (ClientSender, ClientReceiver) {
    let (tx, rx, info) = client::connect(kernel.info(), "client-test", TIMEOUT, Some(BEAT))
        .await
        .expect("connected to the fake kernel");
    assert_eq!(&info, kernel.kernel_info());
    (tx, rx)
}

/// The next event, within `TIMEOUT`.
async fn next(rx: &mut ClientReceiver) -> Event {
    match tokio::time::timeout(TIMEOUT, rx.recv()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("the connection closed"),
        Err(_) => panic!("no event within {TIMEOUT:?}"),
    }
}

/// Events until `want` matches one (the others are skipped).
async fn until(rx: &mut ClientReceiver, want: impl Fn(&Event) -> bool) {
    while !want(&next(rx).await) {}
}

/// Wait until the heartbeat has answered once.
async fn beating(tx: &ClientSender) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while tx.heartbeat_age().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the heartbeat never answered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn execute(tx: &ClientSender, code: &str) -> String {
    let content = json!({"code": code, "silent": false, "store_history": true,
        "user_expressions": {}, "allow_stdin": false, "stop_on_error": true});
    tx.send(Channel::Shell, "execute_request", &content, None)
        .msg_id
        .clone()
}

/// What a cell caused on IOPub (`status:STATE` for statuses) until its idle, its
/// execute_reply, and the other events that arrived meanwhile.
async fn cell(rx: &mut ClientReceiver, id: &str) -> (Vec<String>, ExecuteReply, Vec<Event>) {
    let mut outputs = Vec::new();
    let mut others = Vec::new();
    let mut reply = None;
    let mut idle = false;
    while reply.is_none() || !idle {
        match next(rx).await {
            Event::Message(Channel::Iopub, m) if m.parent_id() == Some(id) => {
                let what = match m.msg_type() {
                    "status" => {
                        let s: Status = m.parse_content().unwrap();
                        idle = s.execution_state == "idle";
                        format!("status:{}", s.execution_state)
                    }
                    "stream" => {
                        let s: Stream = m.parse_content().unwrap();
                        format!("stream:{}:{}", s.name, s.text)
                    }
                    other => other.to_owned(),
                };
                outputs.push(what);
            }
            Event::Message(Channel::Shell, m) if m.parent_id() == Some(id) => {
                assert_eq!(m.msg_type(), "execute_reply");
                reply = Some(m.parse_content().unwrap());
            }
            other => others.push(other),
        }
    }
    (outputs, reply.unwrap(), others)
}

#[test]
fn client_gets_kernel_info_and_a_cells_output() {
    let kernel = FakeKernel::start();
    runtime().block_on(async {
        let (tx, mut rx) = connect(&kernel).await;
        let id = execute(&tx, "print:hi");
        let (outputs, reply, _) = cell(&mut rx, &id).await;
        assert_eq!(
            outputs,
            [
                "status:busy",
                "execute_input",
                "stream:stdout:hi",
                "status:idle"
            ]
        );
        assert_eq!(reply.status, "ok");
        assert_eq!(reply.execution_count, Some(1));
    });
    assert_eq!(kernel.state().executed(), ["print:hi"]);
}

#[test]
fn client_heartbeat_notices_a_killed_kernel() {
    let mut kernel = FakeKernel::start();
    runtime().block_on(async {
        let (tx, mut rx) = connect(&kernel).await;
        beating(&tx).await;
        kernel.kill();
        until(&mut rx, |ev| matches!(ev, Event::HeartbeatLost)).await;
    });
}

#[test]
fn client_heartbeat_notices_a_frozen_kernel_and_its_thaw() {
    let mut kernel = FakeKernel::start();
    runtime().block_on(async {
        let (tx, mut rx) = connect(&kernel).await;
        beating(&tx).await;
        kernel.freeze();
        until(&mut rx, |ev| matches!(ev, Event::HeartbeatLost)).await;
        // Sent to a frozen kernel: waits in its socket, answered once thawed.
        let id = execute(&tx, "print:late");
        kernel.thaw();
        let (outputs, reply, others) = cell(&mut rx, &id).await;
        assert!(
            outputs.contains(&"stream:stdout:late".to_owned()),
            "{outputs:?}"
        );
        assert_eq!(reply.status, "ok");
        if !others
            .iter()
            .any(|ev| matches!(ev, Event::HeartbeatRestored))
        {
            until(&mut rx, |ev| matches!(ev, Event::HeartbeatRestored)).await;
        }
    });
}
