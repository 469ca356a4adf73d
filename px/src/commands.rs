//! The px magics: `%px`/`%%px`, `%autopx`, `%pxresult`, `%pxconfig` and
//! `%engines`, each parsing its arguments, acting on the [`Px`] state, and
//! showing what happened.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use pxkernel_kernel::server::{ExecuteOutcome, Request};
use serde_json::json;

use super::engines::{EngineError, Engines, id_ranges};
use super::options::{self, PxOptions};
use super::run::{self, Pending, RunControl, RunResult};
use super::targets::{self, ResolveError};
use crate::ssh::{SshHost, SshLauncher};
use pxkernel_contract::MagicError;
use pxkernel_contract::display::{Align, Cell as TableCell, Table, human_duration};
use pxkernel_contract::parse::{ParseError, parse_leading, split_args};
use pxkernel_ssh::Ssh;

/// How long `%engines start` waits for each engine by default.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The state behind the px magics.
pub struct Px {
    /// The engines.
    pub engines: Engines,
    ssh: Rc<Ssh>,
    defaults: RefCell<PxOptions>,
    autopx: Cell<bool>,
    pending: RefCell<Option<Rc<Pending>>>,
    current: RefCell<Option<Rc<RunControl>>>,
    default_kernel: String,
}

/// A `%px` ready to run: what, where, how.
pub struct Plan {
    /// The code.
    pub code: String,
    /// The options.
    pub opts: PxOptions,
    /// Target engine ids.
    pub targets: Vec<u32>,
}

fn usage(magic: &str, reason: impl Into<String>) -> MagicError {
    MagicError::usage(magic, reason)
}

impl Px {
    /// Px state whose engines default to kernelspec `default_kernel`.
    pub fn new(default_kernel: &str, ssh: Rc<Ssh>) -> Px {
        Px {
            ssh,
            engines: Engines::default(),
            defaults: RefCell::new(PxOptions::default()),
            autopx: Cell::new(false),
            pending: RefCell::new(None),
            current: RefCell::new(None),
            default_kernel: default_kernel.to_owned(),
        }
    }

    /// Whether `%autopx` is on.
    pub fn autopx(&self) -> bool {
        self.autopx.get()
    }

    /// Parse `%px ARGS` (line) or `%%px ARGS\nBODY` (cell) and resolve its targets.
    pub fn plan(&self, magic: &str, args: &str, body: Option<&str>) -> Result<Plan, MagicError> {
        let (parsed, rest) = parse_leading(magic, options::SPECS, args)?;
        let opts = options::apply(magic, &parsed, &self.defaults.borrow())?;
        let code = match body {
            Some(b) => {
                if !rest.trim().is_empty() {
                    return Err(MagicError::Usage(ParseError::UnexpectedArgument {
                        magic: magic.to_owned(),
                        arg: rest.trim().to_owned(),
                    }));
                }
                b.to_owned()
            }
            None => rest.to_owned(),
        };
        if code.trim().is_empty() {
            return Err(usage(
                magic,
                "no code to run (%px CODE, or %%px with the code below)",
            ));
        }
        let targets =
            targets::resolve(&opts.targets, &self.engines.ids()).map_err(|e| match e {
                ResolveError::NoEngines => usage(magic, e.to_string()),
                // Blame --targets only when it was written here.
                ResolveError::NoMatch(reason) if parsed.has("targets") => {
                    MagicError::Usage(ParseError::BadValue {
                        magic: magic.to_owned(),
                        option: "targets".to_owned(),
                        value: opts.targets.to_string(),
                        reason,
                    })
                }
                ResolveError::NoMatch(reason) => usage(
                    magic,
                    format!(
                        "{reason}; the targets were set with %pxconfig (%pxconfig --reset for all)"
                    ),
                ),
            })?;
        Ok(Plan {
            code,
            opts,
            targets,
        })
    }

    /// Run a plan: blocking (streamed to `req`) or in the background (`--noblock`).
    pub async fn execute(&self, req: &Request, plan: &Plan) -> Result<ExecuteOutcome, MagicError> {
        let engines: Vec<_> = plan
            .targets
            .iter()
            .filter_map(|id| self.engines.get(*id))
            .collect();
        if !plan.opts.block {
            let pending = Pending::new(plan.targets.clone());
            *self.pending.borrow_mut() = Some(pending.clone());
            let (code, opts) = (plan.code.clone(), plan.opts.clone());
            tokio::task::spawn_local(async move {
                let result = run::run(None, engines, &code, &opts, &pending.control).await;
                pending.complete(result);
            });
            req.stream(
                "stdout",
                &format!(
                    "%px: sent to engines {} without waiting; %pxresult shows the result.\n",
                    id_ranges(&plan.targets)
                ),
            );
            return Ok(ExecuteOutcome::ok());
        }
        let control = Rc::new(RunControl::default());
        *self.current.borrow_mut() = Some(control.clone());
        let started = Instant::now();
        let result = run::run(Some(req), engines, &plan.code, &plan.opts, &control).await;
        *self.current.borrow_mut() = None;
        self.conclude(req, &result, plan.opts.verbose, started.elapsed())
    }

    /// Show what a run kept (not streamed) and turn its ends into the cell's outcome.
    fn conclude(
        &self,
        req: &Request,
        result: &RunResult,
        verbose: bool,
        took: Duration,
    ) -> Result<ExecuteOutcome, MagicError> {
        run::publish(req, run::ordered(result));
        if verbose {
            let ids: Vec<u32> = result.ends.iter().map(|(id, _)| *id).collect();
            let ends: Vec<String> = result
                .ends
                .iter()
                .map(|(id, e)| format!("[{id}] {}", e.describe()))
                .collect();
            req.stream(
                "stdout",
                &format!(
                    "%px on engines {} took {}: {}\n",
                    id_ranges(&ids),
                    human_duration(took),
                    ends.join(", ")
                ),
            );
        }
        if result.interrupted {
            let not_stopped: Vec<u32> = result
                .ends
                .iter()
                .filter(|(_, e)| *e == run::End::NotStopped)
                .map(|(id, _)| *id)
                .collect();
            let evalue = if not_stopped.is_empty() {
                "%px interrupted; every engine stopped and kept its state".to_owned()
            } else {
                format!(
                    "%px interrupted; engines {} did not stop within {} s and are still running",
                    id_ranges(&not_stopped),
                    run::INTERRUPT_GRACE.as_secs()
                )
            };
            return Err(failed("KeyboardInterrupt", evalue.clone(), vec![evalue]));
        }
        match run::failure_report(result) {
            Some((summary, lines)) => Err(failed("CompositeError", summary, lines)),
            None => Ok(ExecuteOutcome::ok()),
        }
    }

    /// Interrupt the running `%px` (or the one `%pxresult` waits for); false when none runs.
    pub fn interrupt(&self) -> bool {
        match self.current.borrow().as_ref() {
            Some(c) => {
                c.interrupt();
                true
            }
            None => false,
        }
    }

    /// `%autopx`.
    pub fn toggle_autopx(&self, req: &Request) {
        let on = !self.autopx.get();
        self.autopx.set(on);
        let text = if on {
            "%autopx enabled: plain cells now run on the engines. Run %autopx again to stop.\n"
        } else {
            "%autopx disabled: plain cells run in the home kernel again.\n"
        };
        req.stream("stdout", text);
    }

    /// `%pxresult`.
    pub async fn pxresult(&self, req: &Request) -> Result<ExecuteOutcome, MagicError> {
        let pending = self
            .pending
            .borrow()
            .clone()
            .ok_or_else(|| usage("pxresult", "no %px --noblock has run yet"))?;
        *self.current.borrow_mut() = Some(pending.control.clone());
        let started = Instant::now();
        let result = pending.wait().await;
        *self.current.borrow_mut() = None;
        self.conclude(req, &result, false, started.elapsed())
    }

    /// `%pxconfig [options]`, or `%pxconfig --reset` for the built-in defaults.
    pub fn pxconfig(&self, req: &Request, args: &str) -> Result<(), MagicError> {
        if args.trim() == "--reset" {
            *self.defaults.borrow_mut() = PxOptions::default();
            req.stream(
                "stdout",
                &format!(
                    "%px defaults: {}\n",
                    options::describe(&self.defaults.borrow())
                ),
            );
            return Ok(());
        }
        let (parsed, rest) = parse_leading("pxconfig", options::SPECS, args)?;
        if !rest.trim().is_empty() {
            return Err(MagicError::Usage(ParseError::UnexpectedArgument {
                magic: "pxconfig".to_owned(),
                arg: rest.trim().to_owned(),
            }));
        }
        let new = options::apply("pxconfig", &parsed, &self.defaults.borrow())?;
        *self.defaults.borrow_mut() = new;
        req.stream(
            "stdout",
            &format!(
                "%px defaults: {}\n",
                options::describe(&self.defaults.borrow())
            ),
        );
        Ok(())
    }

    /// `%engines …`.
    pub async fn engines_cmd(
        &self,
        req: &Request,
        args: &str,
    ) -> Result<ExecuteOutcome, MagicError> {
        let words = split_args("engines", args)?;
        let (sub, rest) = match words.split_first() {
            Some((s, r)) => (s.as_str(), r),
            None => ("list", &[][..]),
        };
        match sub {
            "list" => {
                no_more("engines list", rest)?;
                self.list(req);
                Ok(ExecuteOutcome::ok())
            }
            "start" => self.start(req, rest).await,
            "profiles" => {
                no_more("engines profiles", rest)?;
                self.list_profiles(req);
                Ok(ExecuteOutcome::ok())
            }
            "stop" => {
                let ids = self.targets_of("engines stop", rest, true)?;
                self.engines.stop(&ids).await;
                req.stream("stdout", &format!("Stopped engines {}.\n", id_ranges(&ids)));
                Ok(ExecuteOutcome::ok())
            }
            "restart" => {
                let ids = self.targets_of("engines restart", rest, false)?;
                let timeout = START_TIMEOUT;
                match self.engines.restart(&ids, timeout).await {
                    Ok(done) => {
                        req.stream(
                            "stdout",
                            &format!("Restarted engines {}.\n", id_ranges(&done)),
                        );
                        Ok(ExecuteOutcome::ok())
                    }
                    Err(e) => Err(self.engine_error(req, e, "Restarted")),
                }
            }
            "connect" => {
                if rest.is_empty() {
                    return Err(usage(
                        "engines connect",
                        "name at least one connection file",
                    ));
                }
                let files: Vec<PathBuf> = rest.iter().map(PathBuf::from).collect();
                match self.engines.connect(&files, Duration::from_secs(30)).await {
                    Ok(ids) => {
                        req.stream(
                            "stdout",
                            &format!("Attached engines {}.\n", id_ranges(&ids)),
                        );
                        Ok(ExecuteOutcome::ok())
                    }
                    Err(e) => Err(self.engine_error(req, e, "Attached")),
                }
            }
            other => Err(usage(
                "engines",
                format!("unknown subcommand {other:?}; use list, start, stop, restart or connect"),
            )),
        }
    }

    fn targets_of(
        &self,
        magic: &str,
        rest: &[String],
        default_all: bool,
    ) -> Result<Vec<u32>, MagicError> {
        let text = rest.join(" ");
        if text.trim().is_empty() && !default_all {
            return Err(usage(
                magic,
                "name the engines (TARGETS: all, 3, 0,2, 1:4, -1)",
            ));
        }
        let t = if text.trim().is_empty() {
            targets::Targets::All
        } else {
            targets::parse(&text).map_err(|r| usage(magic, r))?
        };
        targets::resolve(&t, &self.engines.ids()).map_err(|e| usage(magic, e.to_string()))
    }

    async fn start(&self, req: &Request, rest: &[String]) -> Result<ExecuteOutcome, MagicError> {
        let StartArgs {
            n,
            timeout,
            kernel,
            host,
            profile,
        } = start_args(rest)?;
        if let Some(name) = profile {
            return self.start_profile(req, &name, timeout).await;
        }
        let began = Instant::now();
        let (started, kernel, on) = match host {
            Some(plan) => {
                let on = format!(" on {}", plan.endpoint.host());
                let failed_on = |e: String| failed("EngineError", e.clone(), vec![e]);
                self.ssh
                    .master(Some(req), &plan.endpoint)
                    .await
                    .map_err(|e| failed_on(e.to_string()))?;
                let host = SshHost::new(self.ssh.clone(), plan);
                if let Err(e) = host.probe().await {
                    host.release().await;
                    return Err(failed_on(e));
                }
                let kernel = host.kernel_name();
                let started = self.engines.launch(&SshLauncher(host), n, timeout).await;
                (started, kernel, on)
            }
            None => {
                let kernel = kernel.unwrap_or_else(|| self.default_kernel.clone());
                (
                    self.engines.start(n, &kernel, timeout).await,
                    kernel,
                    String::new(),
                )
            }
        };
        match started {
            Ok(ids) => {
                req.stream(
                    "stdout",
                    &format!(
                        "Started {n} {kernel} engine{}{on} in {}: {} {}.\n",
                        if n == 1 { "" } else { "s" },
                        human_duration(began.elapsed()),
                        if ids.len() == 1 { "id" } else { "ids" },
                        id_ranges(&ids)
                    ),
                );
                Ok(ExecuteOutcome::ok())
            }
            Err(e) => Err(self.engine_error(req, e, "Started")),
        }
    }

    fn engine_error(&self, req: &Request, e: EngineError, verb: &str) -> MagicError {
        if let EngineError::Start { started, .. } = &e
            && !started.is_empty()
        {
            req.stream(
                "stdout",
                &format!("{verb} engines {}.\n", id_ranges(started)),
            );
        }
        let text = e.to_string();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        failed("EngineError", text.trim_end().to_owned(), lines)
    }

    fn list(&self, req: &Request) {
        let mut t = Table::new(&[
            ("id", Align::Right),
            ("kernel", Align::Left),
            ("host", Align::Left),
            ("pid", Align::Right),
            ("state", Align::Left),
            ("heartbeat", Align::Left),
            ("uptime", Align::Left),
        ]);
        t.missing_text = "-";
        let engines = self.engines.all();
        for e in &engines {
            let state = e.state();
            let state_text = match &state {
                super::engines::EngineState::Dead(why) => format!("dead ({why})"),
                s => s.word().to_owned(),
            };
            t.rows.push(vec![
                e.id.to_string().into(),
                e.kernel.as_str().into(),
                e.host.as_str().into(),
                e.pid.map_or(TableCell::Missing, |p| p.to_string().into()),
                state_text.into(),
                e.link.heartbeat_age().map_or(TableCell::Missing, |a| {
                    format!("{} ago", human_duration(a)).into()
                }),
                human_duration(e.uptime()).into(),
            ]);
        }
        t.footer = Some(match engines.len() {
            0 => "No engines. Start some with %engines start -n N.".to_owned(),
            1 => "1 engine".to_owned(),
            n => format!("{n} engines"),
        });
        req.publish("display_data", &json!({"data": t.bundle(), "metadata": {}}));
    }

    /// Stop every engine (pxkernel is shutting down).
    pub async fn shutdown(&self) {
        if let Some(c) = self.current.borrow().as_ref() {
            c.interrupt();
        }
        self.engines.shutdown().await;
    }
}

fn no_more(magic: &str, rest: &[String]) -> Result<(), MagicError> {
    match rest.first() {
        Some(arg) => Err(MagicError::Usage(ParseError::UnexpectedArgument {
            magic: magic.to_owned(),
            arg: arg.clone(),
        })),
        None => Ok(()),
    }
}

fn failed(ename: &str, evalue: String, traceback: Vec<String>) -> MagicError {
    MagicError::Failed {
        ename: ename.to_owned(),
        evalue,
        traceback,
    }
}

mod hosts;
mod start;

use start::{StartArgs, start_args};

#[cfg(test)]
mod tests;
