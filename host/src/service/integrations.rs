//! Integrations over the admin API: the forms on offer, "test connection"
//! and activation. What is built from a tenant's answers is decided in
//! [`crate::tenants::integrations`]; here is who may do it and what follows
//! (sealed secrets, the tenant written as `PUT /v1/tenants/{tenant}` writes
//! it, webhooks subscribed, the first sync queued, the platform told).
//!
//! A tenant token may apply an integration to its own tenant: the flows are
//! the operator's template, and what the tenant brings (its vendor account
//! and the options the template leaves open) is checked field by field.
//! A tenant the operator deactivated stays deactivated.

#![allow(clippy::result_large_err)]

use super::AppState;
use super::admin::{ApiResult, Caller, internal, ok, vault, write_tenant};
use super::problem;
use crate::config::TenantConfig;
use crate::ops::api::Problem;
use crate::service::scheduler::RunRequest;
use crate::tenants::access::Principal;
use crate::tenants::integrations::{Answers, Built, IntegrationError, IntegrationForm};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The prefix of the sealed secrets an activation writes.
pub const VENDOR_SECRETS: &str = "vendor_";
/// The prefix of the sealed secrets a connection test writes (and removes).
const PROBE_SECRETS: &str = "probe_vendor_";

/// What "test connection" found.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionTest {
    /// Whether the vendor answered with a page.
    pub ok: bool,
    /// What happened, in words (the vendor's refusal when it refused).
    pub message: String,
    /// Records on the first page, when it answered.
    pub records: Option<usize>,
}

/// What an activation did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IntegrationApplied {
    /// The tenant.
    pub tenant: String,
    /// The integration.
    pub integration: String,
    /// Webhook subscriptions made, per flow.
    #[schema(value_type = BTreeMap<String, Object>)]
    pub webhooks: crate::ops::api::WebhookOutcomes,
    /// The flows whose first sync was queued.
    pub runs: Vec<String>,
}

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_integrations))
        .routes(routes!(test_connection))
        .routes(routes!(apply_integration))
}

fn refused(e: IntegrationError) -> Response {
    match e {
        IntegrationError::NoSuch(id) => {
            problem(StatusCode::NOT_FOUND, &format!("no integration {id:?}"))
        }
        IntegrationError::Fields(fields) => {
            let error = fields
                .iter()
                .map(|(f, e)| format!("{f}: {e}"))
                .collect::<Vec<_>>()
                .join("; ");
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(Problem {
                    error,
                    fields: Some(fields),
                }),
            )
                .into_response()
        }
        IntegrationError::Other(e) => internal(e),
    }
}

/// A request about one tenant's integration: who asks, the tenant (one the
/// caller sees: another's is "not found" before its body is read), the
/// integration and the answers (`422` naming what does not parse).
struct Asked {
    c: Caller,
    tenant: String,
    id: String,
    answers: Answers,
}

impl FromRequest<Arc<AppState>> for Asked {
    type Rejection = Response;

    async fn from_request(req: Request, app: &Arc<AppState>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let c = Caller::from_request_parts(&mut parts, app).await?;
        let Path((tenant, id)) = Path::<(String, String)>::from_request_parts(&mut parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        c.tenant(&tenant)?;
        let body = Bytes::from_request(Request::from_parts(parts, body), app)
            .await
            .map_err(IntoResponse::into_response)?;
        let answers = serde_json::from_slice(&body).map_err(|e| {
            problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("the answers: {e}"),
            )
        })?;
        Ok(Asked {
            c,
            tenant,
            id,
            answers,
        })
    }
}

/// The flows integration `id` makes of `answers` for `tenant`, with their
/// credential sealed under `prefix` names.
async fn build_and_seal(
    app: &AppState,
    tenant: &str,
    id: &str,
    answers: &Answers,
    prefix: &str,
) -> Result<Built, Response> {
    let built = app
        .host
        .integration_flows(tenant, id, answers, prefix)
        .await
        .map_err(refused)?;
    let vault = vault(app)?;
    for (name, value) in &built.secrets {
        vault.put(tenant, name, value).map_err(internal)?;
    }
    Ok(built)
}

#[utoipa::path(get, path = "/v1/integrations", tag = "integrations", summary = "The integrations on offer, each as the form that turns it on", responses((status = 200, body = Vec<IntegrationForm>)))]
async fn list_integrations(_c: Caller, State(app): State<Arc<AppState>>) -> ApiResult {
    ok(app.host.integration_forms().await.map_err(internal)?)
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/integrations/{id}/test", tag = "integrations", summary = "Test connection: call the vendor once with these answers (one page of the first flow's stream), committing nothing (the connector's own kv writes stay)", params(("tenant" = String, Path, description = "The tenant's ID"), ("id" = String, Path, description = "The integration's ID")), request_body = Answers, responses((status = 200, body = ConnectionTest), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn test_connection(State(app): State<Arc<AppState>>, asked: Asked) -> ApiResult {
    let Asked {
        c: _,
        tenant,
        id,
        answers,
    } = asked;
    let built = build_and_seal(&app, &tenant, &id, &answers, PROBE_SECRETS).await?;
    let Some((flow_name, flow)) = built.flows.iter().next() else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            "the integration has no flows",
        ));
    };
    let vault = vault(&app)?;
    let probed = app.host.probe_source(&tenant, flow_name, flow).await;
    for (name, _) in &built.secrets {
        vault.delete(&tenant, name).map_err(internal)?;
    }
    let vendor = app
        .host
        .config
        .integrations
        .get(&id)
        .map(|i| i.vendor.name.clone())
        .unwrap_or_default();
    ok(match probed {
        Ok(Ok(n)) => ConnectionTest {
            ok: true,
            message: format!(
                "Connected to {vendor}: the first page of {} has {n} record{}.",
                flow.source.stream,
                if n == 1 { "" } else { "s" }
            ),
            records: Some(n),
        },
        Ok(Err(why)) => ConnectionTest {
            ok: false,
            message: format!("{vendor} refused: {why}"),
            records: None,
        },
        Err(e) => ConnectionTest {
            ok: false,
            message: format!("{e:#}"),
            records: None,
        },
    })
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/integrations/{id}", tag = "integrations", summary = "Activate an integration for a tenant: its credentials sealed, its flows written (creating the tenant), webhooks subscribed, the first sync queued", description = "A tenant token may activate its own tenant, unless an operator deactivated it. Answers that do not fit answer 422 with `fields`: what is wrong with each.", params(("tenant" = String, Path, description = "The tenant's ID"), ("id" = String, Path, description = "The integration's ID")), request_body = Answers, responses((status = 200, body = IntegrationApplied), (status = 201, body = IntegrationApplied), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn apply_integration(State(app): State<Arc<AppState>>, asked: Asked) -> ApiResult {
    let Asked {
        c,
        tenant,
        id,
        answers,
    } = asked;
    let stored = app.host.tenant(&tenant);
    if let (Principal::Tenant(_), Some(s)) = (&c.principal, &stored)
        && !s.active
    {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "this tenant was deactivated by the operator; ask them to activate it",
        ));
    }
    let built = build_and_seal(&app, &tenant, &id, &answers, VENDOR_SECRETS).await?;
    let runs: Vec<String> = built.flows.keys().cloned().collect();
    let config = match stored.clone() {
        Some(mut t) => {
            t.active = true;
            t.flows.extend(built.flows);
            t
        }
        None => TenantConfig {
            name: None,
            active: true,
            alert_url: None,
            flows: built.flows,
        },
    };
    let (status, written) = write_tenant(&app, &tenant, stored, config).await?;
    for flow in &runs {
        app.run_requests
            .send(RunRequest {
                tenant: tenant.clone(),
                flow: flow.clone(),
                backfill: false,
            })
            .await
            .map_err(|_| problem(StatusCode::SERVICE_UNAVAILABLE, "the scheduler has stopped"))?;
    }
    super::alerts::tell(
        &app.host,
        &tenant,
        "activated",
        serde_json::json!({ "integration": id, "flows": runs }),
    );
    Ok((
        status,
        Json(IntegrationApplied {
            tenant,
            integration: id,
            webhooks: written.webhooks,
            runs,
        }),
    )
        .into_response())
}
