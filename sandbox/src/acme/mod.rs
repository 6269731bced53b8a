//! The Acme CRM sandbox: the public API of `../shared/specs/acme-crm-api.md`
//! (both auth schemes, every endpoint, opaque expiring cursors, inclusive
//! `updated_since`, `(updated_at, id)` ordering by instant, soft deletes,
//! the error body, per-credential token buckets with `X-RateLimit-*`
//! headers, signed webhooks with retries) plus a control API under
//! `/_sandbox/` for tests and the demo: change records (firing webhooks),
//! set the fault profile, read the request log, revoke tokens, expire
//! cursors.
//!
//! Start it in-process with [`AcmeSandbox::start`] or run the
//! `acme-sandbox` binary.

mod answer;
mod api;
mod control;
pub mod data;
pub mod model;
mod openapi;
mod webhooks;

use crate::Bucket;
use chrono::{DateTime, FixedOffset, Utc};
use model::{Activity, Appointment, Contact, Kind, User};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How a sandbox starts.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// Seed of the generated data and of the fault dice: 42, or
    /// `WEFT_ACME_SEED` when set (to replay a failing test's data, which
    /// the tests print).
    pub seed: u64,
    /// How many records to generate.
    pub counts: data::Counts,
    /// OAuth client ID accepted.
    pub client_id: String,
    /// OAuth client secret accepted.
    pub client_secret: String,
    /// API key accepted.
    pub api_key: String,
    /// The fault profile at start.
    pub faults: Faults,
    /// Multiplies the webhook retry schedule (5 s, 30 s, 2 min, 10 min,
    /// 1 h) and the 10 s answer timeout; tests use small values.
    pub webhook_time_scale: f64,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            seed: std::env::var("WEFT_ACME_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(42),
            counts: data::Counts::default(),
            client_id: "weft-demo".into(),
            client_secret: "demo-secret".into(),
            api_key: "acme-demo-key".into(),
            faults: Faults::default(),
            webhook_time_scale: 1.0,
        }
    }
}

/// The fault profile and the tunable limits, settable at run time with
/// `PUT /_sandbox/faults` (any subset of the fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Share (0 to 1) of API requests answered `500`.
    pub error_500: f64,
    /// Share of API requests answered `503`.
    pub error_503: f64,
    /// Latency added to every API request, in milliseconds.
    pub latency_ms: u64,
    /// Share of successful JSON answers whose body is cut short.
    pub malformed_json: f64,
    /// Requests per second of each credential's bucket.
    pub rate_per_second: f64,
    /// Burst (bucket size) of each credential.
    pub rate_burst: u32,
    /// Lifetime of new OAuth tokens, in seconds.
    pub token_lifetime_secs: u64,
    /// How long a cursor stays valid, in seconds.
    pub cursor_ttl_secs: u64,
    /// Share of webhook events delivered twice.
    pub duplicate_webhooks: f64,
    /// Random delay before a webhook's first attempt, up to this many
    /// milliseconds: deliveries then arrive out of order.
    pub webhook_jitter_ms: u64,
    /// The next this-many API requests carrying a bearer token are answered
    /// `401 invalid_token` (and the token revoked), however fresh it is: tokens
    /// dying before their `expires_in`, several in a row. Counts down.
    #[serde(default)]
    pub token_failures: u32,
    /// Share of webhook events never delivered (the vendor's queue loses
    /// them): only a poll finds those changes.
    #[serde(default)]
    pub dropped_webhooks: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            error_500: 0.0,
            error_503: 0.0,
            latency_ms: 0,
            malformed_json: 0.0,
            rate_per_second: 10.0,
            rate_burst: 20,
            token_lifetime_secs: 3600,
            cursor_ttl_secs: 600,
            duplicate_webhooks: 0.0,
            webhook_jitter_ms: 0,
            token_failures: 0,
            dropped_webhooks: 0.0,
        }
    }
}

/// One request the sandbox received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedRequest {
    /// Method.
    pub method: String,
    /// Path and query, as received.
    pub path: String,
    /// `bearer`, `api_key` or `none`.
    pub auth: String,
    /// The answer's status.
    pub status: u16,
}

struct CursorState {
    kind: Kind,
    since: Option<DateTime<Utc>>,
    types: Option<Vec<String>>,
    after: Option<(DateTime<Utc>, String)>,
    limit: usize,
    issued: Instant,
}

struct TokenInfo {
    client_id: String,
    expires: Instant,
    revoked: bool,
}

/// A registered webhook.
#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    /// `wh_…`.
    pub id: String,
    /// Where events go.
    pub url: String,
    /// Which events.
    pub events: Vec<String>,
    #[serde(skip)]
    secrets: Vec<(String, Option<Instant>)>,
}

/// One delivery attempt of a webhook event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// The event ID (`webhook-id`).
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// The webhook.
    pub webhook_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The receiver's status, or 0 when it did not answer.
    pub status: u16,
    /// Whether this was a deliberate duplicate.
    pub duplicate: bool,
}

pub(crate) struct State {
    config: AcmeConfig,
    faults: Faults,
    rng: StdRng,
    users: Vec<User>,
    contacts: BTreeMap<String, Contact>,
    appointments: BTreeMap<String, Appointment>,
    activities: BTreeMap<String, Activity>,
    cursors: HashMap<String, CursorState>,
    tokens: HashMap<String, TokenInfo>,
    buckets: HashMap<String, Bucket>,
    requests: Vec<LoggedRequest>,
    webhooks: Vec<Webhook>,
    deliveries: Vec<DeliveryAttempt>,
    /// Webhook events queued or being delivered (retries included).
    pending_deliveries: usize,
    next_id: u64,
    events: tokio::sync::mpsc::UnboundedSender<webhooks::Outgoing>,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn fresh_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!(
            "{prefix}{:x}{:04x}",
            self.next_id,
            rand::Rng::random::<u16>(&mut self.rng)
        )
    }

    /// Timestamp "now" as written by a user at some offset.
    fn now_stamp(&mut self) -> DateTime<FixedOffset> {
        data::stamp(&mut self.rng, Utc::now())
    }
}

/// A running Acme sandbox.
pub struct AcmeSandbox {
    addr: SocketAddr,
    state: Shared,
    serving: crate::Serving,
}

impl AcmeSandbox {
    /// Generates the data and serves on `listen` (use port 0 for an
    /// OS-chosen port).
    pub async fn start(config: AcmeConfig, listen: SocketAddr) -> anyhow::Result<Self> {
        let ds = data::generate(config.seed, config.counts, Utc::now());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let state: Shared = Arc::new(Mutex::new(State {
            faults: config.faults.clone(),
            rng: StdRng::seed_from_u64(config.seed ^ 0x5eed),
            users: ds.users,
            contacts: ds.contacts.into_iter().map(|c| (c.id.clone(), c)).collect(),
            appointments: ds
                .appointments
                .into_iter()
                .map(|a| (a.id.clone(), a))
                .collect(),
            activities: ds
                .activities
                .into_iter()
                .map(|a| (a.id.clone(), a))
                .collect(),
            cursors: HashMap::new(),
            tokens: HashMap::new(),
            buckets: HashMap::new(),
            requests: Vec::new(),
            webhooks: Vec::new(),
            deliveries: Vec::new(),
            pending_deliveries: 0,
            next_id: 0,
            events: tx,
            config,
        }));
        webhooks::spawn_dispatcher(state.clone(), rx);
        let app = axum::Router::new()
            .route("/openapi.json", axum::routing::get(openapi::serve))
            .nest("/_sandbox", control::router())
            .fallback(api::handle)
            .with_state(state.clone());
        let (addr, serving) = crate::Serving::bind(listen, app).await?;
        Ok(AcmeSandbox {
            addr,
            state,
            serving,
        })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base URL, `http://127.0.0.1:PORT/api/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// The root URL, for `/_sandbox/` and `/openapi.json`.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.state).requests.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }

    /// The webhook delivery attempts so far.
    pub fn deliveries(&self) -> Vec<DeliveryAttempt> {
        lock(&self.state).deliveries.clone()
    }

    /// Webhook events queued, waiting for their jitter or still being
    /// (re)tried: `0` when Acme has nothing more to send.
    pub fn pending_deliveries(&self) -> usize {
        lock(&self.state).pending_deliveries
    }

    /// Stops serving and waits for the server to end.
    pub async fn stop(self) {
        self.serving.stop().await;
    }
}

/// Formats a timestamp as Acme writes it: RFC 3339 with the writer's
/// offset and milliseconds when there are any.
pub(crate) fn fmt_ts(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}
