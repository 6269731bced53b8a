//! Durable state behind one small trait, [`StateStore`]: cursors, the last
//! version delivered per record, dead letters, runs, flows needing
//! attention, the connector registry's index and the connectors' kv spaces.
//! The runner talks only to the trait, so another backend (another embedded
//! store, or a networked one when weft runs on several machines) can be added
//! without touching it. [`SledState`] is the embedded backend.
//!
//! [`StateStore::commit_page`] is the heart of exactly-once-in-effect
//! delivery: the page's dead letters, each record's [`Delivery`] entry
//! (the versions delivered, whether it exists at the destination) and,
//! last, the cursor are written and flushed to disk before it returns.

use crate::kvstore::{KvStore, SledKv};
use crate::model::{ConnectorError, Record};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

mod inbox_log;
use inbox_log::InboxLog;

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
    /// way to the destination `scope` (see `runner::delivery_scope`). Two
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
    /// (`runner::delivery_scope`).
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
    /// The configuration fingerprint (`runner::flow_fingerprint`) of the
    /// flow's last run, if it ran.
    fn flow_fingerprint(&self, tenant: &str, flow: &str) -> anyhow::Result<Option<String>>;
    /// Records the configuration fingerprint of the flow, flushed.
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
}

/// [`StateStore`] on sled.
pub struct SledState {
    db: sled::Db,
    cursors: sled::Tree,
    /// Per (tenant, scope, key): the record's [`Delivery`].
    deliveries: sled::Tree,
    /// Versions per (tenant, flow, key), as earlier versions kept them
    /// (moved into `deliveries` by `migrate_deliveries`).
    versions: sled::Tree,
    dead: sled::Tree,
    runs: sled::Tree,
    flows: sled::Tree,
    registry: sled::Tree,
    /// Presence per (tenant, scope, key), as earlier versions kept it.
    presence: sled::Tree,
    fingerprints: sled::Tree,
    docs: sled::Tree,
    /// The inbox of earlier versions, moved into `inbox_log` at open.
    inbox: sled::Tree,
    webhook_ids: sled::Tree,
    kv: Arc<SledKv>,
    /// Webhook deliveries waiting to be processed (`{data_dir}/inbox`).
    inbox_log: InboxLog,
    /// Webhook IDs not yet in `webhook_ids`, where they go only once their
    /// deliveries are durable (an ID known before its delivery is would
    /// answer a retry of a delivery that a crash lost "already accepted").
    unsynced_ids: std::sync::Mutex<PendingIds>,
    /// Per (tenant, scope) (`key2`): the page commits to the scope since
    /// the process started ([`StateStore::commit_stamp`]). Its lock
    /// serializes commits. In memory: one counter per scope committed to
    /// since the start.
    commits: std::sync::Mutex<std::collections::HashMap<Vec<u8>, u64>>,
    /// Per (tenant, scope) (`key2`): which record keys may have an entry,
    /// built from the entries the first time the scope is read, so that a
    /// record that surely has none (every record of a first sync) costs no
    /// read. In memory, for each scope read since the start: Bloom filters
    /// with under 2% false positives, 1.2 KB at least, about 3 MB for a
    /// million entries and 13 MB for three million.
    scope_keys: std::sync::Mutex<std::collections::HashMap<Vec<u8>, ScopeKeys>>,
    /// The temporary directory of [`SledState::temporary`]'s inbox.
    _temp: Option<tempfile::TempDir>,
}

/// Webhook IDs on their way to the `webhook_ids` tree (key → accepted at,
/// ms): appended (their deliveries not yet durable), and synced (durable,
/// written to the tree by the next append, off the path of the answers).
/// An ID is in one of the two until it is in the tree.
#[derive(Default)]
struct PendingIds {
    appended: std::collections::HashMap<Vec<u8>, u64>,
    synced: std::collections::HashMap<Vec<u8>, u64>,
}

/// The record keys with an entry in one (tenant, scope), as a scalable
/// Bloom filter: a key none of its filters contains surely has no entry.
/// When the last filter is full, a twice as large one with half the false
/// positive rate is added (1% + 0.5% + ... stays under 2% in all), so the
/// entries are read only once, when it is built.
#[derive(Default)]
struct ScopeKeys {
    filters: Vec<fastbloom::BloomFilter>,
    /// Keys in the last filter.
    items: usize,
    /// How many the last filter was sized for.
    capacity: usize,
}

/// The capacity of the first filter of a [`ScopeKeys`].
const MIN_SCOPE_KEYS: usize = 1024;

impl ScopeKeys {
    fn contains(&self, key: &[u8]) -> bool {
        self.filters.iter().any(|f| f.contains(key))
    }

    fn insert(&mut self, key: &[u8]) {
        if self.filters.is_empty() || self.items >= self.capacity {
            let n = self.filters.len() as i32;
            self.capacity = MIN_SCOPE_KEYS << self.filters.len().min(30);
            self.filters.push(
                fastbloom::BloomFilter::with_false_pos(0.01 * 0.5f64.powi(n))
                    .expected_items(self.capacity),
            );
            self.items = 0;
        }
        self.filters.last_mut().expect("one was pushed").insert(key);
        self.items += 1;
    }
}

fn key2(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

fn key3(a: &str, b: &str, c: &str) -> Vec<u8> {
    let mut k = key2(a, b);
    k.push(0);
    k.extend_from_slice(c.as_bytes());
    k
}

fn json<T: Serialize>(v: &T) -> anyhow::Result<Vec<u8>> {
    serde_json::to_vec(v).context("encoding state")
}

fn unjson<T: for<'de> Deserialize<'de>>(v: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(v).context("decoding state")
}

/// The state database's page cache, in bytes.
pub const CACHE_BYTES: u64 = 16 << 20;

/// How often sled's own flusher thread wakes, in milliseconds (sled's
/// default is 500). weft flushes every commit itself, so the thread's work
/// is cleaning log segments, which copies B-tree nodes; the copies it and
/// the writers replace are freed only once no thread still reads them.
/// When a cleaning round met a first sync's stream of inserts, that heap
/// grew by 10–20 MiB for half a second: in `make bench`, 4 first syncs of
/// 12 peaked at 59–71 MiB with 500 ms, none of 12 (55–57 MiB) with 2 s. A
/// longer sync still meets a round every 2 s: such bursts are rarer, not
/// ruled out.
pub const CLEAN_EVERY_MS: u64 = 2000;

impl SledState {
    /// Opens (or creates) the database in `dir`, with a page cache of
    /// [`CACHE_BYTES`] (sled's default of 1 GiB would let the cache, not the
    /// data, decide weft's memory) and sled's flusher every
    /// [`CLEAN_EVERY_MS`].
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(CLEAN_EVERY_MS))
            .open()
            .with_context(|| {
                format!(
                    "opening the state database {} (is `weft serve` or another weft process using it? \
                     While `weft serve` runs, send commands to it: `weft --server http://ADDRESS ...`)",
                    dir.display()
                )
            })?;
        // Beside the database: `{data_dir}/inbox`.
        let inbox = dir.parent().unwrap_or(Path::new(".")).join("inbox");
        Self::from_db(db, &inbox, None)
    }

    /// A database that is deleted when dropped (tests).
    pub fn temporary() -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        let inbox = temp.path().join("inbox");
        Self::from_db(
            sled::Config::new().temporary(true).open()?,
            &inbox,
            Some(temp),
        )
    }

    fn from_db(
        db: sled::Db,
        inbox_dir: &Path,
        temp: Option<tempfile::TempDir>,
    ) -> anyhow::Result<Self> {
        let (inbox_log, _, accepted) = InboxLog::open(inbox_dir, 1)?;
        let state = SledState {
            cursors: db.open_tree("cursors")?,
            deliveries: db.open_tree("deliveries")?,
            versions: db.open_tree("versions")?,
            dead: db.open_tree("dead_letters")?,
            runs: db.open_tree("runs")?,
            flows: db.open_tree("flows")?,
            registry: db.open_tree("connectors")?,
            presence: db.open_tree("presence")?,
            fingerprints: db.open_tree("fingerprints")?,
            docs: db.open_tree("docs")?,
            inbox: db.open_tree("inbox")?,
            webhook_ids: db.open_tree("webhook_ids")?,
            kv: Arc::new(SledKv::open(&db)?),
            db,
            inbox_log,
            unsynced_ids: Default::default(),
            commits: Default::default(),
            scope_keys: Default::default(),
            _temp: temp,
        };
        state.migrate_inbox()?;
        state.remember_ids(accepted)?;
        Ok(state)
    }

    /// The record keys with an entry under `scope_id` (`key2(tenant,
    /// scope)`), read from the entries.
    fn build_scope_keys(&self, scope_id: &[u8]) -> anyhow::Result<ScopeKeys> {
        let mut prefix = scope_id.to_vec();
        prefix.push(0);
        let mut keys = ScopeKeys::default();
        for k in self.deliveries.scan_prefix(&prefix).keys() {
            keys.insert(&k?[prefix.len()..]);
        }
        Ok(keys)
    }

    /// Whether record `key` may have an entry in (tenant, scope); `false`
    /// is sure.
    fn may_have_entry(&self, tenant: &str, scope: &str, key: &str) -> anyhow::Result<bool> {
        let mut scopes = self.scope_keys.lock().unwrap_or_else(|p| p.into_inner());
        let keys = self.scope_keys_in(&mut scopes, key2(tenant, scope))?;
        Ok(keys.contains(key.as_bytes()))
    }

    /// The filter of `scope_id` in `scopes`, built if it is not there yet.
    fn scope_keys_in<'a>(
        &self,
        scopes: &'a mut std::collections::HashMap<Vec<u8>, ScopeKeys>,
        scope_id: Vec<u8>,
    ) -> anyhow::Result<&'a mut ScopeKeys> {
        Ok(match scopes.entry(scope_id) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let built = self.build_scope_keys(v.key())?;
                v.insert(built)
            }
        })
    }

    /// Notes that `keys` have (or are about to have) an entry in (tenant,
    /// scope).
    fn note_entries<'a>(
        &self,
        tenant: &str,
        scope: &str,
        keys: impl Iterator<Item = &'a str>,
    ) -> anyhow::Result<()> {
        let mut scopes = self.scope_keys.lock().unwrap_or_else(|p| p.into_inner());
        let known = self.scope_keys_in(&mut scopes, key2(tenant, scope))?;
        for k in keys {
            known.insert(k.as_bytes());
        }
        Ok(())
    }

    /// Moves the deliveries an earlier version kept in the `inbox` tree
    /// into the inbox log, in their order, before anything else runs.
    fn migrate_inbox(&self) -> anyhow::Result<()> {
        if self.inbox.is_empty() {
            return Ok(());
        }
        let mut old = Vec::new();
        for item in self.inbox.iter() {
            let (k, v) = item?;
            let seq = <[u8; 8]>::try_from(k.as_ref())
                .map(u64::from_be_bytes)
                .context("an inbox key")?;
            old.push(InboxEntry::decode(seq, &v)?);
        }
        let refs: Vec<&InboxEntry> = old.iter().collect();
        self.inbox_log.append(&refs);
        self.inbox_log.sync()?;
        self.inbox.clear()?;
        self.db.flush()?;
        tracing::info!(
            deliveries = old.len(),
            "moved the webhook inbox into its log"
        );
        Ok(())
    }

    /// Makes the database's writes durable (not the inbox log's: commits
    /// of runs must not wait for, nor hold up, webhook ingress's syncs).
    fn flush_db(&self) -> anyhow::Result<()> {
        self.db.flush().context("flushing the state database")?;
        Ok(())
    }

    /// Rebuilds the memory of webhook IDs from the deliveries the inbox
    /// still holds (processed or not): an ID acknowledged before a crash
    /// whose tree write was not yet durable is known again.
    fn remember_ids(&self, accepted: Vec<inbox_log::AcceptedId>) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for (tenant, flow, id, at) in accepted {
            let key = key3(&tenant, &flow, &id);
            if !self.webhook_ids.contains_key(&key)? {
                batch.insert(key, &at.to_be_bytes());
                n += 1;
            }
        }
        if n > 0 {
            self.webhook_ids.apply_batch(batch)?;
            self.webhook_ids.flush()?;
            tracing::info!(ids = n, "webhook IDs recovered from the inbox");
        }
        Ok(())
    }

    /// Writes the IDs of durable deliveries into the tree.
    fn store_synced_ids(&self) -> anyhow::Result<()> {
        let synced = std::mem::take(
            &mut self
                .unsynced_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .synced,
        );
        if synced.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (k, at) in &synced {
            batch.insert(k.as_slice(), &at.to_be_bytes());
        }
        if let Err(e) = self.webhook_ids.apply_batch(batch) {
            // Kept for the next attempt: an ID must not be forgotten.
            self.unsynced_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .synced
                .extend(synced);
            return Err(e.into());
        }
        Ok(())
    }
}

impl StateStore for SledState {
    fn cursor(&self, tenant: &str, flow: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .cursors
            .get(key2(tenant, flow))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_cursor(&self, tenant: &str, flow: &str, cursor: Option<&str>) -> anyhow::Result<()> {
        match cursor {
            Some(c) => self.cursors.insert(key2(tenant, flow), c.as_bytes())?,
            None => self.cursors.remove(key2(tenant, flow))?,
        };
        self.flush_db()
    }

    /// Scans the tenant's entries: a reset is rare, and an entry is kept
    /// per scope, not per flow. A record delivered between the scan and
    /// the writes is only delivered once more.
    fn reset_flow(&self, tenant: &str, flow: &str, cursor: Option<&str>) -> anyhow::Result<()> {
        let mut prefix = tenant.as_bytes().to_vec();
        prefix.push(0);
        // Under the commits' lock, and every scope it touches gets a new
        // stamp: a page read before the reset must not write back the
        // versions it removed.
        let mut commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = sled::Batch::default();
        let mut scopes = std::collections::BTreeSet::new();
        for item in self.deliveries.scan_prefix(&prefix) {
            let (k, v) = item?;
            let mut d = Delivery::decode(&v)?;
            let before = d.versions.len();
            d.versions.retain(|(f, _)| f != flow);
            if d.versions.len() != before {
                if let Some(scope) = k[prefix.len()..].split(|b| *b == 0).next() {
                    scopes.insert(scope.to_vec());
                }
                batch.insert(k, d.encode()?);
            }
        }
        self.deliveries.apply_batch(batch)?;
        for scope in scopes {
            let mut id = prefix.clone();
            id.extend_from_slice(&scope);
            *commits.entry(id).or_insert(0) += 1;
        }
        drop(commits);
        match cursor {
            Some(c) => self.cursors.insert(key2(tenant, flow), c.as_bytes())?,
            None => self.cursors.remove(key2(tenant, flow))?,
        };
        self.flush_db()
    }

    fn flow_fingerprint(&self, tenant: &str, flow: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .fingerprints
            .get(key2(tenant, flow))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_flow_fingerprint(
        &self,
        tenant: &str,
        flow: &str,
        fingerprint: &str,
    ) -> anyhow::Result<()> {
        self.fingerprints
            .insert(key2(tenant, flow), fingerprint.as_bytes())?;
        self.flush_db()
    }

    fn delivery(&self, tenant: &str, scope: &str, key: &str) -> anyhow::Result<Delivery> {
        if !self.may_have_entry(tenant, scope, key)? {
            return Ok(Delivery::default());
        }
        match self.deliveries.get(key3(tenant, scope, key))? {
            Some(v) => Delivery::decode(&v),
            None => Ok(Delivery::default()),
        }
    }

    fn migrate_deliveries(
        &self,
        scope_of: &dyn Fn(&str, &str) -> Option<String>,
    ) -> anyhow::Result<usize> {
        if self.versions.is_empty() && self.presence.is_empty() {
            return Ok(0);
        }
        // Idempotent: a crash part-way leaves the old trees, and the next
        // open moves everything again (versions never move backwards).
        let mut moved = 0;
        for item in self.presence.iter() {
            let (k, v) = item?;
            let mut d = match self.deliveries.get(&k)? {
                Some(old) => Delivery::decode(&old)?,
                None => Delivery::default(),
            };
            d.present = Some(v.first() == Some(&1));
            self.deliveries.insert(k, d.encode()?)?;
            moved += 1;
        }
        let mut orphans = 0;
        for item in self.versions.iter() {
            let (k, v) = item?;
            let mut parts = k.splitn(3, |b| *b == 0);
            let (Some(tenant), Some(flow), Some(key)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (tenant, flow) = (
                String::from_utf8_lossy(tenant),
                String::from_utf8_lossy(flow),
            );
            let (Some(scope), Ok(version)) =
                (scope_of(&tenant, &flow), <[u8; 8]>::try_from(v.as_ref()))
            else {
                orphans += 1;
                continue;
            };
            let mut nk = key2(&tenant, &scope);
            nk.push(0);
            nk.extend_from_slice(key);
            let mut d = match self.deliveries.get(&nk)? {
                Some(old) => Delivery::decode(&old)?,
                None => Delivery::default(),
            };
            d.set_version(&flow, i64::from_be_bytes(version));
            self.deliveries.insert(nk, d.encode()?)?;
            moved += 1;
        }
        self.flush_db()?;
        self.versions.clear()?;
        self.presence.clear()?;
        self.flush_db()?;
        if orphans > 0 {
            tracing::warn!(
                orphans,
                "dropped the delivered versions of flows no longer configured"
            );
        }
        tracing::info!(
            moved,
            "moved delivered versions and presence into per-scope entries"
        );
        Ok(moved)
    }

    fn commit_stamp(&self, tenant: &str, scope: &str) -> anyhow::Result<u64> {
        let commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        Ok(commits.get(&key2(tenant, scope)).copied().unwrap_or(0))
    }

    /// Plain inserts, no transaction: a sled transaction reads every key it
    /// writes and writes its own log buffer, which made commits a fifth of a
    /// sync's CPU (issue 10). Each write here is a fact that holds on its
    /// own (a dead letter, a record's entry), and the cursor comes last:
    /// sled recovers a prefix of its log, so after a crash the cursor has
    /// moved only if everything before it was written. The dead letters of
    /// the page are one atomic batch (their attempts are counted from what
    /// is stored). Commits are serialized by the lock of `commits`, so the
    /// entries read before a page was delivered are still the stored ones
    /// when the scope's stamp has not moved: each record then costs one
    /// insert and no read.
    fn commit_page(&self, tenant: &str, flow: &str, commit: &PageCommit) -> anyhow::Result<()> {
        let mut commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = commits.entry(key2(tenant, &commit.scope)).or_insert(0);
        let unchanged = commit.read_at == Some(*stamp);
        *stamp += 1;
        // Most records settle no dead letter: only those that exist are
        // removed, and none are looked for while there are none.
        let resolved: Vec<String> = if self.dead.is_empty() {
            vec![]
        } else {
            let own = commit.records.iter().filter_map(|h| {
                let kind = h.settles.as_deref()?;
                Some(DeadLetter::id_for(tenant, &commit.scope, kind, &h.key))
            });
            commit
                .resolved
                .iter()
                .cloned()
                .chain(own)
                .filter(|id| self.dead.contains_key(id.as_bytes()).unwrap_or(true))
                .collect()
        };
        if !commit.dead_letters.is_empty() || !resolved.is_empty() {
            let mut batch = sled::Batch::default();
            for d in &commit.dead_letters {
                let mut d = d.clone();
                if let Some(old) = self.dead.get(d.id.as_bytes())? {
                    let old: DeadLetter = unjson(&old)?;
                    d.attempts = old.attempts + d.attempts.max(1);
                    d.first_seen_ms = old.first_seen_ms;
                }
                batch.insert(d.id.as_bytes(), json(&d)?);
            }
            for id in resolved {
                batch.remove(id.as_bytes());
            }
            self.dead.apply_batch(batch)?;
        }
        // Into the scope's filter before the entries are written (a key in
        // it that has no entry yet only costs a read).
        self.note_entries(
            tenant,
            &commit.scope,
            commit
                .records
                .iter()
                .filter(|h| !unchanged || h.before == Delivery::default())
                .map(|h| h.key.as_str()),
        )?;
        for h in &commit.records {
            let mut d = if unchanged {
                h.before.clone()
            } else {
                self.delivery(tenant, &commit.scope, &h.key)?
            };
            let mut changed = d.set_version(flow, h.version);
            if h.present.is_some() && h.present != d.present {
                d.present = h.present;
                changed = true;
            }
            if changed {
                self.deliveries
                    .insert(key3(tenant, &commit.scope, &h.key), d.encode()?)?;
            }
        }
        if let Some(c) = &commit.cursor {
            self.cursors.insert(key2(tenant, flow), c.as_bytes())?;
        }
        drop(commits);
        self.flush_db()
    }

    fn dead_letters(
        &self,
        tenant: Option<&str>,
        flow: Option<&str>,
    ) -> anyhow::Result<Vec<DeadLetter>> {
        let mut out = Vec::new();
        for item in self.dead.iter().values() {
            let d: DeadLetter = unjson(&item?)?;
            if tenant.is_none_or(|t| t == d.tenant) && flow.is_none_or(|f| f == d.flow) {
                out.push(d);
            }
        }
        out.sort_by(|a, b| (a.first_seen_ms, &a.record.key).cmp(&(b.first_seen_ms, &b.record.key)));
        Ok(out)
    }

    fn dead_letter(&self, id: &str) -> anyhow::Result<Option<DeadLetter>> {
        self.dead
            .get(id.as_bytes())?
            .map(|v| unjson(&v))
            .transpose()
    }

    fn remove_dead_letter(&self, id: &str) -> anyhow::Result<bool> {
        let existed = self.dead.remove(id.as_bytes())?.is_some();
        self.flush_db()?;
        Ok(existed)
    }

    fn save_run(&self, run: &RunRecord) -> anyhow::Result<()> {
        self.runs.insert(run.id.as_bytes(), json(run)?)?;
        self.flush_db()
    }

    fn save_run_progress(&self, run: &RunRecord) -> anyhow::Result<()> {
        self.runs.insert(run.id.as_bytes(), json(run)?)?;
        Ok(())
    }

    fn runs(
        &self,
        tenant: Option<&str>,
        flow: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<RunRecord>> {
        let mut out = Vec::new();
        for item in self.runs.iter().values().rev() {
            let r: RunRecord = unjson(&item?)?;
            if tenant.is_none_or(|t| t == r.tenant) && flow.is_none_or(|f| f == r.flow) {
                out.push(r);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn run(&self, id: &str) -> anyhow::Result<Option<RunRecord>> {
        self.runs
            .get(id.as_bytes())?
            .map(|v| unjson(&v))
            .transpose()
    }

    fn set_attention(&self, tenant: &str, flow: &str, reason: Option<&str>) -> anyhow::Result<()> {
        match reason {
            Some(r) => self.flows.insert(key2(tenant, flow), r.as_bytes())?,
            None => self.flows.remove(key2(tenant, flow))?,
        };
        self.flush_db()
    }

    fn attention(&self, tenant: &str, flow: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .flows
            .get(key2(tenant, flow))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn register_connector(&self, entry: &ConnectorEntry) -> anyhow::Result<()> {
        self.registry
            .insert(key2(&entry.name, &entry.version.to_string()), json(entry)?)?;
        self.flush_db()
    }

    fn connectors(&self) -> anyhow::Result<Vec<ConnectorEntry>> {
        let mut out: Vec<ConnectorEntry> = self
            .registry
            .iter()
            .values()
            .map(|v| unjson(&v?))
            .collect::<anyhow::Result<_>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.version.cmp(&b.version)));
        Ok(out)
    }

    fn kv(&self) -> Arc<dyn KvStore> {
        self.kv.clone()
    }

    fn flush(&self) -> anyhow::Result<()> {
        self.inbox_sync()?;
        self.store_synced_ids()?;
        self.db.flush().context("flushing the state database")?;
        Ok(())
    }

    fn inbox_sync(&self) -> anyhow::Result<()> {
        // The IDs this sync makes durable are those appended before it.
        let ids: Vec<Vec<u8>> = self
            .unsynced_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .appended
            .keys()
            .cloned()
            .collect();
        self.inbox_log.sync()?;
        let mut pending = self.unsynced_ids.lock().unwrap_or_else(|e| e.into_inner());
        for k in ids {
            if let Some(at) = pending.appended.remove(&k) {
                pending.synced.insert(k, at);
            }
        }
        Ok(())
    }

    fn doc_put(&self, kind: &str, id: &str, value: &[u8]) -> anyhow::Result<()> {
        self.docs.insert(key2(kind, id), value)?;
        self.flush_db()
    }

    fn doc_get(&self, kind: &str, id: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.docs.get(key2(kind, id))?.map(|v| v.to_vec()))
    }

    fn doc_list(&self, kind: &str, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let head = key2(kind, "").len();
        self.docs
            .scan_prefix(key2(kind, prefix))
            .map(|item| {
                let (k, v) = item?;
                Ok((String::from_utf8_lossy(&k[head..]).into_owned(), v.to_vec()))
            })
            .collect()
    }

    fn doc_delete(&self, kind: &str, id: &str) -> anyhow::Result<bool> {
        let existed = self.docs.remove(key2(kind, id))?.is_some();
        self.flush_db()?;
        Ok(existed)
    }

    fn inbox_append(&self, deliveries: &[InboxEntry]) -> anyhow::Result<Vec<Option<u64>>> {
        // Callers serialize acceptance (one writer task), so check-then-
        // append cannot race. An ID is known once in `webhook_ids` (synced)
        // or `unsynced_ids` (appended, syncing).
        // The IDs the last sync made durable go to the tree now, while the
        // flusher syncs the next group.
        self.store_synced_ids()?;
        let mut pending = self.unsynced_ids.lock().unwrap_or_else(|e| e.into_inner());
        let mut fresh = Vec::with_capacity(deliveries.len());
        let mut is_new = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            let id_key = key3(&d.tenant, &d.flow, &d.webhook_id);
            let known = pending.appended.contains_key(&id_key)
                || pending.synced.contains_key(&id_key)
                || self.webhook_ids.contains_key(&id_key)?;
            if !known {
                pending.appended.insert(id_key, d.received_ms);
                fresh.push(d);
            }
            is_new.push(!known);
        }
        drop(pending);
        let mut seqs = self.inbox_log.append(&fresh).into_iter();
        Ok(is_new
            .into_iter()
            .map(|new| if new { seqs.next() } else { None })
            .collect())
    }

    fn inbox_pending(&self) -> anyhow::Result<Vec<InboxEntry>> {
        self.inbox_log.pending()
    }

    fn inbox_done(&self, seqs: &[u64]) -> anyhow::Result<()> {
        // A segment goes only once the IDs of its deliveries are durable in
        // the tree: a repeat of any of them must still be recognised.
        self.inbox_log.done(seqs, || {
            self.store_synced_ids()?;
            self.webhook_ids.flush()?;
            Ok(())
        })
    }

    fn prune_webhook_ids(&self, before_ms: u64) -> anyhow::Result<usize> {
        self.store_synced_ids()?;
        let mut n = 0;
        for item in self.webhook_ids.iter() {
            let (k, v) = item?;
            let at = <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if at < before_ms {
                self.webhook_ids.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Operation;

    fn dl(key: &str, attempts: u32, at: u64) -> DeadLetter {
        DeadLetter {
            id: DeadLetter::id_for("t", "dest", "k", key),
            tenant: "t".into(),
            flow: "f".into(),
            stage: "map".into(),
            connector: "m@1.0.0".into(),
            destination: "d@1.0.0".into(),
            record: Record {
                key: key.into(),
                kind: "k".into(),
                version: 1,
                op: Operation::Upsert,
                body: "{}".into(),
            },
            error: ConnectorError::Invalid("bad".into()),
            attempts,
            first_seen_ms: at,
            last_seen_ms: at,
        }
    }

    /// A page of `(key, version, present)` for `scope`, read with nothing
    /// stored before.
    fn page(scope: &str, records: &[(&str, i64, Option<bool>)]) -> PageCommit {
        PageCommit {
            scope: scope.into(),
            records: records
                .iter()
                .map(|(key, version, present)| Handled {
                    key: (*key).into(),
                    version: *version,
                    present: *present,
                    before: Delivery::default(),
                    settles: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn version(s: &SledState, scope: &str, flow: &str, key: &str) -> Option<i64> {
        s.delivery("t", scope, key).unwrap().version(flow)
    }

    #[test]
    fn commit_moves_cursor_versions_and_dead_letters_together() {
        let s = SledState::temporary().unwrap();
        s.commit_page(
            "t",
            "f",
            &PageCommit {
                cursor: Some("c1".into()),
                dead_letters: vec![dl("b", 1, 100)],
                ..page("dest", &[("a", 5, Some(true)), ("b", 7, None)])
            },
        )
        .unwrap();
        assert_eq!(s.cursor("t", "f").unwrap().as_deref(), Some("c1"));
        assert_eq!(version(&s, "dest", "f", "a"), Some(5));
        assert_eq!(version(&s, "dest", "other", "a"), None);
        assert_eq!(version(&s, "elsewhere", "f", "a"), None);
        // Versions never go backwards; a repeated dead letter counts attempts.
        s.commit_page(
            "t",
            "f",
            &PageCommit {
                dead_letters: vec![dl("b", 1, 200)],
                ..page("dest", &[("a", 3, None)])
            },
        )
        .unwrap();
        assert_eq!(version(&s, "dest", "f", "a"), Some(5));
        assert_eq!(s.cursor("t", "f").unwrap().as_deref(), Some("c1"));
        let d = s
            .dead_letter(&DeadLetter::id_for("t", "dest", "k", "b"))
            .unwrap()
            .unwrap();
        assert_eq!((d.attempts, d.first_seen_ms, d.last_seen_ms), (2, 100, 200));
        assert_eq!(s.dead_letters(Some("t"), None).unwrap().len(), 1);
        assert!(s.dead_letters(Some("u"), None).unwrap().is_empty());
        assert_eq!(s.delivery("t", "dest", "a").unwrap().present, Some(true));
        assert_eq!(s.delivery("t", "dest", "b").unwrap().present, None);
        // Another flow to the same scope keeps its own version, and the
        // record's presence is the scope's.
        s.commit_page("t", "g", &page("dest", &[("a", 1, Some(false))]))
            .unwrap();
        let a = s.delivery("t", "dest", "a").unwrap();
        assert_eq!((a.version("f"), a.version("g")), (Some(5), Some(1)));
        assert_eq!(a.present, Some(false));
    }

    /// A record that gets through settles its dead letter in the scope:
    /// by its kind and key (the ID computed in the commit, only when dead
    /// letters exist), or by an ID the commit names (a replay's).
    #[test]
    fn records_that_get_through_settle_their_dead_letters() {
        let s = SledState::temporary().unwrap();
        let commit = PageCommit {
            dead_letters: vec![dl("a", 1, 1), dl("b", 1, 1), dl("c", 1, 1)],
            ..page("dest", &[("a", 1, None), ("b", 1, None), ("c", 1, None)])
        };
        s.commit_page("t", "f", &commit).unwrap();
        let mut next = page("dest", &[("a", 2, Some(true)), ("b", 2, None)]);
        next.records[0].settles = Some("k".into());
        next.resolved = vec![DeadLetter::id_for("t", "dest", "k", "c")];
        s.commit_page("t", "f", &next).unwrap();
        let left: Vec<String> = s
            .dead_letters(None, None)
            .unwrap()
            .into_iter()
            .map(|d| d.record.key)
            .collect();
        assert_eq!(left, ["b"], "b was handled, but dead-lettered again");
        // Another kind of record with the same key is another dead letter.
        let mut other = page("dest", &[("b", 3, Some(true))]);
        other.records[0].settles = Some("other-kind".into());
        s.commit_page("t", "f", &other).unwrap();
        assert_eq!(s.dead_letters(None, None).unwrap().len(), 1);
        other.records[0].settles = Some("k".into());
        s.commit_page("t", "f", &other).unwrap();
        assert!(s.dead_letters(None, None).unwrap().is_empty());
    }

    #[test]
    fn an_entry_read_before_another_commit_is_read_again() {
        let s = SledState::temporary().unwrap();
        let at = |version: i64, read_at: Option<u64>| PageCommit {
            read_at,
            ..page("dest", &[("a", version, Some(true))])
        };
        let before = s.commit_stamp("t", "dest").unwrap();
        s.commit_page("t", "f", &at(5, Some(before))).unwrap();
        assert_eq!(version(&s, "dest", "f", "a"), Some(5));
        // Read at `before` (nothing stored then), committed after the page
        // above: version 3 must not replace 5.
        s.commit_page("t", "f", &at(3, Some(before))).unwrap();
        assert_eq!(version(&s, "dest", "f", "a"), Some(5));
        // A stamp read before another flow's commit to the scope: that
        // flow's version is kept.
        let now = s.commit_stamp("t", "dest").unwrap();
        s.commit_page("t", "g", &page("dest", &[("a", 1, None)]))
            .unwrap();
        let mut later = at(9, Some(now));
        later.records[0].before = Delivery {
            present: Some(true),
            versions: vec![("f".into(), 5)],
        };
        s.commit_page("t", "f", &later).unwrap();
        assert_eq!(version(&s, "dest", "f", "a"), Some(9));
        assert_eq!(version(&s, "dest", "g", "a"), Some(1));
        // Commits to another scope leave this scope's stamp as it was.
        let now = s.commit_stamp("t", "dest").unwrap();
        s.commit_page("t", "f", &page("other", &[("a", 1, None)]))
            .unwrap();
        assert_eq!(s.commit_stamp("t", "dest").unwrap(), now);
    }

    #[test]
    fn every_entry_is_found_while_the_scope_filter_grows_and_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<String> = (0..10 * MIN_SCOPE_KEYS).map(|i| format!("k{i}")).collect();
        {
            let s = SledState::open(dir.path()).unwrap();
            // The filter is built (empty) by the first read.
            assert_eq!(s.delivery("t", "dest", "k0").unwrap(), Delivery::default());
            for (n, chunk) in keys.chunks(1000).enumerate() {
                let records: Vec<(&str, i64, Option<bool>)> =
                    chunk.iter().map(|k| (k.as_str(), 1, Some(true))).collect();
                let read_at = Some(s.commit_stamp("t", "dest").unwrap());
                let commit = PageCommit {
                    read_at: if n % 2 == 0 { read_at } else { None },
                    ..page("dest", &records)
                };
                s.commit_page("t", "f", &commit).unwrap();
            }
            assert!(keys.iter().all(|k| version(&s, "dest", "f", k) == Some(1)));
            assert_eq!(version(&s, "dest", "f", "never"), None);
        }
        let s = SledState::open(dir.path()).unwrap();
        assert!(keys.iter().all(|k| version(&s, "dest", "f", k) == Some(1)));
    }

    #[test]
    fn a_page_read_before_a_reset_does_not_bring_back_what_it_removed() {
        let s = SledState::temporary().unwrap();
        s.commit_page("t", "f", &page("dest", &[("a", 1, Some(true))]))
            .unwrap();
        s.commit_page("t", "g", &page("dest", &[("a", 1, None)]))
            .unwrap();
        // A run of `f` reads the entry, then `g` is reset, then the run
        // commits.
        let read_at = s.commit_stamp("t", "dest").unwrap();
        let before = s.delivery("t", "dest", "a").unwrap();
        assert_eq!(before.version("g"), Some(1));
        s.reset_flow("t", "g", None).unwrap();
        let mut commit = PageCommit {
            read_at: Some(read_at),
            ..page("dest", &[("a", 2, Some(true))])
        };
        commit.records[0].before = before;
        s.commit_page("t", "f", &commit).unwrap();
        assert_eq!(version(&s, "dest", "f", "a"), Some(2));
        assert_eq!(version(&s, "dest", "g", "a"), None);
    }

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

    #[test]
    fn versions_and_presence_of_earlier_versions_move_into_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        {
            let s = SledState::open(&path).unwrap();
            for (flow, key, v) in [
                ("f", "a", 5i64),
                ("g", "a", 2),
                ("f", "b", 7),
                ("gone", "c", 1),
            ] {
                s.versions
                    .insert(key3("t", flow, key), &v.to_be_bytes())
                    .unwrap();
            }
            s.presence.insert(key3("t", "dest", "a"), &[1]).unwrap();
            s.presence.insert(key3("t", "dest", "z"), &[0]).unwrap();
            s.db.flush().unwrap();
        }
        let s = SledState::open(&path).unwrap();
        let scope_of = |_: &str, flow: &str| (flow != "gone").then(|| "dest".to_owned());
        assert_eq!(s.migrate_deliveries(&scope_of).unwrap(), 5);
        let a = s.delivery("t", "dest", "a").unwrap();
        assert_eq!(
            (a.present, a.version("f"), a.version("g")),
            (Some(true), Some(5), Some(2))
        );
        assert_eq!(version(&s, "dest", "f", "b"), Some(7));
        assert_eq!(s.delivery("t", "dest", "z").unwrap().present, Some(false));
        assert_eq!(s.delivery("t", "dest", "c").unwrap(), Delivery::default());
        assert!(s.versions.is_empty() && s.presence.is_empty());
        assert_eq!(s.migrate_deliveries(&scope_of).unwrap(), 0, "once");
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledState::open(dir.path()).unwrap();
            s.set_cursor("t", "f", Some("c9")).unwrap();
            s.set_attention("t", "f", Some("bad key")).unwrap();
        }
        let s = SledState::open(dir.path()).unwrap();
        assert_eq!(s.cursor("t", "f").unwrap().as_deref(), Some("c9"));
        assert_eq!(s.attention("t", "f").unwrap().as_deref(), Some("bad key"));
    }

    #[test]
    fn reset_is_scoped_to_the_flow_and_keeps_presence() {
        let s = SledState::temporary().unwrap();
        let commit = PageCommit {
            cursor: Some("c".into()),
            ..page("dest", &[("a", 1, Some(true))])
        };
        s.commit_page("t", "f", &commit).unwrap();
        s.commit_page("t", "f2", &commit).unwrap();
        s.reset_flow("t", "f", Some("since:2026-01-01T00:00:00Z"))
            .unwrap();
        assert_eq!(version(&s, "dest", "f", "a"), None);
        assert_eq!(
            s.cursor("t", "f").unwrap().as_deref(),
            Some("since:2026-01-01T00:00:00Z")
        );
        assert_eq!(version(&s, "dest", "f2", "a"), Some(1));
        assert_eq!(s.cursor("t", "f2").unwrap().as_deref(), Some("c"));
        assert_eq!(s.delivery("t", "dest", "a").unwrap().present, Some(true));
        s.reset_flow("t", "f2", None).unwrap();
        assert_eq!(s.cursor("t", "f2").unwrap(), None);
    }

    fn inbox_delivery(id: &str) -> InboxEntry {
        InboxEntry {
            seq: 0,
            tenant: "t".into(),
            flow: "f".into(),
            webhook_id: id.into(),
            headers: vec![("webhook-id".into(), id.into())],
            body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
            received_ms: 1_000,
        }
    }

    #[test]
    fn an_inbox_kept_by_an_earlier_version_moves_into_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        {
            let s = SledState::open(&path).unwrap();
            s.inbox
                .insert(7u64.to_be_bytes(), inbox_delivery("old").encode())
                .unwrap();
            s.db.flush().unwrap();
        }
        let s = SledState::open(&path).unwrap();
        let pending = s.inbox_pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].webhook_id, "old");
        assert!(s.inbox.is_empty());
        assert!(dir.path().join("inbox").is_dir());
        drop(s);
        let s = SledState::open(&path).unwrap();
        assert_eq!(s.inbox_pending().unwrap().len(), 1, "moved once");
    }

    #[test]
    fn the_inbox_keeps_order_drops_repeats_and_forgets_old_ids() {
        let s = SledState::temporary().unwrap();
        let first = s
            .inbox_append(&[
                inbox_delivery("a"),
                inbox_delivery("b"),
                inbox_delivery("a"),
            ])
            .unwrap();
        assert!(first[0].is_some() && first[1].is_some());
        assert_eq!(first[2], None, "a repeat within the batch");
        assert_eq!(s.inbox_append(&[inbox_delivery("b")]).unwrap(), vec![None]);
        // An ID is written only once its delivery is durable: a crash before
        // the sync must not leave a retry of a lost delivery taken for a
        // repeat.
        assert!(s.webhook_ids.is_empty());
        s.inbox_sync().unwrap();
        s.store_synced_ids().unwrap();
        assert_eq!(s.webhook_ids.len(), 2);
        let pending = s.inbox_pending().unwrap();
        let ids: Vec<&str> = pending.iter().map(|e| e.webhook_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(pending[0].seq, first[0].unwrap());
        assert_eq!(pending[1].body, inbox_delivery("b").body);
        s.inbox_done(&[pending[0].seq]).unwrap();
        assert_eq!(s.inbox_pending().unwrap().len(), 1);
        // Processed, but still known as a repeat until pruned.
        assert_eq!(s.inbox_append(&[inbox_delivery("a")]).unwrap(), vec![None]);
        assert_eq!(s.prune_webhook_ids(2_000).unwrap(), 2);
        assert!(s.inbox_append(&[inbox_delivery("a")]).unwrap()[0].is_some());
    }
}
