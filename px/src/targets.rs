//! Engine targets as ipyparallel users write them — `all`, `3`, `0,2,5`, `1:4`,
//! `::2`, `-1` — parsed and resolved against the registered engine ids.
//! Integers are engine ids (negative ones count from the last engine); slices
//! cut the sorted list of ids, with Python's semantics.

use std::fmt;

/// Which engines a command addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Targets {
    /// Every engine.
    All,
    /// These engine ids (negative: from the end of the id list).
    Ids(Vec<i64>),
    /// A Python slice of the sorted id list.
    Slice {
        /// Start index.
        start: Option<i64>,
        /// Stop index (exclusive).
        stop: Option<i64>,
        /// Step (not zero).
        step: Option<i64>,
    },
}

impl fmt::Display for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Targets::All => f.write_str("all"),
            Targets::Ids(ids) => {
                let s: Vec<String> = ids.iter().map(i64::to_string).collect();
                f.write_str(&s.join(","))
            }
            Targets::Slice { start, stop, step } => {
                let o = |v: &Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
                write!(f, "{}:{}", o(start), o(stop))?;
                if step.is_some() {
                    write!(f, ":{}", o(step))?;
                }
                Ok(())
            }
        }
    }
}

fn int(s: &str) -> Result<i64, String> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| format!("{s:?} is not an engine id"))
}

/// Parse a targets expression.
pub fn parse(text: &str) -> Result<Targets, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty targets".to_owned());
    }
    if t.eq_ignore_ascii_case("all") {
        return Ok(Targets::All);
    }
    if t.contains(':') {
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() > 3 {
            return Err(format!("{t:?} is not a slice (start:stop:step)"));
        }
        let field = |i: usize| -> Result<Option<i64>, String> {
            match parts.get(i).map(|p| p.trim()) {
                None | Some("") => Ok(None),
                Some(p) => int(p).map(Some),
            }
        };
        let step = field(2)?;
        if step == Some(0) {
            return Err("slice step cannot be zero".to_owned());
        }
        return Ok(Targets::Slice {
            start: field(0)?,
            stop: field(1)?,
            step,
        });
    }
    let ids = t
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(int)
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(format!("{t:?} names no engine"));
    }
    Ok(Targets::Ids(ids))
}

/// Why targets name no engine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// There are no engines at all: whatever the targets, the fix is to start some.
    #[error("no engines: start some with %engines start -n N")]
    NoEngines,
    /// The targets miss every engine there is.
    #[error("{0}")]
    NoMatch(String),
}

fn describe(ids: &[u32]) -> String {
    let s: Vec<String> = ids.iter().map(u32::to_string).collect();
    format!("registered engines: {}", s.join(", "))
}

/// Python's slice indices over a sequence of `len`.
fn slice_indices(len: i64, start: Option<i64>, stop: Option<i64>, step: Option<i64>) -> Vec<usize> {
    let step = step.unwrap_or(1);
    let clamp = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
    let norm = |v: i64| if v < 0 { v + len } else { v };
    let (lo, hi) = if step > 0 { (0, len) } else { (-1, len - 1) };
    let start = start.map_or(if step > 0 { lo } else { hi }, |s| clamp(norm(s), lo, hi));
    let stop = stop.map_or(if step > 0 { hi } else { lo }, |s| clamp(norm(s), lo, hi));
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        out.push(i as usize);
        // A step past the end of i64 (`1::9223372036854775807`) simply ends the slice.
        match i.checked_add(step) {
            Some(next) => i = next,
            None => break,
        }
    }
    out
}

/// The engine ids `targets` names, in order, without repeats.
pub fn resolve(targets: &Targets, ids: &[u32]) -> Result<Vec<u32>, ResolveError> {
    if ids.is_empty() {
        return Err(ResolveError::NoEngines);
    }
    let no_match = |reason: String| ResolveError::NoMatch(reason);
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let picked: Vec<u32> = match targets {
        Targets::All => sorted.clone(),
        Targets::Ids(list) => {
            let mut out = Vec::new();
            for &t in list {
                let id = if t < 0 {
                    let idx = sorted.len() as i64 + t;
                    if idx < 0 {
                        return Err(no_match(format!(
                            "no engine at index {t} ({})",
                            describe(&sorted)
                        )));
                    }
                    sorted[idx as usize]
                } else {
                    u32::try_from(t)
                        .ok()
                        .filter(|id| sorted.contains(id))
                        .ok_or_else(|| no_match(format!("no engine {t} ({})", describe(&sorted))))?
                };
                if !out.contains(&id) {
                    out.push(id);
                }
            }
            out
        }
        Targets::Slice { start, stop, step } => {
            slice_indices(sorted.len() as i64, *start, *stop, *step)
                .into_iter()
                .map(|i| sorted[i])
                .collect()
        }
    };
    if picked.is_empty() {
        return Err(no_match(format!(
            "targets {targets} select no engine ({})",
            describe(&sorted)
        )));
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let cases: &[(&str, &str, Targets)] = &[
            ("all", "all", Targets::All),
            ("all, any case", " ALL ", Targets::All),
            ("one id", "3", Targets::Ids(vec![3])),
            ("a list", "0,2,5", Targets::Ids(vec![0, 2, 5])),
            ("a list with spaces", "0, 2 ,5", Targets::Ids(vec![0, 2, 5])),
            ("negative", "-1", Targets::Ids(vec![-1])),
            (
                "range",
                "1:4",
                Targets::Slice {
                    start: Some(1),
                    stop: Some(4),
                    step: None,
                },
            ),
            (
                "step only",
                "::2",
                Targets::Slice {
                    start: None,
                    stop: None,
                    step: Some(2),
                },
            ),
            (
                "open end",
                "2:",
                Targets::Slice {
                    start: Some(2),
                    stop: None,
                    step: None,
                },
            ),
            (
                "negative start",
                "-2:",
                Targets::Slice {
                    start: Some(-2),
                    stop: None,
                    step: None,
                },
            ),
            (
                "reverse",
                "::-1",
                Targets::Slice {
                    start: None,
                    stop: None,
                    step: Some(-1),
                },
            ),
        ];
        for (label, text, want) in cases {
            assert_eq!(&parse(text).unwrap(), want, "case {label}");
        }
    }

    #[test]
    fn parse_errors() {
        let cases: &[(&str, &str, &str)] = &[
            ("empty", "", "empty targets"),
            ("word", "first", "\"first\" is not an engine id"),
            ("bad slice part", "1:x", "\"x\" is not an engine id"),
            ("four parts", "1:2:3:4", "is not a slice"),
            ("zero step", "::0", "slice step cannot be zero"),
            ("only commas", ",,", "names no engine"),
        ];
        for (label, text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "case {label}: {e}");
        }
    }

    #[test]
    fn resolves_against_engine_ids() {
        // Ids need not be contiguous: engine 2 was stopped.
        let ids = [0, 1, 3, 4, 5];
        let cases: &[(&str, &str, &[u32])] = &[
            ("all", "all", &[0, 1, 3, 4, 5]),
            ("an id", "3", &[3]),
            ("ids keep their order", "5,0", &[5, 0]),
            ("repeats collapse", "1,1", &[1]),
            ("last", "-1", &[5]),
            ("second to last", "-2", &[4]),
            ("slice over the id list", "1:4", &[1, 3, 4]),
            ("every other", "::2", &[0, 3, 5]),
            ("tail", "-2:", &[4, 5]),
            ("reverse", "::-1", &[5, 4, 3, 1, 0]),
            ("stop past the end", "3:99", &[4, 5]),
            // Found by the magic_args fuzz target: the step overflowed i64.
            ("the largest step", "1::9223372036854775807", &[1]),
            ("the most negative step", "-1::-9223372036854775808", &[5]),
        ];
        for (label, text, want) in cases {
            assert_eq!(
                resolve(&parse(text).unwrap(), &ids).unwrap(),
                *want,
                "case {label}"
            );
        }
    }

    #[test]
    fn resolve_errors_name_the_engines() {
        let ids = [0, 1];
        let cases: &[(&str, &str, &str)] = &[
            ("absent id", "7", "no engine 7 (registered engines: 0, 1)"),
            (
                "index before the first",
                "-3",
                "no engine at index -3 (registered engines: 0, 1)",
            ),
            (
                "empty slice",
                "5:",
                "targets 5: select no engine (registered engines: 0, 1)",
            ),
        ];
        for (label, text, want) in cases {
            let e = resolve(&parse(text).unwrap(), &ids).unwrap_err();
            assert_eq!(e, ResolveError::NoMatch((*want).to_owned()), "case {label}");
        }
    }

    #[test]
    fn no_engines_says_how_to_start_them_whatever_the_targets() {
        for text in ["all", "0", "-1", "1:4"] {
            let e = resolve(&parse(text).unwrap(), &[]).unwrap_err();
            assert_eq!(e, ResolveError::NoEngines, "{text}");
            assert_eq!(
                e.to_string(),
                "no engines: start some with %engines start -n N"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for t in ["all", "3", "0,2,5", "1:4", "::2", "-2:"] {
            assert_eq!(parse(t).unwrap().to_string(), t);
        }
    }
}
