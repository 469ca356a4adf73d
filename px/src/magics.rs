//! The magics of the px family as declared to the router: names, forms, option
//! specs and help of `%px`, `%autopx`, `%pxresult`, `%pxconfig` and `%engines`.

use pxkernel_contract::parse::{OptSpec, Takes};
use pxkernel_contract::spec::{Form, MagicSpec};

/// `%px` / `%%px`.
pub const PX: MagicSpec = MagicSpec {
    name: "px",
    form: Form::Both,
    summary: "Run code on the engines in parallel and show their output as it arrives.",
    usage: "%px [options] CODE\n%%px [options]\nCELL",
    options: crate::options::SPECS,
    subcommands: &[],
    details: "Output is tagged by engine: [stdout:0], [stderr:1], [output:2] before displays, \
Out[0:5] results, [3:execute] errors. The cell fails when any target engine errors, dies or \
times out, naming each one; the others' output is still shown. Interrupt stops every busy \
target engine. Defaults come from %pxconfig.",
};

/// `%autopx`.
pub const AUTOPX: MagicSpec = MagicSpec {
    name: "autopx",
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
    form: Form::Line,
    summary: "Set the default options of %px (with no options: show them).",
    usage: "%pxconfig [options]\n%pxconfig --reset",
    options: crate::options::SPECS,
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
    OptSpec::new(
        "ssh",
        None,
        Takes::Value("[USER@]HOST[:PORT]"),
        "start the engines on this SSH host (an ssh_config alias works)",
    ),
    OptSpec::new(
        "python",
        None,
        Takes::Value("PATH"),
        "with --ssh: the interpreter on the host (default python3)",
    ),
    OptSpec::new(
        "setup",
        None,
        Takes::Value("COMMANDS"),
        "with --ssh: shell commands run first ('module load …; source …/activate')",
    ),
    OptSpec::new(
        "profile",
        None,
        Takes::Value("NAME"),
        "start the engines and tunnels a cluster profile names (%engines profiles lists them)",
    ),
    OptSpec::new(
        "grace",
        None,
        Takes::Value("SECONDS"),
        "with --ssh: how long engines outlive a lost pxkernel (default 30)",
    ),
];

/// `%engines`.
pub const ENGINES: MagicSpec = MagicSpec {
    name: "engines",
    form: Form::Line,
    summary: "Start, list, stop, restart or attach the engines %px runs on.",
    usage: "%engines [list]\n%engines start -n N [--kernel KERNELSPEC] [--timeout SECONDS]\n\
%engines start --ssh [USER@]HOST[:PORT] -n N [--python PATH] [--setup CMDS] [--grace SECONDS]\n\
%engines start --profile NAME\n%engines profiles\n\
%engines stop [TARGETS]\n%engines restart TARGETS\n%engines connect FILE...",
    options: ENGINES_START,
    subcommands: &["list", "start", "stop", "restart", "connect", "profiles"],
    details: "Engines are Jupyter kernels of any language. Ids are integers from 0, stable for \
the notebook's life; a later start adds more. A dead engine is shown dead within 3 s and never \
blocks a cell. TARGETS: all, 3, 0,2,5, 1:4, ::2, -1. Engines on SSH hosts run over one \
OpenSSH master per host (your ssh_config, agent and known_hosts apply; prompts come to the \
notebook), with Unix sockets forwarded: pxkernel opens no port on the host. They end when pxkernel \
is gone longer than the grace period, by a watchdog on the host.",
};

/// Every magic of the family.
pub const MAGICS: &[MagicSpec] = &[PX, AUTOPX, PXRESULT, PXCONFIG, ENGINES];
