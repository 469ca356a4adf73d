//! Kernelspecs: finding them where `jupyter kernelspec list` finds them, launching
//! a kernel from one ([`launch`]), and installing one.
//!
//! Search order follows jupyter_core as seen by the Jupyter that started us:
//! `JUPYTER_PATH`, then the environments' `share/jupyter` (that Jupyter's own
//! first, found from its process, then `VIRTUAL_ENV`, `CONDA_PREFIX` and the
//! `python3` on `PATH`) and the user data dir (environment first when it is a
//! venv or conda env), then the system dirs. The first spec of a name wins; with
//! no `python3` spec on disk, the first of those environments whose Python has
//! ipykernel provides it, as jupyter_client's native kernel.
//!
//! - [`environment`]: the Python environments kernelspecs may come from.
//! - [`launch`]: starting a kernel from its spec and owning its process.
//! - `session_dir`: this process's locked directory for connection files and
//!   sockets, and the removal of those whose pxkernel is gone.
//! - `error`: [`KernelspecError`], saying what was searched and how to fix it.

pub mod environment;
mod error;
pub mod launch;
mod session_dir;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use environment::PythonEnv;
pub use error::KernelspecError;
pub use launch::{LaunchOptions, RunningKernel, StartedKernel, Transport, start};

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

/// Where a kernelspec was found, as `pxkernel install` records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A directory holding kernel.json.
    Dir(PathBuf),
    /// Jupyter's built-in `python3` kernel of this interpreter.
    Native(PathBuf),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(d) => write!(f, "{}", d.display()),
            Location::Native(p) => write!(f, "ipykernel of {}", p.display()),
        }
    }
}

/// A kernelspec found on disk, or Jupyter's built-in `python3` kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSpec {
    /// Its name (the directory name).
    pub name: String,
    /// The directory holding kernel.json (empty for a built-in kernel).
    pub dir: PathBuf,
    /// The parsed kernel.json.
    pub json: KernelJson,
    /// For a built-in kernel: the interpreter that provides it.
    pub native_python: Option<PathBuf>,
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
            native_python: None,
        })
    }

    /// Jupyter's built-in `python3` kernel of `python` (which has ipykernel), as
    /// ipykernel's `get_kernel_dict` describes it.
    pub fn native(python: &Path) -> KernelSpec {
        let argv = [
            &*python.to_string_lossy(),
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
        ];
        let mut metadata = Map::new();
        metadata.insert("debugger".to_owned(), Value::Bool(true));
        let mut extra = Map::new();
        extra.insert("kernel_protocol_version".to_owned(), "5.5".into());
        KernelSpec {
            name: NATIVE_KERNEL_NAME.to_owned(),
            dir: PathBuf::new(),
            json: KernelJson {
                argv: argv.iter().map(|a| a.to_string()).collect(),
                display_name: "Python 3 (ipykernel)".to_owned(),
                language: "python".to_owned(),
                interrupt_mode: InterruptMode::Signal,
                env: BTreeMap::new(),
                metadata,
                extra,
            },
            native_python: Some(python.to_owned()),
        }
    }

    /// Whether its metadata declares CurveZMQ (`"supported_encryption": ["curve"]`,
    /// or the string `"curve"`), as jupyter_client reads it.
    pub fn supports_curve(&self) -> bool {
        match self.json.metadata.get("supported_encryption") {
            Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("curve"),
            Some(Value::Array(items)) => items.iter().any(|v| {
                v.as_str()
                    .is_some_and(|s| s.trim().eq_ignore_ascii_case("curve"))
            }),
            _ => false,
        }
    }

    /// Where it was found.
    pub fn location(&self) -> Location {
        match &self.native_python {
            Some(python) => Location::Native(python.clone()),
            None => Location::Dir(self.dir.clone()),
        }
    }

    /// The kernelspec at a recorded location, if it is still there.
    pub fn at(location: &Location) -> Option<KernelSpec> {
        match location {
            Location::Dir(d) => KernelSpec::from_dir(d).ok(),
            Location::Native(python) => (is_executable(python)
                && environment::has_ipykernel(python))
            .then(|| KernelSpec::native(python)),
        }
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

/// Prefixes of the Python environments whose `share/jupyter` is searched: the
/// Jupyter process that started us first, then the active ones.
pub fn env_prefixes() -> Vec<PathBuf> {
    python_envs().into_iter().map(|e| e.prefix).collect()
}

/// The Python environments kernelspecs may come from, launcher first.
pub fn python_envs() -> Vec<PythonEnv> {
    let mut envs: Vec<PythonEnv> = environment::launcher().cloned().into_iter().collect();
    for env in environment::active() {
        if !envs.iter().any(|e| e.prefix == env.prefix) {
            envs.push(env);
        }
    }
    envs
}

const SYSTEM_DATA_DIRS: [&str; 2] = ["/usr/local/share/jupyter", "/usr/share/jupyter"];

/// The Jupyter data dirs in search order, as `jupyter --paths` prints them for
/// the Jupyter that started us: `JUPYTER_PATH`, then its environment and the
/// user's dir (the environment first when it is a venv or conda env, or when
/// `JUPYTER_PREFER_ENV_PATH` says so), then the system dirs.
pub fn data_dirs() -> Vec<PathBuf> {
    let envs = python_envs();
    let prefer_env = match std::env::var("JUPYTER_PREFER_ENV_PATH") {
        Ok(v) => !matches!(
            v.to_lowercase().as_str(),
            "" | "0" | "false" | "no" | "off" | "n"
        ),
        Err(_) => envs.first().is_some_and(|e| e.is_env),
    };
    order_data_dirs(
        std::env::var_os("JUPYTER_PATH").as_deref(),
        &envs,
        user_data_dir(),
        prefer_env,
    )
}

fn order_data_dirs(
    jupyter_path: Option<&std::ffi::OsStr>,
    envs: &[PythonEnv],
    user: PathBuf,
    prefer_env: bool,
) -> Vec<PathBuf> {
    let system: Vec<PathBuf> = SYSTEM_DATA_DIRS.iter().map(PathBuf::from).collect();
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(jp) = jupyter_path {
        dirs.extend(std::env::split_paths(jp).filter(|p| !p.as_os_str().is_empty()));
    }
    // An environment whose prefix is a system prefix (/usr) is searched with the system dirs.
    let env: Vec<PathBuf> = envs
        .iter()
        .map(PythonEnv::data_dir)
        .filter(|d| !system.contains(d))
        .collect();
    if prefer_env {
        dirs.extend(env);
        dirs.push(user);
    } else {
        dirs.push(user);
        dirs.extend(env);
    }
    dirs.extend(system);
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

/// The name of the kernel Jupyter provides from its own Python when ipykernel is
/// installed there, with no kernelspec on disk.
pub const NATIVE_KERNEL_NAME: &str = "python3";

/// Refuse a kernelspec name that is not one: Jupyter's names are letters, digits,
/// `.`, `_` and `-`, so a name can never reach outside a kernels directory.
pub fn check_name(name: &str) -> Result<(), KernelspecError> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.chars().all(|c| c == '.');
    if valid {
        Ok(())
    } else {
        Err(KernelspecError::BadName {
            name: name.to_owned(),
        })
    }
}

/// The kernelspec of this name (case-insensitive), where Jupyter would find it:
/// a spec on disk in [`kernel_dirs`], else for `python3` the built-in kernel of
/// the first environment whose Python has ipykernel (as jupyter_client's native
/// kernel).
pub fn find(name: &str) -> Result<KernelSpec, KernelspecError> {
    check_name(name)?;
    let wanted = name.to_lowercase();
    if let Some(spec) = pinned(&wanted) {
        return Ok(spec);
    }
    find_in(name, kernel_dirs(), &python_envs())
}

fn find_in(
    name: &str,
    searched: Vec<PathBuf>,
    envs: &[PythonEnv],
) -> Result<KernelSpec, KernelspecError> {
    let wanted = name.to_lowercase();
    for dir in &searched {
        let d = dir.join(&wanted);
        if d.join("kernel.json").is_file() {
            return KernelSpec::from_dir(&d);
        }
    }
    let mut pythons = Vec::new();
    if wanted == NATIVE_KERNEL_NAME {
        for env in envs {
            if environment::has_ipykernel(&env.python) {
                return Ok(KernelSpec::native(&env.python));
            }
            pythons.push(env.python.clone());
        }
    }
    Err(KernelspecError::NotFound {
        name: name.to_owned(),
        searched,
        pythons,
        fix: fix_for(&wanted, envs),
    })
}

/// The one command that makes `name` findable.
fn fix_for(name: &str, envs: &[PythonEnv]) -> String {
    let python = envs
        .first()
        .map(|e| e.python.to_string_lossy().into_owned())
        .unwrap_or_else(|| "python3".to_owned());
    if name == NATIVE_KERNEL_NAME {
        format!("install ipykernel where Jupyter runs: `{python} -m pip install ipykernel`")
    } else {
        format!(
            "install the kernel {name:?} where Jupyter runs, or pick one that \
             `{python} -m jupyter kernelspec list` shows"
        )
    }
}

/// The kernelspec `name` at the location `pxkernel install` recorded, else (when
/// it has gone) wherever [`find`] finds one now, with a notice that says so.
pub fn find_recorded(
    name: &str,
    recorded: &Location,
) -> Result<(KernelSpec, Option<String>), KernelspecError> {
    check_name(name)?;
    if let Some(spec) = KernelSpec::at(recorded) {
        return Ok((spec, None));
    }
    match find(name) {
        Ok(spec) => {
            let notice = format!(
                "the kernel {name:?} recorded at install ({recorded}) is gone; using the one \
                 at {} instead. Run `pxkernel install` again to record it.",
                spec.location()
            );
            Ok((spec, Some(notice)))
        }
        Err(e) => Err(KernelspecError::RecordedGone {
            name: name.to_owned(),
            recorded: recorded.clone(),
            source: Box::new(e),
        }),
    }
}

/// Kernelspecs resolved once by location (what `pxkernel install` recorded):
/// lookups by their name return them first, so engines started "like the home"
/// run the same kernel.
static PINNED: std::sync::Mutex<Vec<KernelSpec>> = std::sync::Mutex::new(Vec::new());

/// Make lookups of `spec.name` return `spec` from now on in this process.
pub fn pin(spec: KernelSpec) {
    let mut pinned = PINNED.lock().unwrap_or_else(|p| p.into_inner());
    pinned.retain(|s| s.name != spec.name);
    pinned.push(spec);
}

fn pinned(name: &str) -> Option<KernelSpec> {
    let pinned = PINNED.lock().unwrap_or_else(|p| p.into_inner());
    pinned.iter().find(|s| s.name == name).cloned()
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
mod tests;
