//! The dashboard sandbox against `our-app.md` §2: idempotent upserts, deletes,
//! per-day UTC counts, validation errors, tenant isolation, faults, the page.

use crate::common::*;
use serde_json::{Value, json};
use weft_sandbox::dashboard::DashboardSandbox;

async fn dashboard() -> DashboardSandbox {
    let tokens = [
        ("tok-a".to_string(), "a".to_string()),
        ("tok-b".to_string(), "b".to_string()),
    ]
    .into();
    DashboardSandbox::start(tokens, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn tp(user: &str, channel: &str, at: &str) -> Value {
    json!({
        "user_email": user, "channel": channel, "direction": "outbound", "occurred_at": at,
        "contact": { "name": "Zoë Müller", "email": null, "phone": "+1 (312) 555-0142" }
    })
}

async fn put(d: &DashboardSandbox, token: &str, id: &str, body: &Value) -> Resp {
    let auth = ("authorization", format!("Bearer {token}"));
    let path = format!("/v1/touchpoints/acme/{id}");
    send_json("PUT", &d.url(), &path, &[auth], body).await
}

/// Puts the touch-point `id` of dana@x.example by `channel` at `at` with
/// `token`: the status.
async fn put_dana(d: &DashboardSandbox, token: &str, id: &str, channel: &str, at: &str) -> u16 {
    put(d, token, id, &tp("dana@x.example", channel, at))
        .await
        .status
}

async fn counts(d: &DashboardSandbox, token: &str, user: &str) -> Value {
    let r = get(
        &d.url(),
        &format!("/v1/dashboard/touchpoints?user_email={user}&from=2026-11-01&to=2026-11-30"),
        &[("authorization", format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

#[tokio::test]
async fn upserts_are_idempotent_and_counted_by_utc_day() {
    let d = dashboard().await;
    assert_eq!(
        put_dana(&d, "tok-a", "act_1", "email", "2026-11-02T23:30:00-05:00").await,
        201
    );
    assert_eq!(
        put_dana(&d, "tok-a", "act_1", "email", "2026-11-02T23:30:00-05:00").await,
        200
    );
    assert_eq!(
        put_dana(&d, "tok-a", "act_2", "phone", "2026-11-02T10:00:00+00:00").await,
        201
    );
    let c = counts(&d, "tok-a", "dana@x.example").await;
    // 23:30 at -05:00 is 04:30 UTC the next day.
    assert_eq!(
        c["days"],
        json!([{"date": "2026-11-02", "email": 0, "phone": 1}, {"date": "2026-11-03", "email": 1, "phone": 0}])
    );
    assert_eq!(c["total"], json!({"email": 1, "phone": 1}));

    let del = |id: &'static str| {
        let url = format!("{}/v1/touchpoints/acme/{id}", d.url());
        async move {
            request(
                "DELETE",
                &url,
                &[("authorization", "Bearer tok-a".to_string())],
                None,
            )
            .await
            .status
        }
    };
    assert_eq!(del("act_1").await, 204);
    assert_eq!(del("act_1").await, 404);
    assert_eq!(
        counts(&d, "tok-a", "dana@x.example").await["total"],
        json!({"email": 0, "phone": 1})
    );
}

#[tokio::test]
async fn tenants_are_isolated_and_tokens_required() {
    let d = dashboard().await;
    put_dana(&d, "tok-a", "act_1", "email", "2026-11-02T10:00:00Z").await;
    assert_eq!(
        counts(&d, "tok-b", "dana@x.example").await["total"],
        json!({"email": 0, "phone": 0})
    );
    assert_eq!(
        put_dana(&d, "nope", "act_9", "email", "2026-11-02T10:00:00Z").await,
        401
    );
    assert!(d.touchpoints("b").is_empty());
    assert_eq!(d.touchpoints("a").len(), 1);
}

#[tokio::test]
async fn validation_errors_are_422_with_the_error_body() {
    let d = dashboard().await;
    let mut missing_key = tp("dana@x.example", "email", "2026-11-02T10:00:00Z");
    missing_key["contact"]
        .as_object_mut()
        .unwrap()
        .remove("email");
    let cases = [
        (
            tp("dana@x.example", "fax", "2026-11-02T10:00:00Z"),
            "channel",
        ),
        (
            tp("not-an-email", "email", "2026-11-02T10:00:00Z"),
            "user_email",
        ),
        (tp("dana@x.example", "email", "yesterday"), "occurred_at"),
        (missing_key, "contact.email"),
    ];
    for (body, want) in cases {
        let r = put(&d, "tok-a", "act_x", &body).await;
        assert_eq!(r.status, 422, "{body}");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(want) || want == "occurred_at", "{want}: {msg}");
    }
    assert!(
        d.touchpoints("a").is_empty(),
        "nothing stored from bad input"
    );
}

#[tokio::test]
async fn faults_answer_with_retry_after_and_the_page_shows_counts() {
    let d = dashboard().await;
    put_json(&d.url(), "/_sandbox/faults", &json!({"error_503": 1.0})).await;
    let r = put(
        &d,
        "tok-a",
        "act_1",
        &tp("dana@x.example", "email", "2026-11-02T10:00:00Z"),
    )
    .await;
    assert_eq!(
        (r.status, r.header("retry-after").as_deref()),
        (503, Some("1"))
    );
    put_json(&d.url(), "/_sandbox/faults", &json!({"error_429": 1.0})).await;
    assert_eq!(
        put_dana(&d, "tok-a", "act_1", "email", "2026-11-02T10:00:00Z").await,
        429
    );
    put_json(&d.url(), "/_sandbox/faults", &json!({})).await;
    assert_eq!(
        put(
            &d,
            "tok-a",
            "act_1",
            &tp("Dana@X.example", "email", "2026-11-02T10:00:00Z")
        )
        .await
        .status,
        201
    );
    let page = get(&d.url(), "/", &[]).await;
    assert!(
        page.text.contains("dana@x.example") && page.text.contains("2026-11-02"),
        "{}",
        page.text
    );
}
