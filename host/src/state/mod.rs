//! Durable state behind one small trait, [`StateStore`]: cursors, the last
//! version delivered per record, dead letters, runs, flows needing
//! attention, the connector registry's index and the connectors' kv spaces.
//! The runner talks only to the trait, so another backend (another embedded
//! store, or a networked one when weft runs on several machines) can be added
//! without touching it. [`SledState`] is the embedded backend.
//!
//! The room: this module holds the trait and its types; `sled.rs` the sled
//! backend, `inbox_log.rs` the webhook inbox's append-only log, [`kv`] the
//! connectors' key-value spaces, `behaviour.rs` the tests every backend runs
//! (a PostgreSQL backend goes beside `sled.rs` and calls the same macro).
//! It imports only the data model (`model`), never the runtime, flows or
//! service above it.
//!
//! [`StateStore::commit_page`] is the heart of exactly-once-in-effect
//! delivery: the page's dead letters, each record's [`Delivery`] entry
//! (the versions delivered, whether it exists at the destination) and,
//! last, the cursor are written and flushed to disk before it returns.

use crate::model::{ConnectorError, Record};
use anyhow::Context;
use kv::KvStore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(test)]
pub(crate) mod behaviour;
mod chunk;
pub mod copy;
mod group_flush;
mod inbox_log;
pub mod kv;
pub mod postgres;
mod sled;
pub use self::postgres::PgState;
pub use self::sled::SledState;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A record that could not be delivered, with what is needed to act on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// Stable ID: one per source record and destination, whichever flow
    /// carried it there ([`DeadLetter::id_for`]).
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// The flow.
    pub flow: String,
    /// Where it failed: `fetch`, `map` or `emit`.
    pub stage: String,
    /// The connector that refused it, `name@version`.
    pub connector: String,
    /// Where it was going: the flow's destination when it failed,
    /// `name@version` (empty in dead letters kept by earlier versions).
    #[serde(default)]
    pub destination: String,
    /// The record as the source produced it.
    pub record: Record,
    /// Why.
    pub error: ConnectorError,
    /// How many times it has failed (each sync or replay that failed).
    pub attempts: u32,
    /// When it first failed (ms since epoch).
    pub first_seen_ms: u64,
    /// When it last failed (ms since epoch).
    pub last_seen_ms: u64,
}

impl DeadLetter {
    /// The ID of the dead letter of the source record `key` of `kind` on its
    /// way to the destination `scope` (see `flow::delivery_scope`). Two
    /// flows that carry the same record to the same destination (Acme's
    /// `appointments` and `contacts` flows) share one dead letter.
    pub fn id_for(tenant: &str, scope: &str, kind: &str, key: &str) -> String {
        let mut h = Sha256::new();
        for part in [tenant, scope, kind, key] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        format!("dl_{}", &hex::encode(h.finalize())[..16])
    }
}

/// What one page's commit writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageCommit {
    /// The new cursor; `None` leaves it as it is.
    pub cursor: Option<String>,
    /// The destination scope the flow delivers to
    /// (`flow::delivery_scope`).
    pub scope: String,
    /// The source records handled: delivered or dead-lettered.
    pub records: Vec<Handled>,
    /// Records that go to the dead-letter store.
    pub dead_letters: Vec<DeadLetter>,
    /// Dead letters that were delivered and can be removed, by ID (a
    /// replay's, which may be filed under an older ID scheme). A handled
    /// record that got through ([`Handled::settles`]) also settles its own.
    pub resolved: Vec<String>,
    /// The scope's [`StateStore::commit_stamp`] read before the page's
    /// [`Delivery`] entries were: if no commit to the scope came in
    /// between, each record's entry is written from
    /// [`Handled::before`] without being read again. `None`: each is read.
    pub read_at: Option<u64>,
    /// The lease the committing run holds, where leases are shared rows:
    /// the commit is refused unless that lease is still this replica's
    /// (a run that outlived its lease, on a replica cut off or stalled,
    /// must not move a cursor another replica's run now owns).
    pub fence: Option<Fence>,
}

/// A lease row a commit must still hold: its name and its holder token
/// (the tenant is the commit's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The lease's name (`flow::writer_lease`).
    pub name: String,
    /// The token its row holds.
    pub token: String,
}

/// One source record a page handled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Handled {
    /// The record's key.
    pub key: String,
    /// Its version, now delivered (or dead-lettered) by the flow.
    pub version: i64,
    /// Whether what the record became now exists at the destination (an
    /// upsert reached it: `true`; only deletes did: `false`); `None` when
    /// nothing was sent, which leaves it as it was.
    pub present: Option<bool>,
    /// Its entry as read before the page was delivered
    /// ([`PageCommit::read_at`]).
    pub before: Delivery,
    /// The record's kind when it got through: it settles an older dead
    /// letter of the record in the scope, if there is one
    /// ([`DeadLetter::id_for`], computed only when dead letters exist).
    pub settles: Option<String>,
}

/// What a destination scope knows of one source record: whether what the
/// record became exists there, and the version each flow delivering there
/// last delivered (or dead-lettered). One entry per (tenant, scope, key),
/// read once before a record is delivered and written once after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// `Some(true)`: exists at the destination in some form;
    /// `Some(false)`: was removed from it; `None`: unknown (never
    /// delivered, or delivered before weft kept this).
    pub present: Option<bool>,
    /// (flow, version).
    pub versions: Vec<(String, i64)>,
}

impl Delivery {
    /// The version `flow` last delivered.
    pub fn version(&self, flow: &str) -> Option<i64> {
        self.versions
            .iter()
            .find(|(f, _)| f == flow)
            .map(|(_, v)| *v)
    }

    /// Sets `flow`'s version, never moving it backwards; whether it changed.
    fn set_version(&mut self, flow: &str, version: i64) -> bool {
        match self.versions.iter_mut().find(|(f, _)| f == flow) {
            Some((_, v)) if *v >= version => false,
            Some((_, v)) => {
                *v = version;
                true
            }
            None => {
                self.versions.push((flow.to_owned(), version));
                true
            }
        }
    }

    /// The stored form: presence (0 absent, 1 present, 2 unknown), then per
    /// flow its name's length (one byte), the name and the version (i64, big
    /// endian). An entry of one flow whose name has at most 12 bytes fits
    /// in 22 bytes, which sled keeps inline (no allocation of its own).
    fn encode(&self) -> anyhow::Result<Vec<u8>> {
        let size: usize = self.versions.iter().map(|(f, _)| f.len() + 9).sum();
        let mut b = Vec::with_capacity(1 + size);
        b.push(match self.present {
            Some(false) => 0,
            Some(true) => 1,
            None => 2,
        });
        for (flow, version) in &self.versions {
            let n = u8::try_from(flow.len())
                .with_context(|| format!("a flow name of {} bytes", flow.len()))?;
            b.push(n);
            b.extend_from_slice(flow.as_bytes());
            b.extend_from_slice(&version.to_be_bytes());
        }
        Ok(b)
    }

    fn decode(b: &[u8]) -> anyhow::Result<Delivery> {
        let (&p, mut rest) = b.split_first().context("an empty delivery entry")?;
        let present = match p {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        let mut versions = Vec::new();
        while let Some((&n, tail)) = rest.split_first() {
            let n = n as usize;
            anyhow::ensure!(tail.len() >= n + 8, "a truncated delivery entry");
            let flow = std::str::from_utf8(&tail[..n]).context("a delivery entry's flow")?;
            let v = i64::from_be_bytes(tail[n..n + 8].try_into().expect("8 bytes"));
            versions.push((flow.to_owned(), v));
            rest = &tail[n + 8..];
        }
        Ok(Delivery { present, versions })
    }
}

/// One webhook delivery accepted by `weft serve`, kept in the durable inbox
/// until the flow has processed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// Order of arrival (assigned by [`StateStore::inbox_append`]; increases
    /// across restarts).
    #[serde(default)]
    pub seq: u64,
    /// The tenant.
    pub tenant: String,
    /// The flow whose source receives it.
    pub flow: String,
    /// The sender's delivery ID (`webhook-id`), for dropping repeats.
    pub webhook_id: String,
    /// The request headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
    /// When it was accepted, ms since the epoch.
    pub received_ms: u64,
}

impl InboxEntry {
    /// A compact binary form for the store (no JSON, no base64: the inbox
    /// is on the hot path of webhook ingress): `received_ms`, then
    /// length-prefixed tenant, flow, webhook ID, header names and values,
    /// and the body.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self.body.len()
                + self
                    .headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 8)
                    .sum::<usize>(),
        );
        let put = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        };
        out.extend_from_slice(&self.received_ms.to_be_bytes());
        put(&mut out, self.tenant.as_bytes());
        put(&mut out, self.flow.as_bytes());
        put(&mut out, self.webhook_id.as_bytes());
        out.extend_from_slice(&(self.headers.len() as u32).to_be_bytes());
        for (k, v) in &self.headers {
            put(&mut out, k.as_bytes());
            put(&mut out, v.as_bytes());
        }
        put(&mut out, &self.body);
        out
    }

    /// Reads [`InboxEntry::encode`]'s form.
    fn decode(seq: u64, mut b: &[u8]) -> anyhow::Result<Self> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> anyhow::Result<&'a [u8]> {
            anyhow::ensure!(b.len() >= n, "a damaged inbox entry");
            let (head, rest) = b.split_at(n);
            *b = rest;
            Ok(head)
        }
        fn num(b: &mut &[u8]) -> anyhow::Result<usize> {
            Ok(u32::from_be_bytes(take(b, 4)?.try_into()?) as usize)
        }
        fn bytes(b: &mut &[u8]) -> anyhow::Result<Vec<u8>> {
            let n = num(b)?;
            Ok(take(b, n)?.to_vec())
        }
        fn text(b: &mut &[u8]) -> anyhow::Result<String> {
            String::from_utf8(bytes(b)?).context("a damaged inbox entry")
        }
        let received_ms = u64::from_be_bytes(take(&mut b, 8)?.try_into()?);
        let tenant = text(&mut b)?;
        let flow = text(&mut b)?;
        let webhook_id = text(&mut b)?;
        let n = num(&mut b)?;
        let mut headers = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            headers.push((text(&mut b)?, text(&mut b)?));
        }
        let body = bytes(&mut b)?;
        Ok(InboxEntry {
            seq,
            tenant,
            flow,
            webhook_id,
            headers,
            body,
            received_ms,
        })
    }
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Still running (or the process died while it ran).
    Running,
    /// Every page was committed.
    Succeeded,
    /// A transient failure outlasted the retry budget, or the sandbox
    /// stopped a connector; the cursor is where it was.
    Failed,
    /// A `config` error: the flow needs a person.
    NeedsAttention,
    /// The process ended while the run was going (killed, crashed, power
    /// lost); found and marked at the next start. Nothing past the last
    /// committed page counted.
    Interrupted,
}

impl RunOutcome {
    /// How the outcome is shown to people.
    pub fn label(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "FAILED",
            RunOutcome::NeedsAttention => "NEEDS ATTENTION",
            RunOutcome::Interrupted => "INTERRUPTED",
        }
    }
}

/// One run of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunRecord {
    /// `run_…`, sortable by start time.
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// The flow.
    pub flow: String,
    /// What started it: `manual`, `backfill`, `schedule`, `webhook`, `replay`.
    pub trigger: String,
    /// Start, ms since epoch.
    pub started_ms: u64,
    /// End, ms since epoch.
    pub ended_ms: Option<u64>,
    /// Connectors used, `name@version`.
    pub connectors: Vec<String>,
    /// Pages committed.
    pub pages: u64,
    /// Records the source returned.
    pub fetched: u64,
    /// Records the mappers produced.
    pub mapped: u64,
    /// Records the destination accepted.
    pub emitted: u64,
    /// Records dropped because a newer or equal version was delivered.
    pub skipped_stale: u64,
    /// Deletes with nothing to delete: the record never reached the
    /// destination (or was removed from it already), so no connector was
    /// called for it.
    #[serde(default)]
    pub skipped_absent: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// Transient failures retried.
    pub retries: u64,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Why it failed.
    pub error: Option<String>,
    /// The replica that ran it, when replicas share the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

impl RunRecord {
    /// A run `id` of (tenant, flow), running since `started_ms`, nothing
    /// counted yet.
    pub fn started(id: &str, tenant: &str, flow: &str, started_ms: u64) -> Self {
        RunRecord {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            flow: flow.to_owned(),
            trigger: String::new(),
            started_ms,
            ended_ms: None,
            connectors: vec![],
            pages: 0,
            fetched: 0,
            mapped: 0,
            emitted: 0,
            skipped_stale: 0,
            skipped_absent: 0,
            dead_lettered: 0,
            retries: 0,
            outcome: RunOutcome::Running,
            error: None,
            replica: None,
        }
    }

    /// Closes a run its process or replica left running: interrupted now,
    /// for `why`.
    pub fn interrupt(&mut self, why: &str) {
        self.outcome = RunOutcome::Interrupted;
        self.error = Some(why.to_owned());
        self.ended_ms = Some(now_ms());
    }
}

/// A registered connector version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectorEntry {
    /// Its name.
    pub name: String,
    /// Its version.
    #[schema(value_type = String, example = "1.2.0")]
    pub version: semver::Version,
    /// SHA-256 of the component; the file is `connectors/{digest}.wasm`.
    pub digest: String,
    /// `source`, `mapper` or `destination`.
    pub world: String,
    /// When it was added, ms since epoch.
    pub added_ms: u64,
}

/// The durable state of a weft host.
pub trait StateStore: Send + Sync + 'static {
    /// The cursor of (tenant, flow).
    fn cursor(&self, tenant: &str, flow: &str) -> anyhow::Result<Option<String>>;
    /// Sets (or, with `None`, clears) the cursor, flushed.
    fn set_cursor(&self, tenant: &str, flow: &str, cursor: Option<&str>) -> anyhow::Result<()>;
    /// Resets (tenant, flow), flushed: every version the flow delivered is
    /// forgotten, so that the records read again are delivered again, then
    /// the cursor becomes `cursor` (`None`: the beginning). What exists at
    /// destinations ([`Delivery::present`]) is kept.
    fn reset_flow(&self, tenant: &str, flow: &str, cursor: Option<&str>) -> anyhow::Result<()>;
    /// What the destination `scope` knows of source record `key`.
    fn delivery(&self, tenant: &str, scope: &str, key: &str) -> anyhow::Result<Delivery>;
    /// [`StateStore::delivery`] of each of `keys`, in their order: a page's
    /// entries at once (one round trip for a networked store).
    fn deliveries(
        &self,
        tenant: &str,
        scope: &str,
        keys: &[&str],
    ) -> anyhow::Result<Vec<Delivery>> {
        keys.iter()
            .map(|k| self.delivery(tenant, scope, k))
            .collect()
    }
    /// Moves what an earlier version kept per flow (versions) and per scope
    /// (presence) into [`Delivery`] entries; `scope_of` names the scope of
    /// each (tenant, flow) configured. Versions of flows no longer
    /// configured are dropped (were such a flow configured again, its
    /// records would be delivered once more). Returns how many entries were
    /// moved.
    fn migrate_deliveries(
        &self,
        _scope_of: &dyn Fn(&str, &str) -> Option<String>,
    ) -> anyhow::Result<usize> {
        Ok(0)
    }
    /// The configuration fingerprint (`flow::flow_fingerprint`) of the
    /// flow's last run, if it ran.
    fn flow_fingerprint(&self, tenant: &str, flow: &str) -> anyhow::Result<Option<String>>;
    /// Records the configuration fingerprint of the flow, durable with the
    /// next flushed write (the run's first commit, say): lost in a crash
    /// before it, the next run finds the fingerprint before, resets the
    /// flow once more (what a reset does twice, it does once) and records
    /// it again.
    fn set_flow_fingerprint(
        &self,
        tenant: &str,
        flow: &str,
        fingerprint: &str,
    ) -> anyhow::Result<()>;
    /// A stamp of the page commits to (tenant, scope), for
    /// [`PageCommit::read_at`]: read it before the entries of a page.
    fn commit_stamp(&self, tenant: &str, scope: &str) -> anyhow::Result<u64>;
    /// Writes one page's outcome and flushes it. A version never moves
    /// backwards. The cursor is written last: a crash part-way leaves the
    /// cursor where it was, and the page is read again (what was written of
    /// it only makes the repeat skip records as delivered).
    fn commit_page(&self, tenant: &str, flow: &str, commit: &PageCommit) -> anyhow::Result<()>;
    /// Notes, before they are sent, that the destination `scope` may hold
    /// source records `keys` from now on: their entries say present (the
    /// page's commit then writes what happened). A run killed between the
    /// send and its commit leaves them "maybe there", so a later delete of
    /// one is sent, not skipped as a delete of what never got there. Bumps
    /// the scope's commit stamp. Durable once [`StateStore::flush`] returns.
    fn note_sending(&self, tenant: &str, scope: &str, keys: &[&str]) -> anyhow::Result<()>;
    /// How many dead letters `tenant` has: what the alert check asks after
    /// every run, so a backend keeps it at hand instead of reading every
    /// dead letter (the default reads them).
    fn dead_letter_count(&self, tenant: &str) -> anyhow::Result<usize> {
        Ok(self.dead_letters(Some(tenant), None)?.len())
    }
    /// Dead letters, optionally filtered, oldest first.
    fn dead_letters(
        &self,
        tenant: Option<&str>,
        flow: Option<&str>,
    ) -> anyhow::Result<Vec<DeadLetter>>;
    /// One dead letter.
    fn dead_letter(&self, id: &str) -> anyhow::Result<Option<DeadLetter>>;
    /// Removes a dead letter, flushed; whether it existed.
    fn remove_dead_letter(&self, id: &str) -> anyhow::Result<bool>;
    /// Saves (inserts or replaces) a run record, flushed.
    fn save_run(&self, run: &RunRecord) -> anyhow::Result<()>;
    /// Saves a run's progress without flushing of its own: the next flushed
    /// write (a page's commit) makes it durable. Losing it loses only
    /// progress counts, never delivery state.
    fn save_run_progress(&self, run: &RunRecord) -> anyhow::Result<()> {
        self.save_run(run)
    }
    /// Runs, newest first, optionally filtered.
    fn runs(
        &self,
        tenant: Option<&str>,
        flow: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<RunRecord>>;
    /// One run.
    fn run(&self, id: &str) -> anyhow::Result<Option<RunRecord>>;
    /// Forgets old run records, flushed: of each flow's finished runs,
    /// those beyond the newest `keep` and those started before `before_ms`;
    /// each flow's newest finished run and every running one stay. How
    /// many went.
    fn prune_runs(&self, keep: usize, before_ms: u64) -> anyhow::Result<usize>;
    /// Marks a flow as needing attention (or clears it with `None`).
    fn set_attention(&self, tenant: &str, flow: &str, reason: Option<&str>) -> anyhow::Result<()>;
    /// Why a flow needs attention, if it does.
    fn attention(&self, tenant: &str, flow: &str) -> anyhow::Result<Option<String>>;
    /// Registers a connector version, flushed.
    fn register_connector(&self, entry: &ConnectorEntry) -> anyhow::Result<()>;
    /// Every registered connector version.
    fn connectors(&self) -> anyhow::Result<Vec<ConnectorEntry>>;
    /// The backend of the connectors' kv spaces.
    fn kv(&self) -> Arc<dyn KvStore>;
    /// Makes every write so far durable.
    fn flush(&self) -> anyhow::Result<()>;

    /// Makes every delivery appended to the inbox so far durable (what
    /// webhook ingress waits for before answering `2xx`). The whole store
    /// by default.
    fn inbox_sync(&self) -> anyhow::Result<()> {
        self.flush()
    }

    /// Writes a document of the service (`kind`: tenants created over the
    /// admin API, sealed secrets, hashed tokens, flow pauses, ...), flushed.
    fn doc_put(&self, kind: &str, id: &str, value: &[u8]) -> anyhow::Result<()>;
    /// One document.
    fn doc_get(&self, kind: &str, id: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// The documents of `kind` whose ID starts with `prefix`, by ID.
    fn doc_list(&self, kind: &str, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>>;
    /// Deletes a document, flushed; whether it existed.
    fn doc_delete(&self, kind: &str, id: &str) -> anyhow::Result<bool>;

    /// Appends webhook deliveries to the inbox. A delivery whose (tenant,
    /// flow, webhook ID) was accepted before (and not yet pruned) is not
    /// appended again. Returns, per delivery, its sequence number if it was
    /// new. Durable at the next [`StateStore::inbox_sync`] (the service's
    /// flusher calls it before anyone hears "accepted").
    fn inbox_append(&self, deliveries: &[InboxEntry]) -> anyhow::Result<Vec<Option<u64>>>;
    /// The deliveries not yet processed, in order of arrival.
    fn inbox_pending(&self) -> anyhow::Result<Vec<InboxEntry>>;
    /// Removes processed deliveries (their IDs stay known, for repeats).
    fn inbox_done(&self, seqs: &[u64]) -> anyhow::Result<()>;
    /// Forgets webhook IDs accepted before `before_ms`; how many.
    fn prune_webhook_ids(&self, before_ms: u64) -> anyhow::Result<usize>;

    // Shared by replicas. A state that is this process's alone (sled's)
    // keeps the defaults: no replica ID, so the flows' leases stay in the
    // process's memory, every scheduled start is its own, and no inbox
    // delivery belongs to anyone else.

    /// This process's replica ID when several processes share the state.
    fn replica(&self) -> Option<&str> {
        None
    }
    /// How long a lease or an inbox claim lasts unless renewed: a replica
    /// that died is replaced within it.
    fn lease_time(&self) -> std::time::Duration {
        std::time::Duration::from_secs(30)
    }
    /// Takes the lease (tenant, name) for `holder` (unique per taking) if
    /// it is free or its holder's time ran out; whether it was taken.
    fn try_lease(&self, _tenant: &str, _name: &str, _holder: &str) -> anyhow::Result<bool> {
        anyhow::bail!("this state is not shared: its leases are the process's")
    }
    /// Extends a lease `holder` of this replica holds; `false` when it is
    /// no longer its.
    fn renew_lease(&self, _tenant: &str, _name: &str, _holder: &str) -> anyhow::Result<bool> {
        anyhow::bail!("this state is not shared: its leases are the process's")
    }
    /// Gives a lease up.
    fn release_lease(&self, _tenant: &str, _name: &str, _holder: &str) -> anyhow::Result<()> {
        Ok(())
    }
    /// Who holds (tenant, name) now: (replica, holder).
    fn lease_holder(&self, _tenant: &str, _name: &str) -> anyhow::Result<Option<(String, String)>> {
        Ok(None)
    }
    /// How many leases this replica holds now.
    fn leases_held(&self) -> anyhow::Result<usize> {
        Ok(0)
    }
    /// Claims the scheduled start of (tenant, flow) at `now_ms` unless one
    /// was claimed less than `gap` before (by any replica); whether it was.
    fn claim_scheduled_start(
        &self,
        _tenant: &str,
        _flow: &str,
        _now_ms: u64,
        _gap: std::time::Duration,
    ) -> anyhow::Result<bool> {
        Ok(true)
    }
    /// Renews this replica's claims on the inbox deliveries it holds, and
    /// claims (and returns) those whose replica stopped renewing theirs.
    fn inbox_adopt(&self) -> anyhow::Result<Vec<InboxEntry>> {
        Ok(vec![])
    }
    /// A number that changes whenever any replica writes a document
    /// (tenants, secrets, tokens, pauses): the others reload when it does.
    fn docs_generation(&self) -> anyhow::Result<u64> {
        Ok(0)
    }
    /// The request buckets replicas share, so that a (tenant, origin) rate
    /// holds for all of them together (`None`: the process's own buckets).
    fn token_buckets(&self) -> Option<Arc<dyn TokenBuckets>> {
        None
    }

    /// Every fact the state holds, one at a time (`weft state copy`).
    fn export(&self, _each: &mut dyn FnMut(StateItem) -> anyhow::Result<()>) -> anyhow::Result<()> {
        anyhow::bail!("this state backend cannot export")
    }
    /// Writes `items` (exported from another state) into this one.
    fn import(&self, _items: Vec<StateItem>) -> anyhow::Result<()> {
        anyhow::bail!("this state backend cannot import")
    }
}

/// One fact of a state, as `weft state copy` moves it between backends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "item", rename_all = "snake_case")]
pub enum StateItem {
    /// A flow's cursor.
    Cursor {
        /// The tenant.
        tenant: String,
        /// The flow.
        flow: String,
        /// The cursor.
        cursor: String,
    },
    /// What a destination scope knows of a source record.
    Delivery {
        /// The tenant.
        tenant: String,
        /// The scope.
        scope: String,
        /// The record's key.
        key: String,
        /// Whether it exists at the destination.
        present: Option<bool>,
        /// (flow, version) delivered.
        versions: Vec<(String, i64)>,
    },
    /// A dead letter.
    DeadLetter(Box<DeadLetter>),
    /// A run record.
    Run(Box<RunRecord>),
    /// Why a flow needs attention.
    Attention {
        /// The tenant.
        tenant: String,
        /// The flow.
        flow: String,
        /// The reason.
        reason: String,
    },
    /// A flow's configuration fingerprint.
    Fingerprint {
        /// The tenant.
        tenant: String,
        /// The flow.
        flow: String,
        /// The fingerprint.
        fingerprint: String,
    },
    /// A registered connector version.
    Connector(ConnectorEntry),
    /// A document (tenant, sealed secret, token, pause, component, ...).
    Doc {
        /// Its kind.
        kind: String,
        /// Its ID.
        id: String,
        /// Its bytes.
        #[serde(with = "base64_bytes")]
        value: Vec<u8>,
    },
    /// A webhook delivery not yet processed (its `seq` is the source's).
    Inbox(Box<InboxEntry>),
    /// A webhook ID remembered, and when it was accepted.
    WebhookId {
        /// The tenant.
        tenant: String,
        /// The flow.
        flow: String,
        /// The sender's delivery ID.
        webhook_id: String,
        /// Accepted at, ms since the epoch.
        accepted_ms: u64,
    },
    /// A connector's kv entry.
    Kv {
        /// The tenant.
        tenant: String,
        /// The connector.
        connector: String,
        /// The key.
        key: String,
        /// The value.
        #[serde(with = "base64_bytes")]
        value: Vec<u8>,
    },
}

impl StateItem {
    /// Its kind's name (`cursor`, `delivery`, ...), for counts.
    pub fn kind(&self) -> &'static str {
        match self {
            StateItem::Cursor { .. } => "cursor",
            StateItem::Delivery { .. } => "delivery",
            StateItem::DeadLetter(_) => "dead_letter",
            StateItem::Run(_) => "run",
            StateItem::Attention { .. } => "attention",
            StateItem::Fingerprint { .. } => "fingerprint",
            StateItem::Connector(_) => "connector",
            StateItem::Doc { .. } => "doc",
            StateItem::Inbox(_) => "inbox",
            StateItem::WebhookId { .. } => "webhook_id",
            StateItem::Kv { .. } => "kv",
        }
    }
}

/// Token buckets shared by replicas, one per (tenant, origin).
pub trait TokenBuckets: Send + Sync {
    /// Takes a token from (tenant, origin)'s bucket of `per_second`, at
    /// most `burst` saved: `Ok(wait)`, the time to wait before sending;
    /// `Err(wait)`, taking nothing, when that wait would be over
    /// `max_wait`.
    fn take(
        &self,
        tenant: &str,
        origin: &str,
        per_second: f64,
        burst: u32,
        max_wait: std::time::Duration,
    ) -> anyhow::Result<Result<std::time::Duration, std::time::Duration>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_refuse_garbage() {
        let d = Delivery {
            present: Some(false),
            versions: vec![("appointments".into(), -3), ("contacts".into(), i64::MAX)],
        };
        assert_eq!(Delivery::decode(&d.encode().unwrap()).unwrap(), d);
        assert_eq!(
            Delivery::decode(&Delivery::default().encode().unwrap()).unwrap(),
            Delivery::default()
        );
        assert!(Delivery::decode(&[]).is_err());
        assert!(Delivery::decode(&[1, 5, b'a']).is_err());
        let one = Delivery {
            present: Some(true),
            versions: vec![("appointments".into(), 1)],
        };
        assert_eq!(
            one.encode().unwrap().len(),
            22,
            "sled keeps 22 bytes inline"
        );
        let long = Delivery {
            present: None,
            versions: vec![("f".repeat(256), 1)],
        };
        assert!(long.encode().is_err());
    }
}
