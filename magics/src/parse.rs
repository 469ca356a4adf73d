//! The magic grammar, as pure functions: `%name args` (line magic) and
//! `%%name args\nbody` (cell magic), shell-style argument splitting, and
//! declarative option specs that parse `--long VALUE`, `--long=VALUE`, `-s VALUE`
//! and flags into a [`Parsed`] set, with errors that name the option.

use std::collections::BTreeMap;

/// A magic call found at the start of a cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation<'a> {
    /// `%name args` on one line; `rest` is everything after that line.
    Line {
        /// The magic's name, without `%`.
        name: &'a str,
        /// The text after the name on its line.
        args: &'a str,
        /// The lines after it.
        rest: &'a str,
    },
    /// `%%name args` then the body.
    Cell {
        /// The magic's name, without `%%`.
        name: &'a str,
        /// The text after the name on the first line.
        args: &'a str,
        /// The lines after the first.
        body: &'a str,
    },
    /// `%name?` / `%%name??` / `?%name`: a request for help.
    Help {
        /// The magic's name.
        name: &'a str,
    },
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The magic call that opens `code`, if its first non-blank line starts with `%`.
pub fn invocation(code: &str) -> Option<Invocation<'_>> {
    let start = code.len() - code.trim_start_matches(['\n', '\r', ' ', '\t']).len();
    // Go back to the start of that line: leading spaces belong to it.
    let line_start = code[..start].rfind('\n').map_or(0, |i| i + 1);
    let text = &code[line_start..];
    let (line, rest) = match text.find('\n') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    let line = line.trim_end_matches('\r').trim();
    if let Some(q) = line.strip_prefix("??").or_else(|| line.strip_prefix('?')) {
        let name = q.trim_start_matches('%');
        if q.starts_with('%') && !name.is_empty() && name.chars().all(is_name_char) {
            return Some(Invocation::Help { name });
        }
    }
    let (cell, after) = if let Some(a) = line.strip_prefix("%%") {
        (true, a)
    } else if let Some(a) = line.strip_prefix('%') {
        (false, a)
    } else {
        return None;
    };
    let name_len = after
        .find(|c: char| !is_name_char(c))
        .unwrap_or(after.len());
    let name = &after[..name_len];
    if name.is_empty() {
        return None;
    }
    let args = after[name_len..].trim();
    if rest.trim().is_empty() && (args == "?" || args == "??") {
        return Some(Invocation::Help { name });
    }
    Some(if cell {
        Invocation::Cell {
            name,
            args,
            body: rest,
        }
    } else {
        Invocation::Line { name, args, rest }
    })
}

/// Why arguments did not parse. Messages name the magic and the option.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// An opening quote without its closing one.
    #[error("%{magic}: unclosed {quote} quote")]
    UnclosedQuote {
        /// The magic.
        magic: String,
        /// The quote character.
        quote: char,
    },
    /// An option the magic does not have.
    #[error("%{magic}: unknown option {option}{}", did_you_mean(suggestion))]
    UnknownOption {
        /// The magic.
        magic: String,
        /// As written.
        option: String,
        /// The closest known option.
        suggestion: Option<String>,
    },
    /// An option that needs a value got none.
    #[error("%{magic}: option {} needs a value ({metavar})", flag(option))]
    MissingValue {
        /// The magic.
        magic: String,
        /// The option.
        option: String,
        /// What the value is.
        metavar: String,
    },
    /// A flag was given a value.
    #[error("%{magic}: option {} takes no value", flag(option))]
    UnexpectedValue {
        /// The magic.
        magic: String,
        /// The option.
        option: String,
    },
    /// A value that the option cannot use.
    #[error("%{magic}: bad value {value:?} for {}: {reason}", flag(option))]
    BadValue {
        /// The magic.
        magic: String,
        /// The option.
        option: String,
        /// As written.
        value: String,
        /// Why.
        reason: String,
    },
    /// Wrong use of a magic, said in words.
    #[error("%{magic}: {reason}")]
    Usage {
        /// The magic.
        magic: String,
        /// What is wrong.
        reason: String,
    },
    /// Positional arguments where the magic takes none (or too many).
    #[error("%{magic}: unexpected argument {arg:?}")]
    UnexpectedArgument {
        /// The magic.
        magic: String,
        /// The first extra argument.
        arg: String,
    },
}

fn did_you_mean(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean {}?)", flag(s)))
        .unwrap_or_default()
}

/// An option as users write it, from its long name: `-n` for a one-letter name
/// (as `%engines start -n 4`), `--targets` otherwise.
pub fn flag(long: &str) -> String {
    if long.chars().count() == 1 {
        format!("-{long}")
    } else {
        format!("--{long}")
    }
}

/// Split arguments like a POSIX shell: whitespace separates, single quotes are
/// literal, double quotes allow `\"` and `\\`, a backslash escapes outside quotes.
pub fn split_args(magic: &str, text: &str) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => {
                            return Err(ParseError::UnclosedQuote {
                                magic: magic.to_owned(),
                                quote: '\'',
                            });
                        }
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') if matches!(chars.peek(), Some('"' | '\\')) => {
                            cur.extend(chars.next());
                        }
                        Some(c) => cur.push(c),
                        None => {
                            return Err(ParseError::UnclosedQuote {
                                magic: magic.to_owned(),
                                quote: '"',
                            });
                        }
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Whether an option takes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takes {
    /// A flag.
    Nothing,
    /// A value, described by this metavar (e.g. `SECONDS`).
    Value(&'static str),
}

/// One option of a magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptSpec {
    /// Long name, without `--`.
    pub long: &'static str,
    /// Short letter, without `-`.
    pub short: Option<char>,
    /// Flag or value.
    pub takes: Takes,
    /// One line of help.
    pub help: &'static str,
}

impl OptSpec {
    /// How users write it: `-n` or `--targets`.
    pub fn flag(&self) -> String {
        flag(self.long)
    }

    /// An option, for `const` tables of specs.
    pub const fn new(
        long: &'static str,
        short: Option<char>,
        takes: Takes,
        help: &'static str,
    ) -> OptSpec {
        OptSpec {
            long,
            short,
            takes,
            help,
        }
    }
}

/// Parsed options and positional arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Long option name → values in order (flags have an empty value).
    pub options: BTreeMap<&'static str, Vec<String>>,
    /// Positional arguments, in order.
    pub positional: Vec<String>,
}

impl Parsed {
    /// Whether the flag or option was given.
    pub fn has(&self, long: &str) -> bool {
        self.options.contains_key(long)
    }

    /// The last value of an option.
    pub fn value(&self, long: &str) -> Option<&str> {
        self.options
            .get(long)
            .and_then(|v| v.last())
            .map(String::as_str)
    }
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parse `args` against `specs`. `--` ends options; everything after is positional.
pub fn parse_options(
    magic: &str,
    specs: &[OptSpec],
    args: &[String],
) -> Result<Parsed, ParseError> {
    let mut parsed = Parsed::default();
    let mut it = args.iter().peekable();
    let mut only_positional = false;
    while let Some(arg) = it.next() {
        if only_positional || arg == "-" || !arg.starts_with('-') || is_number(arg) {
            parsed.positional.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        let (spec, inline) =
            if let Some(long) = arg.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_owned())),
                    None => (long, None),
                };
                let spec = specs.iter().find(|s| s.long == name).ok_or_else(|| {
                    ParseError::UnknownOption {
                        magic: magic.to_owned(),
                        option: format!("--{name}"),
                        suggestion: specs
                            .iter()
                            .map(|s| (distance(name, s.long), s.long))
                            .filter(|(d, _)| *d <= 2)
                            .min()
                            .map(|(_, s)| s.to_owned()),
                    }
                })?;
                (spec, inline)
            } else {
                let mut chars = arg[1..].chars();
                let letter = chars.next().unwrap_or('-');
                let rest: String = chars.collect();
                let spec = specs
                    .iter()
                    .find(|s| s.short == Some(letter))
                    .ok_or_else(|| ParseError::UnknownOption {
                        magic: magic.to_owned(),
                        option: arg.clone(),
                        suggestion: None,
                    })?;
                (spec, (!rest.is_empty()).then_some(rest))
            };
        let value = match spec.takes {
            Takes::Nothing => {
                if inline.is_some() {
                    return Err(ParseError::UnexpectedValue {
                        magic: magic.to_owned(),
                        option: spec.long.to_owned(),
                    });
                }
                String::new()
            }
            Takes::Value(metavar) => match inline {
                Some(v) => v,
                None => match it.next_if(|a| !a.starts_with("--")) {
                    Some(v) => v.clone(),
                    None => {
                        return Err(ParseError::MissingValue {
                            magic: magic.to_owned(),
                            option: spec.long.to_owned(),
                            metavar: metavar.to_owned(),
                        });
                    }
                },
            },
        };
        parsed.options.entry(spec.long).or_default().push(value);
    }
    Ok(parsed)
}

/// The next shell-style word of `text` from byte `pos`: its unquoted value and the
/// byte range it spans (quotes may hide whitespace). None at the end.
fn next_word(
    magic: &str,
    text: &str,
    pos: usize,
) -> Result<Option<(String, usize, usize)>, ParseError> {
    let rest = &text[pos..];
    let start = pos + (rest.len() - rest.trim_start().len());
    if start >= text.len() {
        return Ok(None);
    }
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut end = text.len();
    for (i, c) in text[start..].char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (Some('"'), '\\') | (None, '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, c) if c.is_whitespace() => {
                end = start + i;
                break;
            }
            (None, _) => {}
        }
    }
    let words = split_args(magic, &text[start..end])?;
    Ok(Some((words.concat(), start, end)))
}

/// Parse the options at the start of `text` and return them with the raw text
/// that follows (the code of `%px --targets 0 print("a  b")`, kept verbatim).
/// Options end at the first word that is not an option, or after `--`.
pub fn parse_leading<'t>(
    magic: &str,
    specs: &[OptSpec],
    text: &'t str,
) -> Result<(Parsed, &'t str), ParseError> {
    let mut words: Vec<String> = Vec::new();
    let mut pos = 0;
    loop {
        let Some((word, start, end)) = next_word(magic, text, pos)? else {
            pos = text.len();
            break;
        };
        if word == "--" {
            pos = end;
            break;
        }
        if !word.starts_with('-') || word == "-" || is_number(&word) {
            pos = start;
            break;
        }
        words.push(word.clone());
        pos = end;
        let long = word.trim_start_matches('-');
        let spec = if word.starts_with("--") {
            specs
                .iter()
                .find(|s| s.long == long.split('=').next().unwrap_or(""))
        } else {
            specs
                .iter()
                .find(|s| Some(long.chars().next().unwrap_or('-')) == s.short)
        };
        let inline = word.contains('=') || (!word.starts_with("--") && long.chars().count() > 1);
        if let Some(OptSpec {
            takes: Takes::Value(_),
            ..
        }) = spec
            && !inline
            && let Some((value, _, vend)) = next_word(magic, text, pos)?
            && !value.starts_with("--")
        {
            words.push(value);
            pos = vend;
        }
    }
    let parsed = parse_options(magic, specs, &words)?;
    Ok((parsed, text[pos..].trim_start()))
}

fn is_number(s: &str) -> bool {
    s.len() > 1 && s[1..].starts_with(|c: char| c.is_ascii_digit()) && s.parse::<f64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations() {
        let cases: &[(&str, &str, Option<Invocation>)] = &[
            ("plain code", "x = 1", None),
            (
                "line magic",
                "%lsmagic",
                Some(Invocation::Line {
                    name: "lsmagic",
                    args: "",
                    rest: "",
                }),
            ),
            (
                "line magic with args and rest",
                "\n  %px --targets 0 x=1\nprint(2)\n",
                Some(Invocation::Line {
                    name: "px",
                    args: "--targets 0 x=1",
                    rest: "print(2)\n",
                }),
            ),
            (
                "cell magic",
                "%%px --block\nimport os\nos.getpid()",
                Some(Invocation::Cell {
                    name: "px",
                    args: "--block",
                    body: "import os\nos.getpid()",
                }),
            ),
            (
                "crlf line endings",
                "%%sql\r\nselect 1",
                Some(Invocation::Cell {
                    name: "sql",
                    args: "",
                    body: "select 1",
                }),
            ),
            (
                "help suffix",
                "%lsmagic?",
                Some(Invocation::Help { name: "lsmagic" }),
            ),
            (
                "help double suffix",
                "%%px??",
                Some(Invocation::Help { name: "px" }),
            ),
            (
                "help prefix",
                "?%lsmagic",
                Some(Invocation::Help { name: "lsmagic" }),
            ),
            ("bare percent", "% 3", None),
            ("modulo expression", "a % b", None),
            ("shell escape is not ours", "!ls", None),
        ];
        for (label, code, want) in cases {
            assert_eq!(&invocation(code), want, "case {label}");
        }
    }

    #[test]
    fn argument_splitting() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("words", "a b  c", &["a", "b", "c"]),
            (
                "single quotes are literal",
                r#"'a b' 'c\d'"#,
                &["a b", r"c\d"],
            ),
            (
                "double quotes escape",
                r#""a \"b\" \\ c""#,
                &[r#"a "b" \ c"#],
            ),
            ("backslash outside quotes", r"a\ b", &["a b"]),
            ("adjacent quoting joins", r#"x'y'"z""#, &["xyz"]),
            ("empty quotes are an argument", "''", &[""]),
            ("nothing", "   ", &[]),
        ];
        for (label, text, want) in cases {
            assert_eq!(split_args("m", text).unwrap(), *want, "case {label}");
        }
        assert_eq!(
            split_args("m", "'open").unwrap_err().to_string(),
            "%m: unclosed ' quote"
        );
    }

    const SPECS: &[OptSpec] = &[
        OptSpec {
            long: "targets",
            short: Some('t'),
            takes: Takes::Value("TARGETS"),
            help: "",
        },
        OptSpec {
            long: "block",
            short: None,
            takes: Takes::Nothing,
            help: "",
        },
        OptSpec {
            long: "timeout",
            short: None,
            takes: Takes::Value("SECONDS"),
            help: "",
        },
        OptSpec {
            long: "n",
            short: Some('n'),
            takes: Takes::Value("N"),
            help: "",
        },
        OptSpec {
            long: "v",
            short: None,
            takes: Takes::Nothing,
            help: "",
        },
    ];

    fn parse(args: &str) -> Result<Parsed, ParseError> {
        parse_options("px", SPECS, &split_args("px", args).unwrap())
    }

    #[test]
    fn options() {
        let p = parse("--targets 0,2 --block x -t=1 y").unwrap();
        assert_eq!(p.value("targets"), Some("=1"));
        let p = parse("--targets=1:3 --block code here").unwrap();
        assert_eq!(p.value("targets"), Some("1:3"));
        assert!(p.has("block"));
        assert_eq!(p.positional, ["code", "here"]);
        let p = parse("-t -1 --timeout 2.5").unwrap();
        assert_eq!(p.value("targets"), Some("-1"));
        assert_eq!(p.value("timeout"), Some("2.5"));
        let p = parse("-- --block").unwrap();
        assert_eq!(p.positional, ["--block"]);
        let p = parse("x = -1").unwrap();
        assert_eq!(p.positional, ["x", "=", "-1"]);
    }

    #[test]
    fn option_errors_name_the_option() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "unknown with suggestion",
                "--targts 1",
                "%px: unknown option --targts (did you mean --targets?)",
            ),
            (
                "unknown far from all",
                "--zzzzzz",
                "%px: unknown option --zzzzzz",
            ),
            ("unknown short", "-q", "%px: unknown option -q"),
            (
                "missing value at end",
                "--timeout",
                "%px: option --timeout needs a value (SECONDS)",
            ),
            (
                "missing value before option",
                "--timeout --block",
                "%px: option --timeout needs a value (SECONDS)",
            ),
            (
                "flag with value",
                "--block=yes",
                "%px: option --block takes no value",
            ),
            (
                "one-letter option without its value",
                "-n",
                "%px: option -n needs a value (N)",
            ),
            (
                "one-letter option spelt long, without its value",
                "--n",
                "%px: option -n needs a value (N)",
            ),
            (
                "one-letter flag with a value",
                "--v=1",
                "%px: option -v takes no value",
            ),
            (
                "suggestion of a one-letter option",
                "--nn 3",
                "%px: unknown option --nn (did you mean -n?)",
            ),
        ];
        for (label, args, want) in cases {
            assert_eq!(parse(args).unwrap_err().to_string(), *want, "case {label}");
        }
    }

    #[test]
    fn bad_values_name_the_option_as_users_write_it() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "long option",
                "targets",
                "%px: bad value \"x\" for --targets: why",
            ),
            ("one-letter option", "n", "%px: bad value \"x\" for -n: why"),
        ];
        for (label, option, want) in cases {
            let e = ParseError::BadValue {
                magic: "px".to_owned(),
                option: (*option).to_owned(),
                value: "x".to_owned(),
                reason: "why".to_owned(),
            };
            assert_eq!(e.to_string(), *want, "case {label}");
        }
    }

    #[test]
    fn leading_options_then_raw_code() {
        let cases: &[(&str, &str, Option<&str>, bool, &str)] = &[
            (
                "no options",
                r#"print("a  b")"#,
                None,
                false,
                r#"print("a  b")"#,
            ),
            (
                "options then code",
                r#"--targets 0,1 --block print("a  b")"#,
                Some("0,1"),
                true,
                r#"print("a  b")"#,
            ),
            (
                "inline value",
                "--targets=::2 x = 1",
                Some("::2"),
                false,
                "x = 1",
            ),
            ("short with value", "-t -1 x", Some("-1"), false, "x"),
            (
                "double dash ends options",
                "--block -- -x",
                None,
                true,
                "-x",
            ),
            (
                "quoted value",
                "--targets '0, 1' y",
                Some("0, 1"),
                false,
                "y",
            ),
            (
                "code may start with a number",
                "--block -1 + 2",
                None,
                true,
                "-1 + 2",
            ),
            ("nothing", "", None, false, ""),
        ];
        for (label, text, targets, block, code) in cases {
            let (p, rest) = parse_leading("px", SPECS, text).unwrap();
            assert_eq!(p.value("targets"), *targets, "case {label}");
            assert_eq!(p.has("block"), *block, "case {label}");
            assert_eq!(rest, *code, "case {label}");
        }
        let e = parse_leading("px", SPECS, "--nope x").unwrap_err();
        assert!(e.to_string().contains("--nope"));
    }
}
