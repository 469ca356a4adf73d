//! Kernelspecs: finding them where `jupyter kernelspec list` finds them, launching
//! a kernel from one ([`launch`]), and installing one.
//!
//! Search order follows jupyter_core: `JUPYTER_PATH`, then the environment's
//! `share/jupyter` (virtualenv, conda, or the prefix of the `python3` on `PATH`)
//! and the user data dir (environment first when one is active), then the system
//! dirs. The first spec of a name wins.

pub mod launch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use launch::{LaunchOptions, RunningKernel, StartedKernel, Transport, start};

/// Kernelspec errors, with what was searched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelspecError {
    /// No kernelspec of that name.
    #[error("no kernelspec named {name:?} (searched {})", display_paths(searched))]
    NotFound {
        /// The name asked for.
        name: String,
        /// The kernels directories looked in.
        searched: Vec<PathBuf>,
    },
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

fn tail_suffix(output: &str) -> String {
    if output.trim().is_empty() {
        String::new()
    } else {
        format!("; its last output:\n{}", output.trim_end())
    }
}

/// How a kernel wants to be interrupted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterruptMode {
    /// SIGINT to its process group.
    #[default]
    Signal,
    /// An `interrupt_request` on control.
    Message,
}

/// The content of a kernel.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelJson {
    /// The command; `{connection_file}` is replaced.
    pub argv: Vec<String>,
    /// The name shown to users.
    pub display_name: String,
    /// The language.
    #[serde(default)]
    pub language: String,
    /// How to interrupt.
    #[serde(default)]
    pub interrupt_mode: InterruptMode,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// Other fields (e.g. `kernel_protocol_version`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A kernelspec found on disk.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSpec {
    /// Its name (the directory name).
    pub name: String,
    /// The directory holding kernel.json.
    pub dir: PathBuf,
    /// The parsed kernel.json.
    pub json: KernelJson,
}

impl KernelSpec {
    /// Read `dir/kernel.json`.
    pub fn from_dir(dir: &Path) -> Result<KernelSpec, KernelspecError> {
        let path = dir.join("kernel.json");
        let text = std::fs::read_to_string(&path).map_err(|source| KernelspecError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        let json: KernelJson =
            serde_json::from_str(&text).map_err(|e| KernelspecError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if json.argv.is_empty() {
            return Err(KernelspecError::Invalid {
                path,
                reason: "argv is empty".to_owned(),
            });
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        Ok(KernelSpec {
            name,
            dir: dir.to_owned(),
            json,
        })
    }

    /// The prefix this spec was installed under (`PREFIX/share/jupyter/kernels/NAME`).
    pub fn prefix(&self) -> Option<PathBuf> {
        let kernels = self.dir.parent()?;
        let jupyter = kernels.parent()?;
        let share = jupyter.parent()?;
        (kernels.file_name()? == "kernels"
            && jupyter.file_name()? == "jupyter"
            && share.file_name()? == "share")
            .then(|| share.parent().map(Path::to_path_buf))
            .flatten()
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home_dir() -> PathBuf {
    env_path("HOME").unwrap_or_else(|| PathBuf::from("/"))
}

/// The user's Jupyter data dir (`JUPYTER_DATA_DIR`, else `$XDG_DATA_HOME/jupyter`,
/// else `~/.local/share/jupyter`).
pub fn user_data_dir() -> PathBuf {
    if let Some(d) = env_path("JUPYTER_DATA_DIR") {
        return d;
    }
    env_path("XDG_DATA_HOME")
        .unwrap_or_else(|| home_dir().join(".local/share"))
        .join("jupyter")
}

/// The Jupyter runtime dir, where connection files go.
pub fn runtime_dir() -> PathBuf {
    env_path("JUPYTER_RUNTIME_DIR").unwrap_or_else(|| user_data_dir().join("runtime"))
}

/// Find an executable on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Prefixes of the active Python environment: `VIRTUAL_ENV`, `CONDA_PREFIX`, and
/// the prefix of the `python3` found on `PATH` (its `bin/`'s parent).
pub fn env_prefixes() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: PathBuf| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(p) = env_path(var) {
            push(p);
        }
    }
    for prog in ["python3", "jupyter"] {
        if let Some(bin) = which(prog).and_then(|p| p.parent().map(Path::to_path_buf))
            && let Some(prefix) = bin.parent()
        {
            push(prefix.to_path_buf());
        }
    }
    out
}

/// The Jupyter data dirs in search order.
pub fn data_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(jp) = std::env::var_os("JUPYTER_PATH") {
        dirs.extend(std::env::split_paths(&jp).filter(|p| !p.as_os_str().is_empty()));
    }
    let env: Vec<PathBuf> = env_prefixes()
        .into_iter()
        .map(|p| p.join("share/jupyter"))
        .collect();
    let prefer_env = env_path("VIRTUAL_ENV").is_some()
        || env_path("CONDA_PREFIX").is_some()
        || std::env::var("JUPYTER_PREFER_ENV_PATH")
            .is_ok_and(|v| !matches!(v.to_lowercase().as_str(), "" | "0" | "false" | "no" | "off"));
    if prefer_env {
        dirs.extend(env);
        dirs.push(user_data_dir());
    } else {
        dirs.push(user_data_dir());
        dirs.extend(env);
    }
    dirs.push(PathBuf::from("/usr/local/share/jupyter"));
    dirs.push(PathBuf::from("/usr/share/jupyter"));
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let new = !seen.contains(d);
        seen.push(d.clone());
        new
    });
    dirs
}

/// The `kernels` dirs in search order.
pub fn kernel_dirs() -> Vec<PathBuf> {
    data_dirs().into_iter().map(|d| d.join("kernels")).collect()
}

/// Every kernelspec, the first of each name winning.
pub fn list() -> Vec<KernelSpec> {
    let mut specs: Vec<KernelSpec> = Vec::new();
    for dir in kernel_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for d in names {
            if !d.join("kernel.json").is_file() {
                continue;
            }
            match KernelSpec::from_dir(&d) {
                Ok(spec) if !specs.iter().any(|s| s.name == spec.name) => specs.push(spec),
                Ok(_) => {}
                Err(e) => tracing::warn!("skipping {}: {e}", d.display()),
            }
        }
    }
    specs
}

/// The kernelspec of this name (case-insensitive).
pub fn find(name: &str) -> Result<KernelSpec, KernelspecError> {
    let wanted = name.to_lowercase();
    let searched = kernel_dirs();
    for dir in &searched {
        let d = dir.join(&wanted);
        if d.join("kernel.json").is_file() {
            return KernelSpec::from_dir(&d);
        }
    }
    Err(KernelspecError::NotFound {
        name: name.to_owned(),
        searched,
    })
}

/// Write a kernelspec directory: kernel.json plus resource files (logos).
pub fn install(
    dest: &Path,
    json: &KernelJson,
    resources: &[(&str, &[u8])],
) -> Result<(), KernelspecError> {
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| KernelspecError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dest).map_err(io("create", dest))?;
    let text = serde_json::to_string_pretty(json).map_err(|e| KernelspecError::Invalid {
        path: dest.join("kernel.json"),
        reason: e.to_string(),
    })?;
    let kj = dest.join("kernel.json");
    std::fs::write(&kj, text + "\n").map_err(io("write", &kj))?;
    for (name, bytes) in resources {
        let p = dest.join(name);
        std::fs::write(&p, bytes).map_err(io("write", &p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_of_an_installed_spec() {
        let spec = KernelSpec {
            name: "python3".into(),
            dir: PathBuf::from("/opt/venv/share/jupyter/kernels/python3"),
            json: serde_json::from_str(r#"{"argv":["python"],"display_name":"P"}"#).unwrap(),
        };
        assert_eq!(spec.prefix(), Some(PathBuf::from("/opt/venv")));
        let elsewhere = KernelSpec {
            dir: PathBuf::from("/somewhere/python3"),
            ..spec
        };
        assert_eq!(elsewhere.prefix(), None);
    }

    #[test]
    fn kernel_json_keeps_unknown_fields_and_defaults_interrupt_mode() {
        let j: KernelJson = serde_json::from_str(
            r#"{"argv":["x","{connection_file}"],"display_name":"X","kernel_protocol_version":"5.5"}"#,
        )
        .unwrap();
        assert_eq!(j.interrupt_mode, InterruptMode::Signal);
        assert_eq!(j.extra["kernel_protocol_version"], "5.5");
    }

    #[test]
    fn finds_specs_on_jupyter_path_and_reports_where_it_looked() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("kernels/fancy");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("kernel.json"),
            r#"{"argv":["fancy","-f","{connection_file}"],"display_name":"Fancy","language":"fa"}"#,
        )
        .unwrap();
        // Only this test touches JUPYTER_PATH in this process.
        unsafe { std::env::set_var("JUPYTER_PATH", tmp.path()) };
        let spec = find("Fancy").unwrap();
        assert_eq!(spec.name, "fancy");
        assert_eq!(spec.json.language, "fa");
        assert!(list().iter().any(|s| s.name == "fancy"));
        let err = find("no-such-kernel").unwrap_err().to_string();
        assert!(
            err.contains("no-such-kernel") && err.contains("kernels"),
            "{err}"
        );
    }
}
