//! `weft serve` end to end: Acme's signed webhooks into a running service
//! and on to Radicale without a poll; forged, replayed, oversized, repeated
//! and unknown deliveries; the admin API's tokens, tenants and secrets.

use crate::support::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use weft::state::{RunOutcome, RunRecord};
use weft_demo::DemoEnv;

/// Registers an Acme webhook for t1's appointments flow at the service and
/// gives the flow its secret over the admin API; returns the secret.
pub(crate) async fn connect_webhook(env: &DemoEnv, svc: &Service) -> String {
    let reg = weft_demo::http(
        "POST",
        &format!("{}/webhooks", env.acme.base_url()),
        &[("x-acme-api-key", "acme-demo-key")],
        Some((
            "application/json",
            json!({
                "url": format!("{}/hooks/t1/appointments", svc.url),
                "events": ["appointment.created", "appointment.updated", "appointment.deleted"]
            })
            .to_string(),
        )),
    )
    .await
    .unwrap();
    let secret = reg.json()["secret"].as_str().unwrap().to_owned();
    svc.put_secret("t1", "acme_webhook", &secret).await;
    let mut tenant = svc.tenant("t1").await;
    tenant["flows"]["appointments"]["source"]["webhook"] =
        json!({ "secrets": [{ "secret": "acme_webhook" }] });
    let (s, v) = svc.put_tenant("t1", tenant).await;
    assert_eq!(s, 200, "{v}");
    secret
}

/// Tenant `t1` after its first sync, with `weft serve` running and Acme's
/// webhook pointed at it.
async fn synced_with_webhooks() -> (DemoEnv, Service) {
    let env = demo(&["t1"]).await;
    sync_ok(&env, "t1").await;
    let (svc, _) = serve_with_webhook(&env).await;
    (env, svc)
}

/// The latest 50 runs of `t1`'s flow `appointments`, newest first.
fn appointment_runs(env: &DemoEnv) -> Vec<RunRecord> {
    env.host
        .state
        .runs(Some("t1"), Some("appointments"), 50)
        .unwrap()
}

/// `weft serve` over `env` with Acme's webhook for `t1` pointed at it: the
/// service and the webhook's secret.
pub(crate) async fn serve_with_webhook(env: &DemoEnv) -> (Service, String) {
    let svc = Service::start(env).await;
    let secret = connect_webhook(env, &svc).await;
    (svc, secret)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acme_change_reaches_radicale_by_webhook_without_a_poll() {
    let (env, svc) = synced_with_webhooks().await;
    let arrived = appointment_arrives(&env, "Booked by webhook").await;
    eprintln!("created in Acme → in Radicale: {arrived:?}");
    // It came by webhook: the run that carried it was a webhook run, and no
    // scheduled or manual run of the flow happened since the first sync.
    // (The event can be in the calendar before the run has recorded its
    // end: wait for that.)
    let mut runs = vec![];
    for _ in 0..200 {
        runs = appointment_runs(&env);
        if runs.iter().all(|r| r.outcome != RunOutcome::Running) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        runs.iter()
            .any(|r| r.trigger == "webhook" && r.emitted >= 1),
        "{runs:?}"
    );
    let since_sync: Vec<&str> = runs
        .iter()
        .take_while(|r| r.trigger != "manual")
        .map(|r| r.trigger.as_str())
        .collect();
    assert!(since_sync.iter().all(|t| *t == "webhook"), "{since_sync:?}");
    svc.stop().await;
}

/// A paused flow's webhook deliveries are accepted and kept, not processed;
/// resuming the flow delivers them.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_flow_keeps_its_webhooks_until_resumed() {
    let (env, svc) = synced_with_webhooks().await;
    let (s, v) = svc
        .operator("POST", "/v1/tenants/t1/flows/appointments/pause", None)
        .await;
    assert_eq!(s, 200, "{v}");
    let webhook_runs = || {
        appointment_runs(&env)
            .into_iter()
            .filter(|r| r.trigger == "webhook")
            .count()
    };
    let (email, uid) = create_appointment(&env, "While paused").await;
    // Acme's delivery is accepted into the inbox...
    let t = Instant::now();
    while weft::metrics::metrics().webhook_inbox.get() == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no delivery reached the inbox"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...and stays there: a second (twenty times the processor's linger)
    // without a webhook run or the event.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(webhook_runs(), 0);
    assert!(weft::metrics::metrics().webhook_inbox.get() >= 1);
    assert!(!env.calendar("t1", &email).await.unwrap().contains_key(&uid));
    let (s, v) = svc
        .operator("POST", "/v1/tenants/t1/flows/appointments/resume", None)
        .await;
    assert_eq!(s, 200, "{v}");
    let late = "resuming did not deliver the kept webhook";
    event_arrives(&env, &email, &uid, Duration::from_secs(20), late).await;
    assert!(webhook_runs() >= 1);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_and_repeated_deliveries_are_answered_as_standard_webhooks_say() {
    let env = demo(&["t1"]).await;
    let (svc, secret) = serve_with_webhook(&env).await;
    let apt = env.acme_get("/appointments?limit=1").await.unwrap()["data"][0].clone();
    let body = json!({ "id": "evt_test_1", "type": "appointment.updated", "occurred_at": apt["updated_at"], "data": { "object": apt } }).to_string();
    let path = "/hooks/t1/appointments";
    let ts = now_secs();
    let good = sign(&secret, "evt_test_1", ts, &body);
    assert_eq!(hook(&svc, path, "evt_test_1", ts, &good, &body).await, 202);
    // Acme's retry: same ID and body, fresh timestamp: acknowledged, not
    // processed again.
    let ts2 = ts + 1;
    let again = sign(&secret, "evt_test_1", ts2, &body);
    assert_eq!(
        hook(&svc, path, "evt_test_1", ts2, &again, &body).await,
        200
    );
    // Forged: signed with another secret.
    let forged = sign(
        "whsec_Zm9yZ2VkLWZvcmdlZC1mb3JnZWQtZm9yZ2VkLWZvcmdlZA==",
        "evt_test_2",
        ts,
        &body,
    );
    assert_eq!(
        hook(&svc, path, "evt_test_2", ts, &forged, &body).await,
        401
    );
    // Replayed: a correct signature over a timestamp ten minutes old.
    let old = ts - 600;
    let replayed = sign(&secret, "evt_test_3", old, &body);
    assert_eq!(
        hook(&svc, path, "evt_test_3", old, &replayed, &body).await,
        401
    );
    // Oversized.
    let big = "x".repeat((1 << 20) + 1);
    let sig = sign(&secret, "evt_test_4", ts, &big);
    assert_eq!(hook(&svc, path, "evt_test_4", ts, &sig, &big).await, 413);
    // Unknown tenant, unknown flow, a flow that takes no webhooks.
    for p in [
        "/hooks/nobody/appointments",
        "/hooks/t1/nothing",
        "/hooks/t1/touchpoints",
    ] {
        assert_eq!(
            hook(&svc, p, "evt_test_5", ts, &good, &body).await,
            404,
            "{p}"
        );
    }
    // The accepted one is processed once.
    let mut webhook_runs = vec![];
    for _ in 0..200 {
        webhook_runs = appointment_runs(&env)
            .into_iter()
            .filter(|r| r.trigger == "webhook")
            .collect();
        // Done: the run has ended and the delivery has left the inbox.
        if webhook_runs
            .iter()
            .any(|r| r.outcome != RunOutcome::Running)
            && env.host.state.inbox_pending().unwrap().is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(webhook_runs.len(), 1, "{webhook_runs:?}");
    assert_eq!(webhook_runs[0].outcome, RunOutcome::Succeeded);
    assert_eq!(webhook_runs[0].fetched, 1, "{webhook_runs:?}");
    assert!(env.host.state.inbox_pending().unwrap().is_empty());
    // Metrics count each case.
    let (s, text) = svc.operator("GET", "/metrics", None).await;
    assert_eq!(s, 200);
    let text = text.as_str().unwrap_or_default().to_owned();
    for result in [
        "accepted",
        "duplicate",
        "bad_signature",
        "stale_timestamp",
        "too_large",
        "unknown",
    ] {
        assert!(
            text.contains(&format!("result=\"{result}\"")),
            "{result} missing from /metrics"
        );
    }
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_scope_tenants_and_secrets_stay_sealed() {
    let env = demo(&["t1", "t2"]).await;
    let svc = Service::start(&env).await;
    // Health is open; everything else needs a token.
    assert_eq!(svc.call(None, "GET", "/healthz", None).await.0, 200);
    assert_eq!(svc.call(None, "GET", "/v1/tenants", None).await.0, 401);
    assert_eq!(
        svc.call(Some("wrong"), "GET", "/v1/tenants", None).await.0,
        401
    );
    assert_eq!(svc.call(None, "GET", "/metrics", None).await.0, 401);
    let minted = svc
        .mint(json!({ "name": "t1's console", "tenant": "t1" }))
        .await;
    let t1 = minted["token"].as_str().unwrap().to_owned();
    // t1's token sees t1 only; t2 is "not found", not "forbidden".
    let (s, list) = svc.call(Some(&t1), "GET", "/v1/tenants", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        list.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<String>>(),
        vec!["t1".to_string()]
    );
    for (method, path, body, status) in [
        ("GET", "/v1/tenants/t2", None, 404),
        ("GET", "/v1/runs?tenant=t2", None, 404),
        ("GET", "/v1/tenants/t2/flows/appointments/state", None, 404),
        (
            "PUT",
            "/v1/tenants/t2/secrets/x",
            Some(json!({ "value": "v" })),
            404,
        ),
        // Operator-only endpoints.
        (
            "POST",
            "/v1/tokens",
            Some(json!({ "name": "more", "tenant": "t1" })),
            403,
        ),
        ("DELETE", "/v1/tenants/t1", None, 403),
    ] {
        let (s, v) = svc.call(Some(&t1), method, path, body).await;
        assert_eq!(s, status, "{method} {path}: {v}");
    }
    // Runs of t2 never show up for t1.
    env.sync("t2").await.unwrap();
    let (_, runs) = svc.call(Some(&t1), "GET", "/v1/runs", None).await;
    assert!(runs.as_array().unwrap().iter().all(|r| r["tenant"] == "t1"));

    // A secret is write-only and sealed at rest.
    let value = "s3cr3t-value-that-must-not-leak-4821";
    let (s, _) = svc
        .call(
            Some(&t1),
            "PUT",
            "/v1/tenants/t1/secrets/crm_key",
            Some(json!({ "value": value })),
        )
        .await;
    assert_eq!(s, 204);
    let (_, names) = svc
        .call(Some(&t1), "GET", "/v1/tenants/t1/secrets", None)
        .await;
    assert_eq!(names, json!(["crm_key"]));
    for path in [
        "/v1/tenants/t1",
        "/v1/tenants/t1/secrets",
        "/v1/config/export",
    ] {
        let (_, v) = svc.operator("GET", path, None).await;
        assert!(!v.to_string().contains(value), "{path} shows the secret");
    }
    env.host.state.flush().unwrap();
    let token_hex = t1.clone();
    for entry in walk(env.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        for needle in [value.as_bytes(), token_hex.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds a secret or token in clear",
                entry.display()
            );
        }
    }
    // A config with an invalid stage is refused, naming the field.
    let mut tenant = svc.tenant("t1").await;
    tenant["flows"]["appointments"]["destination"]["config"] = json!({ "collection_url": 42 });
    let (s, v) = svc.put_tenant("t1", tenant).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("flows.appointments.destination.config"),
        "{v}"
    );
    svc.stop().await;
}

/// Acme's webhooks as Acme lists them.
async fn acme_webhooks(env: &DemoEnv) -> Vec<Value> {
    webhooks_at(&env.acme).await
}

/// The webhooks an Acme lists.
async fn webhooks_at(acme: &weft_sandbox::acme::AcmeSandbox) -> Vec<Value> {
    let a = weft_demo::http(
        "GET",
        &format!("{}/webhooks", acme.base_url()),
        &[("x-acme-api-key", "acme-demo-key")],
        None,
    )
    .await
    .unwrap();
    a.json()["data"].as_array().cloned().unwrap_or_default()
}

/// Creates an appointment titled `title` owned by the first user; returns
/// that user's email and the event's UID.
pub(crate) async fn create_appointment(env: &DemoEnv, title: &str) -> (String, String) {
    let email = env.user_emails().await.unwrap()[0].clone();
    let users = env.acme_get("/users").await.unwrap()["data"].clone();
    let owner = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"].as_str().unwrap().eq_ignore_ascii_case(&email))
        .unwrap()["id"]
        .clone();
    let contact = env.acme_get("/contacts?limit=200").await.unwrap()["data"][0]["id"].clone();
    let apt = env
        .acme_control(
            "POST",
            "/appointments",
            json!({
                "owner_id": owner, "contact_id": contact, "title": title,
                "starts_at": "2026-12-04T10:00:00Z", "ends_at": "2026-12-04T10:30:00Z",
                "timezone": "UTC",
            }),
        )
        .await
        .unwrap();
    let uid = format!("acme-{}@t1", apt["id"].as_str().unwrap());
    (email, uid)
}

/// Creates an appointment owned by the first user and waits until its event
/// is in that user's calendar.
pub(crate) async fn appointment_arrives(env: &DemoEnv, title: &str) -> Duration {
    let t = Instant::now();
    let (email, uid) = create_appointment(env, title).await;
    let late = format!("{title:?} did not reach the calendar by webhook");
    event_arrives(env, &email, &uid, Duration::from_secs(20), &late).await;
    t.elapsed()
}

/// Waits until the event `uid` is in the calendar of `email` (tenant
/// `t1`); panics with `late` if it is not there `within`.
pub(crate) async fn event_arrives(
    env: &DemoEnv,
    email: &str,
    uid: &str,
    within: Duration,
    late: &str,
) {
    let t = Instant::now();
    while !env.calendar("t1", email).await.unwrap().contains_key(uid) {
        assert!(t.elapsed() < within, "{late}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The tenant asks for webhooks (`webhook.register`): weft subscribes at
/// Acme through acme-crm's `weft:webhooks/registration` export, keeps the
/// secret sealed (no answer shows it), rotates it on request (deliveries
/// signed with the new one keep coming), and deactivation deletes the
/// subscription at Acme.
#[tokio::test(flavor = "multi_thread")]
async fn activation_subscribes_at_acme_and_deactivation_unsubscribes() {
    let env = demo(&["t1"]).await;
    sync_ok(&env, "t1").await;
    let svc = Service::start(&env).await;
    assert!(acme_webhooks(&env).await.is_empty());
    let mut tenant = svc.tenant("t1").await;
    tenant["flows"]["appointments"]["source"]["webhook"] = json!({ "register": true });
    let (s, answer) = svc.put_tenant("t1", tenant).await;
    assert_eq!(s, 200, "{answer}");
    let hook_url = format!("{}/hooks/t1/appointments", svc.url);
    assert_eq!(
        answer["webhooks"]["appointments"]["url"],
        json!(hook_url),
        "{answer}"
    );
    let at_acme = acme_webhooks(&env).await;
    assert_eq!(at_acme.len(), 1, "{at_acme:?}");
    assert_eq!(at_acme[0]["url"], json!(hook_url));
    let events: Vec<&str> = at_acme[0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(events.contains(&"appointment.updated") && events.contains(&"contact.updated"));
    assert!(
        !events.iter().any(|e| e.starts_with("activity.")),
        "{events:?}"
    );
    eprintln!(
        "by webhook: {:?}",
        appointment_arrives(&env, "After subscribing").await
    );

    let (s, sub) = svc
        .operator("GET", "/v1/tenants/t1/flows/appointments/webhook", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(sub["id"], at_acme[0]["id"]);
    assert!(!sub.to_string().contains("whsec_"), "{sub}");

    let (s, rotated) = svc
        .operator(
            "POST",
            "/v1/tenants/t1/flows/appointments/webhook/rotate",
            None,
        )
        .await;
    assert_eq!(s, 200, "{rotated}");
    assert!(!rotated.to_string().contains("whsec_"));
    eprintln!(
        "after rotation: {:?}",
        appointment_arrives(&env, "After rotating").await
    );
    // No API answer and no file of weft's in clear holds a signing secret.
    for path in [
        "/v1/tenants/t1",
        "/v1/config/export",
        "/v1/tenants/t1/secrets",
    ] {
        let (_, v) = svc.operator("GET", path, None).await;
        assert!(!v.to_string().contains("whsec_"), "{path}: {v}");
    }
    env.host.state.flush().unwrap();
    for file in walk(&env.dir.path().join("data")) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(6).any(|w| w == b"whsec_"),
            "{} holds a signing secret",
            file.display()
        );
    }

    let (s, v) = svc
        .operator("POST", "/v1/tenants/t1/deactivate", None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(acme_webhooks(&env).await.is_empty(), "unsubscribed at Acme");
    assert_eq!(
        svc.operator("GET", "/v1/tenants/t1/flows/appointments/webhook", None)
            .await
            .0,
        404
    );
    svc.stop().await;
}

/// Issue 19, item 7: a secret written over the API was refused for up to a
/// second (the webhook secrets were cached). Writes through the admin API
/// now forget the cache: the new secret is good for the very next
/// delivery, and the old one no longer is.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_written_is_good_for_the_next_delivery() {
    let env = demo(&["t1"]).await;
    let (svc, old) = serve_with_webhook(&env).await;
    let path = "/hooks/t1/appointments";
    let body = json!({ "id": "evt_ping", "type": "ping", "data": {} }).to_string();
    let ts = now_secs();
    let first = sign(&old, "evt_c1", ts, &body);
    assert_eq!(hook(&svc, path, "evt_c1", ts, &first, &body).await, 202);
    let new = "whsec_bmV3LXNlY3JldC1vZi10aGUtY2FjaGUtdGVzdC0xMjM0";
    svc.put_secret("t1", "acme_webhook", new).await;
    let signed = sign(new, "evt_c2", ts, &body);
    assert_eq!(hook(&svc, path, "evt_c2", ts, &signed, &body).await, 202);
    let stale = sign(&old, "evt_c3", ts, &body);
    assert_eq!(hook(&svc, path, "evt_c3", ts, &stale, &body).await, 401);
    svc.stop().await;
}

/// Issue 19, item 4: a `PUT` with `"active": false` left the subscription
/// at the vendor (which kept delivering to a hook that answers 404); a
/// `PUT` that moved a flow to another Acme account kept the old
/// subscription, so the new account's webhooks never came; and a `DELETE`
/// that could not reach the vendor answered 204 and forgot the
/// subscription. Now subscriptions follow the tenant's config, and one
/// that cannot be deleted at the vendor is said and kept, listed as
/// orphaned.
#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_follow_the_tenants_config() {
    let env = demo(&["t1"]).await;
    let svc = Service::start(&env).await;
    let put = |t: Value| {
        let svc = &svc;
        async move {
            let (s, v) = svc.put_tenant("t1", t).await;
            assert_eq!(s, 200, "{v}");
            v
        }
    };
    let mut t = svc.tenant("t1").await;
    t["flows"]["appointments"]["source"]["webhook"] = json!({ "register": true });
    put(t.clone()).await;
    assert_eq!(acme_webhooks(&env).await.len(), 1);
    // Deactivated by a PUT: unsubscribed.
    let mut off = t.clone();
    off["active"] = json!(false);
    let v = put(off).await;
    assert_eq!(acme_webhooks(&env).await.len(), 0, "{v}");
    put(t.clone()).await;
    assert_eq!(acme_webhooks(&env).await.len(), 1);
    // Moved to another Acme account: unsubscribed there, subscribed here.
    let other = weft_sandbox::acme::AcmeSandbox::start(acme(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let moved: Value = serde_json::from_str(
        &t.to_string()
            .replace(&env.acme.addr().to_string(), &other.addr().to_string()),
    )
    .unwrap();
    let v = put(moved).await;
    assert_eq!(acme_webhooks(&env).await.len(), 0, "{v}");
    assert_eq!(webhooks_at(&other).await.len(), 1, "{v}");
    // The vendor cannot be reached: the delete says so and keeps it listed.
    other.stop().await;
    let (s, v) = svc.operator("DELETE", "/v1/tenants/t1", None).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["webhooks"]["appointments"]["error"].is_string(), "{v}");
    let (s, listed) = svc.operator("GET", "/v1/tenants/t1/webhooks", None).await;
    assert_eq!(s, 200, "{listed}");
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["flow"], "appointments");
    assert!(listed[0]["orphaned"].is_string(), "{listed:?}");
    svc.stop().await;
}

/// Issue 20, item 5: after a flow's destination changed, a record had two
/// identical-looking dead letters (from the old and the new destination),
/// and nothing said which was which. A dead letter names the destination
/// it was going to, and the API says when the flow delivers elsewhere now.
#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_say_where_they_were_going() {
    let env = demo(&["t1"]).await;
    env.sync("t1").await.unwrap();
    let svc = Service::start(&env).await;
    let dead = || {
        let svc = &svc;
        async move {
            let (s, v) = svc
                .operator("GET", "/v1/dead-letters?tenant=t1&flow=appointments", None)
                .await;
            assert_eq!(s, 200, "{v}");
            v.as_array().unwrap().clone()
        }
    };
    let before = dead().await;
    assert!(!before.is_empty(), "the demo data has bad appointments");
    for d in &before {
        assert!(
            d["destination"].as_str().unwrap().starts_with("caldav@"),
            "{d}"
        );
        assert_eq!(d["flow_destination"], "caldav@^1", "{d}");
        assert_eq!(d["destination_changed"], false, "{d}");
    }
    // The flow now delivers to the dashboard.
    let mut t = svc.tenant("t1").await;
    t["flows"]["appointments"]["destination"] = t["flows"]["touchpoints"]["destination"].clone();
    let (s, v) = svc.put_tenant("t1", t).await;
    assert_eq!(s, 200, "{v}");
    for d in dead().await {
        assert!(
            d["destination"].as_str().unwrap().starts_with("caldav@"),
            "{d}"
        );
        assert_eq!(d["flow_destination"], "dashboard@^1", "{d}");
        assert_eq!(d["destination_changed"], true, "{d}");
    }
    svc.stop().await;
}
