//! Guest-side helpers for writing weft connectors in Rust.
//!
//! A connector is a WebAssembly component built for `wasm32-wasip2` that
//! targets one of the worlds of `wit/v0.1.0` (`source-connector`,
//! `mapper-connector` or `destination-connector`). This crate generates the
//! bindings of everything the host grants (the `host-imports` world) once, and
//! adds what every connector otherwise writes again: a blocking HTTP client
//! over `wasi:http/outgoing-handler`, typed configuration, and the mapping of
//! HTTP answers onto weft's error classes.
//!
//! The WIT is part of this crate (`wit/`, the repository's contract): a
//! connector crate depends on `weft-sdk` alone (a git or path dependency;
//! no WIT to copy, no `wit-bindgen` of its own) and generates the bindings
//! of its world with [`connector_bindings!`], which maps every import onto
//! this crate's bindings so that its types and this crate's are the same:
//!
//! ```ignore
//! weft_sdk::connector_bindings!("mapper-connector");
//!
//! use exports::weft::connector::mapper::Guest as Mapper;
//! use exports::weft::connector::metadata::Guest as Metadata;
//! use weft_sdk::types::{ConnectorInfo, Error, Record};
//!
//! struct Upper;
//! impl Metadata for Upper { /* describe() */ }
//! impl Mapper for Upper { /* map(records) */ }
//! export!(Upper);
//! ```
//!
//! The crate must be a `cdylib` (`[lib] crate-type = ["cdylib"]`) built with
//! `cargo build --release --target wasm32-wasip2`; `weft new connector`
//! writes such a crate. A source that registers its webhooks also calls
//! [`webhook_bindings!`] in a module of its own.

#![deny(missing_docs)]

/// Bindings generated from the `host-imports` world.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        world: "host-imports",
        path: "wit/v0.1.0",
        generate_all,
    });
}

pub use bindings::wasi;
pub use bindings::weft::connector::{config, kv, log, types};
pub use types::{Error, Operation, Record, TransientError};

pub mod http;

/// What the generated bindings of a connector crate use: `wit-bindgen`'s
/// macro and runtime, so that the crate needs no dependency of its own.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;
    pub use wit_bindgen;
    pub use wit_bindgen::rt;
}

// `connector_bindings!` and `webhook_bindings!`, written by `build.rs` with
// the absolute path of this crate's `wit/` (a proc macro reads WIT relative
// to the crate that calls it, so the path must be spelled out).
include!(concat!(env!("OUT_DIR"), "/bindings_macros.rs"));

use serde::de::DeserializeOwned;

/// Reads this tenant's configuration of the connector into `T`.
///
/// The host has validated the configuration against the connector's JSON
/// Schema already; a mismatch here is still reported as a `config` error so
/// that the flow stops with a clear message instead of trapping.
pub fn tenant_config<T: DeserializeOwned>() -> Result<T, Error> {
    let raw = config::get_json();
    serde_json::from_str(&raw).map_err(|e| Error::Config(format!("connector configuration: {e}")))
}

/// Runs `f` on each record with this tenant's configuration, one outcome
/// per record, as `map` and `emit` answer. A configuration that cannot be
/// read fails every record with the same `config` error.
pub fn each_record<C: DeserializeOwned, T>(
    records: &[Record],
    f: impl Fn(&C, &Record) -> Result<T, Error>,
) -> Vec<Result<T, Error>> {
    with_config(records, |cfg| records.iter().map(|r| f(cfg, r)).collect())
}

/// Runs `f` on the whole batch with this tenant's configuration, for a
/// destination that delivers a batch at once; `f` answers one outcome per
/// record, as `emit` does. A configuration that cannot be read fails every
/// record with the same `config` error.
pub fn with_config<C: DeserializeOwned, T>(
    records: &[Record],
    f: impl FnOnce(&C) -> Vec<Result<T, Error>>,
) -> Vec<Result<T, Error>> {
    match tenant_config::<C>() {
        Ok(cfg) => f(&cfg),
        Err(e) => records.iter().map(|_| Err(e.clone())).collect(),
    }
}

/// The JSON Schema of a connector's configuration, as `describe` answers it
/// (`config_schema`): an object (draft 2020-12) with `properties`, of which
/// those named in `required` must be set, and no other key, so that a
/// misspelt key is refused by the host instead of silently ignored.
pub fn config_schema(required: &[&str], properties: serde_json::Value) -> String {
    let mut schema = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "additionalProperties": false
    });
    if !required.is_empty() {
        schema["required"] = serde_json::json!(required);
    }
    schema.to_string()
}

/// The calling crate's [`types::ConnectorInfo`] from its Cargo package:
/// `name`, `version` and `description`, with no streams, a configuration
/// of no keys and no outbound hosts. Name the fields that differ:
///
/// ```ignore
/// ConnectorInfo {
///     config_schema: weft_sdk::config_schema(&["field"], json!({ "field": { "type": "string" } })),
///     ..weft_sdk::package_info!()
/// }
/// ```
#[macro_export]
macro_rules! package_info {
    () => {
        $crate::types::ConnectorInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
            streams: vec![],
            config_schema: $crate::config_schema(&[], $crate::__private::serde_json::json!({})),
            outbound_hosts: vec![],
        }
    };
}

/// The body field of the host's *retract* convention: a mapper that
/// outputs a **delete** whose JSON body carries this field (a string, the
/// reason) asks the host to remove what the record delivered before (the
/// delete goes to the destination when something may exist there) **and**
/// to dead-letter the source record with that reason, at the mapper's stage.
/// Use it when a record can no longer go where it went, e.g. an
/// appointment whose new owner has no calendar: it must leave the old
/// owner's calendar and wait, dead-lettered, for someone to fix the mapping.
pub const DEAD_LETTER_FIELD: &str = "weft_dead_letter";

/// Shorthand for an `invalid` error.
pub fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid(message.into())
}

/// Shorthand for a `transient` error without a suggested delay.
pub fn transient(message: impl Into<String>) -> Error {
    Error::Transient(TransientError {
        message: message.into(),
        retry_after_ms: None,
    })
}

/// Logs one line at `level` with `fields`.
pub fn log_line(level: log::Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    log::log(level, message, &fields);
}

/// `body` as JSON text: straight into a string (`Value`'s `Display` goes
/// through the formatting machinery, a quarter of a source's time in issue
/// 10's profile). A map with non-string keys is the only failure: its body
/// becomes `null`.
fn body_json(body: &(impl serde::Serialize + ?Sized)) -> String {
    serde_json::to_string(body).unwrap_or_else(|_| "null".to_owned())
}

impl Record {
    /// An upsert of `body` (serialised as JSON).
    pub fn upsert(
        key: impl Into<String>,
        kind: impl Into<String>,
        version: i64,
        body: &(impl serde::Serialize + ?Sized),
    ) -> Self {
        Record {
            key: key.into(),
            kind: kind.into(),
            version,
            op: Operation::Upsert,
            body: body_json(body),
        }
    }

    /// A delete, carrying `body` as the last known content.
    pub fn delete(
        key: impl Into<String>,
        kind: impl Into<String>,
        version: i64,
        body: &(impl serde::Serialize + ?Sized),
    ) -> Self {
        Record {
            op: Operation::Delete,
            ..Record::upsert(key, kind, version, body)
        }
    }

    /// The body parsed as JSON, or an `invalid` error naming the record.
    pub fn json(&self) -> Result<serde_json::Value, Error> {
        serde_json::from_str(&self.body)
            .map_err(|e| invalid(format!("{} {}: body is not JSON: {e}", self.kind, self.key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn bodies_are_json_or_null() {
        let r = Record::upsert("k", "thing", 2, &serde_json::json!({"b": [1, "2"]}));
        assert_eq!(r.body, r#"{"b":[1,"2"]}"#);
        let d = Record::delete("k", "thing", 3, &serde_json::json!({"c": null}));
        assert_eq!(
            (d.op, d.body.as_str()),
            (Operation::Delete, r#"{"c":null}"#)
        );
        // A map with keys that are not strings cannot be JSON.
        let odd: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert_eq!(Record::upsert("k", "thing", 4, &odd).body, "null");
        let r = Record::upsert("k", "thing", 5, &serde_json::json!("after"));
        assert_eq!(r.body, r#""after""#);
    }

    #[test]
    fn config_schemas_are_closed_objects() {
        let schema = |required: &[&str], properties| -> serde_json::Value {
            serde_json::from_str(&config_schema(required, properties)).unwrap()
        };
        let s = schema(&["url"], serde_json::json!({ "url": { "type": "string" } }));
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(s["type"], "object");
        assert_eq!(s["required"], serde_json::json!(["url"]));
        assert_eq!(s["properties"]["url"]["type"], "string");
        assert_eq!(s["additionalProperties"], false);
        // No `required` at all when nothing is.
        let s = schema(&[], serde_json::json!({}));
        assert!(s.get("required").is_none(), "{s}");
    }

    #[test]
    fn percent_encoding_keeps_unreserved_bytes_and_those_asked_for() {
        assert_eq!(http::percent_encode("a b/c~-._", b""), "a%20b%2Fc~-._");
        assert_eq!(http::percent_encode("x+y@z é", b"@+"), "x+y@z%20%C3%A9");
    }
}
