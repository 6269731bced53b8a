//! Live run progress: `GET /v1/events`, the run records of the caller's
//! tenants as they are saved (a run's start, each committed page, its end),
//! as server-sent events. The console's status page listens here instead
//! of asking again and again; a tenant token hears only its own tenant.
//! A stream ends after [`STREAM_FOR`] (and when the service stops): the
//! client connects again, so its token is checked again (an expired or
//! revoked one hears no more).

#![allow(clippy::result_large_err)]

use super::AppState;
use super::admin::{ApiResult, Caller};
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

/// How long one stream lasts.
pub const STREAM_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Whose runs.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// One tenant's (a tenant token: always its own).
    tenant: Option<String>,
}

/// What the stream carries until the service stops.
enum Next {
    Send(Event),
    End,
}

#[utoipa::path(get, path = "/v1/events", tag = "runs", summary = "Run records as they are saved, as server-sent events (`event: run`, the record as data; `event: lagged` when some were missed: read /v1/runs again)", params(EventsQuery), responses((status = 200, body = String, content_type = "text/event-stream"), (status = 404, body = crate::ops::api::Problem)))]
pub(super) async fn events(
    c: Caller,
    State(app): State<Arc<AppState>>,
    Query(q): Query<EventsQuery>,
) -> ApiResult {
    let tenant = c.scoped(q.tenant)?;
    let until = tokio::time::Instant::now() + STREAM_FOR;
    let state = (app.host.run_events(), app.stopping.clone(), tenant);
    let stream =
        futures::stream::unfold(state, move |(mut runs, mut stopping, tenant)| async move {
            let next = loop {
                tokio::select! {
                    _ = stopping.wait_for(|s| *s) => break Next::End,
                    _ = tokio::time::sleep_until(until) => break Next::End,
                    got = runs.recv() => match got {
                        Ok(r) if tenant.as_deref().is_none_or(|t| t == r.tenant) => {
                            match Event::default().event("run").json_data(&r) {
                                Ok(e) => break Next::Send(e),
                                Err(_) => continue,
                            }
                        }
                        Ok(_) => continue,
                        Err(RecvError::Lagged(n)) => {
                            break Next::Send(Event::default().event("lagged").data(n.to_string()));
                        }
                        Err(RecvError::Closed) => break Next::End,
                    },
                }
            };
            match next {
                Next::Send(e) => Some((Ok::<_, Infallible>(e), (runs, stopping, tenant))),
                Next::End => None,
            }
        });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
