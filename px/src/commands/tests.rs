//! Cases for the px magics' argument handling: what `%px` says with no engines,
//! and how `%engines start` parses its arguments and names a bad option.

use super::*;
use crate::ssh::DEFAULT_GRACE;

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn px_with_no_engines_says_how_to_start_them() {
    let ssh = Rc::new(Ssh::new(
        pxkernel_ssh::master::Settings::default(),
        "pxkernel".into(),
    ));
    let px = Px::new("python3", ssh);
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("line", "print(1)", None),
        ("cell", "", Some("print(1)")),
        ("cell with options", "--noblock", Some("print(1)")),
        ("explicit targets", "--targets 0 print(1)", None),
    ];
    for (label, args, body) in cases {
        let e = match px.plan("px", args, *body) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("case {label}: planned with no engines"),
        };
        assert_eq!(
            e, "%px: no engines: start some with %engines start -n N",
            "case {label}"
        );
    }
}

#[test]
fn engines_start_arguments() {
    let cases: &[(&str, &str, u32, Duration, Option<&str>)] = &[
        ("count", "-n 4", 4, START_TIMEOUT, None),
        ("count joined", "-n4", 4, START_TIMEOUT, None),
        (
            "every option",
            "-n 2 --kernel bash --timeout 1.5",
            2,
            Duration::from_millis(1500),
            Some("bash"),
        ),
        ("most engines", "-n 1024", 1024, START_TIMEOUT, None),
    ];
    for (label, args, n, timeout, kernel) in cases {
        let got = start_args(&words(args)).unwrap_or_else(|e| panic!("case {label}: {e}"));
        let want = StartArgs {
            n: *n,
            timeout: *timeout,
            kernel: kernel.map(str::to_owned),
            host: None,
            profile: None,
        };
        assert_eq!(got, want, "case {label}");
    }
}

#[test]
fn engines_start_on_an_ssh_host() {
    let got = start_args(&words(
        "-n 2 --ssh me@pxa:2222 --python /opt/py/bin/python --grace 5",
    ))
    .unwrap();
    let host = got.host.expect("a host");
    assert_eq!(host.endpoint.destination, "me@pxa");
    assert_eq!(host.endpoint.options, ["-p", "2222"]);
    assert_eq!(host.python, "/opt/py/bin/python");
    assert_eq!(host.grace, Duration::from_secs(5));
    assert_eq!(host.setup, None);
    let got = start_args(&[
        "-n".into(),
        "1".into(),
        "--ssh".into(),
        "pxa".into(),
        "--setup".into(),
        "source /opt/env/bin/activate".into(),
    ])
    .unwrap();
    let host = got.host.expect("a host");
    assert_eq!(host.setup.as_deref(), Some("source /opt/env/bin/activate"));
    assert_eq!(
        (host.python.as_str(), host.grace),
        ("python3", DEFAULT_GRACE)
    );
}

#[test]
fn engines_start_errors_name_the_option_as_written() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "no engines asked for",
            "-n 0",
            "%engines start: bad value \"0\" for -n: a number of engines from 1 to 1024",
        ),
        (
            "too many",
            "-n 1025",
            "%engines start: bad value \"1025\" for -n: a number of engines from 1 to 1024",
        ),
        (
            "not a number",
            "-n four",
            "%engines start: bad value \"four\" for -n: a number of engines from 1 to 1024",
        ),
        (
            "no value",
            "-n",
            "%engines start: option -n needs a value (N)",
        ),
        (
            "no count",
            "--kernel bash",
            "%engines start: say how many engines: -n N",
        ),
        (
            "zero timeout",
            "-n 2 --timeout 0",
            "%engines start: bad value \"0\" for --timeout: a number of seconds above 0",
        ),
        (
            "more seconds than a duration holds",
            "-n 2 --timeout 1e300",
            "%engines start: bad value \"1e300\" for --timeout: a number of seconds above 0",
        ),
        (
            "extra word",
            "-n 2 now",
            "%engines start: unexpected argument \"now\"",
        ),
        (
            "python without a host",
            "-n 2 --python python3.12",
            "%engines start: --python goes with --ssh HOST",
        ),
        (
            "a host that is an option",
            "-n 2 --ssh=-oProxyCommand=x",
            "%engines start: bad value \"-oProxyCommand=x\" for --ssh: \"-oProxyCommand=x\" is not a host: write [user@]host[:port]",
        ),
        (
            "a profile with a count",
            "--profile two -n 2",
            "%engines start: -n comes from the profile: give --profile alone (with --timeout)",
        ),
        (
            "grace of no time",
            "-n 2 --ssh pxa --grace 0",
            "%engines start: bad value \"0\" for --grace: a number of seconds from 1 to 86400",
        ),
    ];
    for (label, args, want) in cases {
        let e = start_args(&words(args)).unwrap_err().to_string();
        assert_eq!(e, *want, "case {label}");
    }
}
