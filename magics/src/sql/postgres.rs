//! The PostgreSQL driver: tokio-postgres over TLS (rustls), with libpq's
//! `sslmode` meanings — `require` encrypts without verifying the server,
//! `verify-ca` checks the chain against `sslrootcert`, `verify-full` also the
//! host name. Rows arrive in binary and are decoded into typed [`Value`]s; a
//! shown result is read through a portal, so only the first page crosses the wire.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::types::{FromSql, IsNull, Kind as PgKind, ToSql, Type};
use tokio_postgres::{CancelToken, Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::driver::{DbError, ErrorKind, Param, Want, counts_rows, first_keyword};
use super::url::{Postgres as PgUrl, SslMode};
use super::value::{Column, Kind, Outcome, Rows, Value};

/// Connections that name no timeout give up after this long.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long counting the rows of a shown result may take.
const COUNT_BUDGET: Duration = Duration::from_secs(3);
/// Days from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;
const PG_EPOCH_US: i64 = PG_EPOCH_DAYS * 86_400_000_000;

type BoxError = Box<dyn StdError + Sync + Send>;

/// An open PostgreSQL connection.
pub struct Postgres {
    client: Client,
    tls: MakeRustlsConnect,
    /// Inside a transaction the user began (BEGIN … COMMIT).
    in_user_transaction: std::cell::Cell<bool>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any certificate (libpq's `require`/`prefer`), still checking the handshake signatures.
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Verifies against `sslrootcert`: the chain always, the host name for
/// `verify-full` only (libpq's `verify-ca` skips it). A self-signed server
/// certificate that is itself in `sslrootcert` is trusted, as libpq trusts it
/// (webpki refuses a CA certificate as the server's own).
#[derive(Debug)]
struct Verified {
    webpki: Arc<WebPkiServerVerifier>,
    roots: Vec<CertificateDer<'static>>,
    check_name: bool,
}

fn name_error(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. }
        )
    )
}

impl ServerCertVerifier for Verified {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(e) if name_error(&e) && !self.check_name => Ok(ServerCertVerified::assertion()),
            Err(e) if self.roots.iter().any(|r| r.as_ref() == end_entity.as_ref()) => {
                if !self.check_name {
                    return Ok(ServerCertVerified::assertion());
                }
                let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| e.clone())?;
                cert.verify_is_valid_for_subject_name(server_name)
                    .map(|()| ServerCertVerified::assertion())
                    .map_err(|_| {
                        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
                    })
            }
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

fn tls_config(url: &PgUrl) -> Result<rustls::ClientConfig, DbError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::connection(format!("TLS setup: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match url.sslmode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(Unverified(provider.signature_verification_algorithms))
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let path = url.sslrootcert.clone().unwrap_or_default();
            let mut roots = RootCertStore::empty();
            let mut ders = Vec::new();
            let certs = CertificateDer::pem_file_iter(&path).map_err(|e| {
                DbError::connection(format!("cannot read sslrootcert {}: {e}", path.display()))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    DbError::connection(format!("bad certificate in {}: {e}", path.display()))
                })?;
                ders.push(cert.clone());
                roots.add(cert).map_err(|e| {
                    DbError::connection(format!("bad certificate in {}: {e}", path.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(DbError::connection(format!(
                    "no certificate in sslrootcert {}",
                    path.display()
                )));
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| DbError::connection(format!("TLS setup: {e}")))?;
            Arc::new(Verified {
                webpki,
                roots: ders,
                check_name: url.sslmode == SslMode::VerifyFull,
            })
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// A tokio-postgres error as the user should read it (message, SQLSTATE, position).
fn error(e: tokio_postgres::Error) -> DbError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code().to_owned();
        let kind = if code == "57014" {
            ErrorKind::Cancelled
        } else {
            ErrorKind::Query
        };
        let mut detail = Vec::new();
        if let Some(d) = db.detail() {
            detail.push(format!("DETAIL: {d}"));
        }
        if let Some(h) = db.hint() {
            detail.push(format!("HINT: {h}"));
        }
        return DbError {
            kind,
            message: format!("{}: {}", db.severity(), db.message()),
            sqlstate: Some(code),
            position: match db.position() {
                Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p),
                _ => None,
            },
            detail,
        };
    }
    let closed = e.is_closed();
    // The source chain says what failed (refused, timed out, TLS); no part of it
    // ever carries the password.
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    if closed || text.contains("connect") || text.contains("connection") {
        DbError::connection(text)
    } else {
        DbError::query(text)
    }
}

impl Postgres {
    /// Connect as the URL says.
    pub async fn connect(url: &PgUrl) -> Result<Postgres, DbError> {
        let mut cfg = tokio_postgres::Config::new();
        let user = url
            .user
            .clone()
            .or_else(|| std::env::var("PGUSER").ok())
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "postgres".to_owned());
        cfg.user(&user);
        if let Some(p) = &url.password {
            cfg.password(p.expose());
        } else if let Ok(p) = std::env::var("PGPASSWORD") {
            cfg.password(p);
        }
        match (&url.host, &url.socket_dir) {
            (_, Some(dir)) => {
                cfg.host_path(dir);
            }
            (Some(h), None) => {
                cfg.host(h);
            }
            (None, None) => {
                cfg.host_path("/var/run/postgresql");
            }
        }
        cfg.port(url.port);
        cfg.dbname(url.dbname.as_deref().unwrap_or(&user));
        if let Some(a) = &url.application_name {
            cfg.application_name(a);
        }
        cfg.connect_timeout(url.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT));
        cfg.ssl_mode(match url.sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        let tls = MakeRustlsConnect::new(tls_config(url)?);
        let limit = url.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT) + Duration::from_secs(1);
        let (client, connection) = tokio::time::timeout(limit, cfg.connect(tls.clone()))
            .await
            .map_err(|_| DbError::connection(format!("no answer within {} s", limit.as_secs())))?
            .map_err(error)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::info!("PostgreSQL connection ended: {e}");
            }
        });
        Ok(Postgres {
            client,
            tls,
            in_user_transaction: std::cell::Cell::new(false),
        })
    }

    /// Whether the connection has dropped (server restarted, network gone).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// A handle that cancels the running statement on the server.
    pub fn canceller(&self) -> (CancelToken, MakeRustlsConnect) {
        (self.client.cancel_token(), self.tls.clone())
    }

    fn track_transaction(&self, sql: &str) {
        match first_keyword(sql).as_str() {
            "begin" | "start" => self.in_user_transaction.set(true),
            "commit" | "end" | "abort" => self.in_user_transaction.set(false),
            "rollback" if !sql.to_ascii_lowercase().contains(" to ") => {
                self.in_user_transaction.set(false);
            }
            _ => {}
        }
    }

    /// Run one statement.
    pub async fn run(
        &mut self,
        sql: &str,
        params: &[Param],
        want: Want,
    ) -> Result<Outcome, DbError> {
        let stmt = self.client.prepare(sql).await.map_err(error)?;
        let args: Vec<PgParam<'_>> = params.iter().map(PgParam).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            args.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        if stmt.columns().is_empty() {
            let n = self.client.execute(&stmt, &refs).await.map_err(error)?;
            self.track_transaction(sql);
            return Ok(if counts_rows(sql) {
                Outcome::Affected(n)
            } else {
                Outcome::Done
            });
        }
        let columns = columns(&stmt);
        match want {
            Want::All => {
                let rows = self.client.query(&stmt, &refs).await.map_err(error)?;
                let rows = decode_rows(&rows)?;
                Ok(Outcome::Rows(Rows {
                    columns,
                    rows,
                    more: false,
                }))
            }
            Want::Page(n) if self.in_user_transaction.get() => {
                // Inside the user's transaction: no BEGIN/COMMIT of ours; read all, show a page.
                let rows = self.client.query(&stmt, &refs).await.map_err(error)?;
                let mut rows = decode_rows(&rows[..rows.len().min(n + 1)])?;
                let more = rows.len() > n;
                rows.truncate(n);
                Ok(Outcome::Rows(Rows {
                    columns,
                    rows,
                    more,
                }))
            }
            Want::Page(n) => {
                let tx = self.client.transaction().await.map_err(error)?;
                let portal = tx.bind(&stmt, &refs).await.map_err(error)?;
                let fetched = tx
                    .query_portal(&portal, (n + 1) as i32)
                    .await
                    .map_err(error)?;
                let mut rows = decode_rows(&fetched)?;
                let more = rows.len() > n;
                rows.truncate(n);
                tx.commit().await.map_err(error)?;
                Ok(Outcome::Rows(Rows {
                    columns,
                    rows,
                    more,
                }))
            }
        }
    }

    /// The number of rows of a query, when counting is quick (else None).
    pub async fn count(&mut self, sql: &str, params: &[Param]) -> Option<u64> {
        // Never inside the user's transaction (a failed count would abort it), and
        // always read-only (counting runs the query again: it must change nothing).
        if self.in_user_transaction.get()
            || !matches!(
                first_keyword(sql).as_str(),
                "select" | "with" | "values" | "table"
            )
        {
            return None;
        }
        let args: Vec<PgParam<'_>> = params.iter().map(PgParam).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            args.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        // The newline ends a trailing `--` comment of the query.
        let counting = format!("SELECT count(*) FROM ({sql}\n) AS pxkernel_count");
        let (token, tls) = self.canceller();
        let counted = async {
            let tx = self
                .client
                .build_transaction()
                .read_only(true)
                .start()
                .await
                .ok()?;
            let n = tx
                .query_one(&counting, &refs)
                .await
                .ok()
                .and_then(|row| row.try_get::<_, i64>(0).ok());
            let _ = tx.rollback().await;
            n
        };
        match tokio::time::timeout(COUNT_BUDGET, counted).await {
            Ok(n) => n.map(|n| n as u64),
            Err(_) => {
                let _ = token.cancel_query(tls).await;
                None
            }
        }
    }

    /// Table and view names of the search path, for completion.
    pub async fn tables(&self) -> Vec<String> {
        let q = "SELECT table_name FROM information_schema.tables \
                 WHERE table_schema = ANY (current_schemas(false)) ORDER BY 1";
        match tokio::time::timeout(Duration::from_secs(2), self.client.query(q, &[])).await {
            Ok(Ok(rows)) => rows.iter().filter_map(|r| r.try_get(0).ok()).collect(),
            _ => Vec::new(),
        }
    }
}

fn kind_of(ty: &Type) -> Kind {
    match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => Kind::Int,
        Type::FLOAT4 | Type::FLOAT8 => Kind::Float,
        Type::NUMERIC => Kind::Decimal,
        Type::BOOL => Kind::Bool,
        Type::BYTEA => Kind::Bytes,
        Type::DATE => Kind::Date,
        Type::TIME => Kind::Time,
        Type::TIMESTAMP => Kind::Timestamp,
        Type::TIMESTAMPTZ => Kind::TimestampTz,
        Type::JSON | Type::JSONB => Kind::Json,
        _ => match ty.kind() {
            PgKind::Domain(base) => kind_of(base),
            _ => Kind::Text,
        },
    }
}

fn columns(stmt: &Statement) -> Vec<Column> {
    stmt.columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            kind: kind_of(c.type_()),
        })
        .collect()
}

fn decode_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<Vec<Value>>, DbError> {
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    row.try_get::<_, Cell>(i)
                        .map(|c| c.0)
                        .map_err(|e| DbError::query(format!("cannot read column {i}: {e}")))
                })
                .collect()
        })
        .collect()
}

/// Any PostgreSQL value, decoded from its binary form.
struct Cell(Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        decode(ty, raw).map(Cell)
    }
    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Cell(Value::Null))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn be<const N: usize>(raw: &[u8], at: usize) -> Result<[u8; N], BoxError> {
    raw.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| "truncated value".into())
}

fn text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// Decode one binary value.
pub(crate) fn decode(ty: &Type, raw: &[u8]) -> Result<Value, BoxError> {
    Ok(match *ty {
        Type::BOOL => Value::Bool(raw.first().is_some_and(|b| *b != 0)),
        Type::INT2 => Value::Int(i64::from(i16::from_be_bytes(be(raw, 0)?))),
        Type::INT4 => Value::Int(i64::from(i32::from_be_bytes(be(raw, 0)?))),
        Type::OID => Value::Int(i64::from(u32::from_be_bytes(be(raw, 0)?))),
        Type::INT8 => Value::Int(i64::from_be_bytes(be(raw, 0)?)),
        Type::FLOAT4 => Value::Float(f64::from(f32::from_be_bytes(be(raw, 0)?))),
        Type::FLOAT8 => Value::Float(f64::from_be_bytes(be(raw, 0)?)),
        Type::NUMERIC => Value::Decimal(numeric_text(raw)?),
        Type::JSONB => Value::Json(text(raw.get(1..).unwrap_or_default())),
        Type::JSON => Value::Json(text(raw)),
        Type::BYTEA => Value::Bytes(raw.to_vec()),
        Type::DATE => match i32::from_be_bytes(be(raw, 0)?) {
            i32::MAX => Value::Other("infinity".into()),
            i32::MIN => Value::Other("-infinity".into()),
            d => Value::Date((i64::from(d) + PG_EPOCH_DAYS) as i32),
        },
        Type::TIME => Value::Time(i64::from_be_bytes(be(raw, 0)?)),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => match i64::from_be_bytes(be(raw, 0)?) {
            i64::MAX => Value::Other("infinity".into()),
            i64::MIN => Value::Other("-infinity".into()),
            t if *ty == Type::TIMESTAMP => Value::Timestamp(t + PG_EPOCH_US),
            t => Value::TimestampTz(t + PG_EPOCH_US),
        },
        Type::UUID => {
            let h: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            if h.len() == 32 {
                Value::Text(format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                ))
            } else {
                Value::Text(h)
            }
        }
        Type::INTERVAL => Value::Other(interval_text(
            i64::from_be_bytes(be(raw, 0)?),
            i32::from_be_bytes(be(raw, 8)?),
            i32::from_be_bytes(be(raw, 12)?),
        )),
        Type::INET | Type::CIDR => Value::Text(inet_text(raw)?),
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::UNKNOWN
        | Type::XML
        | Type::CHAR => Value::Text(text(raw)),
        _ => match ty.kind() {
            PgKind::Enum(_) => Value::Text(text(raw)),
            PgKind::Domain(base) => decode(base, raw)?,
            PgKind::Array(elem) => Value::Other(array_text(elem, raw)?),
            // Extension types such as citext send text.
            _ if std::str::from_utf8(raw).is_ok_and(|s| !s.contains('\0')) => {
                Value::Other(text(raw))
            }
            _ => Value::Other(format!("<{} value>", ty.name())),
        },
    })
}

fn numeric_text(raw: &[u8]) -> Result<String, BoxError> {
    let ndigits = i16::from_be_bytes(be(raw, 0)?) as usize;
    let weight = i16::from_be_bytes(be(raw, 2)?) as i32;
    let sign = u16::from_be_bytes(be(raw, 4)?);
    let dscale = i16::from_be_bytes(be(raw, 6)?).max(0) as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i16> = (0..ndigits)
        .map(|i| be::<2>(raw, 8 + 2 * i).map(i16::from_be_bytes))
        .collect::<Result<_, _>>()?;
    let mut int_part = String::new();
    for i in 0..=weight.max(-1) {
        let d = digits.get(i as usize).copied().unwrap_or(0);
        if int_part.is_empty() {
            if d != 0 {
                int_part = d.to_string();
            }
        } else {
            int_part.push_str(&format!("{d:04}"));
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut frac = String::new();
    let mut i = weight + 1;
    while frac.len() < dscale {
        let d = if i >= 0 {
            digits.get(i as usize).copied().unwrap_or(0)
        } else {
            0
        };
        frac.push_str(&format!("{d:04}"));
        i += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if frac.is_empty() {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{frac}")
    })
}

fn interval_text(us: i64, days: i32, months: i32) -> String {
    let mut parts: Vec<String> = Vec::new();
    let (y, m) = (months / 12, months % 12);
    let unit =
        |n: i64, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    if y != 0 {
        parts.push(unit(i64::from(y), "year", "years"));
    }
    if m != 0 {
        parts.push(unit(i64::from(m), "mon", "mons"));
    }
    if days != 0 {
        parts.push(unit(i64::from(days), "day", "days"));
    }
    if us != 0 || parts.is_empty() {
        let neg = us < 0;
        let a = us.unsigned_abs();
        let s = a / 1_000_000;
        let mut t = format!(
            "{}{:02}:{:02}:{:02}",
            if neg { "-" } else { "" },
            s / 3600,
            (s / 60) % 60,
            s % 60
        );
        let frac = a % 1_000_000;
        if frac != 0 {
            t.push_str(format!(".{frac:06}").trim_end_matches('0'));
        }
        parts.push(t);
    }
    parts.join(" ")
}

fn inet_text(raw: &[u8]) -> Result<String, BoxError> {
    let family = *raw.first().ok_or("truncated inet")?;
    let bits = *raw.get(1).ok_or("truncated inet")?;
    let is_cidr = raw.get(2).copied().unwrap_or(0) == 1;
    let addr = raw.get(4..).ok_or("truncated inet")?;
    let ip: std::net::IpAddr = if family == 2 && addr.len() == 4 {
        std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).into()
    } else if addr.len() == 16 {
        let mut a = [0u8; 16];
        a.copy_from_slice(addr);
        std::net::Ipv6Addr::from(a).into()
    } else {
        return Err("bad inet".into());
    };
    let full = if ip.is_ipv4() { 32 } else { 128 };
    Ok(if is_cidr || bits != full {
        format!("{ip}/{bits}")
    } else {
        ip.to_string()
    })
}

fn array_text(elem: &Type, raw: &[u8]) -> Result<String, BoxError> {
    let ndim = i32::from_be_bytes(be(raw, 0)?) as usize;
    if ndim == 0 {
        return Ok("{}".into());
    }
    let mut dims = Vec::with_capacity(ndim);
    for d in 0..ndim {
        dims.push(i32::from_be_bytes(be(raw, 12 + 8 * d)?) as usize);
    }
    let mut at = 12 + 8 * ndim;
    let total: usize = dims.iter().product();
    let mut items = Vec::with_capacity(total);
    for _ in 0..total {
        let len = i32::from_be_bytes(be(raw, at)?);
        at += 4;
        if len < 0 {
            items.push("NULL".to_owned());
        } else {
            let bytes = raw.get(at..at + len as usize).ok_or("truncated array")?;
            at += len as usize;
            let v = decode(elem, bytes)?;
            let t = v.text().unwrap_or_default();
            let quote = t.is_empty() || t.contains([',', '{', '}', '"', ' ', '\\']);
            items.push(if quote {
                format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))
            } else {
                t
            });
        }
    }
    fn nest(items: &[String], dims: &[usize]) -> String {
        if dims.len() <= 1 {
            return format!("{{{}}}", items.join(","));
        }
        let step = items.len() / dims[0].max(1);
        let parts: Vec<String> = items
            .chunks(step.max(1))
            .map(|c| nest(c, &dims[1..]))
            .collect();
        format!("{{{}}}", parts.join(","))
    }
    Ok(nest(&items, &dims))
}

/// A parameter sent in the binary form the statement's inferred type needs.
#[derive(Debug)]
struct PgParam<'a>(&'a Value);

fn numeric_bytes(text: &str) -> Result<Vec<u8>, BoxError> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return Err(format!("{text:?} is not a decimal number").into());
    }
    let int = int.trim_start_matches('0');
    let dscale = frac.len();
    // Group digits by 4 around the decimal point.
    let pad_left = (4 - int.len() % 4) % 4;
    let int_padded = format!("{}{int}", "0".repeat(pad_left));
    let pad_right = (4 - frac.len() % 4) % 4;
    let frac_padded = format!("{frac}{}", "0".repeat(pad_right));
    let mut groups: Vec<i16> = Vec::new();
    for c in int_padded
        .as_bytes()
        .chunks(4)
        .chain(frac_padded.as_bytes().chunks(4))
    {
        groups.push(std::str::from_utf8(c)?.parse()?);
    }
    let mut weight = (int_padded.len() / 4) as i32 - 1;
    while groups.first() == Some(&0) && weight >= 0 {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(
        &(if neg && !groups.is_empty() {
            0x4000u16
        } else {
            0
        })
        .to_be_bytes(),
    );
    out.extend_from_slice(&(dscale as i16).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(out)
}

impl ToSql for PgParam<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        use bytes::BufMut;
        let mismatch = || -> BoxError {
            format!(
                "cannot pass {} as a parameter of type {}",
                describe(self.0),
                ty.name()
            )
            .into()
        };
        match (self.0, ty) {
            (Value::Null, _) => return Ok(IsNull::Yes),
            (Value::Int(i), &Type::INT2) => out.put_i16(i16::try_from(*i).map_err(|_| mismatch())?),
            (Value::Int(i), &Type::INT4) => out.put_i32(i32::try_from(*i).map_err(|_| mismatch())?),
            (Value::Int(i), &Type::INT8) => out.put_i64(*i),
            (Value::Int(i), &Type::OID) => out.put_u32(u32::try_from(*i).map_err(|_| mismatch())?),
            (Value::Int(i), &Type::FLOAT4) => out.put_f32(*i as f32),
            (Value::Int(i), &Type::FLOAT8) => out.put_f64(*i as f64),
            (Value::Int(i), &Type::NUMERIC) => out.put_slice(&numeric_bytes(&i.to_string())?),
            (Value::Float(f), &Type::FLOAT4) => out.put_f32(*f as f32),
            (Value::Float(f), &Type::FLOAT8) => out.put_f64(*f),
            (Value::Float(f), &Type::NUMERIC) => out.put_slice(&numeric_bytes(&format!("{f}"))?),
            (Value::Decimal(d), &Type::NUMERIC) => out.put_slice(&numeric_bytes(d)?),
            (Value::Decimal(d), &Type::FLOAT8) => out.put_f64(d.parse().map_err(|_| mismatch())?),
            (Value::Bool(b), &Type::BOOL) => out.put_u8(u8::from(*b)),
            (Value::Bytes(b), &Type::BYTEA) => out.put_slice(b),
            (Value::Date(d), &Type::DATE) => out.put_i32((i64::from(*d) - PG_EPOCH_DAYS) as i32),
            (Value::Date(d), &Type::TIMESTAMP | &Type::TIMESTAMPTZ) => {
                out.put_i64(i64::from(*d) * 86_400_000_000 - PG_EPOCH_US);
            }
            (
                Value::Timestamp(t) | Value::TimestampTz(t),
                &Type::TIMESTAMP | &Type::TIMESTAMPTZ,
            ) => {
                out.put_i64(t - PG_EPOCH_US);
            }
            (Value::Json(s), &Type::JSONB) => {
                out.put_u8(1);
                out.put_slice(s.as_bytes());
            }
            (Value::Text(s), &Type::DATE) => {
                let d = super::value::parse_date(s).ok_or_else(mismatch)?;
                out.put_i32((i64::from(d) - PG_EPOCH_DAYS) as i32);
            }
            (Value::Text(s), &Type::TIMESTAMP | &Type::TIMESTAMPTZ) => {
                let t = super::value::parse_timestamp(s).ok_or_else(mismatch)?;
                out.put_i64(t - PG_EPOCH_US);
            }
            (Value::Text(s), &Type::NUMERIC) => out.put_slice(&numeric_bytes(s)?),
            (Value::Text(s), &Type::INT2 | &Type::INT4 | &Type::INT8) => {
                let i: i64 = s.trim().parse().map_err(|_| mismatch())?;
                return PgParam(&Value::Int(i)).to_sql(ty, out);
            }
            (Value::Text(s), &Type::UUID) => {
                let hex: String = s.chars().filter(|c| *c != '-').collect();
                if hex.len() != 32 {
                    return Err(mismatch());
                }
                for i in 0..16 {
                    out.put_u8(
                        u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| mismatch())?,
                    );
                }
            }
            (Value::Text(s) | Value::Json(s) | Value::Decimal(s), t) if is_text_type(t) => {
                out.put_slice(s.as_bytes());
            }
            (Value::Int(_) | Value::Float(_) | Value::Bool(_), t) if is_text_type(t) => {
                out.put_slice(self.0.text().unwrap_or_default().as_bytes());
            }
            _ => return Err(mismatch()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn is_text_type(t: &Type) -> bool {
    matches!(
        *t,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON
    ) || matches!(t.kind(), PgKind::Enum(_))
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Int(_) => "an int",
        Value::Float(_) => "a float",
        Value::Decimal(_) => "a Decimal",
        Value::Bool(_) => "a bool",
        Value::Text(_) | Value::Other(_) => "a str",
        Value::Bytes(_) => "bytes",
        Value::Date(_) => "a date",
        Value::Time(_) => "a time",
        Value::Timestamp(_) | Value::TimestampTz(_) => "a datetime",
        Value::Json(_) => "JSON",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::value::days_from_civil;

    fn numeric(text_in: &str) -> String {
        numeric_text(&numeric_bytes(text_in).unwrap()).unwrap()
    }

    #[test]
    fn numeric_round_trips() {
        for (input, want) in [
            ("0", "0"),
            ("1", "1"),
            ("-1", "-1"),
            ("12345.6789", "12345.6789"),
            ("0.0001", "0.0001"),
            ("100000000", "100000000"),
            ("1.50", "1.50"),
            ("-0.5", "-0.5"),
            (
                "99999999999999999999.123456789",
                "99999999999999999999.123456789",
            ),
        ] {
            assert_eq!(numeric(input), want, "{input}");
        }
        assert!(numeric_bytes("1e5").is_err());
        assert!(numeric_bytes("abc").is_err());
    }

    #[test]
    fn intervals_and_addresses() {
        assert_eq!(interval_text(0, 0, 0), "00:00:00");
        assert_eq!(
            interval_text(3_723_000_000, 1, 14),
            "1 year 2 mons 1 day 01:02:03"
        );
        assert_eq!(interval_text(-1_500_000, 0, 0), "-00:00:01.5");
        assert_eq!(inet_text(&[2, 32, 0, 4, 10, 0, 0, 1]).unwrap(), "10.0.0.1");
        assert_eq!(
            inet_text(&[2, 24, 1, 4, 10, 0, 0, 0]).unwrap(),
            "10.0.0.0/24"
        );
    }

    #[test]
    fn dates_and_timestamps_from_the_wire() {
        // 2024-01-01 is 8766 days after 2000-01-01.
        assert_eq!(
            decode(&Type::DATE, &8766i32.to_be_bytes()).unwrap(),
            Value::Date(19_723)
        );
        assert_eq!(days_from_civil(2024, 1, 1), 19_723);
        let ts = decode(&Type::TIMESTAMPTZ, &0i64.to_be_bytes()).unwrap();
        assert_eq!(ts.text().unwrap(), "2000-01-01 00:00:00+00:00");
        assert_eq!(decode(&Type::INT4, &[0, 0, 1, 0]).unwrap(), Value::Int(256));
        assert_eq!(
            decode(&Type::JSONB, b"\x01{\"a\":1}").unwrap(),
            Value::Json("{\"a\":1}".into())
        );
    }
}

#[cfg(test)]
mod live {
    //! Against a real server when `PXKERNEL_TEST_PG_URL` names one (the Python
    //! suites start one; these run only when it is set).
    use super::*;

    fn url() -> Option<PgUrl> {
        let text = std::env::var("PXKERNEL_TEST_PG_URL").ok()?;
        match crate::sql::url::parse(&text).ok()? {
            crate::sql::url::Url::Postgres(p) => Some(p),
            _ => None,
        }
    }

    #[test]
    fn types_pages_params_and_errors() {
        let Some(url) = url() else { return };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut pg = Postgres::connect(&url).await.unwrap();
            let out = pg
                .run(
                    "select 1::int2 a, 2::int4 b, 3::int8 c, 1.5::float8 d, 12.340::numeric e, 'x'::text f, \
                     true g, '2024-01-01'::date h, '2024-01-01 00:00:01'::timestamp i, \
                     '2024-01-01 00:00:01+00'::timestamptz j, '{\"a\":1}'::jsonb k, null::text l, \
                     array[1,2] m, '1 day'::interval n, gen_random_uuid() is not null o",
                    &[],
                    Want::All,
                )
                .await
                .unwrap();
            let Outcome::Rows(rows) = out else { panic!() };
            let texts: Vec<Option<String>> = rows.rows[0].iter().map(Value::text).collect();
            assert_eq!(
                texts,
                [
                    Some("1"), Some("2"), Some("3"), Some("1.5"), Some("12.340"), Some("x"), Some("True"),
                    Some("2024-01-01"), Some("2024-01-01 00:00:01"), Some("2024-01-01 00:00:01+00:00"),
                    Some("{\"a\": 1}"), None, Some("{1,2}"), Some("1 day"), Some("True"),
                ]
                .map(|o| o.map(str::to_owned))
            );
            let sql = "select g from generate_series(1, 1000) g";
            let out = pg.run(sql, &[], Want::Page(10)).await.unwrap();
            let Outcome::Rows(rows) = out else { panic!() };
            assert_eq!((rows.rows.len(), rows.more), (10, true));
            assert_eq!(pg.count(sql, &[]).await, Some(1000));
            assert_eq!(pg.count("select 1 -- trailing comment", &[]).await, Some(1));
            let out = pg
                .run("select $1::int + $2::numeric, $3::text", &[Value::Int(2), Value::Decimal("0.5".into()), Value::Text("t".into())], Want::All)
                .await
                .unwrap();
            let Outcome::Rows(rows) = out else { panic!() };
            assert_eq!(rows.rows[0][0].text().unwrap(), "2.5");
            let e = pg.run("selec 1", &[], Want::All).await.unwrap_err();
            assert_eq!(e.sqlstate.as_deref(), Some("42601"));
            assert_eq!(e.position, Some(1));
        });
    }
}
