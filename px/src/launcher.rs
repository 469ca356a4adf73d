//! Where engines come from. An engine knows its [`Origin`], and the origin its
//! [`Launcher`]: a launcher yields running engines for the ids it is given,
//! stops them, says whether it can start one again, and how they are watched
//! (its heartbeat policy). [`LocalLauncher`] starts kernels from a
//! kernelspec on this machine; [`Attach`] connects to kernels that already run,
//! by their connection files; [`crate::ssh::SshLauncher`] starts them on SSH
//! hosts. Launchers to come (Slurm, MPI) only produce something the client
//! connects to, and plug in here.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use pxkernel_contract::LocalFuture;
use pxkernel_contract::link::{HeartbeatLoss, Link};
use pxkernel_kernel::client::{self, HeartbeatPolicy};
use pxkernel_kernel::kernelspec::{self, InterruptMode, KernelSpec, LaunchOptions};
use pxkernel_kernel::protocol::{Channel, ConnectionInfo, Message};
use tokio::task::JoinSet;

use crate::ssh::{SshHost, SshLauncher};

/// Heartbeat of engines on this machine: a ping a second, dead after two
/// missed (within 3 s).
pub const LOCAL_HEARTBEAT: HeartbeatPolicy = HeartbeatPolicy {
    period: Duration::from_secs(1),
    misses: 2,
};

/// Where an engine came from, and so how it is stopped and restarted.
#[derive(Clone, Debug)]
pub enum Origin {
    /// Started by pxkernel from this kernelspec, on this machine.
    Local(KernelSpec),
    /// Attached by its connection file: pxkernel did not start it and, when the
    /// engine is stopped, lets it run.
    Attached(PathBuf),
    /// Started by pxkernel on an SSH host.
    Ssh(Rc<SshHost>),
}

impl Origin {
    /// The launcher of an engine of this origin: it stops the engine, and
    /// starts it again when it can.
    pub fn launcher(&self) -> Box<dyn Launcher> {
        match self {
            Origin::Local(spec) => Box::new(LocalLauncher::new(spec.clone())),
            Origin::Attached(file) => Box::new(Attach::new(std::slice::from_ref(file))),
            Origin::Ssh(host) => Box::new(SshLauncher(host.clone())),
        }
    }

    /// The connection file it was attached from.
    pub fn attached_from(&self) -> Option<&Path> {
        match self {
            Origin::Attached(file) => Some(file),
            Origin::Local(_) | Origin::Ssh(_) => None,
        }
    }
}

/// A running engine, as a launcher yields it.
pub struct Launched {
    /// The connection, watched by heartbeat (and process exit, when we own it).
    pub link: Rc<Link>,
    /// The kernel's name: its kernelspec, or what the kernel calls itself.
    pub kernel: String,
    /// Where it runs.
    pub host: String,
    /// Its process id on that host, when the launcher started it.
    pub pid: Option<u32>,
    /// Where it came from.
    pub origin: Origin,
    /// When the launcher began to start (or attach) it: before its heartbeat was
    /// first asked, so no heartbeat is ever older than the engine's uptime.
    pub launched: Instant,
}

/// What a launch gave: each id with its engine, or why it has none.
pub type Launches = Vec<(u32, Result<Launched, String>)>;

/// Starts engines, and says how they are watched.
pub trait Launcher {
    /// Its engines' heartbeat policy.
    fn heartbeat(&self) -> HeartbeatPolicy;

    /// Whether engines are numbered before they start (they see their id, so a
    /// failed start leaves a gap) or once they answer (attached kernels).
    fn numbers_at_launch(&self) -> bool {
        true
    }

    /// Start the engines with these ids, all at once; each id with its result.
    /// A failure is the message that names the engine (or file) and why.
    fn launch<'a>(&'a self, ids: &'a [u32], timeout: Duration) -> LocalFuture<'a, Launches>;

    /// Whether it can start an engine again (`%engines restart`).
    fn restarts(&self) -> bool {
        true
    }

    /// Stop an engine it launched: ask it to shut down, then end its process.
    fn stop<'a>(&'a self, link: &'a Link) -> LocalFuture<'a, ()> {
        Box::pin(link.shutdown(Duration::from_secs(1)))
    }
}

/// Engines started here from a kernelspec.
#[derive(Clone, Debug)]
pub struct LocalLauncher {
    spec: KernelSpec,
}

impl LocalLauncher {
    /// A launcher of `spec`.
    pub fn new(spec: KernelSpec) -> LocalLauncher {
        LocalLauncher { spec }
    }

    /// The launch options of engine `id`.
    fn options(&self, id: u32, timeout: Duration) -> LaunchOptions {
        // Engines keep their history in memory, as ipyparallel's do: every engine
        // writing each cell to one shared history.sqlite serializes them on its lock.
        let extra_args = if is_ipykernel(&self.spec) {
            vec!["--HistoryManager.hist_file=:memory:".to_owned()]
        } else {
            Vec::new()
        };
        LaunchOptions {
            extra_args,
            env: vec![("PXKERNEL_ENGINE_ID".to_owned(), id.to_string())],
            log_prefix: format!("engine {id}"),
            wait: timeout,
            heartbeat: Some(self.heartbeat()),
            ..LaunchOptions::default()
        }
    }
}

/// Whether a kernelspec runs ipykernel (which takes IPython's command-line config).
fn is_ipykernel(spec: &KernelSpec) -> bool {
    spec.json.argv.iter().any(|a| {
        a == "ipykernel_launcher" || a == "ipykernel" || a.ends_with("/ipykernel_launcher.py")
    })
}

impl Launcher for LocalLauncher {
    fn heartbeat(&self) -> HeartbeatPolicy {
        LOCAL_HEARTBEAT
    }

    fn launch<'a>(&'a self, ids: &'a [u32], timeout: Duration) -> LocalFuture<'a, Launches> {
        Box::pin(async move {
            let launched = Instant::now();
            let mut set = JoinSet::new();
            for id in ids.iter().copied() {
                let spec = self.spec.clone();
                let opts = self.options(id, timeout);
                set.spawn_local(async move { (id, kernelspec::start(&spec, &opts).await) });
            }
            joined(set)
                .await
                .into_iter()
                .map(|(id, started)| {
                    let engine = match started {
                        Ok(k) => {
                            let interrupt_mode = k.process.interrupt_mode;
                            let pid = Some(k.process.pid());
                            Ok(Launched {
                                pid,
                                link: Link::new(
                                    k.sender,
                                    k.receiver,
                                    k.info,
                                    Some(k.process),
                                    interrupt_mode,
                                    HeartbeatLoss::Dead,
                                    drop_unrouted(id),
                                ),
                                kernel: self.spec.name.clone(),
                                host: "localhost".to_owned(),
                                origin: Origin::Local(self.spec.clone()),
                                launched,
                            })
                        }
                        Err(e) => Err(format!("engine {id} failed to start: {e}")),
                    };
                    (id, engine)
                })
                .collect()
        })
    }
}

/// Kernels that already run, attached by their connection files.
#[derive(Clone, Debug)]
pub struct Attach {
    files: Vec<PathBuf>,
}

impl Attach {
    /// A launcher that attaches these files, one engine each.
    pub fn new(files: &[PathBuf]) -> Attach {
        Attach {
            files: files.to_vec(),
        }
    }
}

impl Launcher for Attach {
    fn heartbeat(&self) -> HeartbeatPolicy {
        LOCAL_HEARTBEAT
    }

    fn numbers_at_launch(&self) -> bool {
        false
    }

    fn restarts(&self) -> bool {
        false
    }

    /// pxkernel did not start it: let it go, running.
    fn stop<'a>(&'a self, link: &'a Link) -> LocalFuture<'a, ()> {
        link.detach();
        Box::pin(async {})
    }

    fn launch<'a>(&'a self, ids: &'a [u32], timeout: Duration) -> LocalFuture<'a, Launches> {
        Box::pin(async move {
            let heartbeat = self.heartbeat();
            let mut set = JoinSet::new();
            for (file, id) in self.files.iter().zip(ids.iter().copied()) {
                let file = file.clone();
                set.spawn_local(async move {
                    let launched = Instant::now();
                    let result = attach(&file, id, timeout, heartbeat, launched).await;
                    (id, result.map_err(|e| format!("{}: {e}", file.display())))
                });
            }
            joined(set).await
        })
    }
}

async fn attach(
    file: &Path,
    id: u32,
    timeout: Duration,
    heartbeat: HeartbeatPolicy,
    launched: Instant,
) -> Result<Launched, String> {
    let info = ConnectionInfo::from_file(file).map_err(|e| e.to_string())?;
    let user = std::env::var("USER").unwrap_or_else(|_| "pxkernel".to_owned());
    let (sender, receiver, kinfo) = client::connect(&info, &user, timeout, Some(heartbeat))
        .await
        .map_err(|e| e.to_string())?;
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
    Ok(Launched {
        link,
        kernel,
        host: info.ip.clone(),
        pid: None,
        origin: Origin::Attached(std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned())),
        launched,
    })
}

/// Every result of a set of launch tasks, in id order (a task that panicked is
/// logged and left out: its id gets no engine).
async fn joined<T: 'static>(mut set: JoinSet<(u32, T)>) -> Vec<(u32, T)> {
    let mut out = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => out.push(r),
            Err(e) => tracing::error!("engine launch task failed: {e}"),
        }
    }
    out.sort_by_key(|(id, _)| *id);
    out
}

/// Output of an engine that belongs to no live request: logged, dropped.
pub(crate) fn drop_unrouted(id: u32) -> impl Fn(Channel, Message) {
    move |_, msg| {
        tracing::debug!(
            engine = id,
            msg_type = msg.msg_type(),
            "engine message of no live request dropped"
        );
    }
}
