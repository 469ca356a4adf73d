//! The connections of `%sql`: opening one from its URL under an alias, listing
//! them (passwords masked), picking the one a query uses (`--alias`, the current
//! one, or `DATABASE_URL`), and taking it out for a statement and back, with a
//! dropped PostgreSQL connection opened again.

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

/// A driver connection.
pub(super) enum Conn {
    Sqlite(Rc<Sqlite>),
    Postgres(Postgres),
}

pub(super) struct Entry {
    url: Url,
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

async fn open(u: &Url) -> Result<Conn, DbError> {
    match u {
        Url::Sqlite(path) => Ok(Conn::Sqlite(Rc::new(Sqlite::open(path.as_deref())?))),
        Url::Postgres(pg) => Ok(Conn::Postgres(Postgres::connect(pg).await?)),
    }
}

impl Sql {
    pub(super) async fn connect(
        &self,
        req: &Request,
        text: &str,
        alias: Option<&str>,
    ) -> Result<ExecuteOutcome, MagicError> {
        let u = url::parse(text).map_err(|e| usage(e.to_string()))?;
        let name = alias
            .map(str::to_owned)
            .unwrap_or_else(|| default_alias(&u));
        match open(&u).await {
            Ok(conn) => {
                let masked = u.masked();
                if self.conns.borrow().contains_key(&name) {
                    req.stream("stdout", &format!("Replacing the connection {name}.\n"));
                }
                self.conns.borrow_mut().insert(
                    name.clone(),
                    Entry {
                        url: u,
                        conn: Some(conn),
                    },
                );
                *self.current.borrow_mut() = Some(name.clone());
                req.stream("stdout", &format!("Connected: {name} ({masked})\n"));
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
                .connect(req, &text, Some("default"))
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
            (entry.conn.take(), entry.url.clone())
        };
        match conn {
            Some(Conn::Postgres(pg)) if pg.is_closed() => {
                let fresh = open(&u).await.map_err(|e| DbError {
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
            None => open(&u).await,
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
