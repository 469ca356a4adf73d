//! The options of `%px` / `%%px` (and the defaults `%pxconfig` keeps), declared
//! once and parsed by pure functions.

use std::time::Duration;

use crate::targets::{self, Targets};
use pxkernel_contract::parse::{OptSpec, ParseError, Parsed, Takes};

/// How outputs are ordered when they are not streamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// In the order they arrived.
    Order,
    /// All of engine 0, then engine 1, …
    Engine,
    /// All stdout, then stderr, then displays, results and errors.
    Type,
}

impl Group {
    fn parse(s: &str) -> Option<Group> {
        match s {
            "order" => Some(Group::Order),
            "engine" => Some(Group::Engine),
            "type" => Some(Group::Type),
            _ => None,
        }
    }

    /// The name users write.
    pub fn name(self) -> &'static str {
        match self {
            Group::Order => "order",
            Group::Engine => "engine",
            Group::Type => "type",
        }
    }
}

/// Everything that shapes one `%px` run.
#[derive(Clone, Debug, PartialEq)]
pub struct PxOptions {
    /// Which engines.
    pub targets: Targets,
    /// Wait for the result (else `%pxresult` shows it).
    pub block: bool,
    /// Order of outputs when not streaming.
    pub group: Group,
    /// Show output as it arrives.
    pub stream: bool,
    /// Show a progress display once the run takes longer than this.
    pub progress_after: Duration,
    /// Give up on engines that take longer than this.
    pub timeout: Option<Duration>,
    /// Also run the cell in the home kernel.
    pub local: bool,
    /// Say which engines ran it and how each ended.
    pub verbose: bool,
}

impl Default for PxOptions {
    fn default() -> Self {
        PxOptions {
            targets: Targets::All,
            block: true,
            group: Group::Engine,
            stream: true,
            progress_after: Duration::from_secs(2),
            timeout: None,
            local: false,
            verbose: false,
        }
    }
}

/// The options of `%px`, `%%px` and `%pxconfig`.
pub const SPECS: &[OptSpec] = &[
    OptSpec::new(
        "targets",
        Some('t'),
        Takes::Value("TARGETS"),
        "engines: all, 3, 0,2,5, 1:4, ::2, -1 (default all)",
    ),
    OptSpec::new(
        "block",
        None,
        Takes::Nothing,
        "wait for the result (default)",
    ),
    OptSpec::new(
        "noblock",
        None,
        Takes::Nothing,
        "return at once; %pxresult shows the result",
    ),
    OptSpec::new(
        "group-outputs",
        None,
        Takes::Value("order|engine|type"),
        "order of outputs when not streaming (default engine)",
    ),
    OptSpec::new(
        "stream",
        None,
        Takes::Nothing,
        "show output as it arrives (default)",
    ),
    OptSpec::new(
        "no-stream",
        None,
        Takes::Nothing,
        "show output when the run ends, grouped",
    ),
    OptSpec::new(
        "progress-after",
        None,
        Takes::Value("SECONDS"),
        "show progress once the run is this long (default 2)",
    ),
    OptSpec::new(
        "timeout",
        None,
        Takes::Value("SECONDS"),
        "give up on engines still running after this long",
    ),
    OptSpec::new(
        "local",
        None,
        Takes::Nothing,
        "also run the cell in the home kernel",
    ),
    OptSpec::new(
        "verbose",
        None,
        Takes::Nothing,
        "report which engines ran it and how each ended",
    ),
];

fn seconds(
    magic: &str,
    option: &str,
    value: &str,
    allow_zero: bool,
) -> Result<Duration, ParseError> {
    let bad = |reason: &str| ParseError::BadValue {
        magic: magic.to_owned(),
        option: option.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let v: f64 = value.parse().map_err(|_| bad("not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 || (!allow_zero && v == 0.0) {
        return Err(bad(if allow_zero {
            "must be 0 or more"
        } else {
            "must be more than 0"
        }));
    }
    Duration::try_from_secs_f64(v).map_err(|_| bad("too many seconds"))
}

/// Apply parsed options on top of `base` (the `%pxconfig` defaults).
pub fn apply(magic: &str, parsed: &Parsed, base: &PxOptions) -> Result<PxOptions, ParseError> {
    let mut o = base.clone();
    let conflict = |a: &str, b: &str| ParseError::Usage {
        magic: magic.to_owned(),
        reason: format!("--{a} and --{b} contradict each other"),
    };
    if parsed.has("block") && parsed.has("noblock") {
        return Err(conflict("block", "noblock"));
    }
    if parsed.has("stream") && parsed.has("no-stream") {
        return Err(conflict("stream", "no-stream"));
    }
    if let Some(t) = parsed.value("targets") {
        o.targets = targets::parse(t).map_err(|reason| ParseError::BadValue {
            magic: magic.to_owned(),
            option: "targets".to_owned(),
            value: t.to_owned(),
            reason,
        })?;
    }
    if parsed.has("block") {
        o.block = true;
    }
    if parsed.has("noblock") {
        o.block = false;
    }
    if let Some(g) = parsed.value("group-outputs") {
        o.group = Group::parse(g).ok_or_else(|| ParseError::BadValue {
            magic: magic.to_owned(),
            option: "group-outputs".to_owned(),
            value: g.to_owned(),
            reason: "choose order, engine or type".to_owned(),
        })?;
    }
    if parsed.has("stream") {
        o.stream = true;
    }
    if parsed.has("no-stream") {
        o.stream = false;
    }
    if let Some(v) = parsed.value("progress-after") {
        o.progress_after = seconds(magic, "progress-after", v, true)?;
    }
    if let Some(v) = parsed.value("timeout") {
        o.timeout = Some(seconds(magic, "timeout", v, false)?);
    }
    if parsed.has("local") {
        o.local = true;
    }
    if parsed.has("verbose") {
        o.verbose = true;
    }
    Ok(o)
}

/// How `%pxconfig` shows the defaults.
pub fn describe(o: &PxOptions) -> String {
    let mut parts = vec![
        format!("--targets {}", o.targets),
        if o.block { "--block" } else { "--noblock" }.to_owned(),
        format!("--group-outputs {}", o.group.name()),
        if o.stream { "--stream" } else { "--no-stream" }.to_owned(),
        format!("--progress-after {}", o.progress_after.as_secs_f64()),
    ];
    if let Some(t) = o.timeout {
        parts.push(format!("--timeout {}", t.as_secs_f64()));
    }
    if o.local {
        parts.push("--local".to_owned());
    }
    if o.verbose {
        parts.push("--verbose".to_owned());
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pxkernel_contract::parse::parse_leading;

    fn parse(args: &str) -> Result<(PxOptions, String), ParseError> {
        let (p, code) = parse_leading("px", SPECS, args)?;
        Ok((apply("px", &p, &PxOptions::default())?, code.to_owned()))
    }

    #[test]
    fn every_option() {
        let d = PxOptions::default();
        let cases: Vec<(&str, &str, PxOptions)> = vec![
            ("defaults", "x", d.clone()),
            (
                "targets",
                "--targets 0,2 x",
                PxOptions {
                    targets: Targets::Ids(vec![0, 2]),
                    ..d.clone()
                },
            ),
            (
                "short targets",
                "-t ::2 x",
                PxOptions {
                    targets: Targets::Slice {
                        start: None,
                        stop: None,
                        step: Some(2),
                    },
                    ..d.clone()
                },
            ),
            (
                "noblock",
                "--noblock x",
                PxOptions {
                    block: false,
                    ..d.clone()
                },
            ),
            ("block", "--block x", d.clone()),
            (
                "group by type",
                "--group-outputs type x",
                PxOptions {
                    group: Group::Type,
                    ..d.clone()
                },
            ),
            (
                "group in order",
                "--group-outputs=order x",
                PxOptions {
                    group: Group::Order,
                    ..d.clone()
                },
            ),
            (
                "no stream",
                "--no-stream x",
                PxOptions {
                    stream: false,
                    ..d.clone()
                },
            ),
            (
                "progress after",
                "--progress-after 0.5 x",
                PxOptions {
                    progress_after: Duration::from_millis(500),
                    ..d.clone()
                },
            ),
            (
                "progress at once",
                "--progress-after 0 x",
                PxOptions {
                    progress_after: Duration::ZERO,
                    ..d.clone()
                },
            ),
            (
                "timeout",
                "--timeout 3 x",
                PxOptions {
                    timeout: Some(Duration::from_secs(3)),
                    ..d.clone()
                },
            ),
            (
                "local",
                "--local x",
                PxOptions {
                    local: true,
                    ..d.clone()
                },
            ),
            (
                "verbose",
                "--verbose x",
                PxOptions {
                    verbose: true,
                    ..d.clone()
                },
            ),
        ];
        for (label, args, want) in cases {
            let (got, code) = parse(args).unwrap_or_else(|e| panic!("case {label}: {e}"));
            assert_eq!(got, want, "case {label}");
            assert_eq!(code, "x", "case {label}");
        }
    }

    #[test]
    fn errors_name_the_option() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "bad targets",
                "--targets x y",
                "%px: bad value \"x\" for --targets: \"x\" is not an engine id",
            ),
            (
                "bad group",
                "--group-outputs size x",
                "%px: bad value \"size\" for --group-outputs: choose order, engine or type",
            ),
            (
                "negative timeout",
                "--timeout -1 x",
                "%px: bad value \"-1\" for --timeout: must be more than 0",
            ),
            (
                "zero timeout",
                "--timeout 0 x",
                "%px: bad value \"0\" for --timeout: must be more than 0",
            ),
            (
                "more seconds than a duration holds",
                "--timeout 1e300 x",
                "%px: bad value \"1e300\" for --timeout: too many seconds",
            ),
            (
                "words for seconds",
                "--progress-after soon x",
                "%px: bad value \"soon\" for --progress-after: not a number of seconds",
            ),
            (
                "block and noblock",
                "--block --noblock x",
                "%px: --block and --noblock contradict each other",
            ),
            (
                "stream and no-stream",
                "--stream --no-stream x",
                "%px: --stream and --no-stream contradict each other",
            ),
            (
                "unknown",
                "--targest 1 x",
                "%px: unknown option --targest (did you mean --targets?)",
            ),
            (
                "missing value",
                "--timeout",
                "%px: option --timeout needs a value (SECONDS)",
            ),
        ];
        for (label, args, want) in cases {
            let e = parse(args).unwrap_err().to_string();
            assert_eq!(e, *want, "case {label}");
        }
    }

    #[test]
    fn defaults_from_pxconfig_are_the_base() {
        let base = PxOptions {
            block: false,
            group: Group::Type,
            ..PxOptions::default()
        };
        let (p, _) = parse_leading("px", SPECS, "--block x").unwrap();
        let o = apply("px", &p, &base).unwrap();
        assert!(o.block);
        assert_eq!(o.group, Group::Type);
        assert_eq!(
            describe(&base),
            "--targets all --noblock --group-outputs type --stream --progress-after 2"
        );
    }
}
