//! The shell scripts pxkernel runs on an SSH host to probe it and to start
//! engines there, and the reading of what they print. Pure: text in, text out.
//!
//! Scripts travel on the ssh channel's stdin (`sh -s`), never on a command line,
//! because they carry the engines' connection files and their keys.
//!
//! On the host, a batch of engines lives in a 0700 directory `pxk-XXXXXXXX`:
//! `eN.json` (connection file), `eN.pid` (its process group), `eN.log`, the
//! engine's Unix sockets `eN-1` … `eN-5` (ipykernel's `ipc` transport), `lease`
//! (the time pxkernel last said it is there), `keeper` (run by pxkernel over ssh:
//! renews the lease on each line it reads, reports engines that ended) and
//! `watchdog` (detached: ends every engine's process group once the lease is
//! older than the grace period, then removes the directory).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;

/// What the probe found on a host.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Probe {
    /// The interpreter's `sys.executable`.
    pub python: String,
    /// Its version.
    pub version: String,
    /// ipykernel's version, if it imports.
    pub ipykernel: Option<String>,
    /// The kernelspec asked for, resolved by the host's jupyter_client.
    #[serde(default)]
    pub spec: Option<RemoteSpec>,
    /// The kernelspecs the host has, when the one asked for is not among them.
    #[serde(default)]
    pub specs: Option<Vec<String>>,
}

/// A kernelspec as the host's jupyter_client resolves it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct RemoteSpec {
    /// Its command line, with `{connection_file}`.
    pub argv: Vec<String>,
    /// Its extra environment.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Whether it declares CurveZMQ (`metadata.supported_encryption`).
    #[serde(default)]
    pub curve: bool,
}

pub use pxkernel_ssh::askpass::shell_quote as quote;

/// The probe: run `setup`, find `python`, ask it for its version, ipykernel, and
/// the kernelspec `kernel` (when given). Prints one `pxk-probe JSON` line, or
/// `pxk-nopython` when there is no such interpreter.
pub fn probe_script(python: &str, setup: Option<&str>, kernel: Option<&str>) -> String {
    let mut s = String::from("set -u\n");
    if let Some(setup) = setup {
        let _ = writeln!(s, "{setup}");
    }
    let _ = writeln!(s, "PY={}", quote(python));
    s.push_str("if ! command -v \"$PY\" >/dev/null 2>&1; then echo pxk-nopython; exit 0; fi\n");
    let _ = writeln!(s, "\"$PY\" - {} <<'PXK_PROBE'", quote(kernel.unwrap_or("")));
    s.push_str(PROBE_PY);
    s.push_str("PXK_PROBE\n");
    s
}

const PROBE_PY: &str = r#"import json, sys
out = {"python": sys.executable, "version": sys.version.split()[0], "ipykernel": None}
try:
    import ipykernel
    out["ipykernel"] = ipykernel.__version__
except Exception:
    pass
name = sys.argv[1] if len(sys.argv) > 1 else ""
if name:
    try:
        from jupyter_client.kernelspec import KernelSpecManager
        m = KernelSpecManager()
        try:
            s = m.get_kernel_spec(name)
            enc = (s.metadata or {}).get("supported_encryption")
            out["spec"] = {"argv": s.argv, "env": s.env,
                           "curve": isinstance(enc, list) and "curve" in enc}
        except Exception:
            out["specs"] = sorted(m.find_kernel_specs())
    except Exception:
        out["specs"] = []
print("pxk-probe " + json.dumps(out))
"#;

/// One line a probe printed, read.
pub fn read_probe(output: &str) -> Option<Probe> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("pxk-probe "))
        .and_then(|j| serde_json::from_str(j).ok())
}

/// An engine to start: its id, its connection file, its command line (with
/// `{connection_file}`) and environment.
pub struct EngineStart<'a> {
    /// Engine id.
    pub id: u32,
    /// The connection file's JSON (with the key).
    pub connection: &'a str,
    /// The kernel's argv.
    pub argv: &'a [String],
    /// Extra environment.
    pub env: &'a [(String, String)],
    /// Whether it listens on loopback TCP (ports picked on the host, `$1` … `$5`
    /// in `connection`) instead of Unix sockets in the batch directory.
    pub tcp: bool,
}

/// The placeholders of a TCP engine's ports in its connection file, filled in on
/// the host.
pub const TCP_PORTS: [&str; 5] = ["$1", "$2", "$3", "$4", "$5"];

/// Whether a kernel's command line is ipykernel's, which binds `ipc` sockets;
/// other kernels get loopback TCP.
pub fn speaks_ipc(argv: &[String]) -> bool {
    argv.iter().any(|a| a.contains("ipykernel"))
}

/// Prints five free ports on the host's loopback.
const FREE_PORTS_PY: &str = "import socket\n\
    ss = [socket.socket() for _ in range(5)]\n\
    [s.bind((\"127.0.0.1\", 0)) for s in ss]\n\
    print(*[s.getsockname()[1] for s in ss])";

/// Exits 0 once every port given accepts a connection on the host's loopback.
const ACCEPTS_PY: &str = "import socket, sys\n\
    [socket.create_connection((\"127.0.0.1\", int(p)), 1).close() for p in sys.argv[1:]]";

/// The launch: make the batch directory, write the keeper and watchdog, write
/// each connection file and start each engine in its own process group, wait
/// until every engine has bound its sockets (or died, or `wait` passed), then
/// start the watchdog. Prints `pxk-dir D`, `pxk-pid ID PID`, then
/// `pxk-ready ID` or `pxk-failed ID WHY` (with `pxk-log ID LINE` lines).
pub fn launch_script(
    setup: Option<&str>,
    python: &str,
    engines: &[EngineStart<'_>],
    grace: Duration,
    wait: Duration,
) -> String {
    let mut s = String::from("set -u\n");
    if let Some(setup) = setup {
        let _ = writeln!(s, "{setup}");
    }
    let _ = writeln!(s, "PY={}", quote(python));
    s.push_str(
        "umask 077\n\
         D=$(mktemp -d \"${TMPDIR:-/tmp}/pxk-XXXXXXXX\") || { echo 'pxk-error cannot make a directory'; exit 0; }\n\
         echo \"pxk-dir $D\"\n\
         date +%s > \"$D/lease\"\n\
         SETSID=$(command -v setsid || true)\n",
    );
    if engines.iter().any(|e| e.tcp) {
        let _ = writeln!(s, "FREE_PORTS={}", quote(FREE_PORTS_PY));
        let _ = writeln!(s, "ACCEPTS={}", quote(ACCEPTS_PY));
    }
    s.push_str("cat > \"$D/keeper\" <<'PXK_KEEPER'\n");
    s.push_str(KEEPER);
    s.push_str("PXK_KEEPER\n");
    s.push_str("cat > \"$D/watchdog\" <<'PXK_WATCHDOG'\n");
    s.push_str(WATCHDOG);
    s.push_str("PXK_WATCHDOG\n");
    for e in engines {
        let id = e.id;
        if e.tcp {
            // The ports are picked here, then go into the file ($1 … $5 expand: the
            // heredoc is unquoted; every other $, ` and \\ in the JSON is escaped).
            let _ = writeln!(
                s,
                "set -- $(\"$PY\" -c \"$FREE_PORTS\")\n\
                 echo \"pxk-ports {id} $1 $2 $3 $4 $5\"\n\
                 P{id}=\"$1 $2 $3 $4 $5\"\n\
                 ready_{id}() {{ \"$PY\" -c \"$ACCEPTS\" $P{id} 2>/dev/null; }}\n\
                 cat > \"$D/e{id}.json\" <<PXK_JSON"
            );
        } else {
            let _ = writeln!(
                s,
                "ready_{id}() {{ for n in 1 2 3 4 5; do [ -S \"$D/e{id}-$n\" ] || return 1; done; }}\n\
                 cat > \"$D/e{id}.json\" <<'PXK_JSON'"
            );
        }
        s.push_str(e.connection);
        s.push_str("\nPXK_JSON\n");
        let argv: Vec<String> = e
            .argv
            .iter()
            .map(|a| {
                if let Some((before, after)) = a.split_once("{connection_file}") {
                    // The path is only known on the host.
                    let part = |p: &str| {
                        if p.is_empty() {
                            String::new()
                        } else {
                            quote(p)
                        }
                    };
                    format!("{}\"$D/e{id}.json\"{}", part(before), part(after))
                } else if a == "$PY" {
                    "\"$PY\"".to_owned()
                } else {
                    quote(a)
                }
            })
            .collect();
        let env: String = e
            .env
            .iter()
            .map(|(k, v)| format!("{}={} ", k, quote(v)))
            .collect();
        let _ = writeln!(
            s,
            "(cd \"$D\" && PXKERNEL_ENGINE_ID={id} {env}exec $SETSID {} >\"$D/e{id}.log\" 2>&1 </dev/null) &\n\
             echo $! > \"$D/e{id}.pid\"; echo \"pxk-pid {id} $!\"",
            argv.join(" ")
        );
    }
    let ids: Vec<String> = engines.iter().map(|e| e.id.to_string()).collect();
    let _ = writeln!(
        s,
        "end=$(( $(date +%s) + {} ))\nfor id in {}; do\n{}done",
        wait.as_secs().max(1),
        ids.join(" "),
        WAIT_READY
    );
    let _ = writeln!(
        s,
        "GRACE={} $SETSID sh \"$D/watchdog\" \"$D\" </dev/null >/dev/null 2>&1 &",
        grace.as_secs().max(1)
    );
    s
}

/// Waits for engine `$id`: its five sockets bound (`ready_$id`), its death, or
/// the deadline.
const WAIT_READY: &str = r#"  p=$(cat "$D/e$id.pid")
  while :; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "pxk-failed $id its process ended"
      tail -n 8 "$D/e$id.log" 2>/dev/null | sed "s/^/pxk-log $id /"
      break
    fi
    if ready_$id; then
      echo "pxk-ready $id"; break
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
      echo "pxk-failed $id it bound no sockets in time"
      tail -n 8 "$D/e$id.log" 2>/dev/null | sed "s/^/pxk-log $id /"
      break
    fi
    sleep 0.05
  done
"#;

/// Run by pxkernel over ssh as `sh D/keeper D` (see [`keeper_command`]): each
/// line read renews the lease and is answered (`pxk-ok`: the host is reachable
/// now); an engine whose process ended is reported (`pxk-dead ID`), once per
/// keeper. Its pid file stays: a report lost with a dropped connection is made
/// again by the next keeper. The lease is replaced whole (`mv`), so the
/// watchdog never reads it half written.
const KEEPER: &str = r#"D=$1
told=
while read -r _; do
  date +%s > "$D/lease.new" && mv -f "$D/lease.new" "$D/lease"
  echo pxk-ok
  for f in "$D"/e*.pid; do
    [ -f "$f" ] || continue
    id=${f##*/e}; id=${id%.pid}
    case " $told " in *" $id "*) continue ;; esac
    if ! kill -0 "$(cat "$f" 2>/dev/null)" 2>/dev/null; then
      echo "pxk-dead $id"
      told="$told $id"
    fi
  done
done
"#;

/// The command that runs the keeper of the batch in `dir`; it prints `pxk-gone`
/// when the batch directory is gone (every engine of it ended, and the
/// watchdog removed it).
pub fn keeper_command(dir: &str) -> String {
    let d = quote(dir);
    format!("if [ -f {d}/keeper ]; then exec sh {d}/keeper {d}; else echo pxk-gone; fi")
}

/// Detached on the host: once the lease is older than `$GRACE` seconds (pxkernel
/// gone, or its host unreachable that long), end every engine's process group;
/// when no engine is left, remove the directory. A lease it cannot read counts
/// as the last one it could: only time passing ends engines.
const WATCHDOG: &str = r#"D=$1
renewed=$(date +%s)
while :; do
  sleep 1
  any=0
  for f in "$D"/e*.pid; do
    [ -f "$f" ] && kill -0 "$(cat "$f" 2>/dev/null)" 2>/dev/null && any=1
  done
  [ "$any" = 1 ] || break
  lease=$(cat "$D/lease" 2>/dev/null)
  case $lease in ''|*[!0-9]*) ;; *) renewed=$lease ;; esac
  if [ $(( $(date +%s) - renewed )) -gt "$GRACE" ]; then
    for f in "$D"/e*.pid; do [ -f "$f" ] && kill -s TERM -- "-$(cat "$f")" 2>/dev/null; done
    sleep 2
    for f in "$D"/e*.pid; do [ -f "$f" ] && kill -s KILL -- "-$(cat "$f")" 2>/dev/null; done
    break
  fi
done
rm -rf "$D"
"#;

/// Stop engine `id` of the batch in `dir`: ask its group to end, then kill it,
/// and remove its files.
pub fn stop_script(dir: &str, id: u32) -> String {
    format!(
        "D={}\nf=\"$D/e{id}.pid\"\nif [ -f \"$f\" ]; then\n  p=$(cat \"$f\")\n  \
         for _ in 1 2 3 4 5; do kill -0 \"$p\" 2>/dev/null || break; sleep 0.1; done\n  \
         kill -s TERM -- \"-$p\" 2>/dev/null\n  \
         for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 \"$p\" 2>/dev/null || break; sleep 0.1; done\n  \
         kill -s KILL -- \"-$p\" 2>/dev/null\nfi\nrm -f \"$D/e{id}.json\" \"$D/e{id}.pid\" \"$D/e{id}.log\" \"$D\"/e{id}-*\n",
        quote(dir)
    )
}

/// What a launch printed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Launch {
    /// The batch directory.
    pub dir: Option<String>,
    /// Engines that bound their sockets, with their pids.
    pub ready: Vec<(u32, u32)>,
    /// The loopback ports TCP engines listen on (shell, iopub, stdin, control, hb).
    pub ports: std::collections::HashMap<u32, [u16; 5]>,
    /// Engines that did not, with why (and their log's last lines).
    pub failed: Vec<(u32, String)>,
    /// A failure of the whole launch.
    pub error: Option<String>,
}

/// Read a launch's output.
pub fn read_launch(output: &str) -> Launch {
    let mut l = Launch::default();
    let mut pids = std::collections::HashMap::new();
    let mut logs: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    let mut failed = Vec::new();
    for line in output.lines() {
        let mut words = line.splitn(3, ' ');
        let (tag, a, rest) = (words.next(), words.next(), words.next());
        let id = a.and_then(|a| a.parse::<u32>().ok());
        match (tag, id) {
            (Some("pxk-dir"), _) => l.dir = Some(line["pxk-dir ".len()..].to_owned()),
            (Some("pxk-error"), _) => l.error = Some(line["pxk-error ".len()..].to_owned()),
            (Some("pxk-pid"), Some(id)) => {
                if let Some(pid) = rest.and_then(|p| p.trim().parse().ok()) {
                    pids.insert(id, pid);
                }
            }
            (Some("pxk-ports"), Some(id)) => {
                let ports: Vec<u16> = rest
                    .unwrap_or("")
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                if let Ok(ports) = <[u16; 5]>::try_from(ports) {
                    l.ports.insert(id, ports);
                }
            }
            (Some("pxk-ready"), Some(id)) => {
                if let Some(pid) = pids.get(&id) {
                    l.ready.push((id, *pid));
                }
            }
            (Some("pxk-failed"), Some(id)) => failed.push((id, rest.unwrap_or("").to_owned())),
            (Some("pxk-log"), Some(id)) => logs
                .entry(id)
                .or_default()
                .push(rest.unwrap_or("").to_owned()),
            _ => {}
        }
    }
    for (id, why) in failed {
        let log = logs.remove(&id).unwrap_or_default();
        let why = if log.is_empty() {
            why
        } else {
            format!("{why}; its log ends:\n    {}", log.join("\n    "))
        };
        l.failed.push((id, why));
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        let cases = [
            ("python3", "python3"),
            ("/opt/venv/bin/python", "/opt/venv/bin/python"),
            ("a b", "'a b'"),
            ("it's", r"'it'\''s'"),
            ("", "''"),
            ("$HOME", "'$HOME'"),
        ];
        for (raw, quoted) in cases {
            assert_eq!(quote(raw), quoted, "{raw}");
        }
    }

    #[test]
    fn probes_are_read() {
        let out = "noise\npxk-probe {\"python\": \"/usr/bin/python3\", \"version\": \"3.11.2\", \"ipykernel\": null}\n";
        let p = read_probe(out).unwrap();
        assert_eq!(p.python, "/usr/bin/python3");
        assert_eq!(p.ipykernel, None);
        let out = "pxk-probe {\"python\": \"p\", \"version\": \"3\", \"ipykernel\": \"7.4.0\", \"spec\": {\"argv\": [\"p\", \"-f\", \"{connection_file}\"], \"env\": {}}}";
        let spec = read_probe(out).unwrap().spec.unwrap();
        assert_eq!(spec.argv[2], "{connection_file}");
        assert!(!spec.curve, "no word of CurveZMQ is no CurveZMQ");
        let out = "pxk-probe {\"python\": \"p\", \"version\": \"3\", \"ipykernel\": null, \"spec\": {\"argv\": [\"k\"], \"env\": {}, \"curve\": true}}";
        assert!(read_probe(out).unwrap().spec.unwrap().curve);
        assert_eq!(read_probe("pxk-nopython"), None);
    }

    #[test]
    fn launches_are_read() {
        let out = "pxk-dir /tmp/pxk-AB\npxk-pid 0 100\npxk-pid 1 101\npxk-ready 0\n\
                   pxk-failed 1 its process ended\npxk-log 1 Traceback\npxk-log 1 ImportError: x\n";
        let l = read_launch(out);
        assert_eq!(l.dir.as_deref(), Some("/tmp/pxk-AB"));
        assert_eq!(l.ready, vec![(0, 100)]);
        assert_eq!(l.failed.len(), 1);
        assert!(l.failed[0].1.contains("ImportError: x"), "{:?}", l.failed);
    }

    #[test]
    fn the_launch_script_carries_files_on_stdin_and_quotes_commands() {
        let argv = vec![
            "$PY".to_owned(),
            "-m".to_owned(),
            "ipykernel_launcher".to_owned(),
            "-f".to_owned(),
            "{connection_file}".to_owned(),
        ];
        let env = vec![("A".to_owned(), "x y".to_owned())];
        let s = launch_script(
            Some("source /opt/env/bin/activate"),
            "python3",
            &[EngineStart {
                id: 4,
                connection: "{\"key\": \"k\"}",
                argv: &argv,
                env: &env,
                tcp: false,
            }],
            Duration::from_secs(30),
            Duration::from_secs(60),
        );
        assert!(s.contains("source /opt/env/bin/activate\n"));
        assert!(s.contains("cat > \"$D/e4.json\" <<'PXK_JSON'\n{\"key\": \"k\"}\nPXK_JSON\n"));
        assert!(
            s.contains("A='x y' exec $SETSID \"$PY\" -m ipykernel_launcher -f \"$D/e4.json\" >"),
            "{s}"
        );
        assert!(s.contains("GRACE=30 $SETSID sh \"$D/watchdog\""));
    }

    #[test]
    fn ipykernel_binds_unix_sockets_other_kernels_loopback_tcp() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases = [
            (
                "ipykernel_launcher",
                argv(&["$PY", "-m", "ipykernel_launcher", "-f", "{connection_file}"]),
                true,
            ),
            (
                "python -m ipykernel",
                argv(&["python", "-m", "ipykernel", "-f", "{connection_file}"]),
                true,
            ),
            (
                "IRkernel",
                argv(&[
                    "R",
                    "--slave",
                    "-e",
                    "IRkernel::main()",
                    "--args",
                    "{connection_file}",
                ]),
                false,
            ),
            (
                "a wrapper script",
                argv(&["/opt/bin/kernel.sh", "{connection_file}"]),
                false,
            ),
        ];
        for (name, argv, ipc) in cases {
            assert_eq!(speaks_ipc(&argv), ipc, "{name}");
        }
    }

    #[test]
    fn a_tcp_engine_gets_its_ports_on_the_host() {
        let argv = vec!["R".to_owned(), "{connection_file}".to_owned()];
        let s = launch_script(
            None,
            "python3",
            &[EngineStart {
                id: 2,
                connection: r#"{"shell_port":$1,"hb_port":$5}"#,
                argv: &argv,
                env: &[],
                tcp: true,
            }],
            Duration::from_secs(30),
            Duration::from_secs(60),
        );
        assert!(s.contains("FREE_PORTS="), "{s}");
        assert!(s.contains("echo \"pxk-ports 2 $1 $2 $3 $4 $5\""), "{s}");
        // Unquoted: the ports expand.
        assert!(
            s.contains(
                "cat > \"$D/e2.json\" <<PXK_JSON\n{\"shell_port\":$1,\"hb_port\":$5}\nPXK_JSON\n"
            ),
            "{s}"
        );
        let l = read_launch(
            "pxk-dir /tmp/pxk-X\npxk-pid 2 77\npxk-ports 2 4001 4002 4003 4004 4005\npxk-ready 2\n",
        );
        assert_eq!(l.ports.get(&2), Some(&[4001, 4002, 4003, 4004, 4005]));
        assert_eq!(l.ready, vec![(2, 77)]);
    }

    /// The keeper and watchdog run here, in `sh`, on a directory laid out as a
    /// launch lays it out, with `sleep` for engines.
    mod scripts {
        use super::super::{KEEPER, WATCHDOG, keeper_command};
        use std::io::{BufRead, BufReader, Write};
        use std::os::unix::process::CommandExt;
        use std::path::Path;
        use std::process::{Child, Command, Stdio};
        use std::time::{Duration, Instant};

        fn batch() -> tempfile::TempDir {
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join("keeper"), KEEPER).unwrap();
            std::fs::write(d.path().join("watchdog"), WATCHDOG).unwrap();
            d
        }

        /// An engine: a process in a group of its own, its pid in `eID.pid`.
        fn engine(dir: &Path, id: u32) -> Child {
            let child = Command::new("sleep")
                .arg("60")
                .process_group(0)
                .spawn()
                .unwrap();
            std::fs::write(dir.join(format!("e{id}.pid")), format!("{}\n", child.id())).unwrap();
            child
        }

        fn alive(child: &mut Child) -> bool {
            child.try_wait().unwrap().is_none()
        }

        fn until(what: &str, mut done: impl FnMut() -> bool) {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !done() {
                assert!(Instant::now() < deadline, "never: {what}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }

        fn now() -> u64 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        }

        #[test]
        fn the_watchdog_ends_engines_only_once_the_lease_is_older_than_the_grace_period() {
            let d = batch();
            let mut e = engine(d.path(), 0);
            // A lease caught half written (empty) or unreadable is no reason to end anything.
            std::fs::write(d.path().join("lease"), "").unwrap();
            let mut watchdog = Command::new("sh")
                .arg(d.path().join("watchdog"))
                .arg(d.path())
                .env("GRACE", "5")
                .spawn()
                .unwrap();
            let started = Instant::now();
            // Three rounds of the watchdog (one a second) with no lease it can read.
            while started.elapsed() < Duration::from_secs(3) {
                assert!(
                    alive(&mut e),
                    "the watchdog ended an engine over an empty lease"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            std::fs::write(d.path().join("lease"), "garbage").unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            assert!(
                alive(&mut e),
                "the watchdog ended an engine over an unreadable lease"
            );
            // A lease older than the grace period ends the engine, then the directory.
            std::fs::write(d.path().join("lease"), format!("{}\n", now() - 100)).unwrap();
            until("the engine ended", || !alive(&mut e));
            until("the watchdog done", || {
                watchdog.try_wait().unwrap().is_some()
            });
            assert!(!d.path().exists(), "the watchdog removed the directory");
        }

        #[test]
        fn the_keeper_renews_the_lease_and_reports_each_ended_engine_once() {
            let d = batch();
            let mut live = engine(d.path(), 0);
            let mut ended = engine(d.path(), 1);
            ended.kill().unwrap();
            ended.wait().unwrap();
            std::fs::write(d.path().join("lease"), "0\n").unwrap();
            let keeper = |lines: usize| {
                let mut k = Command::new("sh")
                    .args(["-c", &keeper_command(d.path().to_str().unwrap())])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut stdin = k.stdin.take().unwrap();
                let mut out = BufReader::new(k.stdout.take().unwrap());
                let mut said = Vec::new();
                for _ in 0..lines {
                    stdin.write_all(b"\n").unwrap();
                    stdin.flush().unwrap();
                    let mut line = String::new();
                    out.read_line(&mut line).unwrap();
                    said.push(line.trim().to_owned());
                    // Its reports follow the answer to the line they came with.
                    if line.trim() == "pxk-ok" && said.len() == 1 {
                        line.clear();
                        out.read_line(&mut line).unwrap();
                        said.push(line.trim().to_owned());
                    }
                }
                drop(stdin);
                k.wait().unwrap();
                said
            };
            assert_eq!(keeper(3), ["pxk-ok", "pxk-dead 1", "pxk-ok", "pxk-ok"]);
            let lease: u64 = std::fs::read_to_string(d.path().join("lease"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(lease + 5 >= now(), "the lease was renewed: {lease}");
            // A report lost with its connection is made again by the next keeper.
            assert!(d.path().join("e1.pid").exists());
            assert_eq!(keeper(1), ["pxk-ok", "pxk-dead 1"]);
            assert!(alive(&mut live));
            live.kill().unwrap();
            live.wait().unwrap();
        }

        #[test]
        fn the_keeper_of_a_removed_batch_says_it_is_gone() {
            let d = batch();
            let gone = d.path().join("removed");
            let out = Command::new("sh")
                .args(["-c", &keeper_command(gone.to_str().unwrap())])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "pxk-gone\n");
        }
    }
}
