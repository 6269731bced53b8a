//! The host's own view of the WIT types: plain Rust structs that the rest of
//! weft (runner, storage, CLI) uses, so that nothing outside `connector`
//! names generated binding paths.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Whether a record upserts or deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Create or replace.
    Upsert,
    /// Remove.
    Delete,
}

/// One record moving through a flow (see `types.record` in the WIT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record {
    /// Identity in the source system.
    pub key: String,
    /// What the record is.
    pub kind: String,
    /// Orders revisions: higher is newer.
    pub version: i64,
    /// Upsert or delete.
    pub op: Operation,
    /// JSON text.
    pub body: String,
}

/// The error classes a connector reports (see `types.error` in the WIT).
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema,
)]
#[serde(tag = "class", content = "detail", rename_all = "lowercase")]
pub enum ConnectorError {
    /// Retry later, after `retry_after` when given.
    #[error("transient: {message}")]
    Transient {
        /// What went wrong.
        message: String,
        /// The delay the remote side asked for.
        #[serde(with = "opt_millis", default)]
        #[schema(value_type = Option<u64>)]
        retry_after: Option<Duration>,
    },
    /// This input can never succeed: dead-letter it.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Configuration or credentials are wrong: stop the flow and alert.
    #[error("config: {0}")]
    Config(String),
}

/// One page from a source's `fetch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The page's records.
    pub records: Vec<Record>,
    /// The cursor to continue from (`None`: keep the current one).
    pub next_cursor: Option<String>,
    /// Whether another page waits now.
    pub has_more: bool,
}

/// A stream that a source offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Its name.
    pub name: String,
    /// A sentence for operators.
    pub description: String,
}

/// What a connector's `describe` says about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorInfo {
    /// The connector's name.
    pub name: String,
    /// Its semver version.
    pub version: semver::Version,
    /// A sentence for operators.
    pub description: String,
    /// Offered streams.
    pub streams: Vec<StreamInfo>,
    /// JSON Schema of its per-tenant configuration.
    pub config_schema: serde_json::Value,
    /// Outbound origins it asks for.
    pub outbound_hosts: Vec<String>,
}

mod opt_millis {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        d.map(|d| d.as_millis() as u64).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// One HTTP request the host makes for a connector's optional webhook
/// registration (`wit/webhooks-v0.1.0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCall {
    /// The method.
    pub method: String,
    /// The absolute URL (`{url}` / `{id}` placeholders).
    pub url: String,
    /// A JSON body (`{url}` placeholder).
    pub body: Option<String>,
}

/// How a source's stream subscribes to the vendor's webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSetup {
    /// Creates the subscription.
    pub create: HttpCall,
    /// JSON pointer to the subscription ID in the answer to `create`.
    pub id_pointer: String,
    /// JSON pointer to the signing secret in the answers to `create` and
    /// `rotate`.
    pub secret_pointer: String,
    /// Rotates the secret.
    pub rotate: Option<HttpCall>,
    /// Deletes the subscription.
    pub delete: Option<HttpCall>,
    /// Seconds the vendor keeps signing with the old secret after a
    /// rotation.
    pub rotation_overlap_secs: u64,
}
