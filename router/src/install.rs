//! The kernelspec pxkernel installs: kernel.json from the template in
//! `kernelspec/`, the logos, and what install learned of the home kernel: where
//! its kernelspec was found (so a pxkernel started by a Jupyter of another
//! environment still runs the same home) and its language_info, asked of the
//! home kernel once, so that kernel_info is right from the first reply.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pxkernel_kernel::kernelspec::{
    self, KernelJson, KernelSpec, KernelspecError, LaunchOptions, Location, NATIVE_KERNEL_NAME,
};
use pxkernel_kernel::protocol::Channel;
use pxkernel_kernel::protocol::content::LanguageInfo;
use serde_json::json;

const TEMPLATE: &str = include_str!("../../kernelspec/kernel.json");

/// The logos installed beside kernel.json.
pub const LOGOS: [(&str, &[u8]); 3] = [
    (
        "logo-32x32.png",
        include_bytes!("../../kernelspec/logo-32x32.png"),
    ),
    (
        "logo-64x64.png",
        include_bytes!("../../kernelspec/logo-64x64.png"),
    ),
    (
        "logo-svg.svg",
        include_bytes!("../../kernelspec/logo-svg.svg"),
    ),
];

/// Environment variable naming the home kernelspec.
pub const HOME_ENV: &str = "PXKERNEL_HOME";
/// Environment variable carrying the home's language_info as JSON.
pub const LANGUAGE_INFO_ENV: &str = "PXKERNEL_LANGUAGE_INFO";
/// Environment variable recording the home kernelspec's directory found at install.
pub const HOME_SPEC_ENV: &str = "PXKERNEL_HOME_SPEC";
/// Environment variable recording the Python whose built-in kernel was the home at install.
pub const HOME_PYTHON_ENV: &str = "PXKERNEL_HOME_PYTHON";

/// Where `pxkernel install` found the home, read back from the kernel's environment.
pub fn recorded_home() -> Option<Location> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    var(HOME_SPEC_ENV)
        .map(|d| Location::Dir(PathBuf::from(d)))
        .or_else(|| var(HOME_PYTHON_ENV).map(|p| Location::Native(PathBuf::from(p))))
}

/// Where a kernelspec goes, as `jupyter kernelspec install` understands it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Root {
    /// The user's data dir.
    User,
    /// The active Python environment's prefix.
    SysPrefix,
    /// `DIR/share/jupyter/kernels`.
    Prefix(PathBuf),
    /// `/usr/local/share/jupyter/kernels`.
    System,
}

impl Root {
    /// The `kernels` directory of this root.
    pub fn kernels_dir(&self) -> Result<PathBuf, KernelspecError> {
        Ok(match self {
            Root::User => kernelspec::user_data_dir().join("kernels"),
            Root::Prefix(p) => p.join("share/jupyter/kernels"),
            Root::System => PathBuf::from("/usr/local/share/jupyter/kernels"),
            Root::SysPrefix => kernelspec::env_prefixes()
                .into_iter()
                .next()
                .ok_or_else(|| KernelspecError::Invalid {
                    path: PathBuf::from("sys.prefix"),
                    reason: "no Python environment found (no VIRTUAL_ENV, CONDA_PREFIX or python3 on PATH)"
                        .to_owned(),
                })?
                .join("share/jupyter/kernels"),
        })
    }
}

/// What to install.
#[derive(Clone, Debug)]
pub struct Install {
    /// Kernelspec name (directory name).
    pub name: String,
    /// Display name; defaults to `pxkernel (<home display name>)`.
    pub display_name: Option<String>,
    /// The home kernelspec name.
    pub home: String,
    /// Absolute path of the pxkernel binary.
    pub executable: PathBuf,
}

/// What install learned of the home kernel.
#[derive(Clone, Debug, Default)]
pub struct HomeFound {
    /// Where its kernelspec was found (none: left to run time).
    pub location: Option<Location>,
    /// Its display name.
    pub display_name: String,
    /// Its language.
    pub language: String,
    /// Its language_info, when it answered.
    pub language_info: Option<LanguageInfo>,
}

/// Find the home kernel as Jupyter would from here, and ask it for its
/// language_info. A home found nowhere is an error, except the default
/// `python3`, which Jupyter itself provides at run time from its own Python:
/// then a warning says how it will be found. Returns warnings to print.
pub async fn find_home(home: &str) -> Result<(HomeFound, Vec<String>), KernelspecError> {
    kernelspec::check_name(home)?;
    let spec = match kernelspec::find(home) {
        Ok(spec) => spec,
        Err(e @ KernelspecError::NotFound { .. }) if home == NATIVE_KERNEL_NAME => {
            let warning = format!(
                "the home kernel {home:?} is not found from here: {e}\n\
                 That is fine when pxkernel is installed for a Jupyter of another environment: \
                 at run time pxkernel looks where the Jupyter that starts it looks (its \
                 environment's kernelspecs, then its Python's ipykernel)."
            );
            let found = HomeFound {
                location: None,
                display_name: "Python 3".to_owned(),
                language: "python".to_owned(),
                language_info: None,
            };
            return Ok((found, vec![warning]));
        }
        Err(e) => return Err(e),
    };
    let mut found = HomeFound {
        location: Some(spec.location()),
        display_name: spec.json.display_name.clone(),
        language: spec.json.language.clone(),
        language_info: None,
    };
    let mut warnings = Vec::new();
    match probe_language_info(&spec).await {
        Ok(li) => {
            if found.language.is_empty() {
                found.language = li.name.clone();
            }
            found.language_info = Some(li);
        }
        Err(e) => warnings.push(format!(
            "could not ask the home kernel {home:?} for its language ({e}); \
             kernel_info will wait for it at run time"
        )),
    }
    Ok((found, warnings))
}

/// Ask a kernel for its language_info: start it once, read kernel_info, stop it.
async fn probe_language_info(spec: &KernelSpec) -> Result<LanguageInfo, KernelspecError> {
    let opts = LaunchOptions {
        log_prefix: format!("probe {}", spec.name),
        wait: Duration::from_secs(60),
        heartbeat: None,
        ..LaunchOptions::default()
    };
    let started = kernelspec::start(spec, &opts).await?;
    started.sender.send(
        Channel::Control,
        "shutdown_request",
        &json!({"restart": false}),
        None,
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), started.process.exited()).await;
    started.process.terminate(Duration::from_secs(1)).await;
    Ok(started.info.language_info)
}

/// The kernel.json for `install`, with what was learned of the home.
pub fn kernel_json(install: &Install, home: &HomeFound) -> Result<KernelJson, KernelspecError> {
    kernelspec::check_name(&install.name)?;
    kernelspec::check_name(&install.home)?;
    let li = home
        .language_info
        .as_ref()
        .map(|li| serde_json::to_string(li).unwrap_or_default())
        .unwrap_or_default();
    let display = install
        .display_name
        .clone()
        .unwrap_or_else(|| format!("pxkernel ({})", home.display_name));
    let exe = install.executable.to_string_lossy();
    // Fill the template as JSON values, so any character in a path or name is escaped right.
    let mut v: serde_json::Value =
        serde_json::from_str(TEMPLATE).map_err(|e| KernelspecError::Invalid {
            path: PathBuf::from("kernelspec/kernel.json"),
            reason: e.to_string(),
        })?;
    fill(
        &mut v,
        &[
            ("{pxkernel}", &exe),
            ("{display_name}", &display),
            ("{language}", &home.language),
            ("{home}", &install.home),
            ("{language_info}", &li),
        ],
    );
    if li.is_empty()
        && let Some(env) = v.get_mut("env").and_then(|e| e.as_object_mut())
    {
        env.remove(LANGUAGE_INFO_ENV);
    }
    let mut json: KernelJson = serde_json::from_value(v).map_err(|e| KernelspecError::Invalid {
        path: PathBuf::from("kernelspec/kernel.json"),
        reason: e.to_string(),
    })?;
    match &home.location {
        Some(Location::Dir(d)) => {
            json.env
                .insert(HOME_SPEC_ENV.to_owned(), d.to_string_lossy().into_owned());
        }
        Some(Location::Native(p)) => {
            json.env
                .insert(HOME_PYTHON_ENV.to_owned(), p.to_string_lossy().into_owned());
        }
        None => {}
    }
    Ok(json)
}

fn fill(v: &mut serde_json::Value, subs: &[(&str, &str)]) {
    match v {
        serde_json::Value::String(s) => {
            for (k, r) in subs {
                if s.contains(k) && *k != "{connection_file}" {
                    *s = s.replace(k, r);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| fill(x, subs)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| fill(x, subs)),
        _ => {}
    }
}

/// Write the kernelspec under `root`; returns its directory.
pub fn write(root: &Root, name: &str, json: &KernelJson) -> Result<PathBuf, KernelspecError> {
    kernelspec::check_name(name)?;
    let dir = root.kernels_dir()?.join(name);
    kernelspec::install(&dir, json, &LOGOS)?;
    Ok(dir)
}

/// Remove the kernelspec `name` under `root`; returns the removed directory.
pub fn remove(root: &Root, name: &str) -> Result<PathBuf, KernelspecError> {
    kernelspec::check_name(name)?;
    let dir = root.kernels_dir()?.join(name);
    if !Path::new(&dir).join("kernel.json").is_file() {
        return Err(KernelspecError::NotFound {
            name: name.to_owned(),
            searched: vec![root.kernels_dir()?],
            pythons: Vec::new(),
            fix: "give the location it was installed in (--user, --sys-prefix or --prefix DIR); \
                  `jupyter kernelspec list` shows it"
                .to_owned(),
        });
    }
    std::fs::remove_dir_all(&dir).map_err(|source| KernelspecError::Io {
        action: "remove",
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install() -> Install {
        Install {
            name: "pxkernel".into(),
            display_name: None,
            home: "python3".into(),
            executable: PathBuf::from("/opt/px \"kernel\"/pxkernel"),
        }
    }

    fn found(display: &str, li: Option<LanguageInfo>, location: Option<Location>) -> HomeFound {
        HomeFound {
            location,
            display_name: display.to_owned(),
            language: "python".to_owned(),
            language_info: li,
        }
    }

    #[test]
    fn kernel_json_from_template() {
        let li = LanguageInfo {
            name: "python".into(),
            version: "3.11.7".into(),
            ..LanguageInfo::default()
        };
        let spec_dir = PathBuf::from("/opt/venv/share/jupyter/kernels/python3");
        let home = found(
            "Python 3 (ipykernel)",
            Some(li.clone()),
            Some(Location::Dir(spec_dir.clone())),
        );
        let j = kernel_json(&install(), &home).unwrap();
        assert_eq!(
            j.argv,
            [
                "/opt/px \"kernel\"/pxkernel",
                "kernel",
                "-f",
                "{connection_file}"
            ]
        );
        assert_eq!(j.display_name, "pxkernel (Python 3 (ipykernel))");
        assert_eq!(j.language, "python");
        assert_eq!(j.interrupt_mode, kernelspec::InterruptMode::Message);
        assert_eq!(j.env[HOME_ENV], "python3");
        assert_eq!(j.env[HOME_SPEC_ENV], spec_dir.to_str().unwrap());
        assert!(!j.env.contains_key(HOME_PYTHON_ENV));
        let back: LanguageInfo = serde_json::from_str(&j.env[LANGUAGE_INFO_ENV]).unwrap();
        assert_eq!(back, li);
        assert_eq!(j.extra["kernel_protocol_version"], "5.5");
        // jupyter_client provisions CurveZMQ keys only for kernels that say they serve it.
        assert_eq!(j.metadata["supported_encryption"], json!(["curve"]));
    }

    #[test]
    fn a_built_in_python_kernel_is_recorded_by_its_interpreter() {
        let python = PathBuf::from("/opt/lab/bin/python3");
        let home = found("Python 3", None, Some(Location::Native(python.clone())));
        let j = kernel_json(&install(), &home).unwrap();
        assert_eq!(j.env[HOME_PYTHON_ENV], python.to_str().unwrap());
        assert!(!j.env.contains_key(HOME_SPEC_ENV));
    }

    #[test]
    fn without_language_info_or_location_the_variables_are_left_out() {
        let j = kernel_json(&install(), &found("Python 3", None, None)).unwrap();
        assert!(!j.env.contains_key(LANGUAGE_INFO_ENV));
        assert!(!j.env.contains_key(HOME_SPEC_ENV));
        assert!(!j.env.contains_key(HOME_PYTHON_ENV));
        assert_eq!(j.language, "python");
        assert_eq!(j.display_name, "pxkernel (Python 3)");
    }

    #[test]
    fn names_that_would_leave_the_kernels_directory_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::Prefix(tmp.path().to_owned());
        let j = kernel_json(&install(), &found("P", None, None)).unwrap();
        for name in ["..", "../escape", "/abs", "a/b", ""] {
            assert!(
                matches!(write(&root, name, &j), Err(KernelspecError::BadName { .. })),
                "write {name:?}"
            );
            assert!(
                matches!(remove(&root, name), Err(KernelspecError::BadName { .. })),
                "remove {name:?}"
            );
            let bad_home = Install {
                home: name.to_owned(),
                ..install()
            };
            assert!(kernel_json(&bad_home, &found("P", None, None)).is_err());
        }
        assert!(!tmp.path().join("share/jupyter/escape").exists());
    }

    #[test]
    fn write_and_remove_under_a_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::Prefix(tmp.path().to_owned());
        let j = kernel_json(&install(), &found("P", None, None)).unwrap();
        let dir = write(&root, "pxk", &j).unwrap();
        assert!(dir.join("logo-64x64.png").is_file());
        assert!(dir.join("kernel.json").is_file());
        remove(&root, "pxk").unwrap();
        assert!(!dir.exists());
        assert!(matches!(
            remove(&root, "pxk"),
            Err(KernelspecError::NotFound { .. })
        ));
    }
}
