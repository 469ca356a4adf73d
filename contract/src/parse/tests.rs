//! Named cases for the magic grammar: invocations, shell-style argument splitting,
//! option specs, and errors that name the option as the user wrote it.

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
