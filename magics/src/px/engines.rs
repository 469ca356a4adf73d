//! The engine registry: kernels started from a kernelspec (all at once) or
//! attached by their connection files, each with a stable integer id, watched
//! by heartbeat and process exit so a dead engine is known within seconds.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use pxkernel_kernel::client::{self, HeartbeatPolicy};
use pxkernel_kernel::kernelspec::{self, InterruptMode, KernelSpec, LaunchOptions};
use pxkernel_kernel::protocol::ConnectionInfo;
use tokio::task::JoinSet;

use crate::link::{HeartbeatLoss, Link};

/// Heartbeat of engines: a ping a second, dead after two missed (within 3 s).
const ENGINE_HEARTBEAT: HeartbeatPolicy = HeartbeatPolicy {
    period: Duration::from_secs(1),
    misses: 2,
};

/// What `%engines` reports about one engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineState {
    /// Answering and not running anything.
    Idle,
    /// Running a request.
    Busy,
    /// Gone, and why.
    Dead(String),
}

impl EngineState {
    /// The word shown in tables.
    pub fn word(&self) -> &'static str {
        match self {
            EngineState::Idle => "idle",
            EngineState::Busy => "busy",
            EngineState::Dead(_) => "dead",
        }
    }
}

/// One engine.
pub struct Engine {
    /// Its id, stable for the notebook's life.
    pub id: u32,
    /// The kernelspec it was started from (or the kernel's name when attached).
    pub kernel: String,
    /// Where it runs.
    pub host: String,
    /// The connection.
    pub link: Rc<Link>,
    /// The kernelspec, when we started it (restart uses it).
    spec: Option<KernelSpec>,
    /// The connection file, when it was attached.
    pub attached_from: Option<PathBuf>,
    /// When pxkernel began to launch it (or to attach it): before its heartbeat
    /// was first asked, so no heartbeat is ever older than the uptime.
    launched: Instant,
}

impl Engine {
    /// Its state now.
    pub fn state(&self) -> EngineState {
        match self.link.death() {
            Some(reason) => EngineState::Dead(reason),
            None if self.link.is_busy() => EngineState::Busy,
            None => EngineState::Idle,
        }
    }

    /// Its process id, when we started it.
    pub fn pid(&self) -> Option<u32> {
        self.link.process().map(|p| p.pid())
    }

    /// Time since pxkernel began to launch it (or to attach it).
    pub fn uptime(&self) -> Duration {
        self.launched.elapsed()
    }
}

/// Why an engine command failed; each message names the engine or file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Some engines did not start; the others were registered.
    #[error("{}", failures.join("\n"))]
    Start {
        /// One message per failed engine.
        failures: Vec<String>,
        /// Ids of those that did start.
        started: Vec<u32>,
    },
    /// No such kernelspec.
    #[error("{0}")]
    Spec(String),
    /// An engine we cannot restart.
    #[error(
        "engine {id} was attached from {file}; pxkernel did not start it and cannot restart it"
    )]
    NotRestartable {
        /// The engine.
        id: u32,
        /// Its connection file.
        file: String,
    },
}

/// All engines of this notebook.
#[derive(Default)]
pub struct Engines {
    by_id: RefCell<BTreeMap<u32, Rc<Engine>>>,
    next_id: Cell<u32>,
}

/// Whether a kernelspec runs ipykernel (which takes IPython's command-line config).
fn is_ipykernel(spec: &KernelSpec) -> bool {
    spec.json.argv.iter().any(|a| {
        a == "ipykernel_launcher" || a == "ipykernel" || a.ends_with("/ipykernel_launcher.py")
    })
}

fn launch_options(spec: &KernelSpec, id: u32, timeout: Duration) -> LaunchOptions {
    // Engines keep their history in memory, as ipyparallel's do: every engine
    // writing each cell to one shared history.sqlite serializes them on its lock.
    let extra_args = if is_ipykernel(spec) {
        vec!["--HistoryManager.hist_file=:memory:".to_owned()]
    } else {
        Vec::new()
    };
    LaunchOptions {
        extra_args,
        env: vec![("PXKERNEL_ENGINE_ID".to_owned(), id.to_string())],
        log_prefix: format!("engine {id}"),
        wait: timeout,
        heartbeat: Some(ENGINE_HEARTBEAT),
        ..LaunchOptions::default()
    }
}

/// The link of an engine we started: its death is the process's or the heartbeat's.
fn engine_link(k: kernelspec::StartedKernel, id: u32) -> Rc<Link> {
    let interrupt_mode = k.process.interrupt_mode;
    Link::new(
        k.sender,
        k.receiver,
        k.info,
        Some(k.process),
        interrupt_mode,
        HeartbeatLoss::Dead,
        drop_unrouted(id),
    )
}

fn drop_unrouted(
    id: u32,
) -> impl Fn(pxkernel_kernel::protocol::Channel, pxkernel_kernel::protocol::Message) {
    move |_, msg| {
        tracing::debug!(
            engine = id,
            msg_type = msg.msg_type(),
            "engine message of no live request dropped"
        );
    }
}

impl Engines {
    /// Sorted ids of every registered engine.
    pub fn ids(&self) -> Vec<u32> {
        self.by_id.borrow().keys().copied().collect()
    }

    /// The engine with this id.
    pub fn get(&self, id: u32) -> Option<Rc<Engine>> {
        self.by_id.borrow().get(&id).cloned()
    }

    /// Every engine, by id.
    pub fn all(&self) -> Vec<Rc<Engine>> {
        self.by_id.borrow().values().cloned().collect()
    }

    fn register(&self, engine: Engine) -> u32 {
        let id = engine.id;
        self.by_id.borrow_mut().insert(id, Rc::new(engine));
        id
    }

    /// Start `n` engines from kernelspec `spec_name`, all at once; returns when
    /// every one has answered (or failed). Ids follow the highest ever given.
    pub async fn start(
        &self,
        n: u32,
        spec_name: &str,
        timeout: Duration,
    ) -> Result<Vec<u32>, EngineError> {
        let spec = kernelspec::find(spec_name).map_err(|e| EngineError::Spec(e.to_string()))?;
        let first = self.next_id.get();
        let launched = Instant::now();
        let mut set = JoinSet::new();
        for i in 0..n {
            let spec = spec.clone();
            let opts = launch_options(&spec, first + i, timeout);
            set.spawn_local(async move { (i, kernelspec::start(&spec, &opts).await) });
        }
        let mut results = Vec::with_capacity(n as usize);
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                Err(e) => tracing::error!("engine start task failed: {e}"),
            }
        }
        results.sort_by_key(|(i, _)| *i);
        // Ids are given at launch (engines see theirs in PXKERNEL_ENGINE_ID); a
        // failed start leaves a gap rather than renumbering the others.
        self.next_id.set(first + n);
        let mut started = Vec::new();
        let mut failures = Vec::new();
        for (i, result) in results {
            let id = first + i;
            match result {
                Ok(k) => {
                    let link = engine_link(k, id);
                    started.push(self.register(Engine {
                        id,
                        kernel: spec.name.clone(),
                        host: "localhost".to_owned(),
                        link,
                        spec: Some(spec.clone()),
                        attached_from: None,
                        launched,
                    }));
                }
                Err(e) => failures.push(format!("engine {id} failed to start: {e}")),
            }
        }
        if failures.is_empty() {
            Ok(started)
        } else {
            Err(EngineError::Start { failures, started })
        }
    }

    /// Attach kernels that already run, by their connection files.
    pub async fn connect(
        &self,
        files: &[PathBuf],
        timeout: Duration,
    ) -> Result<Vec<u32>, EngineError> {
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        for file in files {
            let wanted = canonical(file);
            let already = self.all().into_iter().find(|e| {
                e.link.death().is_none()
                    && e.attached_from.as_deref().map(canonical).as_ref() == Some(&wanted)
            });
            if let Some(e) = already {
                return Err(EngineError::Spec(format!(
                    "{} is already attached as engine {}",
                    file.display(),
                    e.id
                )));
            }
        }
        let mut set = JoinSet::new();
        for (i, file) in files.iter().enumerate() {
            let file = file.clone();
            set.spawn_local(async move {
                let launched = Instant::now();
                let result = async {
                    let info = ConnectionInfo::from_file(&file).map_err(|e| e.to_string())?;
                    let user = std::env::var("USER").unwrap_or_else(|_| "pxkernel".to_owned());
                    let (sender, receiver, kinfo) =
                        client::connect(&info, &user, timeout, Some(ENGINE_HEARTBEAT))
                            .await
                            .map_err(|e| e.to_string())?;
                    Ok::<_, String>((info, sender, receiver, kinfo))
                }
                .await;
                (i, file, launched, result)
            });
        }
        let mut results = Vec::new();
        while let Some(Ok(r)) = set.join_next().await {
            results.push(r);
        }
        results.sort_by_key(|(i, _, _, _)| *i);
        let mut started = Vec::new();
        let mut failures = Vec::new();
        for (_, file, launched, result) in results {
            match result {
                Ok((info, sender, receiver, kinfo)) => {
                    let id = self.next_id.get();
                    self.next_id.set(id + 1);
                    let kernel = info
                        .kernel_name
                        .clone()
                        .filter(|k| !k.is_empty())
                        .unwrap_or_else(|| kinfo.implementation.clone());
                    // A kernel we did not start can only be interrupted by message.
                    let link = Link::new(
                        sender,
                        receiver,
                        kinfo,
                        None,
                        InterruptMode::Message,
                        HeartbeatLoss::Dead,
                        drop_unrouted(id),
                    );
                    started.push(self.register(Engine {
                        id,
                        kernel,
                        host: info.ip.clone(),
                        link,
                        spec: None,
                        attached_from: Some(canonical(&file)),
                        launched,
                    }));
                }
                Err(e) => failures.push(format!("{}: {e}", file.display())),
            }
        }
        if failures.is_empty() {
            Ok(started)
        } else {
            Err(EngineError::Start { failures, started })
        }
    }

    /// Stop these engines (all at once) and forget them.
    pub async fn stop(&self, ids: &[u32]) {
        let engines: Vec<Rc<Engine>> = {
            let mut map = self.by_id.borrow_mut();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        let mut set = JoinSet::new();
        for e in engines {
            set.spawn_local(async move {
                if e.attached_from.is_some() {
                    // We did not start it: let it go, running.
                    e.link.detach();
                } else {
                    e.link.shutdown(Duration::from_secs(1)).await;
                }
            });
        }
        while set.join_next().await.is_some() {}
    }

    /// Replace these engines by fresh processes with the same ids and kernelspecs.
    pub async fn restart(&self, ids: &[u32], timeout: Duration) -> Result<Vec<u32>, EngineError> {
        let engines: Vec<Rc<Engine>> = ids.iter().filter_map(|id| self.get(*id)).collect();
        for e in &engines {
            if e.spec.is_none() {
                return Err(EngineError::NotRestartable {
                    id: e.id,
                    file: e
                        .attached_from
                        .as_deref()
                        .map(Path::display)
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                });
            }
        }
        let mut set = JoinSet::new();
        for e in engines {
            set.spawn_local(async move {
                e.link.shutdown(Duration::from_secs(1)).await;
                let spec = e.spec.clone().expect("checked above");
                let launched = Instant::now();
                let result = kernelspec::start(&spec, &launch_options(&spec, e.id, timeout)).await;
                (e, launched, result)
            });
        }
        let mut restarted = Vec::new();
        let mut failures = Vec::new();
        while let Some(Ok((old, launched, result))) = set.join_next().await {
            match result {
                Ok(k) => {
                    let link = engine_link(k, old.id);
                    restarted.push(self.register(Engine {
                        id: old.id,
                        kernel: old.kernel.clone(),
                        host: old.host.clone(),
                        link,
                        spec: old.spec.clone(),
                        attached_from: None,
                        launched,
                    }));
                }
                Err(e) => failures.push(format!("engine {} failed to restart: {e}", old.id)),
            }
        }
        restarted.sort_unstable();
        if failures.is_empty() {
            Ok(restarted)
        } else {
            Err(EngineError::Start {
                failures,
                started: restarted,
            })
        }
    }

    /// Stop every engine.
    pub async fn shutdown(&self) {
        let ids = self.ids();
        self.stop(&ids).await;
    }
}

/// `0-3, 5` for a list of ids.
pub fn id_ranges(ids: &[u32]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pxkernel_kernel::protocol::PROTOCOL_VERSION;
    use pxkernel_kernel::protocol::content::{ExecuteRequest, KernelInfoReply, LanguageInfo};
    use pxkernel_kernel::server::{ExecuteOutcome, Handler, Reply, Request, Server};

    /// A kernel that only answers kernel_info (all the handshake needs).
    struct KernelInfoOnly;

    impl Handler for KernelInfoOnly {
        fn kernel_info(&self) -> KernelInfoReply {
            KernelInfoReply {
                status: "ok".to_owned(),
                protocol_version: PROTOCOL_VERSION.to_owned(),
                implementation: "test".to_owned(),
                implementation_version: "0".to_owned(),
                language_info: LanguageInfo::default(),
                banner: String::new(),
                help_links: Vec::new(),
                debugger: false,
                supported_features: None,
            }
        }
        async fn execute(&self, _: &Request, _: &ExecuteRequest) -> ExecuteOutcome {
            ExecuteOutcome::ok()
        }
        async fn shell(&self, _: &Request) -> Option<Reply> {
            None
        }
        async fn interrupt(&self) {}
        async fn shutdown(&self, _: bool) {}
    }

    /// A kernel bound on free loopback ports; it serves nothing until run.
    fn bind_kernel() -> (ConnectionInfo, Server) {
        let mut last = String::new();
        for _ in 0..20 {
            let probes: Vec<std::net::TcpListener> = (0..5)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe"))
                .collect();
            let port = |i: usize| probes[i].local_addr().expect("probe address").port();
            let info = ConnectionInfo {
                transport: "tcp".to_owned(),
                ip: "127.0.0.1".to_owned(),
                shell_port: port(0),
                iopub_port: port(1),
                stdin_port: port(2),
                control_port: port(3),
                hb_port: port(4),
                signature_scheme: "hmac-sha256".to_owned(),
                key: "engine-test-key".to_owned(),
                kernel_name: Some("slow-shell".to_owned()),
            };
            drop(probes);
            match Server::bind(&info) {
                Ok(server) => return (info, server),
                Err(e) => last = e.to_string(),
            }
        }
        panic!("no free ports for a test kernel: {last}");
    }

    #[test]
    fn no_heartbeat_is_older_than_its_engine() {
        // As ipykernel does, this kernel answers its heartbeat (from its own thread)
        // long before its shell: the heartbeat is answered while pxkernel still
        // waits for kernel_info. The engine's uptime must cover that wait.
        let dir = tempfile::tempdir().expect("temp dir");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let checked = pxkernel_kernel::transport::block_on_local(&rt, async move {
            let (info, server) = bind_kernel();
            let file = dir.path().join("kernel-slow-shell.json");
            std::fs::write(&file, serde_json::to_vec(&info).expect("json")).expect("write");
            tokio::task::spawn_local(async move {
                tokio::time::sleep(Duration::from_millis(1800)).await;
                server.run(&KernelInfoOnly).await;
            });
            let engines = Engines::default();
            let ids = engines
                .connect(&[file], Duration::from_secs(20))
                .await
                .expect("attached");
            let engine = engines.get(ids[0]).expect("registered");
            let deadline = Instant::now() + Duration::from_secs(10);
            let age = loop {
                if let Some(age) = engine.link.heartbeat_age() {
                    break age;
                }
                assert!(Instant::now() < deadline, "the heartbeat never answered");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let uptime = engine.uptime();
            engines.stop(&ids).await;
            (age, uptime)
        });
        let (age, uptime) = checked.expect("the test task ran");
        assert!(
            age <= uptime,
            "heartbeat {age:?} ago, yet the engine is up for only {uptime:?}"
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(id_ranges(&[]), "");
        assert_eq!(id_ranges(&[3]), "3");
        assert_eq!(id_ranges(&[0, 1, 2, 3]), "0-3");
        assert_eq!(id_ranges(&[5, 0, 1, 3]), "0-1, 3, 5");
    }
}
