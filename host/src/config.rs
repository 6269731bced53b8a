//! `weft.toml`: the operator's configuration of a weft host, its tenants and
//! their flows. Parsed with `deny_unknown_fields` everywhere, so a misspelt
//! key is an error that names the file, the key and the line, and validated
//! once at load (connector references, origins, schedules, names). Secrets
//! are never inline: credentials refer to environment variables or to the
//! secrets file. `examples/weft.toml` is the commented reference.

use crate::caps::http::{HttpGrants, Rate};
use crate::runtime::limits::Limits;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeftConfig {
    /// Where weft keeps its state (sled database, connector registry,
    /// compile cache). Relative paths are relative to this file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// A TOML file of `name = "secret"` lines that credentials may name with
    /// `{ secret = "name" }`. Relative to this file.
    #[serde(default)]
    pub secrets_file: Option<PathBuf>,
    /// Hosts allowed to resolve to loopback, private or link-local addresses
    /// (on-premises or test systems): `host:port` (`[ipv6]:port`) allows that
    /// port only; a bare `host` allows every port of it.
    #[serde(default)]
    pub private_hosts: Vec<String>,
    /// Outbound request quota per (tenant, origin) unless a grant sets one.
    #[serde(default)]
    pub default_rate: Rate,
    /// How many flow runs may go at once (never two of one flow), in
    /// `weft serve` and `weft run`. Default 16: runs mostly wait on vendors
    /// and the disk, and 4 left the second of two cores half idle (`make
    /// bench`, tenants).
    #[serde(default = "default_concurrency")]
    pub max_concurrent_runs: usize,
    /// Sandbox limits of every connector instance.
    #[serde(default)]
    pub limits: Limits,
    /// `weft serve`: the HTTP server (webhooks, admin API, health, metrics).
    #[serde(default)]
    pub service: ServiceConfig,
    /// Where alerts go and when they fire.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// What `/metrics` keeps per tenant.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Where the state lives: sled in `data_dir` (the default), or
    /// PostgreSQL.
    #[serde(default)]
    pub state: StateConfig,
    /// A running `weft serve` (`http://host:port`) that the CLI's commands
    /// go to instead of opening the state directly (also `--server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The tenants, by ID.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// Integrations on offer: named bundles of flows that a tenant (or an
    /// operator for it) activates by entering its vendor account and
    /// options (`POST /v1/tenants/{tenant}/integrations/{id}`, the console).
    #[serde(default)]
    pub integrations: BTreeMap<String, IntegrationConfig>,
}

/// One integration on offer: what the platform fixes (the flows, their
/// destinations, rates) and how the tenant's vendor account is reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    /// Its name for people ("Acme CRM → calendar + dashboard").
    pub title: String,
    /// What it does, in a sentence or two.
    #[serde(default)]
    pub description: String,
    /// How the tenant's account at the vendor is reached.
    pub vendor: VendorConfig,
    /// The flows a tenant gets, as in `[tenants.ID.flows]`. Each source's
    /// `config.base_url`, its allow-listed origin and its credential come
    /// from what the tenant enters; `{tenant}` in any string stands for the
    /// tenant's ID; what a stage's `config` sets is fixed, and the rest of
    /// its connector's JSON Schema is asked of the tenant.
    pub flows: BTreeMap<String, FlowConfig>,
}

/// How a tenant's vendor account is reached: its base URL (asked) and one
/// kind of credential (asked, sealed as the tenant's secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorConfig {
    /// The vendor's name for people ("Acme CRM").
    pub name: String,
    /// `oauth2_client_credentials` (client ID and secret), `api_key`,
    /// `bearer` or `basic`.
    pub auth: VendorAuth,
    /// `oauth2_client_credentials`: the token endpoint, relative to the
    /// base URL (`/oauth/token`).
    #[serde(default)]
    pub token_path: Option<String>,
    /// `api_key`: the header that carries the key (`x-acme-api-key`).
    #[serde(default)]
    pub header: Option<String>,
}

/// The kinds of vendor credential an integration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VendorAuth {
    /// OAuth 2.0 client credentials: a client ID and a client secret.
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials,
    /// An API key in a header.
    ApiKey,
    /// A bearer token.
    Bearer,
    /// HTTP Basic: a user name and a password.
    Basic,
}

/// The `[service]` table: `weft serve`'s HTTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// The address the server listens on.
    pub listen: String,
    /// The URL at which the outside world reaches this server (for webhook
    /// URLs given to sources); default `http://{listen}`.
    pub public_url: Option<String>,
    /// The file holding the key that seals tenant secrets (32 random bytes,
    /// base64); `WEFT_SECRET_KEY` overrides it. Without either, the admin
    /// API does not start. Relative to this file.
    pub key_file: Option<PathBuf>,
    /// Largest webhook body accepted, in bytes (larger: `413`).
    pub max_webhook_bytes: usize,
    /// How far a webhook's timestamp may be from our clock, in seconds.
    pub webhook_tolerance_secs: u64,
    /// How long a webhook ID is remembered to drop repeats, in hours
    /// (at least 72).
    pub webhook_id_hours: u64,
    /// Scheduled runs start up to this fraction of their schedule late, at
    /// random, so that many tenants on one schedule do not fire together.
    pub schedule_jitter: f64,
    /// Seconds a request's headers may take to arrive; also how long a
    /// kept-alive connection may sit idle (slow or idle clients are closed).
    pub header_timeout_secs: u64,
    /// Connections served at once (lowered at start below the process's
    /// file-descriptor limit); past it, `503` with `Retry-After`.
    pub max_connections: usize,
    /// Connections served at once from one client address (0: no cap). Put
    /// behind a load balancer, where every connection comes from its
    /// address, raise it or set 0.
    pub max_connections_per_ip: usize,
    /// Largest admin API request body in bytes (connector uploads are
    /// bounded by `limits.max_component_bytes` instead).
    pub max_request_bytes: usize,
    /// Pages that may show the console in a frame (the platform's own
    /// product embedding a tenant's pages): origins like
    /// `https://app.example.com`. Empty: only the console's own origin.
    pub console_frame_ancestors: Vec<String>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: "127.0.0.1:8700".into(),
            public_url: None,
            key_file: None,
            max_webhook_bytes: 1 << 20,
            webhook_tolerance_secs: 300,
            webhook_id_hours: 72,
            schedule_jitter: 0.1,
            header_timeout_secs: 10,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_request_bytes: 1 << 20,
            console_frame_ancestors: Vec::new(),
        }
    }
}

/// The `[alerts]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// The operator's alert webhook (tenants may set their own `alert_url`).
    pub url: Option<String>,
    /// A flow that fails this many runs in a row raises an alert.
    pub after_failures: u32,
    /// A tenant whose open dead letters grow past this raises an alert.
    pub dead_letters_over: usize,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            url: None,
            after_failures: 3,
            dead_letters_over: 100,
        }
    }
}

/// The `[state]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `sled` or `postgres`; unset: `postgres` when a URL is given (here or
    /// in `WEFT_DATABASE_URL`), else `sled`.
    pub backend: Option<StateBackend>,
    /// `postgres://user:password@host:port/database` (`?sslmode=require`
    /// for TLS). `WEFT_DATABASE_URL` takes precedence, so that the password
    /// need not be in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// PostgreSQL: this process's replica ID (also `WEFT_REPLICA_ID`;
    /// default: host name, process ID and a random suffix).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// PostgreSQL: how long a replica's leases and webhook claims last
    /// unless renewed, in seconds (default 30): the flows of a replica that
    /// died are taken over within it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
    /// `weft serve` forgets each flow's finished runs beyond the newest
    /// this many (default 1,000)...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_runs: Option<usize>,
    /// ... and those older than this many days (default 30); each flow's
    /// newest run stays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_runs_days: Option<u64>,
}

impl StateConfig {
    /// How many finished runs of each flow `weft serve` keeps, and the
    /// age (in ms) past which it forgets them.
    pub fn run_retention(&self) -> (usize, u64) {
        (
            self.keep_runs.unwrap_or(1_000).max(1),
            self.keep_runs_days.unwrap_or(30).saturating_mul(86_400_000),
        )
    }
}

/// A state backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// The embedded database in `data_dir/state`.
    Sled,
    /// A PostgreSQL database (`[state] url`).
    Postgres,
}

impl StateConfig {
    /// How this process joins a PostgreSQL state as a replica.
    pub fn pg_options(&self) -> crate::state::postgres::PgOptions {
        let defaults = crate::state::postgres::PgOptions::default();
        crate::state::postgres::PgOptions {
            replica: std::env::var("WEFT_REPLICA_ID")
                .ok()
                .filter(|r| !r.is_empty())
                .or_else(|| self.replica.clone()),
            lease: self
                .lease_seconds
                .map(|s| std::time::Duration::from_secs(s.max(1)))
                .unwrap_or(defaults.lease),
        }
    }

    /// The backend and, for PostgreSQL, the URL, with `WEFT_DATABASE_URL`
    /// (`env`) taken into account.
    pub fn resolve(&self, env: Option<String>) -> anyhow::Result<(StateBackend, Option<String>)> {
        let url = env.filter(|u| !u.is_empty()).or_else(|| self.url.clone());
        match (self.backend, url) {
            (Some(StateBackend::Sled), _) | (None, None) => Ok((StateBackend::Sled, None)),
            (Some(StateBackend::Postgres) | None, Some(url)) => {
                Ok((StateBackend::Postgres, Some(url)))
            }
            (Some(StateBackend::Postgres), None) => anyhow::bail!(
                "[state] backend = \"postgres\" needs a URL: [state] url = \"postgres://…\", or WEFT_DATABASE_URL"
            ),
        }
    }
}

/// The `[metrics]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// How many tenants get series of their own; the rest are counted
    /// together as `_other` (`metrics::tenant_label`).
    pub max_tenants: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { max_tenants: 100 }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(".weft")
}

/// One tenant (one of our customers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// A display name for operators.
    #[serde(default)]
    pub name: Option<String>,
    /// Whether the tenant is active: a deactivated tenant keeps its state
    /// but runs nothing and accepts no webhooks. Default true.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
    /// Where this tenant's alerts go (a URL that receives a JSON `POST`);
    /// without one, the operator's `alerts.url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_url: Option<String>,
    /// The tenant's flows, by name.
    pub flows: BTreeMap<String, FlowConfig>,
}

/// One flow: a source stream, mappers, a destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// Where records come from.
    pub source: SourceStage,
    /// Reshaping steps, applied in order.
    #[serde(default)]
    pub mappers: Vec<Stage>,
    /// Where records go.
    pub destination: Stage,
    /// How often the flow is polled (`5m`, `30s`); default 5 minutes.
    #[serde(default = "default_schedule", with = "humantime_serde_str")]
    #[schema(value_type = String, example = "5m")]
    pub schedule: Duration,
    /// Retries of transient errors within one run.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Whether the flow is paused (skipped by `weft run`).
    #[serde(default)]
    pub paused: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn default_concurrency() -> usize {
    16
}

fn default_schedule() -> Duration {
    Duration::from_secs(300)
}

/// The source stage: a stage plus the stream to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceStage {
    /// `name@version-requirement` of a registered source connector.
    #[schema(value_type = String, example = "acme-crm@^1")]
    pub connector: ConnectorRef,
    /// The stream to read, one the source's `describe` lists.
    pub stream: String,
    /// The connector's configuration for this tenant (no secrets).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// Outbound HTTP grants and credentials.
    #[serde(default)]
    pub http: HttpGrants,
    /// Webhooks this source takes at `POST /hooks/{tenant}/{flow}` of
    /// `weft serve`; without this table the flow takes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
}

/// A flow's webhooks: Standard Webhooks signatures (`webhook-id`,
/// `webhook-timestamp`, `webhook-signature`) checked against any of these
/// secrets (`whsec_…`) or those of the subscription weft made
/// (`register`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Signing secrets of a subscription made by hand: `{ secret = "name" }`
    /// (the tenant's secret, else the secrets file) or `{ env = "VAR" }`.
    #[serde(default)]
    pub secrets: Vec<crate::secrets::SecretRef>,
    /// Subscribe with the vendor when the tenant is written or activated
    /// (sources that export `weft:webhooks/registration`); the secret the
    /// vendor returns is kept sealed by the host.
    #[serde(default)]
    pub register: bool,
}

impl SourceStage {
    /// The stage part of the source (connector, config, grants).
    pub fn stage(&self) -> Stage {
        Stage {
            connector: self.connector.clone(),
            config: self.config.clone(),
            http: self.http.clone(),
        }
    }
}

/// A mapper or destination stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// `name@version-requirement` of a registered connector.
    #[schema(value_type = String, example = "caldav@^1")]
    pub connector: ConnectorRef,
    /// The connector's configuration for this tenant (no secrets).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// Outbound HTTP grants and credentials.
    #[serde(default)]
    pub http: HttpGrants,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// How transient errors are retried within a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts per call before the run ends as failed (at least 1).
    pub max_attempts: u32,
    /// First backoff delay in milliseconds; doubled each attempt, jittered.
    pub base_delay_ms: u64,
    /// Longest single wait in milliseconds (also caps a connector's
    /// `retry-after`).
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay_ms: 500,
            max_delay_ms: 60_000,
        }
    }
}

/// `name@requirement`. A bare version (`acme-crm@1.2.0`) pins exactly that
/// version; an operator (`^1`, `~1.2`, `>=1, <2`) or `*` picks the highest
/// match; no `@` means any version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorRef {
    /// The connector's name.
    pub name: String,
    /// Which versions match.
    pub req: semver::VersionReq,
    raw: String,
}

impl ConnectorRef {
    /// Parses a reference.
    pub fn parse(s: &str) -> Result<Self, String> {
        let raw = s.trim().to_owned();
        let (name, req) = match raw.split_once('@') {
            Some((n, r)) => (n.to_owned(), r.trim().to_owned()),
            None => (raw.clone(), "*".to_owned()),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!(
                "{raw:?}: connector name must be lowercase letters, digits and dashes"
            ));
        }
        let req = if semver::Version::parse(&req).is_ok() {
            format!("={req}")
        } else {
            req
        };
        let req = semver::VersionReq::parse(&req).map_err(|e| {
            format!("{raw:?}: bad version requirement: {e} (try `name@^1` or `name@1.2.0`)")
        })?;
        Ok(ConnectorRef { name, req, raw })
    }
}

impl fmt::Display for ConnectorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for ConnectorRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for ConnectorRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ConnectorRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

mod humantime_serde_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("{s:?} is not a duration like `5m` or `30s`: {e}"))
        })
    }
}

/// Checks an integration on offer as far as the config alone can.
pub fn validate_integration(id: &str, i: &IntegrationConfig) -> anyhow::Result<()> {
    if !valid_id(id) {
        bail!("integrations.{id}: an integration ID is 1-64 letters, digits, `-` or `_`");
    }
    if i.flows.is_empty() {
        bail!("integrations.{id}: has no flows; add an [integrations.{id}.flows.NAME] table");
    }
    match i.vendor.auth {
        VendorAuth::OAuth2ClientCredentials
            if !i
                .vendor
                .token_path
                .as_deref()
                .is_some_and(|p| p.starts_with('/')) =>
        {
            bail!(
                "integrations.{id}.vendor.token_path: oauth2_client_credentials needs the token endpoint's path, like \"/oauth/token\""
            )
        }
        VendorAuth::ApiKey if i.vendor.header.as_deref().is_none_or(str::is_empty) => {
            bail!("integrations.{id}.vendor.header: api_key needs the header that carries the key")
        }
        _ => Ok(()),
    }
}

/// Checks one tenant's configuration (what serde cannot): IDs, flows,
/// schedules, retry policies, stage configs and rates.
pub fn validate_tenant(tid: &str, tenant: &TenantConfig) -> anyhow::Result<()> {
    if !valid_id(tid) {
        bail!("tenants.{tid}: a tenant ID is 1-64 letters, digits, `-` or `_`");
    }
    if tenant.flows.is_empty() {
        bail!("tenants.{tid}: has no flows; add a [tenants.{tid}.flows.NAME] table");
    }
    for (fid, flow) in &tenant.flows {
        let at = format!("tenants.{tid}.flows.{fid}");
        if !valid_id(fid) {
            bail!("{at}: a flow name is 1-64 letters, digits, `-` or `_`");
        }
        if flow.source.stream.is_empty() {
            bail!("{at}.source.stream: must name a stream of the source");
        }
        if flow.retry.max_attempts == 0 {
            bail!("{at}.retry.max_attempts: must be at least 1");
        }
        if flow.schedule < Duration::from_secs(1) {
            bail!("{at}.schedule: must be at least 1s");
        }
        let stages = std::iter::once(("source", &flow.source.config, &flow.source.http))
            .chain(flow.mappers.iter().map(|m| ("mappers", &m.config, &m.http)))
            .chain(std::iter::once((
                "destination",
                &flow.destination.config,
                &flow.destination.http,
            )));
        for (stage, config, http) in stages {
            if !config.is_object() {
                bail!("{at}.{stage}.config: must be a table");
            }
            if let Some(r) = http.rate
                && !(r.per_second > 0.0 && r.burst >= 1)
            {
                bail!("{at}.{stage}.http.rate: per_second must be > 0 and burst >= 1");
            }
        }
    }
    Ok(())
}

/// Whether `s` is a valid tenant ID or flow name: 1-64 letters, digits,
/// `-` or `_`.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl WeftConfig {
    /// Reads and validates `path`; relative paths in it are resolved against
    /// its directory.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config = Self::parse(&text).with_context(|| format!("in {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if config.data_dir.is_relative() {
            config.data_dir = base.join(&config.data_dir);
        }
        if let Some(s) = &config.secrets_file
            && s.is_relative()
        {
            config.secrets_file = Some(base.join(s));
        }
        if let Some(k) = &config.service.key_file
            && k.is_relative()
        {
            config.service.key_file = Some(base.join(k));
        }
        Ok(config)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: WeftConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.limits.validate()?;
        if !(self.default_rate.per_second > 0.0 && self.default_rate.burst >= 1) {
            bail!("default_rate: per_second must be > 0 and burst >= 1");
        }
        for (i, h) in self.private_hosts.iter().enumerate() {
            crate::caps::http::policy::validate_private_host(h)
                .map_err(|e| anyhow::anyhow!("private_hosts[{i}]: {e}"))?;
        }
        for (tid, tenant) in &self.tenants {
            validate_tenant(tid, tenant)?;
        }
        for (id, i) in &self.integrations {
            validate_integration(id, i)?;
        }
        if self.service.webhook_id_hours < 72 {
            bail!("service.webhook_id_hours: at least 72 (senders retry for days)");
        }
        if self.service.header_timeout_secs == 0 {
            bail!("service.header_timeout_secs: at least 1");
        }
        if self.service.max_connections == 0 {
            bail!("service.max_connections: at least 1");
        }
        for (i, o) in self.service.console_frame_ancestors.iter().enumerate() {
            let ok = url::Url::parse(o).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.path() == "/"
            }) && !o.ends_with('/');
            if !ok {
                bail!(
                    "service.console_frame_ancestors[{i}]: {o:?} is not an origin like \"https://app.example.com\""
                );
            }
        }
        if !(0.0..=1.0).contains(&self.service.schedule_jitter) {
            bail!("service.schedule_jitter: a fraction from 0 to 1");
        }
        self.service
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| anyhow::anyhow!("service.listen: {e} (like \"127.0.0.1:8700\")"))?;
        Ok(())
    }

    /// The flow `tenant`/`flow`, or an error listing what exists.
    pub fn flow(&self, tenant: &str, flow: &str) -> anyhow::Result<&FlowConfig> {
        let t = self.tenants.get(tenant).with_context(|| {
            format!(
                "no tenant {tenant:?} in the configuration (tenants: {})",
                self.tenants.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        t.flows.get(flow).with_context(|| {
            format!(
                "tenant {tenant:?} has no flow {flow:?} (flows: {})",
                t.flows.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [tenants.acme.flows.numbers]
        source = { connector = "test-source@^1", stream = "numbers" }
        destination = { connector = "test-destination@2.0.0", config = { url = "http://x" } }
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = WeftConfig::parse(MINIMAL).unwrap();
        let f = c.flow("acme", "numbers").unwrap();
        assert_eq!(f.schedule, Duration::from_secs(300));
        assert_eq!(f.retry.max_attempts, 5);
        assert!(
            f.source
                .connector
                .req
                .matches(&semver::Version::new(1, 9, 0))
        );
        assert!(
            !f.destination
                .connector
                .req
                .matches(&semver::Version::new(2, 0, 1)),
            "bare version pins"
        );
    }

    #[test]
    fn misspelt_key_is_named_with_its_line() {
        let text = MINIMAL.replace("stream =", "strem =");
        let e = format!("{:#}", WeftConfig::parse(&text).unwrap_err());
        assert!(e.contains("strem") && e.contains("line"), "{e}");
    }

    #[test]
    fn inline_secret_is_rejected() {
        let text = MINIMAL.replace(
            "stream = \"numbers\" }",
            "stream = \"numbers\", http = { credentials = [{ origin = \"https://a.example\", auth = { type = \"bearer\", token = \"plaintext\" } }] } }",
        );
        let e = format!("{:#}", WeftConfig::parse(&text).unwrap_err());
        assert!(e.contains("token"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                MINIMAL.replace("test-source@^1", "Test Source"),
                "connector name",
            ),
            (MINIMAL.replace("@^1", "@^x"), "bad version requirement"),
            (
                format!("{MINIMAL}\n[tenants.acme.flows.numbers.retry]\nmax_attempts = 0\n"),
                "retry.max_attempts",
            ),
            (
                MINIMAL.replace(
                    "[tenants.acme.flows.numbers]",
                    "[tenants.acme.flows.numbers]\nschedule = \"soon\"",
                ),
                "soon",
            ),
            (
                MINIMAL.replace("tenants.acme.", "tenants.\"a b\"."),
                "tenants.a b",
            ),
        ];
        for (text, want) in cases {
            let e = format!("{:#}", WeftConfig::parse(&text).unwrap_err());
            assert!(e.contains(want), "expected {want:?} in {e}");
        }
    }

    #[test]
    fn unknown_flow_lists_the_known_ones() {
        let c = WeftConfig::parse(MINIMAL).unwrap();
        let e = c.flow("acme", "nope").unwrap_err().to_string();
        assert!(e.contains("flows: numbers"), "{e}");
    }
}
