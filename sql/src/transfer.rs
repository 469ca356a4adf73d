//! Results to the home kernel and variables from it, over a comm with binary
//! buffers (no generated source line): columns travel as packed arrays — int64,
//! float64, days, microseconds, `\0`-joined UTF-8 — that pandas turns into a
//! DataFrame with numpy in one step each (a list of dicts without pandas).

use serde_json::{Value as Json, json};

use super::driver::Param;
use super::value::{Kind, Rows, Value};

/// The comm target the helper registers in the home kernel.
pub const TARGET: &str = "pxkernel.sql";

/// Python run once per home kernel: registers [`TARGET`], which stores a result
/// (`op: store`) or answers variables (`op: get`).
pub const HELPER: &str = r#"
def __pxkernel_sql_install():
    import base64, datetime, decimal, json, sys
    from comm import get_comm_manager
    ip = get_ipython()

    def column(c, bufs, n):
        kind, b = c["kind"], [bytes(bufs[i]) for i in c["buffers"]]
        valid = b.pop() if c.get("nulls") else None
        try:
            import numpy as np, pandas as pd
        except ImportError:
            np = pd = None
        def texts():
            if c.get("encoding") == "sep":
                vals = b[0].decode("utf-8").split("\0") if n else []
            else:
                import array
                offs = array.array("q"); offs.frombytes(b[0])
                if sys.byteorder == "big": offs.byteswap()
                vals = [b[1][offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
            return vals
        def nulled(vals):
            if valid is not None:
                vals = [v if ok else None for v, ok in zip(vals, valid)]
            return vals
        if np is not None:
            mask = None if valid is None else (np.frombuffer(valid, "u1") == 0)
            if kind == "int":
                a = np.frombuffer(b[0], "<i8")
                return pd.array(a, dtype="Int64") if mask is None else pd.arrays.IntegerArray(a.copy(), mask)
            if kind == "float":
                return np.frombuffer(b[0], "<f8")
            if kind == "bool":
                a = np.frombuffer(b[0], "u1").astype(bool)
                return a if mask is None else pd.arrays.BooleanArray(a, mask)
            if kind in ("timestamp", "timestamptz"):
                a = np.frombuffer(b[0], "<i8").astype("datetime64[us]")
                if mask is not None:
                    a = a.copy(); a[mask] = np.datetime64("NaT")
                s = pd.Series(a).astype("datetime64[ns]")
                return s.dt.tz_localize("UTC") if kind == "timestamptz" else s
            if kind == "date":
                a = np.frombuffer(b[0], "<i4").astype("datetime64[D]").astype(object)
                if mask is not None:
                    a[mask] = None
                return a
        import array
        if kind in ("int", "timestamp", "timestamptz", "time"):
            a = array.array("q"); a.frombytes(b[0])
        elif kind == "float":
            a = array.array("d"); a.frombytes(b[0])
        elif kind == "date":
            a = array.array("i"); a.frombytes(b[0])
        elif kind == "bool":
            a = [x != 0 for x in b[0]]
        else:
            a = None
        if a is not None and sys.byteorder == "big" and hasattr(a, "byteswap"):
            a.byteswap()
        epoch = datetime.datetime(1970, 1, 1)
        if kind in ("int", "float", "bool"):
            vals = list(a)
        elif kind == "date":
            vals = [datetime.date.fromordinal(719163 + d) for d in a]
        elif kind == "timestamp":
            vals = [epoch + datetime.timedelta(microseconds=t) for t in a]
        elif kind == "timestamptz":
            utc = datetime.timezone.utc
            vals = [(epoch + datetime.timedelta(microseconds=t)).replace(tzinfo=utc) for t in a]
        elif kind == "time":
            vals = [(epoch + datetime.timedelta(microseconds=t)).time() for t in a]
        elif kind == "decimal":
            vals = [decimal.Decimal(s) if s else None for s in texts()]
        elif kind == "json":
            vals = [json.loads(s) if s else None for s in texts()]
        elif kind == "bytes":
            offs = array.array("q"); offs.frombytes(b[0])
            vals = [b[1][offs[i]:offs[i + 1]] for i in range(n)]
        elif kind == "object":
            vals = json.loads(b[0].decode("utf-8"))
        else:
            vals = texts()
        return nulled(vals)

    def store(data, bufs):
        n = data["rows"]
        names = [c["name"] for c in data["columns"]]
        cols = [column(c, bufs, n) for c in data["columns"]]
        try:
            import pandas as pd
        except ImportError:
            pd = None
        if pd is not None:
            frame = pd.DataFrame({i: col for i, col in enumerate(cols)}, index=pd.RangeIndex(n))
            frame.columns = names
            value = frame
        else:
            value = [dict(zip(names, row)) for row in zip(*[list(c) for c in cols])] if cols else []
        ip.user_ns[data["name"]] = value
        return {"type": type(value).__name__}

    def encode(v):
        if v is None: return {"t": "null"}
        try:
            import numpy as np
            if isinstance(v, np.generic): v = v.item()
        except ImportError:
            pass
        if isinstance(v, bool): return {"t": "bool", "v": v}
        if isinstance(v, int): return {"t": "int", "v": str(v)}
        if isinstance(v, float): return {"t": "float", "v": v}
        if isinstance(v, str): return {"t": "str", "v": v}
        if isinstance(v, decimal.Decimal): return {"t": "decimal", "v": str(v)}
        if isinstance(v, datetime.datetime):
            if v.tzinfo is not None:
                us = (v - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1)
                return {"t": "timestamptz", "v": us}
            return {"t": "timestamp", "v": (v - datetime.datetime(1970, 1, 1)) // datetime.timedelta(microseconds=1)}
        if isinstance(v, datetime.date): return {"t": "date", "v": v.toordinal() - 719163}
        if isinstance(v, (bytes, bytearray, memoryview)): return {"t": "bytes", "v": base64.b64encode(bytes(v)).decode()}
        raise TypeError(f"cannot bind a {type(v).__name__} as an SQL parameter")

    def get(data):
        values = {}
        for name in data["names"]:
            if name not in ip.user_ns:
                raise NameError(f"name {name!r} is not defined in the home kernel")
            values[name] = encode(ip.user_ns[name])
        return {"values": values}

    def target(comm, msg):
        data, bufs = msg["content"]["data"], msg["buffers"]
        try:
            out = store(data, bufs) if data.get("op") == "store" else get(data)
            comm.send({"ok": True, **out})
        except Exception as e:
            comm.send({"ok": False, "error": f"{type(e).__name__}: {e}"})
        comm.close()

    get_comm_manager().register_target("pxkernel.sql", target)

__pxkernel_sql_install()
del __pxkernel_sql_install
"#;

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Int => "int",
        Kind::Float => "float",
        Kind::Decimal => "decimal",
        Kind::Bool => "bool",
        Kind::Text | Kind::Dynamic => "text",
        Kind::Bytes => "bytes",
        Kind::Date => "date",
        Kind::Time => "time",
        Kind::Timestamp => "timestamp",
        Kind::TimestampTz => "timestamptz",
        Kind::Json => "json",
    }
}

/// The kind a column travels as: its declared kind, or (SQLite) what its values share.
fn travel_kind(declared: Kind, values: impl Iterator<Item = Kind>) -> Option<Kind> {
    let values: Vec<Kind> = values.collect();
    // A declared type holds only when every value has it (SQLite declares, but
    // stores what it is given).
    if declared != Kind::Dynamic && declared != Kind::Text && values.iter().all(|k| *k == declared)
    {
        return Some(declared);
    }
    let mut seen: Option<Kind> = None;
    for k in values {
        seen = match (seen, k) {
            (None, k) => Some(k),
            (Some(a), b) if a == b => Some(a),
            (Some(Kind::Int), Kind::Float) | (Some(Kind::Float), Kind::Int) => Some(Kind::Float),
            _ => return None,
        };
    }
    Some(seen.unwrap_or(Kind::Text))
}

fn value_kind(v: &Value) -> Option<Kind> {
    Some(match v {
        Value::Null => return None,
        Value::Int(_) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::Decimal(_) => Kind::Decimal,
        Value::Bool(_) => Kind::Bool,
        Value::Bytes(_) => Kind::Bytes,
        Value::Date(_) => Kind::Date,
        Value::Time(_) => Kind::Time,
        Value::Timestamp(_) => Kind::Timestamp,
        Value::TimestampTz(_) => Kind::TimestampTz,
        Value::Json(_) => Kind::Json,
        Value::Text(_) | Value::Other(_) => Kind::Text,
    })
}

fn json_of(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::Bool(b) => json!(b),
        other => Json::String(other.text().unwrap_or_default()),
    }
}

/// A store request: metadata and buffers.
pub fn encode_store(name: &str, rows: &Rows) -> (Json, Vec<Vec<u8>>) {
    let n = rows.rows.len();
    let mut buffers: Vec<Vec<u8>> = Vec::new();
    let mut columns = Vec::with_capacity(rows.columns.len());
    for (ci, col) in rows.columns.iter().enumerate() {
        let cells = || rows.rows.iter().map(move |r| &r[ci]);
        let kind = travel_kind(col.kind, cells().filter_map(value_kind));
        let nulls = cells().any(|v| *v == Value::Null);
        let first = buffers.len();
        let mut meta = json!({"name": col.name, "nulls": nulls});
        match kind {
            None => {
                // Mixed types (SQLite): each value as JSON.
                let list: Vec<Json> = cells().map(json_of).collect();
                buffers.push(serde_json::to_vec(&list).unwrap_or_default());
                meta["kind"] = json!("object");
                meta["nulls"] = json!(false);
            }
            Some(kind) => {
                meta["kind"] = json!(kind_name(kind));
                match kind {
                    Kind::Int | Kind::Time | Kind::Timestamp | Kind::TimestampTz => {
                        let mut b = Vec::with_capacity(8 * n);
                        for v in cells() {
                            let x = match v {
                                Value::Int(i)
                                | Value::Time(i)
                                | Value::Timestamp(i)
                                | Value::TimestampTz(i) => *i,
                                _ => 0,
                            };
                            b.extend_from_slice(&x.to_le_bytes());
                        }
                        buffers.push(b);
                    }
                    Kind::Float => {
                        let mut b = Vec::with_capacity(8 * n);
                        for v in cells() {
                            let x = match v {
                                Value::Float(f) => *f,
                                Value::Int(i) => *i as f64,
                                _ => f64::NAN,
                            };
                            b.extend_from_slice(&x.to_le_bytes());
                        }
                        buffers.push(b);
                    }
                    Kind::Bool => {
                        buffers.push(cells().map(|v| u8::from(*v == Value::Bool(true))).collect())
                    }
                    Kind::Date => {
                        let mut b = Vec::with_capacity(4 * n);
                        for v in cells() {
                            let d = if let Value::Date(d) = v { *d } else { 0 };
                            b.extend_from_slice(&d.to_le_bytes());
                        }
                        buffers.push(b);
                    }
                    Kind::Bytes => {
                        let mut offsets = Vec::with_capacity(8 * (n + 1));
                        let mut blob = Vec::new();
                        offsets.extend_from_slice(&0i64.to_le_bytes());
                        for v in cells() {
                            if let Value::Bytes(b) = v {
                                blob.extend_from_slice(b);
                            }
                            offsets.extend_from_slice(&(blob.len() as i64).to_le_bytes());
                        }
                        buffers.push(offsets);
                        buffers.push(blob);
                    }
                    _ => {
                        // `\0`-joined (one split in Python), unless a value holds a
                        // NUL itself: then offsets over the bare texts.
                        fn text_of<'v>(v: &'v Value, scratch: &'v mut String) -> &'v str {
                            match v {
                                Value::Text(t)
                                | Value::Decimal(t)
                                | Value::Json(t)
                                | Value::Other(t) => t,
                                Value::Null => "",
                                other => {
                                    *scratch = other.text().unwrap_or_default();
                                    scratch
                                }
                            }
                        }
                        let mut scratch = String::new();
                        let has_nul = cells().any(|v| text_of(v, &mut scratch).contains('\0'));
                        let mut blob: Vec<u8> = Vec::new();
                        if has_nul {
                            let mut offsets = Vec::with_capacity(8 * (n + 1));
                            offsets.extend_from_slice(&0i64.to_le_bytes());
                            for v in cells() {
                                blob.extend_from_slice(text_of(v, &mut scratch).as_bytes());
                                offsets.extend_from_slice(&(blob.len() as i64).to_le_bytes());
                            }
                            buffers.push(offsets);
                            buffers.push(blob);
                            meta["encoding"] = json!("offsets");
                        } else {
                            for (i, v) in cells().enumerate() {
                                if i > 0 {
                                    blob.push(0);
                                }
                                blob.extend_from_slice(text_of(v, &mut scratch).as_bytes());
                            }
                            buffers.push(blob);
                            meta["encoding"] = json!("sep");
                        }
                    }
                }
                if nulls {
                    buffers.push(cells().map(|v| u8::from(*v != Value::Null)).collect());
                }
            }
        }
        meta["buffers"] = json!((first..buffers.len()).collect::<Vec<_>>());
        columns.push(meta);
    }
    (
        json!({"op": "store", "name": name, "rows": n, "columns": columns}),
        buffers,
    )
}

/// A get request for these variable names.
pub fn encode_get(names: &[String]) -> Json {
    json!({"op": "get", "names": names})
}

/// The values of a get reply, in `names` order.
pub fn decode_values(reply: &Json, names: &[String]) -> Result<Vec<Param>, String> {
    let values = reply
        .get("values")
        .and_then(Json::as_object)
        .ok_or("the home kernel sent no values")?;
    names
        .iter()
        .map(|n| {
            let v = values.get(n).ok_or_else(|| format!("no value for :{n}"))?;
            let t = v.get("t").and_then(Json::as_str).unwrap_or("");
            let raw = v.get("v");
            let int = || {
                raw.and_then(Json::as_i64)
                    .ok_or_else(|| format!(":{n} is not a number"))
            };
            Ok(match t {
                "null" => Value::Null,
                "bool" => Value::Bool(raw.and_then(Json::as_bool).unwrap_or(false)),
                "int" => {
                    let s = raw.and_then(Json::as_str).unwrap_or_default();
                    match s.parse::<i64>() {
                        Ok(i) => Value::Int(i),
                        // Larger than 64 bits: an exact decimal.
                        Err(_) => Value::Decimal(s.to_owned()),
                    }
                }
                "float" => Value::Float(raw.and_then(Json::as_f64).unwrap_or(f64::NAN)),
                "str" => Value::Text(raw.and_then(Json::as_str).unwrap_or_default().to_owned()),
                "decimal" => {
                    Value::Decimal(raw.and_then(Json::as_str).unwrap_or_default().to_owned())
                }
                "date" => Value::Date(int()? as i32),
                "timestamp" => Value::Timestamp(int()?),
                "timestamptz" => Value::TimestampTz(int()?),
                "bytes" => Value::Bytes(base64_decode(
                    raw.and_then(Json::as_str).unwrap_or_default(),
                )?),
                other => return Err(format!(":{n} has an unsupported type {other:?}")),
            })
        })
        .collect()
}

fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c).ok_or("bad base64")? << (18 - 6 * i);
        }
        let take = chunk.len().saturating_sub(1);
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + take]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Column;

    #[test]
    fn columns_pack_by_kind_with_validity() {
        let rows = Rows {
            columns: vec![
                Column {
                    name: "i".into(),
                    kind: Kind::Dynamic,
                },
                Column {
                    name: "s".into(),
                    kind: Kind::Text,
                },
                Column {
                    name: "m".into(),
                    kind: Kind::Dynamic,
                },
            ],
            rows: vec![
                vec![Value::Int(1), Value::Text("a".into()), Value::Int(1)],
                vec![
                    Value::Null,
                    Value::Text("b".into()),
                    Value::Text("x".into()),
                ],
            ],
            more: false,
        };
        let (meta, bufs) = encode_store("df", &rows);
        assert_eq!(meta["rows"], 2);
        let cols = meta["columns"].as_array().unwrap();
        assert_eq!(cols[0]["kind"], "int");
        assert_eq!(cols[0]["nulls"], true);
        assert_eq!(bufs[0], [1i64.to_le_bytes(), 0i64.to_le_bytes()].concat());
        assert_eq!(bufs[1], vec![1, 0]);
        assert_eq!(cols[1]["kind"], "text");
        assert_eq!(cols[1]["encoding"], "sep");
        assert_eq!(bufs[2], b"a\0b");
        assert_eq!(cols[2]["kind"], "object");
        assert_eq!(bufs[3], br#"[1,"x"]"#);
    }

    #[test]
    fn values_from_the_home_kernel() {
        let names: Vec<String> = ["a", "b", "c", "d", "e", "f"].map(String::from).to_vec();
        let reply = json!({"values": {
            "a": {"t": "int", "v": "5"}, "b": {"t": "str", "v": "x"}, "c": {"t": "null"},
            "d": {"t": "date", "v": 19723}, "e": {"t": "bytes", "v": "AAEC"},
            "f": {"t": "int", "v": "123456789012345678901234567890"}
        }});
        assert_eq!(
            decode_values(&reply, &names).unwrap(),
            vec![
                Value::Int(5),
                Value::Text("x".into()),
                Value::Null,
                Value::Date(19_723),
                Value::Bytes(vec![0, 1, 2]),
                Value::Decimal("123456789012345678901234567890".into()),
            ]
        );
        assert!(decode_values(&json!({}), &names).is_err());
    }
}
