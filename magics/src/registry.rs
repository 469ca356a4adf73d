//! The magics pxkernel owns: their names, kinds, option specs and help, plus the
//! completion of magic names and options. A magic not listed here is passed to
//! the home kernel unchanged.

use crate::parse::{OptSpec, Takes};

/// How a magic may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `%name` only.
    Line,
    /// `%%name` only.
    Cell,
    /// Both `%name` and `%%name`.
    Both,
}

/// The declaration of one magic.
#[derive(Clone, Copy, Debug)]
pub struct MagicSpec {
    /// The name without `%`.
    pub name: &'static str,
    /// Line, cell or both.
    pub form: Form,
    /// One line, for `%lsmagic`.
    pub summary: &'static str,
    /// Usage lines, for help.
    pub usage: &'static str,
    /// Its options.
    pub options: &'static [OptSpec],
    /// Longer help, after the options.
    pub details: &'static str,
}

impl MagicSpec {
    /// The full help text shown by `%name?` and inspect.
    pub fn help(&self) -> String {
        let mut out = format!("{}\n\n{}\n", self.usage.trim_end(), self.summary);
        if !self.options.is_empty() {
            out.push_str("\nOptions:\n");
            for o in self.options {
                let mut flag = match o.short {
                    Some(c) => format!("  -{c}, --{}", o.long),
                    None => format!("      --{}", o.long),
                };
                if let Takes::Value(m) = o.takes {
                    flag.push(' ');
                    flag.push_str(m);
                }
                out.push_str(&format!("{flag:<32} {}\n", o.help));
            }
        }
        if !self.details.is_empty() {
            out.push('\n');
            out.push_str(self.details.trim_end());
            out.push('\n');
        }
        out
    }

    fn line(&self) -> bool {
        matches!(self.form, Form::Line | Form::Both)
    }

    fn cell(&self) -> bool {
        matches!(self.form, Form::Cell | Form::Both)
    }
}

/// `%lsmagic`.
pub const LSMAGIC: MagicSpec = MagicSpec {
    name: "lsmagic",
    form: Form::Line,
    summary: "List the magics pxkernel runs itself; every other magic goes to the home kernel.",
    usage: "%lsmagic",
    options: &[],
    details: "Magics not in this list (%timeit, %matplotlib, %%time, !cmd, …) are passed \
to the home kernel unchanged. Add ? to a magic for its help, e.g. %lsmagic?",
};

/// Every magic pxkernel owns.
pub const MAGICS: &[MagicSpec] = &[LSMAGIC];

/// The magic of this name.
pub fn find(name: &str) -> Option<&'static MagicSpec> {
    MAGICS.iter().find(|m| m.name == name)
}

/// Whether `%name` (cell = false) or `%%name` (cell = true) is ours.
pub fn owns(name: &str, cell: bool) -> bool {
    find(name).is_some_and(|m| if cell { m.cell() } else { m.line() })
}

/// What is being completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionKind {
    /// A magic name: the home kernel may add its own magics.
    MagicName,
    /// An option of one of our magics.
    Option,
}

/// Completions for the text before the cursor, when the cursor is on a magic
/// name or on an option of one of our magics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// What is being completed.
    pub kind: CompletionKind,
    /// Candidates, replacing `start..end`.
    pub matches: Vec<String>,
    /// Start of the replaced range, in code points.
    pub start: usize,
    /// End of the replaced range, in code points.
    pub end: usize,
}

/// Convert a code-point offset into a byte offset of `s` (clamped).
pub fn byte_offset(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(i, _)| i)
}

fn char_count(s: &str) -> usize {
    s.chars().count()
}

/// Complete magic names (`%p` → `%px`…) and options (`%px --ta` → `--targets`).
pub fn complete(code: &str, cursor_pos: usize) -> Option<Completion> {
    let cursor = byte_offset(code, cursor_pos);
    let line_start = code[..cursor].rfind('\n').map_or(0, |i| i + 1);
    let before = &code[line_start..cursor];
    let trimmed = before.trim_start();
    let indent = before.len() - trimmed.len();
    let after_len = code[cursor..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(code.len() - cursor);
    let end = char_count(&code[..cursor + after_len]);
    // A magic name being typed: `%na` or `%%na`, at the start of its line.
    let percents = trimmed.len() - trimmed.trim_start_matches('%').len();
    let word = &trimmed[percents..];
    if (1..=2).contains(&percents) && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        let cell = percents == 2;
        let mut matches: Vec<String> = MAGICS
            .iter()
            .filter(|m| m.name.starts_with(word))
            .flat_map(|m| {
                let mut v = Vec::new();
                if m.line() && !cell {
                    v.push(format!("%{}", m.name));
                }
                if m.cell() {
                    v.push(format!("%%{}", m.name));
                }
                v
            })
            .collect();
        matches.sort();
        matches.dedup();
        let start = char_count(&code[..line_start + indent]);
        return Some(Completion {
            kind: CompletionKind::MagicName,
            matches,
            start,
            end,
        });
    }
    // An option of one of our magics: `%name … --par`.
    if percents == 0 || percents > 2 {
        return None;
    }
    let name_len = word
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(word.len());
    let spec = find(&word[..name_len])?;
    let token_start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
    let token = &before[token_start..];
    if !token.starts_with('-') {
        return None;
    }
    let stem = token.trim_start_matches('-');
    let matches: Vec<String> = spec
        .options
        .iter()
        .filter(|o| o.long.starts_with(stem))
        .map(|o| format!("--{}", o.long))
        .collect();
    Some(Completion {
        kind: CompletionKind::Option,
        matches,
        start: char_count(&code[..line_start + token_start]),
        end,
    })
}

/// The magic whose name the cursor is on (for inspect), e.g. `%lsmagic` in `%lsmagic`.
pub fn magic_at(code: &str, cursor_pos: usize) -> Option<&'static MagicSpec> {
    let cursor = byte_offset(code, cursor_pos);
    let line_start = code[..cursor].rfind('\n').map_or(0, |i| i + 1);
    let line_end = code[cursor..].find('\n').map_or(code.len(), |i| cursor + i);
    let line = code[line_start..line_end].trim_start();
    let word = line.trim_start_matches('%');
    if word.len() == line.len() {
        return None;
    }
    let name_len = word
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(word.len());
    // Only when the cursor is within (or just after) the magic's first word.
    let name_end = line_start
        + (code[line_start..line_end].len() - line.len())
        + (line.len() - word.len())
        + name_len;
    (cursor <= name_end)
        .then(|| find(&word[..name_len]))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_magic_names() {
        let cases: &[(&str, &str, usize, &[&str], usize)] = &[
            ("line prefix", "%ls", 3, &["%lsmagic"], 0),
            ("all line magics", "%", 1, &["%lsmagic"], 0),
            ("indented", "x\n  %lsm", 8, &["%lsmagic"], 4),
            ("no cell form of lsmagic", "%%ls", 4, &[], 0),
            ("unknown prefix", "%zz", 3, &[], 0),
        ];
        for (label, code, cursor, want, start) in cases {
            let c = complete(code, *cursor).unwrap_or_else(|| panic!("case {label}: none"));
            assert_eq!(c.matches, *want, "case {label}");
            assert_eq!(c.start, *start, "case {label}");
            assert_eq!(c.end, *cursor, "case {label}");
        }
    }

    #[test]
    fn leaves_plain_code_to_the_home_kernel() {
        for (code, cursor) in [("pri", 3), ("x % y", 5), ("%timeit --n", 11)] {
            assert_eq!(complete(code, cursor), None, "{code}");
        }
    }

    #[test]
    fn cursor_in_code_points() {
        let c = complete("é = 1\n%ls", 9).unwrap();
        assert_eq!((c.start, c.end), (6, 9));
    }

    #[test]
    fn inspect_finds_the_magic_under_the_cursor() {
        assert_eq!(magic_at("%lsmagic", 3).map(|m| m.name), Some("lsmagic"));
        assert_eq!(magic_at("%lsmagic", 8).map(|m| m.name), Some("lsmagic"));
        assert!(magic_at("print(1)", 3).is_none());
        assert!(magic_at("%timeit x", 3).is_none());
    }

    #[test]
    fn help_lists_usage_summary_and_options() {
        let h = LSMAGIC.help();
        assert!(h.starts_with("%lsmagic\n"));
        assert!(h.contains("home kernel"));
    }
}
