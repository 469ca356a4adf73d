//! Cases for launching: `${VAR}` expansion in spec env values, which kernels get
//! Unix sockets, which `argv[0]` names a Python, and port reservation.

use super::*;
use std::collections::HashSet;

#[test]
fn env_expansion() {
    // SAFETY: test-only, this variable is read by no other test.
    unsafe { std::env::set_var("PXK_TEST_VAR", "v") };
    assert_eq!(expand_env("a${PXK_TEST_VAR}b"), "avb");
    assert_eq!(expand_env("${PXK_NO_SUCH_VAR_X}"), "");
    assert_eq!(expand_env("open ${ no end"), "open ${ no end");
}

#[test]
fn only_ipykernel_gets_unix_sockets() {
    let spec = |argv: &str| KernelSpec {
        name: "k".to_owned(),
        dir: PathBuf::from("/nonexistent"),
        json: serde_json::from_str(&format!(r#"{{"argv":{argv},"display_name":"K"}}"#)).unwrap(),
        native_python: None,
    };
    let cases = [
        (
            "python3 kernelspec",
            r#"["python","-m","ipykernel_launcher","-f","{connection_file}"]"#,
            true,
        ),
        (
            "old ipykernel form",
            r#"["python","-m","ipykernel","-f","{connection_file}"]"#,
            true,
        ),
        (
            "launcher by path",
            r#"["/x/ipykernel_launcher.py","-f","{connection_file}"]"#,
            true,
        ),
        (
            "bash_kernel",
            r#"["python","-m","bash_kernel","-f","{connection_file}"]"#,
            false,
        ),
        (
            "IRkernel",
            r#"["R","--slave","-e","IRkernel::main()","--args","{connection_file}"]"#,
            false,
        ),
    ];
    for (name, argv, want) in cases {
        assert_eq!(accepts_ipc(&spec(argv)), want, "{name}");
    }
}

#[test]
fn reserved_ports_are_distinct_across_calls() {
    let a = reserve_for_test(5);
    let b = reserve_for_test(5);
    let all: HashSet<u16> = a.iter().chain(&b).copied().collect();
    assert_eq!(all.len(), 10);
}

#[test]
fn curve_is_read_from_the_metadata_as_jupyter_client_reads_it() {
    let spec = |metadata: &str| KernelSpec {
        name: "k".to_owned(),
        dir: PathBuf::from("/nonexistent"),
        json: serde_json::from_str(&format!(
            r#"{{"argv":["k"],"display_name":"K","metadata":{metadata}}}"#
        ))
        .unwrap(),
        native_python: None,
    };
    let cases = [
        (
            "ipykernel 7.4's list",
            r#"{"supported_encryption":["curve"]}"#,
            true,
        ),
        (
            "a plain string",
            r#"{"supported_encryption":"curve"}"#,
            true,
        ),
        (
            "any case, spaces",
            r#"{"supported_encryption":[" CURVE "]}"#,
            true,
        ),
        (
            "another scheme only",
            r#"{"supported_encryption":["tls"]}"#,
            false,
        ),
        ("an empty list", r#"{"supported_encryption":[]}"#, false),
        ("not declared", r#"{"debugger":true}"#, false),
        ("a number", r#"{"supported_encryption":1}"#, false),
    ];
    for (name, metadata, want) in cases {
        assert_eq!(spec(metadata).supports_curve(), want, "{name}");
    }
}
