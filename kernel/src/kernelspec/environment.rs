//! The Python environments kernelspecs come from: the one of the Jupyter process
//! that started us (found from the process itself, since a Jupyter started by
//! absolute path from a venv or conda env leaves no trace in `PATH`), and the
//! active ones (`VIRTUAL_ENV`, `CONDA_PREFIX`, `python3` and `jupyter` on `PATH`).
//!
//! Jupyter searches `{sys.prefix}/share/jupyter` of its own interpreter, so the
//! launcher's prefix is found the way Python finds `sys.prefix`: a `pyvenv.cfg`
//! beside or above the interpreter marks a venv (whose interpreter is a symlink
//! that must not be followed), otherwise the real interpreter's `bin/..`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A Python installation or environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PythonEnv {
    /// Its `sys.prefix`.
    pub prefix: PathBuf,
    /// An interpreter of it.
    pub python: PathBuf,
    /// A virtualenv or a conda env (not a base installation): Jupyter then
    /// prefers its paths over the user's.
    pub is_env: bool,
}

impl PythonEnv {
    /// The environment an interpreter path belongs to.
    pub fn of_interpreter(python: &Path) -> Option<PythonEnv> {
        let bin = python.parent()?;
        for cfg in [bin.join("pyvenv.cfg"), bin.parent()?.join("pyvenv.cfg")] {
            if cfg.is_file() {
                return Some(PythonEnv {
                    prefix: cfg.parent()?.to_path_buf(),
                    python: python.to_path_buf(),
                    is_env: true,
                });
            }
        }
        let real = std::fs::canonicalize(python).ok()?;
        let prefix = real.parent()?.parent()?.to_path_buf();
        let is_env = prefix.join("conda-meta").is_dir() && !prefix.join("condabin").is_dir();
        Some(PythonEnv {
            prefix,
            python: python.to_path_buf(),
            is_env,
        })
    }

    /// The interpreter of a prefix (`bin/python3`, else `bin/python`).
    pub fn of_prefix(prefix: &Path) -> Option<PythonEnv> {
        ["python3", "python"]
            .iter()
            .map(|name| prefix.join("bin").join(name))
            .find(|p| super::is_executable(p))
            .and_then(|p| PythonEnv::of_interpreter(&p))
    }

    /// Its `share/jupyter`.
    pub fn data_dir(&self) -> PathBuf {
        self.prefix.join("share/jupyter")
    }
}

/// How many ancestors we look through for the Jupyter process (a kernel may be
/// started through a wrapper, e.g. a shell script or `env`).
const MAX_ANCESTORS: usize = 4;

static LAUNCHER: OnceLock<Option<PythonEnv>> = OnceLock::new();

/// Find the environment of the Python process that started this kernel (the
/// Jupyter server, nbconvert, a JupyterHub single-user server), once; lookups
/// search it from then on. Only a kernel does this: a command run from a
/// shell (`pxkernel install`) has no Jupyter above it, and a Python that happens
/// to run it (a test runner, a script) is not one.
pub fn detect_launcher() -> Option<&'static PythonEnv> {
    LAUNCHER.get_or_init(find_launcher).as_ref()
}

/// The environment found by [`detect_launcher`], if it ran and found one.
pub fn launcher() -> Option<&'static PythonEnv> {
    LAUNCHER.get().and_then(Option::as_ref)
}

fn find_launcher() -> Option<PythonEnv> {
    // jupyter_client names its own pid; a wrapper in between does not change it.
    let named = std::env::var("JPY_PARENT_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    let mut pid = named.unwrap_or_else(std::os::unix::process::parent_id);
    for _ in 0..MAX_ANCESTORS {
        if pid <= 1 {
            return None;
        }
        if let Some(python) = python_of_process(pid) {
            let env = PythonEnv::of_interpreter(&python);
            tracing::debug!(pid, ?env, "the process that started us");
            return env;
        }
        pid = parent_of(pid)?;
    }
    None
}

/// Whether a file name is a Python interpreter's (`python`, `python3`, `python3.12`).
pub fn is_python_name(name: &str) -> bool {
    name == "python"
        || name == "python3"
        || name
            .strip_prefix("python3.")
            .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()))
}

/// The interpreter a running Python process was started as: its `argv[0]` (a
/// script's shebang puts the venv's own path there), else its executable.
fn python_of_process(pid: u32) -> Option<PathBuf> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let cmdline = std::fs::read(proc.join("cmdline")).ok()?;
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let argv0 = PathBuf::from(String::from_utf8_lossy(argv0).into_owned());
    let exe = std::fs::read_link(proc.join("exe")).ok();
    let named_python = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_python_name)
    };
    if named_python(&argv0) {
        if argv0.is_absolute() {
            return Some(argv0);
        }
        if argv0.components().count() > 1 {
            let cwd = std::fs::read_link(proc.join("cwd")).ok()?;
            return Some(cwd.join(argv0));
        }
        // A bare `python3`: the one on that process's PATH.
        if let Some(found) = on_path_of(pid, &argv0) {
            return Some(found);
        }
    }
    exe.filter(|e| named_python(e))
}

fn on_path_of(pid: u32, program: &Path) -> Option<PathBuf> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let path = environ
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"PATH="))?;
    let path = String::from_utf8_lossy(path).into_owned();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| super::is_executable(p))
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The active environments, in Jupyter's order: `VIRTUAL_ENV`, `CONDA_PREFIX`,
/// then the prefixes of the `python3` and `jupyter` on `PATH`.
pub fn active() -> Vec<PythonEnv> {
    let mut out: Vec<PythonEnv> = Vec::new();
    let mut push = |env: Option<PythonEnv>| {
        if let Some(env) = env
            && !out.iter().any(|e| e.prefix == env.prefix)
        {
            out.push(env);
        }
    };
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(p) = super::env_path(var) {
            push(PythonEnv::of_prefix(&p).or(Some(PythonEnv {
                python: p.join("bin/python3"),
                prefix: p,
                is_env: true,
            })));
        }
    }
    if let Some(python) = super::which("python3") {
        push(PythonEnv::of_interpreter(&python));
    }
    if let Some(jupyter) = super::which("jupyter")
        && let Some(prefix) = jupyter.parent().and_then(Path::parent)
    {
        push(PythonEnv::of_prefix(prefix));
    }
    out
}

/// Whether `python` can import ipykernel (without importing it: a spec lookup).
pub fn has_ipykernel(python: &Path) -> bool {
    let probe =
        "import importlib.util, sys; sys.exit(importlib.util.find_spec('ipykernel') is None)";
    let mut child = match std::process::Command::new(python)
        .args(["-I", "-c", probe])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => return false,
    };
    // A broken interpreter must not hang a lookup.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_names() {
        for (name, yes) in [
            ("python", true),
            ("python3", true),
            ("python3.11", true),
            ("python3.", false),
            ("python3.x", false),
            ("python2", false),
            ("jupyter-lab", false),
            ("bash", false),
            ("/usr/bin/python3", false),
        ] {
            assert_eq!(is_python_name(name), yes, "{name}");
        }
    }

    #[test]
    fn a_venv_is_its_own_prefix_though_its_python_is_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        std::fs::create_dir_all(base.join("bin")).unwrap();
        std::fs::write(base.join("bin/python3.11"), "").unwrap();
        let venv = tmp.path().join("venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("pyvenv.cfg"), "home = base/bin\n").unwrap();
        std::os::unix::fs::symlink(base.join("bin/python3.11"), venv.join("bin/python")).unwrap();

        let env = PythonEnv::of_interpreter(&venv.join("bin/python")).unwrap();
        assert_eq!(env.prefix, venv);
        assert!(env.is_env);
        assert_eq!(env.data_dir(), venv.join("share/jupyter"));

        let base_env = PythonEnv::of_interpreter(&base.join("bin/python3.11")).unwrap();
        assert_eq!(base_env.prefix, std::fs::canonicalize(&base).unwrap());
        assert!(!base_env.is_env);
    }

    #[test]
    fn a_symlinked_base_interpreter_resolves_to_its_real_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("opt/py");
        std::fs::create_dir_all(real.join("bin")).unwrap();
        std::fs::write(real.join("bin/python3.12"), "").unwrap();
        std::fs::create_dir_all(tmp.path().join("usr/bin")).unwrap();
        let link = tmp.path().join("usr/bin/python3");
        std::os::unix::fs::symlink(real.join("bin/python3.12"), &link).unwrap();
        let env = PythonEnv::of_interpreter(&link).unwrap();
        assert_eq!(env.prefix, std::fs::canonicalize(&real).unwrap());
        assert_eq!(env.python, link);
    }

    #[test]
    fn a_conda_env_is_an_env_and_the_base_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("conda");
        let env = base.join("envs/science");
        for prefix in [&base, &env] {
            std::fs::create_dir_all(prefix.join("bin")).unwrap();
            std::fs::create_dir_all(prefix.join("conda-meta")).unwrap();
            std::fs::write(prefix.join("bin/python3"), "").unwrap();
        }
        std::fs::create_dir_all(base.join("condabin")).unwrap();
        assert!(
            PythonEnv::of_interpreter(&env.join("bin/python3"))
                .unwrap()
                .is_env
        );
        assert!(
            !PythonEnv::of_interpreter(&base.join("bin/python3"))
                .unwrap()
                .is_env
        );
    }

    #[test]
    fn the_parent_of_a_process_is_read_from_proc() {
        let me = std::process::id();
        assert_eq!(parent_of(me), Some(std::os::unix::process::parent_id()));
    }

    #[test]
    fn a_missing_interpreter_has_no_ipykernel() {
        assert!(!has_ipykernel(Path::new("/nonexistent/bin/python3")));
    }
}
