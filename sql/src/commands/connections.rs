//! The connections of `%sql`: opening one from its URL under an alias, listing
//! them (passwords masked), picking the one a query uses (`--alias`, the current
//! one, or `DATABASE_URL`), and taking it out for a statement and back, with a
//! dropped PostgreSQL connection opened again. A PostgreSQL URL with `--ssh
//! DEST` is reached through a tunnel of the ssh crate (reused when one already
//! forwards to the URL's host and port), with TLS checked under the URL's host.

use std::rc::Rc;

use pxkernel_contract::MagicError;
use pxkernel_contract::display::{Align, Table};
use pxkernel_kernel::server::{ExecuteOutcome, Request};
use serde_json::json;

use super::{Sql, db_failure, usage};
use crate::driver::{DbError, ErrorKind};
use crate::postgres::Postgres;
use crate::sqlite::Sqlite;
use crate::url::{self, Url};
use pxkernel_ssh::Endpoint;

/// A driver connection.
pub(super) enum Conn {
    Sqlite(Rc<Sqlite>),
    Postgres(Postgres),
}

pub(super) struct Entry {
    url: Url,
    /// The ssh destination it is reached through.
    via: Option<Endpoint>,
    /// Taken out while a statement runs.
    conn: Option<Conn>,
}

fn default_alias(u: &Url) -> String {
    match u {
        Url::Sqlite(None) => "memory".to_owned(),
        Url::Sqlite(Some(p)) => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sqlite".to_owned()),
        Url::Postgres(pg) => pg
            .dbname
            .clone()
            .or_else(|| pg.user.clone())
            .unwrap_or_else(|| "postgres".to_owned()),
    }
}

/// Where a connection goes through: the tunnel's name and local port.
struct Through {
    tunnel: String,
    port: u16,
}

impl Sql {
    /// Open `u`, through an ssh tunnel via `via` when given.
    async fn open(
        &self,
        req: &Request,
        u: &Url,
        via: Option<&Endpoint>,
    ) -> Result<(Conn, Option<Through>), DbError> {
        match (u, via) {
            (Url::Sqlite(path), None) => {
                Ok((Conn::Sqlite(Rc::new(Sqlite::open(path.as_deref())?)), None))
            }
            (Url::Postgres(pg), None) => {
                Ok((Conn::Postgres(Postgres::connect(pg, None).await?), None))
            }
            (Url::Sqlite(_), Some(_)) => Err(DbError::connection(
                "--ssh reaches a database server: it goes with a postgresql:// URL".to_owned(),
            )),
            (Url::Postgres(pg), Some(endpoint)) => {
                let Some(host) = pg.host.as_deref().filter(|_| pg.socket_dir.is_none()) else {
                    return Err(DbError::connection(
                        "--ssh needs the server's host in the URL (as the ssh host sees it, \
                         e.g. postgresql://user@localhost/db)"
                            .to_owned(),
                    ));
                };
                let (port, tunnel) = self
                    .ssh
                    .local_port_for(req, endpoint, host, pg.port)
                    .await
                    .map_err(|e| DbError::connection(e.to_string()))?;
                let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
                let conn = Postgres::connect(pg, Some((loopback, port))).await?;
                Ok((Conn::Postgres(conn), Some(Through { tunnel, port })))
            }
        }
    }
}

impl Sql {
    pub(super) async fn connect(
        &self,
        req: &Request,
        text: &str,
        alias: Option<&str>,
        via: Option<&str>,
    ) -> Result<ExecuteOutcome, MagicError> {
        let u = url::parse(text).map_err(|e| usage(e.to_string()))?;
        let via = via
            .map(Endpoint::parse_host)
            .transpose()
            .map_err(|e| usage(format!("--ssh: {e}")))?;
        let name = alias
            .map(str::to_owned)
            .unwrap_or_else(|| default_alias(&u));
        match self.open(req, &u, via.as_ref()).await {
            Ok((conn, through)) => {
                let masked = u.masked();
                if self.conns.borrow().contains_key(&name) {
                    req.stream("stdout", &format!("Replacing the connection {name}.\n"));
                }
                self.conns.borrow_mut().insert(
                    name.clone(),
                    Entry {
                        url: u,
                        via: via.clone(),
                        conn: Some(conn),
                    },
                );
                *self.current.borrow_mut() = Some(name.clone());
                let route = match (&via, through) {
                    (Some(v), Some(t)) => format!(
                        " via ssh {} (tunnel {}, 127.0.0.1:{})",
                        v.destination, t.tunnel, t.port
                    ),
                    _ => String::new(),
                };
                req.stream("stdout", &format!("Connected: {name} ({masked}){route}\n"));
                Ok(ExecuteOutcome::ok())
            }
            // Whatever the server said (wrong password, refused TLS), it is a connection failure.
            Err(e) => Err(db_failure(
                &DbError {
                    kind: ErrorKind::Connection,
                    message: format!("cannot connect to {}: {}", u.masked(), e.message),
                    ..e
                },
                "",
            )),
        }
    }

    pub(super) fn list(&self, req: &Request) {
        let mut t = Table::new(&[
            ("", Align::Left),
            ("alias", Align::Left),
            ("driver", Align::Left),
            ("url", Align::Left),
        ]);
        let current = self.current.borrow().clone();
        for (name, e) in self.conns.borrow().iter() {
            t.rows.push(vec![
                if current.as_deref() == Some(name) {
                    "*"
                } else {
                    ""
                }
                .into(),
                name.as_str().into(),
                e.url.driver().into(),
                e.url.masked().into(),
            ]);
        }
        t.footer = Some(match t.rows.len() {
            0 => "No connections. Connect with %sql sqlite:// or %sql postgresql://user@host/db."
                .to_owned(),
            1 => "1 connection".to_owned(),
            n => format!("{n} connections"),
        });
        req.publish("display_data", &json!({"data": t.bundle(), "metadata": {}}));
    }

    /// The connection to use: `--alias`, else the current one, else `DATABASE_URL`.
    pub(super) async fn pick(
        &self,
        req: &Request,
        alias: Option<&str>,
    ) -> Result<String, MagicError> {
        if let Some(a) = alias {
            if self.conns.borrow().contains_key(a) {
                return Ok(a.to_owned());
            }
            return Err(usage(format!("no connection named {a:?}")));
        }
        if let Some(c) = self.current.borrow().clone() {
            return Ok(c);
        }
        match std::env::var("DATABASE_URL") {
            Ok(text) if !text.trim().is_empty() => self
                .connect(req, &text, Some("default"), None)
                .await
                .map(|_| "default".to_owned()),
            _ => Err(usage(
                "no database connection: connect with %sql sqlite:// (in memory) or \
                 %sql postgresql://user@host/db, or set DATABASE_URL",
            )),
        }
    }

    /// Take the connection out for a statement, reconnecting a dropped one.
    pub(super) async fn take(&self, req: &Request, alias: &str) -> Result<Conn, DbError> {
        let (conn, u) = {
            let mut conns = self.conns.borrow_mut();
            let entry = conns
                .get_mut(alias)
                .ok_or_else(|| DbError::connection(format!("no connection named {alias:?}")))?;
            (entry.conn.take(), (entry.url.clone(), entry.via.clone()))
        };
        let (u, via) = u;
        match conn {
            Some(Conn::Postgres(pg)) if pg.is_closed() => {
                let (fresh, _) = self
                    .open(req, &u, via.as_ref())
                    .await
                    .map_err(|e| DbError {
                        kind: ErrorKind::Connection,
                        ..e
                    })?;
                req.stream(
                    "stderr",
                    &format!(
                        "pxkernel: the connection {alias} had dropped; reconnected to {}.\n",
                        u.masked()
                    ),
                );
                Ok(fresh)
            }
            Some(c) => Ok(c),
            None => self.open(req, &u, via.as_ref()).await.map(|(c, _)| c),
        }
    }

    pub(super) fn give_back(&self, alias: &str, conn: Conn) {
        if let Some(e) = self.conns.borrow_mut().get_mut(alias) {
            e.conn = Some(conn);
        }
    }

    /// Table names of the current connection, for completion after FROM/JOIN.
    pub async fn tables(&self) -> Vec<String> {
        let Some(alias) = self.current.borrow().clone() else {
            return Vec::new();
        };
        let conn = self
            .conns
            .borrow_mut()
            .get_mut(&alias)
            .and_then(|e| e.conn.take());
        let Some(conn) = conn else {
            return Vec::new();
        };
        let names = match &conn {
            Conn::Sqlite(db) => db.tables().await,
            Conn::Postgres(pg) => pg.tables().await,
        };
        self.give_back(&alias, conn);
        names
    }
}
