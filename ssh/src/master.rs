//! One OpenSSH master connection per [`Endpoint`]: the system `ssh` run as
//! pxkernel's child in the foreground (`-M -S SOCKET -N`), in its own session
//! and with `PR_SET_PDEATHSIG`, so it dies with pxkernel; its control socket in
//! pxkernel's 0700 session directory. Forwards are added and removed on it with
//! `ssh -O forward` / `-O cancel`.
//!
//! A master that drops is supervised: it reconnects with backoff, restores every
//! forward on the same local ports, and leaves a notice for the next cell. A
//! reconnect that would need an answer (a passphrase, a host key) cannot get one
//! between cells: the master goes down, saying what to do.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use pxkernel_kernel::server::Request;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

use crate::args::Endpoint;
use crate::askpass::{Askpass, PromptKind};
use crate::error::SshError;
use crate::forward::{Forward, Listen};
use crate::notices::Notices;

/// How masters are started.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The ssh program.
    pub program: PathBuf,
    /// `ServerAliveInterval`: seconds between keepalives on a quiet connection.
    pub alive_interval: u32,
    /// `ServerAliveCountMax`: keepalives missed before the connection is dropped.
    pub alive_count: u32,
    /// `ConnectTimeout`, seconds.
    pub connect_timeout: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            program: PathBuf::from("ssh"),
            alive_interval: 3,
            alive_count: 3,
            connect_timeout: 10,
        }
    }
}

/// Where a master stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Connected.
    Up,
    /// Dropped; trying again.
    Reconnecting,
    /// Dropped, and cannot come back by itself.
    Down,
    /// Closed by pxkernel.
    Closed,
}

impl State {
    /// As `--list` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Reconnecting => "reconnecting",
            State::Down => "down",
            State::Closed => "closed",
        }
    }
}

/// A master's state, since when, and its last error.
#[derive(Clone, Debug)]
pub struct Status {
    /// The state.
    pub state: State,
    /// When it entered it.
    pub since: SystemTime,
    /// The last failure, in OpenSSH's words.
    pub last_error: Option<String>,
}

/// One running `ssh` of a master.
struct Process {
    pid: u32,
    exit: watch::Receiver<Option<String>>,
    stderr: Rc<RefCell<VecDeque<String>>>,
}

impl Process {
    fn exited(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    /// OpenSSH's last words: its last lines on stderr, else how it ended.
    fn message(&self) -> String {
        let lines: Vec<String> = self.stderr.borrow().iter().cloned().collect();
        let said: Vec<&str> = lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
            .collect();
        if said.is_empty() {
            self.exited().unwrap_or_else(|| "ssh ended".to_owned())
        } else {
            said[said.len().saturating_sub(3)..]
                .join("; ")
                .trim_end_matches('.')
                .to_owned()
        }
    }

    fn signal(&self, sig: libc::c_int) {
        if self.exited().is_none() && self.pid > 0 {
            // SAFETY: a signal to the process group the child leads (it called setsid).
            unsafe { libc::kill(-(self.pid as libc::pid_t), sig) };
        }
    }
}

/// An OpenSSH master connection and the forwards held on it.
pub struct Master {
    endpoint: Endpoint,
    socket: PathBuf,
    askpass: Rc<Askpass>,
    settings: Settings,
    status: RefCell<Status>,
    process: RefCell<Option<Rc<Process>>>,
    forwards: RefCell<Vec<(u64, Forward)>>,
    closing: Cell<bool>,
    notices: Notices,
    changed: watch::Sender<State>,
}

const STDERR_LINES: usize = 20;

impl Master {
    /// Connect to `endpoint`, asking `req`'s frontend for any prompt, and keep
    /// the connection up from then on.
    pub(crate) async fn open(
        endpoint: Endpoint,
        socket: PathBuf,
        askpass: Rc<Askpass>,
        settings: Settings,
        notices: Notices,
        req: Option<&Request>,
        interrupted: &watch::Receiver<u64>,
    ) -> Result<Rc<Master>, SshError> {
        let master = Rc::new(Master {
            endpoint,
            socket,
            askpass,
            settings,
            status: RefCell::new(Status {
                state: State::Up,
                since: SystemTime::now(),
                last_error: None,
            }),
            process: RefCell::new(None),
            forwards: RefCell::new(Vec::new()),
            closing: Cell::new(false),
            notices,
            changed: watch::Sender::new(State::Up),
        });
        master.attempt(req, Some(interrupted)).await?;
        let m = master.clone();
        tokio::task::spawn_local(async move { m.supervise().await });
        Ok(master)
    }

    /// The endpoint it connects to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Its control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its state now.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Watch its state change.
    pub fn watch(&self) -> watch::Receiver<State> {
        self.changed.subscribe()
    }

    /// The pid of its ssh, while one runs.
    pub fn pid(&self) -> Option<u32> {
        self.process
            .borrow()
            .as_ref()
            .filter(|p| p.exited().is_none())
            .map(|p| p.pid)
    }

    fn set_state(&self, state: State, error: Option<String>) {
        let mut s = self.status.borrow_mut();
        if s.state != state {
            s.since = SystemTime::now();
        }
        s.state = state;
        if error.is_some() {
            s.last_error = error;
        }
        drop(s);
        self.changed.send_replace(state);
    }

    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.settings.program);
        cmd.args(["-M", "-S"])
            .arg(&self.socket)
            .args(["-N", "-T", "-n"])
            // The user's options first: for ssh the first value of an option wins.
            .args(&self.endpoint.options)
            .args([
                "-o",
                "ControlMaster=yes",
                "-o",
                "ControlPersist=no",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "GatewayPorts=no",
                "-o",
                "StreamLocalBindUnlink=yes",
            ])
            .arg("-o")
            .arg(format!(
                "ServerAliveInterval={}",
                self.settings.alive_interval
            ))
            .arg("-o")
            .arg(format!("ServerAliveCountMax={}", self.settings.alive_count))
            .arg("-o")
            .arg(format!("ConnectTimeout={}", self.settings.connect_timeout))
            .arg("--")
            .arg(&self.endpoint.destination)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        own_session(&mut cmd);
        cmd
    }

    fn spawn(&self, env: Vec<(&'static str, String)>) -> Result<Rc<Process>, SshError> {
        let mut cmd = self.command();
        cmd.envs(env);
        let mut child = cmd.spawn().map_err(|e| SshError::Spawn {
            program: self.settings.program.display().to_string(),
            reason: e.to_string(),
        })?;
        let pid = child.id().unwrap_or(0);
        let stderr: Rc<RefCell<VecDeque<String>>> = Rc::default();
        let (exit_tx, exit) = watch::channel(None);
        let pipe = child.stderr.take();
        let tail = stderr.clone();
        tokio::task::spawn_local(async move {
            if let Some(pipe) = pipe {
                let mut lines = tokio::io::BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(target: "pxkernel::ssh", "{line}");
                    let mut t = tail.borrow_mut();
                    if t.len() == STDERR_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            let _ = exit_tx.send(Some(status));
        });
        tracing::info!(destination = %self.endpoint.destination, pid, "started ssh master");
        Ok(Rc::new(Process { pid, exit, stderr }))
    }

    /// Start an ssh and wait until its control socket answers, its exit, or the
    /// deadline. Prompts go to `req`'s frontend, or are refused without one.
    async fn attempt(
        &self,
        req: Option<&Request>,
        interrupted: Option<&watch::Receiver<u64>>,
    ) -> Result<(), SshError> {
        let mut asking = self.askpass.asking();
        let _ = std::fs::remove_file(&self.socket);
        let process = self.spawn(self.askpass.env(&asking))?;
        *self.process.borrow_mut() = Some(process.clone());
        let mut interrupted = interrupted.cloned();
        let mut refused: Option<PromptKind> = None;
        let budget = Duration::from_secs(u64::from(self.settings.connect_timeout) + 20);
        let mut deadline = Instant::now() + budget;
        let mut exit = process.exit.clone();
        let host = self.endpoint.host().to_owned();
        loop {
            if process.exited().is_some() {
                // Let its last stderr lines arrive.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let keyscan = match &refused {
                    Some(PromptKind::HostKey { .. }) => self.keyscan().await,
                    _ => None,
                };
                return Err(SshError::Connect {
                    destination: self.endpoint.destination.clone(),
                    message: process.message(),
                    fix: refused.map(|k| k.fix(&host, keyscan.as_deref())),
                });
            }
            if self.socket.exists() {
                return Ok(());
            }
            if Instant::now() > deadline {
                process.signal(libc::SIGTERM);
                return Err(SshError::Timeout {
                    destination: self.endpoint.destination.clone(),
                    seconds: budget.as_secs(),
                });
            }
            tokio::select! {
                _ = exit.changed() => {}
                Some(prompt) = asking.prompts.recv() => {
                    let asked = Instant::now();
                    let answer = match req {
                        Some(req) => {
                            let input = req.input(&prompt.text, prompt.kind.hidden());
                            let stop = async {
                                match interrupted.as_mut() {
                                    Some(i) => { let _ = i.changed().await; }
                                    None => std::future::pending::<()>().await,
                                }
                            };
                            tokio::select! {
                                a = input => a.ok(),
                                () = stop => {
                                    process.signal(libc::SIGTERM);
                                    return Err(SshError::Interrupted);
                                }
                            }
                        }
                        None => None,
                    };
                    if answer.is_none() {
                        refused = Some(prompt.kind.clone());
                    }
                    let _ = prompt.reply.send(answer);
                    deadline += asked.elapsed();
                }
                _ = async {
                    match interrupted.as_mut() {
                        Some(i) => { let _ = i.changed().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {
                    process.signal(libc::SIGTERM);
                    return Err(SshError::Interrupted);
                }
                () = tokio::time::sleep(Duration::from_millis(15)) => {}
            }
        }
    }

    /// The command that records this endpoint's host key where ssh reads it, from
    /// what `ssh -G` resolves (an alias's HostName, Port, UserKnownHostsFile).
    async fn keyscan(&self) -> Option<String> {
        let run = tokio::process::Command::new(&self.settings.program)
            .arg("-G")
            .args(&self.endpoint.options)
            .arg("--")
            .arg(&self.endpoint.destination)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .ok()?
            .ok()?;
        PromptKind::keyscan_command(&String::from_utf8_lossy(&out.stdout))
    }

    /// Keep the master up until it is closed.
    async fn supervise(self: Rc<Self>) {
        loop {
            let Some(process) = self.process.borrow().clone() else {
                return;
            };
            let mut exit = process.exit.clone();
            while exit.borrow().is_none() {
                if exit.changed().await.is_err() {
                    break;
                }
            }
            if self.closing.get() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            let why = process.message();
            let dropped = Instant::now();
            let host = self.endpoint.destination.clone();
            tracing::warn!(destination = %host, "ssh master dropped: {why}");
            self.set_state(State::Reconnecting, Some(why.clone()));
            self.notices.put(
                self.socket.display().to_string(),
                format!("the ssh connection to {host} dropped ({why}); reconnecting"),
            );
            let mut tries = 0u32;
            loop {
                if self.closing.get() {
                    return;
                }
                let pause = match tries {
                    0 => 100,
                    1 => 250,
                    2 => 500,
                    _ if dropped.elapsed() < Duration::from_secs(60) => 1000,
                    _ => 5000,
                };
                tokio::time::sleep(Duration::from_millis(pause)).await;
                tries += 1;
                if self.closing.get() {
                    return;
                }
                match self.attempt(None, None).await {
                    Ok(()) => match self.restore_forwards().await {
                        Ok(()) => {
                            self.set_state(State::Up, None);
                            self.notices.put(
                                self.socket.display().to_string(),
                                format!(
                                    "the ssh connection to {host} dropped ({why}) and came back \
                                     after {:.1} s; its forwards are restored",
                                    dropped.elapsed().as_secs_f64()
                                ),
                            );
                            break;
                        }
                        Err(e) => {
                            self.set_state(State::Reconnecting, Some(e.to_string()));
                            if let Some(p) = self.process.borrow().as_ref() {
                                p.signal(libc::SIGTERM);
                            }
                        }
                    },
                    Err(e) if e.needs_input() => {
                        self.set_state(State::Down, Some(e.to_string()));
                        self.notices.put(
                            self.socket.display().to_string(),
                            format!(
                                "the ssh connection to {host} dropped and cannot come back by \
                                 itself: {e}. Run the cell that opened it again."
                            ),
                        );
                        return;
                    }
                    Err(e) => self.set_state(State::Reconnecting, Some(e.to_string())),
                }
            }
        }
    }

    /// `ssh` running `remote` on the host over this master (no new login), with
    /// its stdin, stdout and stderr piped; in its own session, ending with pxkernel.
    ///
    /// Over the master only: `ssh -S` whose socket is gone (the master just died)
    /// would log in by itself, and a session that outlives its master hides the
    /// reconnect from whoever waits for it. The mux client is tried before any
    /// connection is made, so a `ProxyCommand` that fails ends such a session at
    /// once; given first, it wins over the user's config (options that shape a
    /// connection are the master's business, and left out here).
    pub fn session(&self, remote: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.settings.program);
        cmd.arg("-S")
            .arg(&self.socket)
            .args(["-T", "-o", "ControlMaster=no", "-o", "BatchMode=yes"])
            .args(["-o", "ProxyCommand=false"])
            .arg("--")
            .arg(&self.endpoint.destination)
            .arg(remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        own_session(&mut cmd);
        cmd
    }

    /// End the connection and everything on it.
    pub async fn close(&self) {
        self.closing.set(true);
        let process = self.process.borrow().clone();
        if let Some(p) = process {
            p.signal(libc::SIGTERM);
            let mut exit = p.exit.clone();
            let ended = tokio::time::timeout(Duration::from_secs(2), async {
                while exit.borrow().is_none() {
                    if exit.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await;
            if ended.is_err() {
                p.signal(libc::SIGKILL);
            }
        }
        for (_, f) in self.forwards.borrow_mut().drain(..) {
            if let Listen::Unix(path) = &f.listen {
                let _ = std::fs::remove_file(path);
            }
        }
        let _ = std::fs::remove_file(&self.socket);
        self.set_state(State::Closed, None);
    }
}

/// Run `cmd` in its own session, ending with pxkernel: no terminal (so prompts go
/// to askpass), the notebook's interrupt (SIGINT to our group) never reaches it,
/// and `PR_SET_PDEATHSIG` ends it when pxkernel dies, even by SIGKILL.
fn own_session(cmd: &mut tokio::process::Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            // We may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

mod forwards;
