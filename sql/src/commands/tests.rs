//! Cases for `%sql` text handling: where table names complete, and what is taken
//! for a connection URL.

use super::*;

#[test]
fn table_names_complete_after_from_and_join() {
    let cases: &[(&str, Option<(usize, &str)>)] = &[
        ("%sql SELECT * FROM ta", Some((19, "ta"))),
        ("%%sql\nselect a from t1 join w", Some((28, "w"))),
        ("df << %sql select * from ", Some((25, ""))),
        ("%sql SELECT ta", None),
        ("print('from x')", None),
    ];
    for (code, want) in cases {
        let got = table_context(code, code.chars().count());
        assert_eq!(got.as_ref().map(|(s, p)| (*s, p.as_str())), *want, "{code}");
    }
}

#[test]
fn urls_are_recognized() {
    assert!(looks_like_url("sqlite://"));
    assert!(looks_like_url(" postgresql://u@h/d"));
    assert!(!looks_like_url("select 'sqlite://'"));
}
