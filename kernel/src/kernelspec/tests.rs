//! Cases for finding and installing kernelspecs: search order as jupyter_core
//! has it, spec names that cannot leave the kernels directory, and the built-in
//! `python3` kernel from the first environment with ipykernel.

use super::*;

#[test]
fn prefix_of_an_installed_spec() {
    let spec = KernelSpec {
        name: "python3".into(),
        dir: PathBuf::from("/opt/venv/share/jupyter/kernels/python3"),
        json: serde_json::from_str(r#"{"argv":["python"],"display_name":"P"}"#).unwrap(),
        native_python: None,
    };
    assert_eq!(spec.prefix(), Some(PathBuf::from("/opt/venv")));
    let elsewhere = KernelSpec {
        dir: PathBuf::from("/somewhere/python3"),
        ..spec
    };
    assert_eq!(elsewhere.prefix(), None);
}

#[test]
fn kernel_json_keeps_unknown_fields_and_defaults_interrupt_mode() {
    let j: KernelJson = serde_json::from_str(
        r#"{"argv":["x","{connection_file}"],"display_name":"X","kernel_protocol_version":"5.5"}"#,
    )
    .unwrap();
    assert_eq!(j.interrupt_mode, InterruptMode::Signal);
    assert_eq!(j.extra["kernel_protocol_version"], "5.5");
}

#[test]
fn finds_specs_on_jupyter_path_and_reports_where_it_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("kernels/fancy");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("kernel.json"),
        r#"{"argv":["fancy","-f","{connection_file}"],"display_name":"Fancy","language":"fa"}"#,
    )
    .unwrap();
    // Only this test touches JUPYTER_PATH in this process.
    unsafe { std::env::set_var("JUPYTER_PATH", tmp.path()) };
    let spec = find("Fancy").unwrap();
    assert_eq!(spec.name, "fancy");
    assert_eq!(spec.json.language, "fa");
    assert!(list().iter().any(|s| s.name == "fancy"));
    let err = find("no-such-kernel").unwrap_err().to_string();
    assert!(
        err.contains("no-such-kernel") && err.contains("kernels"),
        "{err}"
    );

    // A recorded home that has gone is replaced by the one found now, and says so.
    let gone = Location::Dir(tmp.path().join("gone/kernels/fancy"));
    let (spec, notice) = find_recorded("fancy", &gone).unwrap();
    assert_eq!(spec.dir, d);
    let notice = notice.expect("a replaced home is reported");
    assert!(
        notice.contains("gone") && notice.contains(&*d.to_string_lossy()),
        "{notice}"
    );
}

fn env(prefix: &Path, is_env: bool) -> PythonEnv {
    PythonEnv {
        prefix: prefix.to_owned(),
        python: prefix.join("bin/python3"),
        is_env,
    }
}

#[test]
fn data_dirs_follow_jupyter_core_order() {
    let user = PathBuf::from("/home/u/.local/share/jupyter");
    let venv = env(Path::new("/opt/venv"), true);
    let active = env(Path::new("/opt/other"), false);
    let system_python = env(Path::new("/usr"), false);
    let p = |s: &str| PathBuf::from(s);
    let cases = [
        (
            "a venv's Jupyter: its env before the user's",
            None,
            vec![venv.clone(), active.clone()],
            true,
            vec![
                p("/opt/venv/share/jupyter"),
                p("/opt/other/share/jupyter"),
                user.clone(),
                p("/usr/local/share/jupyter"),
                p("/usr/share/jupyter"),
            ],
        ),
        (
            "a base install: the user's first",
            None,
            vec![active.clone()],
            false,
            vec![
                user.clone(),
                p("/opt/other/share/jupyter"),
                p("/usr/local/share/jupyter"),
                p("/usr/share/jupyter"),
            ],
        ),
        (
            "JUPYTER_PATH first, in its order",
            Some("/a:/b::/a"),
            vec![venv.clone()],
            true,
            vec![
                p("/a"),
                p("/b"),
                p("/opt/venv/share/jupyter"),
                user.clone(),
                p("/usr/local/share/jupyter"),
                p("/usr/share/jupyter"),
            ],
        ),
        (
            "a Python in /usr is searched with the system dirs",
            None,
            vec![system_python],
            false,
            vec![
                user.clone(),
                p("/usr/local/share/jupyter"),
                p("/usr/share/jupyter"),
            ],
        ),
    ];
    for (case, jupyter_path, envs, prefer_env, want) in cases {
        let got = order_data_dirs(
            jupyter_path.map(std::ffi::OsStr::new),
            &envs,
            user.clone(),
            prefer_env,
        );
        assert_eq!(got, want, "{case}");
    }
}

#[test]
fn kernelspec_names_cannot_leave_the_kernels_directory() {
    let cases = [
        ("plain", "python3", true),
        ("dots, dashes, underscores", "my_kernel-1.2", true),
        ("upper case", "PxKernel", true),
        ("empty", "", false),
        ("parent", "..", false),
        ("current", ".", false),
        ("parent path", "../python3", false),
        ("absolute", "/etc", false),
        ("nested", "a/b", false),
        ("space", "my kernel", false),
        ("nul", "a\0b", false),
        ("non-ascii", "pythön", false),
    ];
    for (case, name, ok) in cases {
        let got = check_name(name);
        assert_eq!(got.is_ok(), ok, "{case}: {got:?}");
        if !ok {
            assert!(
                matches!(&got, Err(KernelspecError::BadName { name: n }) if n == name),
                "{case}: {got:?}"
            );
            assert!(
                matches!(find(name), Err(KernelspecError::BadName { .. })),
                "{case}"
            );
        }
    }
}

/// A stand-in interpreter: answers the ipykernel probe with `exit`.
fn fake_python(prefix: &Path, has_ipykernel: bool) -> PythonEnv {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    let python = prefix.join("bin/python3");
    let code = if has_ipykernel { 0 } else { 1 };
    std::fs::write(&python, format!("#!/bin/sh\nexit {code}\n")).unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    env(prefix, true)
}

#[test]
fn python3_without_a_spec_is_the_first_environment_with_ipykernel() {
    let tmp = tempfile::tempdir().unwrap();
    let without = fake_python(&tmp.path().join("bare"), false);
    let with = fake_python(&tmp.path().join("lab"), true);
    let dirs = vec![tmp.path().join("kernels")];
    let spec = find_in("python3", dirs.clone(), &[without.clone(), with.clone()]).unwrap();
    assert_eq!(spec.native_python.as_deref(), Some(with.python.as_path()));
    assert_eq!(spec.location(), Location::Native(with.python.clone()));
    assert_eq!(
        spec.json.argv,
        [
            with.python.to_str().unwrap(),
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}"
        ]
    );
    assert_eq!(spec.json.language, "python");

    // Only python3 has a built-in kernel; the error names every place and the fix.
    let err = find_in("python3", dirs.clone(), std::slice::from_ref(&without)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&*dirs[0].to_string_lossy()), "{text}");
    assert!(text.contains("no ipykernel for"), "{text}");
    assert!(
        text.contains(&format!(
            "{} -m pip install ipykernel",
            without.python.display()
        )),
        "{text}"
    );
    let err = find_in("julia-1.10", dirs, &[with])
        .unwrap_err()
        .to_string();
    assert!(!err.contains("no ipykernel"), "{err}");
    assert!(err.contains("jupyter kernelspec list"), "{err}");
}

#[test]
fn a_spec_on_disk_wins_over_the_built_in_kernel() {
    let tmp = tempfile::tempdir().unwrap();
    let with = fake_python(&tmp.path().join("lab"), true);
    let d = tmp.path().join("kernels/python3");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("kernel.json"),
        r#"{"argv":["python","-m","ipykernel_launcher","-f","{connection_file}"],"display_name":"Disk","language":"python"}"#,
    )
    .unwrap();
    let spec = find_in("Python3", vec![tmp.path().join("kernels")], &[with]).unwrap();
    assert_eq!(spec.json.display_name, "Disk");
    assert_eq!(spec.location(), Location::Dir(d));
}

#[test]
fn a_recorded_location_is_used_while_it_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("elsewhere/kernels/homely");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("kernel.json"),
        r#"{"argv":["homely","{connection_file}"],"display_name":"Homely"}"#,
    )
    .unwrap();
    let (spec, notice) = find_recorded("homely", &Location::Dir(d.clone())).unwrap();
    assert_eq!(spec.dir, d);
    assert_eq!(notice, None);

    // Gone, and found nowhere else: an error that names the recorded place.
    std::fs::remove_dir_all(&d).unwrap();
    let err = find_recorded("homely", &Location::Dir(d.clone())).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, KernelspecError::RecordedGone { .. }),
        "{text}"
    );
    assert!(text.contains(&*d.to_string_lossy()), "{text}");
    assert!(text.contains("no kernelspec named \"homely\""), "{text}");
}
