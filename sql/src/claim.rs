//! jupysql's `NAME << %sql QUERY`: the one line the sql family claims though it
//! does not start with `%`, split from what follows it, as a pure function.

use pxkernel_contract::parse::parse_leading;

use crate::magics::SPECS as SQL_SPECS;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
