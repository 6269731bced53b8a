//! What the tests of `weft serve` share: a service running over a demo
//! host, calls to its API and signed webhook deliveries.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;
use weft_demo::{DemoEnv, TenantSetup};
use weft_sandbox::acme::data::Counts;
use weft_sandbox::acme::{AcmeConfig, Faults};

pub const OPERATOR: &str = "operator-token-for-tests";

/// A small Acme (3 users, 20 contacts, 40 appointments, 40 activities)
/// whose webhooks retry a hundred times sooner than the real one's.
pub fn acme() -> AcmeConfig {
    acme_with(Faults::default())
}

/// [`acme`] with the fault profile `faults`.
pub fn acme_with(faults: Faults) -> AcmeConfig {
    AcmeConfig {
        counts: Counts {
            users: 3,
            contacts: 20,
            appointments: 40,
            activities: 40,
        },
        faults,
        webhook_time_scale: 0.01,
        ..AcmeConfig::default()
    }
}

/// The demo with [`acme`] and the tenants `ids`, each as the demo sets it up.
pub async fn demo(ids: &[&str]) -> DemoEnv {
    let tenants = ids.iter().map(|id| TenantSetup::new(id)).collect();
    DemoEnv::start(acme(), tenants).await.unwrap()
}

/// Syncs `tenant` once, printing each run; every run succeeds.
pub async fn sync_ok(env: &DemoEnv, tenant: &str) {
    for r in env.sync(tenant).await.unwrap() {
        eprintln!("{tenant}: {}", weft_demo::run_line(&r));
        weft_demo::assert_succeeded(&r);
    }
}

/// `tenant`'s calendars and dashboard hold exactly what Acme says (`when`
/// names the moment for the failure); what was compared.
pub async fn matches_acme(env: &DemoEnv, tenant: &str, when: &str) -> weft_demo::Exactness {
    let check = env.check_against_acme(tenant).await.unwrap();
    assert!(
        check.differences.is_empty(),
        "{when}: {:#?}",
        check.differences
    );
    check
}

/// A tenant `id` whose source keeps the last known fields of deleted
/// contacts (`deleted_contacts = "last-known"`).
pub fn last_known(id: &str) -> TenantSetup {
    let mut t = TenantSetup::new(id);
    t.source_options = r#"deleted_contacts = "last-known""#.into();
    t
}

/// A running service over the demo's host.
pub struct Service {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Service {
    pub async fn start(env: &DemoEnv) -> Service {
        let serving = env.serve(OPERATOR).await;
        Service {
            url: serving.url,
            stop: Some(serving.stop),
            task: serving.task,
        }
    }

    pub async fn call(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        api(&self.url, token, method, path, body).await.unwrap()
    }

    /// A call with the operator's token.
    pub async fn operator(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(Some(OPERATOR), method, path, body).await
    }

    /// Tenant `id`'s config as the admin API gives it.
    /// Mints a token with the operator's (`201`): the answer, with the
    /// token.
    pub async fn mint(&self, body: Value) -> Value {
        let (s, minted) = self.operator("POST", "/v1/tokens", Some(body)).await;
        assert_eq!(s, 201, "{minted}");
        minted
    }

    pub async fn tenant(&self, id: &str) -> Value {
        let (s, v) = self
            .operator("GET", &format!("/v1/tenants/{id}"), None)
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Writes the secret `name` of tenant `id` as the operator.
    pub async fn put_secret(&self, id: &str, name: &str, value: &str) {
        let path = format!("/v1/tenants/{id}/secrets/{name}");
        let (s, v) = self
            .operator("PUT", &path, Some(json!({ "value": value })))
            .await;
        assert_eq!(s, 204, "{v}");
    }

    /// Writes tenant `id`'s config `t` as the operator: the status and the
    /// answer.
    pub async fn put_tenant(&self, id: &str, t: Value) -> (u16, Value) {
        self.operator("PUT", &format!("/v1/tenants/{id}"), Some(t))
            .await
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the service stops")
            .unwrap()
            .unwrap();
    }
}

/// A call to the admin API of the service at `url`: the status and the
/// body (JSON, or the text as a JSON string).
pub async fn api(
    url: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let a = weft_demo::http(
        method,
        &format!("{url}{path}"),
        &headers,
        body.map(|b| ("application/json", b.to_string())),
    )
    .await?;
    let v = serde_json::from_str(&a.text).unwrap_or(Value::String(a.text));
    Ok((a.status, v))
}

pub fn sign(secret: &str, id: &str, ts: u64, body: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub async fn hook(svc: &Service, path: &str, id: &str, ts: u64, sig: &str, body: &str) -> u16 {
    weft_demo::http(
        "POST",
        &format!("{}{path}", svc.url),
        &[
            ("webhook-id", id),
            ("webhook-timestamp", &ts.to_string()),
            ("webhook-signature", sig),
        ],
        Some(("application/json", body.to_owned())),
    )
    .await
    .unwrap()
    .status
}

/// Every file under `dir`.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
