//! [`KernelThread`]: a real [`Server`] running any [`Handler`] on a thread of its
//! own, as the kernel binary runs it (a current-thread runtime, everything a task
//! of one `LocalSet`, through [`transport::block_on_local`]), on free 127.0.0.1
//! ports with a random key. It owns the thread's life: [`stop`](KernelThread::stop),
//! and the faults a test injects — [`kill`](KernelThread::kill) (the kernel dies:
//! sockets closed, heartbeat gone) and [`freeze`](KernelThread::freeze) (the kernel
//! hangs: sockets open, nothing answered, heartbeat included).

use std::future::Future;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::thread::JoinHandle;

use pxkernel_kernel::protocol::{ConnectionInfo, new_uuid, random_key};
use pxkernel_kernel::server::{Handler, Publisher, Server, Stopped};
use pxkernel_kernel::transport;
use tokio::sync::{mpsc, oneshot};

use crate::TIMEOUT;
use crate::heartbeat::Relay;

/// What the kernel thread does once `Server::run` has returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AfterRun {
    /// Keep the runtime (and the socket tasks) alive until the kernel is stopped.
    #[default]
    KeepRuntime,
    /// Drop the runtime at once, as the kernel binary does.
    DropRuntime,
}

/// A request to freeze: the thread acknowledges on `frozen`, then blocks until
/// `thaw` is sent to or dropped.
struct Freeze {
    frozen: std_mpsc::Sender<()>,
    thaw: std_mpsc::Receiver<()>,
}

/// A [`Server`] running a [`Handler`] on its own thread. Dropping it kills the
/// kernel (see [`KernelThread::kill`]).
///
/// The advertised heartbeat port is a byte relay on the kernel's thread in front
/// of the server's own echo: every ping is still answered by the server's echo
/// thread, but a frozen kernel stops answering it too.
pub struct KernelThread {
    info: ConnectionInfo,
    /// Ends the thread (and with it every socket).
    stop: Option<oneshot::Sender<()>>,
    /// What `Server::run` returned (`None`: stopped by the fixture).
    stopped: std_mpsc::Receiver<Option<Stopped>>,
    freeze: mpsc::UnboundedSender<Freeze>,
    /// Held while frozen; sending or dropping it thaws.
    thaw: Option<std_mpsc::Sender<()>>,
    /// Disconnected once the thread has ended (its sender lives in the thread).
    exited: std_mpsc::Receiver<()>,
    join: Option<JoinHandle<()>>,
}

impl Drop for KernelThread {
    fn drop(&mut self) {
        // Never wait (nor panic) while a failed test unwinds.
        if std::thread::panicking() {
            self.thaw.take();
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
        } else {
            self.kill();
        }
    }
}

impl KernelThread {
    /// Bind a [`Server`] on free 127.0.0.1 ports with a random key and run, on a
    /// new thread, the handler `make_handler` builds there (it gets the server's
    /// [`Publisher`], for output between requests, and may await: connect to
    /// another kernel, say). Returns once the sockets are bound; requests that
    /// arrive while the handler is being built wait in their queues.
    #[track_caller]
    pub fn spawn<H, F, Fut>(after_run: AfterRun, make_handler: F) -> KernelThread
    where
        H: Handler + 'static,
        F: FnOnce(Publisher) -> Fut + Send + 'static,
        Fut: Future<Output = H> + 'static,
    {
        let key = match random_key() {
            Ok(key) => key,
            Err(e) => panic!("no random key: {e}"),
        };
        let (info_tx, info_rx) = std_mpsc::channel();
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = std_mpsc::channel();
        let (freeze_tx, freeze_rx) = mpsc::unbounded_channel();
        let (exit_tx, exit_rx) = std_mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("test-kernel".to_owned())
            .spawn(move || {
                let _exit = exit_tx;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("kernel runtime");
                let ran = transport::block_on_local(&rt, async move {
                    let (info, server, relay, upstream) = match bind_on_free_ports(&key) {
                        Ok(bound) => bound,
                        Err(e) => {
                            let _ = info_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = info_tx.send(Ok(info));
                    tokio::task::spawn_local(relay.serve(upstream));
                    tokio::task::spawn_local(freezer(freeze_rx));
                    let handler = make_handler(server.publisher()).await;
                    let stopped = tokio::select! {
                        s = server.run(&handler) => Some(s),
                        _ = &mut stop_rx => None,
                    };
                    let _ = done_tx.send(stopped);
                    if stopped.is_some() && after_run == AfterRun::KeepRuntime {
                        let _ = stop_rx.await;
                    }
                });
                drop(rt);
                if let Err(e) = ran
                    && e.is_panic()
                {
                    std::panic::resume_unwind(e.into_panic());
                }
            });
        let join = match spawned {
            Ok(join) => join,
            Err(e) => panic!("cannot spawn the kernel thread: {e}"),
        };
        let info = match info_rx.recv_timeout(TIMEOUT) {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => panic!("the kernel could not bind: {e}"),
            Err(e) => panic!("the kernel thread did not start: {e}"),
        };
        KernelThread {
            info,
            stop: Some(stop_tx),
            stopped: done_rx,
            freeze: freeze_tx,
            thaw: None,
            exited: exit_rx,
            join: Some(join),
        }
    }

    /// The kernel's connection info (tcp on 127.0.0.1, `hmac-sha256`, its key).
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// Write the connection info into `dir` as Jupyter does: a new
    /// `kernel-<uuid>.json`, mode 0600. Returns its path.
    #[track_caller]
    pub fn write_connection_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("kernel-{}.json", new_uuid()));
        let text = match serde_json::to_vec_pretty(&self.info) {
            Ok(text) => text,
            Err(e) => panic!("connection info to JSON: {e}"),
        };
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(&text));
        if let Err(e) = written {
            panic!("cannot write {}: {e}", path.display());
        }
        path
    }

    /// How `Server::run` ended, once it has (within [`TIMEOUT`]).
    #[track_caller]
    pub fn wait_stopped(&self) -> Stopped {
        match self.stopped.recv_timeout(TIMEOUT) {
            Ok(Some(stopped)) => stopped,
            Ok(None) => panic!("the kernel was stopped by the fixture"),
            Err(e) => panic!("Server::run did not return within {TIMEOUT:?}: {e}"),
        }
    }

    /// `Server::run` has not returned.
    #[track_caller]
    pub fn assert_running(&self) {
        if let Ok(stopped) = self.stopped.try_recv() {
            panic!("Server::run returned {stopped:?}");
        }
    }

    /// Hang the kernel: its thread stops (as a process under `SIGSTOP` does), so
    /// its sockets stay open and connected but nothing is read or answered, the
    /// heartbeat included. Returns once the thread is frozen. Requests sent
    /// meanwhile are answered after [`thaw`](KernelThread::thaw).
    #[track_caller]
    pub fn freeze(&mut self) {
        assert!(self.thaw.is_none(), "the kernel is already frozen");
        let (thaw_tx, thaw_rx) = std_mpsc::channel();
        let (frozen_tx, frozen_rx) = std_mpsc::channel();
        let asked = self.freeze.send(Freeze {
            frozen: frozen_tx,
            thaw: thaw_rx,
        });
        assert!(
            asked.is_ok() && frozen_rx.recv_timeout(TIMEOUT).is_ok(),
            "the kernel thread is not running: it cannot freeze"
        );
        self.thaw = Some(thaw_tx);
    }

    /// Let a frozen kernel run again.
    #[track_caller]
    pub fn thaw(&mut self) {
        assert!(self.thaw.take().is_some(), "the kernel is not frozen");
    }

    /// Whether the kernel is frozen.
    pub fn is_frozen(&self) -> bool {
        self.thaw.is_some()
    }

    /// Kill the kernel: its thread ends without a word to anyone (no reply, no
    /// status), every socket closes and the heartbeat stops answering. Returns
    /// once the thread has ended; its [`info`](KernelThread::info) stays readable.
    /// A frozen kernel is thawed first. Killing a dead kernel does nothing.
    #[track_caller]
    pub fn kill(&mut self) {
        self.thaw.take();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(join) = self.join.take() else {
            return;
        };
        // Nothing is ever sent: the channel disconnects when the thread ends.
        if let Err(RecvTimeoutError::Timeout) | Ok(()) = self.exited.recv_timeout(TIMEOUT) {
            panic!("the kernel thread did not end within {TIMEOUT:?}");
        }
        if let Err(panic) = join.join() {
            std::panic::resume_unwind(panic);
        }
    }

    /// Whether [`kill`](KernelThread::kill) (or [`stop`](KernelThread::stop)) has ended the kernel.
    pub fn is_killed(&self) -> bool {
        self.join.is_none()
    }

    /// Stop the kernel and wait for its thread to end (what dropping it does).
    #[track_caller]
    pub fn stop(mut self) {
        self.kill();
    }
}

/// Serve freeze requests: acknowledge, then block the whole thread until thawed.
async fn freezer(mut requests: mpsc::UnboundedReceiver<Freeze>) {
    while let Some(Freeze { frozen, thaw }) = requests.recv().await {
        let _ = frozen.send(());
        // Deliberately blocking: no task of this runtime runs until the test thaws
        // (or kills) the kernel, so no socket is read and nothing is answered.
        let _ = thaw.recv();
    }
}

/// Four distinct free TCP ports on 127.0.0.1 and the server's hidden heartbeat
/// port (all held at once, then released).
fn free_ports() -> [u16; 5] {
    let listeners: Vec<std::net::TcpListener> = (0..5)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let mut ports = [0u16; 5];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l.local_addr().expect("local_addr").port();
    }
    ports
}

/// Bind the heartbeat relay and a server on free ports, retrying when another
/// process takes a port between our probe and the bind. Returns the advertised
/// info (heartbeat: the relay), the server, the relay and the server's own
/// heartbeat port.
fn bind_on_free_ports(key: &str) -> Result<(ConnectionInfo, Server, Relay, u16), String> {
    let relay = Relay::bind().map_err(|e| format!("heartbeat relay: {e}"))?;
    let mut last = String::new();
    for _ in 0..20 {
        let [shell, iopub, stdin, control, echo] = free_ports();
        let mut info = ConnectionInfo {
            transport: "tcp".to_owned(),
            ip: "127.0.0.1".to_owned(),
            shell_port: shell,
            iopub_port: iopub,
            stdin_port: stdin,
            control_port: control,
            hb_port: echo,
            signature_scheme: "hmac-sha256".to_owned(),
            key: key.to_owned(),
            kernel_name: Some("test".to_owned()),
            curve_publickey: None,
            curve_secretkey: None,
        };
        match Server::bind(&info) {
            Ok(server) => {
                info.hb_port = relay.port();
                return Ok((info, server, relay, echo));
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}
