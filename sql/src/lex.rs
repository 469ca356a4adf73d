//! SQL text as regions of code, quoted text and comments — enough to split a
//! cell into statements at the right semicolons and to find `:name` parameters
//! only where they are code. Knows `'…'` (with `''`), `E'…'` (with `\`), `"…"`,
//! `$tag$…$tag$`, `-- …` and nested `/* … */`. Pure functions.

/// What a byte range of SQL is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// SQL proper.
    Code,
    /// A string, quoted identifier or dollar-quoted body.
    Quoted,
    /// A comment.
    Comment,
}

/// Split `sql` into regions (byte ranges). Unclosed quotes or comments run to the end.
pub fn regions(sql: &str) -> Vec<(usize, usize, Region)> {
    let b = sql.as_bytes();
    let mut out: Vec<(usize, usize, Region)> = Vec::new();
    let mut push = |s: usize, e: usize, r: Region| {
        if e > s {
            match out.last_mut() {
                Some(last) if last.2 == r && last.1 == s => last.1 = e,
                _ => out.push((s, e, r)),
            }
        }
    };
    let mut i = 0;
    let mut code_start = 0;
    while i < b.len() {
        let c = b[i];
        let (end, region) = match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let e = sql[i..].find('\n').map_or(b.len(), |n| i + n);
                (e, Region::Comment)
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                let mut j = i;
                let mut e = b.len();
                while j + 1 < b.len() {
                    if b[j] == b'/' && b[j + 1] == b'*' {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b[j + 1] == b'/' {
                        depth -= 1;
                        j += 2;
                        if depth == 0 {
                            e = j;
                            break;
                        }
                    } else {
                        j += 1;
                    }
                }
                (e, Region::Comment)
            }
            b'\'' => {
                let escapes = i > 0
                    && matches!(b[i - 1], b'E' | b'e')
                    && (i < 2 || !(b[i - 2].is_ascii_alphanumeric() || b[i - 2] == b'_'));
                (quoted_end(b, i, b'\'', escapes), Region::Quoted)
            }
            b'"' => (quoted_end(b, i, b'"', false), Region::Quoted),
            b'$' => match dollar_tag(sql, i) {
                Some(tag) => {
                    let body = i + tag.len();
                    let e = sql[body..]
                        .find(tag)
                        .map_or(b.len(), |n| body + n + tag.len());
                    (e, Region::Quoted)
                }
                None => {
                    i += 1;
                    continue;
                }
            },
            _ => {
                i += 1;
                continue;
            }
        };
        push(code_start, i, Region::Code);
        push(i, end, region);
        i = end;
        code_start = end;
    }
    push(code_start, b.len(), Region::Code);
    out
}

/// The end (exclusive) of a quoted run starting at `start`; a doubled quote is
/// an escaped quote; with `backslash`, `\x` escapes too.
fn quoted_end(b: &[u8], start: usize, q: u8, backslash: bool) -> usize {
    let mut j = start + 1;
    while j < b.len() {
        if backslash && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// `$tag$` or `$$` at `i` (not `$1`, a positional parameter).
fn dollar_tag(sql: &str, i: usize) -> Option<&str> {
    let rest = &sql[i + 1..];
    let end = rest.find('$')?;
    let tag = &rest[..end];
    let ok = tag.is_empty()
        || (tag
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && tag.chars().all(|c| c.is_alphanumeric() || c == '_'));
    // An identifier ending in $ (`a$`) is not a quote.
    let prev_ident = i > 0 && {
        let p = sql.as_bytes()[i - 1];
        p.is_ascii_alphanumeric() || p == b'_'
    };
    (ok && !prev_ident).then(|| &sql[i..i + end + 2])
}

/// The statements of a cell, trimmed, without those that are only comments.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut has_code = false;
    for (s, e, r) in regions(sql) {
        if r != Region::Code {
            has_code |= r == Region::Quoted;
            continue;
        }
        let mut from = s;
        for (k, ch) in sql[s..e].char_indices() {
            if ch == ';' {
                let at = s + k;
                has_code |= !sql[from..at].trim().is_empty();
                if has_code {
                    out.push(sql[start..at].trim().to_owned());
                }
                start = at + 1;
                from = at + 1;
                has_code = false;
            }
        }
        has_code |= !sql[from..e].trim().is_empty();
    }
    if has_code {
        out.push(sql[start..].trim().to_owned());
    }
    out
}

/// A statement with its `:name` parameters replaced by numbered placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    /// The SQL with placeholders.
    pub sql: String,
    /// Parameter names; placeholder k (from 1) is `names[k - 1]`.
    pub names: Vec<String>,
    /// Each replacement, in characters: (start in `sql`, its length, length of the `:name`).
    replaced: Vec<(usize, usize, usize)>,
}

impl Bound {
    /// A 1-based character position in `sql` as a position in the original text.
    pub fn original_position(&self, position: usize) -> usize {
        let mut shift: isize = 0;
        for &(start, new_len, old_len) in &self.replaced {
            if start + 1 > position {
                break;
            }
            if position <= start + new_len {
                // Inside a placeholder: point at the start of its name.
                return (start as isize + shift + 1) as usize;
            }
            shift += old_len as isize - new_len as isize;
        }
        (position as isize + shift).max(1) as usize
    }
}

/// Replace `:name` (outside quotes and comments, not `::cast`) by `$k` (PostgreSQL)
/// or `?k` (SQLite); a name used twice gets the same number.
pub fn bind_names(sql: &str, dollar: bool) -> Bound {
    let mut out = String::with_capacity(sql.len());
    let mut names: Vec<String> = Vec::new();
    let mut replaced = Vec::new();
    for (s, e, r) in regions(sql) {
        let part = &sql[s..e];
        if r != Region::Code {
            out.push_str(part);
            continue;
        }
        let b = part.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let starts_name = b[i] == b':'
                && b.get(i + 1)
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
                && (i == 0 || b[i - 1] != b':')
                && !(s + i > 0 && i == 0 && sql.as_bytes()[s - 1] == b':');
            if starts_name {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                let name = &part[i + 1..j];
                let k = match names.iter().position(|n| n == name) {
                    Some(p) => p + 1,
                    None => {
                        names.push(name.to_owned());
                        names.len()
                    }
                };
                let placeholder = format!("{}{k}", if dollar { '$' } else { '?' });
                replaced.push((
                    out.chars().count(),
                    placeholder.len(),
                    part[i..j].chars().count(),
                ));
                out.push_str(&placeholder);
                i = j;
            } else {
                let ch = part[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    Bound {
        sql: out,
        names,
        replaced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("one", "select 1", &["select 1"]),
            ("two", "select 1; select 2;", &["select 1", "select 2"]),
            (
                "semicolon in a string",
                "insert into t values ('a;b'); select 2",
                &["insert into t values ('a;b')", "select 2"],
            ),
            (
                "doubled quote",
                "select 'it''s; fine'; select 3",
                &["select 'it''s; fine'", "select 3"],
            ),
            (
                "escape string",
                r"select E'a\';b'; select 4",
                &[r"select E'a\';b'", "select 4"],
            ),
            (
                "quoted identifier",
                r#"select 1 as "a;b"; select 5"#,
                &[r#"select 1 as "a;b""#, "select 5"],
            ),
            (
                "line comment",
                "select 1 -- a; comment\n; select 6",
                &["select 1 -- a; comment", "select 6"],
            ),
            (
                "block comment, nested",
                "select /* a; /* b; */ c; */ 1; select 7",
                &["select /* a; /* b; */ c; */ 1", "select 7"],
            ),
            (
                "dollar quoted body",
                "create function f() returns int as $$ begin; return 1; end $$ language plpgsql; select 8",
                &[
                    "create function f() returns int as $$ begin; return 1; end $$ language plpgsql",
                    "select 8",
                ],
            ),
            (
                "tagged dollar quote",
                "do $body$ begin perform 1; end $body$; select 9",
                &["do $body$ begin perform 1; end $body$", "select 9"],
            ),
            (
                "positional parameter is not a quote",
                "select $1; select $2",
                &["select $1", "select $2"],
            ),
            (
                "comment-only statements dropped",
                "-- nothing\n; select 10; /* x */",
                &["select 10"],
            ),
            ("empty statements dropped", ";;select 11;;", &["select 11"]),
            (
                "unclosed quote runs to the end",
                "select 'a;b",
                &["select 'a;b"],
            ),
        ];
        for (label, sql, want) in cases {
            assert_eq!(split_statements(sql), *want, "case {label}");
        }
    }

    #[test]
    fn positions_map_back_to_the_original_text() {
        let b = bind_names("select :long_name, 1 +* 2", true);
        assert_eq!(b.sql, "select $1, 1 +* 2");
        // `*` is character 15 in the rewritten text, 23 in the original.
        assert_eq!(b.original_position(15), 23);
        assert_eq!(b.original_position(1), 1);
        // Inside the placeholder: the start of its name.
        assert_eq!(b.original_position(9), 8);
    }

    #[test]
    fn binding_names() {
        let cases: &[(&str, &str, bool, &str, &[&str])] = &[
            (
                "simple",
                "select * from t where a = :x",
                true,
                "select * from t where a = $1",
                &["x"],
            ),
            (
                "repeated",
                "select :x + :y + :x",
                true,
                "select $1 + $2 + $1",
                &["x", "y"],
            ),
            (
                "sqlite style",
                "select :x, :y_2",
                false,
                "select ?1, ?2",
                &["x", "y_2"],
            ),
            (
                "cast is not a name",
                "select a::int, :v::text",
                true,
                "select a::int, $1::text",
                &["v"],
            ),
            (
                "not in strings",
                "select ':x', \":y\", :z",
                true,
                "select ':x', \":y\", $1",
                &["z"],
            ),
            (
                "not in comments",
                "select 1 -- :x\n, :y /* :z */",
                true,
                "select 1 -- :x\n, $1 /* :z */",
                &["y"],
            ),
            (
                "not in dollar quotes",
                "select $$ :x $$, :w",
                true,
                "select $$ :x $$, $1",
                &["w"],
            ),
            (
                "array slices are not names",
                "select a[1:2] from t",
                true,
                "select a[1:2] from t",
                &[],
            ),
            ("no names", "select 1", true, "select 1", &[]),
        ];
        for (label, sql, dollar, want, names) in cases {
            let b = bind_names(sql, *dollar);
            assert_eq!(b.sql, *want, "case {label}");
            assert_eq!(b.names, *names, "case {label}");
        }
    }
}
