//! Where a cell changes hands. A cell may mix plain code with pxkernel's line
//! magics, as IPython users write them:
//!
//! ```text
//! x = 5
//! %px print("on every engine")      # a line magic of a family
//! df << %sql SELECT 1               # a line a family claims
//! ```
//!
//! These pure functions find where a family's line (a line magic of ours, or a
//! line a family claims, as jupysql's `NAME << %sql QUERY`) starts at column 0
//! after plain code, so the router can run the cell piece by piece, in order.
//! Which lines are ours is the caller's to say.

/// Split plain code from the first later line that calls one of our line
/// magics at column 0: `(plain code before it, that line and everything after)`.
/// `None` when the cell is plain code throughout. Lines continuing the line
/// before (`\` at its end) never split. Whether the plain part is complete on
/// its own (not inside an open string) is the home kernel's to say.
pub fn split_at_our_magic(
    code: &str,
    calls_our_line_magic: impl Fn(&str) -> bool,
) -> Option<(&str, &str)> {
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

    /// Ours in these cases: two families' line magics `%fan` and `%query`, and a
    /// claimed `NAME << %query` line.
    fn ours(line: &str) -> bool {
        use pxkernel_contract::parse::{Invocation, invocation};
        match invocation(line) {
            Some(Invocation::Line { name, .. }) => {
                line.starts_with('%') && matches!(name, "fan" | "query")
            }
            Some(_) => false,
            None => line.split_once("<<").is_some_and(|(name, rest)| {
                !name.trim().is_empty()
                    && name.trim().chars().all(|c| c.is_alphanumeric() || c == '_')
                    && rest.trim_start().starts_with("%query")
            }),
        }
    }

    #[test]
    fn splits_at_our_line_magics_after_plain_code() {
        // (case, cell, the split: plain code and ours)
        type Case<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);
        let cases: &[Case] = &[
            ("plain code only", "x = 1\ny = 2\n", None),
            ("a magic first is not a split", "%fan a = 1\nb = 2", None),
            ("blank lines before a magic", "\n\n%fan a = 1\nb = 2", None),
            (
                "ours after code",
                "x = 1\n%fan print(x)\ny = 2",
                Some(("x = 1\n", "%fan print(x)\ny = 2")),
            ),
            (
                "store form after code",
                "n = 3\ndf << %query SELECT :n\n",
                Some(("n = 3\n", "df << %query SELECT :n\n")),
            ),
            (
                "the first of several magics",
                "a\n%query SELECT 1\n%fan b\n",
                Some(("a\n", "%query SELECT 1\n%fan b\n")),
            ),
            (
                "indented: inside a block",
                "for i in x:\n    %fan f(i)\n",
                None,
            ),
            ("a magic the home kernel owns", "x = 1\n%timeit f()\n", None),
            (
                "a cell magic mid-cell is the home's",
                "x = 1\n%%fan\nf()\n",
                None,
            ),
            ("continued line", "x = 1 + \\\n%fan\n", None),
            ("shift, not a store form", "y = 1\nx << 2\n", None),
            (
                "CRLF line ends",
                "x = 1\r\n%fan f()\r\n",
                Some(("x = 1\r\n", "%fan f()\r\n")),
            ),
        ];
        for (name, code, want) in cases {
            assert_eq!(split_at_our_magic(code, ours), *want, "{name}");
        }
    }
}
