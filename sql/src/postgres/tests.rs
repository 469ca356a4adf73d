//! Cases for the binary forms: numeric both ways, intervals and addresses, dates
//! and timestamps as they come off the wire.

use super::params::numeric_bytes;
use super::rows::{decode, inet_text, interval_text, numeric_text};
use crate::value::{Value, days_from_civil};
use tokio_postgres::types::Type;

fn numeric(text_in: &str) -> String {
    numeric_text(&numeric_bytes(text_in).unwrap()).unwrap()
}

#[test]
fn numeric_round_trips() {
    for (input, want) in [
        ("0", "0"),
        ("1", "1"),
        ("-1", "-1"),
        ("12345.6789", "12345.6789"),
        ("0.0001", "0.0001"),
        ("100000000", "100000000"),
        ("1.50", "1.50"),
        ("-0.5", "-0.5"),
        (
            "99999999999999999999.123456789",
            "99999999999999999999.123456789",
        ),
    ] {
        assert_eq!(numeric(input), want, "{input}");
    }
    assert!(numeric_bytes("1e5").is_err());
    assert!(numeric_bytes("abc").is_err());
}

#[test]
fn intervals_and_addresses() {
    assert_eq!(interval_text(0, 0, 0), "00:00:00");
    assert_eq!(
        interval_text(3_723_000_000, 1, 14),
        "1 year 2 mons 1 day 01:02:03"
    );
    assert_eq!(interval_text(-1_500_000, 0, 0), "-00:00:01.5");
    assert_eq!(inet_text(&[2, 32, 0, 4, 10, 0, 0, 1]).unwrap(), "10.0.0.1");
    assert_eq!(
        inet_text(&[2, 24, 1, 4, 10, 0, 0, 0]).unwrap(),
        "10.0.0.0/24"
    );
}

#[test]
fn dates_and_timestamps_from_the_wire() {
    // 2024-01-01 is 8766 days after 2000-01-01.
    assert_eq!(
        decode(&Type::DATE, &8766i32.to_be_bytes()).unwrap(),
        Value::Date(19_723)
    );
    assert_eq!(days_from_civil(2024, 1, 1), 19_723);
    let ts = decode(&Type::TIMESTAMPTZ, &0i64.to_be_bytes()).unwrap();
    assert_eq!(ts.text().unwrap(), "2000-01-01 00:00:00+00:00");
    assert_eq!(decode(&Type::INT4, &[0, 0, 1, 0]).unwrap(), Value::Int(256));
    assert_eq!(
        decode(&Type::JSONB, b"\x01{\"a\":1}").unwrap(),
        Value::Json("{\"a\":1}".into())
    );
}
