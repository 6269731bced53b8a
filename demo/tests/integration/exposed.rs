//! `weft serve` facing the internet, tried as an attacker with a tenant
//! token would (issue 18): what a tenant writes cannot reach the operator's
//! environment, secrets file, limits, activation or alert channel; tokens
//! die with their tenant and expire; webhook secrets are checked at the
//! door; a tenant sees nothing of another tenant, on every route of the
//! OpenAPI document.

use crate::support::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use weft_demo::{DemoEnv, TenantSetup};

async fn two_tenants() -> (DemoEnv, Service) {
    let env = DemoEnv::start(acme(), vec![TenantSetup::new("t1"), TenantSetup::new("t2")])
        .await
        .unwrap();
    let svc = Service::start(&env).await;
    (env, svc)
}

/// [`two_tenants`] and a token of `t1`'s.
async fn two_tenants_and_t1_token() -> (DemoEnv, Service, String) {
    let (env, svc) = two_tenants().await;
    let (t1, _) = mint(&svc, "t1", json!({})).await;
    (env, svc, t1)
}

/// Mints a token for `tenant` (with `extra` fields in the request).
async fn mint(svc: &Service, tenant: &str, extra: Value) -> (String, String) {
    let mut body = json!({ "name": format!("{tenant} admin"), "tenant": tenant });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    let v = svc.mint(body).await;
    (
        v["token"].as_str().unwrap().to_owned(),
        v["id"].as_str().unwrap().to_owned(),
    )
}

async fn config_of(svc: &Service, tenant: &str) -> Value {
    let (s, v) = svc
        .call(
            Some(OPERATOR),
            "GET",
            &format!("/v1/tenants/{tenant}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Issue 18, item 1: a tenant `PUT` naming `{ env = "WEFT_ADMIN_TOKEN" }`
/// (or a key of the operator's secrets file) in a credential for its own
/// server was accepted, and the next run sent the operator's token there.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_cannot_name_the_operators_environment_or_secrets_file() {
    let (env, svc, t1) = two_tenants_and_t1_token().await;
    let before = config_of(&svc, "t1").await;
    let evil = "http://127.0.0.1:9";
    for (auth, field) in [
        (
            json!({ "type": "bearer", "token": { "env": "WEFT_ADMIN_TOKEN" } }),
            "env",
        ),
        (
            json!({ "type": "bearer", "token": { "secret": "acme_client_secret" } }),
            "secret",
        ),
        (
            json!({ "type": "oauth2_client_credentials", "token_url": format!("{evil}/token"),
                    "client_id": "x", "client_secret": { "env": "WEFT_SECRET_KEY" } }),
            "env",
        ),
    ] {
        let mut t = before.clone();
        t["flows"]["appointments"]["destination"]["http"]["allow"] = json!([evil]);
        t["flows"]["appointments"]["destination"]["http"]["credentials"] =
            json!([{ "origin": evil, "auth": auth }]);
        let (s, v) = svc.call(Some(&t1), "PUT", "/v1/tenants/t1", Some(t)).await;
        assert_eq!(s, 403, "{field}: {v}");
        let why = v["error"].as_str().unwrap();
        assert!(
            why.contains("flows.appointments.destination.http.credentials[0]")
                && why.contains("sealed"),
            "{why}"
        );
    }
    // The operator's own credential, moved to the tenant's server, is new.
    let mut t = before.clone();
    t["flows"]["appointments"]["source"]["http"]["credentials"][0]["origin"] = json!(evil);
    let (s, v) = svc.call(Some(&t1), "PUT", "/v1/tenants/t1", Some(t)).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(config_of(&svc, "t1").await, before, "nothing changed");
    // Its own sealed secret it may name, and it resolves to its own value.
    let (s, _) = svc
        .call(
            Some(&t1),
            "PUT",
            "/v1/tenants/t1/secrets/mine",
            Some(json!({ "value": "t1-own-value" })),
        )
        .await;
    assert_eq!(s, 204);
    let mut t = before.clone();
    t["flows"]["appointments"]["destination"]["http"]["credentials"] = json!([{
        "origin": evil,
        "auth": { "type": "bearer", "token": { "sealed": "mine" } }
    }]);
    let (s, v) = svc.call(Some(&t1), "PUT", "/v1/tenants/t1", Some(t)).await;
    assert_eq!(s, 200, "{v}");
    // Unchanged, the operator's credentials stay as written (a tenant may
    // send back what it read).
    let (s, v) = svc
        .call(Some(&t1), "PUT", "/v1/tenants/t1", Some(before.clone()))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(config_of(&svc, "t1").await, before);
    drop(env);
    svc.stop().await;
}

/// Issue 18, items 2 and 4: a tenant set `alert_url` to any address (the
/// alert sender then posted to it as a private host), and a tenant `PUT`
/// without `active` reactivated a tenant the operator had deactivated.
#[tokio::test(flavor = "multi_thread")]
async fn active_alert_targets_rates_and_retries_stay_the_operators() {
    let (_env, svc, t1) = two_tenants_and_t1_token().await;
    let (s, _) = svc
        .call(Some(OPERATOR), "POST", "/v1/tenants/t1/deactivate", None)
        .await;
    assert_eq!(s, 200);
    let mut t = config_of(&svc, "t1").await;
    assert_eq!(t["active"], json!(false));
    t.as_object_mut().unwrap().remove("active");
    t["name"] = json!("renamed by t1");
    let (s, v) = svc
        .call(Some(&t1), "PUT", "/v1/tenants/t1", Some(t.clone()))
        .await;
    assert_eq!(s, 200, "{v}");
    let now = config_of(&svc, "t1").await;
    assert_eq!(now["active"], json!(false), "still inactive: {now}");
    assert_eq!(now["name"], json!("renamed by t1"));
    for (field, value) in [
        ("/active", json!(true)),
        (
            "/alert_url",
            json!("http://169.254.169.254/latest/meta-data"),
        ),
        (
            "/flows/appointments/destination/http/rate",
            json!({ "per_second": 10000.0, "burst": 10000 }),
        ),
        (
            "/flows/appointments/retry",
            json!({ "max_attempts": 100000, "base_delay_ms": 1, "max_delay_ms": 1 }),
        ),
    ] {
        let mut t = now.clone();
        let (parent, key) = field.rsplit_once('/').unwrap();
        t.pointer_mut(if parent.is_empty() { "" } else { parent })
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.to_owned(), value);
        let (s, v) = svc.call(Some(&t1), "PUT", "/v1/tenants/t1", Some(t)).await;
        assert_eq!(s, 403, "{field}: {v}");
    }
    assert_eq!(config_of(&svc, "t1").await, now);
    svc.stop().await;
}

/// Issue 18, item 3: a token minted for t3 still worked after t3 was
/// deleted and created again. Also: expiry, and a tenant listing and
/// revoking its own tokens (and no other tenant's).
#[tokio::test(flavor = "multi_thread")]
async fn tokens_die_with_their_tenant_and_expire() {
    let (_env, svc) = two_tenants().await;
    let t2_config = config_of(&svc, "t2").await;
    let (s, v) = svc
        .call(
            Some(OPERATOR),
            "PUT",
            "/v1/tenants/t3",
            Some(t2_config.clone()),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (t3, _) = mint(&svc, "t3", json!({})).await;
    assert_eq!(
        svc.call(Some(&t3), "GET", "/v1/tenants/t3", None).await.0,
        200
    );
    let (s, _) = svc
        .call(Some(OPERATOR), "DELETE", "/v1/tenants/t3", None)
        .await;
    assert_eq!(s, 204);
    let (s, v) = svc
        .call(Some(OPERATOR), "PUT", "/v1/tenants/t3", Some(t2_config))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        svc.call(Some(&t3), "GET", "/v1/tenants/t3", None).await.0,
        401,
        "the old token is dead"
    );
    let (_, tokens) = svc
        .call(Some(OPERATOR), "GET", "/v1/tokens?tenant=t3", None)
        .await;
    assert_eq!(tokens, json!([]), "deleted with the tenant");

    // Expiry.
    let (short, _) = mint(&svc, "t1", json!({ "expires_in": "2s" })).await;
    assert_eq!(
        svc.call(Some(&short), "GET", "/v1/tenants/t1", None)
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, v) = svc.call(Some(&short), "GET", "/v1/tenants/t1", None).await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = svc
        .call(
            Some(OPERATOR),
            "POST",
            "/v1/tokens",
            Some(json!({ "name": "x", "tenant": "t1", "expires_in": "soon" })),
        )
        .await;
    assert_eq!(s, 422, "{v}");

    // A tenant lists and revokes its own tokens, and sees no other's.
    let (t1, t1_id) = mint(&svc, "t1", json!({})).await;
    let (_, t2_id) = mint(&svc, "t2", json!({})).await;
    let (s, list) = svc.call(Some(&t1), "GET", "/v1/tokens", None).await;
    assert_eq!(s, 200, "{list}");
    let list = list.as_array().unwrap();
    assert!(list.iter().all(|t| t["tenant"] == "t1"), "{list:?}");
    assert!(list.iter().any(|t| t["id"] == json!(t1_id)));
    assert!(
        list.iter().all(|t| t.get("token").is_none()),
        "never shown again"
    );
    assert_eq!(
        svc.call(Some(&t1), "DELETE", &format!("/v1/tokens/{t2_id}"), None)
            .await
            .0,
        404
    );
    assert_eq!(
        svc.call(Some(&t1), "DELETE", &format!("/v1/tokens/{t1_id}"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        svc.call(Some(&t1), "GET", "/v1/tenants/t1", None).await.0,
        401
    );
    svc.stop().await;
}

/// Issue 18, item 5: an empty webhook secret was stored (and a delivery
/// signed under the empty key then got 202); a secret that is not base64
/// was stored too, and every delivery was then refused.
#[tokio::test(flavor = "multi_thread")]
async fn webhook_secrets_are_checked_at_the_door() {
    let (_env, svc, t1) = two_tenants_and_t1_token().await;
    let put = |name: &'static str, value: &'static str| {
        let (svc, t1) = (&svc, t1.clone());
        async move {
            svc.call(
                Some(&t1),
                "PUT",
                &format!("/v1/tenants/t1/secrets/{name}"),
                Some(json!({ "value": value })),
            )
            .await
        }
    };
    assert_eq!(put("any", "").await.0, 422, "no empty secret");
    // A secret written before the config names it as a webhook secret is
    // checked when the config is written.
    assert_eq!(put("hook", "not base64 at all").await.0, 204);
    let mut t = config_of(&svc, "t1").await;
    t["flows"]["appointments"]["source"]["webhook"] = json!({ "secrets": [{ "sealed": "hook" }] });
    let (s, v) = svc
        .call(Some(&t1), "PUT", "/v1/tenants/t1", Some(t.clone()))
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(
        put("hook", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .await
            .0,
        204
    );
    let (s, v) = svc.call(Some(&t1), "PUT", "/v1/tenants/t1", Some(t)).await;
    assert_eq!(s, 200, "{v}");
    // Now that it signs webhooks, it is checked as it is written.
    for bad in ["", "whsec_", "whsec_not*base64", "whsec_c2hvcnQ="] {
        let (s, v) = put("hook", bad).await;
        assert_eq!(s, 422, "{bad:?}: {v}");
    }
    // A delivery signed under the empty key is refused.
    let ts = now_secs();
    let body = "{}";
    let forged = sign("", "evt_x", ts, body);
    assert_eq!(
        hook(&svc, "/hooks/t1/appointments", "evt_x", ts, &forged, body).await,
        401
    );
    svc.stop().await;
}

/// Issue 18, item 7: a tenant token listed other tenants' flows in
/// `GET /v1/connectors` (`used_by`) and read every tenant's series from
/// `GET /metrics`.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_sees_no_other_tenant_in_connectors_or_metrics() {
    let (_env, svc, t1) = two_tenants_and_t1_token().await;
    let (s, list) = svc.call(Some(&t1), "GET", "/v1/connectors", None).await;
    assert_eq!(s, 200);
    let used: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["used_by"].as_array().unwrap())
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(!used.is_empty());
    assert!(used.iter().all(|u| u.starts_with("t1/")), "{used:?}");
    let (_, all) = svc
        .call(Some(OPERATOR), "GET", "/v1/connectors", None)
        .await;
    assert!(all.to_string().contains("t2/"), "the operator sees all");
    assert_eq!(svc.call(Some(&t1), "GET", "/metrics", None).await.0, 403);
    assert_eq!(
        svc.call(Some(OPERATOR), "GET", "/metrics", None).await.0,
        200
    );
    svc.stop().await;
}

/// What a tenant may do on a route of the API, with a token for t1 on t2's
/// resources.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// t2's resource: 404, nothing changes.
    NotFound,
    /// Operators only: 403, nothing changes.
    Forbidden,
    /// Not for any session token (an activation link's exchange): 401.
    Unauthorized,
    /// A listing or view that answers 200 with the caller's own things
    /// only: the body names no t2 resource.
    OwnOnly,
    /// Open to anyone (no tenant data).
    Open,
}

/// The isolation rule of every route of the API. A route of the OpenAPI
/// document missing here fails the test: a new route needs a decision.
fn rules() -> BTreeMap<(&'static str, &'static str), Rule> {
    use Rule::*;
    [
        (("GET", "/v1/tenants"), OwnOnly),
        (("GET", "/v1/tenants/{tenant}"), NotFound),
        (("PUT", "/v1/tenants/{tenant}"), NotFound),
        (("DELETE", "/v1/tenants/{tenant}"), NotFound),
        (("POST", "/v1/tenants/{tenant}/activate"), NotFound),
        (("POST", "/v1/tenants/{tenant}/deactivate"), NotFound),
        (("GET", "/v1/tenants/{tenant}/secrets"), NotFound),
        (("PUT", "/v1/tenants/{tenant}/secrets/{name}"), NotFound),
        (("DELETE", "/v1/tenants/{tenant}/secrets/{name}"), NotFound),
        (("GET", "/v1/tenants/{tenant}/webhooks"), NotFound),
        (("GET", "/v1/tenants/{tenant}/flows/{flow}/state"), NotFound),
        (
            ("POST", "/v1/tenants/{tenant}/flows/{flow}/reset"),
            NotFound,
        ),
        (
            ("POST", "/v1/tenants/{tenant}/flows/{flow}/pause"),
            NotFound,
        ),
        (
            ("POST", "/v1/tenants/{tenant}/flows/{flow}/resume"),
            NotFound,
        ),
        (("POST", "/v1/tenants/{tenant}/flows/{flow}/runs"), NotFound),
        (
            ("GET", "/v1/tenants/{tenant}/flows/{flow}/webhook"),
            NotFound,
        ),
        (
            ("POST", "/v1/tenants/{tenant}/flows/{flow}/webhook"),
            NotFound,
        ),
        (
            ("DELETE", "/v1/tenants/{tenant}/flows/{flow}/webhook"),
            NotFound,
        ),
        (
            ("POST", "/v1/tenants/{tenant}/flows/{flow}/webhook/rotate"),
            NotFound,
        ),
        (("GET", "/v1/runs"), OwnOnly),
        (("GET", "/v1/runs/{id}"), NotFound),
        (("GET", "/v1/dead-letters"), OwnOnly),
        (("POST", "/v1/dead-letters/replay"), OwnOnly),
        (("GET", "/v1/dead-letters/{id}"), NotFound),
        (("DELETE", "/v1/dead-letters/{id}"), NotFound),
        (("POST", "/v1/dead-letters/{id}/replay"), NotFound),
        (("GET", "/v1/connectors"), OwnOnly),
        (("POST", "/v1/connectors"), Forbidden),
        (("GET", "/v1/tokens"), OwnOnly),
        (("POST", "/v1/tokens"), Forbidden),
        (("DELETE", "/v1/tokens/{id}"), NotFound),
        (("GET", "/v1/config/export"), Forbidden),
        (("GET", "/v1/whoami"), OwnOnly),
        (("GET", "/v1/integrations"), OwnOnly),
        (("POST", "/v1/tenants/{tenant}/integrations/{id}"), NotFound),
        (
            ("POST", "/v1/tenants/{tenant}/integrations/{id}/test"),
            NotFound,
        ),
        // Asked for t2's stream (the caller's own never ends).
        (("GET", "/v1/events"), NotFound),
        (("POST", "/v1/tokens/exchange"), Unauthorized),
        (("POST", "/v1/connectors/{name}/pin"), Forbidden),
        (("GET", "/metrics"), Forbidden),
        (("GET", "/healthz"), Open),
        (("GET", "/readyz"), Open),
        (("POST", "/hooks/{tenant}/{flow}"), Open),
    ]
    .into_iter()
    .collect()
}

/// Everything the operator can read of t2, to compare before and after.
async fn t2_snapshot(svc: &Service) -> Vec<Value> {
    let mut out = vec![];
    for path in [
        "/v1/tenants/t2",
        "/v1/tenants/t2/secrets",
        "/v1/tenants/t2/flows/appointments/state",
        "/v1/dead-letters?tenant=t2",
        "/v1/tokens?tenant=t2",
    ] {
        let (s, v) = svc.call(Some(OPERATOR), "GET", path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        out.push(v);
    }
    let (_, runs) = svc
        .call(Some(OPERATOR), "GET", "/v1/runs?tenant=t2&limit=1000", None)
        .await;
    // Run records of t2 that ended (a run t1 could start would add one).
    out.push(json!(runs.as_array().unwrap().len()));
    out
}

/// Issue 18: every route of the OpenAPI document, every method, with a
/// tenant token for t1 on t2's resources: 404 (or 403 for what only an
/// operator may do) and no change to t2; listings show t1's things only.
#[tokio::test(flavor = "multi_thread")]
async fn every_route_keeps_tenants_apart() {
    let (env, svc) = two_tenants().await;
    env.sync("t1").await.unwrap();
    env.sync("t2").await.unwrap();
    let (t1, _) = mint(&svc, "t1", json!({})).await;
    let (_, t2_token) = mint(&svc, "t2", json!({})).await;
    let (s, _) = svc
        .call(
            Some(OPERATOR),
            "PUT",
            "/v1/tenants/t2/secrets/crm",
            Some(json!({ "value": "t2-secret" })),
        )
        .await;
    assert_eq!(s, 204);
    let t2_run = env.host.state.runs(Some("t2"), None, 1).unwrap()[0]
        .id
        .clone();
    let dead = env.host.state.dead_letters(Some("t2"), None).unwrap();
    assert!(!dead.is_empty(), "the demo data has dead letters");
    let t2_dead = dead[0].id.clone();
    let t2_names = [
        "t2".to_string(),
        t2_run.clone(),
        t2_dead.clone(),
        t2_token.clone(),
    ];
    let (s, doc) = svc.call(Some(OPERATOR), "GET", "/openapi.json", None).await;
    assert_eq!(s, 200);
    let rules = rules();
    let before = t2_snapshot(&svc).await;
    let mut documented = std::collections::BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            if !["GET", "PUT", "POST", "DELETE", "PATCH"].contains(&method.as_str()) {
                continue;
            }
            let rule = *rules
                .get(&(method.as_str(), path.as_str()))
                .unwrap_or_else(|| panic!("{method} {path} has no isolation rule"));
            documented.insert((method.clone(), path.clone()));
            let id = if path.starts_with("/v1/runs") {
                &t2_run
            } else if path.starts_with("/v1/tokens") {
                &t2_token
            } else {
                &t2_dead
            };
            let url = path
                .replace("{tenant}", "t2")
                .replace("{flow}", "appointments")
                .replace("{name}", "crm")
                .replace("{id}", id);
            let url = if rule == Rule::OwnOnly && !url.contains('?') && method == "POST" {
                format!("{url}?tenant=t1")
            } else if path == "/v1/events" {
                format!("{url}?tenant=t2")
            } else {
                url
            };
            let body = match (method.as_str(), path.as_str()) {
                ("PUT", "/v1/tenants/{tenant}") => Some(config_of(&svc, "t1").await),
                ("PUT", _) => Some(json!({ "value": "overwritten-by-t1-token-0123456789" })),
                ("POST", "/v1/tokens") => Some(json!({ "name": "x", "tenant": "t2" })),
                ("POST", _) => Some(json!({})),
                _ => None,
            };
            let (status, answer) = svc.call(Some(&t1), &method, &url, body).await;
            match rule {
                Rule::NotFound => assert_eq!(status, 404, "{method} {url}: {answer}"),
                Rule::Forbidden => assert_eq!(status, 403, "{method} {url}: {answer}"),
                Rule::Unauthorized => assert_eq!(status, 401, "{method} {url}: {answer}"),
                Rule::OwnOnly => {
                    assert!(status < 300, "{method} {url}: {status} {answer}");
                    let text = answer.to_string();
                    for name in &t2_names {
                        assert!(
                            !text.contains(&format!("\"{name}\""))
                                && !text.contains(&format!("{name}/")),
                            "{method} {url} shows t2's {name}: {text}"
                        );
                    }
                }
                Rule::Open => {}
            }
        }
    }
    let ruled: std::collections::BTreeSet<(String, String)> = rules
        .keys()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, ruled,
        "the rules and the document name the same operations"
    );
    assert_eq!(t2_snapshot(&svc).await, before, "t2 unchanged");
    svc.stop().await;
}
