//! Port forward specifications as OpenSSH writes them (`-L` and `-D`): parsed
//! from the user's text, checked (a non-loopback bind needs `-g`), and written
//! back in OpenSSH's own syntax for `ssh -O forward`. Pure functions.

use std::fmt;
use std::path::PathBuf;

/// Where a forward listens on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A TCP port, on `bind` (OpenSSH's default, loopback, when `None`). Port 0
    /// means "pick a free one" until [`Forward::with_port`] fixes it.
    Tcp {
        /// The bind address as written (`127.0.0.1`, `localhost`, `::1`, `*`).
        bind: Option<String>,
        /// The local port.
        port: u16,
    },
    /// A Unix socket path.
    Unix(PathBuf),
}

/// Where a forward's connections go, as seen from the remote host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A TCP host and port.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix socket path on the remote.
    Unix(String),
    /// A SOCKS proxy (`-D`): the target is chosen per connection.
    Socks,
}

/// One forward held on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The local end.
    pub listen: Listen,
    /// The remote end.
    pub target: Target,
}

/// Why a forward spec did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// Not one of OpenSSH's forms.
    #[error("bad forward {spec:?}: {reason}")]
    Syntax {
        /// As written.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// A bind address other than loopback without `-g`.
    #[error(
        "forward {spec:?} would listen on {bind}, which other machines can reach: \
         add -g to allow it, or bind 127.0.0.1"
    )]
    NotLoopback {
        /// As written.
        spec: String,
        /// The bind address.
        bind: String,
    },
}

/// Split on `:` outside `[...]` (IPv6 addresses are bracketed).
fn fields(spec: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut depth = 0u32;
    for c in spec.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

fn unbracket(s: &str) -> String {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s)
        .to_owned()
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_path(s: &str) -> bool {
    s.contains('/')
}

/// Whether a bind address only accepts connections from this machine.
pub fn is_loopback(bind: &str) -> bool {
    let b = unbracket(bind);
    b == "localhost"
        || b == "::1"
        || b.parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

impl Forward {
    /// Parse the argument of `-L`.
    pub fn parse_local(spec: &str) -> Result<Forward, ForwardError> {
        let bad = |reason: &str| ForwardError::Syntax {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let port = |s: &str, what: &str| -> Result<u16, ForwardError> {
            if !is_port(s) {
                return Err(bad(&format!("{what} {s:?} is not a port number")));
            }
            s.parse::<u16>()
                .map_err(|_| bad(&format!("{what} {s} is above 65535")))
        };
        let tcp_target = |host: &str, p: &str| -> Result<Target, ForwardError> {
            if host.is_empty() {
                return Err(bad("the remote host is empty"));
            }
            let port = port(p, "remote port")?;
            if port == 0 {
                return Err(bad("the remote port is 0"));
            }
            Ok(Target::Tcp {
                host: unbracket(host),
                port,
            })
        };
        let f = fields(spec);
        let (listen, target) = match f.as_slice() {
            [bind, lport, host, rport] => (
                Listen::Tcp {
                    bind: Some(unbracket(bind)).filter(|b| !b.is_empty()),
                    port: port(lport, "local port")?,
                },
                tcp_target(host, rport)?,
            ),
            [first, host, rport] if is_port(first) => (
                Listen::Tcp {
                    bind: None,
                    port: port(first, "local port")?,
                },
                tcp_target(host, rport)?,
            ),
            [first, host, rport] if is_path(first) => {
                (Listen::Unix(PathBuf::from(first)), tcp_target(host, rport)?)
            }
            [bind, lport, remote] if is_path(remote) => (
                Listen::Tcp {
                    bind: Some(unbracket(bind)).filter(|b| !b.is_empty()),
                    port: port(lport, "local port")?,
                },
                Target::Unix(remote.clone()),
            ),
            [lport, remote] if is_port(lport) && is_path(remote) => (
                Listen::Tcp {
                    bind: None,
                    port: port(lport, "local port")?,
                },
                Target::Unix(remote.clone()),
            ),
            [local, remote] if is_path(local) && is_path(remote) => (
                Listen::Unix(PathBuf::from(local)),
                Target::Unix(remote.clone()),
            ),
            _ => {
                return Err(bad(
                    "expected [BIND:]PORT:HOST:HOSTPORT, [BIND:]PORT:REMOTE_SOCKET, \
                     LOCAL_SOCKET:HOST:HOSTPORT or LOCAL_SOCKET:REMOTE_SOCKET",
                ));
            }
        };
        Ok(Forward { listen, target })
    }

    /// Parse the argument of `-D` (a SOCKS proxy): `[BIND:]PORT`.
    pub fn parse_dynamic(spec: &str) -> Result<Forward, ForwardError> {
        let bad = |reason: &str| ForwardError::Syntax {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let f = fields(spec);
        let (bind, p) = match f.as_slice() {
            [p] => (None, p),
            [bind, p] => (Some(unbracket(bind)).filter(|b| !b.is_empty()), p),
            _ => return Err(bad("expected [BIND:]PORT")),
        };
        if !is_port(p) {
            return Err(bad(&format!("{p:?} is not a port number")));
        }
        let port = p.parse().map_err(|_| bad("the port is above 65535"))?;
        Ok(Forward {
            listen: Listen::Tcp { bind, port },
            target: Target::Socks,
        })
    }

    /// Refuse a bind other than loopback unless `public` (`-g`) says so.
    pub fn check_bind(&self, spec: &str, public: bool) -> Result<(), ForwardError> {
        match &self.listen {
            Listen::Tcp {
                bind: Some(bind), ..
            } if !public && !is_loopback(bind) => Err(ForwardError::NotLoopback {
                spec: spec.to_owned(),
                bind: bind.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// The local TCP port, if it listens on one.
    pub fn local_port(&self) -> Option<u16> {
        match self.listen {
            Listen::Tcp { port, .. } => Some(port),
            Listen::Unix(_) => None,
        }
    }

    /// The same forward on another local port (the one picked for port 0).
    pub fn with_port(&self, port: u16) -> Forward {
        let mut f = self.clone();
        if let Listen::Tcp { port: p, .. } = &mut f.listen {
            *p = port;
        }
        f
    }

    /// The address to bind when picking a free port for it.
    pub fn bind_for_probe(&self) -> String {
        match &self.listen {
            Listen::Tcp { bind: Some(b), .. } if b != "*" && b != "localhost" => b.clone(),
            Listen::Tcp { bind: Some(b), .. } if b == "*" => "0.0.0.0".to_owned(),
            _ => "127.0.0.1".to_owned(),
        }
    }

    /// The `ssh` flag that adds it: `-L` or `-D`.
    pub fn flag(&self) -> &'static str {
        match self.target {
            Target::Socks => "-D",
            _ => "-L",
        }
    }

    /// The flag's argument, in OpenSSH's syntax.
    pub fn ssh_arg(&self) -> String {
        let host = |h: &str| {
            if h.contains(':') {
                format!("[{h}]")
            } else {
                h.to_owned()
            }
        };
        let listen = match &self.listen {
            Listen::Tcp {
                bind: Some(b),
                port,
            } => format!("{}:{port}", host(b)),
            Listen::Tcp { bind: None, port } => port.to_string(),
            Listen::Unix(p) => p.display().to_string(),
        };
        match &self.target {
            Target::Tcp { host: h, port } => format!("{listen}:{}:{port}", host(h)),
            Target::Unix(p) => format!("{listen}:{p}"),
            Target::Socks => listen,
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp {
                bind: Some(b),
                port,
            } if b.contains(':') => write!(f, "[{b}]:{port}"),
            Listen::Tcp {
                bind: Some(b),
                port,
            } => write!(f, "{b}:{port}"),
            Listen::Tcp { bind: None, port } => write!(f, "127.0.0.1:{port}"),
            Listen::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

impl fmt::Display for Forward {
    /// `127.0.0.1:8889 → 127.0.0.1:8889`, `127.0.0.1:1080 (SOCKS)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Tcp { host, port } if host.contains(':') => {
                write!(f, "{} → [{host}]:{port}", self.listen)
            }
            Target::Tcp { host, port } => write!(f, "{} → {host}:{port}", self.listen),
            Target::Unix(p) => write!(f, "{} → {p}", self.listen),
            Target::Socks => write!(f, "{} (SOCKS)", self.listen),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(bind: Option<&str>, port: u16) -> Listen {
        Listen::Tcp {
            bind: bind.map(str::to_owned),
            port,
        }
    }

    fn to(host: &str, port: u16) -> Target {
        Target::Tcp {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn local_forms_parse_and_write_back() {
        let cases: &[(&str, &str, Listen, Target, &str)] = &[
            (
                "tutorial line",
                "127.0.0.1:8889:127.0.0.1:8889",
                tcp(Some("127.0.0.1"), 8889),
                to("127.0.0.1", 8889),
                "127.0.0.1:8889:127.0.0.1:8889",
            ),
            (
                "no bind address",
                "5432:db.internal:5432",
                tcp(None, 5432),
                to("db.internal", 5432),
                "5432:db.internal:5432",
            ),
            (
                "port 0 picks one",
                "0:localhost:80",
                tcp(None, 0),
                to("localhost", 80),
                "0:localhost:80",
            ),
            (
                "ipv6 both ends",
                "[::1]:8080:[fe80::1]:80",
                tcp(Some("::1"), 8080),
                to("fe80::1", 80),
                "[::1]:8080:[fe80::1]:80",
            ),
            (
                "tcp to remote socket",
                "8888:/run/user/1/jupyter.sock",
                tcp(None, 8888),
                Target::Unix("/run/user/1/jupyter.sock".into()),
                "8888:/run/user/1/jupyter.sock",
            ),
            (
                "bound tcp to remote socket",
                "localhost:8888:/tmp/r.sock",
                tcp(Some("localhost"), 8888),
                Target::Unix("/tmp/r.sock".into()),
                "localhost:8888:/tmp/r.sock",
            ),
            (
                "socket to socket",
                "/tmp/l.sock:/tmp/r.sock",
                Listen::Unix("/tmp/l.sock".into()),
                Target::Unix("/tmp/r.sock".into()),
                "/tmp/l.sock:/tmp/r.sock",
            ),
            (
                "socket to tcp",
                "/tmp/l.sock:db:5432",
                Listen::Unix("/tmp/l.sock".into()),
                to("db", 5432),
                "/tmp/l.sock:db:5432",
            ),
        ];
        for (name, spec, listen, target, back) in cases {
            let f = Forward::parse_local(spec).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&f.listen, listen, "{name}");
            assert_eq!(&f.target, target, "{name}");
            assert_eq!(f.ssh_arg(), *back, "{name}");
            assert_eq!(f.flag(), "-L", "{name}");
        }
    }

    #[test]
    fn bad_local_forms_say_why() {
        let cases: &[(&str, &str, &str)] = &[
            ("one field", "8889", "expected"),
            ("port too big", "70000:h:1", "above 65535"),
            ("port not a number", "x:y:h:1", "not a port"),
            ("remote port not a number", "1:h:http", "not a port"),
            ("remote port 0", "1:h:0", "remote port is 0"),
            ("empty host", "1::22", "remote host is empty"),
            ("five fields", "a:1:b:2:c", "expected"),
        ];
        for (name, spec, want) in cases {
            let e = Forward::parse_local(spec).expect_err(name).to_string();
            assert!(e.contains(want), "{name}: {e}");
            assert!(e.contains(spec), "{name}: names the spec: {e}");
        }
    }

    #[test]
    fn dynamic_forms() {
        let f = Forward::parse_dynamic("1080").unwrap();
        assert_eq!(f.listen, tcp(None, 1080));
        assert_eq!((f.flag(), f.ssh_arg()), ("-D", "1080".to_owned()));
        let f = Forward::parse_dynamic("127.0.0.1:0").unwrap();
        assert_eq!(f.listen, tcp(Some("127.0.0.1"), 0));
        assert!(Forward::parse_dynamic("a:b:c").is_err());
        assert!(Forward::parse_dynamic("x").is_err());
    }

    #[test]
    fn only_loopback_binds_without_g() {
        let cases: &[(&str, bool)] = &[
            ("8889:h:1", true),
            ("127.0.0.1:8889:h:1", true),
            ("127.0.0.2:8889:h:1", true),
            ("localhost:8889:h:1", true),
            ("[::1]:8889:h:1", true),
            ("0.0.0.0:8889:h:1", false),
            ("*:8889:h:1", false),
            ("10.1.2.3:8889:h:1", false),
            ("/tmp/x.sock:h:1", true),
        ];
        for (spec, ok) in cases {
            let f = Forward::parse_local(spec).unwrap();
            assert_eq!(f.check_bind(spec, false).is_ok(), *ok, "{spec}");
            assert!(f.check_bind(spec, true).is_ok(), "{spec} with -g");
        }
        let e = Forward::parse_local("0.0.0.0:1:h:2")
            .unwrap()
            .check_bind("0.0.0.0:1:h:2", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("-g"), "{e}");
    }

    #[test]
    fn shown_as_arrows() {
        let f = Forward::parse_local("8889:127.0.0.1:8888").unwrap();
        assert_eq!(f.to_string(), "127.0.0.1:8889 → 127.0.0.1:8888");
        assert_eq!(
            f.with_port(4000).to_string(),
            "127.0.0.1:4000 → 127.0.0.1:8888"
        );
        assert_eq!(
            Forward::parse_dynamic("1080").unwrap().to_string(),
            "127.0.0.1:1080 (SOCKS)"
        );
    }
}
