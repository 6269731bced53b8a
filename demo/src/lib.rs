//! The Acme CRM → calendar + dashboard integration, set up end to end:
//! the Acme sandbox, the dashboard sandbox and a real Radicale, a weft host
//! with the five connectors registered, and a `weft.toml` for one or more
//! tenants. `make demo` runs it (`src/main.rs`); the integration tests
//! (`tests/integration/statements.rs`) use the same environment to check the eleven
//! "when … then …" statements of `our-app.md`.

#![deny(missing_docs)]

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use weft::Host;
use weft::config::WeftConfig;
use weft::flow::Trigger;
use weft::state::RunRecord;
use weft_sandbox::acme::{AcmeConfig, AcmeSandbox};
use weft_sandbox::dashboard::DashboardSandbox;
use weft_sandbox::radicale::Radicale;
use weft_test_artifacts as artifacts;

/// The OAuth client the demo's Acme accepts.
pub const CLIENT_ID: &str = "weft-demo";
/// Its secret (kept in the demo's secrets file, never in `weft.toml`).
pub const CLIENT_SECRET: &str = "demo-secret";

/// How one tenant is set up.
#[derive(Debug, Clone)]
pub struct TenantSetup {
    /// The tenant ID.
    pub id: String,
    /// Its dashboard token.
    pub dashboard_token: String,
    /// Extra keys of the `acme-crm` config of its three flows (TOML
    /// inline-table body, e.g. `deleted_contacts = "last-known"`).
    pub source_options: String,
    /// Extra keys of the `acme-calendar` config (TOML inline-table body,
    /// e.g. `keep_cancelled = true`).
    pub calendar_options: String,
    /// Extra keys of the `acme-touchpoints` config.
    pub touchpoint_options: String,
    /// The flows' retry policy (TOML inline-table body).
    pub retry: String,
    /// Whether `weft.toml` configures it; otherwise only its dashboard
    /// token exists, and it is set up by activating the
    /// [`INTEGRATION`] (the console, the admin API).
    pub configured: bool,
}

/// The ID of the integration the demo's `weft.toml` offers: the same
/// flows as a configured tenant's, for tenants that set themselves up.
pub const INTEGRATION: &str = "acme-calendar";

/// The integration's components (built by `tests/artifacts`), as the
/// demo's host registers them.
pub const COMPONENTS: [&str; 5] = [
    artifacts::ACME_CRM,
    artifacts::ACME_CALENDAR,
    artifacts::ACME_TOUCHPOINTS,
    artifacts::CALDAV,
    artifacts::DASHBOARD,
];

/// Panics, naming the flow and its error, unless `r` succeeded.
pub fn assert_succeeded(r: &RunRecord) {
    assert_eq!(
        r.outcome,
        weft::state::RunOutcome::Succeeded,
        "{}: {:?}",
        r.flow,
        r.error
    );
}

/// The CalDAV service account of the demo world when Radicale requires
/// HTTP Basic (see [`DemoEnv::start_with_caldav_auth`]).
pub const CALDAV_USER: &str = "weft-sync";

impl TenantSetup {
    /// A tenant with default options.
    pub fn new(id: &str) -> Self {
        TenantSetup {
            id: id.to_owned(),
            dashboard_token: format!("{id}-dashboard-token"),
            source_options: String::new(),
            calendar_options: String::new(),
            touchpoint_options: String::new(),
            retry: "max_attempts = 8, base_delay_ms = 100, max_delay_ms = 2000".into(),
            configured: true,
        }
    }

    /// A tenant that `weft.toml` does not configure: it activates the
    /// [`INTEGRATION`] itself.
    pub fn to_activate(id: &str) -> Self {
        TenantSetup {
            configured: false,
            ..TenantSetup::new(id)
        }
    }
}

/// The running world of the demo.
pub struct DemoEnv {
    /// Acme.
    pub acme: AcmeSandbox,
    /// The dashboard.
    pub dashboard: DashboardSandbox,
    /// CalDAV.
    pub radicale: Radicale,
    /// The weft host (shared with `weft serve`'s tasks when a test runs the
    /// service).
    pub host: std::sync::Arc<Host>,
    /// Where `weft.toml`, the secrets file and the data live.
    pub dir: tempfile::TempDir,
    /// The tenants.
    pub tenants: Vec<TenantSetup>,
    /// `Authorization` for reading calendars back, when CalDAV wants it.
    caldav_auth: Option<String>,
}

/// A small HTTP answer.
pub struct Answer {
    /// Status.
    pub status: u16,
    /// Body text.
    pub text: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// Sends one request (the demo's own HTTP needs: control APIs, CalDAV reads).
pub async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> anyhow::Result<Answer> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut b = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = match body {
        Some((ct, text)) => b
            .header("content-type", ct)
            .body(Full::new(Bytes::from(text)))?,
        None => b.body(Full::new(Bytes::new()))?,
    };
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status().as_u16();
    let text = String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
    Ok(Answer { status, text })
}

/// The result of [`DemoEnv::check_against_acme`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exactness {
    /// Events that should exist (and were checked).
    pub events: usize,
    /// Touch-points that should exist.
    pub touchpoints: usize,
    /// Everything that differs; empty when exact.
    pub differences: Vec<String>,
}

/// The request rate the demo grants for our own servers (CalDAV and the
/// dashboard), per tenant.
pub const OUR_RATE: &str = "{ per_second = 500.0, burst = 500 }";

/// The `weft.toml` of the demo world.
pub fn config_toml(
    data_dir: &str,
    acme_base: &str,
    dashboard: &str,
    radicale: &str,
    tenants: &[TenantSetup],
    caldav_basic_user: Option<&str>,
) -> String {
    let origin = |u: &str| {
        let rest = u.split_once("://").map(|x| x.1).unwrap_or(u);
        format!("http://{}", rest.split('/').next().unwrap_or(rest))
    };
    let (acme_o, dash_o, cal_o) = (origin(acme_base), origin(dashboard), origin(radicale));
    // CalDAV credentials, when the server wants them: HTTP Basic from the
    // secrets file, added by the host.
    let caldav_credentials = caldav_basic_user
        .map(|u| {
            format!(
                r#", credentials = [{{ origin = "{cal_o}", auth = {{ type = "basic", username = "{u}", password = {{ secret = "caldav_password" }} }} }}]"#
            )
        })
        .unwrap_or_default();
    let mut out = format!(
        r#"# Written by weft-demo.
data_dir = "{data_dir}"
secrets_file = "secrets.toml"
private_hosts = ["127.0.0.1"]

[limits]
call_timeout_ms = 30000

[service]
# Seals tenant secrets written over the admin API.
key_file = "weft.key"
"#
    );
    let our = OurServers {
        radicale: radicale.to_owned(),
        cal_o,
        caldav_credentials,
        dashboard: dashboard.to_owned(),
        dash_o,
    };
    for t in tenants.iter().filter(|t| t.configured) {
        let acme = format!(
            r#"{{ connector = "acme-crm@^1", stream = "STREAM", config = {{ base_url = "{acme_base}", page_size = 50{} }}, http = {{ allow = ["{acme_o}"], credentials = [{{ origin = "{acme_o}", auth = {{ type = "oauth2_client_credentials", token_url = "{acme_base}/oauth/token", client_id = "{CLIENT_ID}", client_secret = {{ secret = "acme_client_secret" }} }} }}] }} }}"#,
            prefixed(&t.source_options)
        );
        out.push_str(&flows_toml(&format!("tenants.{}", t.id), t, &acme, &our));
    }
    // The same flows on offer as an integration: the tenant enters its Acme
    // address and client credentials; `{tenant}` is its ID.
    out.push_str(&format!(
        r#"
[integrations.{INTEGRATION}]
title = "Acme CRM → calendar + dashboard"
description = "Each owner's Acme appointments in their calendar; emails and calls on the touch-points dashboard."
vendor = {{ name = "Acme CRM", auth = "oauth2_client_credentials", token_path = "/oauth/token" }}
"#
    ));
    let source = r#"{ connector = "acme-crm@^1", stream = "STREAM", config = { page_size = 50 } }"#;
    out.push_str(&flows_toml(
        &format!("integrations.{INTEGRATION}"),
        &TenantSetup::new("{tenant}"),
        source,
        &our,
    ));
    out
}

/// Where our own servers are and how weft reaches them.
struct OurServers {
    radicale: String,
    cal_o: String,
    caldav_credentials: String,
    dashboard: String,
    dash_o: String,
}

/// The three flows of tenant `t` as TOML tables under `table`
/// (`tenants.t1`, `integrations.acme-calendar`), reading Acme with the
/// source stage `acme` (`STREAM` stands for the stream).
fn flows_toml(table: &str, t: &TenantSetup, acme: &str, our: &OurServers) -> String {
    let id = &t.id;
    let OurServers {
        radicale,
        cal_o,
        caldav_credentials,
        dashboard,
        dash_o,
    } = our;
    let calendar = format!(
        r#"{{ connector = "acme-calendar@^1", config = {{ uid_namespace = "{id}"{} }} }}"#,
        prefixed(&t.calendar_options)
    );
    // Our own servers get their own rate: `default_rate` (10/s, meant
    // for vendors' APIs) would throttle the calendar and the dashboard.
    let caldav = format!(
        r#"{{ connector = "caldav@^1", config = {{ collection_url = "{radicale}/{{email}}/acme-{id}/" }}, http = {{ allow = ["{cal_o}"], rate = {OUR_RATE}{caldav_credentials} }} }}"#
    );
    format!(
        r#"
[{table}.flows.appointments]
schedule = "5m"
retry = {{ {retry} }}
source = {src_a}
mappers = [{calendar}]
destination = {caldav}

[{table}.flows.contacts]
retry = {{ {retry} }}
source = {src_c}
mappers = [{calendar}]
destination = {caldav}

[{table}.flows.touchpoints]
retry = {{ {retry} }}
source = {src_t}
mappers = [{{ connector = "acme-touchpoints@^1", config = {{ {tp} }} }}]
destination = {{ connector = "dashboard@^1", config = {{ base_url = "{dashboard}" }}, http = {{ allow = ["{dash_o}"], rate = {OUR_RATE}, credentials = [{{ origin = "{dash_o}", auth = {{ type = "bearer", token = {{ secret = "dashboard_token_{id}" }} }} }}] }} }}
"#,
        src_a = acme.replace("STREAM", "appointments"),
        src_c = acme.replace("STREAM", "contacts"),
        src_t = acme.replace("STREAM", "activities"),
        tp = t.touchpoint_options,
        retry = t.retry,
    )
}

fn prefixed(opts: &str) -> String {
    if opts.trim().is_empty() {
        String::new()
    } else {
        format!(", {opts}")
    }
}

/// The admin service of a [`DemoEnv`], started by [`DemoEnv::serve`].
pub struct Serving {
    /// Where it listens (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Stops it (gracefully) when sent to or dropped.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// The service's task, done once it stopped.
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl DemoEnv {
    /// Serves the admin API and webhooks over this environment's host on a
    /// port of 127.0.0.1 the OS picks, with `operator` as the operator's
    /// token (`weft::service::run`, the code `weft serve` runs).
    pub async fn serve(&self, operator: &str) -> Serving {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(weft::service::run(
            self.host.clone(),
            listener,
            async move {
                let _ = stopped.await;
            },
            |_| {},
            vec![operator.to_owned()],
        ));
        Serving { url, stop, task }
    }

    /// Starts Acme (with `acme`), the dashboard (one token per tenant) and
    /// Radicale, writes the configuration and secrets, opens the host and
    /// registers the connectors.
    pub async fn start(acme: AcmeConfig, tenants: Vec<TenantSetup>) -> anyhow::Result<Self> {
        Self::start_inner(acme, tenants, None, "").await
    }

    /// Like [`DemoEnv::start`], with the host's state in the PostgreSQL
    /// database at `url` (`[state] backend = "postgres"`).
    pub async fn start_on_postgres(
        acme: AcmeConfig,
        tenants: Vec<TenantSetup>,
        url: &str,
    ) -> anyhow::Result<Self> {
        let state = format!("\n[state]\nbackend = \"postgres\"\nurl = \"{url}\"\n");
        Self::start_inner(acme, tenants, None, &state).await
    }

    /// Like [`DemoEnv::start`], but Radicale requires HTTP Basic for
    /// [`CALDAV_USER`] with `password`, and each tenant's `caldav` stage gets
    /// that credential (from the secrets file) injected by the host.
    pub async fn start_with_caldav_auth(
        acme: AcmeConfig,
        tenants: Vec<TenantSetup>,
        password: &str,
    ) -> anyhow::Result<Self> {
        Self::start_inner(acme, tenants, Some(password), "").await
    }

    /// Like [`DemoEnv::start`], with `extra` appended to `weft.toml` (TOML
    /// tables, e.g. `[alerts]`).
    pub async fn start_with(
        acme: AcmeConfig,
        tenants: Vec<TenantSetup>,
        extra: &str,
    ) -> anyhow::Result<Self> {
        Self::start_inner(acme, tenants, None, extra).await
    }

    async fn start_inner(
        acme: AcmeConfig,
        tenants: Vec<TenantSetup>,
        caldav_password: Option<&str>,
        extra: &str,
    ) -> anyhow::Result<Self> {
        let acme = AcmeSandbox::start(acme, "127.0.0.1:0".parse()?).await?;
        let tokens = tenants
            .iter()
            .map(|t| (t.dashboard_token.clone(), t.id.clone()))
            .collect();
        let dashboard = DashboardSandbox::start(tokens, "127.0.0.1:0".parse()?).await?;
        let radicale = match caldav_password {
            Some(p) => Radicale::start_with_basic_auth(&[(CALDAV_USER, p)])?,
            None => Radicale::start()?,
        };
        let dir = tempfile::tempdir()?;
        let mut secrets = format!("acme_client_secret = \"{CLIENT_SECRET}\"\n");
        if let Some(p) = caldav_password {
            secrets.push_str(&format!("caldav_password = \"{p}\"\n"));
        }
        for t in &tenants {
            secrets.push_str(&format!(
                "dashboard_token_{} = \"{}\"\n",
                t.id, t.dashboard_token
            ));
        }
        std::fs::write(dir.path().join("secrets.toml"), secrets)?;
        {
            use base64::Engine as _;
            let key: [u8; 32] = rand::random();
            std::fs::write(
                dir.path().join("weft.key"),
                base64::engine::general_purpose::STANDARD.encode(key),
            )?;
        }
        let mut text = config_toml(
            "data",
            &acme.base_url(),
            &dashboard.url(),
            &radicale.url(),
            &tenants,
            caldav_password.map(|_| CALDAV_USER),
        );
        text.push_str(extra);
        let path = dir.path().join("weft.toml");
        std::fs::write(&path, &text)?;
        let host = std::sync::Arc::new(Host::open(WeftConfig::load(&path)?)?);
        for file in COMPONENTS {
            host.registry.add(&host.runtime, file.as_ref()).await?;
        }
        Ok(DemoEnv {
            acme,
            dashboard,
            radicale,
            host,
            dir,
            tenants,
            caldav_auth: caldav_password.map(|p| {
                use base64::Engine as _;
                let raw = format!("{CALDAV_USER}:{p}");
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                )
            }),
        })
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("weft.toml")
    }

    /// Runs every flow of `tenant` once, in order.
    pub async fn sync(&self, tenant: &str) -> anyhow::Result<Vec<RunRecord>> {
        let mut out = Vec::new();
        for flow in ["appointments", "contacts", "touchpoints"] {
            out.push(
                self.host
                    .run_flow(tenant, flow, Trigger::Manual, &|_| {})
                    .await?,
            );
        }
        Ok(out)
    }

    /// A control-API call on Acme (`/_sandbox/...`).
    pub async fn acme_control(
        &self,
        method: &str,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let a = http(
            method,
            &format!("{}/_sandbox{path}", self.acme.root_url()),
            &[],
            Some(("application/json", body.to_string())),
        )
        .await?;
        anyhow::ensure!(a.status < 300, "{method} {path}: {} {}", a.status, a.text);
        Ok(a.json())
    }

    /// A public-API GET on Acme with the API key.
    ///
    /// The sandbox may be told to fail some requests (`Faults`): server
    /// errors, rate limits and cut-short bodies are asked again, a few times.
    pub async fn acme_get(&self, path: &str) -> anyhow::Result<Value> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let a = http(
                "GET",
                &format!("{}{path}", self.acme.base_url()),
                &[("x-acme-api-key", "acme-demo-key")],
                None,
            )
            .await?;
            let again = a.status == 429
                || a.status >= 500
                || (a.status == 200 && serde_json::from_str::<Value>(&a.text).is_err());
            if again && attempt < 20 {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
            anyhow::ensure!(a.status == 200, "GET {path}: {} {}", a.status, a.text);
            return Ok(a.json());
        }
    }

    /// Every appointment in Acme.
    pub async fn appointments(&self) -> anyhow::Result<Vec<Value>> {
        self.list_all("appointments").await
    }

    /// Every record of an Acme list endpoint (`appointments`, `contacts`,
    /// `activities`), deleted ones included, all types.
    pub async fn list_all(&self, resource: &str) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut q = format!("/{resource}?limit=200");
        loop {
            let v = self.acme_get(&q).await?;
            out.extend(v["data"].as_array().cloned().unwrap_or_default());
            match v["next_cursor"].as_str() {
                Some(c) => q = format!("/{resource}?cursor={c}&limit=200"),
                None => return Ok(out),
            }
        }
    }

    /// Compares what `tenant` has in its calendars and on the dashboard with
    /// what Acme holds now, for a tenant with the default options (statuses
    /// `scheduled` and `completed`, cancelled removed, owners matched by
    /// email): every appointment that can be an event is exactly one event,
    /// in its owner's calendar only; nothing else is in any calendar; every
    /// live email or call is exactly one touch-point of its owner. Returns
    /// what was checked, or every difference.
    pub async fn check_against_acme(&self, tenant: &str) -> anyhow::Result<Exactness> {
        self.check(tenant, false).await
    }

    /// [`DemoEnv::check_against_acme`] for a tenant whose source has
    /// `deleted_contacts = "last-known"`: an appointment of a customer Acme
    /// lists as deleted is an event too.
    pub async fn check_against_acme_last_known(&self, tenant: &str) -> anyhow::Result<Exactness> {
        self.check(tenant, true).await
    }

    async fn check(&self, tenant: &str, deleted_contacts_known: bool) -> anyhow::Result<Exactness> {
        use std::collections::{BTreeMap, BTreeSet};
        let users: BTreeMap<String, String> = self.acme_get("/users").await?["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| {
                Some((
                    u["id"].as_str()?.to_owned(),
                    u["email"].as_str()?.to_lowercase(),
                ))
            })
            .collect();
        let live_contacts: BTreeSet<String> = self
            .list_all("contacts")
            .await?
            .iter()
            .filter(|c| deleted_contacts_known || c["deleted_at"].is_null())
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect();
        let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
        for a in self.appointments().await? {
            let owner = a["owner_id"].as_str().and_then(|o| users.get(o));
            let can_be_event = a["deleted_at"].is_null()
                && matches!(a["status"].as_str(), Some("scheduled") | Some("completed"))
                && !a["starts_at"].is_null()
                && a["contact_id"]
                    .as_str()
                    .is_some_and(|c| live_contacts.contains(c));
            if let (true, Some(owner)) = (can_be_event, owner) {
                let id = a["id"].as_str().unwrap_or_default();
                expected.insert((owner.clone(), format!("acme-{id}@{tenant}")));
            }
        }
        let mut actual = BTreeSet::new();
        for email in users.values() {
            for uid in self.calendar(tenant, email).await?.into_keys() {
                actual.insert((email.clone(), uid));
            }
        }
        let mut differences = Vec::new();
        for (user, uid) in expected.difference(&actual) {
            differences.push(format!("missing: {uid} in the calendar of {user}"));
        }
        for (user, uid) in actual.difference(&expected) {
            differences.push(format!("unexpected: {uid} in the calendar of {user}"));
        }
        let mut touchpoints: BTreeSet<(String, String, String)> = BTreeSet::new();
        for a in self.list_all("activities").await? {
            let channel = match a["type"].as_str() {
                Some("email") => "email",
                Some("call") => "phone",
                _ => continue,
            };
            if let (true, Some(owner)) = (
                a["deleted_at"].is_null(),
                a["owner_id"].as_str().and_then(|o| users.get(o)),
            ) {
                let id = a["id"].as_str().unwrap_or_default().to_owned();
                touchpoints.insert((id, owner.clone(), channel.to_owned()));
            }
        }
        let stored: BTreeSet<(String, String, String)> = self
            .dashboard
            .touchpoints(tenant)
            .into_iter()
            .map(|((_, id), t)| (id, t.user_email, t.channel))
            .collect();
        for t in touchpoints.difference(&stored) {
            differences.push(format!("missing touch-point: {t:?}"));
        }
        for t in stored.difference(&touchpoints) {
            differences.push(format!("unexpected touch-point: {t:?}"));
        }
        Ok(Exactness {
            events: expected.len(),
            touchpoints: touchpoints.len(),
            differences,
        })
    }

    /// The Acme users' emails, lowercased.
    pub async fn user_emails(&self) -> anyhow::Result<Vec<String>> {
        let v = self.acme_get("/users").await?;
        Ok(v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["email"].as_str().map(str::to_lowercase))
            .collect())
    }

    /// The calendar collection of `email` for `tenant`.
    pub fn calendar_url(&self, tenant: &str, email: &str) -> String {
        format!("{}/{email}/acme-{tenant}/", self.radicale.url())
    }

    /// The events in `email`'s calendar, UID → iCalendar text, read over
    /// CalDAV (`REPORT` calendar-query).
    pub async fn calendar(
        &self,
        tenant: &str,
        email: &str,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        const QUERY: &str = r#"<?xml version="1.0" encoding="utf-8"?><c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:calendar-data/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"/></c:comp-filter></c:filter></c:calendar-query>"#;
        let a = http(
            "REPORT",
            &self.calendar_url(tenant, email),
            &self.read_headers(&[("depth", "1")]),
            Some(("application/xml; charset=utf-8", QUERY.into())),
        )
        .await?;
        if a.status == 404 {
            return Ok(BTreeMap::new());
        }
        anyhow::ensure!(
            a.status == 207,
            "REPORT {}: {} {}",
            self.calendar_url(tenant, email),
            a.status,
            a.text
        );
        let text = a
            .text
            .replace("&#13;", "\r")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&");
        let mut out = BTreeMap::new();
        for part in text.split("BEGIN:VCALENDAR").skip(1) {
            let Some(end) = part.find("END:VCALENDAR") else {
                continue;
            };
            let ics = format!("BEGIN:VCALENDAR{}END:VCALENDAR", &part[..end]);
            let unfolded = unfold(&ics);
            if let Some(uid) = unfolded.lines().find_map(|l| l.strip_prefix("UID:")) {
                let uid = uid.trim().to_owned();
                anyhow::ensure!(
                    !out.contains_key(&uid),
                    "UID {uid} under two resource names in {}",
                    self.calendar_url(tenant, email)
                );
                out.insert(uid, unfolded);
            }
        }
        Ok(out)
    }

    /// What `tenant`'s calendars show, comparable across tenants: for every
    /// event, `owner email → Acme appointment ID`, to its content lines
    /// without the ones that name the tenant (`UID`) or the moment of
    /// writing (`DTSTAMP`). Two tenants over one Acme with the same options
    /// must show the same view.
    pub async fn calendar_view(
        &self,
        tenant: &str,
    ) -> anyhow::Result<BTreeMap<(String, String), Vec<String>>> {
        let suffix = format!("@{tenant}");
        let mut out = BTreeMap::new();
        for email in self.user_emails().await? {
            for (uid, ics) in self.calendar(tenant, &email).await? {
                let id = uid
                    .strip_prefix("acme-")
                    .and_then(|u| u.strip_suffix(&suffix))
                    .with_context(|| format!("event {uid} is not one of {tenant}'s"))?
                    .to_owned();
                let lines = ics
                    .lines()
                    .filter(|l| !l.starts_with("UID:") && !l.starts_with("DTSTAMP:"))
                    .map(str::to_owned)
                    .collect();
                out.insert((email.clone(), id), lines);
            }
        }
        Ok(out)
    }

    /// `extra` plus the CalDAV `Authorization`, when there is one.
    fn read_headers<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut h = extra.to_vec();
        if let Some(a) = &self.caldav_auth {
            h.push(("authorization", a.as_str()));
        }
        h
    }

    /// The dashboard's counts for `email` in `tenant`.
    pub async fn touchpoints(&self, tenant: &str, email: &str) -> anyhow::Result<Value> {
        let t = self
            .tenants
            .iter()
            .find(|t| t.id == tenant)
            .context("unknown tenant")?;
        let a = http(
            "GET",
            &format!(
                "{}/v1/dashboard/touchpoints?user_email={email}",
                self.dashboard.url()
            ),
            &[("authorization", &format!("Bearer {}", t.dashboard_token))],
            None,
        )
        .await?;
        anyhow::ensure!(a.status == 200, "dashboard: {} {}", a.status, a.text);
        Ok(a.json())
    }
}

/// Unfolds iCalendar content lines (RFC 5545 §3.1) and normalises newlines.
pub fn unfold(ics: &str) -> String {
    ics.replace("\r\n ", "")
        .replace("\n ", "")
        .replace("\r\n", "\n")
}

/// The value of property `name` in an unfolded event, unescaped.
pub fn property(ics: &str, name: &str) -> Option<String> {
    ics.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key == name || key.starts_with(&format!("{name};"))).then(|| {
            value
                .replace("\\n", "\n")
                .replace("\\,", ",")
                .replace("\\;", ";")
                .replace("\\\\", "\\")
        })
    })
}

/// `{"email": N, "phone": N}` of a dashboard answer.
pub fn totals(v: &Value) -> (u64, u64) {
    (
        v["total"]["email"].as_u64().unwrap_or(0),
        v["total"]["phone"].as_u64().unwrap_or(0),
    )
}

/// A JSON summary of a run, for printing.
pub fn run_line(r: &RunRecord) -> Value {
    json!({
        "flow": r.flow, "outcome": r.outcome, "pages": r.pages, "fetched": r.fetched,
        "emitted": r.emitted, "stale": r.skipped_stale, "dead_lettered": r.dead_lettered, "retries": r.retries, "error": r.error,
    })
}
