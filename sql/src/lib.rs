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
//!
//! The drivers and everything that runs statements sit behind the `drivers`
//! feature (on by default): without it the crate is its pure parsers and
//! tables, which the fuzz targets build with no SQLite, TLS or PostgreSQL
//! client to compile.

pub mod claim;
#[cfg(feature = "drivers")]
pub mod commands;
pub mod driver;
#[cfg(feature = "drivers")]
pub mod family;
pub mod lex;
pub mod magics;
#[cfg(feature = "drivers")]
pub mod postgres;
#[cfg(feature = "drivers")]
pub mod sqlite;
pub mod transfer;
pub mod url;
pub mod value;

#[cfg(feature = "drivers")]
pub use commands::Sql;
#[cfg(feature = "drivers")]
pub use family::SqlFamily;
