//! Named cases for the URL parser: what libpq accepts parses to the same parts,
//! and every refusal says what is wrong without showing the password.

use super::*;

fn pg(text: &str) -> Postgres {
    match parse(text) {
        Ok(Url::Postgres(p)) => p,
        other => panic!("{text}: {other:?}"),
    }
}

#[test]
fn sqlite_forms() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("memory", "sqlite://", None),
        ("explicit memory", "sqlite:///:memory:", None),
        ("relative", "sqlite:///data/aug31.db", Some("data/aug31.db")),
        ("absolute", "sqlite:////tmp/x.db", Some("/tmp/x.db")),
        ("escaped", "sqlite:///my%20file.db", Some("my file.db")),
        (
            "a space as it is",
            "sqlite:///my file.db",
            Some("my file.db"),
        ),
    ];
    for (label, text, want) in cases {
        assert_eq!(
            parse(text).unwrap(),
            Url::Sqlite(want.map(PathBuf::from)),
            "case {label}"
        );
    }
}

/// What a PostgreSQL URL names: user, password, host, socket directory, port, database.
type Parts = (
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    u16,
    Option<&'static str>,
);

#[test]
fn postgres_parts_as_libpq_reads_them() {
    let cases: &[(&str, &str, Parts)] = &[
        (
            "every part",
            "postgresql://ada:secret@db.example.com:6543/sales",
            (
                Some("ada"),
                Some("secret"),
                Some("db.example.com"),
                None,
                6543,
                Some("sales"),
            ),
        ),
        (
            "short scheme, IPv6 host, no password",
            "postgres://u@[::1]/d",
            (Some("u"), None, Some("::1"), None, 5432, Some("d")),
        ),
        (
            "IPv6 host with a port",
            "postgresql://u@[::1]:6000/d",
            (Some("u"), None, Some("::1"), None, 6000, Some("d")),
        ),
        (
            "%40 in the password",
            "postgresql://ada:s%40cret@h/d",
            (
                Some("ada"),
                Some("s@cret"),
                Some("h"),
                None,
                5432,
                Some("d"),
            ),
        ),
        (
            "%2F in the password",
            "postgresql://ada:a%2Fb@h/d",
            (Some("ada"), Some("a/b"), Some("h"), None, 5432, Some("d")),
        ),
        (
            "every special character encoded in the password",
            "postgresql://ada:%2F%3F%23%40%3A%25@h/d",
            (
                Some("ada"),
                Some("/?#@:%"),
                Some("h"),
                None,
                5432,
                Some("d"),
            ),
        ),
        (
            "raw ':' in the password",
            "postgresql://ada:pa:ss@h/d",
            (Some("ada"), Some("pa:ss"), Some("h"), None, 5432, Some("d")),
        ),
        (
            "raw '?' in the password",
            "postgresql://ada:pa?ss@h/d",
            (Some("ada"), Some("pa?ss"), Some("h"), None, 5432, Some("d")),
        ),
        (
            "raw '#' in the password",
            "postgresql://ada:pa#ss@h/d",
            (Some("ada"), Some("pa#ss"), Some("h"), None, 5432, Some("d")),
        ),
        (
            "raw '?', '#' and ':' in the password, then a query",
            "postgresql://ada:p?#:x@h:5433/d?application_name=nb",
            (Some("ada"), Some("p?#:x"), Some("h"), None, 5433, Some("d")),
        ),
        (
            "%3A in the user name",
            "postgresql://a%3Ada:pw@h/d",
            (Some("a:da"), Some("pw"), Some("h"), None, 5432, Some("d")),
        ),
        (
            "%40 in the user name",
            "postgresql://ada%40corp:pw@h/d",
            (
                Some("ada@corp"),
                Some("pw"),
                Some("h"),
                None,
                5432,
                Some("d"),
            ),
        ),
        (
            "empty password is no password",
            "postgresql://u:@h/d",
            (Some("u"), None, Some("h"), None, 5432, Some("d")),
        ),
        (
            "password without user",
            "postgresql://:pw@h/d",
            (None, Some("pw"), Some("h"), None, 5432, Some("d")),
        ),
        (
            "user and nothing else",
            "postgresql://u@",
            (Some("u"), None, None, None, 5432, None),
        ),
        (
            "nothing at all",
            "postgresql://",
            (None, None, None, None, 5432, None),
        ),
        (
            "empty database name",
            "postgresql://h/",
            (None, None, Some("h"), None, 5432, None),
        ),
        (
            "leading zeros in the port",
            "postgresql://h:05432/d",
            (None, None, Some("h"), None, 5432, Some("d")),
        ),
        (
            "highest port",
            "postgresql://h:65535/d",
            (None, None, Some("h"), None, 65535, Some("d")),
        ),
        (
            "socket directory as a parameter",
            "postgresql:///d?host=/var/run/postgresql",
            (
                None,
                None,
                None,
                Some("/var/run/postgresql"),
                5432,
                Some("d"),
            ),
        ),
        (
            "socket directory encoded as the host",
            "postgresql://%2Fvar%2Frun%2Fpostgresql/d",
            (
                None,
                None,
                None,
                Some("/var/run/postgresql"),
                5432,
                Some("d"),
            ),
        ),
        (
            "user, password, port and database as parameters",
            "postgresql://h?user=u&password=p%26q&port=6000&dbname=d",
            (Some("u"), Some("p&q"), Some("h"), None, 6000, Some("d")),
        ),
        (
            "an '@' in a parameter after user info",
            "postgresql://u@h/d?application_name=me@laptop",
            (Some("u"), None, Some("h"), None, 5432, Some("d")),
        ),
    ];
    for (label, text, (user, password, host, socket_dir, port, dbname)) in cases {
        let p = pg(text);
        assert_eq!(p.user.as_deref(), *user, "case {label}: user");
        assert_eq!(
            p.password.as_ref().map(Secret::expose),
            *password,
            "case {label}: password"
        );
        assert_eq!(p.host.as_deref(), *host, "case {label}: host");
        assert_eq!(
            p.socket_dir,
            socket_dir.map(PathBuf::from),
            "case {label}: socket directory"
        );
        assert_eq!(p.port, *port, "case {label}: port");
        assert_eq!(p.dbname.as_deref(), *dbname, "case {label}: database");
    }
}

#[test]
fn postgres_parameters() {
    let p = pg("postgresql://u@h/d?sslmode=require&application_name=nb&connect_timeout=3");
    assert_eq!(p.sslmode, SslMode::Require);
    assert_eq!(p.application_name.as_deref(), Some("nb"));
    assert_eq!(p.connect_timeout, Some(Duration::from_secs(3)));

    assert_eq!(pg("postgresql://u@h/d").sslmode, SslMode::Prefer);
    assert_eq!(pg("postgresql://u@h/d?ssl=true").sslmode, SslMode::Require);

    let p = pg("postgresql://u@h/d?sslmode=verify-full&sslrootcert=/ca.pem");
    assert_eq!(p.sslmode, SslMode::VerifyFull);
    assert_eq!(p.sslrootcert, Some(PathBuf::from("/ca.pem")));

    let p = pg("postgresql://u@h/d?application_name=me@laptop");
    assert_eq!(p.application_name.as_deref(), Some("me@laptop"));
}

#[test]
fn refusals_name_the_problem_and_never_the_password() {
    // (label, URL, what the message says, a piece of the password it must not show)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "port 0",
            "postgresql://u:hunter2@h:0/d",
            "bad database URL: the port after the host is 0: ports run from 1 to 65535",
            "hunter2",
        ),
        (
            "port above 65535",
            "postgresql://u:hunter2@h:65536/d",
            "bad database URL: the port after the host is above 65535, the largest port",
            "hunter2",
        ),
        (
            "port with more digits than any integer",
            "postgresql://u:hunter2@h:99999999999999999999999/d",
            "the port after the host is above 65535",
            "hunter2",
        ),
        (
            "port that is not a number",
            "postgresql://u:hunter2@h:54x2/d",
            "bad database URL: the port after the host is not a number: ports run from 1 to 65535",
            "hunter2",
        ),
        (
            "negative port",
            "postgresql://u:hunter2@h:-1/d",
            "the port after the host is not a number",
            "hunter2",
        ),
        (
            "port with a sign",
            "postgresql://u:hunter2@h:+5432/d",
            "the port after the host is not a number",
            "hunter2",
        ),
        (
            "empty port",
            "postgresql://u:hunter2@h:/d",
            "bad database URL: the port after the host is empty",
            "hunter2",
        ),
        (
            "port 0 as a parameter",
            "postgresql://u:hunter2@h/d?port=0",
            "bad database URL: the port in ?port= is 0",
            "hunter2",
        ),
        (
            "empty port parameter",
            "postgresql://u:hunter2@h/d?port=",
            "the port in ?port= is empty",
            "hunter2",
        ),
        (
            "raw '/' in the password",
            "postgresql://u:hunter2/x@h/d",
            "write a '/' in the user name or password as %2F",
            "hunter2",
        ),
        (
            "raw '/' in a password of digits (it would read as a port)",
            "postgresql://u:12345/6789@h/d",
            "write a '/' in the user name or password as %2F",
            "6789",
        ),
        (
            "raw '/' in a password of digits, other half",
            "postgresql://u:12345/6789@h/d",
            "an '@' follows the first '/'",
            "12345",
        ),
        (
            "raw '/' and '?' in the password (it would read as a parameter)",
            "postgresql://u:1/x?sslmode=hunter2@h/d",
            "write a '/' in the user name or password as %2F",
            "hunter2",
        ),
        (
            "raw '@' in the password",
            "postgresql://u:p@ssw0rd@h/d",
            "the host contains '@': write an '@' in the user name or password as %40",
            "ssw0rd",
        ),
        (
            "bad escape in the password",
            "postgresql://u:hunter2%zz@h/d",
            "a % in the password is not followed by two hex digits",
            "hunter2",
        ),
        (
            "%00 in the password",
            "postgresql://u:hunter%002@h/d",
            "the password contains %00, which is not allowed",
            "hunter",
        ),
        (
            "space inside the password",
            "postgresql://u:hunter 2@h/d",
            "the password contains a space: write it as %20",
            "hunter",
        ),
        (
            "password that is not UTF-8",
            "postgresql://u:hunter2%ff@h/d",
            "the password is not UTF-8 once decoded",
            "hunter2",
        ),
        (
            "bad escape in the password parameter",
            "postgresql://u@h/d?password=hunter2%g",
            "a % in the value of password is not followed by two hex digits",
            "hunter2",
        ),
        (
            "'=' in the password parameter",
            "postgresql://u@h/d?password=hunter2=",
            "the value of password contains '=': write it as %3D",
            "hunter2",
        ),
        (
            "parameter without a value",
            "postgresql://u:hunter2@h/d?sslmode",
            "a connection parameter has no '=VALUE'",
            "hunter2",
        ),
        (
            "unknown parameter",
            "postgresql://u:hunter2@h/d?frobnicate=1",
            "unsupported connection parameter \"frobnicate\"",
            "hunter2",
        ),
        (
            "bad sslmode",
            "postgresql://u:hunter2@h/d?sslmode=always",
            "sslmode \"always\": use disable, prefer, require, verify-ca or verify-full",
            "hunter2",
        ),
        (
            "bad connect_timeout",
            "postgresql://u:hunter2@h/d?connect_timeout=soon",
            "connect_timeout \"soon\" is not a number of seconds",
            "hunter2",
        ),
        (
            "several hosts",
            "postgresql://u:hunter2@h1:5432,h2/d",
            "several hosts (host1,host2) are not supported",
            "hunter2",
        ),
        (
            "unclosed IPv6 host",
            "postgresql://u:hunter2@[::1/d",
            "the [ of an IPv6 host is not closed",
            "hunter2",
        ),
        (
            "empty IPv6 host",
            "postgresql://u:hunter2@[]/d",
            "the IPv6 host between [ ] is empty",
            "hunter2",
        ),
        (
            "junk after an IPv6 host",
            "postgresql://u:hunter2@[::1]x/d",
            "expected ':', '/' or '?' after the ] of an IPv6 host",
            "hunter2",
        ),
        (
            "unknown scheme",
            "mysql://u:hunter2@h/d",
            "unsupported database URL scheme \"mysql\"",
            "hunter2",
        ),
        (
            "no scheme",
            "u:hunter2@h/d",
            "expected scheme://",
            "hunter2",
        ),
        (
            "password where the scheme should be",
            "ada:hunter2://h/d",
            "expected scheme://",
            "hunter2",
        ),
        (
            "SQLite with a host",
            "sqlite://host/x.db",
            "an SQLite URL has no host",
            "host/x.db",
        ),
    ];
    for (label, text, says, secret) in cases {
        let e = parse(text).expect_err(label);
        let shown = e.to_string();
        assert!(shown.contains(says), "case {label}: {shown}");
        assert!(
            !shown.contains(secret),
            "case {label} shows {secret:?}: {shown}"
        );
        assert!(
            !format!("{e:?}").contains(secret),
            "case {label} debugs {secret:?}: {e:?}"
        );
    }
}

#[test]
fn masked_urls_hide_the_password() {
    let u = parse("postgresql://ada:hunter2@h:5433/sales?sslmode=require").unwrap();
    assert_eq!(
        u.masked(),
        "postgresql://ada:***@h:5433/sales?sslmode=require"
    );
    assert!(!format!("{u:?}").contains("hunter2"));
    assert_eq!(parse("sqlite://").unwrap().masked(), "sqlite://");
    assert_eq!(
        parse("sqlite:////tmp/a.db").unwrap().masked(),
        "sqlite:////tmp/a.db"
    );
    assert_eq!(parse("sqlite:///a.db").unwrap().masked(), "sqlite:///a.db");
}
