//! Connection URLs of `%sql`, parsed by a pure function: `sqlite://` (in memory),
//! `sqlite:///relative.db`, `sqlite:////abs/path.db`, and `postgresql://` /
//! `postgres://` with user, password, host, port, database and the libpq
//! parameters users pass (`sslmode`, `sslrootcert`, `connect_timeout`,
//! `application_name`, `host` for a Unix socket directory). The password is a
//! [`Secret`]: it prints as `***` everywhere, and errors never echo the URL.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A password: never printed, never debugged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, without verifying it (as libpq's `prefer`).
    Prefer,
    /// TLS, without verifying the server (libpq's `require`).
    Require,
    /// TLS, and the server's certificate must chain to `sslrootcert`.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            // libpq's `allow` tries plain first; we treat it like `prefer`.
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// The name users write.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where a PostgreSQL server is and how to talk to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Postgres {
    /// User name (libpq defaults it to the OS user).
    pub user: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// Host name or address; None: the default Unix socket.
    pub host: Option<String>,
    /// Unix socket directory (`?host=/path`).
    pub socket_dir: Option<PathBuf>,
    /// Port.
    pub port: u16,
    /// Database name (defaults to the user name).
    pub dbname: Option<String>,
    /// TLS mode.
    pub sslmode: SslMode,
    /// CA certificates (PEM) for verify-ca / verify-full.
    pub sslrootcert: Option<PathBuf>,
    /// Connection timeout.
    pub connect_timeout: Option<Duration>,
    /// `application_name`.
    pub application_name: Option<String>,
}

/// A parsed connection URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Url {
    /// SQLite: a file, or memory when None.
    Sqlite(Option<PathBuf>),
    /// PostgreSQL.
    Postgres(Postgres),
}

impl Url {
    /// The driver's name.
    pub fn driver(&self) -> &'static str {
        match self {
            Url::Sqlite(_) => "sqlite",
            Url::Postgres(_) => "postgresql",
        }
    }

    /// The URL with the password masked, for lists and messages.
    pub fn masked(&self) -> String {
        match self {
            Url::Sqlite(None) => "sqlite://".to_owned(),
            // An absolute path brings its own slash: sqlite:////abs/path.db.
            Url::Sqlite(Some(p)) => format!("sqlite:///{}", p.to_string_lossy()),
            Url::Postgres(pg) => {
                let mut s = "postgresql://".to_owned();
                if let Some(u) = &pg.user {
                    s.push_str(&encode(u));
                    if pg.password.is_some() {
                        s.push_str(":***");
                    }
                    s.push('@');
                }
                if let Some(h) = &pg.host {
                    if h.contains(':') {
                        s.push_str(&format!("[{h}]"));
                    } else {
                        s.push_str(h);
                    }
                }
                s.push_str(&format!(":{}", pg.port));
                if let Some(d) = &pg.dbname {
                    s.push('/');
                    s.push_str(&encode(d));
                }
                let mut q = vec![format!("sslmode={}", pg.sslmode.name())];
                if let Some(dir) = &pg.socket_dir {
                    q.push(format!("host={}", dir.display()));
                }
                if let Some(c) = &pg.sslrootcert {
                    q.push(format!("sslrootcert={}", c.display()));
                }
                if let Some(t) = pg.connect_timeout {
                    q.push(format!("connect_timeout={}", t.as_secs()));
                }
                if let Some(a) = &pg.application_name {
                    q.push(format!("application_name={}", encode(a)));
                }
                s.push('?');
                s.push_str(&q.join("&"));
                s
            }
        }
    }
}

/// Why a URL was refused. Never contains the URL or its password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not a scheme we speak.
    #[error("unsupported database URL scheme {0:?}: use sqlite:// or postgresql://")]
    Scheme(String),
    /// A malformed part.
    #[error("bad database URL: {0}")]
    Bad(String),
    /// A query parameter we do not know.
    #[error(
        "unsupported connection parameter {0:?} (known: sslmode, sslrootcert, connect_timeout, application_name, host)"
    )]
    Parameter(String),
}

fn decode(s: &str) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    UrlError::Bad("a % escape is not followed by two hex digits".into())
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::Bad("an escaped part is not UTF-8".into()))
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parse a connection URL.
pub fn parse(text: &str) -> Result<Url, UrlError> {
    let text = text.trim();
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| UrlError::Bad("expected scheme://… (sqlite:// or postgresql://)".into()))?;
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" | "sqlite3" => parse_sqlite(rest),
        "postgresql" | "postgres" | "postgresql+psycopg2" | "postgresql+psycopg" => {
            parse_postgres(rest)
        }
        other => Err(UrlError::Scheme(other.to_owned())),
    }
}

fn parse_sqlite(rest: &str) -> Result<Url, UrlError> {
    // sqlite:// → memory; sqlite:///x.db → "x.db"; sqlite:////abs → "/abs".
    let path = match rest.strip_prefix('/') {
        None if rest.is_empty() => return Ok(Url::Sqlite(None)),
        None => {
            return Err(UrlError::Bad(
                "an SQLite URL has no host: use sqlite:///relative.db or sqlite:////absolute/path.db".into(),
            ));
        }
        Some(p) => p,
    };
    let path = decode(path)?;
    if path.is_empty() || path == ":memory:" {
        Ok(Url::Sqlite(None))
    } else {
        Ok(Url::Sqlite(Some(PathBuf::from(path))))
    }
}

fn parse_postgres(rest: &str) -> Result<Url, UrlError> {
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, dbname) = match main.split_once('/') {
        Some((a, d)) => (a, (!d.is_empty()).then(|| decode(d)).transpose()?),
        None => (main, None),
    };
    // The password may contain '@': the host part follows the last one.
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(ui) => match ui.split_once(':') {
            Some((u, p)) => (Some(decode(u)?), Some(Secret(decode(p)?))),
            None => (Some(decode(ui)?), None),
        },
        None => (None, None),
    };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, after) = h
            .split_once(']')
            .ok_or_else(|| UrlError::Bad("unclosed [ in the host".into()))?;
        (h.to_owned(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (hostport.to_owned(), None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() => p
            .parse::<u16>()
            .map_err(|_| UrlError::Bad(format!("port {p:?} is not a number from 1 to 65535")))?,
        _ => 5432,
    };
    let mut pg = Postgres {
        user: user.filter(|u| !u.is_empty()),
        password,
        host: (!host.is_empty()).then(|| decode(&host)).transpose()?,
        socket_dir: None,
        port,
        dbname,
        sslmode: SslMode::Prefer,
        sslrootcert: None,
        connect_timeout: None,
        application_name: None,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(v)?;
        match k {
            "sslmode" => {
                pg.sslmode = SslMode::parse(&v).ok_or_else(|| {
                    UrlError::Bad(format!(
                        "sslmode {v:?}: use disable, prefer, require, verify-ca or verify-full"
                    ))
                })?;
            }
            "sslrootcert" => pg.sslrootcert = Some(PathBuf::from(v)),
            "connect_timeout" => {
                let secs: u64 = v.parse().map_err(|_| {
                    UrlError::Bad(format!("connect_timeout {v:?} is not a number of seconds"))
                })?;
                pg.connect_timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            "application_name" => pg.application_name = Some(v),
            "host" if v.starts_with('/') => pg.socket_dir = Some(PathBuf::from(v)),
            "host" => pg.host = Some(v),
            "port" => {
                pg.port = v.parse().map_err(|_| {
                    UrlError::Bad(format!("port {v:?} is not a number from 1 to 65535"))
                })?;
            }
            "user" => pg.user = Some(v),
            "password" => pg.password = Some(Secret(v)),
            "dbname" => pg.dbname = Some(v),
            other => return Err(UrlError::Parameter(other.to_owned())),
        }
    }
    if matches!(pg.sslmode, SslMode::VerifyCa | SslMode::VerifyFull) && pg.sslrootcert.is_none() {
        // libpq falls back to ~/.postgresql/root.crt.
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        pg.sslrootcert = Some(home.join(".postgresql/root.crt"));
    }
    Ok(Url::Postgres(pg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(text: &str) -> Postgres {
        match parse(text).unwrap() {
            Url::Postgres(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sqlite_forms() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("memory", "sqlite://", None),
            ("explicit memory", "sqlite:///:memory:", None),
            ("relative", "sqlite:///data/aug31.db", Some("data/aug31.db")),
            ("absolute", "sqlite:////tmp/x.db", Some("/tmp/x.db")),
            ("escaped", "sqlite:///my%20file.db", Some("my file.db")),
        ];
        for (label, text, want) in cases {
            assert_eq!(
                parse(text).unwrap(),
                Url::Sqlite(want.map(PathBuf::from)),
                "case {label}"
            );
        }
        assert!(parse("sqlite://host/x.db").is_err());
    }

    #[test]
    fn postgres_forms() {
        let p = pg(
            "postgresql://ada:s%40cret@db.example.com:6543/sales?sslmode=require&application_name=nb",
        );
        assert_eq!(p.user.as_deref(), Some("ada"));
        assert_eq!(p.password.as_ref().map(Secret::expose), Some("s@cret"));
        assert_eq!(p.host.as_deref(), Some("db.example.com"));
        assert_eq!(p.port, 6543);
        assert_eq!(p.dbname.as_deref(), Some("sales"));
        assert_eq!(p.sslmode, SslMode::Require);
        assert_eq!(p.application_name.as_deref(), Some("nb"));

        let p = pg("postgres://u@[::1]/d");
        assert_eq!((p.host.as_deref(), p.port), (Some("::1"), 5432));
        assert_eq!(p.sslmode, SslMode::Prefer);

        let p = pg("postgresql://u:p@w@rd@h/d");
        assert_eq!(p.password.as_ref().map(Secret::expose), Some("p@w@rd"));
        assert_eq!(p.host.as_deref(), Some("h"));

        let p = pg("postgresql:///d?host=/var/run/postgresql&connect_timeout=3");
        assert_eq!(p.socket_dir, Some(PathBuf::from("/var/run/postgresql")));
        assert_eq!(p.connect_timeout, Some(Duration::from_secs(3)));

        let p = pg("postgresql://u@h/d?sslmode=verify-full&sslrootcert=/ca.pem");
        assert_eq!(p.sslmode, SslMode::VerifyFull);
        assert_eq!(p.sslrootcert, Some(PathBuf::from("/ca.pem")));
    }

    #[test]
    fn errors_never_show_the_password() {
        let cases: &[(&str, &str)] = &[
            ("bad port", "postgresql://u:hunter2@h:99999/d"),
            (
                "unknown parameter",
                "postgresql://u:hunter2@h/d?frobnicate=1",
            ),
            ("bad sslmode", "postgresql://u:hunter2@h/d?sslmode=always"),
            ("bad escape", "postgresql://u:hunter2%zz@h/d"),
            ("unknown scheme", "mysql://u:hunter2@h/d"),
            ("no scheme", "u:hunter2@h/d"),
        ];
        for (label, text) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "case {label}: {e}");
        }
        assert!(
            parse("postgresql://u@h/d?frobnicate=1")
                .unwrap_err()
                .to_string()
                .contains("frobnicate")
        );
    }

    #[test]
    fn masked_urls_hide_the_password() {
        let u = parse("postgresql://ada:hunter2@h:5433/sales?sslmode=require").unwrap();
        assert_eq!(
            u.masked(),
            "postgresql://ada:***@h:5433/sales?sslmode=require"
        );
        assert!(!format!("{u:?}").contains("hunter2"));
        assert_eq!(parse("sqlite://").unwrap().masked(), "sqlite://");
        assert_eq!(
            parse("sqlite:////tmp/a.db").unwrap().masked(),
            "sqlite:////tmp/a.db"
        );
        assert_eq!(parse("sqlite:///a.db").unwrap().masked(), "sqlite:///a.db");
    }
}
