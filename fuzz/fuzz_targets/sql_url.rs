//! The `%sql` connection-URL parser (`pxkernel_sql::url::parse`): the input as
//! a URL, and again as what follows `postgresql://user:PASSWORD` — where
//! libpq's reading makes `PASSWORD` (a marker) the password or, when the rest
//! says otherwise, another part — to check the promise of `url.rs`: errors and
//! parsed URLs (their `Debug` and `masked()`) never show the password.
#![no_main]

use libfuzzer_sys::{Corpus, fuzz_target};
use pxkernel_sql::url::{Url, parse};

/// The password of the second reading. It overlaps no suffix of itself with a
/// prefix, so it occurs in the URL only where it is put or inside the input.
const MARKER: &str = "Pw7XqZ9k";

fn exercise(url: &Url) -> [String; 2] {
    let _ = url.driver();
    let masked = url.masked();
    // What `%sql -l` shows parses (or is refused) without panicking.
    let _ = parse(&masked).map_err(|e| e.to_string());
    [masked, format!("{url:?}")]
}

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    match parse(text) {
        Ok(url) => drop(exercise(&url)),
        Err(e) => drop((e.to_string(), format!("{e:?}"))),
    }

    let url = format!("postgresql://user:{MARKER}{text}");
    let shown = match parse(&url) {
        Ok(url) => exercise(&url),
        Err(e) => [e.to_string(), format!("{e:?}")],
    };
    if !text.contains(MARKER) {
        for s in shown {
            assert!(!s.contains(MARKER), "the password is shown: {s}");
        }
    }
    Corpus::Keep
});
