//! The errors of finding, installing and launching kernelspecs, each saying what
//! was searched or what the kernel wrote last, and the one command that fixes a
//! missing kernelspec.

use std::path::PathBuf;

use super::Location;

/// Kernelspec errors, with what was searched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelspecError {
    /// No kernelspec of that name.
    #[error(
        "no kernelspec named {name:?} (searched {}{}). To fix: {fix}",
        display_paths(searched),
        pythons_suffix(pythons)
    )]
    NotFound {
        /// The name asked for.
        name: String,
        /// The kernels directories looked in.
        searched: Vec<PathBuf>,
        /// The Pythons asked for ipykernel (for `python3`).
        pythons: Vec<PathBuf>,
        /// The one command that fixes it.
        fix: String,
    },
    /// Not a kernelspec name.
    #[error(
        "{name:?} is not a kernelspec name: use letters, digits, '.', '_' and '-' \
         (names are directories in a kernels directory)"
    )]
    BadName {
        /// What was given.
        name: String,
    },
    /// What `pxkernel install` recorded is gone, and the name is found nowhere else.
    #[error("the kernel {name:?} recorded at install ({recorded}) is gone, and {source}")]
    RecordedGone {
        /// Kernelspec name.
        name: String,
        /// Where it was.
        recorded: Location,
        /// The search that followed.
        source: Box<KernelspecError>,
    },
    /// The system's random source failed (no key can be made).
    #[error("the system's random source failed: {0}")]
    Random(String),
    /// A kernel.json that is not valid.
    #[error("bad kernelspec {path}: {reason}")]
    Invalid {
        /// The kernel.json.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we tried.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The kernel process could not be started.
    #[error("cannot start kernel {name:?} ({program}): {source}")]
    Spawn {
        /// Kernelspec name.
        name: String,
        /// argv[0].
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel exited before it answered.
    #[error(
        "kernel {name:?} exited ({status}) before it answered{}",
        tail_suffix(output)
    )]
    Exited {
        /// Kernelspec name.
        name: String,
        /// Its exit status.
        status: String,
        /// The last lines it wrote.
        output: String,
    },
    /// The kernel did not answer in time.
    #[error(
        "kernel {name:?} did not answer within {seconds} s{}",
        tail_suffix(output)
    )]
    Timeout {
        /// Kernelspec name.
        name: String,
        /// How long we waited.
        seconds: f64,
        /// The last lines it wrote.
        output: String,
    },
    /// Connecting to the started kernel failed.
    #[error("kernel {name:?}: {source}")]
    Connect {
        /// Kernelspec name.
        name: String,
        /// Why.
        source: crate::client::ClientError,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn pythons_suffix(pythons: &[PathBuf]) -> String {
    if pythons.is_empty() {
        String::new()
    } else {
        format!("; no ipykernel for {}", display_paths(pythons))
    }
}

fn tail_suffix(output: &str) -> String {
    if output.trim().is_empty() {
        String::new()
    } else {
        format!("; its last output:\n{}", output.trim_end())
    }
}
