//! The arguments of `%engines start`: a count of local engines from a
//! kernelspec, engines on an SSH host (`--ssh` and what goes with it), or a
//! cluster profile. Pure.

use std::time::Duration;

use pxkernel_contract::MagicError;
use pxkernel_contract::parse::{ParseError, parse_options};
use pxkernel_ssh::Endpoint;

use super::{START_TIMEOUT, no_more, usage};
use crate::magics::ENGINES_START;
use crate::ssh::{DEFAULT_GRACE, HostPlan};

/// What `%engines start` was asked for.
#[derive(Debug, PartialEq)]
pub(super) struct StartArgs {
    /// How many engines.
    pub(super) n: u32,
    /// How long each may take to answer.
    pub(super) timeout: Duration,
    /// `--kernel`, when given.
    pub(super) kernel: Option<String>,
    /// `--ssh` and what goes with it.
    pub(super) host: Option<HostPlan>,
    /// `--profile`.
    pub(super) profile: Option<String>,
}

/// A bad value of one of `%engines start`'s options.
fn bad(option: &str, value: &str, reason: &str) -> MagicError {
    MagicError::Usage(ParseError::BadValue {
        magic: "engines start".to_owned(),
        option: option.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    })
}

pub(super) fn start_args(rest: &[String]) -> Result<StartArgs, MagicError> {
    let parsed = parse_options("engines start", ENGINES_START, rest)?;
    no_more("engines start", &parsed.positional)?;
    if let Some(profile) = parsed.value("profile") {
        if let Some(o) = ["n", "ssh", "kernel", "python", "setup", "grace"]
            .into_iter()
            .find(|o| parsed.has(o))
        {
            return Err(usage(
                "engines start",
                format!(
                    "{} comes from the profile: give --profile alone (with --timeout)",
                    pxkernel_contract::parse::flag(o)
                ),
            ));
        }
        return Ok(StartArgs {
            n: 0,
            timeout: parse_timeout(&parsed)?,
            kernel: None,
            host: None,
            profile: Some(profile.to_owned()),
        });
    }
    let n: u32 = match parsed.value("n") {
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .ok_or_else(|| bad("n", v, "a number of engines from 1 to 1024"))?,
        None => return Err(usage("engines start", "say how many engines: -n N")),
    };
    let timeout = parse_timeout(&parsed)?;
    let host = match parsed.value("ssh") {
        Some(spec) => {
            let endpoint = Endpoint::parse_host(spec).map_err(|e| bad("ssh", spec, &e))?;
            let grace = match parsed.value("grace") {
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s >= 1.0 && *s <= 86_400.0)
                    .map(|s| Duration::from_secs(s.round() as u64))
                    .ok_or_else(|| bad("grace", v, "a number of seconds from 1 to 86400"))?,
                None => DEFAULT_GRACE,
            };
            Some(HostPlan {
                endpoint,
                python: parsed.value("python").unwrap_or("python3").to_owned(),
                setup: parsed.value("setup").map(str::to_owned),
                kernel: parsed.value("kernel").map(str::to_owned),
                grace,
                env: Vec::new(),
                args: Vec::new(),
            })
        }
        None => {
            if let Some(o) = ["python", "setup", "grace"]
                .into_iter()
                .find(|o| parsed.has(o))
            {
                return Err(usage(
                    "engines start",
                    format!("--{o} goes with --ssh HOST"),
                ));
            }
            None
        }
    };
    Ok(StartArgs {
        n,
        timeout,
        kernel: parsed.value("kernel").map(str::to_owned),
        host,
        profile: None,
    })
}

fn parse_timeout(parsed: &pxkernel_contract::parse::Parsed) -> Result<Duration, MagicError> {
    Ok(match parsed.value("timeout") {
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| bad("timeout", v, "a number of seconds above 0"))?,
        None => START_TIMEOUT,
    })
}
