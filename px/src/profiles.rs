//! Cluster profiles: TOML files in Jupyter's config directory that name engines
//! on several SSH hosts and the tunnels to open, the way an `ipcluster_config.py`
//! names `SSHEngineSetLauncher.engines`. `%engines start --profile NAME` reads
//! `$JUPYTER_CONFIG_DIR/pxkernel/profiles/NAME.toml` (`~/.jupyter/…` by default):
//!
//! ```toml
//! description = "two nodes and the database"
//!
//! [[hosts]]
//! host = "me@node1"            # [user@]host[:port], or an ssh_config alias
//! n = 4
//! python = "/opt/py/bin/python3"
//! setup = "module load python/3.12"
//! env = { OMP_NUM_THREADS = "1" }
//! args = ["--IPKernelApp.matplotlib=inline"]
//! grace = 60
//!
//! [[tunnels]]
//! name = "db"
//! args = "-L 5432:localhost:5432 db.example.org"
//! ```
//!
//! Parsing is pure; a bad profile is an error naming its file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pxkernel_ssh::Endpoint;
use serde::Deserialize;
use toml::Spanned;

use crate::ssh::{DEFAULT_GRACE, HostPlan};

/// One host's engines in a profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEngines {
    /// How to start them.
    pub plan: HostPlan,
    /// How many.
    pub n: u32,
}

/// A tunnel a profile opens: an `%ssh_tunnel` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelLine {
    /// `--name`, if given.
    pub name: Option<String>,
    /// OpenSSH's arguments, as `%ssh_tunnel` takes them.
    pub args: String,
}

/// A parsed profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// One line about it.
    pub description: Option<String>,
    /// Engines per host.
    pub hosts: Vec<HostEngines>,
    /// Tunnels to open first.
    pub tunnels: Vec<TunnelLine>,
}

/// Why a profile could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// No such file.
    #[error("no profile {name:?}: looked for {}{}", path.display(), available(known))]
    Missing {
        /// The name asked for.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
        /// The profiles there.
        known: Vec<String>,
    },
    /// A name that is not a file name.
    #[error("{0:?} is not a profile name: letters, digits, '.', '_' or '-'")]
    BadName(String),
    /// The file could not be read.
    #[error("cannot read {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file says something wrong.
    #[error("{}, line {line}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Its line (from 1).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

fn available(known: &[String]) -> String {
    if known.is_empty() {
        " (there are no profiles there)".to_owned()
    } else {
        format!(" (there: {})", known.join(", "))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    description: Option<String>,
    #[serde(default)]
    hosts: Vec<HostForm>,
    #[serde(default)]
    tunnels: Vec<TunnelForm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostForm {
    host: Spanned<String>,
    n: Spanned<i64>,
    python: Option<String>,
    setup: Option<String>,
    kernel: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    args: Vec<String>,
    grace: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TunnelForm {
    name: Option<String>,
    args: Spanned<String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parse a profile's text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Profile, ProfileError> {
    let invalid = |offset: usize, message: String| ProfileError::Invalid {
        path: path.to_owned(),
        line: line_of(text, offset),
        message,
    };
    let form: FileForm = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        invalid(offset, e.message().trim().to_owned())
    })?;
    if form.hosts.is_empty() && form.tunnels.is_empty() {
        return Err(invalid(
            0,
            "it names no [[hosts]] and no [[tunnels]]".to_owned(),
        ));
    }
    let mut hosts = Vec::new();
    for h in form.hosts {
        let endpoint =
            Endpoint::parse_host(h.host.get_ref()).map_err(|e| invalid(h.host.span().start, e))?;
        let n = u32::try_from(*h.n.get_ref())
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .ok_or_else(|| {
                invalid(
                    h.n.span().start,
                    "n is a number of engines from 1 to 1024".into(),
                )
            })?;
        let grace = match h.grace {
            Some(g) => u64::try_from(*g.get_ref())
                .ok()
                .filter(|s| (1..=86_400).contains(s))
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    invalid(
                        g.span().start,
                        "grace is a number of seconds from 1 to 86400".into(),
                    )
                })?,
            None => DEFAULT_GRACE,
        };
        hosts.push(HostEngines {
            plan: HostPlan {
                endpoint,
                python: h.python.unwrap_or_else(|| "python3".to_owned()),
                setup: h.setup,
                kernel: h.kernel,
                grace,
                env: h.env.into_iter().collect(),
                args: h.args,
            },
            n,
        });
    }
    let mut tunnels = Vec::new();
    for t in form.tunnels {
        if let Err(e) = pxkernel_ssh::args::parse(t.args.get_ref()) {
            return Err(invalid(t.args.span().start, e.to_string()));
        }
        if let Some(name) = &t.name
            && let Err(e) = pxkernel_ssh::args::check_name(name)
        {
            return Err(invalid(t.args.span().start, e.to_string()));
        }
        tunnels.push(TunnelLine {
            name: t.name,
            args: t.args.into_inner(),
        });
    }
    Ok(Profile {
        description: form.description,
        hosts,
        tunnels,
    })
}

/// Where profiles live: `$JUPYTER_CONFIG_DIR/pxkernel/profiles`, else
/// `~/.jupyter/pxkernel/profiles`.
pub fn dir() -> PathBuf {
    let config = std::env::var_os("JUPYTER_CONFIG_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".jupyter")
        });
    config.join("pxkernel").join("profiles")
}

/// The profiles in `dir`, by name.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".toml").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// Read the profile `name` from `dir`.
pub fn load(dir: &Path, name: &str) -> Result<Profile, ProfileError> {
    let ok_name = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok_name {
        return Err(ProfileError::BadName(name.to_owned()));
    }
    let path = dir.join(format!("{name}.toml"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ProfileError::Missing {
                name: name.to_owned(),
                path,
                known: names(dir),
            });
        }
        Err(e) => {
            return Err(ProfileError::Read {
                path,
                reason: e.to_string(),
            });
        }
    };
    parse(&text, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
description = "two nodes and the database"

[[hosts]]
host = "me@node1:2222"
n = 4
python = "/opt/py/bin/python3"
setup = "module load python/3.12"
env = { OMP_NUM_THREADS = "1" }
args = ["--IPKernelApp.matplotlib=inline"]
grace = 60

[[hosts]]
host = "node2"
n = 2

[[tunnels]]
name = "db"
args = "-L 5432:localhost:5432 db.example.org"
"#;

    #[test]
    fn a_profile_reads() {
        let p = parse(GOOD, Path::new("p.toml")).unwrap();
        assert_eq!(p.description.as_deref(), Some("two nodes and the database"));
        assert_eq!(p.hosts.len(), 2);
        let a = &p.hosts[0];
        assert_eq!((a.n, a.plan.endpoint.destination.as_str()), (4, "me@node1"));
        assert_eq!(a.plan.endpoint.options, ["-p", "2222"]);
        assert_eq!(a.plan.python, "/opt/py/bin/python3");
        assert_eq!(a.plan.grace, Duration::from_secs(60));
        assert_eq!(a.plan.env, [("OMP_NUM_THREADS".to_owned(), "1".to_owned())]);
        assert_eq!(a.plan.args, ["--IPKernelApp.matplotlib=inline"]);
        let b = &p.hosts[1];
        assert_eq!(
            (b.n, b.plan.python.as_str(), b.plan.grace),
            (2, "python3", DEFAULT_GRACE)
        );
        assert_eq!(p.tunnels[0].name.as_deref(), Some("db"));
    }

    #[test]
    fn bad_profiles_name_the_line() {
        let cases: &[(&str, &str, usize, &str)] = &[
            ("not toml", "[[hosts]\nhost = 1", 1, ""),
            (
                "unknown key",
                "[[hosts]]\nhost = \"a\"\nn = 1\ncount = 2\n",
                4,
                "count",
            ),
            (
                "n zero",
                "[[hosts]]\nhost = \"a\"\nn = 0\n",
                3,
                "from 1 to 1024",
            ),
            ("n missing", "[[hosts]]\nhost = \"a\"\n", 1, "n"),
            (
                "bad host",
                "[[hosts]]\nhost = \"-oProxyCommand=x\"\nn = 1\n",
                2,
                "not a host",
            ),
            (
                "bad grace",
                "[[hosts]]\nhost = \"a\"\nn = 1\ngrace = -1\n",
                4,
                "grace",
            ),
            (
                "bad tunnel",
                "[[tunnels]]\nargs = \"-R 1:h:1 host\"\n",
                2,
                "-R is not supported",
            ),
            ("empty", "description = \"x\"\n", 1, "no [[hosts]]"),
        ];
        for (name, text, line, want) in cases {
            match parse(text, Path::new("/c/p.toml")) {
                Err(ProfileError::Invalid {
                    line: l, message, ..
                }) => {
                    assert_eq!(l, *line, "{name}: {message}");
                    assert!(message.contains(want), "{name}: {message}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let e = parse("[[hosts]]\nhost = \"a\"\nn = 0\n", Path::new("/c/p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/c/p.toml, line 3: "), "{e}");
    }

    #[test]
    fn profiles_are_found_by_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("two.toml"), GOOD).unwrap();
        assert_eq!(names(d.path()), ["two"]);
        assert!(load(d.path(), "two").is_ok());
        let missing = load(d.path(), "three").unwrap_err().to_string();
        assert!(
            missing.contains("three.toml") && missing.contains("there: two"),
            "{missing}"
        );
        assert!(matches!(
            load(d.path(), "../x"),
            Err(ProfileError::BadName(_))
        ));
    }
}
