//! The PostgreSQL driver: tokio-postgres over TLS (rustls), with libpq's
//! `sslmode` meanings — `require` encrypts without verifying the server,
//! `verify-ca` checks the chain against `sslrootcert`, `verify-full` also the
//! host name. Rows arrive in binary and are decoded into typed [`Value`]s; a
//! shown result is read through a portal, so only the first page crosses the wire.
//!
//! This module connects and runs statements; beside it:
//! - `tls`: the rustls configuration and server certificate verifiers per `sslmode`.
//! - `rows`: result columns and row values decoded from the binary form.
//! - `params`: parameters encoded in the binary form the statement wants.
//!
//! [`Value`]: crate::value::Value

mod params;
mod rows;
mod tls;

use std::error::Error as StdError;
use std::net::IpAddr;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{CancelToken, Client};
use tokio_postgres_rustls::MakeRustlsConnect;

use self::params::PgParam;
use self::rows::{columns, decode_rows};
use self::tls::tls_config;
use super::driver::{DbError, ErrorKind, Param, Want, counts_rows, first_keyword};
use super::url::{Postgres as PgUrl, SslMode};
use super::value::{Outcome, Rows};

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
    /// Connect as the URL says; through `via` (an address and port that reach
    /// the URL's server, such as a tunnel's local end) when given. TLS still
    /// checks the server under the URL's host name.
    pub async fn connect(url: &PgUrl, via: Option<(IpAddr, u16)>) -> Result<Postgres, DbError> {
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
        match via {
            Some((addr, port)) => {
                cfg.hostaddr(addr);
                cfg.port(port);
            }
            None => {
                cfg.port(url.port);
            }
        }
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod live;
