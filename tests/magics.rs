//! The magics pxkernel serves, as the router indexes them from the families the
//! binary hands it: every declaration is found, owned in its forms, helped and
//! completed, and none is declared twice.

use pxkernel_contract::{Index, MagicSpec};
use pxkernel_router::lsmagic::LSMAGIC;

fn index() -> Index {
    let mut specs: Vec<&'static MagicSpec> = vec![&LSMAGIC];
    specs.extend(pxkernel_px::magics::MAGICS.iter());
    specs.extend(pxkernel_sql::magics::MAGICS.iter());
    Index::new(specs)
}

#[test]
fn every_declared_magic_is_found_owned_helped_and_completed() {
    let index = index();
    let specs = index.specs();
    assert_eq!(specs.len(), 7, "lsmagic, five px magics, sql");
    for (i, m) in specs.iter().enumerate() {
        let name = m.name;
        assert!(
            index.find(name).is_some_and(|f| f.summary == m.summary),
            "%{name}: find"
        );
        assert!(
            specs[..i].iter().all(|o| o.name != name),
            "%{name}: declared twice"
        );
        assert_eq!(index.owns(name, false), m.line(), "%{name}: line form");
        assert_eq!(index.owns(name, true), m.cell(), "%{name}: cell form");
        assert!(!m.summary.is_empty(), "%{name}: summary");

        let help = m.help();
        assert!(help.starts_with(m.usage.trim_end()), "%{name}: usage first");
        assert!(help.contains(m.summary), "%{name}: summary in help");
        let options = help.split_once("\nOptions:\n").map_or("", |(_, o)| o);
        for o in m.options {
            assert!(!o.help.is_empty(), "%{name} {}: option help", o.flag());
            let line = options
                .lines()
                .find(|l| l.contains(&o.flag()))
                .unwrap_or_else(|| panic!("%{name}: {} not in help", o.flag()));
            assert!(line.contains(o.help), "%{name}: {line}");
        }
        for sub in m.subcommands {
            assert!(
                m.usage.contains(sub),
                "%{name}: subcommand {sub} not in usage"
            );
        }

        for (typed, offered) in [
            (format!("%{name}"), m.line()),
            (format!("%%{name}"), m.cell()),
        ] {
            let c = index
                .complete(&typed, typed.chars().count())
                .expect("completes");
            assert_eq!(c.matches.contains(&typed), offered, "{typed}: completion");
        }
        assert!(
            index
                .magic_at(&format!("%{name} "), 1)
                .is_some_and(|f| f.name == name),
            "%{name}: inspect"
        );
    }
}

#[test]
fn completes_the_served_magics_by_name_and_option() {
    let index = index();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "every line magic",
            "%",
            &[
                "%autopx",
                "%engines",
                "%lsmagic",
                "%px",
                "%%px",
                "%pxconfig",
                "%pxresult",
                "%sql",
                "%%sql",
            ],
        ),
        (
            "the px names",
            "%px",
            &["%px", "%%px", "%pxconfig", "%pxresult"],
        ),
        ("a px option", "%px --ta", &["--targets"]),
        (
            "px options by prefix",
            "%px --no",
            &["--noblock", "--no-stream"],
        ),
        ("engines subcommands", "%engines st", &["start", "stop"]),
        (
            "an option of a subcommand",
            "%engines start --ke",
            &["--kernel"],
        ),
        (
            "one-letter options read -n",
            "%engines start -",
            &[
                "-n",
                "--kernel",
                "--timeout",
                "--ssh",
                "--python",
                "--setup",
                "--profile",
                "--grace",
            ],
        ),
    ];
    for (case, code, want) in cases {
        let c = index
            .complete(code, code.chars().count())
            .unwrap_or_else(|| panic!("{case}: none"));
        assert_eq!(c.matches, *want, "{case}");
    }
}
