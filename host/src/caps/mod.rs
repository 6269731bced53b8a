//! One module per capability a connector can be granted. Each owns its
//! host-side implementation of the WIT imports and its per-instance state;
//! [`ConnectorCtx`] gathers that state for one instance.
//!
//! - [`config`]: the tenant's configuration of the connector (no secrets).
//! - [`kv`]: the (tenant, connector) key-value space, with size limits.
//! - [`log`]: structured logs, and the guest's stdout/stderr as log lines.
//! - [`http`]: outbound HTTP policy, quotas, credentials and retries.
//! - [`wasi`]: the restricted WASI context (no files, env, sockets, stdio).

pub mod clock;
pub mod config;
pub mod http;
pub mod kv;
pub mod log;
pub mod wasi;

use crate::events::EventLog;
use crate::runtime::limits::Limits;
use crate::state::kv::{KvSpace, KvStore};
use std::sync::Arc;

/// Who an instance works for, carried into every log line and event.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The tenant.
    pub tenant: String,
    /// The flow, when the instance runs for one.
    pub flow: Option<String>,
    /// The run, when the instance runs for one.
    pub run_id: Option<String>,
    /// `name@version`.
    pub connector: String,
}

/// The per-instance state of weft's own imports (config, kv, log).
pub struct ConnectorCtx {
    /// Who this instance works for.
    pub identity: Identity,
    /// The tenant's configuration of this connector, as JSON.
    pub config: serde_json::Value,
    /// The key-value backend.
    pub kv: Arc<dyn KvStore>,
    /// This instance's space in it.
    pub kv_space: KvSpace,
    /// Its writes not yet durable (synced before its next request).
    pub write_ahead: kv::WriteAhead,
    /// Limits.
    pub limits: Limits,
    /// Where refusals are recorded.
    pub events: EventLog,
    /// Where the guest's log lines (and stdout/stderr) go.
    pub logs: log::GuestLog,
    /// The deadline of the guest call in progress.
    pub deadline: http::CallDeadline,
}
