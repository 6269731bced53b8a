//! Each operation the admin API and the CLI share, once, behind one
//! interface ([`Ops`]) with two implementations: [`Local`], over a host
//! opened in this process (the admin handlers and the CLI without
//! `--server` use it), and [`Remote`], over a running `weft serve`'s admin
//! API (the CLI with `--server`). A CLI command is written once against
//! [`Ops`] and prints the same wherever the state is.
//!
//! Who may call an operation is the caller's business: the admin handlers
//! authorise before they call [`Local`] (`tenants::access`); the server
//! authorises what [`Remote`] asks.
//!
//! The room sits above the flows and the tenant store and below the
//! service and the CLI.

pub mod api;
mod local;
mod remote;

pub use local::Local;
pub use remote::Remote;

use crate::state::RunRecord;
use api::{ConnectorAdded, ConnectorVersion, DeadLetterView, FlowReset, FlowState, Replayed};
use std::path::Path;

/// Why an operation failed, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The tenant, flow, run or dead letter does not exist (or is not the
    /// caller's).
    #[error("{0}")]
    NotFound(String),
    /// The request is wrong: fix it and ask again.
    #[error("{0}")]
    Invalid(String),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// An operation's outcome.
pub type OpResult<T> = Result<T, OpError>;

/// Which tenant and flow a listing covers (`None`: all the caller sees).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The tenant.
    pub tenant: Option<String>,
    /// The flow.
    pub flow: Option<String>,
}

/// The operations of the admin API and the CLI.
#[allow(async_fn_in_trait)]
pub trait Ops {
    /// Dead letters, each with where its flow delivers now.
    async fn dead_letters(&self, scope: &Scope) -> OpResult<Vec<DeadLetterView>>;
    /// One dead letter.
    async fn dead_letter(&self, id: &str) -> OpResult<DeadLetterView>;
    /// Drops a dead letter.
    async fn discard_dead_letter(&self, id: &str) -> OpResult<()>;
    /// Replays one dead letter through its flow.
    async fn replay(&self, id: &str) -> OpResult<Replayed>;
    /// Replays every dead letter of `scope`.
    async fn replay_all(&self, scope: &Scope) -> OpResult<Vec<Replayed>>;
    /// The flows of `scope` (`tenant/flow`), in order.
    async fn flows(&self, scope: &Scope) -> OpResult<Vec<(String, String)>>;
    /// A flow's cursor, attention flag and health.
    async fn flow_state(&self, tenant: &str, flow: &str) -> OpResult<FlowState>;
    /// Moves a flow's cursor to the beginning, or to `since` (RFC 3339).
    async fn reset_flow(
        &self,
        tenant: &str,
        flow: &str,
        since: Option<&str>,
    ) -> OpResult<FlowReset>;
    /// Runs, newest first.
    async fn runs(&self, scope: &Scope, limit: usize) -> OpResult<Vec<RunRecord>>;
    /// One run.
    async fn run_record(&self, id: &str) -> OpResult<RunRecord>;
    /// Connector versions, with the flows (of `tenant`, or all) using each.
    async fn connectors(&self, tenant: Option<&str>) -> OpResult<Vec<ConnectorVersion>>;
    /// Validates, compiles and registers the component at `file`.
    async fn add_connector(&self, file: &Path) -> OpResult<ConnectorAdded>;
    /// Every tenant as `weft.toml`.
    async fn export_config(&self) -> OpResult<String>;
}

/// The flows of `tenants` (`(id, active, [(flow, paused)])`) that `scope`
/// selects: active tenants' flows that are not paused, unless the scope
/// names the tenant (or the flow) itself. `NotFound` for an unknown tenant
/// or when nothing matches.
pub fn select_flows<'a>(
    tenants: impl IntoIterator<Item = (&'a str, bool, Vec<(&'a str, bool)>)>,
    scope: &Scope,
) -> OpResult<Vec<(String, String)>> {
    let mut known = false;
    let mut out = Vec::new();
    for (tid, active, flows) in tenants {
        let named = scope.tenant.as_deref() == Some(tid);
        known |= named;
        if (!active && scope.tenant.is_none()) || (scope.tenant.is_some() && !named) {
            continue;
        }
        for (fid, paused) in flows {
            let wanted = match scope.flow.as_deref() {
                Some(f) => f == fid,
                None => !paused,
            };
            if wanted {
                out.push((tid.to_owned(), fid.to_owned()));
            }
        }
    }
    if let Some(t) = &scope.tenant
        && !known
    {
        return Err(OpError::NotFound(format!("no tenant {t:?}")));
    }
    if out.is_empty() {
        return Err(OpError::NotFound(
            "no flow matches (check --tenant and --flow)".into(),
        ));
    }
    Ok(out)
}

/// `since` as a reset cursor: `since:{since}` once it reads as an RFC 3339
/// instant.
pub fn reset_cursor(since: Option<&str>) -> OpResult<Option<String>> {
    match since {
        Some(s) => {
            humantime::parse_rfc3339_weak(s)
                .or_else(|_| humantime::parse_rfc3339(s))
                .map_err(|_| {
                    OpError::Invalid(format!("since: {s:?} is not an RFC 3339 instant"))
                })?;
            Ok(Some(format!("since:{s}")))
        }
        None => Ok(None),
    }
}
