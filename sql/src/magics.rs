//! The magic of the sql family as declared to the router: `%sql` / `%%sql`.

use pxkernel_contract::spec::{Form, MagicSpec};

/// `%sql` / `%%sql`.
pub const SQL: MagicSpec = MagicSpec {
    name: "sql",
    form: Form::Both,
    summary: "Query SQLite or PostgreSQL: tables in the notebook, DataFrames in the home kernel.",
    usage: "%sql URL [--alias NAME]\n%sql [options] QUERY\n%%sql [options]\nSTATEMENTS\n\
NAME << %sql QUERY\n%sql --connections | --close NAME | --config limit=N",
    options: crate::commands::SPECS,
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
