//! The magic grammar (`pxkernel_contract::parse`): a cell as the router sees it
//! (`invocation`: `%name args`, `%%name args` + body, `?%name`), then its
//! arguments (the whole input when it is no magic) through every parser that
//! reads them: shell-style splitting, the option tables of `%px`/`%pxconfig`,
//! `%engines start` and `%sql` (`parse_options`, `parse_leading`), `%px`'s
//! option values and targets (resolved against a fixed set of engine ids), and
//! `%ssh_tunnel`'s own getopt-style line parser with its forwards and hosts.
//! Errors are rendered, as users see them.
#![no_main]

use libfuzzer_sys::{Corpus, fuzz_target};
use pxkernel_contract::parse::{Invocation, invocation, parse_leading, parse_options, split_args};
use pxkernel_px::magics::ENGINES_START;
use pxkernel_px::options::{self, PxOptions};
use pxkernel_px::targets;
use pxkernel_ssh::args::{self as tunnel, Endpoint, TunnelCommand};

/// Engine ids to resolve targets against (sorted, with gaps).
const ENGINE_IDS: &[u32] = &[0, 1, 2, 3, 5, 8];

fn args(text: &str) {
    if let Ok(words) = split_args("m", text) {
        let _ = parse_options("px", options::SPECS, &words).map_err(|e| e.to_string());
        let _ =
            parse_options("sql", pxkernel_sql::magics::SPECS, &words).map_err(|e| e.to_string());
        // `%engines start …`: the subcommand, then its options.
        let rest = words.get(1..).unwrap_or_default();
        let _ = parse_options("engines start", ENGINES_START, rest).map_err(|e| e.to_string());
    }

    match parse_leading("px", options::SPECS, text) {
        Ok((parsed, _code)) => match options::apply("px", &parsed, &PxOptions::default()) {
            Ok(o) => {
                let _ = options::describe(&o);
                let _ = targets::resolve(&o.targets, ENGINE_IDS);
            }
            Err(e) => drop(e.to_string()),
        },
        Err(e) => drop(e.to_string()),
    }
    let _ = parse_leading("sql", pxkernel_sql::magics::SPECS, text).map_err(|e| e.to_string());

    // A targets expression on its own (`%engines stop TARGETS`).
    if let Ok(t) = targets::parse(text) {
        let _ = t.to_string();
        let _ = targets::resolve(&t, ENGINE_IDS).map_err(|e| e.to_string());
    }

    match tunnel::parse(text) {
        Ok(TunnelCommand::Open(open)) => {
            let _ = (open.endpoint.key(), open.endpoint.host());
            for (_, forward) in &open.forwards {
                let _ = forward.ssh_arg();
            }
        }
        Ok(_) => {}
        Err(e) => drop(e.to_string()),
    }
    // `%engines start --ssh [USER@]HOST[:PORT]`.
    if let Ok(e) = Endpoint::parse_host(text) {
        let _ = (e.key(), e.host());
    }
}

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(code) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    match invocation(code) {
        Some(Invocation::Line { args: a, .. }) => args(a),
        Some(Invocation::Cell { args: a, body, .. }) => {
            args(a);
            // `%%sql` reads options from the body's first words too.
            let _ = split_args("sql", body);
        }
        Some(Invocation::Help { .. }) => {}
        None => args(code),
    }
    Corpus::Keep
});
