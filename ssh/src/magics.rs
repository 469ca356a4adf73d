//! `%ssh_tunnel` as declared to the router: its form, options and help. Its
//! arguments are OpenSSH's own, read by [`crate::args`].

use pxkernel_contract::parse::{OptSpec, Takes};
use pxkernel_contract::spec::{Form, MagicSpec};

/// pxkernel's own options; the rest are ssh's (shown in the help text).
const OPTIONS: &[OptSpec] = &[
    OptSpec::new(
        "name",
        None,
        Takes::Value("NAME"),
        "name the tunnel (default: its host)",
    ),
    OptSpec::new(
        "list",
        None,
        Takes::Nothing,
        "show the tunnels: destination, forwards, state, since, last error",
    ),
    OptSpec::new(
        "close",
        None,
        Takes::Value("NAME"),
        "close a tunnel (--close --all: every one)",
    ),
];

/// `%ssh_tunnel`.
pub const SSH_TUNNEL: MagicSpec = MagicSpec {
    name: "ssh_tunnel",
    form: Form::Line,
    summary: "Hold SSH port forwards (remote Jupyter, databases) for as long as the kernel runs.",
    usage: "%ssh_tunnel [ssh options] -L [BIND:]PORT:HOST:HOSTPORT [user@]host\n\
%ssh_tunnel --list\n%ssh_tunnel --close NAME | --all",
    options: OPTIONS,
    subcommands: &[],
    details: "Takes OpenSSH's own arguments, so a tutorial's line pastes in: \
-N and -f are implied; several -L, Unix-socket forwards (-L /local.sock:/remote.sock), -D PORT \
(SOCKS), -p, -J, -i, -l, -F, -o. A local port of 0 picks a free one. Binding anything but \
loopback needs -g. Uses the system ssh: ~/.ssh/config, the agent, known_hosts and ProxyJump \
apply. Passwords, passphrases and unknown host keys are asked in the notebook; a headless run \
fails at once, naming the fix. A dropped connection reconnects by itself and restores its \
forwards; the next cell says so. Tunnels close with the kernel.",
};

/// Every magic of the ssh family.
pub const MAGICS: &[MagicSpec] = &[SSH_TUNNEL];
