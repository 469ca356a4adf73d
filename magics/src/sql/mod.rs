//! `%sql`: query SQLite and PostgreSQL from the notebook.
//!
//! - [`url`]: connection URLs, passwords kept secret, pure.
//! - [`lex`]: statements and `:name` parameters found where they are code, pure.
//! - [`value`]: typed values, result sets and their table form, pure.
//! - [`driver`]: errors, parameters and statement classes shared by drivers.
//! - [`sqlite`], [`postgres`]: the drivers.
//! - [`transfer`]: results into the home kernel (DataFrames) and variables out of it.
//! - [`commands`]: the `%sql` magic.

pub mod commands;
pub mod driver;
pub mod lex;
pub mod postgres;
pub mod sqlite;
pub mod transfer;
pub mod url;
pub mod value;

pub use commands::Sql;
