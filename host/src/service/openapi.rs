//! The OpenAPI document's frame and what every operation shares: the bearer
//! security scheme, and the error answers any operation can give whatever
//! its handler says (a missing or unknown token, a malformed parameter, a
//! body too large or of the wrong type). The operations themselves are
//! described where their handlers are (`#[utoipa::path]`), from the types
//! in [`super::api`].
//!
//! Also here: [`json_errors`], which makes every error answer JSON, so that
//! the document's `Problem` holds for the framework's own rejections too.

use axum::http::header;
use axum::response::Response;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{OpenApi as _, ToSchema};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "weft admin API",
        description = "Tenants, secrets, flows, runs, dead letters, connectors and tokens of a `weft serve`, and its webhook ingress. Operator tokens reach everything; tenant tokens reach only their tenant, and another tenant's resources answer 404."
    ),
    components(schemas(crate::ops::api::Problem))
)]
struct Frame;

/// The document before the operations are added.
pub(super) fn base() -> OpenApi {
    Frame::openapi()
}

/// The errors every operation under `/v1` (and `/metrics`) can answer,
/// besides its own.
const ANY: &[(&str, &str)] = &[
    ("400", "A malformed parameter or body"),
    ("401", "No token, an unknown one, or one that expired"),
];

/// The errors of an operation that takes a body.
const WITH_BODY: &[(&str, &str)] = &[
    ("413", "The body is larger than the route allows"),
    ("415", "The body is not of the content type the route takes"),
    (
        "422",
        "The body is well-formed but not what the route takes",
    ),
];

fn problem_response(why: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(why)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(
                        Ref::from_schema_name(crate::ops::api::Problem::name()),
                    ))
                    .build(),
            )
            .build(),
    )
}

/// Adds the bearer scheme, the security of every operation that needs a
/// token, and the errors every operation can answer.
pub(super) fn finish(mut doc: OpenApi) -> OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let authenticated = path.starts_with("/v1/") || path == "/metrics";
        let ops: [&mut Option<Operation>; 5] = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            if authenticated {
                op.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
                for (status, why) in ANY {
                    op.responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| problem_response(why));
                }
            }
            if op.request_body.is_some() {
                for (status, why) in WITH_BODY {
                    op.responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| problem_response(why));
                }
            }
        }
    }
    doc
}

/// Rewrites an error answer that is not JSON (the framework's rejections:
/// a bad path or query parameter, a body of the wrong type or too large,
/// a method not allowed) as `{"error": "…"}`, keeping its status.
pub(super) async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    // Keep the headers that matter to a client (Retry-After, Allow).
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 16 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let why = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let mut out = super::problem(status, &why);
    for name in [header::RETRY_AFTER, header::ALLOW, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    /// A plain-text answer of `status`, as the framework's rejections are.
    fn bare(status: StatusCode, text: &str) -> Response {
        (status, text.to_owned()).into_response()
    }

    #[tokio::test]
    async fn framework_rejections_become_problems() {
        let resp = json_errors(bare(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Expected JSON")).await;
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 10)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "Expected JSON");
        // Success answers are left alone.
        let resp = json_errors(bare(StatusCode::OK, "ok")).await;
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE).unwrap(),
            "text/plain; charset=utf-8"
        );
    }
}
