//! Reading headers off the wire, by hand. Every message carries two headers,
//! so this is on the path of every message a relay handles: a derived
//! `#[serde(flatten)]` reader buffers each field as an intermediate value
//! first, and reading the lenient fields through `serde_json::Value` costs
//! more allocations again. This reader takes each field once, as it comes.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::Header;

/// The fields of one header object; `msg_id` and `msg_type` may be missing.
#[derive(Default)]
struct Fields {
    msg_id: Option<String>,
    msg_type: Option<String>,
    session: String,
    username: String,
    date: String,
    version: Option<String>,
    extra: Map<String, Value>,
}

impl Fields {
    fn into_header<E: de::Error>(self) -> Result<Header, E> {
        Ok(Header {
            msg_id: self.msg_id.ok_or_else(|| E::missing_field("msg_id"))?,
            msg_type: self.msg_type.ok_or_else(|| E::missing_field("msg_type"))?,
            session: self.session,
            username: self.username,
            date: self.date,
            version: self.version.unwrap_or_else(super::default_version),
            extra: self.extra,
        })
    }
}

enum Key {
    MsgId,
    MsgType,
    Session,
    Username,
    Date,
    Version,
    Other(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a header field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(match s {
                    "msg_id" => Key::MsgId,
                    "msg_type" => Key::MsgType,
                    "session" => Key::Session,
                    "username" => Key::Username,
                    "date" => Key::Date,
                    "version" => Key::Version,
                    other => Key::Other(other.to_owned()),
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// A string, or any other JSON value rendered as text (peers send `null` dates).
struct Lenient(String);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lenient, D::Error> {
        struct LenientVisitor;
        impl<'de> Visitor<'de> for LenientVisitor {
            type Value = Lenient;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Lenient, E> {
                Ok(Lenient(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Lenient, E> {
                Ok(Lenient(s))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(String::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(String::new()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Lenient, E> {
                Ok(Lenient(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient, E> {
                Ok(Lenient(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient, E> {
                Ok(Lenient(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Lenient, E> {
                Ok(Lenient(Value::from(v).to_string()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Lenient, A::Error> {
                let v = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Lenient(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Lenient, A::Error> {
                let v = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Lenient(v.to_string()))
            }
        }
        d.deserialize_any(LenientVisitor)
    }
}

fn read_fields<'de, A: MapAccess<'de>>(mut map: A) -> Result<Fields, A::Error> {
    let mut f = Fields::default();
    while let Some(key) = map.next_key::<Key>()? {
        match key {
            Key::MsgId => f.msg_id = Some(map.next_value::<String>()?),
            Key::MsgType => f.msg_type = Some(map.next_value::<String>()?),
            Key::Session => f.session = map.next_value::<Lenient>()?.0,
            Key::Username => f.username = map.next_value::<Lenient>()?.0,
            Key::Date => f.date = map.next_value::<Lenient>()?.0,
            Key::Version => f.version = Some(map.next_value::<Lenient>()?.0),
            Key::Other(name) => {
                f.extra.insert(name, map.next_value::<Value>()?);
            }
        }
    }
    Ok(f)
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a message header object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Header, A::Error> {
        read_fields(map)?.into_header()
    }
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Header, D::Error> {
        d.deserialize_map(HeaderVisitor)
    }
}

/// A parent header: `{}` (or any object without a `msg_id`) and `null` mean "no parent".
pub struct ParentHeader(pub Option<Header>);

impl<'de> Deserialize<'de> for ParentHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ParentHeader, D::Error> {
        struct ParentVisitor;
        impl<'de> Visitor<'de> for ParentVisitor {
            type Value = ParentHeader;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a parent header object or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<ParentHeader, E> {
                Ok(ParentHeader(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ParentHeader, A::Error> {
                let f = read_fields(map)?;
                if f.msg_id.is_none() {
                    return Ok(ParentHeader(None));
                }
                f.into_header().map(|h| ParentHeader(Some(h)))
            }
        }
        d.deserialize_any(ParentVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(text: &str) -> Result<Option<Header>, serde_json::Error> {
        serde_json::from_str::<ParentHeader>(text).map(|p| p.0)
    }

    #[test]
    fn lenient_fields_take_any_value() {
        let h: Header = serde_json::from_str(
            r#"{"msg_id":"a","msg_type":"t","session":7,"username":true,
                "date":{"y":1},"version":5.5,"n":[1]}"#,
        )
        .unwrap();
        assert_eq!(h.session, "7");
        assert_eq!(h.username, "true");
        assert_eq!(h.date, r#"{"y":1}"#);
        assert_eq!(h.version, "5.5");
        assert_eq!(h.extra["n"], serde_json::json!([1]));
    }

    #[test]
    fn required_fields_are_named_when_missing() {
        let e = serde_json::from_str::<Header>(r#"{"msg_type":"t"}"#).unwrap_err();
        assert!(e.to_string().contains("msg_id"), "{e}");
        let e = serde_json::from_str::<Header>(r#"{"msg_id":"a"}"#).unwrap_err();
        assert!(e.to_string().contains("msg_type"), "{e}");
        assert!(serde_json::from_str::<Header>("[1]").is_err());
    }

    #[test]
    fn parents() {
        assert_eq!(parent("{}").unwrap(), None);
        assert_eq!(parent("null").unwrap(), None);
        assert_eq!(parent(r#"{"date":"x"}"#).unwrap(), None);
        let p = parent(r#"{"msg_id":"m","msg_type":"execute_request"}"#)
            .unwrap()
            .unwrap();
        assert_eq!((p.msg_id.as_str(), p.version.as_str()), ("m", "5.0"));
        assert!(parent(r#"{"msg_id":"m"}"#).is_err());
        assert!(parent("3").is_err());
        assert!(parent(r#""s""#).is_err());
    }

    #[test]
    fn escaped_keys_and_values() {
        let h: Header =
            serde_json::from_str(r#"{"msg\u005fid":"a\"b","msg_type":"t","x\ty":1}"#).unwrap();
        assert_eq!(h.msg_id, "a\"b");
        assert_eq!(h.extra["x\ty"], 1);
    }
}
