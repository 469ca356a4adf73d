//! The one error type of every magic ([`MagicError`], with the home kernel's
//! [`HomeError`] and the option parser's `ParseError` inside it), and the one
//! place that turns it into the notebook's `error` output ([`report`]). A leaf:
//! it needs nothing of the crate but the parser's error.
//!
//! A family returns `Err(MagicError)` for any failure; it never publishes an
//! error itself. What it has already shown (the output of the engines that
//! succeeded, a table's first rows) stays shown above the error.

use pxkernel_kernel::server::{ExecuteOutcome, Request};

use crate::parse::ParseError;

/// Why a request could not be served by the home kernel.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum HomeError {
    /// It could not be started.
    #[error("the home kernel {name:?} could not start: {reason}")]
    Start {
        /// Kernelspec name.
        name: String,
        /// Why.
        reason: String,
    },
    /// It died while serving the request.
    #[error("the home kernel {name:?} died ({reason}); the next cell starts a fresh one")]
    Died {
        /// Kernelspec name.
        name: String,
        /// How it ended.
        reason: String,
    },
    /// pxkernel is shutting down.
    #[error("pxkernel is shutting down")]
    Stopped,
}

/// Why a magic failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MagicError {
    /// Bad arguments: shown as `UsageError`.
    #[error(transparent)]
    Usage(#[from] ParseError),
    /// The home kernel was needed and could not serve.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The magic ran and failed: a database error, engines that failed, an interrupt.
    #[error("{evalue}")]
    Failed {
        /// The error's name (`DatabaseError`, `CompositeError`, `KeyboardInterrupt`…).
        ename: String,
        /// Its one-line message.
        evalue: String,
        /// The lines shown under it; empty for just `ename: evalue`.
        traceback: Vec<String>,
    },
}

impl MagicError {
    /// A failure with its name and message, shown as `ename: evalue`.
    pub fn failed(ename: impl Into<String>, evalue: impl Into<String>) -> MagicError {
        MagicError::Failed {
            ename: ename.into(),
            evalue: evalue.into(),
            traceback: Vec::new(),
        }
    }

    /// A usage error of `magic`, for a reason no option parser gave.
    pub fn usage(magic: &str, reason: impl Into<String>) -> MagicError {
        MagicError::Usage(ParseError::Usage {
            magic: magic.to_owned(),
            reason: reason.into(),
        })
    }

    /// The error's name in the notebook.
    pub fn ename(&self) -> &str {
        match self {
            MagicError::Usage(_) => "UsageError",
            MagicError::Home(HomeError::Died { .. }) => "HomeKernelDied",
            MagicError::Home(_) => "HomeKernelUnavailable",
            MagicError::Failed { ename, .. } => ename,
        }
    }
}

/// Show `error` as this request's `error` output and return the outcome that
/// ends the request with it.
pub fn report(req: &Request, error: &MagicError) -> ExecuteOutcome {
    let ename = error.ename().to_owned();
    let evalue = error.to_string();
    let traceback = match error {
        MagicError::Failed { traceback, .. } if !traceback.is_empty() => traceback.clone(),
        _ => vec![format!("{ename}: {evalue}")],
    };
    req.error(&ename, &evalue, &traceback);
    ExecuteOutcome::Error {
        ename,
        evalue,
        traceback,
    }
}

/// The outcome of a magic's run: its success, or its error reported.
pub fn outcome(req: &Request, result: Result<ExecuteOutcome, MagicError>) -> ExecuteOutcome {
    result.unwrap_or_else(|e| report(req, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_messages() {
        let cases: [(&str, MagicError, &str, &str); 4] = [
            (
                "usage",
                MagicError::usage("engines start", "say how many engines: -n N"),
                "UsageError",
                "say how many engines: -n N",
            ),
            (
                "home died",
                MagicError::Home(HomeError::Died {
                    name: "python3".into(),
                    reason: "killed by signal 9".into(),
                }),
                "HomeKernelDied",
                "killed by signal 9",
            ),
            (
                "home unavailable",
                MagicError::Home(HomeError::Start {
                    name: "python3".into(),
                    reason: "no kernelspec".into(),
                }),
                "HomeKernelUnavailable",
                "no kernelspec",
            ),
            (
                "failed",
                MagicError::failed("DatabaseError", "no such table: t"),
                "DatabaseError",
                "no such table: t",
            ),
        ];
        for (case, error, ename, in_message) in cases {
            assert_eq!(error.ename(), ename, "{case}");
            assert!(error.to_string().contains(in_message), "{case}: {error}");
        }
    }
}
