//! `%sql`: query SQLite and PostgreSQL from the notebook.
//!
//! - [`url`]: connection URLs, passwords kept secret, pure.
//! - [`lex`]: statements and `:name` parameters found where they are code, pure.
//! - [`value`]: typed values, result sets and their table form, pure.
//! - [`driver`]: errors, parameters and statement classes shared by drivers.
//! - [`sqlite`], [`postgres`]: the drivers.
//! - [`transfer`]: results into the home kernel (DataFrames) and variables out of it.
//! - [`commands`]: the `%sql` magic.
//! - [`claim`]: jupysql's `NAME << %sql QUERY` line, found in a cell.
//! - [`magics`]: the declaration of `%sql` (forms, options, help).
//! - [`family`]: [`SqlFamily`], the family as the router sees it.

pub mod claim;
pub mod commands;
pub mod driver;
pub mod family;
pub mod lex;
pub mod magics;
pub mod postgres;
pub mod sqlite;
pub mod transfer;
pub mod url;
pub mod value;

pub use commands::Sql;
pub use family::SqlFamily;
