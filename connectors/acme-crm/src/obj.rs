//! Acme objects as Acme sent them. Each keeps its JSON verbatim, which
//! becomes part of a record body as it is (never parsed into a tree and
//! written out again: that was a third of a sync's CPU, issue 10), next to
//! the few fields the connector reads.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// One Acme object (appointment, activity, contact or user).
#[derive(Debug, Clone)]
pub struct Obj {
    raw: Box<RawValue>,
    /// The fields the connector reads.
    pub f: Fields,
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
        Ok(Obj { raw, f })
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

    /// Whether Acme lists the object as deleted.
    pub fn deleted(&self) -> bool {
        self.f.deleted_at.as_ref().is_some_and(|d| !d.is_null())
    }
}

/// A list answer: `{"data": [...], "next_cursor": ...}`.
pub struct Listing {
    pub items: Vec<Obj>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ListBody<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "text")]
    next_cursor: Option<String>,
}

impl Listing {
    /// Reads a list answer's body.
    pub fn parse(body: &[u8]) -> Result<Listing, Bad> {
        let list: ListBody = serde_json::from_slice(body).map_err(Bad::Json)?;
        let data = list
            .data
            .ok_or_else(|| Bad::Shape("no `data` list".into()))?;
        let raws: Vec<&RawValue> =
            serde_json::from_str(data.get()).map_err(|_| Bad::Shape("no `data` list".into()))?;
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
        assert!(matches!(Listing::parse(br#"{"data":["#), Err(Bad::Json(_))));
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
