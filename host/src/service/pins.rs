//! Pinning and rolling back connector versions (operator):
//! `POST /v1/connectors/{name}/pin` sets the version requirement of every
//! stage that uses the connector, in one tenant's flows or every tenant's,
//! to exactly one registered version, or back to the newest of its major.
//! Each tenant changed is written as `PUT /v1/tenants/{tenant}` writes it:
//! checked against that version's world and config schema first, so a
//! rollback to a version that cannot run a flow's config changes nothing of
//! that tenant; the others move, and the answer lists it under `refused`.

#![allow(clippy::result_large_err)]

use super::AppState;
use super::admin::{ApiResult, Caller, bad, internal, ok, write_tenant};
use super::problem;
use crate::config::ConnectorRef;
use crate::ops::api::Problem;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Which version flows use.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinBody {
    /// A registered version every matching stage then requires exactly;
    /// none: back to the newest of the major version pinned now (`^1`).
    pub version: Option<String>,
    /// Only this tenant's flows; none: every tenant's.
    pub tenant: Option<String>,
}

/// What a pin changed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Pinned {
    /// The connector.
    pub connector: String,
    /// `tenant/flow` of each flow whose requirement changed, with it
    /// (`acme-calendar@=1.0.0`).
    pub flows: Vec<String>,
    /// Tenants left as they were, with why (the version refuses a flow's
    /// config, or is of another world).
    pub refused: BTreeMap<String, String>,
}

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(pin))
}

/// The requirement a stage of `current` gets: `=version`, or back to the
/// newest of the major it is pinned to now (`^1`). A requirement without a
/// version (`name` alone: any) is left as it is when unpinning.
fn requirement(
    name: &str,
    version: Option<&semver::Version>,
    current: &ConnectorRef,
) -> Option<String> {
    match version {
        Some(v) => Some(format!("{name}@={v}")),
        None => current
            .req
            .comparators
            .first()
            .map(|c| format!("{name}@^{}", c.major)),
    }
}

#[utoipa::path(post, path = "/v1/connectors/{name}/pin", tag = "connectors", summary = "Pin every flow using a connector (of one tenant, or all) to one registered version, or back to the newest of its major (operator)", params(("name" = String, Path, description = "The connector's name")), request_body = PinBody, responses((status = 200, body = Pinned), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn pin(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Json(body): Json<PinBody>,
) -> ApiResult {
    c.operator()?;
    let registered = app.host.registry.list().map_err(internal)?;
    let version = match &body.version {
        None => None,
        Some(text) => {
            let v = semver::Version::parse(text.trim())
                .map_err(|e| bad(format!("version: {text:?}: {e}")))?;
            if !registered.iter().any(|e| e.name == name && e.version == v) {
                return Err(problem(
                    StatusCode::NOT_FOUND,
                    &format!("no version {v} of {name} is registered"),
                ));
            }
            Some(v)
        }
    };
    let tenants = app.host.tenants();
    if let Some(t) = &body.tenant
        && !tenants.contains_key(t)
    {
        return Err(problem(StatusCode::NOT_FOUND, "no such tenant"));
    }
    let mut changed = Vec::new();
    let mut refused = BTreeMap::new();
    for (id, tenant) in tenants.iter() {
        if body.tenant.as_ref().is_some_and(|t| t != id) {
            continue;
        }
        let mut config = (**tenant).clone();
        let mut flows = Vec::new();
        for (flow_name, flow) in config.flows.iter_mut() {
            let mut refs = vec![&mut flow.source.connector, &mut flow.destination.connector];
            refs.extend(flow.mappers.iter_mut().map(|m| &mut m.connector));
            let mut touched = None;
            for r in refs.into_iter().filter(|r| r.name == name) {
                let Some(req) = requirement(&name, version.as_ref(), r) else {
                    continue;
                };
                let new = ConnectorRef::parse(&req).map_err(bad)?;
                if new.req != r.req {
                    touched = Some(new.to_string());
                    *r = new;
                }
            }
            if let Some(req) = touched {
                flows.push(format!("{id}/{flow_name} {req}"));
            }
        }
        if flows.is_empty() {
            continue;
        }
        // A tenant the version cannot run is refused alone: the others
        // still move, and the answer says which did not.
        let checked = match crate::config::validate_tenant(id, &config) {
            Ok(()) => app.host.check_tenant(id, &config).await,
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            refused.insert(id.clone(), format!("{e:#}"));
            continue;
        }
        write_tenant(&app, id, Some((**tenant).clone()), config).await?;
        changed.extend(flows);
    }
    ok(Pinned {
        connector: name,
        flows: changed,
        refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpinning_goes_back_to_the_pinned_major_and_leaves_an_unversioned_stage_alone() {
        let at = |s: &str| ConnectorRef::parse(s).unwrap();
        let v = semver::Version::new(1, 2, 0);
        assert_eq!(
            requirement("c", Some(&v), &at("c@^1")).as_deref(),
            Some("c@=1.2.0")
        );
        assert_eq!(
            requirement("c", None, &at("c@=2.0.1")).as_deref(),
            Some("c@^2")
        );
        assert_eq!(requirement("c", None, &at("c")), None, "`c` is any version");
    }
}
