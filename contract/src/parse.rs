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

/// The candidate closest to a mistyped `word`, if one is within two edits.
pub fn closest<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
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
                        suggestion: closest(name, specs.iter().map(|s| s.long)).map(str::to_owned),
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
mod tests;
