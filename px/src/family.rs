//! The px family as the router sees it: [`PxFamily`] runs the px magics, takes
//! plain cells while `%autopx` is on, runs a `%px --local` cell in the home
//! kernel beside the engines, and stops every engine at shutdown.

use std::cell::Cell;
use std::rc::Rc;

use pxkernel_contract::parse::ParseError;
use pxkernel_contract::{Call, Family, Home, Interrupted, LocalFuture, MagicError, MagicSpec};
use pxkernel_kernel::server::ExecuteOutcome;

use crate::commands::Px;
use crate::magics::MAGICS;
use pxkernel_ssh::Ssh;

/// The px family: engines and the magics that drive them.
pub struct PxFamily {
    px: Px,
    home: Rc<Home>,
    /// A `%px --local` cell is running in the home kernel too.
    local_running: Cell<bool>,
}

impl PxFamily {
    /// The family, with engines that default to the home's kernelspec.
    pub fn new(home: &Rc<Home>, ssh: Rc<Ssh>) -> PxFamily {
        PxFamily {
            px: Px::new(home.name(), ssh),
            home: home.clone(),
            local_running: Cell::new(false),
        }
    }

    /// The family as the router takes it.
    pub fn boxed(home: &Rc<Home>, shared: &pxkernel_contract::Shared) -> Box<dyn Family> {
        Box::new(PxFamily::new(home, Ssh::shared(shared)))
    }

    /// The px state (engines, defaults).
    pub fn px(&self) -> &Px {
        &self.px
    }

    /// `%px` / `%%px` (and cells under `%autopx`), with `--local` also at home.
    async fn run_px(&self, call: Call<'_>) -> Result<ExecuteOutcome, MagicError> {
        let plan = self.px.plan("px", call.args, call.body)?;
        if !plan.opts.local {
            return self.px.execute(call.req, &plan).await;
        }
        self.local_running.set(true);
        let (engines, home) = tokio::join!(
            self.px.execute(call.req, &plan),
            self.home.execute(call.req, call.content, &plan.code)
        );
        self.local_running.set(false);
        // The engines' failure first: the home's error (if any) is shown already.
        match (engines, home) {
            (Ok(ExecuteOutcome::Ok { .. }), home) => Ok(home),
            (failed, _) => failed,
        }
    }

    async fn run_call(&self, call: Call<'_>) -> Result<ExecuteOutcome, MagicError> {
        let req = call.req;
        let no_cell_form = || {
            MagicError::usage(
                call.name,
                format!("there is no cell form: write %{0}, not %%{0}", call.name),
            )
        };
        match call.name {
            "px" => self.run_px(call).await,
            _ if call.body.is_some() => Err(no_cell_form()),
            "autopx" => {
                if !call.args.trim().is_empty() {
                    return Err(MagicError::Usage(ParseError::UnexpectedArgument {
                        magic: "autopx".to_owned(),
                        arg: call.args.trim().to_owned(),
                    }));
                }
                self.px.toggle_autopx(req);
                Ok(ExecuteOutcome::ok())
            }
            "pxresult" => self.px.pxresult(req).await,
            "pxconfig" => self
                .px
                .pxconfig(req, call.args)
                .map(|()| ExecuteOutcome::ok()),
            "engines" => self.px.engines_cmd(req, call.args).await,
            other => Err(MagicError::usage(other, "not a magic of the px family")),
        }
    }
}

impl Family for PxFamily {
    fn magics(&self) -> &'static [MagicSpec] {
        MAGICS
    }

    fn run<'a>(&'a self, call: Call<'a>) -> LocalFuture<'a, Result<ExecuteOutcome, MagicError>> {
        Box::pin(self.run_call(call))
    }

    fn plain_cells(&self) -> Option<&'static str> {
        self.px.autopx().then_some("px")
    }

    fn interrupt(&self) -> Interrupted {
        match (self.px.interrupt(), self.local_running.get()) {
            (_, true) => Interrupted::StoppedAndHome,
            (true, false) => Interrupted::Stopped,
            (false, false) => Interrupted::Nothing,
        }
    }

    fn shutdown(&self) -> LocalFuture<'_, ()> {
        Box::pin(self.px.shutdown())
    }
}
