//! The eleven "when … then …" statements of `our-app.md`, checked end to end:
//! the real connectors in the weft host, against the Acme and dashboard
//! sandboxes and a real Radicale, reading calendars back over CalDAV.

use crate::support::{acme_with as acme, last_known, matches_acme, sync_ok};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use weft::flow::Trigger;
use weft::state::RunOutcome;
use weft_demo::{DemoEnv, TenantSetup, property, totals};
use weft_sandbox::acme::Faults;

async fn env_with(faults: Faults, tenants: Vec<TenantSetup>) -> DemoEnv {
    DemoEnv::start(acme(faults), tenants).await.unwrap()
}

async fn env() -> DemoEnv {
    env_with(Faults::default(), vec![TenantSetup::new("t1")]).await
}

/// A new appointment for the first user with the first live contact.
async fn new_appointment(env: &DemoEnv, fields: Value) -> (Value, Value, String) {
    let users = env.acme_get("/users").await.unwrap()["data"].clone();
    let user = users[0].clone();
    let contact = env.acme_get("/contacts?limit=200").await.unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["deleted_at"].is_null() && !c["email"].is_null() && !c["phone"].is_null())
        .unwrap()
        .clone();
    let mut body = json!({
        "owner_id": user["id"], "contact_id": contact["id"], "title": "Renewal review",
        "starts_at": "2026-12-02T14:30:00-06:00", "ends_at": "2026-12-02T15:00:00-06:00",
        "timezone": "America/Chicago", "location": "Zoom", "notes": "Bring numbers",
    });
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    let apt = env
        .acme_control("POST", "/appointments", body)
        .await
        .unwrap();
    let email = user["email"].as_str().unwrap().to_lowercase();
    (apt, contact, email)
}

/// Whether `apt`'s event is in the calendar of `email` (tenant `t1`).
async fn in_calendar(env: &DemoEnv, email: &str, apt: &Value) -> bool {
    env.calendar("t1", email)
        .await
        .unwrap()
        .contains_key(&uid("t1", apt))
}

/// The iCalendar text of `apt`'s event in the calendar of `email` (tenant
/// `t1`).
async fn event(env: &DemoEnv, email: &str, apt: &Value) -> String {
    env.calendar("t1", email).await.unwrap()[&uid("t1", apt)].clone()
}

fn uid(tenant: &str, apt: &Value) -> String {
    format!("acme-{}@{tenant}", apt["id"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn s1_s2_s3_an_appointment_becomes_one_event_that_changes_and_goes() {
    let env = env().await;
    let (apt, contact, email) = new_appointment(&env, json!({})).await;
    let (untitled, _, _) = new_appointment(
        &env,
        json!({ "title": null, "starts_at": "2026-12-04T09:00:00+01:00", "ends_at": null }),
    )
    .await;
    sync_ok(&env, "t1").await;

    // 1: the event holds the customer's name, phone as typed, email, time, place, title.
    let cal = env.calendar("t1", &email).await.unwrap();
    let ics = &cal[&uid("t1", &apt)];
    assert!(uid("t1", &apt).contains(apt["id"].as_str().unwrap()));
    let desc = property(ics, "DESCRIPTION").unwrap();
    let name = format!(
        "{} {}",
        contact["first_name"].as_str().unwrap(),
        contact["last_name"].as_str().unwrap()
    );
    assert!(desc.contains(&name), "{desc}");
    assert!(
        desc.contains(contact["phone"].as_str().unwrap()),
        "phone as typed: {desc}"
    );
    assert!(desc.contains(contact["email"].as_str().unwrap()), "{desc}");
    assert_eq!(property(ics, "SUMMARY").unwrap(), "Renewal review");
    assert_eq!(property(ics, "LOCATION").unwrap(), "Zoom");
    assert_eq!(
        property(ics, "DTSTART").unwrap(),
        "20261202T203000Z",
        "14:30 at -06:00"
    );
    assert_eq!(property(ics, "DTEND").unwrap(), "20261202T210000Z");
    assert!(ics.contains(&format!("mailto:{}", contact["email"].as_str().unwrap())));
    // No title: "Meeting with {customer}"; no end: the default 30 minutes.
    let u = &cal[&uid("t1", &untitled)];
    assert!(
        property(u, "SUMMARY").unwrap().starts_with("Meeting with "),
        "{u}"
    );
    assert_eq!(property(u, "DTEND").unwrap(), "20261204T083000Z");

    // 2: a change changes the same event, never a second one.
    let id = apt["id"].as_str().unwrap();
    acme_patch(&env, "appointments", id, json!({ "title": "Moved review", "starts_at": "2026-12-03T10:00:00-06:00", "ends_at": "2026-12-03T11:00:00-06:00" })).await;
    sync_ok(&env, "t1").await;
    let cal2 = env.calendar("t1", &email).await.unwrap();
    assert_eq!(cal2.len(), cal.len(), "no second event");
    let ics = &cal2[&uid("t1", &apt)];
    assert_eq!(property(ics, "SUMMARY").unwrap(), "Moved review");
    assert_eq!(property(ics, "DTSTART").unwrap(), "20261203T160000Z");

    // 3: cancelled → removed; deleted → removed.
    acme_patch(&env, "appointments", id, json!({ "status": "cancelled" })).await;
    acme_delete(&env, "appointments", id_of(&untitled)).await;
    sync_ok(&env, "t1").await;
    let cal3 = env.calendar("t1", &email).await.unwrap();
    assert!(!cal3.contains_key(&uid("t1", &apt)));
    assert!(!cal3.contains_key(&uid("t1", &untitled)));
    assert_eq!(cal3.len(), cal.len() - 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_s11_each_tenant_has_its_own_options() {
    let mut b = TenantSetup::new("t2");
    b.calendar_options = r#"keep_cancelled = true, title_template = "{customer}: {title}", default_duration_minutes = 45, statuses = ["scheduled"]"#.into();
    let env = env_with(Faults::default(), vec![TenantSetup::new("t1"), b]).await;
    let (apt, contact, email) = new_appointment(&env, json!({ "ends_at": null })).await;
    let (done, _, _) = new_appointment(
        &env,
        json!({ "status": "completed", "starts_at": "2026-11-20T10:00:00Z" }),
    )
    .await;
    sync_ok(&env, "t1").await;
    sync_ok(&env, "t2").await;
    let (c1, c2) = (
        env.calendar("t1", &email).await.unwrap(),
        env.calendar("t2", &email).await.unwrap(),
    );
    let name = format!(
        "{} {}",
        contact["first_name"].as_str().unwrap(),
        contact["last_name"].as_str().unwrap()
    );
    assert_eq!(
        property(&c2[&uid("t2", &apt)], "SUMMARY").unwrap(),
        format!("{name}: Renewal review")
    );
    assert_eq!(
        property(&c1[&uid("t1", &apt)], "DTEND").unwrap(),
        "20261202T210000Z",
        "30 min default"
    );
    assert_eq!(
        property(&c2[&uid("t2", &apt)], "DTEND").unwrap(),
        "20261202T211500Z",
        "45 min for t2"
    );
    assert!(
        c1.contains_key(&uid("t1", &done)),
        "completed syncs by default"
    );
    assert!(
        !c2.contains_key(&uid("t2", &done)),
        "t2 syncs scheduled only"
    );

    patch_appointment(&env, &apt, json!({ "status": "cancelled" })).await;
    sync_ok(&env, "t1").await;
    sync_ok(&env, "t2").await;
    assert!(!in_calendar(&env, &email, &apt).await);
    let kept = &env.calendar("t2", &email).await.unwrap()[&uid("t2", &apt)];
    assert_eq!(property(kept, "STATUS").unwrap(), "CANCELLED");
}

#[tokio::test(flavor = "multi_thread")]
async fn s4_touchpoints_count_once_and_go_down_on_delete() {
    let env = env().await;
    sync_ok(&env, "t1").await;
    let users = env.acme_get("/users").await.unwrap()["data"].clone();
    let owner = users[1].clone();
    let email = owner["email"].as_str().unwrap().to_lowercase();
    let before = totals(&env.touchpoints("t1", &email).await.unwrap());
    let act = env
        .acme_control("POST", "/activities", json!({ "type": "email", "owner_id": owner["id"], "contact_id": "con_1001", "occurred_at": "2026-11-24T23:30:00-05:00" }))
        .await
        .unwrap();
    let call = env
        .acme_control("POST", "/activities", json!({ "type": "call", "owner_id": owner["id"], "contact_id": "con_does_not_exist", "occurred_at": "2026-11-24T10:00:00Z", "duration_seconds": 60 }))
        .await
        .unwrap();
    sync_ok(&env, "t1").await;
    sync_ok(&env, "t1").await;
    let after = env.touchpoints("t1", &email).await.unwrap();
    assert_eq!(
        totals(&after),
        (before.0 + 1, before.1 + 1),
        "one more of each, never twice"
    );
    let day = after["days"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["date"] == "2026-11-25")
        .unwrap();
    assert!(
        day["email"].as_u64().unwrap() >= 1,
        "23:30 at -05:00 counts on the next UTC day"
    );
    let stored = env.dashboard.touchpoints("t1");
    let orphan = &stored[&("acme".to_string(), call["id"].as_str().unwrap().to_string())];
    assert_eq!(
        (
            orphan.contact.name.clone(),
            orphan.contact.email.clone(),
            orphan.contact.phone.clone()
        ),
        (None, None, None)
    );

    acme_delete(&env, "activities", id_of(&act)).await;
    sync_ok(&env, "t1").await;
    assert_eq!(
        totals(&env.touchpoints("t1", &email).await.unwrap()),
        (before.0, before.1 + 1)
    );
}

/// Webhook deliveries received: (headers, body).
type Deliveries = std::sync::Arc<std::sync::Mutex<Vec<(Vec<(String, String)>, String)>>>;

fn sign(secret: &str, id: &str, ts: i64, body: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn s5_webhooks_duplicated_and_out_of_order_leave_the_newest_version() {
    let env = env_with(
        Faults {
            duplicate_webhooks: 1.0,
            ..Faults::default()
        },
        vec![TenantSetup::new("t1")],
    )
    .await;
    sync_ok(&env, "t1").await;
    // A receiver that records what Acme delivers.
    let got: Deliveries = Default::default();
    let g2 = got.clone();
    let app = axum_like_receiver(g2).await;
    let reg = weft_demo::http(
        "POST",
        &format!("{}/webhooks", env.acme.base_url()),
        &[("x-acme-api-key", "acme-demo-key")],
        Some(("application/json", json!({ "url": format!("http://{app}/hook"), "events": ["appointment.created", "appointment.updated"] }).to_string())),
    )
    .await
    .unwrap();
    let secret = reg.json()["secret"].as_str().unwrap().to_owned();
    let (apt, _, email) = new_appointment(&env, json!({ "title": "v1" })).await;
    let id = apt["id"].as_str().unwrap().to_owned();
    // v2 is one second newer than v1, whatever the clock did in between.
    let v1 = chrono::DateTime::parse_from_rfc3339(apt["updated_at"].as_str().unwrap()).unwrap();
    let v2_at = (v1 + chrono::Duration::seconds(1)).to_rfc3339();
    acme_patch(
        &env,
        "appointments",
        &id,
        json!({ "title": "v2", "updated_at": v2_at }),
    )
    .await;
    for _ in 0..200 {
        if got.lock().unwrap().len() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut deliveries = got.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 4, "two events, each delivered twice");
    // Every delivery verifies against the secret (Standard Webhooks).
    for (headers, body) in &deliveries {
        let h = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let ts: i64 = h("webhook-timestamp").parse().unwrap();
        let expected = sign(&secret, &h("webhook-id"), ts, body);
        assert!(
            h("webhook-signature")
                .split(' ')
                .any(|s| s == format!("v1,{expected}"))
        );
    }
    // Out of order: the newest first, then the older, duplicates among them
    // (Acme's jitter decides the order they arrived in: sort, so that the
    // newest is first whatever it was).
    let instant = |body: &str| {
        let v: Value = serde_json::from_str(body).unwrap();
        chrono::DateTime::parse_from_rfc3339(v["data"]["object"]["updated_at"].as_str().unwrap())
            .unwrap()
    };
    deliveries.sort_by_key(|(_, body)| std::cmp::Reverse(instant(body)));
    let mut stale = 0;
    for (headers, body) in deliveries {
        let r = env
            .host
            .deliver_webhook("t1", "appointments", headers, body.into_bytes())
            .await
            .unwrap();
        assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
        stale += r.skipped_stale;
    }
    assert_eq!(stale, 3, "only the first-seen newest version is delivered");
    let cal = env.calendar("t1", &email).await.unwrap();
    assert_eq!(property(&cal[&uid("t1", &apt)], "SUMMARY").unwrap(), "v2");
    // A body that is not an Acme event is refused with a reason: a dead
    // letter of its own (issue 19: it no longer fails its batch).
    let bad = env
        .host
        .deliver_webhook("t1", "appointments", vec![], b"{not json".to_vec())
        .await
        .unwrap();
    assert_eq!(bad.outcome, RunOutcome::Succeeded, "{:?}", bad.error);
    assert_eq!(bad.dead_lettered, 1);
    let refused: Vec<_> = env
        .host
        .state
        .dead_letters(Some("t1"), Some("appointments"))
        .unwrap()
        .into_iter()
        .filter(|d| d.stage == "on-webhook")
        .collect();
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].error.to_string().contains("not JSON"),
        "{}",
        refused[0].error
    );
}

/// A tiny HTTP receiver (hyper) that records headers and bodies.
async fn axum_like_receiver(got: Deliveries) -> std::net::SocketAddr {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let got = got.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let got = got.clone();
                        async move {
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                                .collect();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            got.lock()
                                .unwrap()
                                .push((headers, String::from_utf8_lossy(&body).into_owned()));
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::new()),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn s6_s10_bad_records_are_dead_lettered_and_settle_when_fixed() {
    let env = env().await;
    let (no_start, _, email) =
        new_appointment(&env, json!({ "starts_at": null, "ends_at": null })).await;
    let (no_contact, _, _) = new_appointment(&env, json!({ "contact_id": "con_missing" })).await;
    sync_ok(&env, "t1").await;
    let dead = env
        .host
        .state
        .dead_letters(Some("t1"), Some("appointments"))
        .unwrap();
    let reason = |apt: &Value| {
        dead.iter()
            .find(|d| d.record.key == apt["id"].as_str().unwrap())
            .map(|d| d.error.to_string())
            .unwrap_or_default()
    };
    assert!(
        reason(&no_start).contains("no start time"),
        "{}",
        reason(&no_start)
    );
    assert!(
        reason(&no_contact).contains("contact con_missing does not exist"),
        "{}",
        reason(&no_contact)
    );
    assert!(
        env.calendar("t1", &email).await.unwrap().len() > 1,
        "the rest of the sync went on"
    );

    // Support fixes the appointment in Acme; the next sync delivers it and settles the dead letter.
    patch_appointment(
        &env,
        &no_start,
        json!({ "starts_at": "2026-12-05T10:00:00Z" }),
    )
    .await;
    sync_ok(&env, "t1").await;
    assert!(in_calendar(&env, &email, &no_start).await);
    let left: Vec<String> = env
        .host
        .state
        .dead_letters(Some("t1"), None)
        .unwrap()
        .into_iter()
        .map(|d| d.record.key)
        .collect();
    assert!(!left.contains(&no_start["id"].as_str().unwrap().to_owned()));
    assert!(left.contains(&no_contact["id"].as_str().unwrap().to_owned()));

    // 10: a customer's new phone reaches their events after the next sync.
    let (apt, contact, email) = new_appointment(&env, json!({ "title": "Phone test" })).await;
    sync_ok(&env, "t1").await;
    let cid = contact["id"].as_str().unwrap();
    acme_patch(&env, "contacts", cid, json!({ "phone": "+49 30 1234567" })).await;
    sync_ok(&env, "t1").await;
    let ics = event(&env, &email, &apt).await;
    let desc = property(&ics, "DESCRIPTION").unwrap();
    assert!(desc.contains("+49 30 1234567"), "{ics}");
    // A deleted customer leaves events as they were; a later change to their
    // appointment is dead-lettered.
    acme_delete(&env, "contacts", cid).await;
    sync_ok(&env, "t1").await;
    assert!(in_calendar(&env, &email, &apt).await);
    patch_appointment(&env, &apt, json!({ "title": "After deletion" })).await;
    sync_ok(&env, "t1").await;
    let d = env
        .host
        .state
        .dead_letter(
            &env.host
                .dead_letter_id(
                    "t1",
                    "appointments",
                    "appointment",
                    apt["id"].as_str().unwrap(),
                )
                .unwrap(),
        )
        .unwrap()
        .unwrap();
    assert!(
        d.error.to_string().contains("does not exist"),
        "{}",
        d.error
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s7_outages_and_rate_limits_are_waited_out_and_lose_nothing() {
    let faults = Faults {
        error_503: 0.2,
        error_500: 0.05,
        malformed_json: 0.05,
        rate_per_second: 20.0,
        rate_burst: 5,
        ..Faults::default()
    };
    let mut t = TenantSetup::new("t1");
    // Enough attempts for a flaky Acme, few enough that a dead one fails fast.
    t.retry = "max_attempts = 4, base_delay_ms = 50, max_delay_ms = 500".into();
    let env = env_with(faults, vec![t]).await;
    dashboard_faults(&env, json!({ "error_503": 0.2 })).await;
    sync_ok(&env, "t1").await;
    assert!(
        env.acme
            .requests()
            .iter()
            .any(|r| r.status == 429 || r.status == 503),
        "faults did happen"
    );
    acme_faults(
        &env,
        json!({ "error_503": 0.0, "error_500": 0.0, "malformed_json": 0.0 }),
    )
    .await;
    let live = env
        .appointments()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| {
            a["deleted_at"].is_null() && !a["starts_at"].is_null() && a["status"] != "cancelled"
        })
        .count();
    let dead = env
        .host
        .state
        .dead_letters(Some("t1"), Some("appointments"))
        .unwrap()
        .len();
    let mut events = 0;
    for u in env.user_emails().await.unwrap() {
        events += env.calendar("t1", &u).await.unwrap().len();
    }
    assert_eq!(
        events + dead,
        live,
        "every live appointment is an event or a dead letter"
    );

    // Acme down completely: the run fails and the cursor stays.
    new_appointment(&env, json!({})).await;
    acme_faults(&env, json!({ "error_503": 1.0 })).await;
    let cursor = env.host.state.cursor("t1", "appointments").unwrap();
    let r = run(&env, "appointments", Trigger::Manual).await;
    assert_eq!(r.outcome, RunOutcome::Failed);
    assert_eq!(env.host.state.cursor("t1", "appointments").unwrap(), cursor);
}

#[tokio::test(flavor = "multi_thread")]
async fn s8_owners_match_by_email_ignoring_case_or_are_dead_lettered_by_name() {
    let emails = acme_user_emails().await;
    // Our app knows the first user (under another address, mapped) and the second.
    let mut t = TenantSetup::new("t1");
    t.calendar_options = format!(
        r#"user_map = {{ "{}" = "first@ours.example" }}, known_users = ["first@ours.example", "{}"]"#,
        emails[0].to_uppercase(),
        emails[1]
    );
    let env = env_with(Faults::default(), vec![t]).await;
    sync_ok(&env, "t1").await;
    assert!(
        !env.calendar("t1", "first@ours.example")
            .await
            .unwrap()
            .is_empty(),
        "mapped explicitly, case ignored"
    );
    assert!(!env.calendar("t1", &emails[1]).await.unwrap().is_empty());
    let dead = env
        .host
        .state
        .dead_letters(Some("t1"), Some("appointments"))
        .unwrap();
    let unmatched: Vec<_> = dead
        .iter()
        .filter(|d| d.error.to_string().contains("has no user in our app"))
        .collect();
    assert!(!unmatched.is_empty());
    assert!(
        unmatched
            .iter()
            .all(|d| d.error.to_string().contains(&emails[2])),
        "the reason names the owner"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s9_an_operator_can_backfill_one_tenant() {
    let env = env().await;
    sync_ok(&env, "t1").await;
    let email = env.user_emails().await.unwrap()[0].clone();
    let cal = env.calendar("t1", &email).await.unwrap();
    let first = cal.keys().next().unwrap().clone();
    let resource = first.split('@').next().unwrap();
    let gone = weft_demo::http(
        "DELETE",
        &format!("{}{resource}.ics", env.calendar_url("t1", &email)),
        &[],
        None,
    )
    .await
    .unwrap();
    assert!(gone.status < 300);
    let r = run(&env, "appointments", Trigger::Backfill).await;
    assert_eq!(r.outcome, RunOutcome::Succeeded);
    assert_eq!(r.skipped_stale, 0, "a backfill re-delivers everything");
    assert!(
        env.calendar("t1", &email)
            .await
            .unwrap()
            .contains_key(&first)
    );
    assert_eq!(
        env.host.flow("t1", "appointments").unwrap().schedule,
        std::time::Duration::from_secs(300)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s11_caldav_credentials_come_from_the_tenant_and_the_host_adds_them() {
    let env = DemoEnv::start_with_caldav_auth(
        acme(Faults::default()),
        vec![TenantSetup::new("t1")],
        "cal-s3cret",
    )
    .await
    .unwrap();
    let (apt, _, email) = new_appointment(&env, json!({})).await;
    sync_ok(&env, "t1").await;
    assert!(in_calendar(&env, &email, &apt).await);
    // Without the credential the server refuses: the events got there with it.
    let anonymous = weft_demo::http("PROPFIND", &env.calendar_url("t1", &email), &[], None)
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    assert!(
        !text.contains("cal-s3cret"),
        "the password lives in the secrets file only"
    );
}

// After the first sync: every field a user can change in Acme changes, tokens
// die early, first runs fail. Each test pins one way the data went wrong.

/// Gives appointment `id` to `owner` in Acme and syncs.
async fn give_to(env: &DemoEnv, id: &str, owner: &Value) {
    change(
        env,
        "PATCH",
        &format!("/appointments/{id}"),
        json!({ "owner_id": owner }),
    )
    .await;
    sync_ok(env, "t1").await;
}

/// Patches Acme's `/{resource}/{id}` with `body`.
async fn acme_patch(env: &DemoEnv, resource: &str, id: &str, body: Value) {
    change(env, "PATCH", &format!("/{resource}/{id}"), body).await;
}

/// Deletes Acme's `/{resource}/{id}`.
async fn acme_delete(env: &DemoEnv, resource: &str, id: &str) {
    change(env, "DELETE", &format!("/{resource}/{id}"), json!({})).await;
}

/// The IDs of the records of the Acme list `resource` that are not deleted.
async fn live_ids(env: &DemoEnv, resource: &str) -> Vec<String> {
    let all = env.list_all(resource).await.unwrap();
    all.iter()
        .filter(|r| r["deleted_at"].is_null())
        .map(|r| id_of(r).to_owned())
        .collect()
}

/// The ID of the Acme record `record`.
fn id_of(record: &Value) -> &str {
    record["id"].as_str().unwrap()
}

/// Changes Acme through its control API (`PATCH` or `DELETE` of `path`).
async fn change(env: &DemoEnv, method: &str, path: &str, body: Value) {
    env.acme_control(method, path, body).await.unwrap();
}

/// The lower-case emails of Acme's users, and their IDs by email.
async fn users_by_email(env: &DemoEnv) -> Vec<(String, Value)> {
    env.acme_get("/users").await.unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["email"].as_str().unwrap().to_lowercase(), u["id"].clone()))
        .collect()
}

/// Changes the faults of the Acme sandbox.
async fn acme_faults(env: &DemoEnv, patch: Value) {
    put_faults(&env.acme.root_url(), patch).await;
}

/// Changes the faults of the dashboard sandbox.
async fn dashboard_faults(env: &DemoEnv, patch: Value) {
    put_faults(&env.dashboard.url(), patch).await;
}

/// `PUT {root}/_sandbox/faults`, which must succeed.
async fn put_faults(root: &str, patch: Value) {
    let r = weft_demo::http(
        "PUT",
        &format!("{root}/_sandbox/faults"),
        &[],
        Some(("application/json", patch.to_string())),
    )
    .await
    .unwrap();
    assert!(r.status < 300, "{}", r.text);
}

/// Runs `flow` of tenant `t1` once, started by `trigger`.
async fn run(env: &DemoEnv, flow: &str, trigger: Trigger) -> weft::state::RunRecord {
    env.host
        .run_flow("t1", flow, trigger, &|_| {})
        .await
        .unwrap()
}

/// Changes the Acme appointment `apt`.
async fn patch_appointment(env: &DemoEnv, apt: &Value, patch: Value) {
    acme_patch(env, "appointments", id_of(apt), patch).await;
}

/// The e-mail addresses of Acme's users (the sandbox's default data), read
/// from an environment started and stopped for that.
async fn acme_user_emails() -> Vec<String> {
    env().await.user_emails().await.unwrap()
}

/// Every calendar of `tenant` that holds the event of `apt`.
async fn calendars_holding(env: &DemoEnv, tenant: &str, apt: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for u in env.user_emails().await.unwrap() {
        if env
            .calendar(tenant, &u)
            .await
            .unwrap()
            .contains_key(&uid(tenant, apt))
        {
            out.push(u);
        }
    }
    out
}

fn dead_letters_of(env: &DemoEnv, tenant: &str, key: &str) -> Vec<weft::state::DeadLetter> {
    env.host
        .state
        .dead_letters(Some(tenant), None)
        .unwrap()
        .into_iter()
        .filter(|d| d.record.key == key)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn issue8_owner_reassigned_the_event_lives_only_with_the_current_owner() {
    let emails = acme_user_emails().await;
    // Our app knows the first two Acme users; the third has no user of ours.
    let mut t = TenantSetup::new("t1");
    t.calendar_options = format!(r#"known_users = ["{}", "{}"]"#, emails[0], emails[1]);
    let env = env_with(Faults::default(), vec![t]).await;
    let users = users_by_email(&env).await;
    let (apt, _, _) = new_appointment(&env, json!({ "owner_id": users[0].1 })).await;
    let id = apt["id"].as_str().unwrap();
    sync_ok(&env, "t1").await;
    assert_eq!(
        calendars_holding(&env, "t1", &apt).await,
        vec![users[0].0.clone()]
    );

    // Reassigned to a matched user: it moves, and is in one calendar only.
    give_to(&env, id, &users[1].1).await;
    assert_eq!(
        calendars_holding(&env, "t1", &apt).await,
        vec![users[1].0.clone()]
    );

    // Reassigned to an owner we cannot match: it leaves every calendar and is
    // dead-lettered, once, with a reason naming the owner.
    give_to(&env, id, &users[2].1).await;
    assert!(calendars_holding(&env, "t1", &apt).await.is_empty());
    let dead = dead_letters_of(&env, "t1", id);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].error.to_string().contains(&users[2].0),
        "{}",
        dead[0].error
    );

    // Back to a matched owner: the event returns and the dead letter settles.
    give_to(&env, id, &users[0].1).await;
    assert_eq!(
        calendars_holding(&env, "t1", &apt).await,
        vec![users[0].0.clone()]
    );
    assert!(dead_letters_of(&env, "t1", id).is_empty());
}

/// Before: a late webhook of an appointment as it was before a reassignment
/// and a cancellation, arriving after its customer changed, was enriched
/// with the customer as Acme holds it now, and its version (the newest of
/// the two `updated_at`s first) beat the cancellation's: the event came back
/// into its first owner's calendar and stayed there (the chaos test's seed
/// 7042232114743675033, and once the replicas test). The same for a late
/// `contact.updated`: its customer as it was must not replace the customer
/// an event already shows.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_webhook_of_what_an_appointment_was_loses_whatever_its_customer_did_since() {
    let env = env().await;
    let users = users_by_email(&env).await;
    let (apt, contact, first_owner) = new_appointment(&env, json!({})).await;
    let id = id_of(&apt).to_owned();
    sync_ok(&env, "t1").await;
    assert_eq!(
        calendars_holding(&env, "t1", &apt).await,
        vec![first_owner.clone()]
    );
    let webhook_of = |kind: &str, object: Value| {
        json!({ "id": format!("evt_late_{kind}"), "type": kind, "data": { "object": object } })
            .to_string()
            .into_bytes()
    };
    let late_appointment = webhook_of(
        "appointment.updated",
        env.acme_get(&format!("/appointments/{id}")).await.unwrap(),
    );
    let contact_id = id_of(&contact).to_owned();
    let contact_as_it_was = env
        .acme_get(&format!("/contacts/{contact_id}"))
        .await
        .unwrap();

    // Reassigned, then cancelled: in no calendar.
    give_to(&env, &id, &users[1].1).await;
    acme_patch(&env, "appointments", &id, json!({ "status": "cancelled" })).await;
    sync_ok(&env, "t1").await;
    assert!(calendars_holding(&env, "t1", &apt).await.is_empty());

    // The customer changes; before any run reads that, the first owner's
    // version of the appointment arrives.
    acme_patch(
        &env,
        "contacts",
        &contact_id,
        json!({ "phone": "+1 555 0100" }),
    )
    .await;
    let r = env
        .host
        .deliver_webhook("t1", "appointments", vec![], late_appointment)
        .await
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert!(
        calendars_holding(&env, "t1", &apt).await.is_empty(),
        "the cancelled appointment is back, from a late webhook: {r:?}"
    );
    sync_ok(&env, "t1").await;
    assert!(calendars_holding(&env, "t1", &apt).await.is_empty());

    // A live appointment of the same customer shows the customer's change.
    // The appointment changes, and before a run reads that, a late
    // `contact.updated` of the customer as it was arrives: it re-reads the
    // appointment (newer than anything delivered) and must not bring the
    // old phone back with it.
    let (other, _, owner) = new_appointment(&env, json!({ "contact_id": contact_id })).await;
    sync_ok(&env, "t1").await;
    let description = |cal: &std::collections::BTreeMap<String, String>| {
        property(&cal[&uid("t1", &other)], "DESCRIPTION").unwrap_or_default()
    };
    let shown = description(&env.calendar("t1", &owner).await.unwrap());
    assert!(shown.contains("+1 555 0100"), "{shown}");
    acme_patch(
        &env,
        "appointments",
        id_of(&other),
        json!({ "title": "Moved up" }),
    )
    .await;
    let r = env
        .host
        .deliver_webhook(
            "t1",
            "contacts",
            vec![],
            webhook_of("contact.updated", contact_as_it_was),
        )
        .await
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    let cal = env.calendar("t1", &owner).await.unwrap();
    assert_eq!(
        property(&cal[&uid("t1", &other)], "SUMMARY").as_deref(),
        Some("Moved up"),
        "the webhook's run re-read the appointment"
    );
    let shown = description(&cal);
    assert!(
        shown.contains("+1 555 0100"),
        "a late contact.updated brought the customer's old phone back: {shown}"
    );
    sync_ok(&env, "t1").await;
    matches_acme(&env, "t1", "after the late webhooks").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issue8_an_activity_that_stops_being_an_email_or_call_leaves_the_dashboard() {
    let env = env().await;
    sync_ok(&env, "t1").await;
    let users = users_by_email(&env).await;
    let (email, owner) = users[1].clone();
    let before = totals(&env.touchpoints("t1", &email).await.unwrap());
    let mail = env
        .acme_control("POST", "/activities", json!({ "type": "email", "owner_id": owner, "contact_id": "con_1001", "occurred_at": "2026-11-24T12:00:00Z" }))
        .await
        .unwrap();
    let call = env
        .acme_control("POST", "/activities", json!({ "type": "call", "owner_id": owner, "contact_id": "con_1001", "occurred_at": "2026-11-24T13:00:00Z" }))
        .await
        .unwrap();
    sync_ok(&env, "t1").await;
    assert_eq!(
        totals(&env.touchpoints("t1", &email).await.unwrap()),
        (before.0 + 1, before.1 + 1)
    );
    for (act, to) in [(&mail, "meeting"), (&call, "note")] {
        acme_patch(&env, "activities", id_of(act), json!({ "type": to })).await;
    }
    sync_ok(&env, "t1").await;
    assert_eq!(
        totals(&env.touchpoints("t1", &email).await.unwrap()),
        before,
        "neither counts once it is a meeting or a note"
    );
    // And back: counted again, once.
    acme_patch(&env, "activities", id_of(&mail), json!({ "type": "email" })).await;
    sync_ok(&env, "t1").await;
    assert_eq!(
        totals(&env.touchpoints("t1", &email).await.unwrap()),
        (before.0 + 1, before.1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn issue8_records_leave_when_the_tenant_stops_syncing_them() {
    let env = env().await;
    let (done, _, email) = new_appointment(
        &env,
        json!({ "status": "completed", "starts_at": "2026-11-20T10:00:00Z" }),
    )
    .await;
    let (open, _, _) = new_appointment(&env, json!({})).await;
    sync_ok(&env, "t1").await;
    let cal = env.calendar("t1", &email).await.unwrap();
    assert!(cal.contains_key(&uid("t1", &done)) && cal.contains_key(&uid("t1", &open)));
    // The tenant changes its options: completed appointments are no longer synced.
    let mut tenant = env.host.tenant("t1").unwrap();
    for flow in ["appointments", "contacts"] {
        tenant.flows.get_mut(flow).unwrap().mappers[0].config["statuses"] = json!(["scheduled"]);
    }
    env.host.put_tenant("t1", tenant).unwrap();
    sync_ok(&env, "t1").await;
    let cal = env.calendar("t1", &email).await.unwrap();
    assert!(
        !cal.contains_key(&uid("t1", &done)),
        "left the filter, left the calendar"
    );
    assert!(cal.contains_key(&uid("t1", &open)));
}

#[tokio::test(flavor = "multi_thread")]
async fn issue8_tokens_that_die_early_are_waited_out_not_a_config_error() {
    let env = env().await;
    sync_ok(&env, "t1").await;
    let (apt, _, email) = new_appointment(&env, json!({ "title": "After the token died" })).await;
    // The next three requests are refused, each with a token just issued.
    acme_faults(&env, json!({ "token_failures": 3 })).await;
    let r = run(&env, "appointments", Trigger::Manual).await;
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!(
        env.host.state.attention("t1", "appointments").unwrap(),
        None
    );
    let refused = env
        .acme
        .requests()
        .iter()
        .filter(|q| q.status == 401)
        .count();
    assert!(refused >= 3, "the fault happened: {refused} refusals");
    assert!(in_calendar(&env, &email, &apt).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn issue8_contacts_changed_before_the_first_contacts_sync_are_not_lost() {
    let env = env().await;
    let (apt, contact, email) = new_appointment(&env, json!({ "title": "Early change" })).await;
    let first = run(&env, "appointments", Trigger::Manual).await;
    assert_eq!(first.outcome, RunOutcome::Succeeded, "{:?}", first.error);
    // The contacts stream's starting point was fixed by that first sync.
    let space = weft::state::kv::KvSpace {
        tenant: "t1".into(),
        connector: "acme-crm".into(),
    };
    let start = env
        .host
        .state
        .kv()
        .get(&space, "contacts-start")
        .unwrap()
        .expect("the starting point is stored");
    let start = chrono::DateTime::parse_from_rfc3339(std::str::from_utf8(&start).unwrap()).unwrap();
    // A change just after that point, which the first sync did not see...
    let cid = contact["id"].as_str().unwrap();
    let changed_at = (start + chrono::Duration::seconds(1)).to_rfc3339();
    acme_patch(
        &env,
        "contacts",
        cid,
        json!({ "phone": "+1 555 0100 early", "updated_at": changed_at }),
    )
    .await;
    // ...and the contacts flow's first run fails (Acme down), so its first
    // success comes more than ten minutes (scaled: a few seconds) later.
    acme_faults(&env, json!({ "error_503": 1.0 })).await;
    let failed = run(&env, "contacts", Trigger::Manual).await;
    assert_eq!(failed.outcome, RunOutcome::Failed);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    acme_faults(&env, json!({ "error_503": 0.0 })).await;
    let ok = run(&env, "contacts", Trigger::Manual).await;
    assert_eq!(ok.outcome, RunOutcome::Succeeded, "{:?}", ok.error);
    let ics = event(&env, &email, &apt).await;
    let desc = property(&ics, "DESCRIPTION").unwrap();
    assert!(desc.contains("+1 555 0100 early"), "{ics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn issue8_a_contact_changed_then_deleted_leaves_its_last_known_details() {
    let env = env().await;
    let (apt, contact, email) = new_appointment(&env, json!({ "title": "Last details" })).await;
    sync_ok(&env, "t1").await;
    let cid = contact["id"].as_str().unwrap();
    acme_patch(
        &env,
        "contacts",
        cid,
        json!({ "phone": "+44 20 7946 0000", "email": "new@customer.example" }),
    )
    .await;
    acme_delete(&env, "contacts", cid).await;
    sync_ok(&env, "t1").await;
    let ics = event(&env, &email, &apt).await;
    let desc = property(&ics, "DESCRIPTION").unwrap();
    assert!(desc.contains("+44 20 7946 0000"), "{desc}");
    assert!(desc.contains("new@customer.example"), "{desc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn issue8_one_dead_letter_per_record_and_none_for_deletes_of_unknown_owners() {
    let emails = acme_user_emails().await;
    let mut t = TenantSetup::new("t1");
    t.calendar_options = format!(r#"known_users = ["{}"]"#, emails[0]);
    let env = env_with(Faults::default(), vec![t]).await;
    let users = users_by_email(&env).await;
    let stranger = users[2].1.clone();
    // Never delivered, owner unknown, then deleted or cancelled: no dead letter.
    let (gone, _, _) = new_appointment(&env, json!({ "owner_id": stranger })).await;
    let (cancelled, _, _) =
        new_appointment(&env, json!({ "owner_id": stranger, "status": "cancelled" })).await;
    acme_delete(&env, "appointments", id_of(&gone)).await;
    // Unmatched and live: one dead letter, even when the contacts flow
    // re-reads it after its customer changes.
    let (stuck, contact, _) = new_appointment(&env, json!({ "owner_id": stranger })).await;
    sync_ok(&env, "t1").await;
    assert!(dead_letters_of(&env, "t1", gone["id"].as_str().unwrap()).is_empty());
    assert!(dead_letters_of(&env, "t1", cancelled["id"].as_str().unwrap()).is_empty());
    acme_patch(
        &env,
        "contacts",
        id_of(&contact),
        json!({ "phone": "+1 555 0199" }),
    )
    .await;
    sync_ok(&env, "t1").await;
    let dead = dead_letters_of(&env, "t1", stuck["id"].as_str().unwrap());
    assert_eq!(dead.len(), 1, "one per record: {dead:?}");
    // Deleted in Acme: the dead letter settles, no new one appears.
    acme_delete(&env, "appointments", id_of(&stuck)).await;
    sync_ok(&env, "t1").await;
    assert!(dead_letters_of(&env, "t1", stuck["id"].as_str().unwrap()).is_empty());
    // No dead letter anywhere is a delete.
    assert!(
        env.host
            .state
            .dead_letters(Some("t1"), None)
            .unwrap()
            .iter()
            .all(|d| d.record.op == weft::model::Operation::Upsert)
    );
}

#[test]
fn issue8_our_own_servers_are_not_throttled_at_the_vendors_rate() {
    let text = weft_demo::config_toml(
        "data",
        "http://127.0.0.1:1/api/v1",
        "http://127.0.0.1:2",
        "http://127.0.0.1:3",
        &[TenantSetup::new("t1")],
        None,
    );
    let config: toml::Value = toml::from_str(&text).unwrap();
    let flows = config["tenants"]["t1"]["flows"].as_table().unwrap();
    for (name, flow) in flows {
        let rate = &flow["destination"]["http"]["rate"];
        assert!(
            rate["per_second"].as_float().unwrap() >= 100.0,
            "{name}: our destination gets its own rate"
        );
        assert!(
            flow["source"]["http"].get("rate").is_none(),
            "Acme keeps the default"
        );
    }
}

/// A small deterministic generator, so that a failing storm can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// Acme as users change it: owners, types, statuses, contacts, times and
/// deletions, while tokens die early and Acme fails now and then. After each
/// storm one sync leaves our app exactly as Acme is.
#[tokio::test(flavor = "multi_thread")]
async fn issue8_storms_of_changes_end_exact() {
    let env = env_with(
        Faults {
            error_503: 0.03,
            malformed_json: 0.02,
            ..Faults::default()
        },
        vec![TenantSetup::new("t1")],
    )
    .await;
    sync_ok(&env, "t1").await;
    matches_acme(&env, "t1", "first sync").await;
    let users: Vec<Value> = users_by_email(&env)
        .await
        .into_iter()
        .map(|u| u.1)
        .collect();
    // WEFT_STORM_SEED=N replays another storm.
    let seed = std::env::var("WEFT_STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let mut rng = Lcg(seed);
    for storm in 0..2 {
        let contacts = live_ids(&env, "contacts").await;
        let apts = live_ids(&env, "appointments").await;
        for _ in 0..15 {
            let id = &apts[rng.below(apts.len())];
            let patch = match rng.below(5) {
                0 => json!({ "owner_id": users[rng.below(users.len())] }),
                1 => json!({ "status": (["scheduled", "completed", "cancelled"][rng.below(3)]) }),
                2 => json!({ "contact_id": contacts[rng.below(contacts.len())] }),
                3 => {
                    json!({ "starts_at": format!("2026-12-{:02}T09:00:00+02:00", 1 + rng.below(28)) })
                }
                _ => {
                    acme_delete(&env, "appointments", id).await;
                    continue;
                }
            };
            acme_patch(&env, "appointments", id, patch).await;
        }
        let acts = live_ids(&env, "activities").await;
        for _ in 0..15 {
            let id = &acts[rng.below(acts.len())];
            let patch = match rng.below(3) {
                0 => json!({ "type": (["email", "call", "meeting", "note"][rng.below(4)]) }),
                1 => json!({ "owner_id": users[rng.below(users.len())] }),
                _ => {
                    acme_delete(&env, "activities", id).await;
                    continue;
                }
            };
            acme_patch(&env, "activities", id, patch).await;
        }
        // A customer's details change too.
        let cid = &contacts[rng.below(contacts.len())];
        acme_patch(
            &env,
            "contacts",
            cid,
            json!({ "phone": format!("+1 555 01{storm:02}") }),
        )
        .await;
        acme_faults(&env, json!({ "token_failures": 2 })).await;
        sync_ok(&env, "t1").await;
        matches_acme(&env, "t1", &format!("storm {storm}")).await;
    }
}

/// A millisecond after contact `cid`'s deletion, as Acme writes instants:
/// a change stamped with it comes after the deletion (Acme's timestamps
/// have milliseconds, and a change made at once can share the deletion's).
async fn just_after_deletion(env: &DemoEnv, cid: &str) -> String {
    let listed = env.acme_get(&format!("/contacts?ids={cid}")).await.unwrap();
    let deleted = listed["data"][0]["deleted_at"].as_str().unwrap().to_owned();
    let at =
        chrono::DateTime::parse_from_rfc3339(&deleted).unwrap() + chrono::Duration::milliseconds(1);
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Issue 19, item 6: an appointment moved after its customer was deleted
/// kept the event at the old time (dead-lettered, as statement 10 says),
/// and a tenant activated after the deletion dead-lettered appointments a
/// tenant that synced all along shows: history decided the calendar. With
/// `deleted_contacts = "last-known"` the records of a deleted contact
/// carry its last fields (Acme lists them for 30 days), so the move
/// reaches the calendar and a tenant activated at the end shows exactly
/// what one that lived through every change shows. The default stays
/// statement 10's.
#[tokio::test(flavor = "multi_thread")]
async fn issue19_deleted_contacts_last_known_makes_the_calendar_a_function_of_acme() {
    let env = env_with(
        Faults::default(),
        vec![TenantSetup::new("t1"), last_known("t2"), last_known("t3")],
    )
    .await;
    let (apt, contact, email) = new_appointment(&env, json!({ "title": "Deleted customer" })).await;
    let other_contact = env.acme_get("/contacts?limit=200").await.unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["deleted_at"].is_null() && c["id"] != contact["id"])
        .unwrap()
        .clone();
    let (other, _, _) = new_appointment(
        &env,
        json!({ "title": "Other", "contact_id": other_contact["id"] }),
    )
    .await;
    sync_ok(&env, "t1").await;
    sync_ok(&env, "t2").await;
    let id = apt["id"].as_str().unwrap();
    // The customer changes, is deleted, and then the appointment moves.
    let cid = contact["id"].as_str().unwrap();
    acme_patch(&env, "contacts", cid, json!({ "phone": "+1 312 555 0199" })).await;
    acme_delete(&env, "contacts", cid).await;
    acme_patch(
        &env,
        "appointments",
        id,
        json!({
            "starts_at": "2026-12-09T16:00:00Z", "ends_at": "2026-12-09T17:00:00Z",
            "updated_at": just_after_deletion(&env, cid).await,
        }),
    )
    .await;
    // Another customer is deleted, then their appointment is reassigned.
    let ocid = other_contact["id"].as_str().unwrap();
    acme_delete(&env, "contacts", ocid).await;
    let after = just_after_deletion(&env, ocid).await;
    let users = users_by_email(&env).await;
    let new_owner = users.iter().find(|(e, _)| *e != email).unwrap();
    let oid = other["id"].as_str().unwrap();
    acme_patch(
        &env,
        "appointments",
        oid,
        json!({ "owner_id": new_owner.1, "updated_at": after }),
    )
    .await;
    sync_ok(&env, "t1").await;
    sync_ok(&env, "t2").await;

    // The default (statement 10): the event stays as it was, the move is
    // dead-lettered.
    let t1 = &env.calendar("t1", &email).await.unwrap()[&uid("t1", &apt)];
    assert_eq!(property(t1, "DTSTART").unwrap(), "20261202T203000Z", "{t1}");
    let dead = env
        .host
        .state
        .dead_letters(Some("t1"), Some("appointments"))
        .unwrap();
    assert!(
        dead.iter().any(|d| d.record.key == id
            && d.error
                .to_string()
                .contains(&format!("contact {cid} does not exist"))),
        "{dead:?}"
    );
    // last-known: the move reaches the calendar with the customer's last
    // details, the reassignment moves the other event, nothing is dead.
    let t2 = &env.calendar("t2", &email).await.unwrap()[&uid("t2", &apt)];
    assert_eq!(property(t2, "DTSTART").unwrap(), "20261209T160000Z", "{t2}");
    assert!(
        property(t2, "DESCRIPTION")
            .unwrap()
            .contains("+1 312 555 0199"),
        "{t2}"
    );
    assert!(
        env.calendar("t2", &new_owner.0)
            .await
            .unwrap()
            .contains_key(&uid("t2", &other))
    );
    assert!(
        !env.calendar("t2", &email)
            .await
            .unwrap()
            .contains_key(&uid("t2", &other))
    );
    let dead = env.host.state.dead_letters(Some("t2"), None).unwrap();
    assert!(
        !dead
            .iter()
            .any(|d| d.record.key == id || d.record.key == oid),
        "{dead:?}"
    );

    // A tenant activated now shows exactly what t2 shows.
    sync_ok(&env, "t3").await;
    let (lived, fresh) = (
        env.calendar_view("t2").await.unwrap(),
        env.calendar_view("t3").await.unwrap(),
    );
    assert!(lived.len() > 2, "{lived:?}");
    for (k, v) in &lived {
        assert_eq!(fresh.get(k), Some(v), "{k:?}");
    }
    assert_eq!(lived.len(), fresh.len());
}
