//! How a magic is declared ([`MagicSpec`]: name, forms, option specs, help) and
//! the [`Index`] of every declared magic that a router builds from its families:
//! lookup by name, the completion of magic names, options and subcommands, and
//! the magic under the cursor (for inspect). Pure: no family is named here.

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
    /// Subcommands (first word), if it has any.
    pub subcommands: &'static [&'static str],
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
                    // A one-letter option is its short form: `-n N`, not `-n, --n N`.
                    Some(c) if o.flag() == format!("-{c}") => format!("  -{c}"),
                    Some(c) => format!("  -{c}, {}", o.flag()),
                    None => format!("      {}", o.flag()),
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

    /// Whether it may be written `%name`.
    pub fn line(&self) -> bool {
        matches!(self.form, Form::Line | Form::Both)
    }

    /// Whether it may be written `%%name`.
    pub fn cell(&self) -> bool {
        matches!(self.form, Form::Cell | Form::Both)
    }

    /// How `%lsmagic` lists it: `%name`, `%%name`, or `%name, %%name`.
    pub fn forms(&self) -> String {
        match self.form {
            Form::Line => format!("%{}", self.name),
            Form::Cell => format!("%%{}", self.name),
            Form::Both => format!("%{0}, %%{0}", self.name),
        }
    }
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

/// Every magic a router serves, in the order its families were given.
#[derive(Clone, Debug, Default)]
pub struct Index {
    specs: Vec<&'static MagicSpec>,
}

impl Index {
    /// An index of these declarations.
    pub fn new(specs: Vec<&'static MagicSpec>) -> Index {
        Index { specs }
    }

    /// Every declared magic.
    pub fn specs(&self) -> &[&'static MagicSpec] {
        &self.specs
    }

    /// The magic of this name.
    pub fn find(&self, name: &str) -> Option<&'static MagicSpec> {
        self.specs.iter().copied().find(|m| m.name == name)
    }

    /// Whether `%name` (cell = false) or `%%name` (cell = true) is declared.
    pub fn owns(&self, name: &str, cell: bool) -> bool {
        self.find(name)
            .is_some_and(|m| if cell { m.cell() } else { m.line() })
    }

    /// Complete magic names (`%p` → `%px`…) and options (`%px --ta` → `--targets`).
    pub fn complete(&self, code: &str, cursor_pos: usize) -> Option<Completion> {
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
        if (1..=2).contains(&percents)
            && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            let cell = percents == 2;
            let mut matches: Vec<String> = self
                .specs
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
            // By name, the line form before the cell form: %px, %%px, %pxconfig.
            matches.sort_by(|a, b| {
                let key = |m: &String| (m.trim_start_matches('%').to_owned(), m.len());
                key(a).cmp(&key(b))
            });
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
        let spec = self.find(&word[..name_len])?;
        let token_start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let token = &before[token_start..];
        if !token.starts_with('-') {
            // The first word after the magic's name: its subcommands.
            let after_name = word[name_len..].trim_start();
            if !spec.subcommands.is_empty() && !after_name.contains(char::is_whitespace) {
                return Some(Completion {
                    kind: CompletionKind::Option,
                    matches: spec
                        .subcommands
                        .iter()
                        .filter(|s| s.starts_with(after_name))
                        .map(|s| (*s).to_owned())
                        .collect(),
                    start: char_count(&code[..line_start + token_start]),
                    end,
                });
            }
            return None;
        }
        let stem = token.trim_start_matches('-');
        let matches: Vec<String> = spec
            .options
            .iter()
            .filter(|o| o.long.starts_with(stem))
            .map(|o| o.flag())
            .collect();
        Some(Completion {
            kind: CompletionKind::Option,
            matches,
            start: char_count(&code[..line_start + token_start]),
            end,
        })
    }

    /// The magic whose name the cursor is on (for inspect), e.g. `%lsmagic` in `%lsmagic`.
    pub fn magic_at(&self, code: &str, cursor_pos: usize) -> Option<&'static MagicSpec> {
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
            .then(|| self.find(&word[..name_len]))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_FORMS: MagicSpec = MagicSpec {
        name: "fan",
        form: Form::Both,
        summary: "Fan out.",
        usage: "%fan [options] CODE\n%%fan [options]",
        options: &[
            OptSpec::new("targets", Some('t'), Takes::Value("T"), "which"),
            OptSpec::new("block", None, Takes::Nothing, "wait"),
            OptSpec::new("no-stream", None, Takes::Nothing, "at the end"),
            OptSpec::new("n", Some('n'), Takes::Value("N"), "how many"),
        ],
        subcommands: &[],
        details: "",
    };
    const FANCONFIG: MagicSpec = MagicSpec {
        name: "fanconfig",
        form: Form::Line,
        summary: "Configure.",
        usage: "%fanconfig",
        options: &[],
        subcommands: &[],
        details: "",
    };
    const POOL: MagicSpec = MagicSpec {
        name: "pool",
        form: Form::Line,
        summary: "Manage the pool.",
        usage: "%pool start|stop",
        options: &[OptSpec::new(
            "kernel",
            None,
            Takes::Value("K"),
            "which kernel",
        )],
        subcommands: &["start", "stop", "status"],
        details: "More.",
    };
    const QUERY: MagicSpec = MagicSpec {
        name: "query",
        form: Form::Cell,
        summary: "Query.",
        usage: "%%query",
        options: &[],
        subcommands: &[],
        details: "",
    };

    fn index() -> Index {
        Index::new(vec![&TWO_FORMS, &FANCONFIG, &POOL, &QUERY])
    }

    #[test]
    fn completes_magic_names_in_both_forms() {
        let cases: &[(&str, &str, usize, &[&str], usize)] = &[
            ("line prefix", "%po", 3, &["%pool"], 0),
            (
                "every magic",
                "%",
                1,
                &["%fan", "%%fan", "%fanconfig", "%pool", "%%query"],
                0,
            ),
            (
                "a family of names",
                "%fan",
                4,
                &["%fan", "%%fan", "%fanconfig"],
                0,
            ),
            ("cell magics", "%%f", 3, &["%%fan"], 0),
            ("indented", "x\n  %po", 7, &["%pool"], 4),
            ("no cell form", "%%po", 4, &[], 0),
            ("unknown prefix", "%zz", 3, &[], 0),
        ];
        for (label, code, cursor, want, start) in cases {
            let c = index()
                .complete(code, *cursor)
                .unwrap_or_else(|| panic!("case {label}: none"));
            assert_eq!(c.kind, CompletionKind::MagicName, "case {label}");
            assert_eq!(c.matches, *want, "case {label}");
            assert_eq!(c.start, *start, "case {label}");
            assert_eq!(c.end, *cursor, "case {label}");
        }
    }

    #[test]
    fn completes_options_and_subcommands() {
        let cases: &[(&str, &str, &[&str], usize)] = &[
            ("an option", "%fan --ta", &["--targets"], 5),
            ("by prefix", "%fan --no", &["--no-stream"], 5),
            (
                "a one-letter option reads -n",
                "%fan -",
                &["--targets", "--block", "--no-stream", "-n"],
                5,
            ),
            ("cell form option", "%%fan --bl", &["--block"], 6),
            ("subcommand", "%pool st", &["start", "stop", "status"], 6),
            (
                "option of a subcommand",
                "%pool start --ke",
                &["--kernel"],
                12,
            ),
        ];
        for (label, code, want, start) in cases {
            let c = index()
                .complete(code, code.chars().count())
                .unwrap_or_else(|| panic!("case {label}"));
            assert_eq!(c.kind, CompletionKind::Option, "case {label}");
            assert_eq!(c.matches, *want, "case {label}");
            assert_eq!(c.start, *start, "case {label}");
        }
    }

    #[test]
    fn leaves_other_code_alone() {
        for (code, cursor) in [("pri", 3), ("x % y", 5), ("%timeit --n", 11)] {
            assert_eq!(index().complete(code, cursor), None, "{code}");
        }
    }

    #[test]
    fn cursor_in_code_points() {
        let c = index().complete("é = 1\n%po", 9).unwrap();
        assert_eq!((c.start, c.end), (6, 9));
    }

    #[test]
    fn finds_owns_and_inspects_by_form() {
        let ix = index();
        assert_eq!(ix.find("pool").map(|m| m.summary), Some("Manage the pool."));
        assert!(ix.owns("fan", false) && ix.owns("fan", true));
        assert!(ix.owns("pool", false) && !ix.owns("pool", true));
        assert!(!ix.owns("query", false) && ix.owns("query", true));
        assert!(!ix.owns("timeit", false));
        assert_eq!(ix.magic_at("%pool start", 3).map(|m| m.name), Some("pool"));
        assert_eq!(ix.magic_at("%pool", 5).map(|m| m.name), Some("pool"));
        assert!(ix.magic_at("%pool start", 8).is_none(), "past the name");
        assert!(ix.magic_at("print(1)", 3).is_none());
        assert!(ix.magic_at("%timeit x", 3).is_none());
    }

    #[test]
    fn help_lists_usage_summary_options_and_details() {
        let help = POOL.help();
        assert!(
            help.starts_with("%pool start|stop\n\nManage the pool.\n"),
            "{help}"
        );
        assert!(help.contains("\n      --kernel K "), "{help}");
        assert!(help.ends_with("More.\n"), "{help}");
        let help = TWO_FORMS.help();
        assert!(help.contains("\n  -t, --targets T "), "{help}");
        assert!(help.contains("\n  -n N "), "{help}");
        assert!(!help.contains("--n "), "{help}");
        assert_eq!(TWO_FORMS.forms(), "%fan, %%fan");
        assert_eq!(QUERY.forms(), "%%query");
    }
}
