//! The public API under `/api/v1`. Every request goes through the same steps
//! in the order a real gateway applies them: logged, delayed by the fault
//! profile's latency, authenticated, rate-limited per credential, maybe
//! failed by the fault profile, answered, and maybe cut short.

use super::answer::{Answer, error};
use super::model::Kind;
use super::{CursorState, LoggedRequest, Shared, State, TokenInfo, lock, webhooks};
use crate::{Bucket, roll};
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn ok(body: Value) -> Answer {
    Answer::with_body(StatusCode::OK, body)
}

/// One record as JSON, or `404 not_found` naming the `what` asked for.
fn one(found: Option<impl serde::Serialize>, what: &str, id: &str) -> Answer {
    match found {
        Some(v) => ok(json!(v)),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} {id}"),
        ),
    }
}

fn bad(message: impl Into<String>) -> Answer {
    error(StatusCode::BAD_REQUEST, "invalid_request", message)
}

fn auth_kind(h: &HeaderMap) -> &'static str {
    if h.contains_key(header::AUTHORIZATION) {
        "bearer"
    } else if h.contains_key("x-acme-api-key") {
        "api_key"
    } else {
        "none"
    }
}

pub(crate) async fn handle(AxState(state): AxState<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path_q = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let body = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let latency = lock(&state).faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let (answer, malformed) = {
        let mut s = lock(&state);
        let answer = route(&mut s, &parts.method, &parts.uri, &parts.headers, &body);
        let malformed = answer.status.is_success() && {
            let share = s.faults.malformed_json;
            roll(&mut s.rng, share)
        };
        s.requests.push(LoggedRequest {
            method: parts.method.to_string(),
            path: path_q,
            auth: auth_kind(&parts.headers).to_owned(),
            status: answer.status.as_u16(),
        });
        (answer, malformed)
    };
    let mut text = if answer.status == StatusCode::NO_CONTENT {
        String::new()
    } else {
        answer.body.to_string()
    };
    if malformed {
        text.truncate(text.len() / 2);
    }
    let mut resp = Response::builder()
        .status(answer.status)
        .header(header::CONTENT_TYPE, "application/json");
    for (k, v) in answer.headers {
        resp = resp.header(k, v);
    }
    resp.body(Body::from(text)).expect("valid response")
}

fn route(
    s: &mut State,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Answer {
    let Some(path) = uri.path().strip_prefix("/api/v1") else {
        if uri.path() == "/oauth/token" && method == Method::POST {
            return token(s, headers, body);
        }
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route {}", uri.path()),
        );
    };
    let path = path.trim_end_matches('/');
    if path == "/oauth/token" {
        return if method == Method::POST {
            token(s, headers, body)
        } else {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "use POST",
            )
        };
    }
    let credential = match authenticate(s, headers) {
        Ok(c) => c,
        Err(a) => return a,
    };
    let (rate, burst) = (s.faults.rate_per_second, s.faults.rate_burst);
    let bucket = s
        .buckets
        .entry(credential)
        .or_insert_with(|| Bucket::full(burst));
    let taken = bucket.take(rate, burst);
    let reset = SystemTime::now() + bucket.until_full(rate, burst);
    let limit_headers = vec![
        ("x-ratelimit-limit", burst.to_string()),
        ("x-ratelimit-remaining", bucket.remaining().to_string()),
        (
            "x-ratelimit-reset",
            reset
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .to_string(),
        ),
    ];
    let mut answer = match taken {
        Err(wait) => {
            let mut a = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "rate limit exceeded",
            );
            a.headers.push((
                "retry-after",
                wait.as_secs_f64().ceil().max(1.0).to_string(),
            ));
            a
        }
        Ok(()) => {
            let (e500, e503) = (s.faults.error_500, s.faults.error_503);
            if roll(&mut s.rng, e500) {
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "something broke",
                )
            } else if roll(&mut s.rng, e503) {
                let mut a = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "try again later",
                );
                a.headers.push(("retry-after", "1".into()));
                a
            } else {
                endpoint(s, method, path, uri.query().unwrap_or(""), body)
            }
        }
    };
    answer.headers.extend(limit_headers);
    answer
}

fn authenticate(s: &mut State, headers: &HeaderMap) -> Result<String, Answer> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().unwrap_or("");
        let token = v.strip_prefix("Bearer ").unwrap_or("");
        if s.faults.token_failures > 0
            && let Some(t) = s.tokens.get_mut(token)
        {
            s.faults.token_failures -= 1;
            t.revoked = true;
        }
        return match s.tokens.get(token) {
            Some(t) if !t.revoked && Instant::now() < t.expires => {
                Ok(format!("client:{}", t.client_id))
            }
            _ => Err(error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token is invalid, expired or revoked",
            )),
        };
    }
    if let Some(v) = headers.get("x-acme-api-key") {
        return if v.to_str().ok() == Some(s.config.api_key.as_str()) {
            Ok(format!("key:{}", s.config.api_key))
        } else {
            Err(error(
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "unknown API key",
            ))
        };
    }
    Err(error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "no credentials",
    ))
}

fn token(s: &mut State, headers: &HeaderMap, body: &[u8]) -> Answer {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let (mut id, mut secret) = (
        form.get("client_id").cloned(),
        form.get("client_secret").cloned(),
    );
    // RFC 6749 also allows the client to authenticate with HTTP Basic.
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        && let Some((i, p)) = basic.split_once(':')
    {
        id = Some(i.to_owned());
        secret = Some(p.to_owned());
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return bad("grant_type must be client_credentials");
    }
    if id.as_deref() != Some(s.config.client_id.as_str())
        || secret.as_deref() != Some(s.config.client_secret.as_str())
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    let lifetime = s.faults.token_lifetime_secs;
    let token = format!("at_{}", s.fresh_id(""));
    s.tokens.insert(
        token.clone(),
        TokenInfo {
            client_id: s.config.client_id.clone(),
            expires: Instant::now() + Duration::from_secs(lifetime),
            revoked: false,
        },
    );
    ok(json!({ "access_token": token, "token_type": "Bearer", "expires_in": lifetime }))
}

fn parse_ts(field: &str, v: &str) -> Result<DateTime<Utc>, Answer> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            bad(format!(
                "{field}: {v:?} is not an RFC 3339 timestamp ({e}); encode `+` as %2B"
            ))
        })
}

fn endpoint(s: &mut State, method: &Method, path: &str, query: &str, body: &[u8]) -> Answer {
    let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["users"]) => ok(json!({ "data": s.users })),
        ("GET", ["contacts"]) if q.contains_key("ids") => {
            let ids: Vec<&str> = q["ids"].split(',').filter(|x| !x.is_empty()).collect();
            if ids.len() > 50 {
                return bad(format!("ids: at most 50 IDs per call, got {}", ids.len()));
            }
            let data: Vec<&super::model::Contact> =
                ids.iter().filter_map(|id| s.contacts.get(*id)).collect();
            ok(json!({ "data": data }))
        }
        ("GET", ["contacts"]) => list(s, Kind::Contacts, &q),
        ("GET", ["appointments"]) => list(s, Kind::Appointments, &q),
        ("GET", ["activities"]) => list(s, Kind::Activities, &q),
        ("GET", ["contacts", id]) => one(s.contacts.get(*id), "contact", id),
        ("GET", ["appointments", id]) => one(s.appointments.get(*id), "appointment", id),
        ("POST", ["webhooks"]) => webhooks::register(s, body),
        ("GET", ["webhooks"]) => ok(json!({ "data": s.webhooks })),
        ("DELETE", ["webhooks", id]) => {
            let before = s.webhooks.len();
            s.webhooks.retain(|w| w.id != *id);
            if s.webhooks.len() < before {
                Answer::with_body(StatusCode::NO_CONTENT, Value::Null)
            } else {
                error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no webhook {id}"),
                )
            }
        }
        ("POST", ["webhooks", id, "rotate"]) => webhooks::rotate(s, id),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route {method} {path}"),
        ),
    }
}

/// The IDs of `items` (ID, when deleted) that a listing shows: not deleted,
/// or deleted after `horizon`.
fn listed_ids<'a>(
    items: impl Iterator<Item = (&'a String, Option<DateTime<FixedOffset>>)>,
    horizon: DateTime<Utc>,
) -> Vec<String> {
    items
        .filter(|(_, deleted)| deleted.is_none_or(|d| d.with_timezone(&Utc) > horizon))
        .map(|(id, _)| id.clone())
        .collect()
}

/// The instant and ID a listed record sorts by, and whether it passes the
/// filters.
fn sort_key(
    s: &State,
    kind: Kind,
    id: &str,
    types: Option<&[String]>,
) -> Option<(DateTime<Utc>, String)> {
    let updated = match kind {
        Kind::Contacts => s.contacts.get(id)?.updated_at,
        Kind::Appointments => s.appointments.get(id)?.updated_at,
        Kind::Activities => {
            let a = s.activities.get(id)?;
            if let Some(t) = types
                && !t.contains(&a.kind)
            {
                return None;
            }
            a.updated_at
        }
    };
    Some((updated.with_timezone(&Utc), id.to_owned()))
}

fn record_json(s: &State, kind: Kind, id: &str) -> Value {
    match kind {
        Kind::Contacts => json!(s.contacts[id]),
        Kind::Appointments => json!(s.appointments[id]),
        Kind::Activities => json!(s.activities[id]),
    }
}

fn list(s: &mut State, kind: Kind, q: &HashMap<String, String>) -> Answer {
    let ttl = Duration::from_secs(s.faults.cursor_ttl_secs);
    let cursor = if let Some(c) = q.get("cursor") {
        // A cursor continues the listing that issued it; other filters are ignored.
        match s.cursors.get(c) {
            Some(st) if st.issued.elapsed() <= ttl && st.kind == kind => CursorState {
                kind,
                since: st.since,
                types: st.types.clone(),
                after: st.after.clone(),
                limit: st.limit,
                issued: st.issued,
            },
            Some(st) if st.kind == kind => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "cursor_expired",
                    "the cursor has expired; restart from updated_since",
                );
            }
            _ => return bad("cursor: unknown cursor"),
        }
    } else {
        let since = match q.get("updated_since") {
            Some(v) => match parse_ts("updated_since", v) {
                Ok(t) => Some(t),
                Err(a) => return a,
            },
            None => None,
        };
        let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
            None => 50,
            Some(Ok(l)) if (1..=200).contains(&l) => l,
            Some(_) => return bad("limit: must be an integer from 1 to 200"),
        };
        let types = match (kind, q.get("types")) {
            (Kind::Activities, Some(t)) => {
                let t: Vec<String> = t.split(',').map(str::to_owned).collect();
                if let Some(bad_type) = t
                    .iter()
                    .find(|x| !["email", "call", "meeting", "note"].contains(&x.as_str()))
                {
                    return bad(format!("types: unknown type {bad_type:?}"));
                }
                Some(t)
            }
            _ => None,
        };
        CursorState {
            kind,
            since,
            types,
            after: None,
            limit: limit.max(1),
            issued: Instant::now(),
        }
    };
    // Listed: not deleted more than 30 days ago.
    let horizon = Utc::now() - chrono::Duration::days(30);
    let ids: Vec<String> = match kind {
        Kind::Contacts => listed_ids(s.contacts.values().map(|c| (&c.id, c.deleted_at)), horizon),
        Kind::Appointments => listed_ids(
            s.appointments.values().map(|a| (&a.id, a.deleted_at)),
            horizon,
        ),
        Kind::Activities => listed_ids(
            s.activities.values().map(|a| (&a.id, a.deleted_at)),
            horizon,
        ),
    };
    let mut keys: Vec<(DateTime<Utc>, String)> = ids
        .iter()
        .filter_map(|id| sort_key(s, kind, id, cursor.types.as_deref()))
        .filter(|(t, _)| cursor.since.is_none_or(|since| *t >= since))
        .filter(|k| cursor.after.as_ref().is_none_or(|after| k > after))
        .collect();
    keys.sort();
    let more = keys.len() > cursor.limit;
    keys.truncate(cursor.limit);
    let data: Vec<Value> = keys
        .iter()
        .map(|(_, id)| record_json(s, kind, id))
        .collect();
    let next = if more {
        let token = format!("cur_{}", s.fresh_id(""));
        s.cursors.insert(
            token.clone(),
            CursorState {
                after: keys.last().cloned(),
                issued: Instant::now(),
                ..cursor
            },
        );
        Value::String(token)
    } else {
        Value::Null
    };
    ok(json!({ "data": data, "next_cursor": next }))
}
