//! The magics pxkernel owns: their names, kinds, option specs and help, plus the
//! completion of magic names and options. A magic not listed here is passed to
//! the home kernel unchanged. Each declaration names the [`Magic`] that runs it,
//! and the session dispatches on that with no fallback, so a magic declared here
//! without an implementation does not compile.

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

/// Which implementation runs a magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Magic {
    /// `%lsmagic`.
    Lsmagic,
    /// `%px` / `%%px`.
    Px,
    /// `%autopx`.
    Autopx,
    /// `%pxresult`.
    Pxresult,
    /// `%pxconfig`.
    Pxconfig,
    /// `%engines`.
    Engines,
    /// `%sql` / `%%sql`.
    Sql,
}

/// The declaration of one magic.
#[derive(Clone, Copy, Debug)]
pub struct MagicSpec {
    /// The name without `%`.
    pub name: &'static str,
    /// What runs it.
    pub magic: Magic,
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

/// `%lsmagic`.
pub const LSMAGIC: MagicSpec = MagicSpec {
    name: "lsmagic",
    magic: Magic::Lsmagic,
    form: Form::Line,
    summary: "List the magics pxkernel runs itself; every other magic goes to the home kernel.",
    usage: "%lsmagic",
    options: &[],
    subcommands: &[],
    details: "Magics not in this list (%timeit, %matplotlib, %%time, !cmd, …) are passed \
to the home kernel unchanged. Add ? to a magic for its help, e.g. %lsmagic?",
};

/// `%px` / `%%px`.
pub const PX: MagicSpec = MagicSpec {
    name: "px",
    magic: Magic::Px,
    form: Form::Both,
    summary: "Run code on the engines in parallel and show their output as it arrives.",
    usage: "%px [options] CODE\n%%px [options]\nCELL",
    options: crate::px::options::SPECS,
    subcommands: &[],
    details: "Output is tagged by engine: [stdout:0], [stderr:1], [output:2] before displays, \
Out[0:5] results, [3:execute] errors. The cell fails when any target engine errors, dies or \
times out, naming each one; the others' output is still shown. Interrupt stops every busy \
target engine. Defaults come from %pxconfig.",
};

/// `%autopx`.
pub const AUTOPX: MagicSpec = MagicSpec {
    name: "autopx",
    magic: Magic::Autopx,
    form: Form::Line,
    summary: "Toggle running every plain cell on the engines, as if it began with %%px.",
    usage: "%autopx",
    options: &[],
    subcommands: &[],
    details: "Run %autopx again to go back to the home kernel.",
};

/// `%pxresult`.
pub const PXRESULT: MagicSpec = MagicSpec {
    name: "pxresult",
    magic: Magic::Pxresult,
    form: Form::Line,
    summary: "Show the result of the last %px --noblock, waiting for it if needed.",
    usage: "%pxresult",
    options: &[],
    subcommands: &[],
    details: "",
};

/// `%pxconfig`.
pub const PXCONFIG: MagicSpec = MagicSpec {
    name: "pxconfig",
    magic: Magic::Pxconfig,
    form: Form::Line,
    summary: "Set the default options of %px (with no options: show them).",
    usage: "%pxconfig [options]\n%pxconfig --reset",
    options: crate::px::options::SPECS,
    subcommands: &[],
    details: "",
};

/// The options of `%engines start`.
pub const ENGINES_START: &[OptSpec] = &[
    OptSpec::new(
        "n",
        Some('n'),
        Takes::Value("N"),
        "how many engines to start",
    ),
    OptSpec::new(
        "kernel",
        None,
        Takes::Value("KERNELSPEC"),
        "the kernelspec of the engines (default: the home kernel's)",
    ),
    OptSpec::new(
        "timeout",
        None,
        Takes::Value("SECONDS"),
        "how long an engine may take to answer (default 60)",
    ),
];

/// `%engines`.
pub const ENGINES: MagicSpec = MagicSpec {
    name: "engines",
    magic: Magic::Engines,
    form: Form::Line,
    summary: "Start, list, stop, restart or attach the engines %px runs on.",
    usage: "%engines [list]\n%engines start -n N [--kernel KERNELSPEC] [--timeout SECONDS]\n\
%engines stop [TARGETS]\n%engines restart TARGETS\n%engines connect FILE...",
    options: ENGINES_START,
    subcommands: &["list", "start", "stop", "restart", "connect"],
    details: "Engines are Jupyter kernels of any language. Ids are integers from 0, stable for \
the notebook's life; a later start adds more. A dead engine is shown dead within 3 s and never \
blocks a cell. TARGETS: all, 3, 0,2,5, 1:4, ::2, -1.",
};

/// `%sql` / `%%sql`.
pub const SQL: MagicSpec = MagicSpec {
    name: "sql",
    magic: Magic::Sql,
    form: Form::Both,
    summary: "Query SQLite or PostgreSQL: tables in the notebook, DataFrames in the home kernel.",
    usage: "%sql URL [--alias NAME]\n%sql [options] QUERY\n%%sql [options]\nSTATEMENTS\n\
NAME << %sql QUERY\n%sql --connections | --close NAME | --config limit=N",
    options: crate::sql::commands::SPECS,
    subcommands: &[],
    details: "URLs: sqlite:// (in memory), sqlite:///relative.db, sqlite:////abs/path.db, \
postgresql://user:password@host:port/db?sslmode=require (disable, prefer, require, verify-ca, \
verify-full with sslrootcert=FILE; connect_timeout, application_name). With no connection, \
DATABASE_URL is used. Statements separated by ; run in order; the last one that returns rows \
is shown (the first rows at once, counted after). :name binds the home kernel's variable name \
as a parameter. -o NAME or NAME << stores the whole result in the home kernel as a pandas \
DataFrame (a list of dicts without pandas). Interrupt cancels the query on the server.",
};

/// Every magic pxkernel owns.
pub const MAGICS: &[MagicSpec] = &[LSMAGIC, PX, AUTOPX, PXRESULT, PXCONFIG, ENGINES, SQL];

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
    let spec = find(&word[..name_len])?;
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
            (
                "all line magics",
                "%",
                1,
                &[
                    "%autopx",
                    "%engines",
                    "%lsmagic",
                    "%px",
                    "%%px",
                    "%pxconfig",
                    "%pxresult",
                    "%sql",
                    "%%sql",
                ],
                0,
            ),
            (
                "px family",
                "%px",
                3,
                &["%px", "%%px", "%pxconfig", "%pxresult"],
                0,
            ),
            ("cell magics", "%%p", 3, &["%%px"], 0),
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
    fn completes_options_and_subcommands() {
        let cases: &[(&str, &str, &[&str], usize)] = &[
            ("px option", "%px --ta", &["--targets"], 4),
            (
                "px options by prefix",
                "%px --no",
                &["--noblock", "--no-stream"],
                4,
            ),
            ("cell magic option", "%%px --bl", &["--block"], 5),
            ("subcommand", "%engines st", &["start", "stop"], 9),
            (
                "option of a subcommand",
                "%engines start --ke",
                &["--kernel"],
                15,
            ),
        ];
        for (label, code, want, start) in cases {
            let c = complete(code, code.chars().count()).unwrap_or_else(|| panic!("case {label}"));
            assert_eq!(c.matches, *want, "case {label}");
            assert_eq!(c.start, *start, "case {label}");
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
    fn every_declared_magic_is_found_owned_helped_and_completed() {
        for (i, m) in MAGICS.iter().enumerate() {
            let name = m.name;
            assert!(
                find(name).is_some_and(|f| f.magic == m.magic && f.summary == m.summary),
                "%{name}: find"
            );
            assert!(
                MAGICS[..i]
                    .iter()
                    .all(|o| o.name != name && o.magic != m.magic),
                "%{name}: declared twice, or run by another magic's implementation"
            );
            assert_eq!(owns(name, false), m.line(), "%{name}: line form");
            assert_eq!(owns(name, true), m.cell(), "%{name}: cell form");
            assert!(!m.summary.is_empty(), "%{name}: summary");

            let help = m.help();
            assert!(help.starts_with(m.usage.trim_end()), "%{name}: usage first");
            assert!(help.contains(m.summary), "%{name}: summary in help");
            let options = help.split_once("\nOptions:\n").map_or("", |(_, o)| o);
            for o in m.options {
                assert!(!o.help.is_empty(), "%{name} {}: option help", o.flag());
                let line = options
                    .lines()
                    .find(|l| l.contains(&o.flag()))
                    .unwrap_or_else(|| panic!("%{name}: {} not in help", o.flag()));
                assert!(line.contains(o.help), "%{name}: {line}");
            }
            for sub in m.subcommands {
                assert!(
                    m.usage.contains(sub),
                    "%{name}: subcommand {sub} not in usage"
                );
            }

            let typed = format!("%{name}");
            let offered = complete(&typed, typed.chars().count()).expect("completes");
            assert_eq!(
                offered.matches.contains(&typed),
                m.line(),
                "%{name}: completion"
            );
            let typed = format!("%%{name}");
            let offered = complete(&typed, typed.chars().count()).expect("completes");
            assert_eq!(
                offered.matches.contains(&typed),
                m.cell(),
                "%%{name}: completion"
            );
            assert!(
                magic_at(&format!("%{name} "), 1).is_some_and(|f| f.name == name),
                "%{name}: inspect"
            );
        }
    }

    #[test]
    fn one_letter_options_read_as_users_write_them() {
        let help = ENGINES.help();
        assert!(help.contains("\n  -n N "), "{help}");
        assert!(!help.contains("--n "), "{help}");
        assert!(help.contains("\n      --kernel KERNELSPEC "), "{help}");
        let code = "%engines start -";
        let c = complete(code, code.chars().count()).unwrap();
        assert_eq!(c.matches, ["-n", "--kernel", "--timeout"]);
    }
}
