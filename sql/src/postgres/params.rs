//! Parameters to the wire: a [`Value`] sent in the binary form of the type the
//! server inferred for its placeholder, or refused with an error that says what
//! was passed and what the statement wanted.

use tokio_postgres::types::{IsNull, Kind as PgKind, ToSql, Type};

use super::{BoxError, PG_EPOCH_DAYS, PG_EPOCH_US};
use crate::value::Value;

/// A parameter sent in the binary form the statement's inferred type needs.
#[derive(Debug)]
pub(super) struct PgParam<'a>(pub(super) &'a Value);

pub(super) fn numeric_bytes(text: &str) -> Result<Vec<u8>, BoxError> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return Err(format!("{text:?} is not a decimal number").into());
    }
    let int = int.trim_start_matches('0');
    let dscale = frac.len();
    // Group digits by 4 around the decimal point.
    let pad_left = (4 - int.len() % 4) % 4;
    let int_padded = format!("{}{int}", "0".repeat(pad_left));
    let pad_right = (4 - frac.len() % 4) % 4;
    let frac_padded = format!("{frac}{}", "0".repeat(pad_right));
    let mut groups: Vec<i16> = Vec::new();
    for c in int_padded
        .as_bytes()
        .chunks(4)
        .chain(frac_padded.as_bytes().chunks(4))
    {
        groups.push(std::str::from_utf8(c)?.parse()?);
    }
    let mut weight = (int_padded.len() / 4) as i32 - 1;
    while groups.first() == Some(&0) && weight >= 0 {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(
        &(if neg && !groups.is_empty() {
            0x4000u16
        } else {
            0
        })
        .to_be_bytes(),
    );
    out.extend_from_slice(&(dscale as i16).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(out)
}

impl ToSql for PgParam<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        use bytes::BufMut;
        let mismatch = || -> BoxError {
            format!(
                "cannot pass {} as a parameter of type {}",
                describe(self.0),
                ty.name()
            )
            .into()
        };
        match (self.0, ty) {
            (Value::Null, _) => return Ok(IsNull::Yes),
            (Value::Int(i), &Type::INT2) => out.put_i16(i16::try_from(*i).map_err(|_| mismatch())?),
            (Value::Int(i), &Type::INT4) => out.put_i32(i32::try_from(*i).map_err(|_| mismatch())?),
            (Value::Int(i), &Type::INT8) => out.put_i64(*i),
            (Value::Int(i), &Type::OID) => out.put_u32(u32::try_from(*i).map_err(|_| mismatch())?),
            (Value::Int(i), &Type::FLOAT4) => out.put_f32(*i as f32),
            (Value::Int(i), &Type::FLOAT8) => out.put_f64(*i as f64),
            (Value::Int(i), &Type::NUMERIC) => out.put_slice(&numeric_bytes(&i.to_string())?),
            (Value::Float(f), &Type::FLOAT4) => out.put_f32(*f as f32),
            (Value::Float(f), &Type::FLOAT8) => out.put_f64(*f),
            (Value::Float(f), &Type::NUMERIC) => out.put_slice(&numeric_bytes(&format!("{f}"))?),
            (Value::Decimal(d), &Type::NUMERIC) => out.put_slice(&numeric_bytes(d)?),
            (Value::Decimal(d), &Type::FLOAT8) => out.put_f64(d.parse().map_err(|_| mismatch())?),
            (Value::Bool(b), &Type::BOOL) => out.put_u8(u8::from(*b)),
            (Value::Bytes(b), &Type::BYTEA) => out.put_slice(b),
            (Value::Date(d), &Type::DATE) => out.put_i32((i64::from(*d) - PG_EPOCH_DAYS) as i32),
            (Value::Date(d), &Type::TIMESTAMP | &Type::TIMESTAMPTZ) => {
                out.put_i64(i64::from(*d) * 86_400_000_000 - PG_EPOCH_US);
            }
            (
                Value::Timestamp(t) | Value::TimestampTz(t),
                &Type::TIMESTAMP | &Type::TIMESTAMPTZ,
            ) => {
                out.put_i64(t - PG_EPOCH_US);
            }
            (Value::Json(s), &Type::JSONB) => {
                out.put_u8(1);
                out.put_slice(s.as_bytes());
            }
            (Value::Text(s), &Type::DATE) => {
                let d = crate::value::parse_date(s).ok_or_else(mismatch)?;
                out.put_i32((i64::from(d) - PG_EPOCH_DAYS) as i32);
            }
            (Value::Text(s), &Type::TIMESTAMP | &Type::TIMESTAMPTZ) => {
                let t = crate::value::parse_timestamp(s).ok_or_else(mismatch)?;
                out.put_i64(t - PG_EPOCH_US);
            }
            (Value::Text(s), &Type::NUMERIC) => out.put_slice(&numeric_bytes(s)?),
            (Value::Text(s), &Type::INT2 | &Type::INT4 | &Type::INT8) => {
                let i: i64 = s.trim().parse().map_err(|_| mismatch())?;
                return PgParam(&Value::Int(i)).to_sql(ty, out);
            }
            (Value::Text(s), &Type::UUID) => {
                let hex: String = s.chars().filter(|c| *c != '-').collect();
                if hex.len() != 32 {
                    return Err(mismatch());
                }
                for i in 0..16 {
                    out.put_u8(
                        u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| mismatch())?,
                    );
                }
            }
            (Value::Text(s) | Value::Json(s) | Value::Decimal(s), t) if is_text_type(t) => {
                out.put_slice(s.as_bytes());
            }
            (Value::Int(_) | Value::Float(_) | Value::Bool(_), t) if is_text_type(t) => {
                out.put_slice(self.0.text().unwrap_or_default().as_bytes());
            }
            _ => return Err(mismatch()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn is_text_type(t: &Type) -> bool {
    matches!(
        *t,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON
    ) || matches!(t.kind(), PgKind::Enum(_))
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Int(_) => "an int",
        Value::Float(_) => "a float",
        Value::Decimal(_) => "a Decimal",
        Value::Bool(_) => "a bool",
        Value::Text(_) | Value::Other(_) => "a str",
        Value::Bytes(_) => "bytes",
        Value::Date(_) => "a date",
        Value::Time(_) => "a time",
        Value::Timestamp(_) | Value::TimestampTz(_) => "a datetime",
        Value::Json(_) => "JSON",
    }
}
