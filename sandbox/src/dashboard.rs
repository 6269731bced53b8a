//! The touch-points dashboard of `../shared/specs/our-app.md` §2: idempotent
//! `PUT`/`DELETE` of touch-points by `(source, external_id)`, per-day counts
//! in UTC, per-tenant bearer tokens (a token sees only its tenant), `422` on
//! validation errors, and a fault profile (`503`/`429` with `Retry-After`,
//! latency). `GET /` is an HTML page of every tenant's touch-points per user
//! and day, for a person to look at; `/_sandbox/` holds the controls.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, put};
use chrono::{DateTime, NaiveDate, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The fault profile, settable with `PUT /_sandbox/faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardFaults {
    /// Share of API requests answered `503` with `Retry-After: 1`.
    pub error_503: f64,
    /// Share of API requests answered `429` with `Retry-After: 1`.
    pub error_429: f64,
    /// Latency added to every API request, in milliseconds.
    pub latency_ms: u64,
}

/// One stored touch-point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TouchPoint {
    /// Our user's email.
    pub user_email: String,
    /// `email` or `phone`.
    pub channel: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// When (RFC 3339).
    pub occurred_at: DateTime<chrono::FixedOffset>,
    /// The customer.
    pub contact: ContactInfo,
}

/// The customer of a touch-point; all three keys must be present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactInfo {
    /// Name, or null.
    pub name: Option<String>,
    /// Email, or null.
    pub email: Option<String>,
    /// Phone, or null.
    pub phone: Option<String>,
}

/// One API request received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DashRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The tenant the token belongs to, if any.
    pub tenant: Option<String>,
    /// Status answered.
    pub status: u16,
}

struct DashState {
    tokens: HashMap<String, String>,
    data: BTreeMap<String, BTreeMap<(String, String), TouchPoint>>,
    faults: DashboardFaults,
    requests: Vec<DashRequest>,
    rng: StdRng,
}

type Shared = Arc<Mutex<DashState>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, DashState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running dashboard.
pub struct DashboardSandbox {
    addr: SocketAddr,
    state: Shared,
    _serving: crate::Serving,
}

impl DashboardSandbox {
    /// Serves on `listen`; `tokens` maps bearer tokens to tenant IDs.
    pub async fn start(
        tokens: HashMap<String, String>,
        listen: SocketAddr,
    ) -> anyhow::Result<Self> {
        let state: Shared = Arc::new(Mutex::new(DashState {
            tokens,
            data: BTreeMap::new(),
            faults: DashboardFaults::default(),
            requests: Vec::new(),
            rng: StdRng::seed_from_u64(7),
        }));
        let app = axum::Router::new()
            .route("/", get(page))
            .route("/v1/touchpoints/{source}/{id}", put(upsert).delete(remove))
            .route("/v1/dashboard/touchpoints", get(counts))
            .route("/_sandbox/faults", get(get_faults).put(put_faults))
            .route("/_sandbox/requests", get(get_requests))
            .route("/_sandbox/touchpoints", get(dump))
            .with_state(state.clone());
        let (addr, serving) = crate::Serving::bind(listen, app).await?;
        Ok(DashboardSandbox {
            addr,
            state,
            _serving: serving,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every tenant's touch-points, `(source, external_id)` → touch-point.
    pub fn touchpoints(&self, tenant: &str) -> BTreeMap<(String, String), TouchPoint> {
        lock(&self.state)
            .data
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }

    /// The requests received.
    pub fn requests(&self) -> Vec<DashRequest> {
        lock(&self.state).requests.clone()
    }
}

fn err(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message.into() } })),
    )
        .into_response()
}

/// Authenticates and applies faults; `Ok(tenant)` or the answer to send.
async fn gate(
    state: &Shared,
    headers: &HeaderMap,
    method: &str,
    path: String,
) -> Result<String, Response> {
    let latency = lock(state).faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let mut s = lock(state);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let tenant = token.and_then(|t| s.tokens.get(t).cloned());
    let (e503, e429) = (s.faults.error_503, s.faults.error_429);
    let status = if tenant.is_none() {
        StatusCode::UNAUTHORIZED
    } else if crate::roll(&mut s.rng, e503) {
        StatusCode::SERVICE_UNAVAILABLE
    } else if crate::roll(&mut s.rng, e429) {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::OK
    };
    if status != StatusCode::OK {
        s.requests.push(DashRequest {
            method: method.to_owned(),
            path,
            tenant: tenant.clone(),
            status: status.as_u16(),
        });
        let mut r = match status {
            StatusCode::UNAUTHORIZED => {
                err(status, "unauthorized", "a valid bearer token is required")
            }
            _ => err(status, "unavailable", "try again later"),
        };
        if status != StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::RETRY_AFTER, "1".parse().expect("valid header"));
        }
        return Err(r);
    }
    Ok(tenant.expect("checked above"))
}

fn log(state: &Shared, method: &str, path: String, tenant: &str, status: StatusCode) {
    lock(state).requests.push(DashRequest {
        method: method.to_owned(),
        path,
        tenant: Some(tenant.to_owned()),
        status: status.as_u16(),
    });
}

fn validate(tp: &TouchPoint) -> Result<(), String> {
    if !tp.user_email.contains('@') {
        return Err(format!(
            "user_email: {:?} is not an email address",
            tp.user_email
        ));
    }
    if !["email", "phone"].contains(&tp.channel.as_str()) {
        return Err(format!(
            "channel: must be email or phone, not {:?}",
            tp.channel
        ));
    }
    if !["inbound", "outbound"].contains(&tp.direction.as_str()) {
        return Err(format!(
            "direction: must be inbound or outbound, not {:?}",
            tp.direction
        ));
    }
    Ok(())
}

async fn upsert(
    State(state): State<Shared>,
    Path((source, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v1/touchpoints/{source}/{id}");
    let tenant = match gate(&state, &headers, "PUT", path.clone()).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    // All three contact keys must be present (null when unknown).
    let parsed: Result<TouchPoint, String> = serde_json::from_slice::<Value>(&body)
        .map_err(|e| format!("body is not JSON: {e}"))
        .and_then(|v| {
            let c = &v["contact"];
            for k in ["name", "email", "phone"] {
                if c.get(k).is_none() {
                    return Err(format!("contact.{k}: required (null when unknown)"));
                }
            }
            serde_json::from_value(v).map_err(|e| e.to_string())
        })
        .and_then(|tp: TouchPoint| validate(&tp).map(|()| tp));
    let tp = match parsed {
        Ok(tp) => tp,
        Err(m) => {
            log(
                &state,
                "PUT",
                path,
                &tenant,
                StatusCode::UNPROCESSABLE_ENTITY,
            );
            return err(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", m);
        }
    };
    let existed = lock(&state)
        .data
        .entry(tenant.clone())
        .or_default()
        .insert((source, id), tp.clone())
        .is_some();
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    log(&state, "PUT", path, &tenant, status);
    (status, Json(json!(tp))).into_response()
}

async fn remove(
    State(state): State<Shared>,
    Path((source, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/touchpoints/{source}/{id}");
    let tenant = match gate(&state, &headers, "DELETE", path.clone()).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let removed = lock(&state)
        .data
        .get_mut(&tenant)
        .and_then(|d| d.remove(&(source, id)))
        .is_some();
    let status = if removed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    };
    log(&state, "DELETE", path, &tenant, status);
    if removed {
        status.into_response()
    } else {
        err(status, "not_found", "no such touch-point")
    }
}

#[derive(Deserialize)]
struct CountQuery {
    user_email: String,
    from: Option<String>,
    to: Option<String>,
}

/// Per-day counts of `user_email` in `tenant`, UTC days ascending.
fn tally(
    data: Option<&BTreeMap<(String, String), TouchPoint>>,
    user: &str,
) -> BTreeMap<NaiveDate, (u64, u64)> {
    let mut days: BTreeMap<NaiveDate, (u64, u64)> = BTreeMap::new();
    for tp in data.into_iter().flat_map(|d| d.values()) {
        if !tp.user_email.eq_ignore_ascii_case(user) {
            continue;
        }
        let day = tp.occurred_at.with_timezone(&Utc).date_naive();
        let e = days.entry(day).or_default();
        if tp.channel == "email" {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    days
}

async fn counts(
    State(state): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<CountQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let tenant = match gate(&state, &headers, "GET", "/v1/dashboard/touchpoints".into()).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Ok(Query(q)) = q else {
        return err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "user_email is required",
        );
    };
    let parse = |s: &Option<String>, name: &str| -> Result<Option<NaiveDate>, String> {
        s.as_deref()
            .map(|d| {
                NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| format!("{name}: expected YYYY-MM-DD"))
            })
            .transpose()
    };
    let (from, to) = match (parse(&q.from, "from"), parse(&q.to, "to")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(m), _) | (_, Err(m)) => {
            return err(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", m);
        }
    };
    let days = tally(lock(&state).data.get(&tenant), &q.user_email);
    let mut total = (0, 0);
    let list: Vec<Value> = days
        .into_iter()
        .filter(|(d, _)| from.is_none_or(|f| *d >= f) && to.is_none_or(|t| *d <= t))
        .map(|(d, (e, p))| {
            total.0 += e;
            total.1 += p;
            json!({ "date": d.to_string(), "email": e, "phone": p })
        })
        .collect();
    log(
        &state,
        "GET",
        "/v1/dashboard/touchpoints".into(),
        &tenant,
        StatusCode::OK,
    );
    Json(json!({ "user_email": q.user_email, "days": list, "total": { "email": total.0, "phone": total.1 } })).into_response()
}

async fn get_faults(State(s): State<Shared>) -> Json<DashboardFaults> {
    Json(lock(&s).faults.clone())
}

async fn put_faults(
    State(s): State<Shared>,
    Json(f): Json<DashboardFaults>,
) -> Json<DashboardFaults> {
    lock(&s).faults = f.clone();
    Json(f)
}

async fn get_requests(State(s): State<Shared>) -> Json<Value> {
    Json(json!(lock(&s).requests))
}

async fn dump(State(s): State<Shared>) -> Json<Value> {
    let st = lock(&s);
    let out: BTreeMap<&String, Vec<Value>> = st
        .data
        .iter()
        .map(|(t, d)| {
            (
                t,
                d.iter()
                    .map(|((src, id), tp)| json!({ "source": src, "external_id": id, "touchpoint": tp }))
                    .collect(),
            )
        })
        .collect();
    Json(json!(out))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn page(State(s): State<Shared>) -> Html<String> {
    let st = lock(&s);
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>Touch-points</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}\
         td,th{border:1px solid #ccc;padding:.3em .8em;text-align:right}th:first-child,td:first-child{text-align:left}</style>\
         </head><body><h1>Touch-points by user and day (UTC)</h1>",
    );
    if st.data.is_empty() {
        h.push_str("<p>No touch-points yet.</p>");
    }
    for (tenant, data) in &st.data {
        let _ = write!(h, "<h2>Tenant {}</h2>", escape(tenant));
        let mut users: Vec<String> = data.values().map(|t| t.user_email.to_lowercase()).collect();
        users.sort();
        users.dedup();
        for user in users {
            let days = tally(Some(data), &user);
            let _ = write!(
                h,
                "<h3>{}</h3><table><tr><th>day</th><th>email</th><th>phone</th></tr>",
                escape(&user)
            );
            for (d, (e, p)) in days {
                let _ = write!(h, "<tr><td>{d}</td><td>{e}</td><td>{p}</td></tr>");
            }
            h.push_str("</table>");
        }
    }
    h.push_str("</body></html>");
    Html(h)
}
