//! The operations' request and answer types: what [`super::Ops`] returns
//! and the admin API sends. The handlers in `service::admin` take and
//! return these, the OpenAPI document at `/openapi.json` is generated from
//! them (`utoipa`), and the remote implementation reads them back, so the
//! document, the server and the CLI cannot drift apart.

use crate::state::{ConnectorEntry, DeadLetter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Every error answer: what went wrong, in words.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Why the request failed, naming the field or resource.
    pub error: String,
    /// What is wrong with each field of a form, by field (`base_url`,
    /// `options.acme-calendar.keep_cancelled`), when the request was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
}

/// What the calling token is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Whoami {
    /// True for an operator token (every tenant).
    pub operator: bool,
    /// The tenant a tenant token is limited to.
    pub tenant: Option<String>,
}

/// A tenant in the list of tenants.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantSummary {
    /// Its display name.
    pub name: Option<String>,
    /// Whether it is active.
    pub active: bool,
    /// Its flows' names.
    pub flows: Vec<String>,
}

/// The tenants a caller sees, by ID.
pub type Tenants = BTreeMap<String, TenantSummary>;

/// What a subscription request did, per flow: `subscribed` and `url`, or
/// `unsubscribed`, or `error`.
pub type WebhookOutcomes = BTreeMap<String, Value>;

/// The answer to a tenant write.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantWritten {
    /// The tenant's ID.
    pub tenant: String,
    /// Webhook subscriptions made for its flows, per flow.
    #[schema(value_type = BTreeMap<String, Object>)]
    pub webhooks: WebhookOutcomes,
}

/// The answer to an activation or deactivation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Activation {
    /// The tenant's ID.
    pub tenant: String,
    /// Whether it is active now.
    pub active: bool,
    /// Webhook subscriptions made or deleted, per flow.
    #[schema(value_type = BTreeMap<String, Object>)]
    pub webhooks: WebhookOutcomes,
}

/// A secret's value, write-only.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretBody {
    /// The value (never shown again). Not empty; a webhook signing secret
    /// is `whsec_` + base64 of 24 to 64 random bytes.
    pub value: String,
}

/// A flow's state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FlowState {
    /// The tenant.
    pub tenant: String,
    /// The flow.
    pub flow: String,
    /// The source's cursor, if any.
    pub cursor: Option<String>,
    /// Why the flow needs a person, if it does.
    pub attention: Option<String>,
    /// `ok`, `failing`, `needs_attention`, … from its runs.
    pub health: String,
    /// Whether it is paused.
    pub paused: bool,
}

/// Where a reset starts the flow again.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    /// An RFC 3339 instant to read changes from; without it, the beginning.
    pub since: Option<String>,
}

/// The answer to a reset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FlowReset {
    /// The tenant.
    pub tenant: String,
    /// The flow.
    pub flow: String,
    /// The cursor it starts from (`since:…`), or none.
    pub cursor: Option<String>,
}

/// The answer to pausing or resuming a flow.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FlowPaused {
    /// The tenant.
    pub tenant: String,
    /// The flow.
    pub flow: String,
    /// Whether it is paused now.
    pub paused: bool,
}

/// What run to start.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// Read everything again from the beginning, delivering only what
    /// changed.
    #[serde(default)]
    pub backfill: bool,
}

/// A run handed to the scheduler.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunQueued {
    /// The tenant.
    pub tenant: String,
    /// The flow.
    pub flow: String,
    /// Always true: the run starts when the flow is free.
    pub queued: bool,
    /// Whether it is a backfill.
    pub backfill: bool,
}

/// A flow's webhook subscription with the vendor (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionView {
    /// The vendor's ID of the subscription.
    pub id: String,
    /// The URL the vendor delivers to.
    pub url: String,
    /// When it was made, ms since epoch.
    pub created_ms: u64,
    /// When its secret was last rotated, ms since epoch.
    pub rotated_ms: Option<u64>,
}

impl From<&crate::subscriptions::Subscription> for SubscriptionView {
    fn from(s: &crate::subscriptions::Subscription) -> Self {
        SubscriptionView {
            id: s.id.clone(),
            url: s.url.clone(),
            created_ms: s.created_ms,
            rotated_ms: s.rotated_ms,
        }
    }
}

/// A subscription in a tenant's list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionListed {
    /// The flow it was made for.
    pub flow: String,
    /// The subscription.
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    /// Why weft could not delete it at the vendor (remove it there by
    /// hand); none: live.
    pub orphaned: Option<String>,
}

/// A dead letter as the API shows it: with where its flow delivers now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterView {
    /// The dead letter.
    #[serde(flatten)]
    pub dead_letter: DeadLetter,
    /// The flow's destination now (`name@requirement`); none when the flow
    /// is gone.
    pub flow_destination: Option<String>,
    /// The record was going to another destination than the flow's now
    /// (or the flow is gone): a replay sends it to the new one, and the
    /// old one may still hold what the record delivered before.
    pub destination_changed: bool,
}

/// What replaying a dead letter did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Replayed {
    /// The dead letter's ID.
    pub id: String,
    /// Whether the record got through this time.
    pub delivered: bool,
    /// The dead letter as it is now, when it failed again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetter>,
}

/// A registered connector version with the flows whose requirement picks
/// it now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectorVersion {
    /// The version.
    #[serde(flatten)]
    pub entry: ConnectorEntry,
    /// `tenant/flow` of each flow using it (a tenant token sees its own).
    pub used_by: Vec<String>,
}

/// The answer to an upload.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectorAdded {
    /// The version registered.
    pub connector: ConnectorEntry,
    /// False when exactly this component was registered already.
    pub added: bool,
}

/// What to mint.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintBody {
    /// A name for people.
    pub name: String,
    /// The tenant the token is limited to; without it, an operator token.
    pub tenant: Option<String>,
    /// How long the token works (`90d`, `12h`); without it, until revoked
    /// (a link: 7 days).
    pub expires_in: Option<String>,
    /// A one-time activation link for `tenant`, which need not exist yet:
    /// opened in the console, it is exchanged for a session of 8 hours that
    /// may activate the tenant's integrations, and stops working.
    #[serde(default)]
    pub link: bool,
}

/// A token as listed: never its value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// Its ID (the SHA-256 of the token), for revoking it.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The tenant it is limited to; none: an operator token.
    pub tenant: Option<String>,
    /// When it was minted, ms since epoch.
    pub created_ms: u64,
    /// When it stops working, ms since epoch; none: when revoked.
    pub expires_ms: Option<u64>,
}

/// A token just minted: the only time its value is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MintedToken {
    /// Its ID, for revoking it.
    pub id: String,
    /// The token: `Authorization: Bearer …`.
    pub token: String,
    /// Its name.
    pub name: String,
    /// The tenant it is limited to.
    pub tenant: Option<String>,
    /// When it stops working, ms since epoch.
    pub expires_ms: Option<u64>,
    /// A link's address in the console (`…/#token=…&link=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The answer to an accepted webhook delivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// Always true: the delivery is durable.
    pub accepted: bool,
    /// True for a repeat of a delivery accepted before (not processed
    /// again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}
