//! What drivers return: typed values, columns, result sets, and their text form
//! for tables. Pure data and formatting.

use pxkernel_contract::display::{Align, Cell, Table};

/// A value from a database, kept with its type.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// Any integer.
    Int(i64),
    /// Any floating point number.
    Float(f64),
    /// An exact decimal, as text (`123.4500`).
    Decimal(String),
    /// A boolean.
    Bool(bool),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A date: days since 1970-01-01.
    Date(i32),
    /// A time of day: microseconds since midnight.
    Time(i64),
    /// A timestamp without time zone: microseconds since 1970-01-01 00:00.
    Timestamp(i64),
    /// A timestamp with time zone, in UTC: microseconds since the epoch.
    TimestampTz(i64),
    /// JSON text.
    Json(String),
    /// Anything else, already as text.
    Other(String),
}

/// The broad type of a column: how it aligns and how it travels to pandas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Integers.
    Int,
    /// Floats.
    Float,
    /// Decimals.
    Decimal,
    /// Booleans.
    Bool,
    /// Text (and everything shown as text).
    Text,
    /// Bytes.
    Bytes,
    /// Dates.
    Date,
    /// Times of day.
    Time,
    /// Timestamps.
    Timestamp,
    /// Timestamps with time zone.
    TimestampTz,
    /// JSON.
    Json,
    /// Not known until the values are seen (SQLite).
    Dynamic,
}

impl Kind {
    fn numeric(self) -> bool {
        matches!(self, Kind::Int | Kind::Float | Kind::Decimal)
    }
}

/// A result column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type, as far as the driver knows it.
    pub kind: Kind,
}

/// Rows of one statement.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    /// The columns.
    pub columns: Vec<Column>,
    /// The rows fetched.
    pub rows: Vec<Vec<Value>>,
    /// Whether the statement has more rows than were fetched.
    pub more: bool,
}

/// What one statement did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It returned rows.
    Rows(Rows),
    /// It changed this many rows (INSERT, UPDATE, DELETE…).
    Affected(u64),
    /// It ran (DDL and the like).
    Done,
}

const DAYS_TO_1970: i64 = 719_468;

/// Days since 1970-01-01 as (year, month, day).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + DAYS_TO_1970;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) as days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - DAYS_TO_1970
}

fn date_text(days: i64) -> String {
    let (y, m, d) = civil(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn time_text(us: i64) -> String {
    let s = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let mut t = format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
    if frac != 0 {
        let f = format!("{frac:06}");
        t.push('.');
        t.push_str(f.trim_end_matches('0'));
    }
    t
}

fn timestamp_text(us: i64) -> String {
    let day_us = 86_400_000_000;
    format!(
        "{} {}",
        date_text(us.div_euclid(day_us)),
        time_text(us.rem_euclid(day_us))
    )
}

/// Parse `YYYY-MM-DD` (SQLite dates are text).
pub fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s[..4].parse().ok()?;
    let m: u32 = s[5..7].parse().ok()?;
    let d: u32 = s[8..10].parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    i32::try_from(days_from_civil(y, m, d)).ok()
}

/// Parse `YYYY-MM-DD HH:MM:SS[.ffffff]` (or with `T`) into microseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    if s.len() < 19 {
        return None;
    }
    let days = i64::from(parse_date(&s[..10])?);
    let sep = s.as_bytes()[10];
    if sep != b' ' && sep != b'T' {
        return None;
    }
    let t = &s[11..];
    let h: i64 = t.get(..2)?.parse().ok()?;
    let mi: i64 = t.get(3..5)?.parse().ok()?;
    let se: i64 = t.get(6..8)?.parse().ok()?;
    let mut us = 0i64;
    if let Some(frac) = t.get(8..).filter(|f| f.starts_with('.')) {
        let digits: String = frac[1..].chars().take(6).collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) || digits.is_empty() {
            return None;
        }
        us = format!("{digits:0<6}").parse().ok()?;
    } else if t.len() > 8 {
        return None;
    }
    Some(((days * 86_400 + h * 3600 + mi * 60 + se) * 1_000_000) + us)
}

/// Shortest text that reads back as the same float (as Python's `repr`).
fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else if f != 0.0 && (f.abs() >= 1e16 || f.abs() < 1e-4) {
        // Python's style: 1e+300, 1.5e-07.
        let e = format!("{f:e}");
        let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    } else if f == f.trunc() {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

impl Value {
    /// The text a table shows; None for NULL.
    pub fn text(&self) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Int(i) => i.to_string(),
            Value::Float(f) => float_text(*f),
            Value::Decimal(s) | Value::Text(s) | Value::Json(s) | Value::Other(s) => s.clone(),
            Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
            Value::Bytes(b) => {
                let mut s = String::with_capacity(2 + 2 * b.len());
                s.push_str("\\x");
                for byte in b {
                    s.push_str(&format!("{byte:02x}"));
                }
                s
            }
            Value::Date(d) => date_text(i64::from(*d)),
            Value::Time(t) => time_text(*t),
            Value::Timestamp(t) => timestamp_text(*t),
            Value::TimestampTz(t) => format!("{}+00:00", timestamp_text(*t)),
        })
    }

    fn is_number(&self) -> bool {
        matches!(self, Value::Int(_) | Value::Float(_) | Value::Decimal(_))
    }
}

/// A table of rows: numbers right-aligned, NULL shown as NULL, a footer.
pub fn table(rows: &Rows, shown: usize, footer: String) -> Table {
    let columns: Vec<(&str, Align)> = rows
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let numeric = c.kind.numeric()
                || (c.kind == Kind::Dynamic
                    && rows.rows.iter().take(shown).any(|r| r[i].is_number())
                    && rows
                        .rows
                        .iter()
                        .take(shown)
                        .all(|r| r[i].is_number() || r[i] == Value::Null));
            (
                c.name.as_str(),
                if numeric { Align::Right } else { Align::Left },
            )
        })
        .collect();
    let mut t = Table::new(&columns);
    for r in rows.rows.iter().take(shown) {
        t.rows.push(
            r.iter()
                .map(|v| v.text().map_or(Cell::Missing, Cell::Text))
                .collect(),
        );
    }
    t.footer = Some(footer);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        for days in [-719_468, -1, 0, 1, 10_957, 19_723, 2_932_896] {
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m, d), days, "{days}");
        }
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
    }

    #[test]
    fn texts() {
        let cases: Vec<(Value, Option<&str>)> = vec![
            (Value::Null, None),
            (Value::Int(-42), Some("-42")),
            (Value::Float(2.0), Some("2.0")),
            (Value::Float(0.1), Some("0.1")),
            (Value::Float(1e300), Some("1e+300")),
            (Value::Float(1.5e-7), Some("1.5e-07")),
            (Value::Float(f64::NAN), Some("NaN")),
            (Value::Decimal("1.50".into()), Some("1.50")),
            (Value::Bool(true), Some("True")),
            (Value::Bytes(vec![0xde, 0xad]), Some("\\xdead")),
            (Value::Date(19_723), Some("2024-01-01")),
            (Value::Time(3_723_000_500), Some("01:02:03.0005")),
            (
                Value::Timestamp(1_704_067_200_000_000),
                Some("2024-01-01 00:00:00"),
            ),
            (
                Value::TimestampTz(1_704_067_200_123_456),
                Some("2024-01-01 00:00:00.123456+00:00"),
            ),
        ];
        for (v, want) in cases {
            assert_eq!(v.text().as_deref(), want, "{v:?}");
        }
    }

    #[test]
    fn parsing_sqlite_dates_and_timestamps() {
        assert_eq!(parse_date("2024-01-01"), Some(19_723));
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("20240101"), None);
        assert_eq!(
            parse_timestamp("2024-01-01 00:00:01"),
            Some(1_704_067_201_000_000)
        );
        assert_eq!(
            parse_timestamp("2024-01-01T00:00:00.5"),
            Some(1_704_067_200_500_000)
        );
        assert_eq!(parse_timestamp("2024-01-01 00:00:00Z"), None);
        assert_eq!(parse_timestamp("soon"), None);
    }

    #[test]
    fn tables_align_numbers_right_and_show_null() {
        let rows = Rows {
            columns: vec![
                Column {
                    name: "n".into(),
                    kind: Kind::Dynamic,
                },
                Column {
                    name: "s".into(),
                    kind: Kind::Text,
                },
            ],
            rows: vec![
                vec![Value::Int(1), Value::Text("<a>".into())],
                vec![Value::Null, Value::Null],
                vec![Value::Int(300), Value::Text("z".into())],
            ],
            more: false,
        };
        let t = table(&rows, 3, "3 rows".into());
        assert_eq!(
            t.to_text(),
            "   n  s\n----  ----\n   1  <a>\nNULL  NULL\n 300  z\n3 rows\n"
        );
        assert!(t.to_html().contains("&lt;a&gt;"));
    }
}
