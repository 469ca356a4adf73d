//! The SQL statement lexer (`pxkernel_sql::lex`): regions of code, quoted text
//! and comments, splitting a cell into statements, and `:name` parameters bound
//! to `$k` / `?k` with positions mapped back to the original text.
//!
//! Besides not panicking: the regions tile the input in order, and a position
//! in the bound text maps back into the original text.
#![no_main]

use libfuzzer_sys::{Corpus, fuzz_target};
use pxkernel_sql::lex::{bind_names, regions, split_statements};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(sql) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };

    let mut at = 0;
    for (start, end, _) in regions(sql) {
        assert_eq!(start, at, "regions leave a gap or overlap");
        assert!(end > start, "empty region");
        assert!(sql.get(start..end).is_some(), "region off a char boundary");
        at = end;
    }
    assert_eq!(at, sql.len(), "regions stop short of the end");

    let _ = split_statements(sql);

    let chars = sql.chars().count();
    for dollar in [true, false] {
        let bound = bind_names(sql, dollar);
        if bound.names.is_empty() {
            assert_eq!(bound.sql, sql, "text changed without a parameter");
        }
        let n = bound.sql.chars().count();
        // Every position would be quadratic on long inputs: the first ones and the last.
        let positions = (1..=n.min(512)).chain(n.saturating_sub(8).max(1)..=n);
        for p in positions {
            let o = bound.original_position(p);
            assert!(
                (1..=chars).contains(&o),
                "position {p} of {n} maps to {o}, outside 1..={chars}"
            );
        }
    }
    Corpus::Keep
});
