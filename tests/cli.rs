//! The command line: version, help on every subcommand, install/uninstall, and
//! clear errors for bad input.

use std::process::Command;

/// Run pxkernel where no Python environment is active or reachable, so that no
/// home kernel is found (as `pxkernel install` run outside Jupyter's venv).
fn pxkernel(args: &[&str]) -> (bool, String, String) {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pxkernel"))
        .args(args)
        .env("PATH", "/nonexistent")
        .env("JUPYTER_DATA_DIR", data.path())
        .env_remove("VIRTUAL_ENV")
        .env_remove("CONDA_PREFIX")
        .env_remove("JUPYTER_PATH")
        .env_remove("JPY_PARENT_PID")
        .output()
        .expect("run pxkernel");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version() {
    let (ok, out, _) = pxkernel(&["--version"]);
    assert!(ok);
    assert_eq!(
        out.trim(),
        format!("pxkernel {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_on_every_subcommand() {
    for (args, needle) in [
        (vec!["--help"], "install"),
        (vec!["kernel", "--help"], "--connection-file"),
        (vec!["install", "--help"], "--sys-prefix"),
        (vec!["uninstall", "--help"], "--prefix"),
    ] {
        let (ok, out, _) = pxkernel(&args);
        assert!(ok, "{args:?}");
        assert!(out.contains(needle), "{args:?}: {out}");
    }
}

fn read_kernel_json(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("kernel.json")).unwrap()).unwrap()
}

#[test]
fn install_and_uninstall_under_a_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().to_str().unwrap();
    let (ok, out, err) = pxkernel(&[
        "install",
        "--prefix",
        prefix,
        "--name",
        "pxk-test",
        "--display-name",
        "PX test",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("pxk-test"));
    let dir = tmp.path().join("share/jupyter/kernels/pxk-test");
    let json = read_kernel_json(&dir);
    assert_eq!(json["display_name"], "PX test");
    assert_eq!(json["interrupt_mode"], "message");
    assert_eq!(json["env"]["PXKERNEL_HOME"], "python3");
    let argv: Vec<&str> = json["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(std::path::Path::new(argv[0]).is_absolute());
    assert_eq!(&argv[1..], ["kernel", "-f", "{connection_file}"]);
    for logo in ["logo-32x32.png", "logo-64x64.png", "logo-svg.svg"] {
        assert!(dir.join(logo).is_file(), "{logo}");
    }
    let (ok, _, err) = pxkernel(&["uninstall", "--prefix", prefix, "--name", "pxk-test"]);
    assert!(ok, "{err}");
    assert!(!dir.exists());
}

#[test]
fn the_default_home_not_found_at_install_is_a_warning_saying_how_it_is_found_later() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().to_str().unwrap();
    let (ok, _, err) = pxkernel(&["install", "--prefix", prefix, "--name", "pxk-later"]);
    assert!(ok, "{err}");
    assert!(err.starts_with("warning:"), "{err}");
    assert!(
        err.contains("\"python3\"") && err.contains("at run time"),
        "{err}"
    );
    let json = read_kernel_json(&tmp.path().join("share/jupyter/kernels/pxk-later"));
    // Sensible language metadata though nothing answered.
    assert_eq!(json["language"], "python");
    assert_eq!(json["display_name"], "pxkernel (Python 3)");
    // Nothing recorded: the home is looked up at run time.
    assert!(json["env"].get("PXKERNEL_HOME_SPEC").is_none(), "{json}");
    assert!(json["env"].get("PXKERNEL_HOME_PYTHON").is_none(), "{json}");
}

#[test]
fn a_home_found_nowhere_is_an_error_naming_what_was_searched() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().to_str().unwrap();
    let (ok, _, err) = pxkernel(&[
        "install",
        "--prefix",
        prefix,
        "--name",
        "pxk-test",
        "--home",
        "no-such-home",
    ]);
    assert!(!ok, "installed with a home that exists nowhere");
    assert!(
        err.contains("no kernelspec named \"no-such-home\""),
        "{err}"
    );
    assert!(err.contains("/usr/local/share/jupyter/kernels"), "{err}");
    assert!(err.contains("To fix:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!tmp.path().join("share/jupyter/kernels/pxk-test").exists());
}

#[test]
fn names_that_would_leave_the_kernels_directory_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().to_str().unwrap();
    for args in [
        vec!["install", "--prefix", prefix, "--name", "../escape"],
        vec!["install", "--prefix", prefix, "--name", "/tmp/abs"],
        vec!["install", "--prefix", prefix, "--home", "../../python3"],
        vec!["uninstall", "--prefix", prefix, "--name", ".."],
    ] {
        let (ok, _, err) = pxkernel(&args);
        assert!(!ok, "{args:?}");
        assert!(err.contains("is not a kernelspec name"), "{args:?}: {err}");
    }
    assert!(!tmp.path().join("share/jupyter/escape").exists());
    assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none());
}

#[test]
fn kernel_with_a_missing_connection_file_is_a_clear_error() {
    let (ok, _, err) = pxkernel(&["kernel", "-f", "/nonexistent/kernel.json"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/kernel.json"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn kernel_refuses_an_unknown_signature_scheme_without_printing_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cf = tmp.path().join("k.json");
    std::fs::write(
        &cf,
        r#"{"shell_port": 0, "iopub_port": 0, "stdin_port": 0, "control_port": 0,
            "hb_port": 0, "ip": "127.0.0.1", "key": "secret-key-123",
            "transport": "tcp", "signature_scheme": "hmac-md5"}"#,
    )
    .unwrap();
    let (ok, _, err) = pxkernel(&["kernel", "-f", cf.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("hmac-md5"), "{err}");
    assert!(!err.contains("secret-key-123"), "{err}");
}

#[test]
fn bad_arguments_are_reported() {
    let (ok, _, err) = pxkernel(&["install", "--user", "--sys-prefix"]);
    assert!(!ok);
    assert!(err.contains("cannot be used with"), "{err}");
}
