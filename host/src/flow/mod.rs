//! Running flows: fetch a page, map it, emit it, commit it, until the source
//! has no more.
//!
//! The rooms: `run.rs` one run (fetch, the pipeline of stages, retries and
//! trap isolation), `version.rs` the newest-wins check (per destination
//! record, across flows), `deliver.rs` map and emit, `commit.rs` what a
//! page's commit writes, `webhooks.rs` webhook batches (each delivery a
//! record that fails alone), `replay.rs` dead letters back through the
//! flow, and [`lease`] who may write (one lease per destination, for every
//! trigger). They add to [`crate::Host`] and know nothing of the service or
//! the CLI above them.
//!
//! The cursor of (tenant, flow) moves only in [`StateStore::commit_page`],
//! after every record of the page was delivered or dead-lettered, together
//! with the versions delivered and the dead letters, flushed to disk. A crash
//! anywhere before that means the page comes again; destinations are
//! idempotent, so a repeat is harmless. Records whose version is not newer
//! than the last one delivered for their key are skipped ("newer wins").
//! Transient errors are retried with jittered exponential backoff within the
//! flow's budget, then the run fails with the cursor where it was; invalid
//! records are dead-lettered and the rest of the page goes on; config errors
//! stop the flow and mark it as needing attention.

use crate::Host;
use crate::config::{FlowConfig, RetryPolicy, Stage};
use crate::model::{ConnectorError, Operation, Record};
use crate::runtime::connector::{
    CallError, Connector, ConnectorInstance, InstanceSlots, TenantGrant, WorldKind,
};
use crate::state::{
    DeadLetter, Delivery, Fence, Handled, PageCommit, RunOutcome, RunRecord, StateStore, now_ms,
};
use anyhow::{Context, anyhow, bail};
use std::collections::HashMap;
use std::time::Duration;
use tracing::Instrument;

mod commit;
mod deliver;
pub mod lease;
mod replay;
mod run;
mod version;
mod webhooks;

pub(crate) use commit::*;
pub(crate) use run::*;
pub use version::{delivery_scope, flow_fingerprint, writer_lease};
pub(crate) use webhooks::*;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// An operator ran it.
    Manual,
    /// An operator asked for everything from the beginning.
    Backfill,
    /// The schedule.
    Schedule,
}

impl Trigger {
    /// A run asked for while one is pending: the pending one becomes the
    /// stronger of the two (a backfill covers a manual run, and a manual
    /// run a scheduled one), so that no request is lost by waiting.
    pub(crate) fn merge(pending: Option<Trigger>, asked: Trigger) -> Trigger {
        let rank = |t: Trigger| match t {
            Trigger::Schedule => 0,
            Trigger::Manual => 1,
            Trigger::Backfill => 2,
        };
        match pending {
            Some(p) if rank(p) >= rank(asked) => p,
            _ => asked,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Backfill => "backfill",
            Trigger::Schedule => "schedule",
        }
    }
}

/// Why a run stopped early.
pub(crate) enum Stop {
    /// Retry budget spent or sandbox failure: the run failed.
    Failed(String),
    /// A config error: the flow needs a person.
    Attention(String),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Failed(format!("{e:#}"))
    }
}

/// A dead item: the source record and why it was dead-lettered.
pub(crate) struct Dead {
    pub(crate) stage: &'static str,
    pub(crate) connector: String,
    pub(crate) error: ConnectorError,
}

/// One source record on its way through the pipeline.
pub(crate) struct Item {
    pub(crate) source: Record,
    /// What the last stage made of it; `None`: the source record as it is
    /// (no copy of its body until a connector is called).
    pub(crate) outputs: Option<Vec<Record>>,
    pub(crate) dead: Option<Dead>,
    /// Whether something of this record may exist at the destination: a
    /// delete of a record that is surely absent is not sent.
    pub(crate) maybe_present: bool,
    /// The record's entry at the destination scope as read before delivery
    /// (the commit writes it back with the new version).
    pub(crate) before: Delivery,
    /// A mapper asked to retract and dead-letter the record
    /// ([`RETRACT_FIELD`]): the dead letter it becomes once its deletes are
    /// delivered.
    pub(crate) retract: Option<Dead>,
    /// Its deletes reached the destination: it no longer exists there.
    pub(crate) retracted: bool,
}

impl Item {
    /// What goes to the next stage.
    pub(crate) fn outputs(&self) -> &[Record] {
        self.outputs
            .as_deref()
            .unwrap_or(std::slice::from_ref(&self.source))
    }

    pub(crate) fn clear_outputs(&mut self) {
        self.outputs = Some(Vec::new());
    }
}

/// The body field of a mapper's delete output that asks the host to retract
/// the record and dead-letter it with the field's text as the reason (the
/// SDK's `DEAD_LETTER_FIELD`).
pub const RETRACT_FIELD: &str = "weft_dead_letter";

/// One webhook delivery: (headers with lowercase names, raw body).
pub type WebhookDelivery = (Vec<(String, String)>, Vec<u8>);

/// The reason of a retract request in `r`, if it is one.
pub(crate) fn retract_reason(r: &Record) -> Option<String> {
    if r.op != Operation::Delete || !r.body.contains(RETRACT_FIELD) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    v.get(RETRACT_FIELD)?.as_str().map(str::to_owned)
}

pub(crate) struct Pipeline {
    pub(crate) source: Option<ConnectorInstance>,
    pub(crate) sink: Sink,
}

/// The stages after the source: what a page is delivered through while the
/// source fetches the next one.
pub(crate) struct Sink {
    pub(crate) mappers: Vec<ConnectorInstance>,
    pub(crate) destination: ConnectorInstance,
    /// How to make a fresh instance of each mapper and of the destination
    /// (after a trap poisoned one): the connector and its stage.
    pub(crate) mapper_specs: Vec<(Connector, Stage)>,
    pub(crate) destination_spec: (Connector, Stage),
    /// (tenant, flow, run ID) the instances serve.
    pub(crate) serving: (String, String, String),
    /// What this run's commits must still hold (its lease's row).
    pub(crate) fence: Option<crate::state::Fence>,
}

/// One line on how a flow is doing, for `weft state show`: whether it needs
/// attention, how its last finished run ended, and how many finished runs
/// in a row did not succeed.
pub fn flow_health(state: &dyn StateStore, tenant: &str, flow: &str) -> anyhow::Result<String> {
    let runs = state.runs(Some(tenant), Some(flow), 1000)?;
    let mut finished = runs
        .iter()
        .filter(|r| r.outcome != RunOutcome::Running && r.trigger != "replay");
    let last = finished.clone().next();
    let failing = finished
        .by_ref()
        .take_while(|r| r.outcome != RunOutcome::Succeeded)
        .count();
    let mut s = match state.attention(tenant, flow)? {
        Some(a) => format!("NEEDS ATTENTION: {a}"),
        None if failing > 0 => "FAILING".to_owned(),
        None => "ok".to_owned(),
    };
    match last {
        None => s.push_str("\tno run yet"),
        Some(r) => {
            s.push_str(&format!("\tlast run {} ({})", r.outcome.label(), r.id));
            if failing > 0 {
                s.push_str(&format!(
                    ", {failing} run(s) in a row not succeeded; last error: {}",
                    r.error.as_deref().unwrap_or("(none recorded)")
                ));
            }
        }
    }
    if runs.iter().any(|r| r.outcome == RunOutcome::Running) {
        s.push_str("\ta run is in progress");
    }
    Ok(s)
}

/// Closes the runs of (tenant, flow) still recorded as running, once the
/// flow's lease is held: with replicas sharing the state, such a run
/// belonged to a replica that stopped (its lease ran out, or this one could
/// not be taken). A process alone marks them when it opens the state
/// (`host::mark_interrupted`) and finds none here.
pub(crate) fn close_abandoned_runs(
    state: &dyn crate::state::StateStore,
    tenant: &str,
    flow: &str,
) -> anyhow::Result<()> {
    if state.replica().is_none() {
        return Ok(());
    }
    for mut r in state.runs(Some(tenant), Some(flow), 20)? {
        if r.outcome == RunOutcome::Running {
            r.interrupt(
                "the replica running it stopped; pages after its last commit are read again",
            );
            state.save_run(&r)?;
            tracing::warn!(tenant, flow, run = %r.id, "closed a run its replica left running");
        }
    }
    Ok(())
}

/// A fresh run record, running since now.
pub(crate) fn new_run(tenant: &str, flow: &str) -> RunRecord {
    RunRecord::started(&new_run_id(), tenant, flow, now_ms())
}

/// A run ID that sorts by start time.
pub(crate) fn new_run_id() -> String {
    format!("run_{:012x}{:04x}", now_ms(), rand::random::<u16>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_honours_hint_and_cap() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay_ms: 100,
            max_delay_ms: 1_000,
        };
        assert!(backoff(&p, 1, None) <= Duration::from_millis(100));
        assert_eq!(
            backoff(&p, 1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            backoff(&p, 1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
        assert!(backoff(&p, 10, None) <= Duration::from_secs(1));
    }

    /// Flows that write one place share one lease; others do not.
    #[test]
    fn flows_writing_one_destination_share_a_lease() {
        let config = crate::config::WeftConfig::parse(
            r#"
[tenants.t.flows.appointments]
source = { connector = "s@^1", stream = "appointments" }
destination = { connector = "caldav@^1", config = { collection_url = "http://c/{email}/" } }
[tenants.t.flows.contacts]
source = { connector = "s@^1", stream = "contacts" }
destination = { connector = "caldav@^1", config = { collection_url = "http://c/{email}/" } }
[tenants.t.flows.other]
source = { connector = "s@^1", stream = "contacts" }
destination = { connector = "caldav@^1", config = { collection_url = "http://elsewhere/{email}/" } }
[tenants.t.flows.touchpoints]
source = { connector = "s@^1", stream = "activities" }
destination = { connector = "dashboard@^1" }
"#,
        )
        .unwrap();
        let flows = &config.tenants["t"].flows;
        let lease = |f: &str| writer_lease(&flows[f]);
        assert_eq!(lease("appointments"), lease("contacts"));
        assert_ne!(lease("appointments"), lease("other"));
        assert_ne!(lease("appointments"), lease("touchpoints"));
    }

    #[test]
    fn run_ids_sort_by_time() {
        let a = new_run_id();
        std::thread::sleep(Duration::from_millis(2));
        let b = new_run_id();
        assert!(a < b, "{a} {b}");
    }
}
