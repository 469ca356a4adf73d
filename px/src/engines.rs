//! The engine registry: engines from any [`Launcher`] (started from a
//! kernelspec, attached by connection file, …), each with a stable integer id
//! and its [`Origin`], watched by heartbeat (with its launcher's policy) and
//! process exit so a dead engine is known within seconds.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use pxkernel_kernel::kernelspec;
use tokio::task::JoinSet;

use pxkernel_contract::link::Link;

use crate::launcher::{Attach, Launched, Launcher, LocalLauncher, Origin};

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
    /// Its process id on that host, when we started it.
    pub pid: Option<u32>,
    /// The connection.
    pub link: Rc<Link>,
    /// Where it came from: how it is stopped and restarted.
    pub origin: Origin,
    /// When pxkernel began to launch it (or to attach it): before its heartbeat
    /// was first asked, so no heartbeat is ever older than the uptime.
    launched: Instant,
}

impl Engine {
    fn new(id: u32, launched: Launched) -> Engine {
        Engine {
            id,
            kernel: launched.kernel,
            host: launched.host,
            pid: launched.pid,
            link: launched.link,
            origin: launched.origin,
            launched: launched.launched,
        }
    }

    /// Its state now.
    pub fn state(&self) -> EngineState {
        match self.link.death() {
            Some(reason) => EngineState::Dead(reason),
            None if self.link.is_busy() => EngineState::Busy,
            None => EngineState::Idle,
        }
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

    /// Launch `n` engines with `launcher`, all at once; returns when every one
    /// has answered (or failed). Ids follow the highest ever given: a launcher
    /// that numbers its engines at launch leaves a gap for a failed one (they
    /// see their ids); attached kernels are numbered once they answer.
    pub async fn launch(
        &self,
        launcher: &dyn Launcher,
        n: u32,
        timeout: Duration,
    ) -> Result<Vec<u32>, EngineError> {
        let first = self.next_id.get();
        let ids: Vec<u32> = (first..first + n).collect();
        let results = launcher.launch(&ids, timeout).await;
        let numbered = launcher.numbers_at_launch();
        let mut next = first;
        let mut started = Vec::new();
        let mut failures = Vec::new();
        for (id, result) in results {
            match result {
                Ok(engine) => {
                    let id = if numbered { id } else { next };
                    next += 1;
                    started.push(self.register(Engine::new(id, engine)));
                }
                Err(e) => failures.push(e),
            }
        }
        self.next_id.set(if numbered { first + n } else { next });
        if failures.is_empty() {
            Ok(started)
        } else {
            Err(EngineError::Start { failures, started })
        }
    }

    /// Start `n` engines from kernelspec `spec_name`, all at once.
    pub async fn start(
        &self,
        n: u32,
        spec_name: &str,
        timeout: Duration,
    ) -> Result<Vec<u32>, EngineError> {
        let spec = kernelspec::find(spec_name).map_err(|e| EngineError::Spec(e.to_string()))?;
        self.launch(&LocalLauncher::new(spec), n, timeout).await
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
                e.link.death().is_none() && e.origin.attached_from() == Some(wanted.as_path())
            });
            if let Some(e) = already {
                return Err(EngineError::Spec(format!(
                    "{} is already attached as engine {}",
                    file.display(),
                    e.id
                )));
            }
        }
        let n = u32::try_from(files.len()).unwrap_or(u32::MAX);
        self.launch(&Attach::new(files), n, timeout).await
    }

    /// Stop these engines (all at once) and forget them.
    pub async fn stop(&self, ids: &[u32]) {
        let engines: Vec<Rc<Engine>> = {
            let mut map = self.by_id.borrow_mut();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        let mut set = JoinSet::new();
        for e in engines {
            set.spawn_local(async move { e.origin.launcher().stop(&e.link).await });
        }
        while set.join_next().await.is_some() {}
    }

    /// Replace these engines by fresh ones with the same ids, from the same origins.
    pub async fn restart(&self, ids: &[u32], timeout: Duration) -> Result<Vec<u32>, EngineError> {
        let engines: Vec<Rc<Engine>> = ids.iter().filter_map(|id| self.get(*id)).collect();
        let mut relaunch = Vec::new();
        for e in engines {
            match e.origin.launcher() {
                launcher if launcher.restarts() => relaunch.push((e, launcher)),
                _ => {
                    return Err(EngineError::NotRestartable {
                        id: e.id,
                        file: e
                            .origin
                            .attached_from()
                            .map(|f| f.display().to_string())
                            .unwrap_or_default(),
                    });
                }
            }
        }
        let mut set = JoinSet::new();
        for (e, launcher) in relaunch {
            set.spawn_local(async move {
                launcher.stop(&e.link).await;
                let result = launcher
                    .launch(&[e.id], timeout)
                    .await
                    .pop()
                    .map(|(_, r)| r)
                    .unwrap_or_else(|| Err(format!("engine {} failed to start", e.id)));
                (e.id, result)
            });
        }
        let mut restarted = Vec::new();
        let mut failures = Vec::new();
        while let Some(Ok((id, result))) = set.join_next().await {
            match result {
                Ok(engine) => restarted.push(self.register(Engine::new(id, engine))),
                Err(e) => failures.push(e.replacen("failed to start", "failed to restart", 1)),
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
    use pxkernel_kernel::protocol::content::{ExecuteRequest, KernelInfoReply, LanguageInfo};
    use pxkernel_kernel::protocol::{ConnectionInfo, PROTOCOL_VERSION};
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
                curve_publickey: None,
                curve_secretkey: None,
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
