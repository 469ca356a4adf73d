//! The floor under `%px`: N kernels each sent the same cell at once by a bare
//! client (this crate's `kernelspec::start` and `client`), no kernel in between.
//! A request is done when every kernel's `execute_reply` and its IOPub
//! `status: idle` have arrived, as for a `%px` cell.
//!
//! ```text
//! cargo run --release --example px_floor -- --n 4 --reps 60 --warmup 10 --cell pass
//! ```
//!
//! prints one `name key=value ...` line per figure (times in ms):
//!
//! ```text
//! px_floor_start_ms n= kernel= ms=                 launch until every kernel answered
//! px_floor_roundtrip_ms n= cell= reps= median= p90= min= max= mean=
//! px_floor_output n= cell= reps= bytes_per_rep= incomplete=
//! px_floor_cpu_ms_per_request n= cell= client=     this process's CPU (not the kernels')
//! ```
//!
//! With `--serve` it starts the kernels, prints `ready n= start_ms= pids=`, then
//! reads commands on stdin, one a line — `run pass|print100|loop10k`, `quit` — and
//! answers each `run` with `done cell= ms= bytes= complete=`. This is how
//! `bench/px_bench.py` interleaves the floor with pxkernel and ipyparallel.
//! End of input, `quit`, SIGTERM and SIGINT shut the kernels down and exit.
//!
//! Options: `--kernel NAME` (kernelspec, default `python3`), `--timeout S` (per
//! request, default 120), `--heartbeat` (monitor each kernel's heartbeat once a
//! second, as pxkernel does for engines; off by default).
//!
//! `--connect FILE` (repeatable) talks to kernels that already run, by their
//! connection files, instead of starting `--n` kernels; they are left running.
//! `--prefix TEXT` is put before each cell's code. Together they time another
//! kernel with this same client: `--connect PXKERNEL.json --prefix '%px '` sends
//! `%px pass` to a pxkernel, so that pxkernel and the floor are timed alike
//! (output is then not checked: `complete=1` only says the reply was `ok`).
//!
//! Runs on a current-thread runtime, as tasks of a `LocalSet`, like pxkernel.

use std::time::{Duration, Instant};

use pxkernel_kernel::client::{self, ClientReceiver, ClientSender, Event, HeartbeatPolicy};
use pxkernel_kernel::kernelspec::{self, LaunchOptions, RunningKernel};
use pxkernel_kernel::protocol::content::Stream;
use pxkernel_kernel::protocol::{Channel, ConnectionInfo, Message};
use serde_json::json;
use tokio::sync::mpsc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    Pass,
    Print100,
    Loop10k,
}

impl Cell {
    fn parse(s: &str) -> Option<Cell> {
        match s {
            "pass" => Some(Cell::Pass),
            "print100" => Some(Cell::Print100),
            "loop10k" => Some(Cell::Loop10k),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Cell::Pass => "pass",
            Cell::Print100 => "print100",
            Cell::Loop10k => "loop10k",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Cell::Pass => "pass",
            Cell::Print100 => "print(\"x\"*100)",
            Cell::Loop10k => "for i in range(10000): print(i)",
        }
    }

    /// What each engine must print.
    fn expected(self) -> String {
        match self {
            Cell::Pass => String::new(),
            Cell::Print100 => format!("{}\n", "x".repeat(100)),
            Cell::Loop10k => (0..10000).map(|i| format!("{i}\n")).collect(),
        }
    }
}

struct Args {
    n: usize,
    reps: usize,
    warmup: usize,
    cell: Cell,
    kernel: String,
    timeout: Duration,
    serve: bool,
    heartbeat: bool,
    connect: Vec<std::path::PathBuf>,
    prefix: String,
}

const USAGE: &str = "usage: px_floor [--n N] [--reps R] [--warmup W] [--cell pass|print100|loop10k] \
                     [--kernel NAME] [--timeout S] [--heartbeat] [--connect FILE]... [--prefix TEXT] [--serve]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        n: 4,
        reps: 60,
        warmup: 10,
        cell: Cell::Pass,
        kernel: "python3".to_owned(),
        timeout: Duration::from_secs(120),
        serve: false,
        heartbeat: false,
        connect: Vec::new(),
        prefix: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--n" | "-n" => a.n = number("--n", value("--n")?)?,
            "--reps" => a.reps = number("--reps", value("--reps")?)?,
            "--warmup" => a.warmup = number("--warmup", value("--warmup")?)?,
            "--cell" => {
                let v = value("--cell")?;
                a.cell = Cell::parse(&v).ok_or_else(|| format!("--cell: unknown cell {v:?}"))?;
            }
            "--kernel" => a.kernel = value("--kernel")?,
            "--timeout" => {
                let v = value("--timeout")?;
                a.timeout = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| format!("--timeout: {v:?} is not a number of seconds"))?;
            }
            "--connect" => a.connect.push(value("--connect")?.into()),
            "--prefix" => a.prefix = value("--prefix")?,
            "--serve" => a.serve = true,
            "--heartbeat" => a.heartbeat = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.n == 0 {
        return Err("--n must be at least 1".to_owned());
    }
    Ok(a)
}

/// One kernel: its process (when we started it) and a way to send to it. Its
/// receiver is pumped by a task into the shared event channel, tagged with the
/// kernel's index.
struct Engine {
    process: Option<RunningKernel>,
    sender: ClientSender,
}

/// What one engine has done for the current request.
#[derive(Default)]
struct Progress {
    msg_id: String,
    reply: bool,
    ok: bool,
    idle: bool,
    text: String,
    bytes: usize,
}

struct Outcome {
    ms: f64,
    bytes: usize,
    complete: bool,
}

struct Floor {
    engines: Vec<Engine>,
    events: mpsc::UnboundedReceiver<(usize, Event)>,
    timeout: Duration,
    prefix: String,
    /// Whether output is checked (not when talking to another kind of kernel).
    check: bool,
}

impl Floor {
    /// Start `n` kernels at once; returns when every one answered, with the time it took.
    async fn start(args: &Args) -> Result<(Floor, Duration), String> {
        if !args.connect.is_empty() {
            return Floor::connect(args).await;
        }
        let spec = kernelspec::find(&args.kernel).map_err(|e| e.to_string())?;
        let began = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..args.n {
            let spec = spec.clone();
            let opts = LaunchOptions {
                log_prefix: format!("floor {i}"),
                wait: Duration::from_secs(120),
                heartbeat: args.heartbeat.then(|| HeartbeatPolicy {
                    period: Duration::from_secs(1),
                    misses: 2,
                }),
                ..LaunchOptions::default()
            };
            set.spawn_local(async move { (i, kernelspec::start(&spec, &opts).await) });
        }
        let mut started = Vec::new();
        let mut failures = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, Ok(k))) => started.push((i, k)),
                Ok((i, Err(e))) => failures.push(format!("kernel {i}: {e}")),
                Err(e) => failures.push(format!("start task: {e}")),
            }
        }
        let took = began.elapsed();
        started.sort_by_key(|(i, _)| *i);
        let floor = Floor::new(
            args,
            started
                .into_iter()
                .map(|(_, k)| (Some(k.process), k.sender, k.receiver))
                .collect(),
        );
        if !failures.is_empty() {
            floor.shutdown().await;
            return Err(failures.join("\n"));
        }
        Ok((floor, took))
    }

    /// Connect to kernels that already run (`--connect`).
    async fn connect(args: &Args) -> Result<(Floor, Duration), String> {
        let began = Instant::now();
        let mut kernels = Vec::new();
        for file in &args.connect {
            let info =
                ConnectionInfo::from_file(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let user = std::env::var("USER").unwrap_or_else(|_| "px_floor".to_owned());
            let (sender, receiver, _) = client::connect(&info, &user, args.timeout, None)
                .await
                .map_err(|e| format!("{}: {e}", file.display()))?;
            kernels.push((None, sender, receiver));
        }
        Ok((Floor::new(args, kernels), began.elapsed()))
    }

    fn new(
        args: &Args,
        kernels: Vec<(Option<RunningKernel>, ClientSender, ClientReceiver)>,
    ) -> Floor {
        let (tx, events) = mpsc::unbounded_channel();
        let mut engines = Vec::with_capacity(kernels.len());
        for (i, (process, sender, mut receiver)) in kernels.into_iter().enumerate() {
            let tx = tx.clone();
            tokio::task::spawn_local(async move {
                while let Some(ev) = receiver.recv().await {
                    if tx.send((i, ev)).is_err() {
                        return;
                    }
                }
            });
            engines.push(Engine { process, sender });
        }
        Floor {
            engines,
            events,
            timeout: args.timeout,
            prefix: args.prefix.clone(),
            check: args.prefix.is_empty(),
        }
    }

    /// Send `cell` to every kernel at once; wait for every reply and idle.
    async fn run(&mut self, cell: Cell) -> Result<Outcome, String> {
        let code = format!("{}{}", self.prefix, cell.code());
        let content = json!({"code": code, "silent": false, "store_history": true,
                             "user_expressions": {}, "allow_stdin": false, "stop_on_error": false});
        // Messages of requests that are not ours (another client's, on IOPub) are
        // dropped now, before the clock starts.
        tokio::task::yield_now().await;
        while self.events.try_recv().is_ok() {}
        let mut progress: Vec<Progress> = Vec::with_capacity(self.engines.len());
        let t0 = Instant::now();
        for e in &self.engines {
            let h = e
                .sender
                .send(Channel::Shell, "execute_request", &content, None);
            progress.push(Progress {
                msg_id: h.msg_id.clone(),
                ..Progress::default()
            });
        }
        let deadline = tokio::time::Instant::from_std(t0 + self.timeout);
        let mut left = progress.len();
        while left > 0 {
            let ev = tokio::select! {
                ev = self.events.recv() => ev.ok_or("every kernel connection closed")?,
                () = tokio::time::sleep_until(deadline) => {
                    return Err(format!("cell {} not done within {:?}", cell.name(), self.timeout));
                }
            };
            let (i, msg, channel) = match ev {
                (i, Event::Message(channel, msg)) => (i, msg, channel),
                (i, Event::HeartbeatLost) => return Err(format!("kernel {i}: heartbeat lost")),
                (_, Event::HeartbeatRestored) => continue,
            };
            let p = &mut progress[i];
            if msg.parent_id() != Some(p.msg_id.as_str()) || (p.reply && p.idle) {
                continue;
            }
            match channel {
                Channel::Shell if msg.msg_type() == "execute_reply" => {
                    p.reply = true;
                    p.ok = msg.content.get().contains("\"ok\"");
                }
                Channel::Iopub => on_iopub(p, &msg),
                _ => continue,
            }
            if p.reply && p.idle {
                left -= 1;
            }
        }
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let expected = cell.expected();
        Ok(Outcome {
            ms,
            bytes: progress.iter().map(|p| p.bytes).sum(),
            complete: if self.check {
                progress.iter().all(|p| p.text == expected)
            } else {
                progress.iter().all(|p| p.ok)
            },
        })
    }

    /// `shutdown_request` to every kernel we started, wait up to a second for each
    /// to exit, then stop what is left of its process group. Kernels we connected
    /// to are left running.
    async fn shutdown(self) {
        let mut set = tokio::task::JoinSet::new();
        for e in self.engines {
            let Some(process) = e.process else { continue };
            e.sender.send(
                Channel::Control,
                "shutdown_request",
                &json!({"restart": false}),
                None,
            );
            set.spawn_local(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), process.exited()).await;
                process.terminate(Duration::from_secs(2)).await;
                drop(e.sender);
            });
        }
        while set.join_next().await.is_some() {}
    }

    fn pids(&self) -> String {
        let pids: Vec<String> = self
            .engines
            .iter()
            .filter_map(|e| e.process.as_ref().map(|p| p.pid().to_string()))
            .collect();
        pids.join(",")
    }
}

fn on_iopub(p: &mut Progress, msg: &Message) {
    match msg.msg_type() {
        "status" if msg.content.get().contains("\"idle\"") => p.idle = true,
        "stream" => {
            if let Ok(s) = msg.parse_content::<Stream>() {
                p.bytes += s.text.len();
                if s.name == "stdout" {
                    p.text.push_str(&s.text);
                }
            }
        }
        _ => {}
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = (sorted.len() - 1) as f64 * p / 100.0;
    let lo = k.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (k - lo as f64)
}

/// Warm up, time `reps` requests, print the figures.
async fn measure(floor: &mut Floor, args: &Args) -> Result<(), String> {
    for _ in 0..args.warmup {
        floor.run(args.cell).await?;
    }
    let mut ms = Vec::with_capacity(args.reps);
    let mut bytes = 0usize;
    let mut incomplete = 0usize;
    let cpu0 = cpu_seconds();
    for _ in 0..args.reps {
        let o = floor.run(args.cell).await?;
        ms.push(o.ms);
        bytes += o.bytes;
        incomplete += usize::from(!o.complete);
    }
    let cpu = cpu_seconds() - cpu0;
    if ms.is_empty() {
        return Ok(());
    }
    let reps = ms.len();
    let mean = ms.iter().sum::<f64>() / reps as f64;
    ms.sort_by(f64::total_cmp);
    let (n, cell) = (floor.engines.len(), args.cell.name());
    println!(
        "px_floor_roundtrip_ms n={n} cell={cell} reps={reps} median={:.3} p90={:.3} min={:.3} max={:.3} mean={mean:.3}",
        percentile(&ms, 50.0),
        percentile(&ms, 90.0),
        ms[0],
        ms[reps - 1],
    );
    println!(
        "px_floor_output n={n} cell={cell} reps={reps} bytes_per_rep={} incomplete={incomplete}",
        bytes / reps
    );
    println!(
        "px_floor_cpu_ms_per_request n={n} cell={cell} client={:.4}",
        cpu * 1e3 / reps as f64
    );
    Ok(())
}

/// Commands from stdin, read on a plain thread (the runtime has no stdin support).
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(line.trim().to_owned()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

async fn serve(floor: &mut Floor) -> Result<(), String> {
    use std::io::Write;
    let mut lines = stdin_lines();
    while let Some(line) = lines.recv().await {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("quit"), _) => return Ok(()),
            (Some("run"), Some(c)) => {
                let cell = Cell::parse(c).ok_or_else(|| format!("unknown cell {c:?}"))?;
                let o = floor.run(cell).await?;
                println!(
                    "done cell={} ms={:.4} bytes={} complete={} cpu_s={:.6}",
                    cell.name(),
                    o.ms,
                    o.bytes,
                    u8::from(o.complete),
                    cpu_seconds()
                );
            }
            (None, _) => continue,
            _ => return Err(format!("unknown command {line:?}")),
        }
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

async fn main_local(args: Args) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let (mut floor, took) = Floor::start(&args).await?;
    let n = floor.engines.len();
    if args.serve {
        println!(
            "ready n={n} kernel={} start_ms={:.1} pids={}",
            args.kernel,
            took.as_secs_f64() * 1e3,
            floor.pids()
        );
    } else {
        println!(
            "px_floor_start_ms n={n} kernel={} ms={:.1}",
            args.kernel,
            took.as_secs_f64() * 1e3
        );
    }
    let result = tokio::select! {
        r = async {
            if args.serve { serve(&mut floor).await } else { measure(&mut floor, &args).await }
        } => r,
        _ = sigterm.recv() => Err("SIGTERM".to_owned()),
        _ = sigint.recv() => Err("SIGINT".to_owned()),
    };
    floor.shutdown().await;
    result
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("px_floor: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // As pxkernel: the work and the sockets' tasks are all tasks of one LocalSet.
    let run = pxkernel_kernel::transport::block_on_local(&rt, main_local(args))
        .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(e) = run {
        eprintln!("px_floor: {e}");
        std::process::exit(1);
    }
}
