//! Acme objects as Acme sent them. Each keeps its JSON verbatim, which
//! becomes part of a record body as it is (never parsed into a tree and
//! written out again: that was a third of a sync's CPU, issue 10), next to
//! the few fields the connector reads.

use acme_common::instant;
use chrono::{DateTime, Utc};
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::cell::OnceCell;
use std::fmt;

/// One Acme object (appointment, activity, contact or user).
#[derive(Debug, Clone)]
pub struct Obj {
    raw: Box<RawValue>,
    /// The fields the connector reads.
    pub f: Fields,
    /// `updated_at` as an instant, read once (a contact's is read for each
    /// of its appointments).
    updated: OnceCell<Result<DateTime<Utc>, String>>,
}

/// The fields of an Acme object that the connector reads. A field that is
/// missing, or not a string where a string is expected, is `None`, as
/// `Value`'s `as_str` would say.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Fields {
    #[serde(default, deserialize_with = "text")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub updated_at: Option<String>,
    /// Anything but `null` (or nothing) means deleted.
    #[serde(default)]
    pub deleted_at: Option<Value>,
    #[serde(default, deserialize_with = "text")]
    pub contact_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub owner_id: Option<String>,
    /// An activity's type.
    #[serde(default, rename = "type", deserialize_with = "text")]
    pub kind: Option<String>,
    /// A user's email and name, as Acme wrote them (`null` if absent).
    #[serde(default)]
    pub email: Option<Box<RawValue>>,
    #[serde(default)]
    pub name: Option<Box<RawValue>>,
}

/// A string, or `None` for anything else.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// Why an answer could not be read.
#[derive(Debug)]
pub enum Bad {
    /// Not JSON (usually an answer cut short): worth asking again.
    Json(serde_json::Error),
    /// JSON, but not of the shape Acme documents.
    Shape(String),
}

impl Obj {
    /// An object from its JSON text (which must be an object).
    pub fn from_raw(raw: Box<RawValue>) -> Result<Obj, Bad> {
        if !raw.get().starts_with('{') {
            return Err(Bad::Shape(format!(
                "an item that is not an object: {}",
                truncate(raw.get())
            )));
        }
        let f = serde_json::from_str(raw.get()).map_err(|e| Bad::Shape(e.to_string()))?;
        Ok(Obj {
            raw,
            f,
            updated: OnceCell::new(),
        })
    }

    /// An object from an answer's body.
    pub fn parse(body: &[u8]) -> Result<Obj, Bad> {
        let raw: Box<RawValue> = serde_json::from_slice(body).map_err(Bad::Json)?;
        Obj::from_raw(raw)
    }

    /// The object's JSON, as Acme sent it.
    pub fn raw(&self) -> &RawValue {
        &self.raw
    }

    /// The JSON text, at most 200 characters (for messages).
    pub fn excerpt(&self) -> String {
        truncate(self.raw.get())
    }

    /// The instant `updated_at` names (`None` without a string
    /// `updated_at`; an error for text that is not RFC 3339).
    pub fn updated(&self) -> Option<Result<DateTime<Utc>, String>> {
        let text = self.f.updated_at.as_deref()?;
        Some(self.updated.get_or_init(|| instant(text)).clone())
    }

    /// Whether Acme lists the object as deleted.
    pub fn deleted(&self) -> bool {
        self.f.deleted_at.as_ref().is_some_and(|d| !d.is_null())
    }
}

/// The newest `updated_at` of `objs` as a record version
/// (`acme_common::newest`). Objects without a string `updated_at` are
/// passed over.
pub fn newest_version<'a>(objs: impl IntoIterator<Item = &'a Obj>) -> Result<i64, String> {
    acme_common::newest(objs.into_iter().filter_map(Obj::updated))
}

/// A list answer: `{"data": [...], "next_cursor": ...}`.
pub struct Listing {
    pub items: Vec<Obj>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ListBody<'a> {
    #[serde(borrow, default)]
    data: Items<'a>,
    #[serde(default, deserialize_with = "text")]
    next_cursor: Option<String>,
}

/// A listing's `data`: the JSON text of each item, found in the one pass
/// that reads the body; `None` when `data` is not a list.
#[derive(Default)]
struct Items<'a>(Option<Vec<&'a RawValue>>);

impl<'de: 'a, 'a> Deserialize<'de> for Items<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = Items<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items<'de>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element::<&'de RawValue>()? {
                    items.push(item);
                }
                Ok(Items(Some(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Items<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Items(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Items<'de>, E> {
                Ok(Items(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Items<'de>, E> {
                Ok(Items(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Items<'de>, E> {
                Ok(Items(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Items<'de>, E> {
                Ok(Items(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Items<'de>, E> {
                Ok(Items(None))
            }
            fn visit_unit<E>(self) -> Result<Items<'de>, E> {
                Ok(Items(None))
            }
        }
        d.deserialize_any(Any)
    }
}

impl Listing {
    /// Reads a list answer's body.
    pub fn parse(body: &[u8]) -> Result<Listing, Bad> {
        let list: ListBody = serde_json::from_slice(body).map_err(Bad::Json)?;
        let raws = list
            .data
            .0
            .ok_or_else(|| Bad::Shape("no `data` list".into()))?;
        let items = raws
            .into_iter()
            .map(|r| Obj::from_raw(r.to_owned()))
            .collect::<Result<_, _>>()?;
        Ok(Listing {
            items,
            next_cursor: list.next_cursor,
        })
    }
}

/// An enriched record's `owner`: `{"email", "id", "name"}` (Acme's email
/// and name, `null` when the user is unknown).
#[derive(Serialize)]
pub struct Owner<'a> {
    pub email: Option<&'a RawValue>,
    pub id: &'a str,
    pub name: Option<&'a RawValue>,
}

/// The first 200 characters of `s`.
pub fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_like_value_as_str() {
        let o = Obj::parse(
            br#"{"id":"a1","updated_at":"2026-01-01T00:00:00Z","contact_id":7,"deleted_at":null,"type":"call","x":{"y":[1,2]}}"#,
        )
        .unwrap();
        assert_eq!(o.f.id.as_deref(), Some("a1"));
        assert_eq!(o.f.contact_id, None, "a number is not a string");
        assert!(!o.deleted());
        assert_eq!(o.f.kind.as_deref(), Some("call"));
        assert!(o.raw().get().contains(r#""x":{"y":[1,2]}"#));
        let d = Obj::parse(br#"{"id":"a2","deleted_at":"2026-01-02T00:00:00Z"}"#).unwrap();
        assert!(d.deleted());
    }

    #[test]
    fn versions_are_the_newest_instant_whatever_the_offset() {
        let a = Obj::parse(br#"{"updated_at":"2026-01-01T10:00:00+02:00"}"#).unwrap();
        let b = Obj::parse(br#"{"updated_at":"2026-01-01T09:00:00Z"}"#).unwrap();
        let none = Obj::parse(br#"{"updated_at":7}"#).unwrap();
        let bad = Obj::parse(br#"{"updated_at":"yesterday"}"#).unwrap();
        let v = |objs: &[&Obj]| newest_version(objs.iter().copied());
        assert_eq!(
            v(&[&a, &b, &none]),
            acme_common::newest(
                ["2026-01-01T09:00:00Z", "2026-01-01T08:00:00Z"].map(acme_common::instant)
            )
        );
        assert_eq!(v(&[&a]), acme_common::version_of("2026-01-01T08:00:00Z"));
        assert!(v(&[&none]).is_err());
        let e = v(&[&a, &bad]).unwrap_err();
        assert!(e.contains("yesterday"), "{e}");
        // Read once, the same answer every time.
        assert_eq!(bad.updated(), bad.updated());
    }

    #[test]
    fn listings_keep_items_verbatim_and_refuse_other_shapes() {
        let l = Listing::parse(br#"{"data":[{"id":"b","n":1.50},{"id":"a"}],"next_cursor":"c2"}"#)
            .unwrap();
        assert_eq!(l.items.len(), 2);
        assert_eq!(l.items[0].raw().get(), r#"{"id":"b","n":1.50}"#);
        assert_eq!(l.next_cursor.as_deref(), Some("c2"));
        assert!(matches!(
            Listing::parse(br#"{"data":{"id":"a"}}"#),
            Err(Bad::Shape(_))
        ));
        assert!(matches!(
            Listing::parse(br#"{"data":[1]}"#),
            Err(Bad::Shape(_))
        ));
        for other in ["null", "\"x\"", "1.5", "true", "{}"] {
            let body = format!(r#"{{"data":{other},"next_cursor":null}}"#);
            assert!(
                matches!(Listing::parse(body.as_bytes()), Err(Bad::Shape(_))),
                "{body}"
            );
        }
        assert!(matches!(
            Listing::parse(br#"{"next_cursor":null}"#),
            Err(Bad::Shape(_))
        ));
        assert!(matches!(Listing::parse(br#"{"data":["#), Err(Bad::Json(_))));
        assert!(matches!(
            Listing::parse(br#"{"data":[{"id":"a"},]}"#),
            Err(Bad::Json(_))
        ));
    }

    #[test]
    fn owners_serialize_with_nulls_for_unknown_users() {
        let o = Owner {
            email: None,
            id: "u1",
            name: None,
        };
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"email":null,"id":"u1","name":null}"#
        );
    }
}
