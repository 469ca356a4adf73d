//! The arguments of `%ssh_tunnel`, read the way OpenSSH's `ssh` reads its own
//! (getopt: `-fNL spec`, `-L8889:h:1`, options before or after the destination),
//! so a line from a tutorial pastes in; plus pxkernel's `--name`, `--list` and
//! `--close`. And [`Endpoint`]: a destination with the options that shape its
//! connection, which decides which connections are shared. Pure functions.

use pxkernel_contract::parse::{ParseError, closest, split_args};

use crate::forward::Forward;

/// The magic's name, for errors.
const MAGIC: &str = "ssh_tunnel";

/// Where to connect and how: what one OpenSSH master serves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `[user@]host`, a `Host` alias of the user's ssh_config, or `ssh://…`.
    pub destination: String,
    /// Options that shape the connection, as ssh arguments (`-p 2222`, `-J bastion`,
    /// `-o Key=Value`), in the order given.
    pub options: Vec<String>,
}

impl Endpoint {
    /// A destination with no extra options.
    pub fn new(destination: &str) -> Endpoint {
        Endpoint {
            destination: destination.to_owned(),
            options: Vec::new(),
        }
    }

    /// `[user@]host[:port]` as `%engines start --ssh` takes it: a port after the
    /// last `:` becomes `-p` (an IPv6 address is written in brackets).
    pub fn parse_host(spec: &str) -> Result<Endpoint, String> {
        let spec = spec.trim();
        if spec.is_empty() || spec.starts_with('-') || spec.chars().any(char::is_whitespace) {
            return Err(format!("{spec:?} is not a host: write [user@]host[:port]"));
        }
        if spec.starts_with("ssh://") {
            return Ok(Endpoint::new(spec));
        }
        let (user, hostport) = match spec.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u), h),
            Some(_) => return Err(format!("{spec:?}: the user before @ is empty")),
            None => (None, spec),
        };
        let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
            match rest.split_once(']') {
                Some((h, "")) => (h, None),
                Some((h, p)) if p.starts_with(':') => (h, Some(&p[1..])),
                _ => return Err(format!("{spec:?}: unclosed [ in the host")),
            }
        } else {
            match hostport.split_once(':') {
                Some((h, p)) if !p.contains(':') => (h, Some(p)),
                Some(_) => return Err(format!("{spec:?}: write an IPv6 address as [addr]:port")),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{spec:?}: the host is empty"));
        }
        let mut endpoint = Endpoint::new(&match user {
            Some(u) => format!("{u}@{host}"),
            None => host.to_owned(),
        });
        if let Some(p) = port {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => endpoint.options.extend(["-p".to_owned(), n.to_string()]),
                _ => return Err(format!("{spec:?}: {p:?} is not a port")),
            }
        }
        Ok(endpoint)
    }

    /// One key per distinct connection: the same destination with the same options.
    pub fn key(&self) -> String {
        let mut key = self.destination.clone();
        for o in &self.options {
            key.push('\u{1f}');
            key.push_str(o);
        }
        key
    }

    /// The host part, for display and default tunnel names (`user@host` → `host`).
    pub fn host(&self) -> &str {
        let d = self
            .destination
            .strip_prefix("ssh://")
            .unwrap_or(&self.destination);
        let d = d.rsplit_once('@').map_or(d, |(_, h)| h);
        d.split([':', '/']).next().unwrap_or(d)
    }
}

/// `%ssh_tunnel --close`: one tunnel or all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Close {
    /// By name.
    Named(String),
    /// Every tunnel.
    All,
}

/// A tunnel to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenTunnel {
    /// `--name`, else one is made from the host.
    pub name: Option<String>,
    /// Where it connects.
    pub endpoint: Endpoint,
    /// Its forwards, each with the text it was written as.
    pub forwards: Vec<(String, Forward)>,
}

/// What a `%ssh_tunnel` line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TunnelCommand {
    /// Open a tunnel.
    Open(OpenTunnel),
    /// `--list`.
    List,
    /// `--close NAME` / `--close --all`.
    Close(Close),
}

/// ssh flags without a value that only change how the connection is made.
const PASS_FLAGS: &str = "46AaCKkqvx";
/// ssh options with a value that only change how the connection is made.
const PASS_VALUES: &str = "BbcEFiJlmop";
/// Implied by a tunnel: no command, in the background, no terminal, no stdin.
const IMPLIED: &str = "NfTn";

fn usage(reason: impl Into<String>) -> ParseError {
    ParseError::Usage {
        magic: MAGIC.to_owned(),
        reason: reason.into(),
    }
}

fn refused(letter: char) -> ParseError {
    let why = match letter {
        'M' | 'S' | 'O' => "pxkernel owns the master connection and its control socket",
        'R' => "%ssh_tunnel holds local forwards (-L) and SOCKS proxies (-D), not remote ones",
        'W' | 'w' => "stdio and tun forwarding have no place in a notebook",
        't' | 'X' | 'Y' => "a tunnel runs no command: there is no terminal or display",
        _ => "it is not an option %ssh_tunnel takes",
    };
    usage(format!("-{letter} is not supported: {why}"))
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A tunnel name given by the user: letters, digits, `.`, `_`, `-`.
pub fn check_name(name: &str) -> Result<(), ParseError> {
    if is_name(name) {
        Ok(())
    } else {
        Err(ParseError::BadValue {
            magic: MAGIC.to_owned(),
            option: "name".to_owned(),
            value: name.to_owned(),
            reason: "a name is 1 to 64 letters, digits, '.', '_' or '-'".to_owned(),
        })
    }
}

/// Parse the line after `%ssh_tunnel`.
pub fn parse(line: &str) -> Result<TunnelCommand, ParseError> {
    let words = split_args(MAGIC, line)?;
    let mut name = None;
    let mut list = false;
    let mut close = None;
    let mut public = false;
    let mut options = Vec::new();
    let mut forwards: Vec<(String, char)> = Vec::new();
    let mut positional = Vec::new();
    let mut it = words.into_iter();
    let value_of = |long: &str, inline: Option<String>, it: &mut std::vec::IntoIter<String>| {
        inline
            .or_else(|| it.next())
            .ok_or(ParseError::MissingValue {
                magic: MAGIC.to_owned(),
                option: long.to_owned(),
                metavar: "NAME".to_owned(),
            })
    };
    while let Some(word) = it.next() {
        if let Some(long) = word.strip_prefix("--") {
            let (long, inline) = match long.split_once('=') {
                Some((l, v)) => (l, Some(v.to_owned())),
                None => (long, None),
            };
            match long {
                "" => {
                    positional.extend(it.by_ref());
                    break;
                }
                "name" => {
                    let n = value_of("name", inline, &mut it)?;
                    check_name(&n)?;
                    name = Some(n);
                }
                "list" => list = true,
                "close" => {
                    let v = value_of("close", inline, &mut it)?;
                    close = Some(if v == "--all" {
                        Close::All
                    } else {
                        check_name(&v)?;
                        Close::Named(v)
                    });
                }
                "all" => close = Some(Close::All),
                _ => {
                    let known = ["name", "list", "close", "all"];
                    let suggestion = closest(long, known.into_iter()).map(str::to_owned);
                    return Err(ParseError::UnknownOption {
                        magic: MAGIC.to_owned(),
                        option: format!("--{long}"),
                        suggestion,
                    });
                }
            }
            continue;
        }
        let Some(letters) = word.strip_prefix('-').filter(|l| !l.is_empty()) else {
            positional.push(word);
            continue;
        };
        for (i, c) in letters.char_indices() {
            let takes_value = PASS_VALUES.contains(c) || c == 'L' || c == 'D';
            if !takes_value {
                match c {
                    'g' => public = true,
                    c if IMPLIED.contains(c) => {}
                    c if PASS_FLAGS.contains(c) => options.push(format!("-{c}")),
                    c => return Err(refused(c)),
                }
                continue;
            }
            let rest = &letters[i + c.len_utf8()..];
            let value = if rest.is_empty() {
                it.next().ok_or_else(|| ParseError::MissingValue {
                    magic: MAGIC.to_owned(),
                    option: c.to_string(),
                    metavar: if c == 'L' || c == 'D' {
                        "FORWARD"
                    } else {
                        "VALUE"
                    }
                    .to_owned(),
                })?
            } else {
                rest.to_owned()
            };
            match c {
                'L' | 'D' => forwards.push((value, c)),
                c => options.extend([format!("-{c}"), value]),
            }
            break;
        }
    }

    if list || close.is_some() {
        let extra = !positional.is_empty() || !forwards.is_empty() || name.is_some();
        return match (list, close) {
            (true, Some(_)) => Err(usage("give --list or --close, not both")),
            _ if extra => Err(usage("--list and --close take no destination or forwards")),
            (true, None) => Ok(TunnelCommand::List),
            (false, Some(c)) => Ok(TunnelCommand::Close(c)),
            (false, None) => unreachable!("checked above"),
        };
    }
    let destination = match positional.as_slice() {
        [] => {
            return Err(usage(
                "no destination: write %ssh_tunnel -L LOCAL_PORT:HOST:PORT [user@]host",
            ));
        }
        [d] if d.starts_with('-') => {
            return Err(usage(format!("{d:?} is not a destination")));
        }
        [d] => d.clone(),
        [_, command, ..] => {
            return Err(usage(format!(
                "a tunnel runs no remote command ({command:?}): put options before the destination"
            )));
        }
    };
    if forwards.is_empty() {
        return Err(usage(
            "nothing to forward: add -L LOCAL_PORT:HOST:PORT (or -D PORT for a SOCKS proxy)",
        ));
    }
    let mut parsed = Vec::new();
    for (spec, kind) in forwards {
        let f = if kind == 'L' {
            Forward::parse_local(&spec)
        } else {
            Forward::parse_dynamic(&spec)
        }
        .and_then(|f| f.check_bind(&spec, public).map(|()| f))
        .map_err(|e| usage(e.to_string()))?;
        parsed.push((spec, f));
    }
    Ok(TunnelCommand::Open(OpenTunnel {
        name,
        endpoint: Endpoint {
            destination,
            options,
        },
        forwards: parsed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(line: &str) -> OpenTunnel {
        match parse(line).unwrap_or_else(|e| panic!("{line}: {e}")) {
            TunnelCommand::Open(o) => o,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn lines_as_ssh_reads_them() {
        /// (name, line, destination, options, forwards as ssh args)
        type Case<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (
                "the tutorial line",
                "-N -f -L 127.0.0.1:8889:127.0.0.1:8889 user@host",
                "user@host",
                &[],
                &["127.0.0.1:8889:127.0.0.1:8889"],
            ),
            (
                "grouped flags with a value last",
                "-fNL 8889:localhost:8888 host",
                "host",
                &[],
                &["8889:localhost:8888"],
            ),
            (
                "value glued to its flag",
                "-L8889:localhost:8888 -p2222 host",
                "host",
                &["-p", "2222"],
                &["8889:localhost:8888"],
            ),
            (
                "several forwards, jump, key, option",
                "-L 1:a:1 -L 2:b:2 -J bastion -i ~/.ssh/id -o ServerAliveInterval=5 me@db",
                "me@db",
                &[
                    "-J",
                    "bastion",
                    "-i",
                    "~/.ssh/id",
                    "-o",
                    "ServerAliveInterval=5",
                ],
                &["1:a:1", "2:b:2"],
            ),
            (
                "options after the destination",
                "host -L 5432:localhost:5432 -C",
                "host",
                &["-C"],
                &["5432:localhost:5432"],
            ),
            (
                "unix sockets and socks",
                "-L /tmp/l.sock:/tmp/r.sock -D 1080 host",
                "host",
                &[],
                &["/tmp/l.sock:/tmp/r.sock", "1080"],
            ),
            (
                "public bind with -g",
                "-g -L 0.0.0.0:8889:localhost:8888 host",
                "host",
                &[],
                &["0.0.0.0:8889:localhost:8888"],
            ),
        ];
        for (name, line, dest, opts, fwds) in cases {
            let o = open(line);
            assert_eq!(o.endpoint.destination, *dest, "{name}");
            assert_eq!(o.endpoint.options, *opts, "{name}");
            let got: Vec<String> = o.forwards.iter().map(|(_, f)| f.ssh_arg()).collect();
            assert_eq!(got, *fwds, "{name}");
        }
    }

    #[test]
    fn pxkernel_options() {
        assert_eq!(
            open("--name jup -L 1:h:1 host").name.as_deref(),
            Some("jup")
        );
        assert_eq!(
            open("--name=jup -L 1:h:1 host").name.as_deref(),
            Some("jup")
        );
        assert_eq!(parse("--list").unwrap(), TunnelCommand::List);
        assert_eq!(
            parse("--close jup").unwrap(),
            TunnelCommand::Close(Close::Named("jup".into()))
        );
        assert_eq!(
            parse("--close --all").unwrap(),
            TunnelCommand::Close(Close::All)
        );
        assert_eq!(parse("--all").unwrap(), TunnelCommand::Close(Close::All));
    }

    #[test]
    fn refusals_say_why() {
        let cases: &[(&str, &str, &str)] = &[
            ("no destination", "-L 1:h:1", "no destination"),
            ("no forward", "host", "nothing to forward"),
            (
                "remote command",
                "-L 1:h:1 host uptime",
                "runs no remote command",
            ),
            ("remote forward", "-R 1:h:1 host", "-R is not supported"),
            (
                "control socket",
                "-S /tmp/s -L 1:h:1 host",
                "owns the master",
            ),
            ("terminal", "-t -L 1:h:1 host", "no terminal"),
            ("public without -g", "-L 0.0.0.0:1:h:1 host", "add -g"),
            ("bad forward", "-L nonsense host", "bad forward"),
            ("missing value", "host -L", "needs a value"),
            (
                "unknown long option",
                "--nmae x -L 1:h:1 host",
                "did you mean --name",
            ),
            ("bad name", "--name 'a b' -L 1:h:1 host", "letters, digits"),
            ("list and close", "--list --close x", "not both"),
            (
                "list with destination",
                "--list host",
                "take no destination",
            ),
            ("unclosed quote", "-o 'x host", "unclosed"),
        ];
        for (name, line, want) in cases {
            let e = parse(line).expect_err(name).to_string();
            assert!(e.starts_with("%ssh_tunnel"), "{name}: {e}");
            assert!(e.contains(want), "{name}: {e}");
        }
    }

    #[test]
    fn engine_hosts() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("host", "host", &[]),
            ("user@host", "user@host", &[]),
            ("user@host:2222", "user@host", &["-p", "2222"]),
            ("[::1]:22", "::1", &["-p", "22"]),
            ("me@[fe80::1]", "me@fe80::1", &[]),
            ("ssh://me@h:22", "ssh://me@h:22", &[]),
        ];
        for (spec, dest, opts) in cases {
            let e = Endpoint::parse_host(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(e.destination, *dest, "{spec}");
            assert_eq!(e.options, *opts, "{spec}");
        }
        for bad in [
            "",
            "-oProxyCommand=x",
            "a b",
            "h:x",
            "h:0",
            "@h",
            "u@",
            "[::1",
        ] {
            assert!(Endpoint::parse_host(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Endpoint::parse_host("me@h.example:22").unwrap().host(),
            "h.example"
        );
    }

    #[test]
    fn endpoints_share_by_destination_and_options() {
        let a = open("-L 1:h:1 host").endpoint;
        let b = open("-L 2:h:2 host").endpoint;
        let c = open("-p 2222 -L 1:h:1 host").endpoint;
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
    }
}
