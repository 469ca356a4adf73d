//! Where a cell changes hands. A cell may mix plain code with pxkernel's line
//! magics, as IPython users write them:
//!
//! ```text
//! x = 5
//! %px print("on every engine")
//! df << %sql SELECT 1
//! ```
//!
//! These pure functions find the forms pxkernel runs itself — jupysql's
//! `NAME << %sql QUERY`, and a line magic of ours starting a line at column 0
//! after plain code — so the session can run the cell piece by piece, in order.

use crate::parse::{Invocation, invocation, parse_leading};
use crate::registry;
use crate::sql::commands::SPECS as SQL_SPECS;

/// jupysql's `NAME << %sql QUERY`, split from what follows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreForm<'a> {
    /// The variable to store into.
    pub name: &'a str,
    /// The rest of the line after `%sql`: options and the query.
    pub args: &'a str,
    /// The following lines, when the line holds no query: they are the query.
    pub body: Option<&'a str>,
    /// The following lines, when the line holds the query: more of the cell.
    pub rest: &'a str,
}

/// The store form that opens `code`, if it does.
pub fn store_form(code: &str) -> Option<StoreForm<'_>> {
    let code = code.trim_start();
    let (first, after_line) = match code.split_once('\n') {
        Some((f, r)) => (f, r),
        None => (code, ""),
    };
    let (name, after) = first.split_once("<<")?;
    let name = name.trim();
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    let args = after.trim_start().strip_prefix("%sql")?;
    if !valid || args.starts_with(|c: char| c.is_alphanumeric()) {
        return None;
    }
    // Unparsable options are the magic's to report; count them as a query.
    let query_on_line =
        parse_leading("sql", SQL_SPECS, args).map_or(true, |(_, query)| !query.trim().is_empty());
    let following = Some(after_line).filter(|r| !r.trim().is_empty());
    Some(if query_on_line {
        StoreForm {
            name,
            args,
            body: None,
            rest: after_line,
        }
    } else {
        StoreForm {
            name,
            args,
            body: following,
            rest: "",
        }
    })
}

/// Whether `line` alone calls one of our line magics (or is a store form).
fn calls_our_line_magic(line: &str) -> bool {
    if !line.starts_with('%') && !line.contains("<<") {
        return false;
    }
    match invocation(line) {
        Some(Invocation::Line { name, .. }) => registry::owns(name, false),
        Some(_) => false,
        None => store_form(line).is_some(),
    }
}

/// Split plain code from the first later line that calls one of our line
/// magics at column 0: `(plain code before it, that line and everything after)`.
/// `None` when the cell is plain code throughout. Lines continuing the line
/// before (`\` at its end) never split. Whether the plain part is complete on
/// its own (not inside an open string) is the home kernel's to say.
pub fn split_at_our_magic(code: &str) -> Option<(&str, &str)> {
    let mut offset = 0;
    let mut seen_code = false;
    let mut continued = false;
    for line in code.split_inclusive('\n') {
        let text = line.trim_end_matches(['\n', '\r']);
        if seen_code && !continued && calls_our_line_magic(text) {
            return Some((&code[..offset], &code[offset..]));
        }
        seen_code |= !text.trim().is_empty();
        continued = text.ends_with('\\');
        offset += line.len();
    }
    None
}

/// A piece of Python that more of its cell follows, ending in `pass`: as in
/// IPython, only the last expression of a whole cell shows its value, so a
/// bare expression that ends a piece must not. Line numbers are unchanged.
pub fn python_piece(code: &str) -> String {
    let mut piece = String::with_capacity(code.len() + 6);
    piece.push_str(code);
    if !code.ends_with('\n') {
        piece.push('\n');
    }
    piece.push_str("pass\n");
    piece
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_piece_ends_in_pass_at_column_0() {
        let cases = [
            ("ends with a newline", "x = 1\nx\n", "x = 1\nx\npass\n"),
            ("no final newline", "x", "x\npass\n"),
            (
                "an indented block is closed",
                "for i in r:\n    i\n",
                "for i in r:\n    i\npass\n",
            ),
        ];
        for (name, code, want) in cases {
            assert_eq!(python_piece(code), want, "{name}");
        }
    }

    #[test]
    fn the_store_form_of_sql() {
        let form = |name, args, body, rest| {
            Some(StoreForm {
                name,
                args,
                body,
                rest,
            })
        };
        let cases = [
            (
                "query on the line",
                "df << %sql SELECT 1",
                form("df", " SELECT 1", None, ""),
            ),
            (
                "query on the next lines",
                "rows<<%sql\nselect 2\nfrom t",
                form("rows", "", Some("select 2\nfrom t"), ""),
            ),
            (
                "options only, query below",
                "r << %sql --alias a\nselect 3",
                form("r", " --alias a", Some("select 3"), ""),
            ),
            (
                "code after a one-line query",
                "r << %sql --limit 5 select 4\nprint(r)\n",
                form("r", " --limit 5 select 4", None, "print(r)\n"),
            ),
            ("a shift", "x = 1 << 2", None),
            ("another magic", "a << %sqlx", None),
            ("not a name", "1a << %sql q", None),
        ];
        for (label, code, want) in cases {
            assert_eq!(store_form(code), want, "{label}");
        }
    }

    #[test]
    fn splits_at_our_line_magics_after_plain_code() {
        // (case, cell, the split: plain code and ours)
        type Case<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);
        let cases: &[Case] = &[
            ("plain code only", "x = 1\ny = 2\n", None),
            ("a magic first is not a split", "%px a = 1\nb = 2", None),
            ("blank lines before a magic", "\n\n%px a = 1\nb = 2", None),
            (
                "px after code",
                "x = 1\n%px print(x)\ny = 2",
                Some(("x = 1\n", "%px print(x)\ny = 2")),
            ),
            (
                "store form after code",
                "n = 3\ndf << %sql SELECT :n\n",
                Some(("n = 3\n", "df << %sql SELECT :n\n")),
            ),
            (
                "the first of several magics",
                "a\n%sql SELECT 1\n%px b\n",
                Some(("a\n", "%sql SELECT 1\n%px b\n")),
            ),
            (
                "indented: inside a block",
                "for i in x:\n    %px f(i)\n",
                None,
            ),
            ("a magic the home kernel owns", "x = 1\n%timeit f()\n", None),
            (
                "a cell magic mid-cell is the home's",
                "x = 1\n%%px\nf()\n",
                None,
            ),
            ("continued line", "x = 1 + \\\n%px\n", None),
            ("shift, not a store form", "y = 1\nx << 2\n", None),
            (
                "CRLF line ends",
                "x = 1\r\n%px f()\r\n",
                Some(("x = 1\r\n", "%px f()\r\n")),
            ),
        ];
        for (name, code, want) in cases {
            assert_eq!(split_at_our_magic(code), *want, "{name}");
        }
    }
}
