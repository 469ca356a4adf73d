//! The contract between the router and a family of magics (px, sql, and the ones
//! to come): what a family declares, and what the router asks of it.
//!
//! A family owns some magics ([`Family::magics`]) and runs their calls
//! ([`Family::run`]). It may also claim lines of its own that do not start with
//! `%` (jupysql's `df << %sql …`), take plain cells instead of the home kernel
//! (`%autopx`), complete at a cursor, and it is told to interrupt and to shut
//! down. The router knows families only through this trait: it builds the name
//! index, `%lsmagic` and completion from what they declare.
//!
//! Futures are boxed and not `Send`: pxkernel runs on one thread, and families
//! hold `Rc` state.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use pxkernel_kernel::protocol::content::ExecuteRequest;
use pxkernel_kernel::server::{ExecuteOutcome, Request};

use crate::error::MagicError;
use crate::home::Home;
use crate::shared::Shared;
use crate::spec::{Completion, MagicSpec};

/// A boxed future of a family's work, run on pxkernel's one thread.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// One call of a magic a family owns.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    /// The request running the cell.
    pub req: &'a Request,
    /// The cell's execute_request (`silent`, `store_history`, …).
    pub content: &'a ExecuteRequest,
    /// The magic's name, without `%`.
    pub name: &'a str,
    /// The rest of the magic's line: options and arguments.
    pub args: &'a str,
    /// The cell below `%%name` (or the lines a claimed form takes).
    pub body: Option<&'a str>,
    /// Where a claimed form puts its result (`NAME << %sql …`).
    pub into: Option<&'a str>,
}

/// A line a family claims though it does not start with `%`, split from the rest
/// of the cell. The router runs it as a call of `magic`, then the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim<'a> {
    /// The magic that runs it.
    pub magic: &'static str,
    /// Its arguments.
    pub args: &'a str,
    /// The lines it takes as its body, if any.
    pub body: Option<&'a str>,
    /// Where its result goes.
    pub into: Option<&'a str>,
    /// What follows in the cell.
    pub rest: &'a str,
}

/// What an interrupt stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupted {
    /// Nothing of this family was running.
    Nothing,
    /// Its running work was told to stop.
    Stopped,
    /// Its work was told to stop, and the home kernel runs part of the same cell
    /// (`%px --local`): interrupt it too.
    StoppedAndHome,
}

/// A family of magics.
pub trait Family {
    /// The magics it owns.
    fn magics(&self) -> &'static [MagicSpec];

    /// Run a call of one of its magics.
    fn run<'a>(&'a self, call: Call<'a>) -> LocalFuture<'a, Result<ExecuteOutcome, MagicError>>;

    /// The line of its own that opens `code`, if any (it does not start with `%`).
    fn claim<'c>(&self, _code: &'c str) -> Option<Claim<'c>> {
        None
    }

    /// The magic that takes plain cells instead of the home kernel, while it does
    /// (`%autopx` on: `px`).
    fn plain_cells(&self) -> Option<&'static str> {
        None
    }

    /// Completions at the cursor that only this family knows (table names after
    /// `FROM`), before the router completes magic names and options.
    fn complete<'a>(
        &'a self,
        _code: &'a str,
        _cursor: usize,
    ) -> LocalFuture<'a, Option<Completion>> {
        Box::pin(async { None })
    }

    /// Stop what it runs for the current cell, at once (the work ends by itself).
    fn interrupt(&self) -> Interrupted {
        Interrupted::Nothing
    }

    /// What it has to tell the user before the next cell runs, once each (a tunnel
    /// that dropped and came back). The router shows them on that cell's stderr.
    fn notices(&self) -> Vec<String> {
        Vec::new()
    }

    /// Stop everything it holds: processes, connections. Called once, at the end,
    /// in the order the families were listed.
    fn shutdown(&self) -> LocalFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Makes a family, given the home kernel it may use and what families share.
pub type MakeFamily = fn(&Rc<Home>, &Shared) -> Box<dyn Family>;
