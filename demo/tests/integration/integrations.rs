//! Integrations over the admin API: a tenant that `weft.toml` does not
//! configure is set up by a one-time activation link, tests its Acme
//! credentials, is refused field by field, activates, and syncs exactly.

use crate::support::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use weft::state::RunOutcome;
use weft_demo::{CLIENT_ID, CLIENT_SECRET, DemoEnv, INTEGRATION, TenantSetup};

/// What the tenant enters: Acme's address and client credentials.
fn answers(env: &DemoEnv, secret: &str, options: Value) -> Value {
    json!({
        "base_url": env.acme.base_url(),
        "credentials": { "client_id": CLIENT_ID, "client_secret": secret },
        "options": options,
    })
}

/// `POST`s the answers with the right secret and `options` to `path` with
/// `token`.
async fn apply_as(
    svc: &Service,
    token: &str,
    path: &str,
    env: &DemoEnv,
    options: Value,
) -> (u16, Value) {
    let body = answers(env, CLIENT_SECRET, options);
    svc.call(Some(token), "POST", path, Some(body)).await
}

/// Waits until `flow` of `tenant` has `n` finished runs.
pub(crate) async fn wait_for_runs(env: &DemoEnv, tenant: &str, flow: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let runs = env.host.state.runs(Some(tenant), Some(flow), 50).unwrap();
        if runs
            .iter()
            .filter(|r| r.outcome != RunOutcome::Running)
            .count()
            >= n
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{flow}: fewer than {n} runs finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until each of `flows` of `tenant` has a finished run; panics on
/// one that did not succeed.
pub(crate) async fn wait_for_first_sync(env: &DemoEnv, tenant: &str, flows: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for flow in flows {
        loop {
            let runs = env.host.state.runs(Some(tenant), Some(flow), 10).unwrap();
            if let Some(r) = runs.iter().find(|r| r.outcome != RunOutcome::Running) {
                assert_eq!(r.outcome, RunOutcome::Succeeded, "{flow}: {:?}", r.error);
                break;
            }
            assert!(Instant::now() < deadline, "{flow} did not finish a run");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A stand-in for the platform's backend: keeps the JSON bodies POSTed to
/// it, answers `204`.
async fn platform() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then as much body as Content-Length says.
                loop {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        keep.lock()
                            .unwrap()
                            .push(serde_json::from_str(body).unwrap_or(Value::Null));
                        let _ = conn
                            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_activates_an_integration_by_link_and_syncs_exactly() {
    let (events_url, told) = platform().await;
    let env = DemoEnv::start_with(
        acme(),
        vec![TenantSetup::new("t1"), TenantSetup::to_activate("t3")],
        &format!("\n[alerts]\nurl = \"{events_url}\"\n"),
    )
    .await
    .unwrap();
    let svc = Service::start(&env).await;

    // The form: Acme's address and client credentials, and the options
    // the integration leaves open (not the ones it fixes).
    let (s, forms) = svc.operator("GET", "/v1/integrations", None).await;
    assert_eq!(s, 200, "{forms}");
    let form = &forms[0];
    assert_eq!(form["id"], INTEGRATION);
    let creds: Vec<&str> = form["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(creds, ["client_id", "client_secret"]);
    let crm = &form["options"]["acme-crm"]["properties"];
    assert!(crm.get("deleted_contacts").is_some(), "{form}");
    for fixed in ["base_url", "page_size"] {
        assert!(crm.get(fixed).is_none(), "{fixed} is not asked: {form}");
    }
    assert!(
        form["options"]["acme-calendar"]["properties"]
            .get("uid_namespace")
            .is_none(),
        "{form}"
    );

    // A one-time link for a tenant that does not exist yet.
    let link = svc
        .mint(json!({ "name": "t3 activation", "tenant": "t3", "link": true }))
        .await;
    let url = link["url"].as_str().unwrap();
    assert!(
        url.contains("/#token=weft_") && url.ends_with("&link=1"),
        "{url}"
    );
    let link = link["token"].as_str().unwrap().to_owned();
    let (s, v) = svc.call(Some(&link), "GET", "/v1/whoami", None).await;
    assert_eq!(s, 401, "a link is only exchanged: {v}");
    let (s, session) = svc
        .call(Some(&link), "POST", "/v1/tokens/exchange", None)
        .await;
    assert_eq!(s, 201, "{session}");
    let (s, v) = svc
        .call(Some(&link), "POST", "/v1/tokens/exchange", None)
        .await;
    assert_eq!(s, 401, "a link works once: {v}");
    let t3 = session["token"].as_str().unwrap().to_owned();
    let (s, who) = svc.call(Some(&t3), "GET", "/v1/whoami", None).await;
    assert_eq!((s, &who["tenant"]), (200, &json!("t3")), "{who}");

    // Test connection: Acme's refusal in words, then a page.
    let test = format!("/v1/tenants/t3/integrations/{INTEGRATION}/test");
    // What "test connection" says with `secret`: (whether it connected, why).
    let connects = |secret: &'static str| {
        let (svc, t3, test, body) = (&svc, &t3, &test, answers(&env, secret, json!({})));
        async move {
            let (s, v) = svc.call(Some(t3), "POST", test, Some(body)).await;
            assert_eq!(s, 200, "{v}");
            (
                v["ok"] == json!(true),
                v["message"].as_str().unwrap_or("").to_owned(),
            )
        }
    };
    let (ok, why) = connects("wrong").await;
    assert!(!ok && why.contains("invalid_client"), "{why}");
    let (ok, why) = connects(CLIENT_SECRET).await;
    assert!(ok, "{why}");
    let (_, secrets) = svc
        .call(Some(&t3), "GET", "/v1/tenants/t3/secrets", None)
        .await;
    assert_eq!(secrets, json!([]), "a test stores nothing");

    // Answers that do not fit: refused, each field named.
    let apply = format!("/v1/tenants/t3/integrations/{INTEGRATION}");
    let (s, v) = svc
        .call(
            Some(&t3),
            "POST",
            &apply,
            Some(json!({
                "base_url": "acme.example",
                "credentials": { "client_id": CLIENT_ID },
                "options": {
                    "acme-crm": { "page_size": 10, "deleted_contacts": "forget" },
                    "acme-touchpoints": { "nonsense": true },
                },
            })),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    for field in [
        "base_url",
        "credentials.client_secret",
        "options.acme-crm.page_size",
        "options.acme-crm.deleted_contacts",
        "options.acme-touchpoints",
    ] {
        assert!(v["fields"].get(field).is_some(), "{field}: {v}");
    }
    assert!(svc.operator("GET", "/v1/tenants/t3", None).await.0 == 404);

    // Another tenant is not the session's.
    let other = format!("/v1/tenants/t1/integrations/{INTEGRATION}");
    let (s, _) = apply_as(&svc, &t3, &other, &env, json!({})).await;
    assert_eq!(s, 404);

    // Activation: the tenant is made, its first sync runs, and it is exact.
    let options = json!({ "acme-crm": { "deleted_contacts": "dead-letter" } });
    let (s, v) = apply_as(&svc, &t3, &apply, &env, options).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v["runs"],
        json!(["appointments", "contacts", "touchpoints"])
    );
    wait_for_first_sync(&env, "t3", &["appointments", "contacts", "touchpoints"]).await;
    let exact = matches_acme(&env, "t3", "after activation").await;
    assert!(exact.events > 0 && exact.touchpoints > 0, "{exact:?}");
    let (_, secrets) = svc
        .call(Some(&t3), "GET", "/v1/tenants/t3/secrets", None)
        .await;
    assert_eq!(secrets, json!(["vendor_client_secret"]));
    // The platform's backend was told.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !told
        .lock()
        .unwrap()
        .iter()
        .any(|e| e["event"] == "activated")
    {
        assert!(
            Instant::now() < deadline,
            "no activation event: {:?}",
            told.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let told = told.lock().unwrap().clone();
    let activated = told.iter().find(|e| e["event"] == "activated").unwrap();
    assert_eq!(activated["tenant"], "t3", "{activated}");
    assert_eq!(
        activated["detail"]["integration"], INTEGRATION,
        "{activated}"
    );

    // With a token cached for the right secret, a wrong one still fails:
    // the cache is per secret.
    let (ok, why) = connects("wrong").await;
    assert!(!ok, "{why}");

    // An operator's deactivation holds against the tenant.
    let (s, _) = svc
        .operator("POST", "/v1/tenants/t3/deactivate", None)
        .await;
    assert_eq!(s, 200);
    let (s, v) = apply_as(&svc, &t3, &apply, &env, json!({})).await;
    assert_eq!(s, 403, "{v}");
    svc.stop().await;
}
