//! Webhook ingress: `POST /hooks/{tenant}/{flow}`.
//!
//! A delivery is checked (tenant and flow known and taking webhooks, body
//! within `max_webhook_bytes`, Standard Webhooks signature with one of the
//! flow's secrets, timestamp within `webhook_tolerance_secs`), then handed
//! to the **inbox writer**, one task that appends every delivery waiting at
//! that moment to the inbox, and the **flusher**, which makes everything
//! appended so far durable with one flush (group commit, pipelined: the
//! next batch is appended while the last is flushed) and only then lets
//! each request answer `2xx`. Repeats of a `webhook-id` already
//! accepted are acknowledged and dropped. The **processor** takes accepted
//! deliveries in order of arrival per (tenant, flow), a batch at a time,
//! through [`Host::deliver_webhooks`], and removes them from the inbox when
//! done; at start it resumes whatever a previous process accepted and did
//! not finish.

use super::{AppState, problem};
use crate::Host;
use crate::state::{InboxEntry, now_ms};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Why a delivery was refused (also the metric's `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A header is missing or malformed.
    Malformed,
    /// The timestamp is too far from our clock.
    StaleTimestamp,
    /// No `v1` signature matches any secret.
    BadSignature,
}

impl Rejection {
    fn label(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::StaleTimestamp => "stale_timestamp",
            Rejection::BadSignature => "bad_signature",
        }
    }
}

/// Checks a Standard Webhooks delivery: `webhook-id`, `webhook-timestamp`
/// within `tolerance` of `now_secs`, and a `v1,` entry of
/// `webhook-signature` (space-separated; every entry is tried) that is the
/// HMAC-SHA256 of `{id}.{timestamp}.{body}` under one of `secrets`
/// (`whsec_` + base64 key, or a bare base64 key). Returns the webhook ID.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[String],
    now_secs: u64,
    tolerance: Duration,
) -> Result<String, Rejection> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(Rejection::Malformed)
    };
    let id = header("webhook-id")?;
    let ts_text = header("webhook-timestamp")?;
    let signatures = header("webhook-signature")?;
    let ts: u64 = ts_text.parse().map_err(|_| Rejection::Malformed)?;
    if ts.abs_diff(now_secs) > tolerance.as_secs() {
        return Err(Rejection::StaleTimestamp);
    }
    // A secret that is no proper key (empty, not base64, too short) signs
    // nothing: an empty HMAC key would let anyone sign.
    let keys: Vec<Vec<u8>> = secrets.iter().filter_map(|s| signing_key(s).ok()).collect();
    for entry in signatures.split_whitespace() {
        let Some(sig) = entry.strip_prefix("v1,") else {
            continue;
        };
        let Ok(sig) = STANDARD.decode(sig) else {
            continue;
        };
        for key in &keys {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
                continue;
            };
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(ts_text.as_bytes());
            mac.update(b".");
            mac.update(body);
            // Constant-time comparison.
            if mac.verify_slice(&sig).is_ok() {
                return Ok(id.to_owned());
            }
        }
    }
    Err(Rejection::BadSignature)
}

/// Shortest signing key accepted, in bytes (Standard Webhooks: 24 to 64).
pub const MIN_KEY_BYTES: usize = 24;
/// Longest signing key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 64;

/// The HMAC key of a Standard Webhooks secret (`whsec_` + base64, or bare
/// base64): 24 to 64 bytes, or why not.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.trim();
    let b64 = b64.strip_prefix("whsec_").unwrap_or(b64);
    let key = STANDARD.decode(b64).map_err(|_| {
        "a webhook signing secret is `whsec_` followed by base64 (or bare base64)".to_owned()
    })?;
    if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
        return Err(format!(
            "a webhook signing secret must decode to {MIN_KEY_BYTES}-{MAX_KEY_BYTES} random bytes, not {}",
            key.len()
        ));
    }
    if key.iter().all(|b| *b == key[0]) {
        return Err("a webhook signing secret must be random, not one byte repeated".into());
    }
    Ok(key)
}

/// A delivery waiting for the inbox writer, with where its answer goes.
pub(crate) type Pending = (InboxEntry, oneshot::Sender<anyhow::Result<Option<u64>>>);

fn count(tenant: &str, flow: &str, result: &str) {
    let (tenant, flow) = crate::metrics::flow_labels(tenant, flow);
    crate::metrics::metrics()
        .webhooks
        .get_or_create(&crate::metrics::WebhookLabels {
            tenant,
            flow,
            result: result.to_owned(),
        })
        .inc();
}

/// `POST /hooks/{tenant}/{flow}`.
#[utoipa::path(post, path = "/hooks/{tenant}/{flow}", tag = "webhooks", security(()),
    summary = "Webhook ingress: Standard Webhooks signatures, no token",
    description = "Checked against the flow's signing secrets, written to the durable inbox, then answered.",
    params(("tenant" = String, Path, description = "The tenant's ID"), ("flow" = String, Path, description = "The flow's name"),
        ("webhook-id" = String, Header, description = "The delivery's ID"),
        ("webhook-timestamp" = String, Header, description = "Epoch seconds"),
        ("webhook-signature" = String, Header, description = "`v1,<base64 HMAC-SHA256>` entries separated by spaces")),
    request_body(content = Object, description = "The vendor's event, any content type"),
    responses((status = 202, body = crate::ops::api::Accepted, description = "Accepted and durable"),
        (status = 200, body = crate::ops::api::Accepted, description = "A repeat of an accepted delivery"),
        (status = 400, body = crate::ops::api::Problem), (status = 401, body = crate::ops::api::Problem),
        (status = 404, body = crate::ops::api::Problem), (status = 413, body = crate::ops::api::Problem),
        (status = 503, body = crate::ops::api::Problem)))]
pub(crate) async fn receive(
    State(app): State<Arc<AppState>>,
    Path((tenant, flow)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let host = &app.host;
    let secrets = match app.cached_secrets(&tenant, &flow) {
        Ok(s) => s,
        Err((status, why)) => {
            // Unknown tenants and flows are not counted under their
            // (caller-chosen) names.
            count("", "", "unknown");
            return problem(status, &why);
        }
    };
    let max = host.config.service.max_webhook_bytes;
    let body = match axum::body::to_bytes(body, max).await {
        Ok(b) => b,
        Err(_) => {
            count(&tenant, &flow, "too_large");
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is larger than {max} bytes"),
            );
        }
    };
    let tolerance = Duration::from_secs(host.config.service.webhook_tolerance_secs);
    let id = match verify(&headers, &body, &secrets, now_ms() / 1000, tolerance) {
        Ok(id) => id,
        Err(r) => {
            count(&tenant, &flow, r.label());
            let (status, why) = match r {
                Rejection::Malformed => (
                    StatusCode::BAD_REQUEST,
                    "webhook-id, webhook-timestamp and webhook-signature are required",
                ),
                Rejection::StaleTimestamp => (
                    StatusCode::UNAUTHORIZED,
                    "webhook-timestamp is too far from our clock",
                ),
                Rejection::BadSignature => (
                    StatusCode::UNAUTHORIZED,
                    "no signature matches this flow's webhook secrets",
                ),
            };
            return problem(status, why);
        }
    };
    let entry = InboxEntry {
        seq: 0,
        tenant: tenant.clone(),
        flow: flow.clone(),
        webhook_id: id,
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
        received_ms: now_ms(),
    };
    let (tx, rx) = oneshot::channel();
    if app.inbox.send((entry, tx)).await.is_err() {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    // Stored: `202`, or `200` for a delivery stored before (a duplicate).
    let stored = |duplicate: bool| {
        count(
            &tenant,
            &flow,
            if duplicate { "duplicate" } else { "accepted" },
        );
        let status = if duplicate {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        let body = crate::ops::api::Accepted {
            accepted: true,
            duplicate,
        };
        (status, axum::Json(body)).into_response()
    };
    let answer = match rx.await {
        Ok(Ok(Some(_))) => stored(false),
        Ok(Ok(None)) => stored(true),
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "writing the webhook inbox");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the delivery could not be stored; retry",
            )
        }
        Err(_) => problem(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    };
    crate::metrics::metrics()
        .webhook_ack_seconds
        .observe(started.elapsed().as_secs_f64());
    answer
}

/// The signing secrets of a flow that takes webhooks, or (404, why).
pub(crate) fn flow_secrets(
    host: &Host,
    tenant: &str,
    flow: &str,
) -> Result<Vec<String>, (StatusCode, String)> {
    let not_found = |why: &str| (StatusCode::NOT_FOUND, why.to_owned());
    let t = host
        .tenant(tenant)
        .filter(|t| t.active)
        .ok_or_else(|| not_found("no such tenant"))?;
    let f = t.flows.get(flow).ok_or_else(|| not_found("no such flow"))?;
    let subscribed = matches!(host.subscription(tenant, flow), Ok(Some(_)));
    if f.source.webhook.is_none() && !subscribed {
        return Err(not_found("this flow takes no webhooks"));
    }
    let secrets = host.webhook_secrets(tenant, flow).unwrap_or_else(|e| {
        tracing::error!(tenant, flow, error = %format!("{e:#}"), "reading the webhook secrets");
        vec![]
    });
    if secrets.is_empty() {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "this flow's webhook secrets are not available".into(),
        ));
    }
    Ok(secrets)
}

/// A batch appended to the inbox, waiting for the flush that makes it
/// durable: (entries, their answers, sequence numbers or why it failed).
type Appended = (
    Vec<InboxEntry>,
    Vec<oneshot::Sender<anyhow::Result<Option<u64>>>>,
    Result<Vec<Option<u64>>, String>,
);

/// The inbox writer: appends every delivery waiting at that moment as one
/// batch (dropping repeats of known webhook IDs; one thread, so check and
/// append cannot race) and hands the batch to the flusher. It appends the
/// next batch while the flusher syncs the last: group commit, pipelined.
///
/// Writer and flusher are threads of their own, not tasks: a delivery then
/// crosses three threads from its request to its answer (handler, writer,
/// flusher) instead of twice as many hops through the async runtime and
/// its blocking pool, each of which waits for a core when both are busy.
/// Returns once the inbox is closed and everything in it answered.
pub(crate) async fn writer(
    host: Arc<Host>,
    mut rx: mpsc::Receiver<Pending>,
    accepted: mpsc::UnboundedSender<InboxEntry>,
) {
    const MAX_BATCH: usize = 1024;
    let (to_flusher, from_writer) = std::sync::mpsc::channel::<Appended>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let state = host.state.clone();
    let flusher = std::thread::Builder::new()
        .name("weft-inbox-flush".into())
        .spawn(move || {
            flusher(&*state, from_writer, accepted);
            let _ = done_tx.send(());
        });
    let state = host.state.clone();
    let writer = std::thread::Builder::new()
        .name("weft-inbox-write".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let (entries, answers): (Vec<InboxEntry>, Vec<_>) = batch.into_iter().unzip();
                let seqs = state.inbox_append(&entries);
                let item = (entries, answers, seqs.map_err(|e| format!("{e:#}")));
                if to_flusher.send(item).is_err() {
                    break;
                }
            }
        });
    match (writer, flusher) {
        (Ok(_), Ok(_)) => {
            let _ = done_rx.await;
        }
        (w, f) => {
            let e = w
                .err()
                .or(f.err())
                .map(|e| e.to_string())
                .unwrap_or_default();
            tracing::error!(error = %e, "starting the webhook inbox threads; webhooks are not accepted");
        }
    }
}

/// Syncs what the writer appended (everything appended by then, with one
/// sync), then answers each delivery and passes the new ones to the
/// processor, in order of arrival.
fn flusher(
    state: &dyn crate::state::StateStore,
    rx: std::sync::mpsc::Receiver<Appended>,
    accepted: mpsc::UnboundedSender<InboxEntry>,
) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        batches.extend(rx.try_iter());
        let flushed = state.inbox_sync().map_err(|e| format!("{e:#}"));
        for (entries, answers, seqs) in batches {
            let outcome = flushed.clone().and(seqs);
            match outcome {
                Ok(seqs) => {
                    for ((mut entry, answer), seq) in entries.into_iter().zip(answers).zip(seqs) {
                        if let Some(seq) = seq {
                            entry.seq = seq;
                            crate::metrics::metrics().webhook_inbox.inc();
                            let _ = accepted.send(entry);
                        }
                        let _ = answer.send(Ok(seq));
                    }
                }
                Err(e) => {
                    for answer in answers {
                        let _ = answer.send(Err(anyhow::anyhow!("{e}")));
                    }
                }
            }
        }
    }
}

/// The processor: delivers accepted webhooks in order of arrival per
/// (tenant, flow), up to `BATCH` at a time (gathered for up to `LINGER`), flows concurrently (a run's
/// fixed costs, instances and commits, are shared by the batch). A batch
/// whose run fails is retried with backoff; a paused flow's deliveries wait
/// for its resume; after `ATTEMPTS` the
/// deliveries are dropped with an error (the scheduled poll is the safety
/// net) so that one bad delivery cannot stall its flow.
pub(crate) async fn processor(host: Arc<Host>, mut accepted: mpsc::UnboundedReceiver<InboxEntry>) {
    use futures::StreamExt;
    const BATCH: usize = 500;
    const ATTEMPTS: u32 = 5;
    const LINGER: Duration = Duration::from_millis(50);
    // How often waiting deliveries of paused flows look for a resume.
    const PAUSE_CHECK: Duration = Duration::from_millis(500);
    type Key = (String, String);
    let mut queues: HashMap<Key, VecDeque<InboxEntry>> = HashMap::new();
    // When the oldest waiting delivery of each flow arrived.
    let mut arrived: HashMap<Key, Instant> = HashMap::new();
    let mut busy: std::collections::HashSet<Key> = Default::default();
    // Resume what an earlier process accepted.
    match host.state.inbox_pending() {
        Ok(pending) => {
            crate::metrics::metrics()
                .webhook_inbox
                .set(pending.len() as i64);
            for e in pending {
                queues
                    .entry((e.tenant.clone(), e.flow.clone()))
                    .or_default()
                    .push_back(e);
            }
        }
        Err(e) => tracing::error!(error = %format!("{e:#}"), "reading the webhook inbox"),
    }
    let mut running = futures::stream::FuturesUnordered::new();
    let bound = host.config.max_concurrent_runs.max(1);
    // Replicas sharing the state renew their claims on what they hold and
    // take over the deliveries of a replica that stopped renewing.
    let shared = host.state.replica().is_some();
    let mut adopt = tokio::time::interval(host.state.lease_time() / 3);
    adopt.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Start every idle flow that has deliveries, within the bound: at
        // once when a full batch waits, else once its oldest delivery has
        // waited `LINGER` (under load, runs carry many deliveries instead
        // of paying a run's fixed costs for each few).
        let now = Instant::now();
        // A paused flow's deliveries wait (accepted and durable) until it
        // is resumed.
        let paused = |k: &Key| host.flow(&k.0, &k.1).is_ok_and(|f| f.paused);
        let ready: Vec<Key> = queues
            .iter()
            .filter(|(k, q)| {
                !busy.contains(*k)
                    && !paused(k)
                    && q.front().is_some_and(|_| {
                        q.len() >= BATCH
                            || arrived
                                .get(*k)
                                .is_none_or(|t| now.duration_since(*t) >= LINGER)
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in ready {
            if running.len() >= bound {
                break;
            }
            let q = queues.get_mut(&key).expect("listed above");
            let n = q.len().min(BATCH);
            let batch: Vec<InboxEntry> = q.drain(..n).collect();
            if q.is_empty() {
                arrived.remove(&key);
            } else {
                arrived.insert(key.clone(), now);
            }
            busy.insert(key.clone());
            let host = host.clone();
            let batch_key = key.clone();
            let batch_run = async move {
                let mut attempt = 0;
                let outcome = loop {
                    attempt += 1;
                    let deliveries = batch
                        .iter()
                        .map(|e| (e.headers.clone(), e.body.clone()))
                        .collect();
                    match host.deliver_webhooks(&key.0, &key.1, deliveries).await {
                        Ok(run) if run.outcome == crate::state::RunOutcome::Succeeded => {
                            break Ok(());
                        }
                        Ok(run) if attempt < ATTEMPTS => {
                            tracing::warn!(tenant = %key.0, flow = %key.1, attempt, error = ?run.error, "webhook deliveries failed; retrying");
                        }
                        Ok(run) => break Err(run.error.unwrap_or_default()),
                        Err(e) => break Err(format!("{e:#}")),
                    }
                    tokio::time::sleep(Duration::from_millis(500 << attempt.min(6))).await;
                };
                if let Err(e) = &outcome {
                    tracing::error!(tenant = %key.0, flow = %key.1, deliveries = batch.len(), error = %e, "webhook deliveries dropped; the scheduled poll will pick up their changes");
                }
                let seqs: Vec<u64> = batch.iter().map(|e| e.seq).collect();
                if let Err(e) = host.state.inbox_done(&seqs) {
                    tracing::error!(error = %format!("{e:#}"), "updating the webhook inbox");
                }
                crate::metrics::metrics()
                    .webhook_inbox
                    .dec_by(seqs.len() as i64);
                key
            };
            running
                .push(async move { super::on_its_own_task(batch_run).await.unwrap_or(batch_key) });
        }
        let held = queues.keys().any(|k| !busy.contains(k) && paused(k));
        let lingering = arrived
            .iter()
            .filter(|(k, _)| !busy.contains(*k) && !paused(k))
            .map(|(_, t)| *t + LINGER)
            .chain(held.then_some(now + PAUSE_CHECK))
            .min();
        tokio::select! {
            _ = tokio::time::sleep_until(lingering.unwrap_or(now + Duration::from_secs(3600)).into()), if lingering.is_some() && running.len() < bound => {}
            Some(key) = running.next(), if !running.is_empty() => {
                busy.remove(&key);
                if queues.get(&key).is_some_and(VecDeque::is_empty) {
                    queues.remove(&key);
                }
            }
            _ = adopt.tick(), if shared => {
                match host.state.inbox_adopt() {
                    Ok(adopted) => {
                        if !adopted.is_empty() {
                            tracing::warn!(deliveries = adopted.len(), "took over webhook deliveries another replica left");
                        }
                        for e in adopted {
                            crate::metrics::metrics().webhook_inbox.inc();
                            let key = (e.tenant.clone(), e.flow.clone());
                            arrived.entry(key.clone()).or_insert_with(Instant::now);
                            queues.entry(key).or_default().push_back(e);
                        }
                    }
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "renewing webhook claims"),
                }
            }
            e = accepted.recv() => match e {
                Some(e) => {
                    let key = (e.tenant.clone(), e.flow.clone());
                    arrived.entry(key.clone()).or_insert_with(Instant::now);
                    queues.entry(key).or_default().push_back(e);
                }
                None => {
                    // Shutting down: finish what runs; the rest stays in the
                    // inbox for the next start.
                    while running.next().await.is_some() {}
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret_b64: &str, id: &str, ts: u64, body: &[u8]) -> String {
        let key = STANDARD.decode(secret_b64).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    fn headers(id: &str, ts: u64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        h.insert("webhook-signature", sig.parse().unwrap());
        h
    }

    const OLD: &str = "b2xkLXNlY3JldC1vbGQtc2VjcmV0LW9sZC1zZWNyZXQh";
    const NEW: &str = "bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQh";
    const T: u64 = 1_800_000_000;
    const TOL: Duration = Duration::from_secs(300);

    #[test]
    fn a_signature_with_any_secret_and_any_entry_verifies() {
        let body = b"{\"id\":\"evt_1\"}";
        let during_rotation = format!(
            "{} {}",
            sign(OLD, "evt_1", T, body),
            sign(NEW, "evt_1", T, body)
        );
        let secrets = vec![format!("whsec_{NEW}")];
        assert_eq!(
            verify(
                &headers("evt_1", T, &during_rotation),
                body,
                &secrets,
                T,
                TOL
            ),
            Ok("evt_1".into())
        );
        // Only the old one signed, we hold only the new one: refused.
        let old_only = sign(OLD, "evt_1", T, body);
        assert_eq!(
            verify(&headers("evt_1", T, &old_only), body, &secrets, T, TOL),
            Err(Rejection::BadSignature)
        );
    }

    /// Issue 18: `PUT …/secrets/hook {"value": ""}` was accepted, and a
    /// delivery signed with HMAC under the empty key then got 202.
    #[test]
    fn an_empty_or_short_secret_signs_nothing() {
        let body = b"{}";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"").unwrap();
        mac.update(format!("evt_1.{T}.").as_bytes());
        mac.update(body);
        let forged = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        for secret in ["", "whsec_", "   ", "whsec_c2hvcnQ="] {
            assert_eq!(
                verify(
                    &headers("evt_1", T, &forged),
                    body,
                    &[secret.to_owned()],
                    T,
                    TOL
                ),
                Err(Rejection::BadSignature),
                "{secret:?}"
            );
        }
        assert!(signing_key("").is_err());
        assert!(signing_key("whsec_not base64!").is_err());
        assert!(
            signing_key(&STANDARD.encode([7u8; 32])).is_err(),
            "one byte repeated"
        );
        assert!(signing_key(&STANDARD.encode([1u8; 23])).is_err());
        assert_eq!(signing_key(&format!("whsec_{NEW}")).unwrap().len(), 33);
    }

    #[test]
    fn forged_changed_and_stale_deliveries_are_refused() {
        let body = b"{}";
        let secrets = vec![format!("whsec_{NEW}")];
        let good = sign(NEW, "evt_1", T, body);
        // Another body under the same signature.
        assert_eq!(
            verify(&headers("evt_1", T, &good), b"{ }", &secrets, T, TOL),
            Err(Rejection::BadSignature)
        );
        // Another ID under the same signature.
        assert_eq!(
            verify(&headers("evt_2", T, &good), body, &secrets, T, TOL),
            Err(Rejection::BadSignature)
        );
        // Replayed six minutes later.
        assert_eq!(
            verify(&headers("evt_1", T, &good), body, &secrets, T + 360, TOL),
            Err(Rejection::StaleTimestamp)
        );
        // From the future.
        assert_eq!(
            verify(&headers("evt_1", T + 360, &good), body, &secrets, T, TOL),
            Err(Rejection::StaleTimestamp)
        );
        // Missing headers.
        assert_eq!(
            verify(&HeaderMap::new(), body, &secrets, T, TOL),
            Err(Rejection::Malformed)
        );
        // A v2 entry or garbage is skipped, not accepted.
        assert_eq!(
            verify(
                &headers("evt_1", T, "v2,abc garbage"),
                body,
                &secrets,
                T,
                TOL
            ),
            Err(Rejection::BadSignature)
        );
    }
}
