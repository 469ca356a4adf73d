//! The floor under pxkernel's plain cells: a kernel that only relays frames,
//! verbatim, between its frontend and a home kernel that shares its key. It
//! decodes nothing, signs nothing and keeps no state beyond the frontend's
//! routing ids, so the CPU it burns per cell is what this crate's transport and
//! runtime cost by themselves: the part of pxkernel's CPU no message handling
//! can remove.
//!
//! ```text
//! cargo run --release --example relay_floor -- -f FRONTEND.json --home HOME.json
//! ```
//!
//! Both connection files must carry the same key (the relay does not re-sign).
//! Not a usable kernel: the frontend sees the home kernel's own messages, and
//! its iopub_welcome is never sent. It exits once it has passed on a
//! `shutdown_reply`. `bench/kernel_bench.py` runs it next to pxkernel.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pxkernel_kernel::protocol::{Channel, ConnectionInfo};
use pxkernel_kernel::transport::{self, Frames, Inbox, Kind, Options, Outbox, Side};

fn arg(args: &[String], flag: &str) -> Option<PathBuf> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
}

/// Whether the header frame (after the delimiter and the signature) names a shutdown_reply.
fn is_shutdown_reply(frames: &[Vec<u8>]) -> bool {
    let needle = b"shutdown_reply";
    frames
        .iter()
        .position(|f| f == b"<IDS|MSG>")
        .and_then(|d| frames.get(d + 2))
        .is_some_and(|header| header.windows(needle.len()).any(|w| w == needle))
}

/// Requests from the frontend (ROUTER) to the home kernel (DEALER), and back:
/// the frontend's routing id is kept to address the replies. Ends once a
/// `shutdown_reply` has been passed on (the home kernel is then gone).
async fn pair(front: (Outbox, Inbox), home: (Outbox, Inbox)) {
    let (front_out, mut front_in) = front;
    let (home_out, mut home_in) = home;
    let last_id: Arc<Mutex<Vec<u8>>> = Arc::default();
    let id = last_id.clone();
    let up = async move {
        while let Some(mut frames) = front_in.recv().await {
            *id.lock().unwrap() = frames.remove(0);
            home_out.send(frames);
        }
    };
    let down = async move {
        while let Some(frames) = home_in.recv().await {
            let done = is_shutdown_reply(&frames);
            let mut routed: Frames = Vec::with_capacity(frames.len() + 1);
            routed.push(last_id.lock().unwrap().clone());
            routed.extend(frames);
            front_out.send(routed);
            if done {
                front_out.flush().await;
                return;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(front), Some(home)) = (arg(&args, "-f"), arg(&args, "--home")) else {
        return Err("usage: relay_floor -f FRONTEND.json --home HOME.json".into());
    };
    let front = ConnectionInfo::from_file(&front)?;
    let home = ConnectionInfo::from_file(&home)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The relay runs as a task, not as the future `block_on` polls, as pxkernel does:
    // every wake-up of that future would cost the runtime an extra poll of its driver.
    rt.block_on(async { tokio::spawn(relay(front, home)).await })?
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn relay(front: ConnectionInfo, home: ConnectionInfo) -> Result<(), Error> {
    let none = Options::default();
    let dealer = Options {
        identity: Some(b"relay-floor".to_vec()),
        ..Options::default()
    };
    let bind = |kind, ch| transport::open(kind, Side::Bind, &front.endpoint(ch), &none);
    let connect =
        |kind, ch, o: &Options| transport::open(kind, Side::Connect, &home.endpoint(ch), o);
    let _heartbeat = transport::spawn_echo(&front.endpoint(Channel::Heartbeat), None)?;
    let shell = pair(
        bind(Kind::Router, Channel::Shell)?,
        connect(Kind::Dealer, Channel::Shell, &dealer)?,
    );
    let control = pair(
        bind(Kind::Router, Channel::Control)?,
        connect(Kind::Dealer, Channel::Control, &dealer)?,
    );
    let stdin = pair(
        bind(Kind::Router, Channel::Stdin)?,
        connect(Kind::Dealer, Channel::Stdin, &dealer)?,
    );
    let (iopub_out, _subscriptions) = bind(Kind::XPub, Channel::Iopub)?;
    let (_sub_out, mut home_iopub) = connect(Kind::Sub, Channel::Iopub, &none)?;
    let iopub = async move {
        while let Some(frames) = home_iopub.recv().await {
            iopub_out.send(frames);
        }
    };
    tokio::select! {
        () = shell => {}
        () = control => {}
        () = stdin => {}
        () = iopub => {}
    }
    Ok(())
}
