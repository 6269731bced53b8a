//! The admin API: JSON over HTTP under `/v1`, described by the OpenAPI 3.1
//! document at `/openapi.json`.
//!
//! Every endpoint needs `Authorization: Bearer TOKEN`. Operator tokens
//! (`WEFT_ADMIN_TOKEN`, comma-separated, or minted with `POST /v1/tokens`)
//! reach everything; tenant tokens (minted for one tenant) reach only that
//! tenant's config, secrets, flows, runs and dead letters, and anything of
//! another tenant answers 404. Tokens are stored as SHA-256 hashes
//! (`token` documents); a minted token is shown once, may expire
//! (`expires_in`), and dies with its tenant.
//!
//! Who may do what is decided in [`crate::access`]: each request resolves
//! its token to a [`Principal`] once, and every tenant write goes through
//! [`crate::access::admit_tenant`].

// Handlers answer errors as ready responses (axum's idiom); their size does
// not matter on this path.
#![allow(clippy::result_large_err)]

use super::{AppState, problem};
use crate::access::Principal;
use crate::config::TenantConfig;
use crate::runner::RunRequest;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The document kind of hashed API tokens.
pub const TOKEN_DOC: &str = "token";

/// What a stored token grants.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenDoc {
    /// A name for people.
    pub name: String,
    /// The tenant it is limited to; none: an operator token.
    pub tenant: Option<String>,
    /// When it was minted.
    pub created_ms: u64,
    /// When it stops working; none: when revoked (or its tenant deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// The SHA-256 of a token, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The operator tokens in `WEFT_ADMIN_TOKEN` (comma-separated).
pub fn operator_tokens_from_env() -> Vec<String> {
    std::env::var("WEFT_ADMIN_TOKEN")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Who is calling: the principal its token resolved to.
pub struct Caller {
    principal: Principal,
}

impl Caller {
    /// Whether the caller may see `tenant`'s resources.
    fn sees(&self, tenant: &str) -> bool {
        self.principal.sees(tenant)
    }

    /// `Ok` for an operator, else the `403` answer.
    pub(crate) fn operator(&self) -> Result<(), Response> {
        match self.principal {
            Principal::Operator => Ok(()),
            Principal::Tenant(_) => Err(problem(
                StatusCode::FORBIDDEN,
                "this needs an operator token",
            )),
        }
    }

    fn tenant(&self, tenant: &str) -> Result<(), Response> {
        if self.sees(tenant) {
            Ok(())
        } else {
            Err(not_found("no such tenant"))
        }
    }
}

fn not_found(why: &str) -> Response {
    problem(StatusCode::NOT_FOUND, why)
}

fn bad(e: impl std::fmt::Display) -> Response {
    problem(StatusCode::BAD_REQUEST, &e.to_string())
}

fn internal(e: anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "admin API");
    problem(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"))
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                problem(
                    StatusCode::UNAUTHORIZED,
                    "an `Authorization: Bearer TOKEN` header is required",
                )
            })?;
        let hash = hash_token(token);
        if app.operator_tokens.contains(&hash) {
            return Ok(Caller {
                principal: Principal::Operator,
            });
        }
        let unauthorized = |why: &str| problem(StatusCode::UNAUTHORIZED, why);
        let doc = match app.host.state.doc_get(TOKEN_DOC, &hash) {
            Ok(Some(doc)) => doc,
            Ok(None) => return Err(unauthorized("unknown token")),
            Err(e) => return Err(internal(e)),
        };
        let doc: TokenDoc = serde_json::from_slice(&doc)
            .map_err(|e| internal(anyhow::anyhow!("reading a token: {e}")))?;
        if doc.expires_ms.is_some_and(|t| crate::state::now_ms() >= t) {
            return Err(unauthorized("the token has expired"));
        }
        let principal = match doc.tenant {
            None => Principal::Operator,
            // A token dies with its tenant (deleting a tenant also deletes
            // its tokens; this holds should that have been cut short).
            Some(t) if app.host.tenant(&t).is_none() => return Err(unauthorized("unknown token")),
            Some(t) => Principal::Tenant(t),
        };
        Ok(Caller { principal })
    }
}

type ApiResult = Result<Response, Response>;

fn ok(v: impl Serialize) -> ApiResult {
    Ok(Json(v).into_response())
}

/// The admin routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/v1/tenants", get(list_tenants))
        .route(
            "/v1/tenants/{tenant}",
            get(show_tenant).put(put_tenant).delete(delete_tenant),
        )
        .route("/v1/tenants/{tenant}/activate", post(activate))
        .route("/v1/tenants/{tenant}/deactivate", post(deactivate))
        .route("/v1/tenants/{tenant}/secrets", get(list_secrets))
        .route(
            "/v1/tenants/{tenant}/secrets/{name}",
            put(put_secret).delete(delete_secret),
        )
        .route("/v1/tenants/{tenant}/flows/{flow}/state", get(flow_state))
        .route("/v1/tenants/{tenant}/flows/{flow}/reset", post(reset_flow))
        .route("/v1/tenants/{tenant}/flows/{flow}/pause", post(pause))
        .route("/v1/tenants/{tenant}/flows/{flow}/resume", post(resume))
        .route("/v1/tenants/{tenant}/flows/{flow}/runs", post(start_run))
        .route(
            "/v1/tenants/{tenant}/flows/{flow}/webhook",
            get(show_subscription).post(subscribe).delete(unsubscribe),
        )
        .route(
            "/v1/tenants/{tenant}/flows/{flow}/webhook/rotate",
            post(rotate_secret),
        )
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(show_run))
        .route("/v1/dead-letters", get(list_dead))
        .route("/v1/dead-letters/replay", post(replay_all))
        .route("/v1/dead-letters/{id}", get(show_dead).delete(discard_dead))
        .route("/v1/dead-letters/{id}/replay", post(replay_one))
        .route("/v1/connectors", get(list_connectors).post(add_connector))
        .route("/v1/tokens", get(list_tokens).post(mint_token))
        .route("/v1/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/v1/config/export", get(export_config))
}

async fn openapi(_c: Caller) -> ApiResult {
    ok(openapi_document())
}

async fn list_tenants(c: Caller, State(app): State<Arc<AppState>>) -> ApiResult {
    let tenants: serde_json::Map<String, Value> = app
        .host
        .tenants()
        .into_iter()
        .filter(|(id, _)| c.sees(id))
        .map(|(id, t)| {
            let flows: Vec<&String> = t.flows.keys().collect();
            let v = json!({ "name": t.name, "active": t.active, "flows": flows });
            (id, v)
        })
        .collect();
    ok(tenants)
}

async fn show_tenant(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> ApiResult {
    c.tenant(&tenant)?;
    let t = app
        .host
        .tenant(&tenant)
        .ok_or_else(|| not_found("no such tenant"))?;
    ok(t)
}

async fn put_tenant(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> ApiResult {
    c.tenant(&tenant)?;
    let stored = app.host.tenant(&tenant);
    if stored.is_none() {
        c.operator()?;
    }
    let raw: Value = serde_json::from_slice(&body).map_err(bad)?;
    let config: TenantConfig = serde_json::from_value(raw.clone()).map_err(bad)?;
    // What only an operator may set (secrets beyond the tenant's own,
    // limits, `active`, alert targets): refused, or kept as stored.
    let config = crate::access::admit_tenant(&c.principal, &tenant, stored.as_ref(), &raw, config)
        .map_err(|e| problem(StatusCode::FORBIDDEN, &e.to_string()))?;
    check_webhook_secrets(&app, &tenant, &config)?;
    // The same checks as `weft.toml`, and each stage's config against its
    // connector's JSON Schema: the answer names the field.
    crate::config::validate_tenant(&tenant, &config).map_err(|e| bad(format!("{e:#}")))?;
    app.host
        .check_tenant(&tenant, &config)
        .await
        .map_err(|e| bad(format!("{e:#}")))?;
    let existed = app.host.tenant(&tenant).is_some();
    let active = config.active;
    app.host.put_tenant(&tenant, config).map_err(internal)?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let webhooks = if active {
        subscribe_all(&app, &tenant).await
    } else {
        json!({})
    };
    Ok((
        status,
        Json(json!({ "tenant": tenant, "webhooks": webhooks })),
    )
        .into_response())
}

async fn delete_tenant(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> ApiResult {
    // Another tenant's resource is "not found" before it is "forbidden".
    c.tenant(&tenant)?;
    c.operator()?;
    unsubscribe_all(&app, &tenant).await;
    // Its tokens first: a tenant created again under this ID gets none.
    for (id, _) in tenant_tokens(&app, Some(&tenant))? {
        app.host
            .state
            .doc_delete(TOKEN_DOC, &id)
            .map_err(internal)?;
    }
    if !app.host.delete_tenant(&tenant).map_err(internal)? {
        return Err(not_found("no such tenant"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Subscribes every flow of the tenant that asks for it (`webhook.register`)
/// and has no subscription yet; what happened, per flow.
async fn subscribe_all(app: &AppState, tenant: &str) -> Value {
    let mut out = serde_json::Map::new();
    let Some(t) = app.host.tenant(tenant) else {
        return Value::Object(out);
    };
    for (flow, f) in &t.flows {
        if !f.source.webhook.as_ref().is_some_and(|w| w.register) {
            continue;
        }
        let v = match app.host.subscribe_webhooks(tenant, flow).await {
            Ok(sub) => json!({ "subscribed": sub.id, "url": sub.url }),
            Err(e) => {
                tracing::warn!(tenant, flow, error = %format!("{e:#}"), "webhook subscription");
                json!({ "error": format!("{e:#}") })
            }
        };
        out.insert(flow.clone(), v);
    }
    Value::Object(out)
}

/// Deletes every subscription of the tenant's flows.
async fn unsubscribe_all(app: &AppState, tenant: &str) -> Value {
    let mut out = serde_json::Map::new();
    let Some(t) = app.host.tenant(tenant) else {
        return Value::Object(out);
    };
    for flow in t.flows.keys() {
        match app.host.unsubscribe_webhooks(tenant, flow).await {
            Ok(true) => {
                out.insert(flow.clone(), json!({ "unsubscribed": true }));
            }
            Ok(false) => {}
            Err(e) => {
                out.insert(flow.clone(), json!({ "error": format!("{e:#}") }));
            }
        }
    }
    Value::Object(out)
}

async fn set_active(app: &AppState, tenant: &str, active: bool) -> ApiResult {
    let mut t = app
        .host
        .tenant(tenant)
        .ok_or_else(|| not_found("no such tenant"))?;
    // Deactivation ends the vendor's deliveries first.
    let mut webhooks = if active {
        json!({})
    } else {
        unsubscribe_all(app, tenant).await
    };
    t.active = active;
    app.host.put_tenant(tenant, t).map_err(internal)?;
    if active {
        webhooks = subscribe_all(app, tenant).await;
    }
    ok(json!({ "tenant": tenant, "active": active, "webhooks": webhooks }))
}

async fn activate(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> ApiResult {
    // Another tenant's resource is "not found" before it is "forbidden".
    c.tenant(&tenant)?;
    c.operator()?;
    set_active(&app, &tenant, true).await
}

async fn deactivate(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> ApiResult {
    // Another tenant's resource is "not found" before it is "forbidden".
    c.tenant(&tenant)?;
    c.operator()?;
    set_active(&app, &tenant, false).await
}

fn vault(app: &AppState) -> Result<&crate::secrets::Vault, Response> {
    app.host.runtime.secrets().vault().ok_or_else(|| {
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "no secret key: set WEFT_SECRET_KEY or service.key_file to store tenant secrets",
        )
    })
}

async fn list_secrets(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> ApiResult {
    c.tenant(&tenant)?;
    ok(vault(&app)?.names(&tenant).map_err(internal)?)
}

#[derive(Deserialize)]
struct SecretBody {
    value: String,
}

async fn put_secret(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path((tenant, name)): Path<(String, String)>,
    Json(body): Json<SecretBody>,
) -> ApiResult {
    c.tenant(&tenant)?;
    if app.host.tenant(&tenant).is_none() {
        return Err(not_found("no such tenant"));
    }
    if !crate::config::valid_id(&name) {
        return Err(bad("a secret name is 1-64 letters, digits, `-` or `_`"));
    }
    if body.value.is_empty() {
        return Err(unprocessable("a secret's value may not be empty"));
    }
    if let Some(t) = app.host.tenant(&tenant)
        && webhook_secret_names(&t).any(|n| n == name)
    {
        super::webhooks::signing_key(&body.value)
            .map_err(|e| unprocessable(&format!("secret {name:?} signs webhooks: {e}")))?;
    }
    vault(&app)?
        .put(&tenant, &name, &body.value)
        .map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_secret(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult {
    c.tenant(&tenant)?;
    if !vault(&app)?.delete(&tenant, &name).map_err(internal)? {
        return Err(not_found("no such secret"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn unprocessable(why: &str) -> Response {
    problem(StatusCode::UNPROCESSABLE_ENTITY, why)
}

/// The names of the tenant's own secrets that its flows' webhook configs
/// name (`{ secret = … }` or `{ sealed = … }`).
fn webhook_secret_names(t: &TenantConfig) -> impl Iterator<Item = &str> {
    t.flows
        .values()
        .filter_map(|f| f.source.webhook.as_ref())
        .flat_map(|w| &w.secrets)
        .filter_map(|r| match r {
            crate::secrets::SecretRef::Secret(n) | crate::secrets::SecretRef::Sealed(n) => {
                Some(n.as_str())
            }
            crate::secrets::SecretRef::Env(_) => None,
        })
}

/// A tenant config that names one of the tenant's stored secrets as a
/// webhook secret: that secret must be a signing key (checked here too,
/// for a secret written before the config named it).
fn check_webhook_secrets(app: &AppState, tenant: &str, t: &TenantConfig) -> Result<(), Response> {
    let Some(vault) = app.host.runtime.secrets().vault() else {
        return Ok(());
    };
    for name in webhook_secret_names(t) {
        if let Some(s) = vault.get(tenant, name).map_err(internal)? {
            super::webhooks::signing_key(s.expose()).map_err(|e| {
                unprocessable(&format!(
                    "webhook secret {name:?}: {e}; write it again with PUT /v1/tenants/{tenant}/secrets/{name}"
                ))
            })?;
        }
    }
    Ok(())
}

fn known_flow(app: &AppState, c: &Caller, tenant: &str, flow: &str) -> Result<(), Response> {
    c.tenant(tenant)?;
    app.host
        .flow(tenant, flow)
        .map(|_| ())
        .map_err(|e| not_found(&format!("{e:#}")))
}

async fn flow_state(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path((tenant, flow)): Path<(String, String)>,
) -> ApiResult {
    known_flow(&app, &c, &tenant, &flow)?;
    let st = &*app.host.state;
    ok(json!({
        "tenant": tenant,
        "flow": flow,
        "cursor": st.cursor(&tenant, &flow).map_err(internal)?,
        "attention": st.attention(&tenant, &flow).map_err(internal)?,
        "health": crate::runner::flow_health(st, &tenant, &flow).map_err(internal)?,
        "paused": app.host.flow(&tenant, &flow).map(|f| f.paused).unwrap_or(false),
    }))
}

#[derive(Deserialize, Default)]
struct ResetBody {
    since: Option<String>,
}

async fn reset_flow(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path((tenant, flow)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    known_flow(&app, &c, &tenant, &flow)?;
    let body: ResetBody = if body.is_empty() {
        ResetBody::default()
    } else {
        serde_json::from_slice(&body).map_err(bad)?
    };
    let cursor = match &body.since {
        Some(s) => {
            humantime::parse_rfc3339_weak(s)
                .or_else(|_| humantime::parse_rfc3339(s))
                .map_err(|_| bad(format!("since: {s:?} is not an RFC 3339 instant")))?;
            Some(format!("since:{s}"))
        }
        None => None,
    };
    app.host
        .state
        .reset_flow(&tenant, &flow, cursor.as_deref())
        .map_err(internal)?;
    ok(json!({ "tenant": tenant, "flow": flow, "cursor": cursor }))
}

async fn set_paused(app: &AppState, tenant: &str, flow: &str, paused: bool) -> ApiResult {
    let mut t = app
        .host
        .tenant(tenant)
        .ok_or_else(|| not_found("no such tenant"))?;
    let f = t
        .flows
        .get_mut(flow)
        .ok_or_else(|| not_found("no such flow"))?;
    f.paused = paused;
    app.host.put_tenant(tenant, t).map_err(internal)?;
    ok(json!({ "tenant": tenant, "flow": flow, "paused": paused }))
}

async fn pause(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path((tenant, flow)): Path<(String, String)>,
) -> ApiResult {
    known_flow(&app, &c, &tenant, &flow)?;
    set_paused(&app, &tenant, &flow, true).await
}

async fn resume(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path((tenant, flow)): Path<(String, String)>,
) -> ApiResult {
    known_flow(&app, &c, &tenant, &flow)?;
    set_paused(&app, &tenant, &flow, false).await
}

/// A subscription as the API shows it: never its secret.
fn subscription_view(sub: &crate::subscriptions::Subscription) -> Value {
    json!({ "id": sub.id, "url": sub.url, "created_ms": sub.created_ms, "rotated_ms": sub.rotated_ms })
}

async fn show_subscription(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path((tenant, flow)): Path<(String, String)>,
) -> ApiResult {
    known_flow(&app, &c, &tenant, &flow)?;
    match app.host.subscription(&tenant, &flow).map_err(internal)? {
        Some(sub) => ok(subscription_view(&sub)),
        None => Err(not_found("the flow has no webhook subscription")),
    }
}

/// A vendor's API refused or failed a subscription request.
fn vendor_failed(e: anyhow::Error) -> Response {
    problem(StatusCode::BAD_GATEWAY, &format!("{e:#}"))
}

async fn subscribe(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path((tenant, flow)): Path<(String, String)>,
) -> ApiResult {
    known_flow(&app, &c, &tenant, &flow)?;
    let sub = app
        .host
        .subscribe_webhooks(&tenant, &flow)
        .await
        .map_err(vendor_failed)?;
    ok(subscription_view(&sub))
}

async fn rotate_secret(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path((tenant, flow)): Path<(String, String)>,
) -> ApiResult {
    known_flow(&app, &c, &tenant, &flow)?;
    let sub = app
        .host
        .rotate_webhook_secret(&tenant, &flow)
        .await
        .map_err(vendor_failed)?;
    ok(subscription_view(&sub))
}

async fn unsubscribe(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path((tenant, flow)): Path<(String, String)>,
) -> ApiResult {
    known_flow(&app, &c, &tenant, &flow)?;
    match app.host.unsubscribe_webhooks(&tenant, &flow).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(false) => Err(not_found("the flow has no webhook subscription")),
        Err(e) => Err(vendor_failed(e)),
    }
}

#[derive(Deserialize, Default)]
struct RunBody {
    #[serde(default)]
    backfill: bool,
}

async fn start_run(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path((tenant, flow)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    known_flow(&app, &c, &tenant, &flow)?;
    let body: RunBody = if body.is_empty() {
        RunBody::default()
    } else {
        serde_json::from_slice(&body).map_err(bad)?
    };
    app.run_requests
        .send(RunRequest {
            tenant: tenant.clone(),
            flow: flow.clone(),
            backfill: body.backfill,
        })
        .await
        .map_err(|_| problem(StatusCode::SERVICE_UNAVAILABLE, "the scheduler has stopped"))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "tenant": tenant, "flow": flow, "queued": true, "backfill": body.backfill })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    tenant: Option<String>,
    flow: Option<String>,
    limit: Option<usize>,
}

impl ListQuery {
    /// The tenant to filter by: the caller's own for a tenant token.
    fn tenant(&self, c: &Caller) -> Result<Option<String>, Response> {
        match (c.principal.tenant(), &self.tenant) {
            (Some(own), Some(asked)) if own != asked => Err(not_found("no such tenant")),
            (Some(own), _) => Ok(Some(own.to_owned())),
            (None, asked) => Ok(asked.clone()),
        }
    }
}

async fn list_runs(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let tenant = q.tenant(&c)?;
    ok(app
        .host
        .state
        .runs(tenant.as_deref(), q.flow.as_deref(), q.limit.unwrap_or(50))
        .map_err(internal)?)
}

async fn show_run(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult {
    match app.host.state.run(&id).map_err(internal)? {
        Some(r) if c.sees(&r.tenant) => ok(r),
        _ => Err(not_found("no such run")),
    }
}

async fn list_dead(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let tenant = q.tenant(&c)?;
    ok(app
        .host
        .state
        .dead_letters(tenant.as_deref(), q.flow.as_deref())
        .map_err(internal)?)
}

fn own_dead(app: &AppState, c: &Caller, id: &str) -> Result<crate::state::DeadLetter, Response> {
    match app.host.state.dead_letter(id).map_err(internal)? {
        Some(d) if c.sees(&d.tenant) => Ok(d),
        _ => Err(not_found("no such dead letter")),
    }
}

async fn show_dead(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult {
    ok(own_dead(&app, &c, &id)?)
}

async fn discard_dead(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult {
    own_dead(&app, &c, &id)?;
    app.host.state.remove_dead_letter(&id).map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn replay(app: &AppState, id: &str) -> Result<Value, Response> {
    Ok(match app.host.replay(id).await.map_err(internal)? {
        Ok(()) => json!({ "id": id, "delivered": true }),
        Err(d) => json!({ "id": id, "delivered": false, "dead_letter": d }),
    })
}

async fn replay_one(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult {
    own_dead(&app, &c, &id)?;
    ok(replay(&app, &id).await?)
}

async fn replay_all(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let tenant = q.tenant(&c)?;
    let all = app
        .host
        .state
        .dead_letters(tenant.as_deref(), q.flow.as_deref())
        .map_err(internal)?;
    let mut out = Vec::new();
    for d in all {
        out.push(replay(&app, &d.id).await?);
    }
    ok(out)
}

async fn list_connectors(c: Caller, State(app): State<Arc<AppState>>) -> ApiResult {
    // Each version with the flows whose requirement picks it now (a
    // tenant token sees its own flows only).
    let entries = app.host.registry.list().map_err(internal)?;
    let mut tenants = app.host.tenants();
    tenants.retain(|t, _| c.sees(t));
    let mut out = Vec::new();
    for e in entries {
        let mut used_by = Vec::new();
        for (tid, t) in &tenants {
            for (fid, f) in &t.flows {
                let refs = std::iter::once(&f.source.connector)
                    .chain(f.mappers.iter().map(|m| &m.connector))
                    .chain(std::iter::once(&f.destination.connector));
                for r in refs {
                    if r.name == e.name
                        && app
                            .host
                            .registry
                            .resolve(r)
                            .is_ok_and(|picked| picked.version == e.version)
                    {
                        used_by.push(format!("{tid}/{fid}"));
                    }
                }
            }
        }
        let mut v = serde_json::to_value(&e).map_err(|e| internal(e.into()))?;
        v["used_by"] = json!(used_by);
        out.push(v);
    }
    ok(out)
}

/// Registers an uploaded component. The body is streamed into a file in
/// the data directory (never held whole in memory) and refused with `413`
/// past `limits.max_component_bytes`.
async fn add_connector(
    c: Caller,
    State(app): State<Arc<AppState>>,
    body: axum::body::Body,
) -> ApiResult {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    c.operator()?;
    let max = app.host.config.limits.max_component_bytes;
    let dir = app.host.config.data_dir.join("uploads");
    std::fs::create_dir_all(&dir).map_err(|e| internal(e.into()))?;
    let file = tempfile::Builder::new()
        .suffix(".wasm")
        .tempfile_in(&dir)
        .map_err(|e| internal(e.into()))?;
    let mut out = tokio::fs::File::from_std(file.reopen().map_err(|e| internal(e.into()))?);
    let mut stream = body.into_data_stream();
    let mut len = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad(format!("reading the upload: {e}")))?;
        len += chunk.len();
        if len > max {
            return Err(problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the component is larger than limits.max_component_bytes ({max} bytes)"),
            ));
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| internal(e.into()))?;
    }
    out.flush().await.map_err(|e| internal(e.into()))?;
    drop(out);
    if len == 0 {
        return Err(bad("the body is empty: send the component's .wasm bytes"));
    }
    let (entry, added) = app
        .host
        .registry
        .add(&app.host.runtime, file.path())
        .await
        .map_err(|e| {
            // The staging file's path is the server's business.
            let why = format!("{e:#}").replace(&file.path().display().to_string(), "the upload");
            bad(why)
        })?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "connector": entry, "added": added }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintBody {
    name: String,
    tenant: Option<String>,
    /// How long the token works (`90d`, `12h`); without it, until revoked.
    #[serde(default)]
    expires_in: Option<String>,
}

async fn mint_token(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Json(body): Json<MintBody>,
) -> ApiResult {
    c.operator()?;
    if let Some(t) = &body.tenant
        && app.host.tenant(t).is_none()
    {
        return Err(not_found("no such tenant"));
    }
    let now = crate::state::now_ms();
    let expires_ms = match &body.expires_in {
        None => None,
        Some(text) => {
            let d = humantime::parse_duration(text).map_err(|e| {
                unprocessable(&format!(
                    "expires_in: {text:?} is not a duration like `90d` or `12h`: {e}"
                ))
            })?;
            if d.is_zero() {
                return Err(unprocessable("expires_in: must be longer than 0s"));
            }
            Some(now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
        }
    };
    let token = format!("weft_{}", hex::encode(rand::random::<[u8; 24]>()));
    let doc = TokenDoc {
        name: body.name,
        tenant: body.tenant,
        created_ms: now,
        expires_ms,
    };
    let id = hash_token(&token);
    app.host
        .state
        .doc_put(
            TOKEN_DOC,
            &id,
            &serde_json::to_vec(&doc).map_err(|e| internal(e.into()))?,
        )
        .map_err(internal)?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "id": id, "token": token, "name": doc.name, "tenant": doc.tenant, "expires_ms": doc.expires_ms }),
        ),
    )
        .into_response())
}

/// The stored tokens (ID, what it grants), of one tenant or (`None`) all.
fn tenant_tokens(
    app: &AppState,
    tenant: Option<&str>,
) -> Result<Vec<(String, TokenDoc)>, Response> {
    let mut out = Vec::new();
    for (id, doc) in app.host.state.doc_list(TOKEN_DOC, "").map_err(internal)? {
        let doc: TokenDoc = serde_json::from_slice(&doc).map_err(|e| internal(e.into()))?;
        if tenant.is_none_or(|t| doc.tenant.as_deref() == Some(t)) {
            out.push((id, doc));
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct TokensQuery {
    tenant: Option<String>,
}

/// Operators list every token (or one tenant's: `?tenant=`); a tenant
/// token lists its own tenant's.
async fn list_tokens(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Query(q): Query<TokensQuery>,
) -> ApiResult {
    let tenant = ListQuery {
        tenant: q.tenant,
        flow: None,
        limit: None,
    }
    .tenant(&c)?;
    let out: Vec<Value> = tenant_tokens(&app, tenant.as_deref())?
        .into_iter()
        .map(|(id, doc)| json!({ "id": id, "name": doc.name, "tenant": doc.tenant, "created_ms": doc.created_ms, "expires_ms": doc.expires_ms }))
        .collect();
    ok(out)
}

/// Operators revoke any token; a tenant token revokes its own tenant's.
async fn revoke_token(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult {
    let doc = match app.host.state.doc_get(TOKEN_DOC, &id).map_err(internal)? {
        Some(doc) => serde_json::from_slice::<TokenDoc>(&doc).map_err(|e| internal(e.into()))?,
        None => return Err(not_found("no such token")),
    };
    let theirs = match &doc.tenant {
        Some(t) => c.sees(t),
        None => c.operator().is_ok(),
    };
    if !theirs {
        return Err(not_found("no such token"));
    }
    app.host
        .state
        .doc_delete(TOKEN_DOC, &id)
        .map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn export_config(c: Caller, State(app): State<Arc<AppState>>) -> ApiResult {
    c.operator()?;
    let text = app.host.export_config().map_err(internal)?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/toml")],
        text,
    )
        .into_response())
}

/// The OpenAPI 3.1 document of the admin API.
pub fn openapi_document() -> Value {
    let op = |summary: &str| json!({ "summary": summary, "responses": { "200": { "description": "OK" } } });
    let paths = json!({
        "/v1/tenants": { "get": op("List tenants (a tenant token sees its own)") },
        "/v1/tenants/{tenant}": {
            "get": op("Show a tenant's configuration (the weft.toml schema, as JSON)"),
            "put": op("Create (operator) or replace a tenant; stage configs are checked against their connectors' JSON Schemas"),
            "delete": op("Delete a tenant (operator)")
        },
        "/v1/tenants/{tenant}/activate": { "post": op("Activate a tenant (operator)") },
        "/v1/tenants/{tenant}/deactivate": { "post": op("Deactivate a tenant: nothing runs, webhooks answer 404 (operator)") },
        "/v1/tenants/{tenant}/secrets": { "get": op("List the names of a tenant's secrets") },
        "/v1/tenants/{tenant}/secrets/{name}": {
            "put": op("Write a secret: {\"value\": \"...\"}; write-only, sealed at rest"),
            "delete": op("Delete a secret")
        },
        "/v1/tenants/{tenant}/flows/{flow}/state": { "get": op("Cursor, attention and health of a flow") },
        "/v1/tenants/{tenant}/flows/{flow}/reset": { "post": op("Reset a flow to the beginning, or {\"since\": RFC 3339}") },
        "/v1/tenants/{tenant}/flows/{flow}/pause": { "post": op("Pause a flow") },
        "/v1/tenants/{tenant}/flows/{flow}/resume": { "post": op("Resume a flow") },
        "/v1/tenants/{tenant}/flows/{flow}/runs": { "post": op("Start a run now: {\"backfill\": bool}") },
        "/v1/tenants/{tenant}/flows/{flow}/webhook": {
            "get": op("The flow's webhook subscription with the vendor (never its secret)"),
            "post": op("Subscribe the flow to the vendor's webhooks (sources exporting weft:webhooks/registration); the secret stays sealed in weft"),
            "delete": op("Delete the subscription at the vendor")
        },
        "/v1/tenants/{tenant}/flows/{flow}/webhook/rotate": { "post": op("Rotate the signing secret; the old one stays accepted for the vendor's overlap") },
        "/v1/runs": { "get": op("List runs (?tenant, ?flow, ?limit)") },
        "/v1/runs/{id}": { "get": op("Show a run") },
        "/v1/dead-letters": { "get": op("List dead letters (?tenant, ?flow)") },
        "/v1/dead-letters/replay": { "post": op("Replay every dead letter (?tenant, ?flow)") },
        "/v1/dead-letters/{id}": { "get": op("Show a dead letter"), "delete": op("Discard a dead letter") },
        "/v1/dead-letters/{id}/replay": { "post": op("Replay a dead letter") },
        "/v1/connectors": {
            "get": op("List connector versions with the flows using each"),
            "post": op("Upload a component (body: the .wasm); hot-loaded: the next run of every matching flow uses it (operator)")
        },
        "/v1/tokens": { "get": op("List tokens (operator)"), "post": op("Mint a token: {\"name\", \"tenant\"?}; shown once (operator)") },
        "/v1/tokens/{id}": { "delete": op("Revoke a token (operator)") },
        "/v1/config/export": { "get": op("All tenants as weft.toml (operator)") },
        "/hooks/{tenant}/{flow}": { "post": op("Webhook ingress (Standard Webhooks signatures; no token)") },
        "/healthz": { "get": op("The process is up (no token)") },
        "/readyz": { "get": op("State open and scheduler running (no token)") },
        "/metrics": { "get": op("Prometheus metrics") }
    });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "weft admin API", "version": env!("CARGO_PKG_VERSION") },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "security": [ { "bearer": [] } ],
        "paths": paths
    })
}
