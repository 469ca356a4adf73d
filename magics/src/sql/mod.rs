//! `%sql`: query SQLite and PostgreSQL from the notebook.
//!
//! - [`url`]: connection URLs, passwords kept secret, pure.
//! - [`lex`]: statements and `:name` parameters found where they are code, pure.

pub mod lex;
pub mod url;
