//! The control API under `/_sandbox/`, for tests and the demo. Not part of
//! Acme's API and not authenticated.
//!
//! | route | what |
//! |---|---|
//! | `POST /_sandbox/{contacts,appointments,activities}` | create (fields you omit get defaults); fires `*.created` |
//! | `PATCH /_sandbox/{kind}/{id}` | change fields; `updated_at` moves; fires `*.updated` |
//! | `DELETE /_sandbox/{kind}/{id}` | soft-delete (`deleted_at`); fires `*.deleted` |
//! | `POST /_sandbox/users` | add an Acme user |
//! | `GET`/`PUT /_sandbox/faults` | the fault profile (PUT any subset) |
//! | `GET`/`DELETE /_sandbox/requests` | the log of API requests |
//! | `GET /_sandbox/deliveries` | webhook delivery attempts |
//! | `POST /_sandbox/tokens/revoke` | revoke every OAuth token |
//! | `POST /_sandbox/cursors/expire` | expire every cursor now |

use super::model::{Activity, Appointment, Contact, Kind, User};
use super::{Faults, Shared, State, fmt_ts, lock, webhooks};
use axum::Json;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

type Reply = (StatusCode, Json<Value>);

fn fail(status: StatusCode, msg: impl Into<String>) -> Reply {
    (
        status,
        Json(json!({ "error": { "code": "invalid_request", "message": msg.into() } })),
    )
}

pub(crate) fn router() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/faults", get(get_faults).put(put_faults))
        .route("/requests", get(get_requests).delete(clear_requests))
        .route("/deliveries", get(get_deliveries))
        .route("/tokens/revoke", post(revoke))
        .route("/cursors/expire", post(expire))
        .route("/users", post(add_user))
        .route("/{kind}", post(create))
        .route("/{kind}/{id}", axum::routing::patch(update).delete(delete))
}

async fn get_faults(AxState(s): AxState<Shared>) -> Json<Faults> {
    Json(lock(&s).faults.clone())
}

async fn put_faults(AxState(s): AxState<Shared>, Json(patch): Json<Value>) -> Reply {
    let mut st = lock(&s);
    let mut current = serde_json::to_value(&st.faults).expect("faults serialize");
    if let (Some(c), Some(p)) = (current.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            c.insert(k.clone(), v.clone());
        }
    }
    match serde_json::from_value::<Faults>(current) {
        Ok(f) => {
            st.faults = f;
            (StatusCode::OK, Json(json!(st.faults)))
        }
        Err(e) => fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("fault profile: {e}"),
        ),
    }
}

async fn get_requests(AxState(s): AxState<Shared>) -> Json<Value> {
    Json(json!(lock(&s).requests))
}

async fn clear_requests(AxState(s): AxState<Shared>) -> StatusCode {
    lock(&s).requests.clear();
    StatusCode::NO_CONTENT
}

async fn get_deliveries(AxState(s): AxState<Shared>) -> Json<Value> {
    Json(json!(lock(&s).deliveries))
}

async fn revoke(AxState(s): AxState<Shared>) -> Json<Value> {
    let mut st = lock(&s);
    for t in st.tokens.values_mut() {
        t.revoked = true;
    }
    Json(json!({ "revoked": st.tokens.len() }))
}

async fn expire(AxState(s): AxState<Shared>) -> Json<Value> {
    let mut st = lock(&s);
    let n = st.cursors.len();
    let past =
        std::time::Instant::now() - std::time::Duration::from_secs(st.faults.cursor_ttl_secs + 1);
    for c in st.cursors.values_mut() {
        c.issued = past;
    }
    Json(json!({ "expired": n }))
}

async fn add_user(AxState(s): AxState<Shared>, Json(body): Json<Value>) -> Reply {
    let mut st = lock(&s);
    let id = st.fresh_id("usr_");
    let defaults = json!({ "id": id, "timezone": "UTC" });
    match serde_json::from_value::<User>(merge(defaults, &body)) {
        Ok(u) => {
            st.users.push(u.clone());
            (StatusCode::CREATED, Json(json!(u)))
        }
        Err(e) => fail(StatusCode::UNPROCESSABLE_ENTITY, format!("user: {e}")),
    }
}

fn merge(mut base: Value, patch: &Value) -> Value {
    if let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

fn kind(name: &str) -> Option<Kind> {
    match name {
        "contacts" => Some(Kind::Contacts),
        "appointments" => Some(Kind::Appointments),
        "activities" => Some(Kind::Activities),
        _ => None,
    }
}

/// Stores `value` (already merged) as a record of `kind`, returning its JSON.
fn store(st: &mut State, kind: Kind, value: Value) -> Result<Value, String> {
    Ok(match kind {
        Kind::Contacts => {
            let c: Contact = serde_json::from_value(value).map_err(|e| e.to_string())?;
            st.contacts.insert(c.id.clone(), c.clone());
            json!(c)
        }
        Kind::Appointments => {
            let a: Appointment = serde_json::from_value(value).map_err(|e| e.to_string())?;
            st.appointments.insert(a.id.clone(), a.clone());
            json!(a)
        }
        Kind::Activities => {
            let a: Activity = serde_json::from_value(value).map_err(|e| e.to_string())?;
            st.activities.insert(a.id.clone(), a.clone());
            json!(a)
        }
    })
}

fn current(st: &State, kind: Kind, id: &str) -> Option<Value> {
    match kind {
        Kind::Contacts => st.contacts.get(id).map(|c| json!(c)),
        Kind::Appointments => st.appointments.get(id).map(|c| json!(c)),
        Kind::Activities => st.activities.get(id).map(|c| json!(c)),
    }
}

async fn create(
    AxState(s): AxState<Shared>,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let Some(kind) = kind(&name) else {
        return fail(StatusCode::NOT_FOUND, format!("no resource {name}"));
    };
    let mut st = lock(&s);
    let now = fmt_ts(&st.now_stamp());
    let id = st.fresh_id(kind.id_prefix());
    let owner = st.users.first().map(|u| u.id.clone()).unwrap_or_default();
    let defaults = match kind {
        Kind::Contacts => json!({
            "id": id, "first_name": "", "last_name": "", "email": null, "phone": null,
            "owner_id": owner, "created_at": now, "updated_at": now, "deleted_at": null,
        }),
        Kind::Appointments => json!({
            "id": id, "owner_id": owner, "contact_id": "", "title": null, "starts_at": null, "ends_at": null,
            "timezone": "UTC", "location": null, "notes": null, "status": "scheduled",
            "created_at": now, "updated_at": now, "deleted_at": null,
        }),
        Kind::Activities => json!({
            "id": id, "type": "email", "direction": "outbound", "owner_id": owner, "contact_id": "",
            "occurred_at": now, "duration_seconds": null, "subject": null,
            "created_at": now, "updated_at": now, "deleted_at": null,
        }),
    };
    match store(&mut st, kind, merge(defaults, &body)) {
        Ok(v) => {
            if kind != Kind::Contacts {
                webhooks::emit(&mut st, &format!("{}.created", kind.singular()), v.clone());
            }
            (StatusCode::CREATED, Json(v))
        }
        Err(e) => fail(StatusCode::UNPROCESSABLE_ENTITY, format!("{name}: {e}")),
    }
}

async fn update(
    AxState(s): AxState<Shared>,
    Path((name, id)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Reply {
    change(&s, &name, &id, "updated", |st| {
        let mut patch = body.clone();
        if body.get("updated_at").is_none() {
            patch["updated_at"] = json!(fmt_ts(&st.now_stamp()));
        }
        patch
    })
}

async fn delete(AxState(s): AxState<Shared>, Path((name, id)): Path<(String, String)>) -> Reply {
    change(&s, &name, &id, "deleted", |st| {
        let now = json!(fmt_ts(&st.now_stamp()));
        json!({ "deleted_at": now, "updated_at": now })
    })
}

/// Applies the patch `make_patch` builds to record `id` of resource `name`,
/// stores it and fires `{kind}.{action}`.
fn change(
    s: &Shared,
    name: &str,
    id: &str,
    action: &str,
    make_patch: impl FnOnce(&mut State) -> Value,
) -> Reply {
    let Some(kind) = kind(name) else {
        return fail(StatusCode::NOT_FOUND, format!("no resource {name}"));
    };
    let mut st = lock(s);
    let Some(old) = current(&st, kind, id) else {
        return fail(
            StatusCode::NOT_FOUND,
            format!("no {} {id}", kind.singular()),
        );
    };
    let patch = make_patch(&mut st);
    let mut merged = merge(old, &patch);
    merged["id"] = json!(id);
    match store(&mut st, kind, merged) {
        Ok(v) => {
            webhooks::emit(&mut st, &format!("{}.{action}", kind.singular()), v.clone());
            (StatusCode::OK, Json(v))
        }
        Err(e) => fail(StatusCode::UNPROCESSABLE_ENTITY, format!("{name}: {e}")),
    }
}
