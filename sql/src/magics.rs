//! The magic of the sql family as declared to the router: `%sql` / `%%sql`.

use pxkernel_contract::parse::{OptSpec, Takes};
use pxkernel_contract::spec::{Form, MagicSpec};

/// `%sql` / `%%sql`.
pub const SQL: MagicSpec = MagicSpec {
    name: "sql",
    form: Form::Both,
    summary: "Query SQLite or PostgreSQL: tables in the notebook, DataFrames in the home kernel.",
    usage: "%sql URL [--alias NAME]\n%sql [options] QUERY\n%%sql [options]\nSTATEMENTS\n\
NAME << %sql QUERY\n%sql --connections | --close NAME | --config limit=N",
    options: SPECS,
    subcommands: &[],
    details: "URLs: sqlite:// (in memory), sqlite:///relative.db, sqlite:////abs/path.db, \
postgresql://user:password@host:port/db?sslmode=require (disable, prefer, require, verify-ca, \
verify-full with sslrootcert=FILE; connect_timeout, application_name). With no connection, \
DATABASE_URL is used. Statements separated by ; run in order; the last one that returns rows \
is shown (the first rows at once, counted after). :name binds the home kernel's variable name \
as a parameter. -o NAME or NAME << stores the whole result in the home kernel as a pandas \
DataFrame (a list of dicts without pandas). Interrupt cancels the query on the server.",
};

/// Every magic of the family.
pub const MAGICS: &[MagicSpec] = &[SQL];

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
    OptSpec::new(
        "ssh",
        None,
        Takes::Value("DEST"),
        "with a URL: reach the database through an SSH tunnel via DEST ([user@]host[:port])",
    ),
];
