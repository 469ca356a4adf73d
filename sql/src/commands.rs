//! `%sql` and `%%sql`: connect, list and close connections, run statements,
//! show the last rows as a table, store a full result in the home kernel, bind
//! `:name` from home variables, cancel on interrupt.
//!
//! This module parses the call and runs its statements; beside it:
//! - `connections`: open, list, pick and reconnect the named connections.
//! - `home`: `:name` values from the home kernel and results stored in it.

mod connections;
mod home;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use pxkernel_kernel::protocol::new_uuid;
use pxkernel_kernel::server::{ExecuteOutcome, Request};
use serde_json::json;

use self::connections::{Conn, Entry};
use super::driver::{DbError, ErrorKind, Param, Want, footer};
use super::lex::{bind_names, split_statements};
use super::magics::SPECS;
use super::sqlite::Sqlite;
use super::value::{Outcome, Rows, table};
use pxkernel_contract::MagicError;
use pxkernel_contract::home::Home;
use pxkernel_contract::parse::{ParseError, parse_leading};
use pxkernel_ssh::Ssh;
use pxkernel_ssh::master::Settings;

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
    ssh: Rc<Ssh>,
    conns: RefCell<BTreeMap<String, Entry>>,
    current: RefCell<Option<String>>,
    limit: Cell<usize>,
    running: RefCell<Option<Rc<Canceller>>>,
    cancelled: Cell<bool>,
}

impl Default for Sql {
    fn default() -> Self {
        Sql::new(Rc::new(Ssh::new(Settings::default(), "pxkernel".into())))
    }
}

impl Sql {
    /// No connections yet; `--ssh` tunnels are opened on `ssh`.
    pub fn new(ssh: Rc<Ssh>) -> Self {
        Sql {
            ssh,
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

/// A failed cell: one error; the connection and kernel live on.
fn db_failure(e: &DbError, sql: &str) -> MagicError {
    if e.kind == ErrorKind::Cancelled {
        let evalue = "the query was cancelled".to_owned();
        return failure("KeyboardInterrupt", evalue);
    }
    let mut evalue = e.message.clone();
    if let Some(code) = &e.sqlstate {
        evalue.push_str(&format!(" (SQLSTATE {code})"));
    }
    let mut tb = vec![format!("{}: {}", ename(e), evalue)];
    tb.extend(e.detail.iter().cloned());
    if let Some(p) = e.position {
        // Point at the character, in the statement's own line, by display width.
        let (line, blanks) =
            pxkernel_contract::display::caret_under(sql, (p as usize).saturating_sub(1));
        tb.push(format!("LINE: {line}"));
        tb.push(format!("      {blanks}^"));
    }
    MagicError::Failed {
        ename: ename(e).to_owned(),
        evalue,
        traceback: tb,
    }
}

/// A failure shown as its message alone.
fn failure(ename: &str, evalue: String) -> MagicError {
    MagicError::Failed {
        ename: ename.to_owned(),
        traceback: vec![evalue.clone()],
        evalue,
    }
}

fn ename(e: &DbError) -> &'static str {
    match e.kind {
        ErrorKind::Connection => "OperationalError",
        ErrorKind::Cancelled => "KeyboardInterrupt",
        ErrorKind::Query => "DatabaseError",
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
        if parsed.has("ssh") && !(looks_like_url(&call.body) && body.is_none()) {
            return Err(usage(
                "--ssh goes with a URL: %sql postgresql://… --ssh [user@]host",
            ));
        }
        if looks_like_url(&call.body) && body.is_none() {
            // `%sql URL --alias NAME`: options may follow the URL too.
            let words = pxkernel_contract::parse::split_args("sql", &call.body)?;
            let (url_text, more) = words.split_first().ok_or_else(|| usage("no URL"))?;
            let after = pxkernel_contract::parse::parse_options("sql", SPECS, more)?;
            if let Some(extra) = after.positional.first() {
                return Err(MagicError::Usage(ParseError::UnexpectedArgument {
                    magic: "sql".to_owned(),
                    arg: extra.clone(),
                }));
            }
            let alias = after.value("alias").map(str::to_owned).or(call.alias);
            let via = after.value("ssh").or(parsed.value("ssh"));
            return self.connect(req, url_text, alias.as_deref(), via).await;
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
        self.query(req, home, call).await
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

    async fn query(
        &self,
        req: &Request,
        home: &Rc<Home>,
        call: Call,
    ) -> Result<ExecuteOutcome, MagicError> {
        let alias = self.pick(req, call.alias.as_deref()).await?;
        let statements = split_statements(&call.body);
        if statements.is_empty() {
            return Ok(ExecuteOutcome::ok());
        }
        let mut conn = self
            .take(req, &alias)
            .await
            .map_err(|e| db_failure(&e, ""))?;
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
    ) -> Result<ExecuteOutcome, MagicError> {
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
                    Err(e) => return Err(e),
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
                    return Err(db_failure(&e, stmt));
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
            return Ok(ExecuteOutcome::ok());
        };
        if let Some(name) = &call.output {
            return self.store(req, home, name, &rows).await;
        }
        self.show(req, conn, rows, &sql, params, limit).await;
        Ok(ExecuteOutcome::ok())
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
    let byte = pxkernel_contract::spec::byte_offset(code, cursor_pos);
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
mod tests;
