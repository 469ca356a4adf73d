//! Launching a kernel from its kernelspec and owning its process.
//!
//! A launch writes a fresh 0600 connection file with five free 127.0.0.1 ports
//! (held open until just before the spawn, and never handed out twice by this
//! process) and, for a kernel over TCP that declares CurveZMQ, its keys; substitutes `{connection_file}`, applies the spec's `env`, runs a
//! bare `python`/`python3` from the spec's own prefix when it has one (else from
//! `PATH`), and starts the kernel in its own session so that its whole process
//! group can be interrupted or killed. The child also gets `PR_SET_PDEATHSIG`,
//! so even a SIGKILLed pxkernel leaves no kernel behind.
//!
//! Connection files and Unix sockets go into a 0700 directory of this process
//! in the runtime dir ([`session_dir`]), locked with `flock` for as long as the
//! process lives; `super::session_dir` owns it, and removes the directories of
//! pxkernels that are gone.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

use super::{InterruptMode, KernelSpec, KernelspecError, runtime_dir, which};
use crate::client::{self, ClientReceiver, ClientSender, HeartbeatPolicy};
use crate::protocol::content::KernelInfoReply;
use crate::protocol::{Channel, ConnectionInfo, new_uuid, random_key};
use crate::transport::curve::KeyPair;

pub use super::session_dir::{remove_session_dir, session_dir};

/// How a launched kernel is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP on `ip` (free ports).
    Tcp,
    /// Unix sockets in the runtime dir: cheaper per message than loopback TCP,
    /// and reachable by nobody else. Only kernels known to accept an `ipc`
    /// connection file get one (ipykernel and the kernels built on it); any
    /// other kernel gets TCP, since many build `tcp://ip:port` unconditionally.
    Ipc,
}

/// The longest Unix socket path (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Whether the kernelspec runs ipykernel itself, which honours `"transport": "ipc"`.
fn accepts_ipc(spec: &KernelSpec) -> bool {
    spec.json.argv.iter().any(|a| {
        a == "ipykernel_launcher" || a == "ipykernel" || a.ends_with("ipykernel_launcher.py")
    })
}

/// How to launch.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    /// The address the kernel binds (TCP).
    pub ip: String,
    /// TCP or Unix sockets.
    pub transport: Transport,
    /// Extra environment for the kernel.
    pub env: Vec<(String, String)>,
    /// Prefix of the kernel's output lines in our log, e.g. `home`.
    pub log_prefix: String,
    /// How long [`start`] waits for the first `kernel_info_reply`.
    pub wait: Duration,
    /// Heartbeat monitoring of the connection.
    pub heartbeat: Option<HeartbeatPolicy>,
    /// User name in our message headers.
    pub username: String,
    /// Arguments appended to the kernelspec's argv.
    pub extra_args: Vec<String>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        LaunchOptions {
            ip: "127.0.0.1".to_owned(),
            transport: Transport::Ipc,
            env: Vec::new(),
            log_prefix: "kernel".to_owned(),
            wait: Duration::from_secs(60),
            heartbeat: Some(HeartbeatPolicy::default()),
            username: std::env::var("USER").unwrap_or_else(|_| "pxkernel".to_owned()),
            extra_args: Vec::new(),
        }
    }
}

/// The last lines a kernel wrote to its stdout/stderr.
#[derive(Default)]
struct OutputTail {
    lines: VecDeque<String>,
}

const TAIL_LINES: usize = 40;

/// A kernel process we started. Dropping it kills the whole process group.
pub struct RunningKernel {
    /// The kernelspec name.
    pub name: String,
    /// How the kernel wants to be interrupted.
    pub interrupt_mode: InterruptMode,
    /// Where it listens.
    pub connection: ConnectionInfo,
    connection_file: PathBuf,
    pid: u32,
    exit: watch::Receiver<Option<String>>,
    tail: Arc<Mutex<OutputTail>>,
}

impl std::fmt::Debug for RunningKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningKernel")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .finish()
    }
}

/// A started kernel that answered: its process, a connection and its kernel_info.
pub struct StartedKernel {
    /// The process.
    pub process: RunningKernel,
    /// Sends to it.
    pub sender: ClientSender,
    /// Receives from it.
    pub receiver: ClientReceiver,
    /// Its `kernel_info_reply`.
    pub info: KernelInfoReply,
}

/// Ports handed out recently by this process: two concurrent launches must not get the same.
static RECENT_PORTS: Mutex<VecDeque<u16>> = Mutex::new(VecDeque::new());

fn reserve_ports(ip: &str, n: usize) -> std::io::Result<(Vec<u16>, Vec<TcpListener>)> {
    let mut recent = RECENT_PORTS.lock().unwrap_or_else(|p| p.into_inner());
    let mut ports = Vec::with_capacity(n);
    let mut listeners = Vec::with_capacity(n);
    let mut tries = 0;
    while ports.len() < n {
        tries += 1;
        let l = TcpListener::bind((ip, 0))?;
        let port = l.local_addr()?.port();
        if recent.contains(&port) && tries < 100 {
            continue;
        }
        ports.push(port);
        listeners.push(l);
    }
    for p in &ports {
        recent.push_back(*p);
    }
    while recent.len() > 4096 {
        recent.pop_front();
    }
    Ok((ports, listeners))
}

impl RunningKernel {
    /// Start the kernel process (without connecting to it).
    pub fn launch(
        spec: &KernelSpec,
        opts: &LaunchOptions,
    ) -> Result<RunningKernel, KernelspecError> {
        let io = |action, path: PathBuf| {
            move |source| KernelspecError::Io {
                action,
                path,
                source,
            }
        };
        let dir = session_dir().map_err(io("create", runtime_dir()))?;
        let id = &new_uuid()[..8];
        // Socket files `<dir>/<id>-1` … `<id>-5`; a deep runtime dir gets TCP.
        let socket_base = dir.join(id);
        let ipc = opts.transport == Transport::Ipc
            && accepts_ipc(spec)
            && socket_base.as_os_str().len() + 2 <= MAX_SOCKET_PATH;
        let (transport, ip, ports, listeners) = if ipc {
            let base = socket_base.to_string_lossy().into_owned();
            ("ipc", base, vec![1, 2, 3, 4, 5], Vec::new())
        } else {
            let (ports, listeners) = reserve_ports(&opts.ip, 5)
                .map_err(io("reserve ports on", PathBuf::from(&opts.ip)))?;
            ("tcp", opts.ip.clone(), ports, listeners)
        };
        let mut connection = ConnectionInfo {
            transport: transport.to_owned(),
            ip,
            shell_port: ports[0],
            iopub_port: ports[1],
            stdin_port: ports[2],
            control_port: ports[3],
            hb_port: ports[4],
            signature_scheme: "hmac-sha256".to_owned(),
            key: random_key().map_err(|e| KernelspecError::Random(e.to_string()))?,
            kernel_name: Some(spec.name.clone()),
            curve_publickey: None,
            curve_secretkey: None,
        };
        // Over TCP, a kernel that declares CurveZMQ gets keys, as jupyter_client's
        // `transport_encryption` gives them; Unix sockets in our 0700 dir need none.
        if transport == "tcp" && spec.supports_curve() {
            let keys = KeyPair::generate().map_err(|e| KernelspecError::Random(e.to_string()))?;
            connection.curve_publickey = Some(keys.public_z85());
            connection.curve_secretkey = Some(keys.secret_z85());
        }
        let connection_file = dir.join(format!("kernel-{id}.json"));
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&connection_file)
                .map_err(io("create", connection_file.clone()))?;
            let text = serde_json::to_vec_pretty(&connection).unwrap_or_default();
            f.write_all(&text)
                .map_err(io("write", connection_file.clone()))?;
        }

        let cf = connection_file.to_string_lossy().into_owned();
        let resource_dir = spec.dir.to_string_lossy().into_owned();
        let mut argv: Vec<String> = spec
            .json
            .argv
            .iter()
            .map(|a| {
                a.replace("{connection_file}", &cf)
                    .replace("{resource_dir}", &resource_dir)
            })
            .collect();
        argv.extend(opts.extra_args.iter().cloned());
        if super::environment::is_python_name(&argv[0])
            && let Some(local) = spec
                .prefix()
                .map(|p| p.join("bin").join(&argv[0]))
                .filter(|p| p.is_file())
        {
            argv[0] = local.to_string_lossy().into_owned();
        }
        let program = which(&argv[0]).ok_or_else(|| KernelspecError::Spawn {
            name: spec.name.clone(),
            program: argv[0].clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not found on PATH"),
        })?;

        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("JPY_PARENT_PID", std::process::id().to_string());
        for (k, v) in &spec.json.env {
            cmd.env(k, expand_env(v));
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // We may have died between fork and prctl.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        drop(listeners);
        let mut child = cmd.spawn().map_err(|source| KernelspecError::Spawn {
            name: spec.name.clone(),
            program: program.to_string_lossy().into_owned(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(kernel = %spec.name, pid, "started kernel");

        let tail = Arc::new(Mutex::new(OutputTail::default()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(collect_output(out, tail.clone(), opts.log_prefix.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(collect_output(err, tail.clone(), opts.log_prefix.clone()));
        }
        let (exit_tx, exit) = watch::channel(None);
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => describe_exit(s),
                Err(e) => format!("unknown status: {e}"),
            };
            let _ = exit_tx.send(Some(status));
        });
        Ok(RunningKernel {
            name: spec.name.clone(),
            interrupt_mode: spec.json.interrupt_mode,
            connection,
            connection_file,
            pid,
            exit,
            tail,
        })
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The connection file written for it.
    pub fn connection_file(&self) -> &std::path::Path {
        &self.connection_file
    }

    /// How it exited, once it has.
    pub fn exit_status(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    /// Wait until the process has exited; returns how.
    pub async fn exited(&self) -> String {
        let mut rx = self.exit.clone();
        loop {
            if let Some(s) = rx.borrow_and_update().clone() {
                return s;
            }
            if rx.changed().await.is_err() {
                return "unknown status".to_owned();
            }
        }
    }

    /// The last lines it wrote to stdout/stderr.
    pub fn output_tail(&self) -> String {
        let t = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        t.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn signal_group(&self, sig: libc::c_int) -> bool {
        if self.pid == 0 {
            return false;
        }
        // SAFETY: plain syscall; the group id is our child's pid, held by the group
        // (not reusable) while any member lives.
        unsafe { libc::killpg(self.pid as libc::pid_t, sig) == 0 }
    }

    /// Send SIGINT to its process group (for `interrupt_mode: signal`).
    pub fn interrupt_signal(&self) -> bool {
        self.exit_status().is_none() && self.signal_group(libc::SIGINT)
    }

    /// SIGTERM the process group, wait up to `grace`, then SIGKILL what is left.
    pub async fn terminate(&self, grace: Duration) {
        if self.exit_status().is_none() {
            self.signal_group(libc::SIGTERM);
            let _ = tokio::time::timeout(grace, self.exited()).await;
        }
        self.signal_group(libc::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.exited()).await;
    }
}

impl Drop for RunningKernel {
    fn drop(&mut self) {
        self.signal_group(libc::SIGKILL);
        let _ = std::fs::remove_file(&self.connection_file);
        for channel in Channel::ALL {
            if let Some(socket) = self.connection.endpoint(channel).strip_prefix("ipc://") {
                let _ = std::fs::remove_file(socket);
            }
        }
    }
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".to_owned(),
    }
}

/// `${VAR}` in kernelspec env values is replaced from our environment, as jupyter_client does.
fn expand_env(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find('}') {
            Some(end) => {
                let var = &rest[start + 2..start + 2 + end];
                out.push_str(&std::env::var(var).unwrap_or_default());
                rest = &rest[start + 3 + end..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

async fn collect_output<R: AsyncRead + Unpin>(
    stream: R,
    tail: Arc<Mutex<OutputTail>>,
    prefix: String,
) {
    let mut lines = BufReader::new(stream).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                tracing::info!(target: "pxkernel::child", "[{prefix}] {line}");
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.lines.push_back(line);
                while t.lines.len() > TAIL_LINES {
                    t.lines.pop_front();
                }
            }
            Ok(None) => return,
            // Not UTF-8: skip the line, keep reading.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => continue,
            Err(_) => return,
        }
    }
}

/// Launch a kernel and connect to it; fails fast with its output when it exits
/// or does not answer within `opts.wait`. Retries once with fresh ports when the
/// kernel could not bind one (another process took it in between).
pub async fn start(
    spec: &KernelSpec,
    opts: &LaunchOptions,
) -> Result<StartedKernel, KernelspecError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match start_once(spec, opts).await {
            Err(KernelspecError::Exited { output, .. })
                if attempt == 1 && output.contains("Address already in use") =>
            {
                tracing::warn!(kernel = %spec.name, "port taken during launch; retrying");
            }
            other => return other,
        }
    }
}

async fn start_once(
    spec: &KernelSpec,
    opts: &LaunchOptions,
) -> Result<StartedKernel, KernelspecError> {
    let process = RunningKernel::launch(spec, opts)?;
    let connecting = client::connect(
        &process.connection,
        &opts.username,
        opts.wait,
        opts.heartbeat,
    );
    let result = tokio::select! {
        r = connecting => r.map_err(|e| match e {
            client::ClientError::Timeout { after, .. } => KernelspecError::Timeout {
                name: spec.name.clone(),
                seconds: after.as_secs_f64(),
                output: process.output_tail(),
            },
            other => KernelspecError::Connect { name: spec.name.clone(), source: other },
        }),
        status = process.exited() => {
            // Let the output readers catch the last lines.
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(KernelspecError::Exited {
                name: spec.name.clone(),
                status,
                output: process.output_tail(),
            })
        }
    };
    match result {
        Ok((sender, receiver, info)) => Ok(StartedKernel {
            process,
            sender,
            receiver,
            info,
        }),
        Err(e) => {
            process.terminate(Duration::from_millis(500)).await;
            Err(e)
        }
    }
}

/// Remembers nothing across processes; exposed for tests of port reservation.
#[doc(hidden)]
pub fn reserve_for_test(n: usize) -> Vec<u16> {
    reserve_ports("127.0.0.1", n)
        .map(|(p, _)| p)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
