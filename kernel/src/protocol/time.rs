//! ISO 8601 timestamps for message headers, without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current UTC time as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the form jupyter_client writes.
pub fn now_iso8601() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_unix(d.as_secs() as i64, d.subsec_micros())
}

/// Format seconds since the epoch plus microseconds. Digits are written
/// directly: this runs for every message sent, and `format!` padding costs
/// several times more.
pub(crate) fn format_unix(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    let mut out = String::with_capacity(27);
    if (0..=9999).contains(&y) {
        push_digits(&mut out, y as u32, 4);
    } else {
        out.push_str(&format!("{y:04}"));
    }
    for (sep, value, width) in [
        ('-', m, 2),
        ('-', d, 2),
        ('T', rem / 3600, 2),
        (':', (rem / 60) % 60, 2),
        (':', rem % 60, 2),
        ('.', micros, 6),
    ] {
        out.push(sep);
        push_digits(&mut out, value, width);
    }
    out.push('Z');
    out
}

/// `value` in decimal, zero-padded to `width` digits.
fn push_digits(out: &mut String, value: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    let mut v = value % (div * 10);
    while div > 0 {
        out.push(char::from(b'0' + (v / div) as u8));
        v %= div;
        div /= 10;
    }
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::format_unix;

    #[test]
    fn known_instants() {
        assert_eq!(format_unix(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_unix(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(
            format_unix(1_795_878_144, 123_456),
            "2026-11-28T15:02:24.123456Z"
        );
        assert_eq!(format_unix(86_399, 999_999), "1970-01-01T23:59:59.999999Z");
        assert_eq!(
            format_unix(253_402_300_799, 0),
            "9999-12-31T23:59:59.000000Z"
        );
    }
}
