//! The `pxkernel` command line: run the kernel, install or remove its kernelspec.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use pxkernel_contract::MakeFamily;
use pxkernel_kernel::kernelspec::NATIVE_KERNEL_NAME;
use pxkernel_kernel::protocol::ConnectionInfo;
use pxkernel_kernel::protocol::content::LanguageInfo;
use pxkernel_kernel::server::{Handler, ParentWatch, Server, Stopped};
use pxkernel_kernel::transport;
use pxkernel_px::PxFamily;
use pxkernel_router::install::{self, HOME_ENV, Install, LANGUAGE_INFO_ENV, Root};
use pxkernel_router::{Config, Router};
use pxkernel_sql::SqlFamily;
use pxkernel_ssh::SshFamily;

/// A Jupyter kernel that runs plain cells in a home kernel and fans %px cells out to engines.
#[derive(Parser)]
#[command(name = "pxkernel", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the kernel (Jupyter starts this from the kernelspec).
    Kernel(KernelArgs),
    /// Install the pxkernel kernelspec so Jupyter can select it.
    Install(InstallArgs),
    /// Remove an installed pxkernel kernelspec.
    Uninstall(UninstallArgs),
    /// Answer an ssh prompt through the notebook (ssh runs this as SSH_ASKPASS).
    #[command(hide = true)]
    Askpass {
        /// The prompt ssh shows.
        #[arg(default_value = "")]
        prompt: String,
    },
}

#[derive(Args)]
struct KernelArgs {
    /// The connection file written by the frontend.
    #[arg(short = 'f', long = "connection-file", value_name = "FILE")]
    connection_file: PathBuf,
    /// The kernelspec of the home kernel [default: $PXKERNEL_HOME, else python3].
    #[arg(long, value_name = "KERNELSPEC")]
    home: Option<String>,
}

#[derive(Args)]
#[group(multiple = false)]
struct Where {
    /// Under the user's Jupyter data dir.
    #[arg(long)]
    user: bool,
    /// Under the active Python environment (virtualenv, conda, or the python3 on PATH).
    #[arg(long)]
    sys_prefix: bool,
    /// Under DIR/share/jupyter/kernels.
    #[arg(long, value_name = "DIR")]
    prefix: Option<PathBuf>,
}

impl Where {
    fn root(&self) -> Root {
        if self.user {
            Root::User
        } else if self.sys_prefix {
            Root::SysPrefix
        } else if let Some(p) = &self.prefix {
            Root::Prefix(p.clone())
        } else {
            Root::System
        }
    }
}

#[derive(Args)]
struct InstallArgs {
    #[command(flatten)]
    root: Where,
    /// Kernelspec name.
    #[arg(long, default_value = "pxkernel")]
    name: String,
    /// Name shown in Jupyter [default: "pxkernel (<home display name>)"].
    #[arg(long, value_name = "S")]
    display_name: Option<String>,
    /// The kernelspec that runs plain cells (found where Jupyter finds kernelspecs).
    #[arg(long, value_name = "KERNELSPEC", default_value = NATIVE_KERNEL_NAME)]
    home: String,
}

#[derive(Args)]
struct UninstallArgs {
    #[command(flatten)]
    root: Where,
    /// Kernelspec name.
    #[arg(long, default_value = "pxkernel")]
    name: String,
}

/// The magic families the router serves, in the order `%lsmagic` lists them
/// and shutdown stops them: ssh last, so engines on ssh hosts stop before their
/// connections close. Adding a family is its crate plus one line here.
const FAMILIES: &[MakeFamily] = &[PxFamily::boxed, SqlFamily::boxed, SshFamily::boxed];

fn init_logging() -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PXKERNEL_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match std::env::var_os("PXKERNEL_LOG_FILE") {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening log file {}", PathBuf::from(&path).display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder.with_writer(std::io::stderr).with_ansi(false).init(),
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::Askpass { prompt } = &cli.command {
        std::process::exit(pxkernel_ssh::askpass::client(prompt));
    }
    init_logging()?;
    match cli.command {
        // Answered above, before logging is set up.
        Command::Askpass { .. } => Ok(()),
        Command::Kernel(args) => run_kernel(args),
        Command::Install(args) => run_install(args),
        Command::Uninstall(args) => {
            let dir = install::remove(&args.root.root(), &args.name)?;
            println!("Removed {}", dir.display());
            Ok(())
        }
    }
}

fn run_install(args: InstallArgs) -> Result<()> {
    let executable = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("finding the pxkernel executable")?;
    let request = Install {
        name: args.name.clone(),
        display_name: args.display_name,
        home: args.home.clone(),
        executable,
    };
    let (home, warnings) = runtime()?.block_on(async {
        tokio::task::LocalSet::new()
            .run_until(install::find_home(&args.home))
            .await
    })?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    let json = install::kernel_json(&request, &home)?;
    let dir = install::write(&args.root.root(), &args.name, &json)?;
    println!("Installed kernelspec {} in {}", args.name, dir.display());
    Ok(())
}

fn run_kernel(args: KernelArgs) -> Result<()> {
    let conn = ConnectionInfo::from_file(&args.connection_file)?;
    // Kernelspecs are searched where the Jupyter that started us searches them.
    if let Some(env) = pxkernel_kernel::kernelspec::environment::detect_launcher() {
        tracing::info!(prefix = %env.prefix.display(), "started from this Python environment");
    }
    // Checked once here: message ids come from the same source and cannot fail later.
    pxkernel_kernel::protocol::random_key()
        .map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))?;
    // A home named on the command line is looked up; otherwise install's record is used.
    let home_recorded = args.home.is_none().then(install::recorded_home).flatten();
    let home = args
        .home
        .or_else(|| std::env::var(HOME_ENV).ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| NATIVE_KERNEL_NAME.to_owned());
    let language_info = match std::env::var(LANGUAGE_INFO_ENV) {
        Ok(text) if !text.is_empty() => match serde_json::from_str::<LanguageInfo>(&text) {
            Ok(li) => Some(li),
            Err(e) => {
                tracing::warn!("ignoring {LANGUAGE_INFO_ENV}: {e}");
                None
            }
        },
        _ => None,
    };
    let rt = runtime()?;
    let config = Config {
        home,
        home_recorded,
        language_info,
    };
    let result = transport::block_on_local(&rt, serve(conn, config))
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the kernel task failed: {e}")));
    drop(rt);
    if let Err(e) = result {
        bail!("{e:#}");
    }
    Ok(())
}

/// The kernel itself: its sockets, the home kernel and the magics, until shutdown,
/// SIGTERM or the death of pxkernel's parent.
async fn serve(conn: ConnectionInfo, config: Config) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // SIGINT must never kill the kernel (a terminal's Ctrl-C reaches the whole group);
    // interrupts arrive as interrupt_request. Holding this stream keeps SIGINT caught.
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // Set up once: a watch re-made on every turn of the loop below would take a
    // new parent (init) after the real one died, and never fire.
    let parent = ParentWatch::new();
    let server = Server::bind(&conn).context("binding the kernel sockets")?;
    let kernel = Router::new(config, server.publisher(), FAMILIES);
    let run = server.run(&kernel);
    tokio::pin!(run);
    let stopped = loop {
        tokio::select! {
            s = &mut run => break Some(s),
            _ = sigint.recv() => tracing::info!("SIGINT ignored; use interrupt_request"),
            _ = sigterm.recv() => break None,
            () = parent.exited() => {
                tracing::warn!("parent process gone; shutting down");
                break None;
            }
        }
    };
    match stopped {
        Some(Stopped::Shutdown { .. }) => {}
        Some(Stopped::Closed) | None => kernel.shutdown(false).await,
    }
    pxkernel_kernel::kernelspec::launch::remove_session_dir();
    anyhow::Ok(())
}
