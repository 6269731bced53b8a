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
//! Who may do what is decided in [`crate::tenants::access`]: each request resolves
//! its token to a [`Principal`] once, and every tenant write goes through
//! [`crate::tenants::access::admit_tenant`].

// Handlers answer errors as ready responses (axum's idiom); their size does
// not matter on this path.
#![allow(clippy::result_large_err)]

use super::{AppState, problem};
use crate::config::TenantConfig;
use crate::ops::api::*;
use crate::ops::{Local, OpError, Ops, Scope};
use crate::service::scheduler::RunRequest;
use crate::state::RunRecord;
use crate::tenants::access::Principal;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// A one-time activation link: good only for `POST /v1/tokens/exchange`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
    /// It may create its tenant (by activating an integration): a link and
    /// the session it is exchanged for work before the tenant exists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub activation: bool,
}

/// How long the session an activation link is exchanged for lasts.
pub const LINK_SESSION: std::time::Duration = std::time::Duration::from_secs(8 * 3600);
/// How long an activation link works when `expires_in` does not say.
pub const LINK_LIFETIME: std::time::Duration = std::time::Duration::from_secs(7 * 86400);

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
    pub(super) principal: Principal,
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

    /// The tenant a listing is limited to: `asked` for an operator (none:
    /// every tenant), the caller's own for a tenant token (another asked
    /// for is "not found").
    pub(super) fn scoped(&self, asked: Option<String>) -> Result<Option<String>, Response> {
        match (self.principal.tenant(), asked) {
            (Some(own), Some(asked)) if own != asked => Err(not_found("no such tenant")),
            (Some(own), _) => Ok(Some(own.to_owned())),
            (None, asked) => Ok(asked),
        }
    }

    pub(super) fn tenant(&self, tenant: &str) -> Result<(), Response> {
        if self.sees(tenant) {
            Ok(())
        } else {
            Err(not_found("no such tenant"))
        }
    }
}

pub(super) fn not_found(why: &str) -> Response {
    problem(StatusCode::NOT_FOUND, why)
}

pub(super) fn bad(e: impl std::fmt::Display) -> Response {
    problem(StatusCode::BAD_REQUEST, &e.to_string())
}

/// An operation's failure as an answer.
fn op(e: OpError) -> Response {
    match e {
        OpError::NotFound(why) => not_found(&why),
        OpError::Invalid(why) => bad(why),
        OpError::Other(e) => internal(e),
    }
}

pub(super) fn internal(e: anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "admin API");
    problem(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"))
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Response> {
        let hash = hash_token(bearer(&parts.headers)?);
        if app.operator_tokens.contains(&hash) {
            return Ok(Caller {
                principal: Principal::Operator,
            });
        }
        let doc = stored_token(app, &hash)?;
        if doc.link {
            return Err(unauthorized(
                "this is an activation link: open it in the console, which exchanges it for a session (POST /v1/tokens/exchange)",
            ));
        }
        let principal = match doc.tenant {
            None => Principal::Operator,
            // A token dies with its tenant (deleting a tenant also deletes
            // its tokens; this holds should that have been cut short),
            // except an activation session's, made to create it.
            Some(t) if !doc.activation && app.host.tenant(&t).is_none() => {
                return Err(unauthorized("unknown token"));
            }
            Some(t) => Principal::Tenant(t),
        };
        Ok(Caller { principal })
    }
}

fn unauthorized(why: &str) -> Response {
    problem(StatusCode::UNAUTHORIZED, why)
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &axum::http::HeaderMap) -> Result<&str, Response> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("an `Authorization: Bearer TOKEN` header is required"))
}

/// The stored, unexpired token of hash `hash`.
fn stored_token(app: &AppState, hash: &str) -> Result<TokenDoc, Response> {
    let doc = match app.host.state.doc_get(TOKEN_DOC, hash) {
        Ok(Some(doc)) => doc,
        Ok(None) => return Err(unauthorized("unknown token")),
        Err(e) => return Err(internal(e)),
    };
    let doc: TokenDoc = serde_json::from_slice(&doc)
        .map_err(|e| internal(anyhow::anyhow!("reading a token: {e}")))?;
    if doc.expires_ms.is_some_and(|t| crate::state::now_ms() >= t) {
        return Err(unauthorized("the token has expired"));
    }
    Ok(doc)
}

pub(super) type ApiResult = Result<Response, Response>;

pub(super) fn ok(v: impl Serialize) -> ApiResult {
    Ok(Json(v).into_response())
}

/// The admin routes, with the OpenAPI description of each (the service's
/// router collects them into the document at `/openapi.json`).
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(list_tenants))
        .routes(routes!(show_tenant, put_tenant, delete_tenant))
        .routes(routes!(activate))
        .routes(routes!(deactivate))
        .routes(routes!(list_secrets))
        .routes(routes!(put_secret, delete_secret))
        .routes(routes!(flow_state))
        .routes(routes!(reset_flow))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(start_run))
        .routes(routes!(show_subscription, subscribe, unsubscribe))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_subscriptions))
        .routes(routes!(list_runs))
        .routes(routes!(show_run))
        .routes(routes!(list_dead))
        .routes(routes!(replay_all))
        .routes(routes!(show_dead, discard_dead))
        .routes(routes!(replay_one))
        .routes(routes!(list_connectors, add_connector))
        .routes(routes!(list_tokens, mint_token))
        .routes(routes!(revoke_token))
        .routes(routes!(exchange_link))
        .routes(routes!(export_config))
}

#[utoipa::path(get, path = "/v1/whoami", tag = "tokens", summary = "What the calling token is: an operator's, or one tenant's", responses((status = 200, body = Whoami)))]
async fn whoami(c: Caller) -> ApiResult {
    let tenant = c.principal.tenant().map(str::to_owned);
    ok(Whoami {
        operator: tenant.is_none(),
        tenant,
    })
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", summary = "List tenants (a tenant token sees its own)", responses((status = 200, body = BTreeMap<String, TenantSummary>)))]
async fn list_tenants(Call { c, app }: Call) -> ApiResult {
    let tenants: Tenants = app
        .host
        .tenants()
        .iter()
        .filter(|(id, _)| c.sees(id))
        .map(|(id, t)| {
            let summary = TenantSummary {
                flows: t.flows.keys().cloned().collect(),
                name: t.name.clone(),
                active: t.active,
            };
            (id.clone(), summary)
        })
        .collect();
    ok(tenants)
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants", summary = "Show a tenant's configuration (the weft.toml schema, as JSON)", params(("tenant" = String, Path, description = "The tenant's ID")), responses((status = 200, body = TenantConfig), (status = 404, body = Problem)))]
async fn show_tenant(SeenTenant { app, tenant, .. }: SeenTenant) -> ApiResult {
    let t = app
        .host
        .tenant(&tenant)
        .ok_or_else(|| not_found("no such tenant"))?;
    ok(t)
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}", tag = "tenants", summary = "Create (operator) or replace a tenant", description = "Stage configs are checked against their connectors' JSON Schemas. A tenant token may name only its own sealed secrets and may not change rates, retries, `active` or `alert_url` (403 naming the field).", params(("tenant" = String, Path, description = "The tenant's ID")), request_body = TenantConfig, responses((status = 200, body = TenantWritten), (status = 201, body = TenantWritten), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn put_tenant(SeenTenant { c, app, tenant }: SeenTenant, body: Bytes) -> ApiResult {
    let stored = app.host.tenant(&tenant);
    if stored.is_none() {
        c.operator()?;
    }
    let raw: Value = serde_json::from_slice(&body).map_err(bad)?;
    let config: TenantConfig = serde_json::from_value(raw.clone()).map_err(bad)?;
    // What only an operator may set (secrets beyond the tenant's own,
    // limits, `active`, alert targets): refused, or kept as stored.
    let config =
        crate::tenants::access::admit_tenant(&c.principal, &tenant, stored.as_ref(), &raw, config)
            .map_err(|e| problem(StatusCode::FORBIDDEN, &e.to_string()))?;
    let (status, written) = write_tenant(&app, &tenant, stored, config).await?;
    Ok((status, Json(written)).into_response())
}

/// Writes an admitted tenant config: checked as `weft.toml` is and against
/// each connector's schema, the moved flows' subscriptions ended, stored,
/// and (when active) every flow's webhooks subscribed. `201` when the
/// tenant is new.
pub(super) async fn write_tenant(
    app: &AppState,
    tenant: &str,
    stored: Option<TenantConfig>,
    config: TenantConfig,
) -> Result<(StatusCode, TenantWritten), Response> {
    let tenant = tenant.to_owned();
    check_webhook_secrets(app, &tenant, &config)?;
    // The same checks as `weft.toml`, and each stage's config against its
    // connector's JSON Schema: the answer names the field.
    crate::config::validate_tenant(&tenant, &config).map_err(|e| bad(format!("{e:#}")))?;
    app.host
        .check_tenant(&tenant, &config)
        .await
        .map_err(|e| bad(format!("{e:#}")))?;
    let existed = stored.is_some();
    let active = config.active;
    // Subscriptions follow the config: a flow that goes away, is
    // deactivated or moves (another source, stream, config or grants) is
    // unsubscribed at the old place, with the old grants, before they change.
    let mut webhooks = match &stored {
        Some(old) => unsubscribe_moved(app, &tenant, old, &config).await,
        None => WebhookOutcomes::new(),
    };
    app.host.put_tenant(&tenant, config).map_err(internal)?;
    app.forget_secrets(&tenant);
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    if active {
        webhooks.extend(subscribe_all(app, &tenant).await);
    }
    Ok((status, TenantWritten { tenant, webhooks }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "tenants", summary = "Delete a tenant and its tokens (operator)", params(("tenant" = String, Path, description = "The tenant's ID")), responses((status = 204, description = "Deleted, with its subscriptions at the vendors"), (status = 200, body = TenantWritten, description = "Deleted; a subscription could not be deleted at its vendor and is listed as orphaned"), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_tenant(SeenTenant { c, app, tenant }: SeenTenant) -> ApiResult {
    // Another tenant's resource is "not found" (SeenTenant) before it is
    // "forbidden".
    c.operator()?;
    let webhooks = unsubscribe_all(&app, &tenant).await;
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
    // A subscription the vendor could not delete is said, not swallowed:
    // it stays listed as orphaned (`GET /v1/tenants/{t}/webhooks`).
    if webhooks.values().any(|v| v.get("error").is_some()) {
        return ok(TenantWritten { tenant, webhooks });
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deletes the flow's subscription at the vendor, noting in `out` what
/// happened (nothing when it had none).
async fn unsubscribe_into(app: &AppState, tenant: &str, flow: &str, out: &mut WebhookOutcomes) {
    match app.host.unsubscribe_webhooks(tenant, flow).await {
        Ok(true) => {
            out.insert(flow.to_owned(), json!({ "unsubscribed": true }));
        }
        Ok(false) => {}
        Err(e) => {
            out.insert(flow.to_owned(), json!({ "error": format!("{e:#}") }));
        }
    }
}

/// Unsubscribes the flows of `old` whose subscription `new` no longer
/// stands for: gone, deactivated, or moved (the source's connector,
/// stream, config or grants changed). What happened, per flow.
async fn unsubscribe_moved(
    app: &AppState,
    tenant: &str,
    old: &TenantConfig,
    new: &TenantConfig,
) -> WebhookOutcomes {
    let mut out = WebhookOutcomes::new();
    for (flow, before) in &old.flows {
        let stays = new.active
            && new.flows.get(flow).is_some_and(|after| {
                before.source.stage() == after.source.stage()
                    && before.source.stream == after.source.stream
            });
        if stays {
            continue;
        }
        unsubscribe_into(app, tenant, flow, &mut out).await;
    }
    out
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/webhooks", tag = "webhooks", summary = "The tenant's webhook subscriptions: live, and orphaned ones weft could not delete at the vendor (also of a deleted tenant, for operators)", params(("tenant" = String, Path, description = "The tenant's ID")), responses((status = 200, body = Vec<SubscriptionListed>), (status = 404, body = Problem)))]
async fn list_subscriptions(SeenTenant { app, tenant, .. }: SeenTenant) -> ApiResult {
    let all = app.host.subscriptions_of(&tenant).map_err(internal)?;
    let out: Vec<SubscriptionListed> = all
        .iter()
        .map(|l| SubscriptionListed {
            flow: l.flow.clone(),
            subscription: SubscriptionView::from(&l.subscription),
            orphaned: l.orphaned.clone(),
        })
        .collect();
    ok(out)
}

/// Subscribes every flow of the tenant that asks for it (`webhook.register`)
/// and has no subscription yet; what happened, per flow.
async fn subscribe_all(app: &AppState, tenant: &str) -> WebhookOutcomes {
    let mut out = WebhookOutcomes::new();
    let Some(t) = app.host.tenant(tenant) else {
        return out;
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
    app.forget_secrets(tenant);
    out
}

/// Deletes every subscription of the tenant's flows.
async fn unsubscribe_all(app: &AppState, tenant: &str) -> WebhookOutcomes {
    let mut out = WebhookOutcomes::new();
    let Some(t) = app.host.tenant(tenant) else {
        return out;
    };
    for flow in t.flows.keys() {
        unsubscribe_into(app, tenant, flow, &mut out).await;
    }
    app.forget_secrets(tenant);
    out
}

async fn set_active(app: &AppState, tenant: &str, active: bool) -> ApiResult {
    let mut t = app
        .host
        .tenant(tenant)
        .ok_or_else(|| not_found("no such tenant"))?;
    // Deactivation ends the vendor's deliveries first.
    let mut webhooks = if active {
        WebhookOutcomes::new()
    } else {
        unsubscribe_all(app, tenant).await
    };
    t.active = active;
    app.host.put_tenant(tenant, t).map_err(internal)?;
    if active {
        webhooks = subscribe_all(app, tenant).await;
    }
    ok(Activation {
        tenant: tenant.to_owned(),
        active,
        webhooks,
    })
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/activate", tag = "tenants", summary = "Activate a tenant and subscribe its webhooks (operator)", params(("tenant" = String, Path, description = "The tenant's ID")), responses((status = 200, body = Activation), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn activate(SeenTenant { c, app, tenant }: SeenTenant) -> ApiResult {
    c.operator()?;
    set_active(&app, &tenant, true).await
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/deactivate", tag = "tenants", summary = "Deactivate a tenant: nothing runs, webhooks answer 404 (operator)", params(("tenant" = String, Path, description = "The tenant's ID")), responses((status = 200, body = Activation), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn deactivate(SeenTenant { c, app, tenant }: SeenTenant) -> ApiResult {
    c.operator()?;
    set_active(&app, &tenant, false).await
}

pub(super) fn vault(app: &AppState) -> Result<&crate::secrets::Vault, Response> {
    app.host.runtime.secrets().vault().ok_or_else(|| {
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "no secret key: set WEFT_SECRET_KEY or service.key_file to store tenant secrets",
        )
    })
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/secrets", tag = "secrets", summary = "List the names of a tenant's secrets", params(("tenant" = String, Path, description = "The tenant's ID")), responses((status = 200, body = Vec<String>), (status = 404, body = Problem), (status = 503, body = Problem)))]
async fn list_secrets(SeenTenant { app, tenant, .. }: SeenTenant) -> ApiResult {
    ok(vault(&app)?.names(&tenant).map_err(internal)?)
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/secrets/{name}", tag = "secrets", summary = "Write a secret; write-only, sealed at rest", params(("tenant" = String, Path, description = "The tenant's ID"), ("name" = String, Path, description = "The secret's name")), request_body = SecretBody, responses((status = 204), (status = 400, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
async fn put_secret(
    SeenTenant { app, tenant, .. }: SeenTenant,
    Path((_, name)): Path<(String, String)>,
    Json(body): Json<SecretBody>,
) -> ApiResult {
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
    app.forget_secrets(&tenant);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/secrets/{name}", tag = "secrets", summary = "Delete a secret", params(("tenant" = String, Path, description = "The tenant's ID"), ("name" = String, Path, description = "The secret's name")), responses((status = 204), (status = 404, body = Problem), (status = 503, body = Problem)))]
async fn delete_secret(
    SeenTenant { app, tenant, .. }: SeenTenant,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult {
    if !vault(&app)?.delete(&tenant, &name).map_err(internal)? {
        return Err(not_found("no such secret"));
    }
    app.forget_secrets(&tenant);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) fn unprocessable(why: &str) -> Response {
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

/// One more part of the request (its path, its query) for an extractor,
/// with axum's rejection as the answer.
async fn part<T>(parts: &mut Parts, app: &Arc<AppState>) -> Result<T, Response>
where
    T: FromRequestParts<Arc<AppState>>,
    T::Rejection: IntoResponse,
{
    T::from_request_parts(parts, app)
        .await
        .map_err(IntoResponse::into_response)
}

/// An optional JSON body: empty is `T::default()`, else it must parse (400).
fn optional_body<T: Default + serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    if body.is_empty() {
        Ok(T::default())
    } else {
        serde_json::from_slice(body).map_err(bad)
    }
}

/// The `{tenant}/{flow}` of the path, checked: the caller may see the
/// tenant and the flow exists (404 otherwise). Every flow-scoped handler
/// takes it instead of the caller, the state and the path.
struct KnownFlow {
    app: Arc<AppState>,
    tenant: String,
    flow: String,
}

impl FromRequestParts<Arc<AppState>> for KnownFlow {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Response> {
        let Call { c, app } = Call::from_request_parts(parts, app).await?;
        let Path((tenant, flow)) = part::<Path<(String, String)>>(parts, &app).await?;
        known_flow(&app, &c, &tenant, &flow)?;
        Ok(KnownFlow { app, tenant, flow })
    }
}

/// The caller and the service's state: what every admin handler that is
/// not scoped to a tenant, a flow or a dead letter takes.
struct Call {
    c: Caller,
    app: Arc<AppState>,
}

impl FromRequestParts<Arc<AppState>> for Call {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Response> {
        Ok(Call {
            c: Caller::from_request_parts(parts, app).await?,
            app: app.clone(),
        })
    }
}

/// The `{tenant}` of the path, checked: the caller may see it (404
/// otherwise). Every tenant-scoped handler takes it instead of the caller,
/// the state and the tenant's part of the path.
struct SeenTenant {
    c: Caller,
    app: Arc<AppState>,
    tenant: String,
}

impl FromRequestParts<Arc<AppState>> for SeenTenant {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Response> {
        let Call { c, app } = Call::from_request_parts(parts, app).await?;
        let Path(params) = part::<Path<Vec<(String, String)>>>(parts, &app).await?;
        let tenant = params
            .into_iter()
            .find_map(|(k, v)| (k == "tenant").then_some(v))
            .ok_or_else(|| not_found("no such tenant"))?;
        c.tenant(&tenant)?;
        Ok(SeenTenant { c, app, tenant })
    }
}

/// What an operation found, when the caller may see it (`tenant` names
/// whose it is); "no such {what}" otherwise.
fn seen<T>(
    c: &Caller,
    found: Result<T, OpError>,
    tenant: impl Fn(&T) -> &str,
    what: &str,
) -> Result<T, Response> {
    match found {
        Ok(v) if c.sees(tenant(&v)) => Ok(v),
        Ok(_) | Err(OpError::NotFound(_)) => Err(not_found(&format!("no such {what}"))),
        Err(e) => Err(op(e)),
    }
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/flows/{flow}/state", tag = "flows", summary = "Cursor, attention and health of a flow", params(("tenant" = String, Path, description = "The tenant's ID"), ("flow" = String, Path, description = "The flow's name")), responses((status = 200, body = FlowState), (status = 404, body = Problem)))]
async fn flow_state(KnownFlow { app, tenant, flow }: KnownFlow) -> ApiResult {
    ok(Local::new(&app.host)
        .flow_state(&tenant, &flow)
        .await
        .map_err(op)?)
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/flows/{flow}/reset", tag = "flows", summary = "Reset a flow to the beginning, or to an instant", params(("tenant" = String, Path, description = "The tenant's ID"), ("flow" = String, Path, description = "The flow's name")), request_body(content = Option<ResetBody>, description = "Optional"), responses((status = 200, body = FlowReset), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn reset_flow(KnownFlow { app, tenant, flow }: KnownFlow, body: Bytes) -> ApiResult {
    let body: ResetBody = optional_body(&body)?;
    ok(Local::new(&app.host)
        .reset_flow(&tenant, &flow, body.since.as_deref())
        .await
        .map_err(op)?)
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
    ok(FlowPaused {
        tenant: tenant.to_owned(),
        flow: flow.to_owned(),
        paused,
    })
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/flows/{flow}/pause", tag = "flows", summary = "Pause a flow", params(("tenant" = String, Path, description = "The tenant's ID"), ("flow" = String, Path, description = "The flow's name")), responses((status = 200, body = FlowPaused), (status = 404, body = Problem)))]
async fn pause(KnownFlow { app, tenant, flow }: KnownFlow) -> ApiResult {
    set_paused(&app, &tenant, &flow, true).await
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/flows/{flow}/resume", tag = "flows", summary = "Resume a flow", params(("tenant" = String, Path, description = "The tenant's ID"), ("flow" = String, Path, description = "The flow's name")), responses((status = 200, body = FlowPaused), (status = 404, body = Problem)))]
async fn resume(KnownFlow { app, tenant, flow }: KnownFlow) -> ApiResult {
    set_paused(&app, &tenant, &flow, false).await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/flows/{flow}/webhook", tag = "webhooks", summary = "The flow's webhook subscription with the vendor (never its secret)", params(("tenant" = String, Path, description = "The tenant's ID"), ("flow" = String, Path, description = "The flow's name")), responses((status = 200, body = SubscriptionView), (status = 404, body = Problem)))]
async fn show_subscription(KnownFlow { app, tenant, flow }: KnownFlow) -> ApiResult {
    match app.host.subscription(&tenant, &flow).map_err(internal)? {
        Some(sub) => ok(SubscriptionView::from(&sub)),
        None => Err(not_found("the flow has no webhook subscription")),
    }
}

/// A subscription request that failed: 404 when there is nothing to act
/// on, 409 when the source cannot do it, else 502 (the vendor's API, or
/// the source, failed).
fn vendor_failed(e: anyhow::Error) -> Response {
    use crate::subscriptions::NotPossible;
    let status = match e.downcast_ref::<NotPossible>() {
        Some(NotPossible::NoSubscription) => StatusCode::NOT_FOUND,
        Some(_) => StatusCode::CONFLICT,
        None => StatusCode::BAD_GATEWAY,
    };
    problem(status, &format!("{e:#}"))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/flows/{flow}/webhook", tag = "webhooks", summary = "Subscribe the flow to the vendor's webhooks", params(("tenant" = String, Path, description = "The tenant's ID"), ("flow" = String, Path, description = "The flow's name")), responses((status = 200, body = SubscriptionView), (status = 404, body = Problem), (status = 409, body = Problem, description = "The source cannot subscribe the flow"), (status = 502, body = Problem, description = "The vendor failed")))]
async fn subscribe(KnownFlow { app, tenant, flow }: KnownFlow) -> ApiResult {
    let made = app.host.subscribe_webhooks(&tenant, &flow).await;
    subscribed(&app, &tenant, made)
}

/// The answer to a subscription the vendor made or changed: the tenant's
/// secrets are read again (the signing secret is one), and its view.
fn subscribed(
    app: &AppState,
    tenant: &str,
    made: anyhow::Result<crate::subscriptions::Subscription>,
) -> ApiResult {
    let sub = made.map_err(vendor_failed)?;
    app.forget_secrets(tenant);
    ok(SubscriptionView::from(&sub))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/flows/{flow}/webhook/rotate", tag = "webhooks", summary = "Rotate the signing secret (the old one stays accepted for the vendor's overlap)", params(("tenant" = String, Path, description = "The tenant's ID"), ("flow" = String, Path, description = "The flow's name")), responses((status = 200, body = SubscriptionView), (status = 404, body = Problem), (status = 409, body = Problem, description = "The vendor offers no rotation"), (status = 502, body = Problem, description = "The vendor failed")))]
async fn rotate_secret(KnownFlow { app, tenant, flow }: KnownFlow) -> ApiResult {
    let made = app.host.rotate_webhook_secret(&tenant, &flow).await;
    subscribed(&app, &tenant, made)
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/flows/{flow}/webhook", tag = "webhooks", summary = "Delete the subscription at the vendor", params(("tenant" = String, Path, description = "The tenant's ID"), ("flow" = String, Path, description = "The flow's name")), responses((status = 204), (status = 404, body = Problem), (status = 502, body = Problem)))]
async fn unsubscribe(KnownFlow { app, tenant, flow }: KnownFlow) -> ApiResult {
    let done = app.host.unsubscribe_webhooks(&tenant, &flow).await;
    app.forget_secrets(&tenant);
    match done {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(false) => Err(not_found("the flow has no webhook subscription")),
        Err(e) => Err(vendor_failed(e)),
    }
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/flows/{flow}/runs", tag = "flows", summary = "Start a run now (queued until the flow is free)", params(("tenant" = String, Path, description = "The tenant's ID"), ("flow" = String, Path, description = "The flow's name")), request_body(content = Option<RunBody>, description = "Optional"), responses((status = 202, body = RunQueued), (status = 400, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
async fn start_run(KnownFlow { app, tenant, flow }: KnownFlow, body: Bytes) -> ApiResult {
    let body: RunBody = optional_body(&body)?;
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
        Json(RunQueued {
            tenant,
            flow,
            queued: true,
            backfill: body.backfill,
        }),
    )
        .into_response())
}

/// Filters of a listing.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this tenant's (a tenant token: its own, whatever is asked).
    tenant: Option<String>,
    /// Only this flow's.
    flow: Option<String>,
    /// At most this many (runs; default 50).
    limit: Option<usize>,
}

/// A listing's filters, checked: the tenant is the caller's own for a
/// tenant token. The listing handlers take it instead of the caller, the
/// state and the query.
struct Listing {
    app: Arc<AppState>,
    scope: Scope,
    limit: Option<usize>,
}

impl FromRequestParts<Arc<AppState>> for Listing {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Response> {
        let Call { c, app } = Call::from_request_parts(parts, app).await?;
        let Query(q) = part::<Query<ListQuery>>(parts, &app).await?;
        let scope = Scope {
            tenant: c.scoped(q.tenant)?,
            flow: q.flow,
        };
        Ok(Listing {
            app,
            scope,
            limit: q.limit,
        })
    }
}

#[utoipa::path(get, path = "/v1/runs", tag = "runs", summary = "List runs, newest first", params(ListQuery), responses((status = 200, body = Vec<RunRecord>), (status = 404, body = Problem)))]
async fn list_runs(Listing { app, scope, limit }: Listing) -> ApiResult {
    ok(Local::new(&app.host)
        .runs(&scope, limit.unwrap_or(50))
        .await
        .map_err(op)?)
}

#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", summary = "Show a run", params(("id" = String, Path, description = "The run's ID (`run_…`)")), responses((status = 200, body = RunRecord), (status = 404, body = Problem)))]
async fn show_run(Call { c, app }: Call, Path(id): Path<String>) -> ApiResult {
    let found = Local::new(&app.host).run_record(&id).await;
    ok(seen(&c, found, |r| &r.tenant, "run")?)
}

#[utoipa::path(get, path = "/v1/dead-letters", tag = "dead-letters", summary = "List dead letters", params(ListQuery), responses((status = 200, body = Vec<DeadLetterView>), (status = 404, body = Problem)))]
async fn list_dead(Listing { app, scope, .. }: Listing) -> ApiResult {
    ok(Local::new(&app.host)
        .dead_letters(&scope)
        .await
        .map_err(op)?)
}

/// The dead letter `{id}` of the path, when the caller may see it (404
/// otherwise). The handlers of one dead letter take it instead of the
/// caller, the state and the path.
struct SeenDeadLetter {
    c: Caller,
    app: Arc<AppState>,
    id: String,
    dead: DeadLetterView,
}

impl FromRequestParts<Arc<AppState>> for SeenDeadLetter {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Response> {
        let Call { c, app } = Call::from_request_parts(parts, app).await?;
        let Path(id) = part::<Path<String>>(parts, &app).await?;
        let found = Local::new(&app.host).dead_letter(&id).await;
        let dead = seen(&c, found, |d| &d.dead_letter.tenant, "dead letter")?;
        Ok(SeenDeadLetter { c, app, id, dead })
    }
}

#[utoipa::path(get, path = "/v1/dead-letters/{id}", tag = "dead-letters", summary = "Show a dead letter", params(("id" = String, Path, description = "The dead letter's ID (`dl_…`)")), responses((status = 200, body = DeadLetterView), (status = 404, body = Problem)))]
async fn show_dead(SeenDeadLetter { dead, .. }: SeenDeadLetter) -> ApiResult {
    ok(dead)
}

/// Why a dead letter is discarded.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DiscardQuery {
    /// Why, for the log (who discarded what, and why).
    reason: Option<String>,
}

#[utoipa::path(delete, path = "/v1/dead-letters/{id}", tag = "dead-letters", summary = "Discard a dead letter", params(("id" = String, Path, description = "The dead letter's ID (`dl_…`)"), DiscardQuery), responses((status = 204), (status = 404, body = Problem)))]
async fn discard_dead(
    SeenDeadLetter {
        c,
        app,
        id,
        dead: d,
    }: SeenDeadLetter,
    Query(q): Query<DiscardQuery>,
) -> ApiResult {
    Local::new(&app.host)
        .discard_dead_letter(&id)
        .await
        .map_err(op)?;
    tracing::info!(
        dead_letter = %id,
        tenant = %d.dead_letter.tenant,
        flow = %d.dead_letter.flow,
        key = %d.dead_letter.record.key,
        by = c.principal.tenant().unwrap_or("operator"),
        reason = q.reason.as_deref().unwrap_or(""),
        "dead letter discarded"
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1/dead-letters/{id}/replay", tag = "dead-letters", summary = "Replay a dead letter", params(("id" = String, Path, description = "The dead letter's ID (`dl_…`)")), responses((status = 200, body = Replayed), (status = 404, body = Problem)))]
async fn replay_one(SeenDeadLetter { app, id, .. }: SeenDeadLetter) -> ApiResult {
    ok(Local::new(&app.host).replay(&id).await.map_err(op)?)
}

#[utoipa::path(post, path = "/v1/dead-letters/replay", tag = "dead-letters", summary = "Replay every dead letter (of a tenant, of a flow)", params(ListQuery), responses((status = 200, body = Vec<Replayed>), (status = 404, body = Problem)))]
async fn replay_all(Listing { app, scope, .. }: Listing) -> ApiResult {
    ok(Local::new(&app.host).replay_all(&scope).await.map_err(op)?)
}

#[utoipa::path(get, path = "/v1/connectors", tag = "connectors", summary = "List connector versions with the flows using each", responses((status = 200, body = Vec<ConnectorVersion>)))]
async fn list_connectors(Call { c, app }: Call) -> ApiResult {
    // A tenant token sees its own flows only.
    let own = c.scoped(None)?;
    ok(Local::new(&app.host)
        .connectors(own.as_deref())
        .await
        .map_err(op)?)
}

/// Registers an uploaded component. The body is streamed into a file in
/// the data directory (never held whole in memory) and refused with `413`
/// past `limits.max_component_bytes`.
#[utoipa::path(post, path = "/v1/connectors", tag = "connectors", summary = "Upload a component (operator); hot-loaded: the next run of every matching flow uses it", request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The component's bytes (the .wasm), up to limits.max_component_bytes"), responses((status = 200, body = ConnectorAdded), (status = 201, body = ConnectorAdded), (status = 400, body = Problem), (status = 403, body = Problem), (status = 413, body = Problem)))]
async fn add_connector(Call { c, app }: Call, body: axum::body::Body) -> ApiResult {
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
    let answer = Local::new(&app.host)
        .add_connector(file.path())
        .await
        .map_err(|e| {
            // The staging file's path is the server's business.
            let staged = file.path().display().to_string();
            match e {
                OpError::Invalid(why) => bad(why.replace(&staged, "the upload")),
                other => op(other),
            }
        })?;
    let added = answer.added;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(answer)).into_response())
}

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", summary = "Mint a token, shown once (operator)", request_body = MintBody, responses((status = 201, body = MintedToken), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn mint_token(Call { c, app }: Call, Json(body): Json<MintBody>) -> ApiResult {
    c.operator()?;
    match (&body.tenant, body.link) {
        (None, true) => return Err(unprocessable("link: an activation link is for one tenant")),
        // A link may be for a tenant still to be made.
        (Some(t), true) if !crate::config::valid_id(t) => {
            return Err(unprocessable(
                "tenant: a tenant ID is 1-64 letters, digits, `-` or `_`",
            ));
        }
        (Some(t), false) if app.host.tenant(t).is_none() => {
            return Err(not_found("no such tenant"));
        }
        _ => {}
    }
    let now = crate::state::now_ms();
    let lifetime = match &body.expires_in {
        None if body.link => Some(LINK_LIFETIME),
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
            Some(d)
        }
    };
    let doc = TokenDoc {
        name: body.name,
        tenant: body.tenant,
        created_ms: now,
        expires_ms: lifetime.map(|d| after(now, d)),
        link: body.link,
        activation: body.link,
    };
    let mut minted = store_token(&app, doc)?;
    if body.link {
        minted.url = Some(format!(
            "{}/#token={}&link=1",
            app.host.public_url().trim_end_matches('/'),
            minted.token
        ));
    }
    Ok((StatusCode::CREATED, Json(minted)).into_response())
}

fn after(now_ms: u64, d: std::time::Duration) -> u64 {
    now_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Mints a token for `doc`: stored as its hash, shown this once.
fn store_token(app: &AppState, doc: TokenDoc) -> Result<MintedToken, Response> {
    let token = format!("weft_{}", hex::encode(rand::random::<[u8; 24]>()));
    let id = hash_token(&token);
    app.host
        .state
        .doc_put(
            TOKEN_DOC,
            &id,
            &serde_json::to_vec(&doc).map_err(|e| internal(e.into()))?,
        )
        .map_err(internal)?;
    Ok(MintedToken {
        id,
        token,
        name: doc.name,
        tenant: doc.tenant,
        expires_ms: doc.expires_ms,
        url: None,
    })
}

#[utoipa::path(post, path = "/v1/tokens/exchange", tag = "tokens", summary = "Exchange a one-time activation link (its token as the bearer) for a session; the link stops working", responses((status = 201, body = MintedToken), (status = 401, body = Problem)))]
async fn exchange_link(
    State(app): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> ApiResult {
    let hash = hash_token(bearer(&headers)?);
    let link = stored_token(&app, &hash)?;
    if !link.link {
        return Err(unauthorized("not an activation link"));
    }
    // One use: of two exchanges at once, the one that deletes it wins.
    if !app
        .host
        .state
        .doc_delete(TOKEN_DOC, &hash)
        .map_err(internal)?
    {
        return Err(unauthorized("this activation link was used already"));
    }
    let now = crate::state::now_ms();
    let session = TokenDoc {
        name: format!("{} (session)", link.name),
        tenant: link.tenant,
        created_ms: now,
        expires_ms: Some(after(now, LINK_SESSION)),
        link: false,
        activation: true,
    };
    Ok((StatusCode::CREATED, Json(store_token(&app, session)?)).into_response())
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

/// Filters of the token listing.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TokensQuery {
    /// Only this tenant's tokens.
    tenant: Option<String>,
}

/// Operators list every token (or one tenant's: `?tenant=`); a tenant
/// token lists its own tenant's.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", summary = "List tokens (a tenant token lists its own tenant's)", params(TokensQuery), responses((status = 200, body = Vec<TokenView>), (status = 404, body = Problem)))]
async fn list_tokens(Call { c, app }: Call, Query(q): Query<TokensQuery>) -> ApiResult {
    let tenant = c.scoped(q.tenant)?;
    let out: Vec<TokenView> = tenant_tokens(&app, tenant.as_deref())?
        .into_iter()
        .map(|(id, doc)| TokenView {
            id,
            name: doc.name,
            tenant: doc.tenant,
            created_ms: doc.created_ms,
            expires_ms: doc.expires_ms,
        })
        .collect();
    ok(out)
}

/// Operators revoke any token; a tenant token revokes its own tenant's.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", summary = "Revoke a token (a tenant token revokes its own tenant's)", params(("id" = String, Path, description = "The token's ID")), responses((status = 204), (status = 404, body = Problem)))]
async fn revoke_token(Call { c, app }: Call, Path(id): Path<String>) -> ApiResult {
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

#[utoipa::path(get, path = "/v1/config/export", tag = "config", summary = "All tenants as weft.toml (operator)", responses((status = 200, body = String, content_type = "application/toml"), (status = 403, body = Problem)))]
async fn export_config(Call { c, app }: Call) -> ApiResult {
    c.operator()?;
    let text = Local::new(&app.host).export_config().await.map_err(op)?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/toml")],
        text,
    )
        .into_response())
}
