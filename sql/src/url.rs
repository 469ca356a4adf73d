//! Connection URLs of `%sql`, parsed by a pure function: `sqlite://` (in memory),
//! `sqlite:///relative.db`, `sqlite:////abs/path.db`, and `postgresql://` /
//! `postgres://` with user, password, host, port, database and the libpq
//! parameters users pass (`sslmode`, `sslrootcert`, `connect_timeout`,
//! `application_name`, `host` for a Unix socket directory).
//!
//! PostgreSQL URLs are cut as libpq cuts them (`conninfo_uri_parse_options`):
//! the user info ends at the first `@` before any `/`, and the user name at its
//! first `:`, so a password may hold `:`, `?` and `#` as they are, while `@` and
//! `/` in it must be written `%40` and `%2F`; every part is percent-decoded.
//! The password is a [`Secret`]: it prints as `***` everywhere, and errors never
//! echo the URL nor any part of it that could be a piece of the password.

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

/// Why a URL was refused. Never contains the password, nor any part of the URL
/// that could be a piece of it.
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
        "unsupported connection parameter {0:?} (known: sslmode, sslrootcert, connect_timeout, application_name, host, port, user, password, dbname)"
    )]
    Parameter(String),
    /// A port that is not one.
    #[error("bad database URL: the port {place} {problem}")]
    Port {
        /// Where the port was written.
        place: PortPlace,
        /// What is wrong with it.
        problem: PortProblem,
    },
    /// The URL only reads as libpq reads it if a `/` in the user name or password
    /// was percent-encoded.
    #[error(
        "bad database URL: an '@' follows the first '/', so the user name and password were not \
         found; write a '/' in the user name or password as %2F (and an '@' in the database \
         name or a parameter as %40)"
    )]
    UnencodedSlash,
}

/// Where a port was written in a URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortPlace {
    /// `host:PORT`.
    AfterHost,
    /// `?port=PORT`.
    Parameter,
}

impl fmt::Display for PortPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortPlace::AfterHost => "after the host",
            PortPlace::Parameter => "in ?port=",
        })
    }
}

/// What is wrong with a port. The value itself is never shown: when a `/` in a
/// password was not encoded, libpq's reading puts part of the password there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortProblem {
    /// Nothing after the `:` (or `port=`).
    #[error("is empty: give a number from 1 to 65535, or none at all for the default 5432")]
    Empty,
    /// Not digits.
    #[error("is not a number: ports run from 1 to 65535")]
    NotANumber,
    /// Zero.
    #[error("is 0: ports run from 1 to 65535")]
    Zero,
    /// Above 65535.
    #[error("is above 65535, the largest port")]
    TooLarge,
}

/// The port of `text` (already percent-decoded), as libpq accepts it: 1 to 65535.
fn parse_port(text: &str, place: PortPlace) -> Result<u16, UrlError> {
    let problem = |problem| UrlError::Port { place, problem };
    if text.is_empty() {
        return Err(problem(PortProblem::Empty));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(problem(PortProblem::NotANumber));
    }
    match text.trim_start_matches('0') {
        "" => Err(problem(PortProblem::Zero)),
        digits => digits
            .parse::<u16>()
            .map_err(|_| problem(PortProblem::TooLarge)),
    }
}

/// Undo percent-encoding as libpq does (`conninfo_uri_decode`): spaces around
/// the value are dropped, a space inside it is refused. `part` names the part in
/// errors; the value is never shown.
fn decode(s: &str, part: &str) -> Result<String, UrlError> {
    let s = s.trim_matches(' ');
    if s.contains(' ') {
        return Err(UrlError::Bad(format!(
            "the {part} contains a space: write it as %20"
        )));
    }
    percent_decode(s, part)
}

/// Undo percent-encoding; `%00` is refused (no C string can hold it).
fn percent_decode(s: &str, part: &str) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    UrlError::Bad(format!(
                        "a % in the {part} is not followed by two hex digits (write a % itself as %25)"
                    ))
                })?;
            if byte == 0 {
                return Err(UrlError::Bad(format!(
                    "the {part} contains %00, which is not allowed"
                )));
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| UrlError::Bad(format!("the {part} is not UTF-8 once decoded")))
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
    let looks_like_a_scheme = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !looks_like_a_scheme {
        // Whatever stands before "://" may hold a password: never echo it.
        return Err(UrlError::Bad(
            "expected scheme://… (sqlite:// or postgresql://)".into(),
        ));
    }
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
    let path = percent_decode(path, "path")?;
    if path.is_empty() || path == ":memory:" {
        Ok(Url::Sqlite(None))
    } else {
        Ok(Url::Sqlite(Some(PathBuf::from(path))))
    }
}

/// The pieces of what follows `postgresql://`, still percent-encoded, cut where
/// libpq's `conninfo_uri_parse_options` cuts them:
/// `[user[:password]@][host][:port][/dbname][?params]`.
#[derive(Debug, Default, PartialEq, Eq)]
struct RawPostgres<'a> {
    /// Everything before the first `@` that comes before any `/`.
    userinfo: Option<&'a str>,
    host: &'a str,
    port: Option<&'a str>,
    dbname: Option<&'a str>,
    query: Option<&'a str>,
}

fn split_postgres(rest: &str) -> Result<RawPostgres<'_>, UrlError> {
    let mut raw = RawPostgres::default();
    // The user info ends at the first '@' before any '/': so a password may hold
    // ':', '?' and '#' as they are, while '@' and '/' in it must be %40 and %2F.
    let netloc = match rest.find(['@', '/']) {
        Some(at) if rest.as_bytes()[at] == b'@' => {
            raw.userinfo = Some(&rest[..at]);
            &rest[at + 1..]
        }
        _ => rest,
    };
    let after_host = if let Some(bracketed) = netloc.strip_prefix('[') {
        let close = bracketed
            .find(']')
            .ok_or_else(|| UrlError::Bad("the [ of an IPv6 host is not closed".into()))?;
        if close == 0 {
            return Err(UrlError::Bad("the IPv6 host between [ ] is empty".into()));
        }
        raw.host = &bracketed[..close];
        let after = &bracketed[close + 1..];
        if !(after.is_empty() || after.starts_with([':', '/', '?', ','])) {
            return Err(UrlError::Bad(
                "expected ':', '/' or '?' after the ] of an IPv6 host".into(),
            ));
        }
        after
    } else {
        let end = netloc.find([':', '/', '?', ',']).unwrap_or(netloc.len());
        raw.host = &netloc[..end];
        &netloc[end..]
    };
    let after_port = match after_host.strip_prefix(':') {
        Some(p) => {
            let end = p.find(['/', '?', ',']).unwrap_or(p.len());
            raw.port = Some(&p[..end]);
            &p[end..]
        }
        None => after_host,
    };
    if after_port.starts_with(',') {
        return Err(UrlError::Bad(
            "several hosts (host1,host2) are not supported: give one host".into(),
        ));
    }
    let after_path = match after_port.strip_prefix('/') {
        Some(path) => {
            let end = path.find('?').unwrap_or(path.len());
            raw.dbname = Some(&path[..end]);
            &path[end..]
        }
        None => after_port,
    };
    raw.query = after_path.strip_prefix('?');
    Ok(raw)
}

fn parse_postgres(rest: &str) -> Result<Url, UrlError> {
    let raw = split_postgres(rest);
    // Without user info, an '@' after the first '/' almost always means a '/' in
    // the password: libpq's reading would then put pieces of it in the port, the
    // database name or a parameter, which errors must not show.
    let slash_in_userinfo = matches!(&raw, Ok(r) if r.userinfo.is_none())
        && rest.find('/').is_some_and(|i| rest[i..].contains('@'));
    let parsed = raw.and_then(|raw| {
        if slash_in_userinfo && raw.dbname.is_some_and(|d| d.contains('@')) {
            return Err(UrlError::UnencodedSlash);
        }
        postgres_from(&raw)
    });
    match parsed {
        Err(_) if slash_in_userinfo => Err(UrlError::UnencodedSlash),
        other => other.map(Url::Postgres),
    }
}

fn postgres_from(raw: &RawPostgres<'_>) -> Result<Postgres, UrlError> {
    let (user, password) = match raw.userinfo {
        Some(info) => match info.split_once(':') {
            Some((u, p)) => (decode(u, "user name")?, decode(p, "password")?),
            None => (decode(info, "user name")?, String::new()),
        },
        None => (String::new(), String::new()),
    };
    let host = decode(raw.host, "host")?;
    if host.contains('@') {
        return Err(UrlError::Bad(
            "the host contains '@': write an '@' in the user name or password as %40".into(),
        ));
    }
    let port = match raw.port {
        Some(p) => parse_port(&decode(p, "port")?, PortPlace::AfterHost)?,
        None => 5432,
    };
    let mut pg = Postgres {
        user: (!user.is_empty()).then_some(user),
        password: (!password.is_empty()).then_some(Secret(password)),
        host: None,
        socket_dir: None,
        port,
        dbname: raw
            .dbname
            .map(|d| decode(d, "database name"))
            .transpose()?
            .filter(|d| !d.is_empty()),
        sslmode: SslMode::Prefer,
        sslrootcert: None,
        connect_timeout: None,
        application_name: None,
    };
    set_host(&mut pg, host);
    for pair in raw.query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        apply_parameter(&mut pg, pair)?;
    }
    if matches!(pg.sslmode, SslMode::VerifyCa | SslMode::VerifyFull) && pg.sslrootcert.is_none() {
        // libpq falls back to ~/.postgresql/root.crt.
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        pg.sslrootcert = Some(home.join(".postgresql/root.crt"));
    }
    Ok(pg)
}

/// A host as libpq reads it: a path is a Unix socket directory, nothing is the default.
fn set_host(pg: &mut Postgres, host: String) {
    (pg.host, pg.socket_dir) = if host.starts_with('/') {
        (None, Some(PathBuf::from(host)))
    } else {
        ((!host.is_empty()).then_some(host), None)
    };
}

/// One `key=value` of the query string.
fn apply_parameter(pg: &mut Postgres, pair: &str) -> Result<(), UrlError> {
    let (k, v) = pair.split_once('=').ok_or_else(|| {
        UrlError::Bad("a connection parameter has no '=VALUE' (write key=value)".into())
    })?;
    let k = decode(k, "name of a connection parameter")?;
    if v.contains('=') {
        return Err(UrlError::Bad(format!(
            "the value of {k} contains '=': write it as %3D"
        )));
    }
    let v = decode(v, &format!("value of {k}"))?;
    match k.as_str() {
        "sslmode" => {
            pg.sslmode = SslMode::parse(&v).ok_or_else(|| {
                UrlError::Bad(format!(
                    "sslmode {v:?}: use disable, prefer, require, verify-ca or verify-full"
                ))
            })?;
        }
        // libpq's JDBC spelling.
        "ssl" if v == "true" => pg.sslmode = SslMode::Require,
        "sslrootcert" => pg.sslrootcert = Some(PathBuf::from(v)),
        "connect_timeout" => {
            let secs: u64 = v.parse().map_err(|_| {
                UrlError::Bad(format!("connect_timeout {v:?} is not a number of seconds"))
            })?;
            pg.connect_timeout = (secs > 0).then(|| Duration::from_secs(secs));
        }
        "application_name" => pg.application_name = Some(v),
        "host" => set_host(pg, v),
        "port" => pg.port = parse_port(&v, PortPlace::Parameter)?,
        "user" => pg.user = (!v.is_empty()).then_some(v),
        "password" => pg.password = (!v.is_empty()).then_some(Secret(v)),
        "dbname" => pg.dbname = (!v.is_empty()).then_some(v),
        _ => return Err(UrlError::Parameter(k)),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
