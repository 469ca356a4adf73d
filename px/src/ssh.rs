//! Engines on SSH hosts: [`SshHost`] launches ipykernel engines on a host over
//! its one OpenSSH master (the ssh crate's), each in a 0700 directory there with
//! `ipc` sockets, reached through Unix-socket forwards on the master: no port is
//! opened on the host, and engines of several notebooks never collide.
//!
//! Nothing is left behind: a keeper session renews a lease on the host every
//! second; a watchdog there ends every engine's process group once the lease is
//! older than the grace period (pxkernel gone or the host unreachable that
//! long). A drop shorter than that loses nothing: the master reconnects, the
//! forwards come back, the keeper starts again. The keeper also reports an
//! engine whose process ended, so a dead engine is known within a second; the
//! heartbeat only counts while the master is up, so a slow or broken network
//! does not pass for dead engines.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::process::Stdio;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use pxkernel_contract::LocalFuture;
use pxkernel_contract::link::{HeartbeatLoss, Link, ShellHold};
use pxkernel_kernel::client::{self, HeartbeatPolicy};
use pxkernel_kernel::kernelspec::InterruptMode;
use pxkernel_kernel::kernelspec::launch::session_dir;
use pxkernel_kernel::protocol::{ConnectionInfo, random_key};
use pxkernel_kernel::transport::curve::KeyPair;
use pxkernel_ssh::forward::{Forward, Listen, Target};
use pxkernel_ssh::master::{Master, State};
use pxkernel_ssh::{Endpoint, Ssh};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::launcher::{Launched, Launcher, Launches, Origin, drop_unrouted};
use crate::remote::{self, EngineStart, Probe};

/// Heartbeat of engines on SSH hosts: a ping every 2 s; while the host's master
/// is up, an engine that misses 5 in a row (10 s) is dead.
pub const SSH_HEARTBEAT: HeartbeatPolicy = HeartbeatPolicy {
    period: Duration::from_secs(2),
    misses: 5,
};

/// How long engines outlive their lost pxkernel by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// What `%engines start --ssh` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPlan {
    /// Where.
    pub endpoint: Endpoint,
    /// The interpreter on the host (`python3`).
    pub python: String,
    /// Shell lines run first (`module load …; source …/activate`).
    pub setup: Option<String>,
    /// A kernelspec on the host, instead of ipykernel of `python`.
    pub kernel: Option<String>,
    /// How long engines outlive a lost pxkernel.
    pub grace: Duration,
    /// Extra environment of the engines.
    pub env: Vec<(String, String)>,
    /// Extra arguments of the kernel's command line.
    pub args: Vec<String>,
}

/// One engine on the host.
struct RemoteEngine {
    id: u32,
    dir: String,
    owner: u64,
    link: Weak<Link>,
    local: Vec<PathBuf>,
}

/// Engines on one SSH host, and how to start more.
pub struct SshHost {
    ssh: Rc<Ssh>,
    plan: HostPlan,
    /// How the engines are started, learned from the probe.
    argv: RefCell<Vec<String>>,
    env: RefCell<Vec<(String, String)>>,
    kernel_name: RefCell<String>,
    /// Whether the kernel's spec declares CurveZMQ, learned from the probe.
    curve: Cell<bool>,
    engines: RefCell<Vec<RemoteEngine>>,
}

impl std::fmt::Debug for SshHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshHost")
            .field("destination", &self.plan.endpoint.destination)
            .finish()
    }
}

fn engine_error(host: &str, id: u32, why: impl std::fmt::Display) -> String {
    format!("engine {id} on {host} failed to start: {why}")
}

/// Engine `id`'s connection file on the host: `ipc` sockets `eID-1` … `eID-5`
/// in the batch directory (its working directory there).
fn engine_info(id: u32, key: String, kernel_name: &str) -> ConnectionInfo {
    ConnectionInfo {
        transport: "ipc".to_owned(),
        ip: format!("e{id}"),
        shell_port: 1,
        iopub_port: 2,
        stdin_port: 3,
        control_port: 4,
        hb_port: 5,
        signature_scheme: "hmac-sha256".to_owned(),
        key,
        kernel_name: Some(kernel_name.to_owned()),
        // Reached only through the SSH master's forwards, which encrypt; a kernel on
        // the host's loopback TCP that declares CurveZMQ gets keys in `launch_ids`.
        curve_publickey: None,
        curve_secretkey: None,
    }
}

/// The connection file of an engine on the host's loopback: `info` with TCP on
/// 127.0.0.1 and its ports as the launch script's placeholders (`$1` … `$5`).
fn tcp_connection_text(info: &ConnectionInfo) -> Result<String, String> {
    let mut tcp = info.clone();
    tcp.transport = "tcp".to_owned();
    tcp.ip = "127.0.0.1".to_owned();
    let json = serde_json::to_string(&tcp).map_err(|e| e.to_string())?;
    // It goes into an unquoted heredoc, where only the ports may expand: a `\`
    // there quotes `$`, `` ` `` and `\` (Z85 keys hold `$`; names may hold any).
    let mut text = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if matches!(c, '$' | '`' | '\\') {
            text.push('\\');
        }
        text.push(c);
    }
    let ports = [
        ("shell_port", tcp.shell_port),
        ("iopub_port", tcp.iopub_port),
        ("stdin_port", tcp.stdin_port),
        ("control_port", tcp.control_port),
        ("hb_port", tcp.hb_port),
    ];
    for ((field, port), placeholder) in ports.into_iter().zip(remote::TCP_PORTS) {
        let here = format!("\"{field}\":{port}");
        if !text.contains(&here) {
            return Err(format!("no {field} in the connection file"));
        }
        text = text.replace(&here, &format!("\"{field}\":{placeholder}"));
    }
    Ok(text)
}

impl SshHost {
    /// Engines on `plan`'s host, over `ssh`'s connections.
    pub fn new(ssh: Rc<Ssh>, plan: HostPlan) -> Rc<SshHost> {
        Rc::new(SshHost {
            ssh,
            plan,
            argv: RefCell::new(Vec::new()),
            env: RefCell::new(Vec::new()),
            kernel_name: RefCell::new(String::new()),
            curve: Cell::new(false),
            engines: RefCell::new(Vec::new()),
        })
    }

    /// Let the host's master go if nothing holds it (after a failed probe).
    pub async fn release(&self) {
        if let Ok(master) = self.master().await {
            self.ssh.release(&master).await;
        }
    }

    /// The kernel its engines run, as the probe found it.
    pub fn kernel_name(&self) -> String {
        self.kernel_name.borrow().clone()
    }

    /// The host, as the engine table shows it.
    pub fn host(&self) -> &str {
        self.plan.endpoint.host()
    }

    async fn master(&self) -> Result<Rc<Master>, String> {
        self.ssh
            .master(None, &self.plan.endpoint)
            .await
            .map_err(|e| e.to_string())
    }

    /// Run a script on the host over the master; its stdout.
    async fn run_script(
        &self,
        master: &Master,
        script: &str,
        limit: Duration,
    ) -> Result<String, String> {
        let mut child = master
            .session("sh -s")
            .spawn()
            .map_err(|e| format!("could not run ssh: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .await
                .map_err(|e| format!("could not send the script: {e}"))?;
        }
        let out = tokio::time::timeout(limit, child.wait_with_output())
            .await
            .map_err(|_| format!("the host did not answer within {} s", limit.as_secs()))?
            .map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() && !stdout.contains("pxk-") {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let said = stderr.trim();
            let code = out
                .status
                .code()
                .map_or_else(|| out.status.to_string(), |c| format!("exit status {c}"));
            return Err(format!(
                "the commands on {} ended with {code} before pxkernel's script ran \
                 (check --setup){}",
                self.host(),
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            ));
        }
        Ok(stdout)
    }

    /// Ask the host what it has; fail with the host, what was found and the options.
    pub async fn probe(&self) -> Result<(), String> {
        let master = self.master().await?;
        let script = remote::probe_script(
            &self.plan.python,
            self.plan.setup.as_deref(),
            self.plan.kernel.as_deref(),
        );
        let out = self
            .run_script(&master, &script, Duration::from_secs(60))
            .await?;
        let host = self.host();
        let options = "pick another interpreter with --python PATH, or prepare the environment \
                       with --setup 'module load …; source …/bin/activate'";
        let Some(probe) = remote::read_probe(&out) else {
            return Err(format!(
                "{host} has no {} on its PATH: {options}",
                self.plan.python
            ));
        };
        let Probe {
            python,
            version,
            ipykernel,
            spec,
            specs,
        } = probe;
        match (&self.plan.kernel, spec) {
            (Some(name), Some(spec)) => {
                *self.argv.borrow_mut() = spec
                    .argv
                    .into_iter()
                    .chain(self.plan.args.clone())
                    .collect();
                *self.env.borrow_mut() =
                    spec.env.into_iter().chain(self.plan.env.clone()).collect();
                *self.kernel_name.borrow_mut() = name.clone();
                self.curve.set(spec.curve);
            }
            (Some(name), None) => {
                let found = match specs {
                    Some(s) if !s.is_empty() => format!("it has {}", s.join(", ")),
                    _ => format!("{python} (Python {version}) finds no kernelspecs"),
                };
                return Err(format!(
                    "{host} has no kernelspec {name:?} ({found}): install it there, or {options}"
                ));
            }
            (None, _) if ipykernel.is_none() => {
                return Err(format!(
                    "{host}: {python} (Python {version}) has no ipykernel: install it there \
                     ({python} -m pip install ipykernel), or {options}"
                ));
            }
            (None, _) => {
                *self.argv.borrow_mut() = ["$PY", "-m", "ipykernel_launcher", "-f"]
                    .into_iter()
                    .map(str::to_owned)
                    .chain([
                        "{connection_file}".to_owned(),
                        "--HistoryManager.hist_file=:memory:".to_owned(),
                    ])
                    .chain(self.plan.args.clone())
                    .collect();
                *self.env.borrow_mut() = self.plan.env.clone();
                *self.kernel_name.borrow_mut() = "python3".to_owned();
                self.curve.set(false);
            }
        }
        Ok(())
    }

    async fn launch_ids(self: Rc<Self>, ids: Vec<u32>, timeout: Duration) -> Launches {
        let launched = Instant::now();
        let host = self.host().to_owned();
        let fail_all = |why: String| -> Launches {
            ids.iter()
                .map(|id| (*id, Err(engine_error(&host, *id, &why))))
                .collect()
        };
        let master = match self.master().await {
            Ok(m) => m,
            Err(e) => return fail_all(e),
        };
        let argv = self.argv.borrow().clone();
        // ipykernel binds Unix sockets in the batch directory; other kernels listen
        // on the host's loopback, on ports picked there.
        let tcp = !remote::speaks_ipc(&argv);
        let mut infos = Vec::new();
        for id in &ids {
            let key = match random_key() {
                Ok(k) => k,
                Err(e) => return fail_all(format!("no random key: {e}")),
            };
            let mut info = engine_info(*id, key, &self.kernel_name.borrow());
            // On the host's loopback TCP, any user there could connect: a kernel
            // that declares CurveZMQ gets keys (the forwarded end is our client).
            if tcp && self.curve.get() {
                match KeyPair::generate() {
                    Ok(keys) => {
                        info.curve_publickey = Some(keys.public_z85());
                        info.curve_secretkey = Some(keys.secret_z85());
                    }
                    Err(e) => return fail_all(format!("no CurveZMQ keys: {e}")),
                }
            }
            infos.push(info);
        }
        let mut texts = Vec::new();
        for info in &infos {
            let text = if tcp {
                match tcp_connection_text(info) {
                    Ok(t) => t,
                    Err(e) => return fail_all(e),
                }
            } else {
                serde_json::to_string(info).unwrap_or_default()
            };
            texts.push(text);
        }
        let env = self.env.borrow().clone();
        let starts: Vec<EngineStart<'_>> = ids
            .iter()
            .zip(&texts)
            .map(|(id, text)| EngineStart {
                id: *id,
                connection: text,
                argv: &argv,
                env: &env,
                tcp,
            })
            .collect();
        let script = remote::launch_script(
            self.plan.setup.as_deref(),
            &self.plan.python,
            &starts,
            self.plan.grace,
            timeout,
        );
        let out = match self
            .run_script(&master, &script, timeout + Duration::from_secs(10))
            .await
        {
            Ok(out) => out,
            Err(e) => return fail_all(e),
        };
        let batch = remote::read_launch(&out);
        let Some(dir) = batch.dir.clone() else {
            return fail_all(
                batch
                    .error
                    .unwrap_or_else(|| "the launch printed nothing".into()),
            );
        };
        let mut results: Launches = batch
            .failed
            .iter()
            .map(|(id, why)| (*id, Err(engine_error(&host, *id, why))))
            .collect();
        let local_dir = match session_dir() {
            Ok(d) => d.to_owned(),
            Err(e) => return fail_all(format!("pxkernel's runtime directory: {e}")),
        };
        let mut ready = Vec::new();
        for (id, pid) in &batch.ready {
            let Some(info) = infos.iter().find(|i| i.ip == format!("e{id}")) else {
                continue;
            };
            let owner = self.ssh.new_owner();
            let prefix = local_dir.join(format!("r{owner}-e{id}"));
            let mut forwards = Vec::new();
            let mut local = Vec::new();
            let remote_ports = batch.ports.get(id);
            if tcp && remote_ports.is_none() {
                let why = "its ports on 127.0.0.1 were not reported";
                results.push((*id, Err(engine_error(&host, *id, why))));
                continue;
            }
            for port in 1..=5u16 {
                let here = PathBuf::from(format!("{}-{port}", prefix.display()));
                let target = match remote_ports {
                    Some(ports) => Target::Tcp {
                        host: "127.0.0.1".to_owned(),
                        port: ports[usize::from(port) - 1],
                    },
                    None => Target::Unix(format!("{dir}/e{id}-{port}")),
                };
                forwards.push(Forward {
                    listen: Listen::Unix(here.clone()),
                    target,
                });
                local.push(here);
            }
            if let Err(e) = master.add_forwards(owner, &forwards).await {
                results.push((*id, Err(engine_error(&host, *id, e))));
                continue;
            }
            let mut here = info.clone();
            here.ip = prefix.display().to_string();
            ready.push((*id, *pid, owner, here, local));
        }
        let user = std::env::var("USER").unwrap_or_else(|_| "pxkernel".to_owned());
        let mut connecting = tokio::task::JoinSet::new();
        for (id, pid, owner, info, local) in ready {
            let user = user.clone();
            connecting.spawn_local(async move {
                let r = client::connect(&info, &user, timeout, Some(SSH_HEARTBEAT)).await;
                (id, pid, owner, local, r)
            });
        }
        while let Some(Ok((id, pid, owner, local, r))) = connecting.join_next().await {
            match r {
                Ok((sender, receiver, info)) => {
                    let link = Link::new(
                        sender,
                        receiver,
                        info,
                        None,
                        InterruptMode::Message,
                        HeartbeatLoss::Log,
                        drop_unrouted(id),
                    );
                    self.engines.borrow_mut().push(RemoteEngine {
                        id,
                        dir: dir.clone(),
                        owner,
                        link: Rc::downgrade(&link),
                        local,
                    });
                    results.push((
                        id,
                        Ok(Launched {
                            link,
                            kernel: self.kernel_name.borrow().clone(),
                            host: host.clone(),
                            pid: Some(pid),
                            origin: Origin::Ssh(self.clone()),
                            launched,
                        }),
                    ));
                }
                Err(e) => results.push((id, Err(engine_error(&host, id, e)))),
            }
        }
        if self.engines.borrow().iter().any(|e| e.dir == dir) {
            tokio::task::spawn_local(keep(self.clone(), master.clone(), dir));
        }
        results.sort_by_key(|(id, _)| *id);
        results
    }

    async fn stop_engine(&self, link: &Link) {
        let found = {
            let mut all = self.engines.borrow_mut();
            all.iter()
                .position(|e| e.link.upgrade().is_some_and(|l| std::ptr::eq(&*l, link)))
                .map(|i| all.remove(i))
        };
        link.shutdown(Duration::from_millis(0)).await;
        let Some(engine) = found else {
            return;
        };
        link.gone("stopped".to_owned());
        // A master coming back is waited for a little: the engine is ended now,
        // not by the watchdog a grace period later.
        let mut master = self.master().await;
        let waited = Instant::now();
        while master.is_err() && waited.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            master = self.master().await;
        }
        if let Err(e) = &master {
            tracing::warn!(
                engine = engine.id,
                "{e}; the watchdog on {} ends it within {} s",
                self.host(),
                self.plan.grace.as_secs()
            );
        }
        if let Ok(master) = master {
            let script = remote::stop_script(&engine.dir, engine.id);
            if let Err(e) = self
                .run_script(&master, &script, Duration::from_secs(10))
                .await
            {
                tracing::warn!(engine = engine.id, "stopping on {}: {e}", self.host());
            }
            master.remove_forwards(engine.owner).await;
            self.ssh.release(&master).await;
        }
        for p in engine.local {
            let _ = std::fs::remove_file(p);
        }
    }

    fn engines_in(&self, dir: &str) -> Vec<(u32, Rc<Link>)> {
        self.engines
            .borrow()
            .iter()
            .filter(|e| e.dir == dir)
            .filter_map(|e| e.link.upgrade().map(|l| (e.id, l)))
            .filter(|(_, l)| l.death().is_none())
            .collect()
    }
}

/// Keep the batch in `dir` alive: run its keeper over the master, renew the lease
/// every second, hear which engines ended; run it again after the master comes
/// back; give the engines up once the host has been away longer than the grace
/// period. Ends when the batch has no engine left.
async fn keep(host: Rc<SshHost>, master: Rc<Master>, dir: String) {
    let grace = host.plan.grace;
    let name = host.host().to_owned();
    let mut away_since: Option<Instant> = None;
    let mut states = master.watch();
    // When the master last came up: a later time means it reconnected.
    let mut up_since = master.status().since;
    // While the master is down: requests to the engines wait (see Link::hold_shell).
    let mut holds: Vec<ShellHold> = Vec::new();
    loop {
        if host.engines_in(&dir).is_empty() {
            return;
        }
        if master.status().state != State::Up {
            if holds.is_empty() {
                tracing::debug!(host = %name, "master down: requests to its engines held");
                holds = host
                    .engines_in(&dir)
                    .iter()
                    .map(|(_, l)| l.hold_shell())
                    .collect();
            }
            let since = *away_since.get_or_insert_with(Instant::now);
            if since.elapsed() > grace || master.status().state == State::Down {
                for (_, link) in host.engines_in(&dir) {
                    link.gone(format!(
                        "lost its host {name} for longer than the grace period ({} s)",
                        grace.as_secs()
                    ));
                }
                return;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), states.changed()).await;
            continue;
        }
        away_since = None;
        let status = master.status();
        if status.since != up_since {
            up_since = status.since;
            // Replies and output sent while the connection was down are gone.
            for (_, link) in host.engines_in(&dir) {
                link.resync(format!(
                    "the connection to {name} dropped while it ran (the code may have run to the end)"
                ));
            }
        }
        // The resyncs hold requests from here on, until IOPub is back.
        holds.clear();
        let mut child = match master
            .session(&remote::keeper_command(&dir))
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("keeper for {name}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            continue;
        };
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let window = SSH_HEARTBEAT.period * SSH_HEARTBEAT.misses;
        let keeper_since = Instant::now();
        // When the keeper last answered: the host was reachable then.
        let mut answered: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let engines = host.engines_in(&dir);
                    if engines.is_empty() {
                        break;
                    }
                    if stdin.write_all(b"\n").await.is_err() {
                        break;
                    }
                    // A lost heartbeat counts only while the host answers: the
                    // master may take longer than the heartbeat to notice a cut.
                    let reachable = answered.is_some_and(|t| t.elapsed() < Duration::from_secs(3));
                    if reachable && keeper_since.elapsed() > window {
                        for (id, link) in engines {
                            if link.heartbeat_age().is_some_and(|a| a > window) {
                                tracing::warn!(engine = id, "heartbeat lost on {name}");
                                link.gone(format!("its heartbeat stopped on {name}"));
                            }
                        }
                    }
                }
                // The master dropped (and maybe came back) under this keeper:
                // the outer loop settles what the drop lost, then runs a new one.
                changed = states.changed() => {
                    let now = master.status();
                    if changed.is_err() || now.state != State::Up || now.since != up_since {
                        break;
                    }
                }
                line = lines.next_line() => match line {
                    Ok(Some(line)) if line == "pxk-ok" => answered = Some(Instant::now()),
                    Ok(Some(line)) if line == "pxk-gone" => {
                        for (_, link) in host.engines_in(&dir) {
                            link.gone(format!("its process on {name} ended"));
                        }
                        break;
                    }
                    Ok(Some(line)) => {
                        if let Some(id) = line.strip_prefix("pxk-dead ").and_then(|i| i.trim().parse::<u32>().ok())
                            && let Some((_, link)) = host.engines_in(&dir).into_iter().find(|(i, _)| *i == id)
                        {
                            link.gone(format!("its process on {name} ended"));
                        }
                    }
                    _ => break,
                },
            }
        }
        drop(stdin);
        let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
        if answered.is_none() {
            // A keeper that never answered is not run again at once; but the
            // master dropping meanwhile is seen at once (requests must be held).
            let _ = tokio::time::timeout(Duration::from_secs(1), states.changed()).await;
        }
    }
}

/// Starts the engines of several hosts at once (a profile): the ids are dealt
/// out in order, each host's share launched in parallel with the others.
pub struct HostsLauncher(pub Vec<(Rc<SshHost>, u32)>);

impl Launcher for HostsLauncher {
    fn heartbeat(&self) -> HeartbeatPolicy {
        SSH_HEARTBEAT
    }

    fn launch<'a>(&'a self, ids: &'a [u32], timeout: Duration) -> LocalFuture<'a, Launches> {
        Box::pin(async move {
            let mut set = tokio::task::JoinSet::new();
            let mut rest = ids;
            for (host, n) in &self.0 {
                let (mine, more) = rest.split_at((*n as usize).min(rest.len()));
                rest = more;
                set.spawn_local(host.clone().launch_ids(mine.to_vec(), timeout));
            }
            let mut all = Vec::new();
            while let Some(done) = set.join_next().await {
                match done {
                    Ok(results) => all.extend(results),
                    Err(e) => tracing::error!("engine launch task failed: {e}"),
                }
            }
            all.sort_by_key(|(id, _)| *id);
            all
        })
    }
}

/// Starts and stops the engines of one host.
pub struct SshLauncher(pub Rc<SshHost>);

impl Launcher for SshLauncher {
    fn heartbeat(&self) -> HeartbeatPolicy {
        SSH_HEARTBEAT
    }

    fn launch<'a>(&'a self, ids: &'a [u32], timeout: Duration) -> LocalFuture<'a, Launches> {
        Box::pin(self.0.clone().launch_ids(ids.to_vec(), timeout))
    }

    fn stop<'a>(&'a self, link: &'a Link) -> LocalFuture<'a, ()> {
        Box::pin(self.0.stop_engine(link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_connection_file_has_the_launch_scripts_port_placeholders() {
        let info = engine_info(3, "0123abcd".to_owned(), "ir");
        let text = tcp_connection_text(&info).unwrap();
        for (field, placeholder) in [
            ("shell_port", "$1"),
            ("iopub_port", "$2"),
            ("stdin_port", "$3"),
            ("control_port", "$4"),
            ("hb_port", "$5"),
        ] {
            assert!(
                text.contains(&format!("\"{field}\":{placeholder}")),
                "{text}"
            );
        }
        assert!(
            text.contains("\"transport\":\"tcp\"") && text.contains("\"ip\":\"127.0.0.1\""),
            "{text}"
        );
    }

    /// What the unquoted heredoc would expand or eat is escaped: a Z85 key holds
    /// `$`, and a kernel name may hold anything.
    #[test]
    fn the_host_shell_reads_back_the_connection_file_it_was_given() {
        let info = ConnectionInfo {
            kernel_name: Some("odd $HOME `id` \\ \"name\"".to_owned()),
            curve_publickey: Some("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7".to_owned()),
            curve_secretkey: Some("JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{L$1".to_owned()),
            ..engine_info(3, "0123abcd".to_owned(), "ir")
        };
        let text = tcp_connection_text(&info).unwrap();
        // As the launch script writes it: ports set, then an unquoted heredoc.
        let script = format!("set -- 41 42 43 44 45\ncat <<PXK_JSON\n{text}\nPXK_JSON\n");
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "{out:?}");
        let back: ConnectionInfo = serde_json::from_slice(&out.stdout).expect("JSON");
        let want = ConnectionInfo {
            transport: "tcp".to_owned(),
            ip: "127.0.0.1".to_owned(),
            shell_port: 41,
            iopub_port: 42,
            stdin_port: 43,
            control_port: 44,
            hb_port: 45,
            ..info
        };
        assert_eq!(back, want);
    }
}
