//! What every driver shares: the error type, parameters, what a statement is
//! asked for (a first page of rows, or all of them), and statement classes.

use super::value::{Outcome, Value};

/// A database error as users should read it: the database's own message, with
/// SQLSTATE and position when the driver gives them. Never contains a password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The database's message.
    pub message: String,
    /// PostgreSQL's SQLSTATE.
    pub sqlstate: Option<String>,
    /// 1-based character position in the statement.
    pub position: Option<u32>,
    /// DETAIL / HINT lines.
    pub detail: Vec<String>,
}

/// Kinds of database failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The statement failed.
    Query,
    /// The connection failed or dropped.
    Connection,
    /// The statement was cancelled (interrupt).
    Cancelled,
}

impl DbError {
    /// A query error with just a message.
    pub fn query(message: impl Into<String>) -> DbError {
        DbError {
            kind: ErrorKind::Query,
            message: message.into(),
            sqlstate: None,
            position: None,
            detail: Vec::new(),
        }
    }

    /// A connection error.
    pub fn connection(message: impl Into<String>) -> DbError {
        DbError {
            kind: ErrorKind::Connection,
            ..DbError::query(message)
        }
    }

    /// The statement was cancelled.
    pub fn cancelled() -> DbError {
        DbError {
            kind: ErrorKind::Cancelled,
            ..DbError::query("query cancelled")
        }
    }
}

/// A bound parameter (from a home-kernel variable).
pub type Param = Value;

/// What a statement's rows are wanted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Showing: fetch at most this many rows (and whether there are more).
    Page(usize),
    /// Storing: fetch every row.
    All,
}

/// A statement's first keyword, lower case.
pub fn first_keyword(sql: &str) -> String {
    let mut rest = sql.trim_start();
    // Skip leading comments.
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r
                .split_once('\n')
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r
                .split_once("*/")
                .map_or("", |(_, after)| after)
                .trim_start();
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Whether a statement reports a count of changed rows.
pub fn counts_rows(sql: &str) -> bool {
    matches!(
        first_keyword(sql).as_str(),
        "insert" | "update" | "delete" | "replace" | "merge" | "copy"
    )
}

/// The footer of a shown result.
pub fn footer(shown: usize, total: Option<u64>, more: bool) -> String {
    let plural = |n: u64| if n == 1 { "row" } else { "rows" };
    match (more, total) {
        (false, _) => format!("{shown} {}", plural(shown as u64)),
        (true, Some(t)) => format!("showing {shown} of {t} {}", plural(t)),
        (true, None) => format!(
            "showing the first {shown} {} (more not counted)",
            plural(shown as u64)
        ),
    }
}

/// What a cell of statements produced: the last rows, counts along the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Ran {
    /// One outcome per statement, in order.
    pub outcomes: Vec<Outcome>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords() {
        assert_eq!(first_keyword("  SELECT 1"), "select");
        assert_eq!(first_keyword("-- c\n/* d */ insert into t"), "insert");
        assert_eq!(
            first_keyword("with x as (select 1) select * from x"),
            "with"
        );
        assert!(counts_rows("UPDATE t SET a = 1"));
        assert!(!counts_rows("create table t (a int)"));
    }

    #[test]
    fn footers() {
        assert_eq!(footer(3, Some(3), false), "3 rows");
        assert_eq!(footer(1, None, false), "1 row");
        assert_eq!(
            footer(10, Some(10_000_000), true),
            "showing 10 of 10000000 rows"
        );
        assert_eq!(
            footer(10, None, true),
            "showing the first 10 rows (more not counted)"
        );
    }
}
