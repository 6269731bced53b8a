//! `weft serve`: one long-running service around a [`Host`].
//!
//! One HTTP server (axum on hyper) on `service.listen` carries:
//! - `GET /healthz` (the process is up), `GET /readyz` (state open,
//!   scheduler running), `GET /metrics` (Prometheus text, see
//!   [`crate::metrics`]; needs a token like the admin API);
//! - webhook ingress, `POST /hooks/{tenant}/{flow}` ([`webhooks`]);
//! - the admin API under `/v1` and its OpenAPI document at `/openapi.json`
//!   ([`admin`]);
//! - the console at `/`, a web app over the admin API (`console`).
//!
//! Beside the server run the scheduler ([`crate::service::scheduler::serve_with`]), the
//! webhook inbox writer and processor, and the alerter ([`alerts`]). On
//! SIGTERM or Ctrl-C the server stops accepting, runs in flight finish their
//! page commits, the state is flushed, and the process exits 0.
//!
//! In memory, besides the host's caches: the schedule (one small entry per
//! flow), the queue of accepted webhook deliveries not yet processed (also
//! in the durable inbox), and which alerts are open (also in the state
//! store). Everything else is behind [`crate::state::StateStore`], so that
//! several replicas can later share a networked store.

pub mod admin;
pub mod alerts;
mod console;
mod events;
pub mod http;
pub mod integrations;
mod openapi;
mod pins;
pub mod scheduler;
pub mod webhooks;

use crate::Host;
use crate::service::scheduler::RunRequest;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler shares.
pub struct AppState {
    /// The host.
    pub host: Arc<Host>,
    /// Deliveries on their way to the inbox writer.
    pub(crate) inbox: mpsc::Sender<webhooks::Pending>,
    /// Runs asked for over the API, to the scheduler.
    pub(crate) run_requests: mpsc::Sender<RunRequest>,
    /// Whether the scheduler is running.
    pub(crate) scheduling: AtomicBool,
    /// Hashed operator tokens from the environment.
    pub(crate) operator_tokens: Vec<String>,
    /// Becomes true when the service stops: long answers (event streams)
    /// end then, so that the server's graceful stop does not wait on them.
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
    /// Flows' webhook secrets as last resolved, for [`SECRETS_TTL`]: one
    /// entry per flow that received a valid-looking delivery (unknown
    /// tenants and flows are not cached, so callers cannot grow it).
    secrets: std::sync::Mutex<SecretsCache>,
}

/// (tenant, flow) → (when resolved, the flow's webhook secrets).
type SecretsCache = std::collections::HashMap<(String, String), (std::time::Instant, Vec<String>)>;

/// How long resolved webhook secrets are reused. Writes through the admin
/// API (secrets, rotations, subscriptions, tenants) forget them at once;
/// this bounds what changes outside it (the secrets file, the environment).
pub const SECRETS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl AppState {
    /// The flow's webhook secrets (see [`webhooks::flow_secrets`]), resolved
    /// at most once per [`SECRETS_TTL`].
    pub(crate) fn cached_secrets(
        &self,
        tenant: &str,
        flow: &str,
    ) -> Result<Vec<String>, (StatusCode, String)> {
        let key = (tenant.to_owned(), flow.to_owned());
        if let Some((at, s)) = self
            .secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && at.elapsed() < SECRETS_TTL
        {
            return Ok(s.clone());
        }
        let fresh = webhooks::flow_secrets(&self.host, tenant, flow)?;
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (std::time::Instant::now(), fresh.clone()));
        Ok(fresh)
    }

    /// Forgets the cached webhook secrets of `tenant`'s flows: a secret
    /// written, rotated or deleted takes effect at the next delivery.
    pub(crate) fn forget_secrets(&self, tenant: &str) {
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(t, _), _| t != tenant);
    }
}

/// A JSON error answer: `{"error": why}`.
pub(crate) fn problem(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
}

#[utoipa::path(get, path = "/healthz", tag = "service", summary = "The process is up (no token)", security(()),
    responses((status = 200, body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/readyz", tag = "service", summary = "State open and scheduler running (no token)", security(()),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 503, body = crate::ops::api::Problem)))]
async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let store_ok = app.host.state.runs(None, None, 1).is_ok();
    if store_ok && app.scheduling.load(Ordering::SeqCst) {
        // Replicas sharing a state say which one answered, and what it holds.
        let body = match app.host.state.replica() {
            Some(r) => format!(
                "ready\nreplica {r}\nleases {}\n",
                app.host.state.leases_held().unwrap_or(0)
            ),
            None => "ready\n".to_owned(),
        };
        (StatusCode::OK, body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// Prometheus metrics: an operator token only (the series name every
/// tenant).
#[utoipa::path(get, path = "/metrics", tag = "service", summary = "Prometheus metrics (operator)",
    responses((status = 200, body = String, content_type = "application/openmetrics-text"), (status = 403, body = crate::ops::api::Problem)))]
async fn metrics(caller: admin::Caller, State(app): State<Arc<AppState>>) -> Response {
    if let Err(refused) = caller.operator() {
        return refused;
    }
    if let Some(replica) = app.host.state.replica() {
        let m = crate::metrics::metrics();
        m.leases_held.clear();
        m.leases_held
            .get_or_create(&crate::metrics::ReplicaLabels {
                replica: replica.to_owned(),
            })
            .set(app.host.state.leases_held().unwrap_or(0) as i64);
    }
    // Open dead letters per tenant, counted now.
    if let Ok(all) = app.host.state.dead_letters(None, None) {
        let m = crate::metrics::metrics();
        m.dead_letters_open.clear();
        for d in all {
            m.dead_letters_open
                .get_or_create(&crate::metrics::TenantLabels {
                    tenant: crate::metrics::tenant_label(&d.tenant),
                })
                .inc();
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::encode(),
    )
        .into_response()
}

/// Every route with its OpenAPI description.
fn documented() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(webhooks::receive))
        .merge(admin::routes())
        .merge(integrations::routes())
        .merge(pins::routes())
        .routes(routes!(events::events))
}

/// The OpenAPI 3.1 document of the service, generated from the handlers'
/// own types and annotations.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::finish(documented().split_for_parts().1)
}

/// The document as served, written once.
static OPENAPI_JSON: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    openapi_document()
        .to_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
});

async fn openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON.as_str(),
    )
        .into_response()
}

/// The service's router over `app`. Request bodies are bounded per route:
/// webhooks by `service.max_webhook_bytes` (read by the handler), uploads
/// by `limits.max_component_bytes` (streamed to disk by the handler), and
/// every other body by `service.max_request_bytes`. Every error answer is
/// JSON (`{"error": …}`), the framework's own rejections included.
pub fn router(app: Arc<AppState>) -> Router {
    let max_request = app.host.config.service.max_request_bytes;
    let (routes, _) = documented().split_for_parts();
    routes
        .route("/openapi.json", get(openapi_json))
        .merge(console::routes(
            &app.host.config.service.console_frame_ancestors,
        ))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such route") })
        .layer(axum::middleware::map_response(openapi::json_errors))
        .layer(axum::extract::DefaultBodyLimit::max(max_request))
        .with_state(app)
}

/// What `weft serve` needs before it listens: a key to seal tenant
/// secrets.
pub fn preflight(host: &Host) -> anyhow::Result<()> {
    anyhow::ensure!(
        host.runtime.secrets().vault().is_some(),
        "weft serve needs a key to seal tenant secrets: set WEFT_SECRET_KEY or service.key_file \
         (make one with `head -c 32 /dev/urandom | base64 > weft.key`)"
    );
    Ok(())
}

/// Serves until `stop` completes, on `listener` (bound by the caller, so
/// that tests can ask the OS for a port). `report` gets every finished run.
/// `operator_tokens` are accepted as operator tokens besides those minted
/// over the API (the `weft` binary passes `WEFT_ADMIN_TOKEN`'s).
pub async fn run(
    host: Arc<Host>,
    listener: tokio::net::TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
    report: impl Fn(&crate::state::RunRecord) + Send + Sync + 'static,
    operator_tokens: Vec<String>,
) -> anyhow::Result<()> {
    preflight(&host)?;
    let (inbox_tx, inbox_rx) = mpsc::channel(4096);
    let (accepted_tx, accepted_rx) = mpsc::unbounded_channel();
    let (run_tx, run_rx) = mpsc::channel(1024);
    let operator_tokens = operator_tokens
        .iter()
        .map(|t| admin::hash_token(t))
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = Arc::new(AppState {
        host: host.clone(),
        inbox: inbox_tx,
        run_requests: run_tx,
        scheduling: AtomicBool::new(false),
        operator_tokens,
        stopping: stop_rx.clone(),
        secrets: Default::default(),
    });
    // Runs (scheduled ones and webhook processing) go on a runtime of their
    // own whose threads the kernel schedules at a lower priority: a burst
    // of work never slows the answers to webhooks and health checks.
    let work = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("weft-work")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()?;
    let writer = tokio::spawn(webhooks::writer(host.clone(), inbox_rx, accepted_tx));
    let processor = work.spawn(webhooks::processor(host.clone(), accepted_rx));
    let alerter = Arc::new(alerts::Alerter::new(host.clone()));
    let scheduler = {
        let (host, app, alerter) = (host.clone(), app.clone(), alerter.clone());
        let mut stop_rx = stop_rx.clone();
        work.spawn(async move {
            app.scheduling.store(true, Ordering::SeqCst);
            let report = move |r: &crate::state::RunRecord| {
                report(r);
                alerter.after_run(r);
            };
            let result = crate::service::scheduler::serve_with(
                &host,
                async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                },
                &report,
                run_rx,
            )
            .await;
            app.scheduling.store(false, Ordering::SeqCst);
            result
        })
    };
    /// How often `weft serve` forgets old run records.
    const PRUNE_RUNS_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
    let watchdog = {
        let alerter = alerter.clone();
        let host = host.clone();
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let hours = host.config.service.webhook_id_hours;
            let mut pruned_runs_at: Option<std::time::Instant> = None;
            loop {
                alerter.sweep();
                let before = crate::state::now_ms().saturating_sub(hours * 3_600_000);
                if let Err(e) = host.state.prune_webhook_ids(before) {
                    tracing::warn!(error = %format!("{e:#}"), "pruning webhook IDs");
                }
                // Run records, at start and hourly: kept without end, they
                // grew the state by a record a run (20,000 flows on
                // 5-minute schedules: 5.8 million a day).
                if pruned_runs_at.is_none_or(|t| t.elapsed() >= PRUNE_RUNS_EVERY) {
                    pruned_runs_at = Some(std::time::Instant::now());
                    let state = host.state.clone();
                    let (keep, age) = host.config.state.run_retention();
                    let before = crate::state::now_ms().saturating_sub(age);
                    let pruned =
                        tokio::task::spawn_blocking(move || state.prune_runs(keep, before)).await;
                    match pruned {
                        Ok(Ok(n)) if n > 0 => tracing::info!(runs = n, "forgot old run records"),
                        Ok(Err(e)) => {
                            tracing::warn!(error = %format!("{e:#}"), "pruning run records")
                        }
                        _ => {}
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
                    _ = stop_rx.wait_for(|s| *s) => return,
                }
            }
        })
    };
    // Replicas sharing the state: what another replica writes (tenants,
    // pauses) is live here within a second.
    let follower = host.state.replica().is_some().then(|| {
        let host = host.clone();
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let mut seen = None;
            loop {
                match host.state.docs_generation() {
                    Ok(g) if seen != Some(g) => {
                        if seen.is_some()
                            && let Err(e) = host.reload_tenants()
                        {
                            tracing::error!(error = %format!("{e:#}"), "reloading tenants written by another replica");
                        }
                        seen = Some(g);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "reading the state's generation"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                    _ = stop_rx.wait_for(|s| *s) => return,
                }
            }
        })
    });
    host.set_listening_on(listener.local_addr()?);
    let door = http::FrontDoor::from_config(&host.config.service);
    tracing::info!(
        listen = %listener.local_addr()?,
        max_connections = door.max_connections,
        "weft serve: listening"
    );
    http::serve(listener, router(app.clone()), door, async move {
        stop.await;
        tracing::info!("shutting down: finishing runs in flight");
        let _ = stop_tx.send(true);
    })
    .await?;
    // The server has stopped accepting: let the scheduler's runs finish,
    // close the inbox (the writer drains, the processor finishes its
    // batches), flush.
    scheduler.await??;
    watchdog.await?;
    if let Some(f) = follower {
        f.await?;
    }
    drop(app);
    writer.await?;
    processor.await?;
    // A runtime may not be dropped on an async thread.
    tokio::task::spawn_blocking(move || drop(work)).await?;
    host.state.flush()?;
    Ok(())
}

/// Runs `work` as a task of its own on the current runtime and waits for
/// it, passing a panic on to the caller; `None` when the runtime shut down
/// first. The scheduler and the webhook processor start their runs through
/// it: driven from their own task, a run blocking its thread (every
/// PostgreSQL state call does) held up all the others, and the runs of
/// one process shared one core.
pub(crate) async fn on_its_own_task<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    match tokio::spawn(work).await {
        Ok(t) => Some(t),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}

/// Lowers the calling thread's scheduling priority (nice 10).
#[allow(unsafe_code)]
fn lower_priority() {
    // SAFETY: `setpriority` on the calling thread's own ID touches no
    // memory; failing (it cannot, for a lower priority) changes nothing.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
}
