//! The SQLite driver (bundled SQLite, no server): one worker thread per
//! connection runs statements; an interrupt handle stops a running one.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, InterruptHandle};
use tokio::sync::oneshot;

use super::driver::{DbError, ErrorKind, Param, Want, counts_rows};
use super::value::{Column, Kind, Outcome, Rows, Value, parse_date, parse_timestamp};

/// How long counting the rest of a shown result may take.
const COUNT_BUDGET: Duration = Duration::from_secs(3);

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// An open SQLite database.
pub struct Sqlite {
    jobs: mpsc::Sender<Job>,
    interrupt: InterruptHandle,
}

fn error(e: rusqlite::Error) -> DbError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::OperationInterrupted =>
        {
            DbError::cancelled()
        }
        // SQLite says where the token it could not take starts (a byte offset).
        rusqlite::Error::SqlInputError {
            msg, sql, offset, ..
        } => DbError {
            position: char_position(&sql, offset),
            ..DbError::query(msg)
        },
        e => DbError::query(e.to_string()),
    }
}

/// A byte offset into `sql` as a 1-based character position; None outside it.
fn char_position(sql: &str, offset: i32) -> Option<u32> {
    let before = sql.get(..usize::try_from(offset).ok()?)?;
    u32::try_from(before.chars().count() + 1).ok()
}

impl Sqlite {
    /// Open a file (created when missing) or, with None, a database in memory.
    pub fn open(path: Option<&Path>) -> Result<Sqlite, DbError> {
        let conn = match path {
            Some(p) => Connection::open(p),
            None => Connection::open_in_memory(),
        }
        .map_err(|e| DbError {
            kind: ErrorKind::Connection,
            ..error(e)
        })?;
        let interrupt = conn.get_interrupt_handle();
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| DbError::connection(format!("cannot start the SQLite thread: {e}")))?;
        Ok(Sqlite {
            jobs: tx,
            interrupt,
        })
    }

    async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> R + Send + 'static,
    ) -> Result<R, DbError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |c| {
                let _ = tx.send(f(c));
            }))
            .map_err(|_| DbError::connection("the SQLite connection is closed"))?;
        rx.await
            .map_err(|_| DbError::connection("the SQLite connection is closed"))
    }

    /// Stop the running statement.
    pub fn cancel(&self) {
        self.interrupt.interrupt();
    }

    /// Run one statement.
    pub async fn run(
        &self,
        sql: String,
        params: Vec<Param>,
        want: Want,
    ) -> Result<Outcome, DbError> {
        self.with(move |c| run(c, &sql, &params, want)).await?
    }

    /// How many rows a query has, when counting them is quick.
    pub async fn count(&self, sql: String, params: Vec<Param>) -> Option<u64> {
        self.with(move |c| count(c, &sql, &params))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    }

    /// Table and view names, for completion.
    pub async fn tables(&self) -> Vec<String> {
        self.with(|c| {
            let mut out = Vec::new();
            if let Ok(mut s) = c.prepare(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name",
            ) && let Ok(rows) = s.query_map([], |r| r.get::<_, String>(0))
            {
                out.extend(rows.flatten());
            }
            out
        })
        .await
        .unwrap_or_default()
    }
}

fn kind_of(decl: Option<&str>) -> Kind {
    let Some(d) = decl.map(str::to_ascii_uppercase) else {
        return Kind::Dynamic;
    };
    if d.contains("BOOL") {
        Kind::Bool
    } else if d.contains("DATETIME") || d.contains("TIMESTAMP") {
        Kind::Timestamp
    } else if d.contains("DATE") {
        Kind::Date
    } else {
        Kind::Dynamic
    }
}

fn value(v: ValueRef<'_>, kind: Kind) -> Value {
    match (v, kind) {
        (ValueRef::Null, _) => Value::Null,
        (ValueRef::Integer(i), Kind::Bool) if i == 0 || i == 1 => Value::Bool(i == 1),
        (ValueRef::Integer(i), _) => Value::Int(i),
        (ValueRef::Real(f), _) => Value::Float(f),
        (ValueRef::Text(t), k) => {
            let s = String::from_utf8_lossy(t);
            match k {
                Kind::Date => parse_date(&s).map(Value::Date),
                Kind::Timestamp => parse_timestamp(&s).map(Value::Timestamp),
                _ => None,
            }
            .unwrap_or_else(|| Value::Text(s.into_owned()))
        }
        (ValueRef::Blob(b), _) => Value::Bytes(b.to_vec()),
    }
}

fn bind(stmt: &mut rusqlite::Statement<'_>, params: &[Param]) -> Result<(), DbError> {
    use rusqlite::types::Value as Sv;
    for (i, p) in params.iter().enumerate() {
        let v = match p {
            Value::Null => Sv::Null,
            Value::Int(i) => Sv::Integer(*i),
            Value::Bool(b) => Sv::Integer(i64::from(*b)),
            Value::Float(f) => Sv::Real(*f),
            Value::Bytes(b) => Sv::Blob(b.clone()),
            other => Sv::Text(other.text().unwrap_or_default()),
        };
        stmt.raw_bind_parameter(i + 1, v).map_err(error)?;
    }
    Ok(())
}

fn run(c: &mut Connection, sql: &str, params: &[Param], want: Want) -> Result<Outcome, DbError> {
    let mut stmt = c.prepare(sql).map_err(error)?;
    bind(&mut stmt, params)?;
    if stmt.column_count() == 0 {
        stmt.raw_execute().map_err(error)?;
        let outcome = if counts_rows(sql) {
            Outcome::Affected(c.changes())
        } else {
            Outcome::Done
        };
        return Ok(outcome);
    }
    let columns: Vec<Column> = stmt
        .columns()
        .iter()
        .map(|col| Column {
            name: col.name().to_owned(),
            kind: kind_of(col.decl_type()),
        })
        .collect();
    let kinds: Vec<Kind> = columns.iter().map(|c| c.kind).collect();
    let limit = match want {
        Want::Page(n) => Some(n),
        Want::All => None,
    };
    let mut rows = stmt.raw_query();
    let mut out: Vec<Vec<Value>> = Vec::new();
    let mut more = false;
    while let Some(row) = rows.next().map_err(error)? {
        if limit.is_some_and(|l| out.len() >= l) {
            more = true;
            break;
        }
        let mut r = Vec::with_capacity(kinds.len());
        for (i, k) in kinds.iter().enumerate() {
            r.push(value(row.get_ref(i).map_err(error)?, *k));
        }
        out.push(r);
    }
    Ok(Outcome::Rows(Rows {
        columns,
        rows: out,
        more,
    }))
}

/// Count the rows of a query by stepping through them, for at most [`COUNT_BUDGET`].
fn count(c: &mut Connection, sql: &str, params: &[Param]) -> Result<Option<u64>, DbError> {
    let mut stmt = c.prepare(sql).map_err(error)?;
    // Counting runs the statement again: only when that changes nothing.
    if !stmt.readonly() {
        return Ok(None);
    }
    bind(&mut stmt, params)?;
    let started = Instant::now();
    let mut rows = stmt.raw_query();
    let mut n = 0u64;
    while rows.next().map_err(error)?.is_some() {
        n += 1;
        if n.is_multiple_of(4096) && started.elapsed() > COUNT_BUDGET {
            return Ok(None);
        }
    }
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn statements_rows_and_types() {
        rt().block_on(async {
            let db = Sqlite::open(None).unwrap();
            let run = |sql: &str, p: Vec<Param>, w: Want| db.run(sql.to_owned(), p, w);
            assert_eq!(
                run("create table t (i integer, f real, s text, b boolean, d date, ts timestamp)", vec![], Want::All).await.unwrap(),
                Outcome::Done
            );
            assert_eq!(
                run("insert into t values (1, 1.5, 'a', 1, '2024-01-01', '2024-01-01 00:00:01'), (2, null, null, 0, null, null)", vec![], Want::All)
                    .await
                    .unwrap(),
                Outcome::Affected(2)
            );
            let out = run("select * from t where i = ?1", vec![Value::Int(1)], Want::All).await.unwrap();
            let Outcome::Rows(rows) = out else { panic!() };
            assert_eq!(
                rows.rows,
                vec![vec![
                    Value::Int(1),
                    Value::Float(1.5),
                    Value::Text("a".into()),
                    Value::Bool(true),
                    Value::Date(19_723),
                    Value::Timestamp(1_704_067_201_000_000),
                ]]
            );
        });
    }

    #[test]
    fn errors_say_where_the_statement_went_wrong() {
        rt().block_on(async {
            let db = Sqlite::open(None).unwrap();
            let cases: &[(&str, &str, &str, Option<u32>)] = &[
                (
                    "misspelt keyword",
                    "selec 1",
                    "near \"selec\": syntax error",
                    Some(1),
                ),
                (
                    "misspelt clause",
                    "select 1 form x",
                    "near \"x\": syntax error",
                    Some(15),
                ),
                (
                    "unknown column",
                    "select 1, nope",
                    "no such column: nope",
                    Some(11),
                ),
                (
                    "unknown function",
                    "select 1, frob(2)",
                    "no such function: frob",
                    Some(11),
                ),
                (
                    "after wide text",
                    "select '東京', nope",
                    "no such column: nope",
                    Some(14),
                ),
                (
                    "unknown table, which SQLite does not place",
                    "select * from nowhere",
                    "no such table: nowhere",
                    None,
                ),
                (
                    "no statement position",
                    "select abs(-9223372036854775807 - 1)",
                    "integer overflow",
                    None,
                ),
            ];
            for (label, sql, message, position) in cases {
                let e = db
                    .run((*sql).to_owned(), vec![], Want::All)
                    .await
                    .unwrap_err();
                assert_eq!(
                    (e.message.as_str(), e.position),
                    (*message, *position),
                    "case {label}"
                );
            }
        });
    }

    #[test]
    fn a_page_knows_there_is_more_and_counts_it() {
        rt().block_on(async {
            let db = Sqlite::open(None).unwrap();
            let sql = "with recursive n(x) as (select 1 union all select x + 1 from n where x < 1000) select x from n";
            let out = db.run(sql.into(), vec![], Want::Page(10)).await.unwrap();
            let Outcome::Rows(rows) = out else { panic!() };
            assert_eq!(rows.rows.len(), 10);
            assert!(rows.more);
            assert_eq!(db.count(sql.into(), vec![]).await, Some(1000));
        });
    }

    #[test]
    fn cancel_interrupts_a_long_query() {
        rt().block_on(async {
            let db = std::sync::Arc::new(Sqlite::open(None).unwrap());
            let sql = "with recursive n(x) as (select 1 union all select x + 1 from n) select count(*) from n";
            let d2 = db.clone();
            let canceller = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                d2.cancel();
            });
            let e = db.run(sql.into(), vec![], Want::All).await.unwrap_err();
            canceller.join().unwrap();
            assert_eq!(e.kind, ErrorKind::Cancelled);
            // Still usable.
            let again = db.run("select 1".into(), vec![], Want::All).await.unwrap();
            let Outcome::Rows(rows) = again else {
                panic!("no rows: {again:?}")
            };
            assert_eq!(rows.rows, vec![vec![Value::Int(1)]]);
        });
    }
}
