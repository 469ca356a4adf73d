//! Rows from the wire: result columns and their [`Kind`]s, and every value of a
//! row decoded from PostgreSQL's binary form into a typed [`Value`] (numeric,
//! interval, inet and array values as PostgreSQL prints them).

use tokio_postgres::Statement;
use tokio_postgres::types::{FromSql, Kind as PgKind, Type};

use super::{BoxError, PG_EPOCH_DAYS, PG_EPOCH_US};
use crate::driver::DbError;
use crate::value::{Column, Kind, Value};

fn kind_of(ty: &Type) -> Kind {
    match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => Kind::Int,
        Type::FLOAT4 | Type::FLOAT8 => Kind::Float,
        Type::NUMERIC => Kind::Decimal,
        Type::BOOL => Kind::Bool,
        Type::BYTEA => Kind::Bytes,
        Type::DATE => Kind::Date,
        Type::TIME => Kind::Time,
        Type::TIMESTAMP => Kind::Timestamp,
        Type::TIMESTAMPTZ => Kind::TimestampTz,
        Type::JSON | Type::JSONB => Kind::Json,
        _ => match ty.kind() {
            PgKind::Domain(base) => kind_of(base),
            _ => Kind::Text,
        },
    }
}

pub(super) fn columns(stmt: &Statement) -> Vec<Column> {
    stmt.columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            kind: kind_of(c.type_()),
        })
        .collect()
}

pub(super) fn decode_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<Vec<Value>>, DbError> {
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    row.try_get::<_, Cell>(i)
                        .map(|c| c.0)
                        .map_err(|e| DbError::query(format!("cannot read column {i}: {e}")))
                })
                .collect()
        })
        .collect()
}

/// Any PostgreSQL value, decoded from its binary form.
struct Cell(Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        decode(ty, raw).map(Cell)
    }
    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Cell(Value::Null))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn be<const N: usize>(raw: &[u8], at: usize) -> Result<[u8; N], BoxError> {
    raw.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| "truncated value".into())
}

fn text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// Decode one binary value.
pub(crate) fn decode(ty: &Type, raw: &[u8]) -> Result<Value, BoxError> {
    Ok(match *ty {
        Type::BOOL => Value::Bool(raw.first().is_some_and(|b| *b != 0)),
        Type::INT2 => Value::Int(i64::from(i16::from_be_bytes(be(raw, 0)?))),
        Type::INT4 => Value::Int(i64::from(i32::from_be_bytes(be(raw, 0)?))),
        Type::OID => Value::Int(i64::from(u32::from_be_bytes(be(raw, 0)?))),
        Type::INT8 => Value::Int(i64::from_be_bytes(be(raw, 0)?)),
        Type::FLOAT4 => Value::Float(f64::from(f32::from_be_bytes(be(raw, 0)?))),
        Type::FLOAT8 => Value::Float(f64::from_be_bytes(be(raw, 0)?)),
        Type::NUMERIC => Value::Decimal(numeric_text(raw)?),
        Type::JSONB => Value::Json(text(raw.get(1..).unwrap_or_default())),
        Type::JSON => Value::Json(text(raw)),
        Type::BYTEA => Value::Bytes(raw.to_vec()),
        Type::DATE => match i32::from_be_bytes(be(raw, 0)?) {
            i32::MAX => Value::Other("infinity".into()),
            i32::MIN => Value::Other("-infinity".into()),
            d => Value::Date((i64::from(d) + PG_EPOCH_DAYS) as i32),
        },
        Type::TIME => Value::Time(i64::from_be_bytes(be(raw, 0)?)),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => match i64::from_be_bytes(be(raw, 0)?) {
            i64::MAX => Value::Other("infinity".into()),
            i64::MIN => Value::Other("-infinity".into()),
            t if *ty == Type::TIMESTAMP => Value::Timestamp(t + PG_EPOCH_US),
            t => Value::TimestampTz(t + PG_EPOCH_US),
        },
        Type::UUID => {
            let h: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            if h.len() == 32 {
                Value::Text(format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                ))
            } else {
                Value::Text(h)
            }
        }
        Type::INTERVAL => Value::Other(interval_text(
            i64::from_be_bytes(be(raw, 0)?),
            i32::from_be_bytes(be(raw, 8)?),
            i32::from_be_bytes(be(raw, 12)?),
        )),
        Type::INET | Type::CIDR => Value::Text(inet_text(raw)?),
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::UNKNOWN
        | Type::XML
        | Type::CHAR => Value::Text(text(raw)),
        _ => match ty.kind() {
            PgKind::Enum(_) => Value::Text(text(raw)),
            PgKind::Domain(base) => decode(base, raw)?,
            PgKind::Array(elem) => Value::Other(array_text(elem, raw)?),
            // Extension types such as citext send text.
            _ if std::str::from_utf8(raw).is_ok_and(|s| !s.contains('\0')) => {
                Value::Other(text(raw))
            }
            _ => Value::Other(format!("<{} value>", ty.name())),
        },
    })
}

pub(super) fn numeric_text(raw: &[u8]) -> Result<String, BoxError> {
    let ndigits = i16::from_be_bytes(be(raw, 0)?) as usize;
    let weight = i16::from_be_bytes(be(raw, 2)?) as i32;
    let sign = u16::from_be_bytes(be(raw, 4)?);
    let dscale = i16::from_be_bytes(be(raw, 6)?).max(0) as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i16> = (0..ndigits)
        .map(|i| be::<2>(raw, 8 + 2 * i).map(i16::from_be_bytes))
        .collect::<Result<_, _>>()?;
    let mut int_part = String::new();
    for i in 0..=weight.max(-1) {
        let d = digits.get(i as usize).copied().unwrap_or(0);
        if int_part.is_empty() {
            if d != 0 {
                int_part = d.to_string();
            }
        } else {
            int_part.push_str(&format!("{d:04}"));
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut frac = String::new();
    let mut i = weight + 1;
    while frac.len() < dscale {
        let d = if i >= 0 {
            digits.get(i as usize).copied().unwrap_or(0)
        } else {
            0
        };
        frac.push_str(&format!("{d:04}"));
        i += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if frac.is_empty() {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{frac}")
    })
}

pub(super) fn interval_text(us: i64, days: i32, months: i32) -> String {
    let mut parts: Vec<String> = Vec::new();
    let (y, m) = (months / 12, months % 12);
    let unit =
        |n: i64, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    if y != 0 {
        parts.push(unit(i64::from(y), "year", "years"));
    }
    if m != 0 {
        parts.push(unit(i64::from(m), "mon", "mons"));
    }
    if days != 0 {
        parts.push(unit(i64::from(days), "day", "days"));
    }
    if us != 0 || parts.is_empty() {
        let neg = us < 0;
        let a = us.unsigned_abs();
        let s = a / 1_000_000;
        let mut t = format!(
            "{}{:02}:{:02}:{:02}",
            if neg { "-" } else { "" },
            s / 3600,
            (s / 60) % 60,
            s % 60
        );
        let frac = a % 1_000_000;
        if frac != 0 {
            t.push_str(format!(".{frac:06}").trim_end_matches('0'));
        }
        parts.push(t);
    }
    parts.join(" ")
}

pub(super) fn inet_text(raw: &[u8]) -> Result<String, BoxError> {
    let family = *raw.first().ok_or("truncated inet")?;
    let bits = *raw.get(1).ok_or("truncated inet")?;
    let is_cidr = raw.get(2).copied().unwrap_or(0) == 1;
    let addr = raw.get(4..).ok_or("truncated inet")?;
    let ip: std::net::IpAddr = if family == 2 && addr.len() == 4 {
        std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).into()
    } else if addr.len() == 16 {
        let mut a = [0u8; 16];
        a.copy_from_slice(addr);
        std::net::Ipv6Addr::from(a).into()
    } else {
        return Err("bad inet".into());
    };
    let full = if ip.is_ipv4() { 32 } else { 128 };
    Ok(if is_cidr || bits != full {
        format!("{ip}/{bits}")
    } else {
        ip.to_string()
    })
}

fn array_text(elem: &Type, raw: &[u8]) -> Result<String, BoxError> {
    let ndim = i32::from_be_bytes(be(raw, 0)?) as usize;
    if ndim == 0 {
        return Ok("{}".into());
    }
    let mut dims = Vec::with_capacity(ndim);
    for d in 0..ndim {
        dims.push(i32::from_be_bytes(be(raw, 12 + 8 * d)?) as usize);
    }
    let mut at = 12 + 8 * ndim;
    let total: usize = dims.iter().product();
    let mut items = Vec::with_capacity(total);
    for _ in 0..total {
        let len = i32::from_be_bytes(be(raw, at)?);
        at += 4;
        if len < 0 {
            items.push("NULL".to_owned());
        } else {
            let bytes = raw.get(at..at + len as usize).ok_or("truncated array")?;
            at += len as usize;
            let v = decode(elem, bytes)?;
            let t = v.text().unwrap_or_default();
            let quote = t.is_empty() || t.contains([',', '{', '}', '"', ' ', '\\']);
            items.push(if quote {
                format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))
            } else {
                t
            });
        }
    }
    fn nest(items: &[String], dims: &[usize]) -> String {
        if dims.len() <= 1 {
            return format!("{{{}}}", items.join(","));
        }
        let step = items.len() / dims[0].max(1);
        let parts: Vec<String> = items
            .chunks(step.max(1))
            .map(|c| nest(c, &dims[1..]))
            .collect();
        format!("{{{}}}", parts.join(","))
    }
    Ok(nest(&items, &dims))
}
