//! `%sql` and `%%sql`: connect, list and close connections, run statements,
//! show the last rows as a table, store a full result in the home kernel, bind
//! `:name` from home variables, cancel on interrupt.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use pxkernel_kernel::protocol::new_uuid;
use pxkernel_kernel::server::{ExecuteOutcome, Request};
use serde_json::json;

use super::driver::{DbError, ErrorKind, Param, Want, footer};
use super::lex::{bind_names, split_statements};
use super::postgres::Postgres;
use super::sqlite::Sqlite;
use super::transfer;
use super::url::{self, Url};
use super::value::{Outcome, Rows, table};
use crate::display::{Align, Table};
use crate::home::{Home, HomeError};
use crate::parse::{OptSpec, ParseError, Takes, parse_leading};
use crate::session::MagicError;

/// The options of `%sql` / `%%sql`.
pub const SPECS: &[OptSpec] = &[
    OptSpec::new(
        "alias",
        Some('A'),
        Takes::Value("NAME"),
        "name a new connection, or pick the one to query",
    ),
    OptSpec::new(
        "connections",
        Some('l'),
        Takes::Nothing,
        "list the connections (passwords masked)",
    ),
    OptSpec::new(
        "close",
        Some('x'),
        Takes::Value("NAME"),
        "close a connection",
    ),
    OptSpec::new(
        "config",
        None,
        Takes::Value("KEY=VALUE"),
        "set an option: limit=N (rows shown, default 10)",
    ),
    OptSpec::new(
        "limit",
        None,
        Takes::Value("N"),
        "rows to show for this query",
    ),
    OptSpec::new(
        "output",
        Some('o'),
        Takes::Value("NAME"),
        "store the full result in the home kernel as NAME",
    ),
];

/// A driver connection.
enum Conn {
    Sqlite(Rc<Sqlite>),
    Postgres(Postgres),
}

struct Entry {
    url: Url,
    /// Taken out while a statement runs.
    conn: Option<Conn>,
}

/// How to stop the statement that runs now.
enum Canceller {
    Sqlite(Rc<Sqlite>),
    Postgres(
        tokio_postgres::CancelToken,
        tokio_postgres_rustls::MakeRustlsConnect,
    ),
}

/// The state behind `%sql`.
pub struct Sql {
    conns: RefCell<BTreeMap<String, Entry>>,
    current: RefCell<Option<String>>,
    limit: Cell<usize>,
    running: RefCell<Option<Rc<Canceller>>>,
    cancelled: Cell<bool>,
}

impl Default for Sql {
    fn default() -> Self {
        Sql {
            conns: RefCell::new(BTreeMap::new()),
            current: RefCell::new(None),
            limit: Cell::new(10),
            running: RefCell::new(None),
            cancelled: Cell::new(false),
        }
    }
}

fn usage(reason: impl Into<String>) -> MagicError {
    MagicError::Usage(ParseError::Usage {
        magic: "sql".to_owned(),
        reason: reason.into(),
    })
}

fn looks_like_url(s: &str) -> bool {
    let lower = s.trim_start().to_ascii_lowercase();
    [
        "sqlite:",
        "sqlite3:",
        "postgresql:",
        "postgres:",
        "postgresql+",
    ]
    .iter()
    .any(|p| lower.starts_with(p))
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

/// A failed cell: one error output; the connection and kernel live on.
fn db_failure(req: &Request, e: &DbError, sql: &str) -> ExecuteOutcome {
    if e.kind == ErrorKind::Cancelled {
        let evalue = "the query was cancelled".to_owned();
        req.error("KeyboardInterrupt", &evalue, std::slice::from_ref(&evalue));
        return ExecuteOutcome::Error {
            ename: "KeyboardInterrupt".to_owned(),
            evalue,
            traceback: Vec::new(),
        };
    }
    let mut evalue = e.message.clone();
    if let Some(code) = &e.sqlstate {
        evalue.push_str(&format!(" (SQLSTATE {code})"));
    }
    let mut tb = vec![format!("{}: {}", ename(e), evalue)];
    tb.extend(e.detail.iter().cloned());
    if let Some(p) = e.position {
        // Point at the character, in the statement's own line, by display width.
        let (line, blanks) = crate::display::caret_under(sql, (p as usize).saturating_sub(1));
        tb.push(format!("LINE: {line}"));
        tb.push(format!("      {blanks}^"));
    }
    req.error(ename(e), &evalue, &tb);
    ExecuteOutcome::Error {
        ename: ename(e).to_owned(),
        evalue,
        traceback: tb,
    }
}

fn ename(e: &DbError) -> &'static str {
    match e.kind {
        ErrorKind::Connection => "OperationalError",
        ErrorKind::Cancelled => "KeyboardInterrupt",
        ErrorKind::Query => "DatabaseError",
    }
}

fn home_failure(req: &Request, e: &HomeError) -> ExecuteOutcome {
    let evalue = e.to_string();
    req.error("HomeKernelError", &evalue, std::slice::from_ref(&evalue));
    ExecuteOutcome::Error {
        ename: "HomeKernelError".to_owned(),
        evalue,
        traceback: Vec::new(),
    }
}

/// A parsed `%sql` call.
struct Call {
    alias: Option<String>,
    limit: Option<usize>,
    output: Option<String>,
    body: String,
}

impl Sql {
    /// Stop the running statement (interrupt); false when none runs.
    pub fn interrupt(&self) -> bool {
        let Some(c) = self.running.borrow().clone() else {
            return false;
        };
        self.cancelled.set(true);
        match &*c {
            Canceller::Sqlite(db) => db.cancel(),
            Canceller::Postgres(token, tls) => {
                let (token, tls) = (token.clone(), tls.clone());
                tokio::task::spawn_local(async move {
                    if let Err(e) = token.cancel_query(tls).await {
                        tracing::warn!("cancel request failed: {e}");
                    }
                });
            }
        }
        true
    }

    /// Close every connection.
    pub fn shutdown(&self) {
        self.conns.borrow_mut().clear();
    }

    /// `%sql ARGS` (line) or `%%sql ARGS\nBODY` (cell); `store_as` is the `NAME <<` form.
    pub async fn run(
        &self,
        req: &Request,
        home: &Rc<Home>,
        args: &str,
        body: Option<&str>,
        store_as: Option<&str>,
    ) -> Result<ExecuteOutcome, MagicError> {
        let (parsed, rest) = parse_leading("sql", SPECS, args)?;
        if let Some(kv) = parsed.value("config") {
            return self.config(req, kv).map(|()| ExecuteOutcome::ok());
        }
        if parsed.has("connections") {
            self.list(req);
            return Ok(ExecuteOutcome::ok());
        }
        if let Some(name) = parsed.value("close") {
            let removed = self.conns.borrow_mut().remove(name);
            if removed.is_none() {
                return Err(usage(format!("no connection named {name:?}")));
            }
            if self.current.borrow().as_deref() == Some(name) {
                *self.current.borrow_mut() = None;
            }
            req.stream("stdout", &format!("Closed {name}.\n"));
            return Ok(ExecuteOutcome::ok());
        }
        // jupysql's `%%sql NAME <<` first line.
        let mut rest = rest.to_owned();
        let mut store = store_as
            .map(str::to_owned)
            .or_else(|| parsed.value("output").map(str::to_owned));
        if let Some((name, after)) = rest.split_once("<<")
            && !name.trim().is_empty()
            && name.trim().chars().all(|c| c.is_alphanumeric() || c == '_')
        {
            store = Some(name.trim().to_owned());
            rest = after.trim().to_owned();
        }
        let limit = match parsed.value("limit") {
            Some(v) => Some(
                v.parse::<usize>()
                    .map_err(|_| usage(format!("--limit {v:?} is not a number of rows")))?,
            ),
            None => None,
        };
        let call = Call {
            alias: parsed.value("alias").map(str::to_owned),
            limit,
            output: store,
            body: match body {
                Some(b) if rest.trim().is_empty() => b.to_owned(),
                Some(b) => format!("{rest}\n{b}"),
                None => rest,
            },
        };
        if looks_like_url(&call.body) && body.is_none() {
            // `%sql URL --alias NAME`: options may follow the URL too.
            let words = crate::parse::split_args("sql", &call.body)?;
            let (url_text, more) = words.split_first().ok_or_else(|| usage("no URL"))?;
            let after = crate::parse::parse_options("sql", SPECS, more)?;
            if let Some(extra) = after.positional.first() {
                return Err(MagicError::Usage(ParseError::UnexpectedArgument {
                    magic: "sql".to_owned(),
                    arg: extra.clone(),
                }));
            }
            let alias = after.value("alias").map(str::to_owned).or(call.alias);
            return self.connect(req, url_text, alias.as_deref()).await;
        }
        if call.body.trim().is_empty() {
            if let Some(a) = &call.alias {
                if !self.conns.borrow().contains_key(a) {
                    return Err(usage(format!("no connection named {a:?}")));
                }
                *self.current.borrow_mut() = Some(a.clone());
                req.stream("stdout", &format!("Now using {a}.\n"));
                return Ok(ExecuteOutcome::ok());
            }
            return Err(usage(
                "give a query, a connection URL (sqlite://, postgresql://…) or an option; %sql? for help",
            ));
        }
        // `%sql NAME` switches to an existing connection.
        let word = call.body.trim();
        if body.is_none() && self.conns.borrow().contains_key(word) {
            *self.current.borrow_mut() = Some(word.to_owned());
            req.stream("stdout", &format!("Now using {word}.\n"));
            return Ok(ExecuteOutcome::ok());
        }
        Ok(self.query(req, home, call).await)
    }

    fn config(&self, req: &Request, kv: &str) -> Result<(), MagicError> {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| usage(format!("--config takes KEY=VALUE, not {kv:?}")))?;
        match k.trim() {
            "limit" => {
                let n: usize = v
                    .trim()
                    .parse()
                    .map_err(|_| usage(format!("limit {v:?} is not a number of rows")))?;
                self.limit.set(n);
                req.stream("stdout", &format!("limit = {n}\n"));
                Ok(())
            }
            other => Err(usage(format!("unknown setting {other:?} (known: limit)"))),
        }
    }

    async fn connect(
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
            Err(e) => Ok(db_failure(
                req,
                &DbError {
                    kind: ErrorKind::Connection,
                    message: format!("cannot connect to {}: {}", u.masked(), e.message),
                    ..e
                },
                "",
            )),
        }
    }

    fn list(&self, req: &Request) {
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
    /// On failure the error has been shown and the cell's outcome is returned.
    async fn pick(&self, req: &Request, alias: Option<&str>) -> Result<String, ExecuteOutcome> {
        let refuse = |e: MagicError| {
            let msg = e.to_string();
            req.error("UsageError", &msg, std::slice::from_ref(&msg));
            ExecuteOutcome::Error {
                ename: "UsageError".to_owned(),
                evalue: msg,
                traceback: Vec::new(),
            }
        };
        if let Some(a) = alias {
            if self.conns.borrow().contains_key(a) {
                return Ok(a.to_owned());
            }
            return Err(refuse(usage(format!("no connection named {a:?}"))));
        }
        if let Some(c) = self.current.borrow().clone() {
            return Ok(c);
        }
        match std::env::var("DATABASE_URL") {
            Ok(text) if !text.trim().is_empty() => {
                match self.connect(req, &text, Some("default")).await {
                    Ok(ExecuteOutcome::Ok { .. }) => Ok("default".to_owned()),
                    Ok(shown) => Err(shown),
                    Err(e) => Err(refuse(e)),
                }
            }
            _ => Err(refuse(usage(
                "no database connection: connect with %sql sqlite:// (in memory) or \
                 %sql postgresql://user@host/db, or set DATABASE_URL",
            ))),
        }
    }

    /// Take the connection out for a statement, reconnecting a dropped one.
    async fn take(&self, req: &Request, alias: &str) -> Result<Conn, DbError> {
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

    fn give_back(&self, alias: &str, conn: Conn) {
        if let Some(e) = self.conns.borrow_mut().get_mut(alias) {
            e.conn = Some(conn);
        }
    }

    async fn query(&self, req: &Request, home: &Rc<Home>, call: Call) -> ExecuteOutcome {
        let alias = match self.pick(req, call.alias.as_deref()).await {
            Ok(a) => a,
            Err(shown) => return shown,
        };
        let statements = split_statements(&call.body);
        if statements.is_empty() {
            return ExecuteOutcome::ok();
        }
        let mut conn = match self.take(req, &alias).await {
            Ok(c) => c,
            Err(e) => return db_failure(req, &e, ""),
        };
        let postgres = matches!(conn, Conn::Postgres(_));
        let canceller = Rc::new(match &conn {
            Conn::Sqlite(db) => Canceller::Sqlite(db.clone()),
            Conn::Postgres(pg) => {
                let (t, tls) = pg.canceller();
                Canceller::Postgres(t, tls)
            }
        });
        self.cancelled.set(false);
        *self.running.borrow_mut() = Some(canceller);
        let result = self
            .statements(req, home, &mut conn, &statements, postgres, &call)
            .await;
        *self.running.borrow_mut() = None;
        self.give_back(&alias, conn);
        result
    }

    async fn statements(
        &self,
        req: &Request,
        home: &Rc<Home>,
        conn: &mut Conn,
        statements: &[String],
        postgres: bool,
        call: &Call,
    ) -> ExecuteOutcome {
        let limit = call.limit.unwrap_or(self.limit.get());
        let mut shown: Option<(Rows, String, Vec<Param>)> = None;
        let last = statements.len() - 1;
        for (i, stmt) in statements.iter().enumerate() {
            let bound = bind_names(stmt, postgres);
            let params = if bound.names.is_empty() {
                Vec::new()
            } else {
                match self.variables(req, home, &bound.names).await {
                    Ok(p) => p,
                    Err(outcome) => return outcome,
                }
            };
            let want = if i == last && call.output.is_some() {
                Want::All
            } else {
                Want::Page(limit)
            };
            let began = Instant::now();
            let outcome = match conn {
                Conn::Sqlite(db) => db.run(bound.sql.clone(), params.clone(), want).await,
                Conn::Postgres(pg) => pg.run(&bound.sql, &params, want).await,
            };
            tracing::debug!(elapsed = ?began.elapsed(), "statement ran");
            match outcome {
                Ok(Outcome::Rows(rows)) => shown = Some((rows, bound.sql.clone(), params)),
                Ok(Outcome::Affected(n)) => req.stream(
                    "stdout",
                    &format!("{n} row{} affected.\n", if n == 1 { "" } else { "s" }),
                ),
                Ok(Outcome::Done) => {}
                Err(mut e) => {
                    if self.cancelled.get() {
                        e.kind = ErrorKind::Cancelled;
                    }
                    // Positions refer to the statement as sent ($1 for :name): map them back.
                    e.position = e
                        .position
                        .map(|p| bound.original_position(p as usize) as u32);
                    return db_failure(req, &e, stmt);
                }
            }
        }
        let Some((rows, sql, params)) = shown else {
            if let Some(name) = &call.output {
                req.stream(
                    "stderr",
                    &format!(
                        "pxkernel: the last statement returned no rows; nothing stored in {name}.\n"
                    ),
                );
            }
            return ExecuteOutcome::ok();
        };
        if let Some(name) = &call.output {
            return self.store(req, home, name, &rows).await;
        }
        self.show(req, conn, rows, &sql, params, limit).await;
        ExecuteOutcome::ok()
    }

    /// Show a page of rows at once; count the rest afterwards and update the footer.
    async fn show(
        &self,
        req: &Request,
        conn: &mut Conn,
        rows: Rows,
        sql: &str,
        params: Vec<Param>,
        limit: usize,
    ) {
        let shown = rows.rows.len().min(limit);
        let display_id = format!("sql-{}", new_uuid());
        let first_footer = if rows.more {
            format!(
                "showing the first {shown} {} (counting…)",
                if shown == 1 { "row" } else { "rows" }
            )
        } else {
            footer(shown, Some(shown as u64), false)
        };
        let content = |footer_text: String| {
            let t = table(&rows, shown, footer_text);
            json!({"execution_count": req.execution_count, "data": t.bundle(), "metadata": {},
                   "transient": {"display_id": display_id}})
        };
        req.publish("execute_result", &content(first_footer));
        if rows.more {
            let total = match conn {
                Conn::Sqlite(db) => db.count(sql.to_owned(), params).await,
                Conn::Postgres(pg) => pg.count(sql, &params).await,
            };
            let mut c = content(footer(shown, total, true));
            if let Some(obj) = c.as_object_mut() {
                obj.remove("execution_count");
            }
            req.publish("update_display_data", &c);
        }
    }

    async fn variables(
        &self,
        req: &Request,
        home: &Rc<Home>,
        names: &[String],
    ) -> Result<Vec<Param>, ExecuteOutcome> {
        let reply = self
            .helper_call(req, home, transfer::encode_get(names), Vec::new())
            .await?;
        transfer::decode_values(&reply, names).map_err(|e| {
            req.error("NameError", &e, std::slice::from_ref(&e));
            ExecuteOutcome::Error {
                ename: "NameError".to_owned(),
                evalue: e,
                traceback: Vec::new(),
            }
        })
    }

    async fn store(
        &self,
        req: &Request,
        home: &Rc<Home>,
        name: &str,
        rows: &Rows,
    ) -> ExecuteOutcome {
        let started = Instant::now();
        let (meta, buffers) = transfer::encode_store(name, rows);
        tracing::debug!(elapsed = ?started.elapsed(), "result encoded for the home kernel");
        match self.helper_call(req, home, meta, buffers).await {
            Ok(reply) => {
                let kind = reply
                    .get("type")
                    .and_then(|t| t.as_str())
                    .unwrap_or("value")
                    .to_owned();
                req.stream(
                    "stdout",
                    &format!(
                        "Stored {} row{} × {} column{} in {name} ({kind}) in {:.2} s.\n",
                        rows.rows.len(),
                        if rows.rows.len() == 1 { "" } else { "s" },
                        rows.columns.len(),
                        if rows.columns.len() == 1 { "" } else { "s" },
                        started.elapsed().as_secs_f64()
                    ),
                );
                ExecuteOutcome::ok()
            }
            Err(outcome) => outcome,
        }
    }

    /// A round trip to the helper in the home kernel (installed on first use).
    async fn helper_call(
        &self,
        req: &Request,
        home: &Rc<Home>,
        data: serde_json::Value,
        buffers: Vec<Vec<u8>>,
    ) -> Result<serde_json::Value, ExecuteOutcome> {
        let fail_home = |e: HomeError| home_failure(req, &e);
        if !home.is_python(req).await.map_err(fail_home)? {
            let msg = "-o, NAME << and :name need a Python home kernel".to_owned();
            req.error("UsageError", &msg, std::slice::from_ref(&msg));
            return Err(ExecuteOutcome::Error {
                ename: "UsageError".to_owned(),
                evalue: msg,
                traceback: Vec::new(),
            });
        }
        home.install(req, "sql", transfer::HELPER)
            .await
            .map_err(fail_home)?;
        let reply = home
            .comm_call(req, transfer::TARGET, data, buffers)
            .await
            .map_err(fail_home)?;
        if reply.get("ok").and_then(|v| v.as_bool()) == Some(true) {
            Ok(reply)
        } else {
            let err = reply
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("the home kernel's helper failed")
                .to_owned();
            let (ename, evalue) = err.split_once(": ").unwrap_or(("Error", err.as_str()));
            req.error(ename, evalue, std::slice::from_ref(&err));
            Err(ExecuteOutcome::Error {
                ename: ename.to_owned(),
                evalue: evalue.to_owned(),
                traceback: Vec::new(),
            })
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

/// When the cursor is on a table name after FROM or JOIN in a `%sql` cell:
/// the start of that word (code points) and its prefix.
pub fn table_context(code: &str, cursor_pos: usize) -> Option<(usize, String)> {
    let trimmed = code.trim_start();
    let is_sql = trimmed.starts_with("%sql")
        || trimmed.starts_with("%%sql")
        || trimmed
            .split_once("<<")
            .is_some_and(|(_, r)| r.trim_start().starts_with("%sql"));
    if !is_sql {
        return None;
    }
    let byte = crate::registry::byte_offset(code, cursor_pos);
    let before = &code[..byte];
    let word_start = before
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
        .map_or(0, |i| i + 1);
    let prefix = &before[word_start..];
    let keyword = before[..word_start]
        .trim_end()
        .rsplit(|c: char| c.is_whitespace() || c == '(' || c == ',')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(
        keyword.as_str(),
        "from" | "join" | "into" | "update" | "table"
    )
    .then(|| (code[..word_start].chars().count(), prefix.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_complete_after_from_and_join() {
        let cases: &[(&str, Option<(usize, &str)>)] = &[
            ("%sql SELECT * FROM ta", Some((19, "ta"))),
            ("%%sql\nselect a from t1 join w", Some((28, "w"))),
            ("df << %sql select * from ", Some((25, ""))),
            ("%sql SELECT ta", None),
            ("print('from x')", None),
        ];
        for (code, want) in cases {
            let got = table_context(code, code.chars().count());
            assert_eq!(got.as_ref().map(|(s, p)| (*s, p.as_str())), *want, "{code}");
        }
    }

    #[test]
    fn urls_are_recognized() {
        assert!(looks_like_url("sqlite://"));
        assert!(looks_like_url(" postgresql://u@h/d"));
        assert!(!looks_like_url("select 'sqlite://'"));
    }
}
