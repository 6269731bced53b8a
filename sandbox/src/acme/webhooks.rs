//! Webhooks: registration, secret rotation, and at-least-once delivery
//! signed as Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
//! one entry per active secret). A delivery that gets no 2xx within the
//! timeout is retried after 5 s, 30 s, 2 min, 10 min and 1 h (times the
//! sandbox's time scale), keeping its ID and body with a fresh timestamp and
//! signature, then dropped. The fault profile can deliver events twice, and
//! delay first attempts at random so that events arrive out of order.

use super::answer::{Answer, error};
use super::{DeliveryAttempt, Shared, State, Webhook, lock};
use crate::roll;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use rand::Rng;
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::{Duration, Instant};

/// The events a webhook may subscribe to.
pub const EVENTS: &[&str] = &[
    "appointment.created",
    "appointment.updated",
    "appointment.deleted",
    "activity.created",
    "activity.updated",
    "activity.deleted",
    "contact.updated",
    "contact.deleted",
];

/// The retry schedule after the first attempt.
const SCHEDULE: &[u64] = &[5, 30, 120, 600, 3600];

/// For 24 hours after a rotation, deliveries are signed with both secrets.
const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// One event on its way to one webhook.
pub(crate) struct Outgoing {
    webhook_id: String,
    url: String,
    event_id: String,
    event_type: String,
    body: String,
}

fn new_secret(rng: &mut impl Rng) -> String {
    let bytes: [u8; 32] = rng.random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

pub(crate) fn register(s: &mut State, body: &[u8]) -> Answer {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("body is not JSON: {e}"),
            );
        }
    };
    let Some(url) = v["url"].as_str().filter(|u| url::Url::parse(u).is_ok()) else {
        return error(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_request",
            "url: an absolute URL is required",
        );
    };
    let events: Vec<String> = match v["events"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect(),
        _ => {
            return error(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_request",
                "events: a non-empty list is required",
            );
        }
    };
    if let Some(bad) = events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
        return error(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("events: unknown event {bad:?}"),
        );
    }
    let id = format!("wh_{}", s.fresh_id(""));
    let secret = new_secret(&mut s.rng);
    s.webhooks.push(Webhook {
        id: id.clone(),
        url: url.to_owned(),
        events,
        secrets: vec![(secret.clone(), None)],
    });
    Answer::with_body(
        axum::http::StatusCode::CREATED,
        json!({ "id": id, "secret": secret }),
    )
}

pub(crate) fn rotate(s: &mut State, id: &str) -> Answer {
    let secret = new_secret(&mut s.rng);
    let Some(w) = s.webhooks.iter_mut().find(|w| w.id == id) else {
        return error(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("no webhook {id}"),
        );
    };
    for old in &mut w.secrets {
        old.1.get_or_insert(Instant::now() + ROTATION_OVERLAP);
    }
    w.secrets.insert(0, (secret.clone(), None));
    Answer::with_body(axum::http::StatusCode::OK, json!({ "secret": secret }))
}

/// Queues `{kind}.{action}` with `object` for every subscribed webhook.
pub(crate) fn emit(s: &mut State, event_type: &str, object: Value) {
    let event_id = format!("evt_{}", s.fresh_id(""));
    let body = json!({
        "id": event_id,
        "type": event_type,
        "occurred_at": super::fmt_ts(&s.now_stamp()),
        "data": { "object": object },
    })
    .to_string();
    for w in s
        .webhooks
        .iter()
        .filter(|w| w.events.iter().any(|e| e == event_type))
    {
        s.pending_deliveries += 1;
        let _ = s.events.send(Outgoing {
            webhook_id: w.id.clone(),
            url: w.url.clone(),
            event_id: event_id.clone(),
            event_type: event_type.to_owned(),
            body: body.clone(),
        });
    }
}

/// Signs `body` as Standard Webhooks with every secret given.
pub fn signature(secrets: &[String], id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .filter_map(|secret| {
            let key = base64::engine::general_purpose::STANDARD
                .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
                .ok()?;
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
            Some(format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn spawn_dispatcher(
    state: Shared,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Outgoing>,
) {
    tokio::spawn(async move {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        while let Some(out) = rx.recv().await {
            let (jitter, duplicate, dropped, scale) = {
                let mut s = lock(&state);
                let max = s.faults.webhook_jitter_ms;
                let jitter = if max > 0 {
                    s.rng.random_range(0..=max)
                } else {
                    0
                };
                let (dup, drop) = (s.faults.duplicate_webhooks, s.faults.dropped_webhooks);
                let duplicate = roll(&mut s.rng, dup);
                let dropped = roll(&mut s.rng, drop);
                (jitter, duplicate, dropped, s.config.webhook_time_scale)
            };
            let (state, client) = (state.clone(), client.clone());
            tokio::spawn(async move {
                if !dropped {
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                    let delivered = deliver(&state, &client, &out, scale, false).await;
                    if delivered && duplicate {
                        deliver(&state, &client, &out, scale, true).await;
                    }
                }
                lock(&state).pending_deliveries -= 1;
            });
        }
    });
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

async fn deliver(
    state: &Shared,
    client: &Client,
    out: &Outgoing,
    scale: f64,
    duplicate: bool,
) -> bool {
    let timeout = Duration::from_secs_f64((10.0 * scale).max(0.2));
    for attempt in 0..=SCHEDULE.len() {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs_f64(
                SCHEDULE[attempt - 1] as f64 * scale,
            ))
            .await;
        }
        let secrets: Vec<String> = {
            let s = lock(state);
            match s.webhooks.iter().find(|w| w.id == out.webhook_id) {
                Some(w) => w
                    .secrets
                    .iter()
                    .filter(|(_, until)| until.is_none_or(|u| Instant::now() < u))
                    .map(|(s, _)| s.clone())
                    .collect(),
                // The webhook was removed: stop delivering.
                None => return false,
            }
        };
        let ts = chrono::Utc::now().timestamp();
        let req = hyper::Request::post(&out.url)
            .header("content-type", "application/json")
            .header("webhook-id", &out.event_id)
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                signature(&secrets, &out.event_id, ts, &out.body),
            )
            .body(Full::new(Bytes::from(out.body.clone())));
        let status = match req {
            Ok(req) => match tokio::time::timeout(timeout, client.request(req)).await {
                Ok(Ok(resp)) => resp.status().as_u16(),
                _ => 0,
            },
            Err(_) => 0,
        };
        lock(state).deliveries.push(DeliveryAttempt {
            event_id: out.event_id.clone(),
            event_type: out.event_type.clone(),
            webhook_id: out.webhook_id.clone(),
            attempt: attempt as u32 + 1,
            status,
            duplicate,
        });
        if (200..300).contains(&status) {
            return true;
        }
    }
    false
}
