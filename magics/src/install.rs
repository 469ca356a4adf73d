//! The kernelspec pxkernel installs: kernel.json from the template in
//! `kernelspec/`, the logos, and the home kernel's language_info recorded by
//! asking the home kernel once, so that kernel_info is right from the first reply.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pxkernel_kernel::kernelspec::{self, KernelJson, KernelspecError, LaunchOptions};
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

/// Ask the home kernel for its language_info: start it once, read kernel_info, stop it.
pub async fn probe_language_info(
    home: &str,
) -> Result<(LanguageInfo, String, String), KernelspecError> {
    let spec = kernelspec::find(home)?;
    let opts = LaunchOptions {
        log_prefix: format!("probe {home}"),
        wait: Duration::from_secs(60),
        heartbeat: None,
        ..LaunchOptions::default()
    };
    let started = kernelspec::start(&spec, &opts).await?;
    started.sender.send(
        Channel::Control,
        "shutdown_request",
        &json!({"restart": false}),
        None,
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), started.process.exited()).await;
    started.process.terminate(Duration::from_secs(1)).await;
    Ok((
        started.info.language_info,
        spec.json.display_name,
        spec.json.language,
    ))
}

/// The kernel.json for `install`, with the home's language_info when known.
pub fn kernel_json(
    install: &Install,
    home_display: &str,
    language: &str,
    language_info: Option<&LanguageInfo>,
) -> Result<KernelJson, KernelspecError> {
    let li = language_info
        .map(|li| serde_json::to_string(li).unwrap_or_default())
        .unwrap_or_default();
    let display = install
        .display_name
        .clone()
        .unwrap_or_else(|| format!("pxkernel ({home_display})"));
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
            ("{language}", language),
            ("{home}", &install.home),
            ("{language_info}", &li),
        ],
    );
    if li.is_empty()
        && let Some(env) = v.get_mut("env").and_then(|e| e.as_object_mut())
    {
        env.remove(LANGUAGE_INFO_ENV);
    }
    serde_json::from_value(v).map_err(|e| KernelspecError::Invalid {
        path: PathBuf::from("kernelspec/kernel.json"),
        reason: e.to_string(),
    })
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
    let dir = root.kernels_dir()?.join(name);
    kernelspec::install(&dir, json, &LOGOS)?;
    Ok(dir)
}

/// Remove the kernelspec `name` under `root`; returns the removed directory.
pub fn remove(root: &Root, name: &str) -> Result<PathBuf, KernelspecError> {
    let dir = root.kernels_dir()?.join(name);
    if !Path::new(&dir).join("kernel.json").is_file() {
        return Err(KernelspecError::NotFound {
            name: name.to_owned(),
            searched: vec![root.kernels_dir()?],
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

    #[test]
    fn kernel_json_from_template() {
        let li = LanguageInfo {
            name: "python".into(),
            version: "3.11.7".into(),
            ..LanguageInfo::default()
        };
        let j = kernel_json(&install(), "Python 3 (ipykernel)", "python", Some(&li)).unwrap();
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
        let back: LanguageInfo = serde_json::from_str(&j.env[LANGUAGE_INFO_ENV]).unwrap();
        assert_eq!(back, li);
        assert_eq!(j.extra["kernel_protocol_version"], "5.5");
    }

    #[test]
    fn without_language_info_the_variable_is_left_out() {
        let j = kernel_json(&install(), "P", "python", None).unwrap();
        assert!(!j.env.contains_key(LANGUAGE_INFO_ENV));
    }

    #[test]
    fn write_and_remove_under_a_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::Prefix(tmp.path().to_owned());
        let j = kernel_json(&install(), "P", "python", None).unwrap();
        let dir = write(&root, "pxk", &j).unwrap();
        assert!(dir.join("logo-64x64.png").is_file());
        assert!(dir.join("kernel.json").is_file());
        remove(&root, "pxk").unwrap();
        assert!(!dir.exists());
        assert!(remove(&root, "pxk").is_err());
    }
}
