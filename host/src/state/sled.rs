//! [`StateStore`] on sled, the embedded default: one tree per kind of
//! state, the webhook inbox in its own append-only log (`inbox_log`),
//! every commit flushed before it returns.

use super::chunk::{self, CHUNK_MAX, Chunk};
use super::group_flush::GroupFlush;
use super::inbox_log::InboxLog;
use super::*;
use crate::state::kv::{KvStore, SledKv};
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;

/// [`StateStore`] on sled.
pub struct SledState {
    db: ::sled::Db,
    cursors: ::sled::Tree,
    /// Per (tenant, scope): the records' [`Delivery`] entries, in chunks
    /// ([`super::chunk`]) under `tenant\0scope\0` and the record key
    /// each starts at (the scope's first chunk at the empty key). A record's
    /// entry is in the chunk with the greatest start at or before its key.
    deliveries: ::sled::Tree,
    /// Per (tenant, scope, key): the entries as earlier versions kept
    /// them, one value a record (moved into chunks when the state opens).
    single_entries: ::sled::Tree,
    /// Versions per (tenant, flow, key), as earlier versions kept them
    /// (moved into `deliveries` by `migrate_deliveries`).
    versions: ::sled::Tree,
    dead: ::sled::Tree,
    runs: ::sled::Tree,
    /// Per (tenant, flow, run ID): nothing; the runs of one flow in order
    /// (`runs` is keyed by ID alone, and listing a flow's runs must not read
    /// every run of every tenant).
    flow_runs: ::sled::Tree,
    flows: ::sled::Tree,
    registry: ::sled::Tree,
    /// Presence per (tenant, scope, key), as earlier versions kept it.
    presence: ::sled::Tree,
    fingerprints: ::sled::Tree,
    docs: ::sled::Tree,
    /// The inbox of earlier versions, moved into `inbox_log` at open.
    inbox: ::sled::Tree,
    webhook_ids: ::sled::Tree,
    kv: Arc<SledKv>,
    /// The database's flushes, grouped: concurrent commits share one.
    flusher: Arc<GroupFlush>,
    /// Webhook deliveries waiting to be processed (`{data_dir}/inbox`).
    inbox_log: InboxLog,
    /// Webhook IDs not yet in `webhook_ids`, where they go only once their
    /// deliveries are durable (an ID known before its delivery is would
    /// answer a retry of a delivery that a crash lost "already accepted").
    unsynced_ids: std::sync::Mutex<PendingIds>,
    /// Per (tenant, scope) (`key2`): the page commits to the scope since
    /// the process started ([`StateStore::commit_stamp`]), behind a lock of
    /// the scope's own that serializes its commits (one lock for every
    /// scope serialized the commits of all tenants). In memory: one
    /// counter and lock per scope committed to since the start.
    commits: std::sync::Mutex<std::collections::HashMap<Vec<u8>, ScopeStamp>>,
    /// Held shared by every commit and alone by a reset, which moves the
    /// stamps of several scopes at once.
    commit_gate: std::sync::RwLock<()>,
    /// Dead letters per tenant: counted once at open, kept as they change
    /// (the alert check asks after every run; reading every dead letter
    /// of every tenant for it made the service quadratic in tenants).
    dead_counts: std::sync::Mutex<std::collections::HashMap<String, usize>>,
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

/// How long [`SledState::open`] waits for the database's lock to be let
/// go: sled's flusher thread holds the database until it next wakes, up to
/// [`CLEAN_EVERY_MS`] after the last handle is dropped.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(3 * CLEAN_EVERY_MS);

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

/// A scope's commit stamp, behind the lock its commits take.
type ScopeStamp = Arc<std::sync::Mutex<u64>>;

fn lock(stamp: &ScopeStamp) -> std::sync::MutexGuard<'_, u64> {
    stamp.lock().unwrap_or_else(|p| p.into_inner())
}

impl SledState {
    /// Opens (or creates) the database in `dir`, with a page cache of
    /// [`CACHE_BYTES`] (sled's default of 1 GiB would let the cache, not the
    /// data, decide weft's memory) and sled's flusher every
    /// [`CLEAN_EVERY_MS`].
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let config = ::sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(CLEAN_EVERY_MS));
        // The database's file lock outlives its last handle by a moment (its
        // flusher thread lets go on its own time): a process that reopens
        // the state, or a restart right after an exit, waits for it rather
        // than failing. Another live process keeps it: that still fails.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match config.open() {
                // sled words it "could not acquire lock on …" (kind `Other`).
                Err(::sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other,
            }
        }
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
            ::sled::Config::new().temporary(true).open()?,
            &inbox,
            Some(temp),
        )
    }

    fn from_db(
        db: ::sled::Db,
        inbox_dir: &Path,
        temp: Option<tempfile::TempDir>,
    ) -> anyhow::Result<Self> {
        let (inbox_log, _, accepted) = InboxLog::open(inbox_dir, 1)?;
        let flusher = Arc::new(GroupFlush::new(db.clone()));
        let state = SledState {
            cursors: db.open_tree("cursors")?,
            deliveries: db.open_tree("delivery_chunks")?,
            single_entries: db.open_tree("deliveries")?,
            versions: db.open_tree("versions")?,
            dead: db.open_tree("dead_letters")?,
            runs: db.open_tree("runs")?,
            flow_runs: db.open_tree("runs_by_flow")?,
            flows: db.open_tree("flows")?,
            registry: db.open_tree("connectors")?,
            presence: db.open_tree("presence")?,
            fingerprints: db.open_tree("fingerprints")?,
            docs: db.open_tree("docs")?,
            inbox: db.open_tree("inbox")?,
            webhook_ids: db.open_tree("webhook_ids")?,
            kv: Arc::new(SledKv::open(&db, flusher.clone())?),
            flusher,
            db,
            inbox_log,
            unsynced_ids: Default::default(),
            commits: Default::default(),
            commit_gate: Default::default(),
            dead_counts: Default::default(),
            scope_keys: Default::default(),
            _temp: temp,
        };
        state.migrate_inbox()?;
        state.chunk_single_entries()?;
        state.index_runs()?;
        state.remember_ids(accepted)?;
        state.count_dead_letters()?;
        Ok(state)
    }

    /// Indexes the runs by flow, where a state written by an earlier
    /// version of weft has runs and no index (once, at open).
    fn index_runs(&self) -> anyhow::Result<()> {
        if !self.flow_runs.is_empty() || self.runs.is_empty() {
            return Ok(());
        }
        for item in self.runs.iter().values() {
            let r: RunRecord = unjson(&item?)?;
            self.flow_runs
                .insert(key3(&r.tenant, &r.flow, &r.id), &[])?;
        }
        self.flush_db()
    }

    /// Counts the dead letters per tenant (at open).
    fn count_dead_letters(&self) -> anyhow::Result<()> {
        let mut counts = std::collections::HashMap::new();
        for item in self.dead.iter().values() {
            let d: DeadLetter = unjson(&item?)?;
            *counts.entry(d.tenant).or_insert(0) += 1;
        }
        *self.dead_counts.lock().unwrap_or_else(|p| p.into_inner()) = counts;
        Ok(())
    }

    /// Adds `delta` to `tenant`'s count of dead letters.
    fn count_dead(&self, tenant: &str, delta: isize) {
        if delta == 0 {
            return;
        }
        let mut counts = self.dead_counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(tenant.to_owned()).or_insert(0);
        *n = n.saturating_add_signed(delta);
    }

    /// The record keys with an entry under `scope_id` (`key2(tenant,
    /// scope)`), read from the entries.
    fn build_scope_keys(&self, scope_id: &[u8]) -> anyhow::Result<ScopeKeys> {
        let mut prefix = scope_id.to_vec();
        prefix.push(0);
        let mut keys = ScopeKeys::default();
        for v in self.deliveries.scan_prefix(&prefix).values() {
            let v = v?;
            for (k, _) in Chunk::decode(&v)?.entries() {
                keys.insert(k);
            }
        }
        Ok(keys)
    }

    /// The chunk of `scope` (`key3(tenant, scope, "")`) that holds `key`'s
    /// entry if it has one, and the record key the scope's next chunk
    /// starts at. `None`: the scope has no entries.
    fn chunk_of(&self, scope: &[u8], key: &[u8]) -> anyhow::Result<Option<Found>> {
        let mut upto = scope.to_vec();
        upto.extend_from_slice(key);
        let Some(item) = self.deliveries.range(scope.to_vec()..=upto).next_back() else {
            return Ok(None);
        };
        let (at, value) = item?;
        let mut after = at.to_vec();
        after.push(0);
        let next = match self.deliveries.range(after..).next() {
            Some(item) => {
                let (k, _) = item?;
                k.starts_with(scope).then(|| k[scope.len()..].to_vec())
            }
            None => None,
        };
        Ok(Some(Found {
            at: at.to_vec(),
            value,
            next,
        }))
    }

    /// The entries of `keys` (in any order) in `scope` (`key3(tenant,
    /// scope, "")`), each chunk read once.
    fn read_entries(&self, scope: &[u8], keys: &[&[u8]]) -> anyhow::Result<Vec<Delivery>> {
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|&i| keys[i]);
        let mut out = vec![Delivery::default(); keys.len()];
        let mut at: Option<Found> = None;
        for i in order {
            let key = keys[i];
            let covers = at.as_ref().is_some_and(|f| {
                &f.at[scope.len()..] <= key && f.next.as_deref().is_none_or(|n| key < n)
            });
            if !covers {
                at = self.chunk_of(scope, key)?;
            }
            if let Some(f) = &at
                && let Some(entry) = chunk::lookup(&f.value, key)?
            {
                out[i] = Delivery::decode(entry)?;
            }
        }
        Ok(out)
    }

    /// Changes the entries of `keys` (in order, each once) in `scope`
    /// (`key3(tenant, scope, "")`): `change(i, entry)` says whether it
    /// changed the entry of `keys[i]`. Each chunk is read once and written
    /// once if an entry in it changed. Callers hold the scope's lock.
    fn update_entries(
        &self,
        scope: &[u8],
        keys: &[&[u8]],
        mut change: impl FnMut(usize, &mut Delivery) -> bool,
    ) -> anyhow::Result<()> {
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let mut i = 0;
        while i < keys.len() {
            let found = self.chunk_of(scope, keys[i])?;
            let (at, mut chunk, next) = match &found {
                Some(f) => (f.at.clone(), Chunk::decode(&f.value)?, f.next.as_deref()),
                None => (scope.to_vec(), Chunk::default(), None),
            };
            let mut changed = false;
            while i < keys.len() && next.is_none_or(|n| keys[i] < n) {
                let mut d = match chunk.get(keys[i]) {
                    Some(entry) => Delivery::decode(entry)?,
                    None => Delivery::default(),
                };
                if change(i, &mut d) {
                    chunk.put(keys[i], d.encode()?);
                    changed = true;
                }
                i += 1;
            }
            if changed {
                self.store_chunk(scope, at, chunk)?;
            }
        }
        Ok(())
    }

    /// Writes `chunk` at `at`, cut in two or more when it outgrew
    /// [`CHUNK_MAX`]: the new chunks first, so that until the first is
    /// rewritten it still holds their entries (sled recovers a prefix of
    /// its log: a crash in between loses nothing, and lookups already go
    /// to the new chunks).
    fn store_chunk(&self, scope: &[u8], at: Vec<u8>, chunk: Chunk) -> anyhow::Result<()> {
        let pieces = chunk.split();
        for piece in &pieces[1..] {
            let mut k = scope.to_vec();
            k.extend_from_slice(piece.first_key().context("an empty chunk")?);
            self.deliveries.insert(k, piece.encode()?)?;
        }
        self.deliveries.insert(at, pieces[0].encode()?)?;
        Ok(())
    }

    /// Moves entries an earlier version kept one to a value into chunks.
    /// A crash part-way leaves them there, and the next open starts over.
    fn chunk_single_entries(&self) -> anyhow::Result<()> {
        if self.single_entries.is_empty() {
            return Ok(());
        }
        self.deliveries.clear()?;
        let mut moved = 0usize;
        let mut scope: Vec<u8> = Vec::new();
        let mut chunk = Chunk::default();
        let mut chunk_at: Vec<u8> = Vec::new();
        for item in self.single_entries.iter() {
            let (k, v) = item?;
            let Some(cut) = scope_end(&k) else {
                continue;
            };
            let (this_scope, key) = k.split_at(cut);
            if this_scope != scope.as_slice() || chunk.len() >= CHUNK_MAX / 2 {
                if !chunk.is_empty() {
                    self.deliveries.insert(&chunk_at, chunk.encode()?)?;
                }
                chunk_at = this_scope.to_vec();
                if this_scope == scope.as_slice() {
                    chunk_at.extend_from_slice(key);
                }
                scope = this_scope.to_vec();
                chunk = Chunk::default();
            }
            chunk.push(key.to_vec(), v.to_vec());
            moved += 1;
        }
        if !chunk.is_empty() {
            self.deliveries.insert(&chunk_at, chunk.encode()?)?;
        }
        self.flush_db()?;
        self.single_entries.clear()?;
        self.flush_db()?;
        tracing::info!(moved, "moved record entries into chunks");
        Ok(())
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

    /// The stamp and lock of the scope `key2(tenant, scope)`.
    fn scope_stamp(&self, key: Vec<u8>) -> ScopeStamp {
        self.commits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone()
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
        self.flusher
            .flush()
            .context("flushing the state database")?;
        Ok(())
    }

    /// Rebuilds the memory of webhook IDs from the deliveries the inbox
    /// still holds (processed or not): an ID acknowledged before a crash
    /// whose tree write was not yet durable is known again.
    fn remember_ids(&self, accepted: Vec<inbox_log::AcceptedId>) -> anyhow::Result<()> {
        let mut batch = ::sled::Batch::default();
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
        let mut batch = ::sled::Batch::default();
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
        text_at(&self.cursors, key2(tenant, flow))
    }

    fn set_cursor(&self, tenant: &str, flow: &str, cursor: Option<&str>) -> anyhow::Result<()> {
        put_or_remove(&self.cursors, key2(tenant, flow), cursor)?;
        self.flush_db()
    }

    /// Scans the tenant's entries: a reset is rare, and an entry is kept
    /// per scope, not per flow. A record delivered between the scan and
    /// the writes is only delivered once more.
    fn reset_flow(&self, tenant: &str, flow: &str, cursor: Option<&str>) -> anyhow::Result<()> {
        let mut prefix = tenant.as_bytes().to_vec();
        prefix.push(0);
        // Alone under the commit gate, and every scope it touches gets a new
        // stamp: a page read before the reset must not write back the
        // versions it removed.
        let gate = self.commit_gate.write().unwrap_or_else(|p| p.into_inner());
        let mut batch = ::sled::Batch::default();
        let mut scopes = std::collections::BTreeSet::new();
        for item in self.deliveries.scan_prefix(&prefix) {
            let (k, v) = item?;
            let mut chunk = Chunk::decode(&v)?;
            let mut changed = false;
            for entry in chunk.entries_mut() {
                let mut d = Delivery::decode(entry)?;
                let before = d.versions.len();
                d.versions.retain(|(f, _)| f != flow);
                if d.versions.len() != before {
                    *entry = std::borrow::Cow::Owned(d.encode()?);
                    changed = true;
                }
            }
            if changed {
                if let Some(scope) = k[prefix.len()..].split(|b| *b == 0).next() {
                    scopes.insert(scope.to_vec());
                }
                batch.insert(k, chunk.encode()?);
            }
        }
        self.deliveries.apply_batch(batch)?;
        for scope in scopes {
            let mut id = prefix.clone();
            id.extend_from_slice(&scope);
            *lock(&self.scope_stamp(id)) += 1;
        }
        drop(gate);
        put_or_remove(&self.cursors, key2(tenant, flow), cursor)?;
        self.flush_db()
    }

    fn flow_fingerprint(&self, tenant: &str, flow: &str) -> anyhow::Result<Option<String>> {
        text_at(&self.fingerprints, key2(tenant, flow))
    }

    fn set_flow_fingerprint(
        &self,
        tenant: &str,
        flow: &str,
        fingerprint: &str,
    ) -> anyhow::Result<()> {
        self.fingerprints
            .insert(key2(tenant, flow), fingerprint.as_bytes())?;
        Ok(())
    }

    fn delivery(&self, tenant: &str, scope: &str, key: &str) -> anyhow::Result<Delivery> {
        if !self.may_have_entry(tenant, scope, key)? {
            return Ok(Delivery::default());
        }
        let mut found = self.read_entries(&key3(tenant, scope, ""), &[key.as_bytes()])?;
        Ok(found.pop().unwrap_or_default())
    }

    fn deliveries(
        &self,
        tenant: &str,
        scope: &str,
        keys: &[&str],
    ) -> anyhow::Result<Vec<Delivery>> {
        // Only the keys that may have an entry are looked for.
        let mut asked = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if self.may_have_entry(tenant, scope, k)? {
                asked.push(i);
            }
        }
        let mut out = vec![Delivery::default(); keys.len()];
        if asked.is_empty() {
            return Ok(out);
        }
        let wanted: Vec<&[u8]> = asked.iter().map(|&i| keys[i].as_bytes()).collect();
        let found = self.read_entries(&key3(tenant, scope, ""), &wanted)?;
        for (i, d) in asked.into_iter().zip(found) {
            out[i] = d;
        }
        Ok(out)
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
            let Some(cut) = scope_end(&k) else {
                continue;
            };
            let (scope, key) = k.split_at(cut);
            self.update_entries(scope, &[key], |_, d| {
                d.present = Some(v.first() == Some(&1));
                true
            })?;
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
            self.update_entries(&key3(&tenant, &scope, ""), &[key], |_, d| {
                d.set_version(&flow, i64::from_be_bytes(version))
            })?;
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
        let found = self
            .commits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key2(tenant, scope))
            .cloned();
        Ok(found.map_or(0, |stamp| *lock(&stamp)))
    }

    /// Plain inserts, no transaction: a sled transaction reads every key it
    /// writes and writes its own log buffer, which made commits a fifth of a
    /// sync's CPU (issue 10). Each write here is a fact that holds on its
    /// own (a dead letter, a chunk of record entries), and the cursor comes
    /// last: sled recovers a prefix of its log, so after a crash the cursor
    /// has moved only if everything before it was written. The dead letters
    /// of the page are one atomic batch (their attempts are counted from
    /// what is stored). Commits to a scope are serialized by its lock, and
    /// each chunk the page touches is read and written once under it, so
    /// what it changes is the stored entry.
    fn note_sending(&self, tenant: &str, scope: &str, keys: &[&str]) -> anyhow::Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let gate = self.commit_gate.read().unwrap_or_else(|p| p.into_inner());
        let stamped = self.scope_stamp(key2(tenant, scope));
        let mut stamp = lock(&stamped);
        *stamp += 1;
        self.note_entries(tenant, scope, keys.iter().copied())?;
        let mut sorted: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        sorted.sort();
        sorted.dedup();
        self.update_entries(&key3(tenant, scope, ""), &sorted, |_, d| {
            let mark = d.present != Some(true);
            if mark {
                d.present = Some(true);
            }
            mark
        })?;
        drop(stamp);
        drop(gate);
        Ok(())
    }

    fn commit_page(&self, tenant: &str, flow: &str, commit: &PageCommit) -> anyhow::Result<()> {
        let gate = self.commit_gate.read().unwrap_or_else(|p| p.into_inner());
        let scope = self.scope_stamp(key2(tenant, &commit.scope));
        let mut stamp = lock(&scope);
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
            let mut batch = ::sled::Batch::default();
            let mut added: Vec<&str> = Vec::new();
            for src in &commit.dead_letters {
                let mut d = src.clone();
                if let Some(old) = self.dead.get(d.id.as_bytes())? {
                    let old: DeadLetter = unjson(&old)?;
                    d.attempts = old.attempts + d.attempts.max(1);
                    d.first_seen_ms = old.first_seen_ms;
                } else if !added.contains(&src.id.as_str()) {
                    added.push(&src.id);
                }
                batch.insert(d.id.as_bytes(), json(&d)?);
            }
            let removed = resolved.len();
            for id in resolved {
                batch.remove(id.as_bytes());
            }
            self.dead.apply_batch(batch)?;
            // The page's dead letters and the ones it settled are `tenant`'s
            // (their IDs are made from it).
            self.count_dead(tenant, added.len() as isize - removed as isize);
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
        // Each chunk the page's records fall in is read and written once,
        // under the scope's lock: what it holds is the stored entry.
        let mut order: Vec<&Handled> = commit.records.iter().collect();
        order.sort_by(|a, b| a.key.cmp(&b.key));
        let mut keys: Vec<&[u8]> = Vec::with_capacity(order.len());
        let mut groups: Vec<Vec<&Handled>> = Vec::with_capacity(order.len());
        for h in order {
            if keys.last() == Some(&h.key.as_bytes()) {
                groups.last_mut().expect("a group per key").push(h);
            } else {
                keys.push(h.key.as_bytes());
                groups.push(vec![h]);
            }
        }
        self.update_entries(&key3(tenant, &commit.scope, ""), &keys, |i, d| {
            let mut changed = false;
            for h in &groups[i] {
                changed |= d.set_version(flow, h.version);
                if h.present.is_some() && h.present != d.present {
                    d.present = h.present;
                    changed = true;
                }
            }
            changed
        })?;
        if let Some(c) = &commit.cursor {
            self.cursors.insert(key2(tenant, flow), c.as_bytes())?;
        }
        drop(stamp);
        drop(gate);
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
        let old = self.dead.remove(id.as_bytes())?;
        if let Some(old) = &old {
            let d: DeadLetter = unjson(old)?;
            self.count_dead(&d.tenant, -1);
        }
        self.flush_db()?;
        Ok(old.is_some())
    }

    fn dead_letter_count(&self, tenant: &str) -> anyhow::Result<usize> {
        Ok(self
            .dead_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .copied()
            .unwrap_or(0))
    }

    fn save_run(&self, run: &RunRecord) -> anyhow::Result<()> {
        self.save_run_progress(run)?;
        self.flush_db()
    }

    fn save_run_progress(&self, run: &RunRecord) -> anyhow::Result<()> {
        // The index first: a run it names but `runs` lacks is skipped when
        // read, a run without its entry would be lost to its flow's list.
        self.flow_runs
            .insert(key3(&run.tenant, &run.flow, &run.id), &[])?;
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
        let Some(tenant) = tenant else {
            for item in self.runs.iter().values().rev() {
                let r: RunRecord = unjson(&item?)?;
                if flow.is_none_or(|f| f == r.flow) {
                    out.push(r);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            return Ok(out);
        };
        // One flow: its index, newest first. One tenant: the newest
        // `limit` of each of its flows, merged.
        let prefix = match flow {
            Some(f) => key3(tenant, f, ""),
            None => key2(tenant, ""),
        };
        let mut ids = Vec::new();
        let mut taken: (Vec<u8>, usize) = (Vec::new(), 0);
        for k in self.flow_runs.scan_prefix(&prefix).keys().rev() {
            let k = k?;
            let (flow_key, id) = split_run_key(&k);
            if taken.0 != flow_key {
                taken = (flow_key.to_vec(), 0);
            }
            if taken.1 < limit {
                taken.1 += 1;
                ids.push(id.to_vec());
            }
        }
        ids.sort_unstable_by(|a, b| b.cmp(a));
        for id in ids {
            if let Some(v) = self.runs.get(&id)? {
                out.push(unjson(&v)?);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn prune_runs(&self, keep: usize, before_ms: u64) -> anyhow::Result<usize> {
        let mut pruned = 0;
        let mut flow: (Vec<u8>, usize) = (Vec::new(), 0);
        // Newest first within each flow: the first `keep` finished runs (at
        // least one) stay, younger ones stay, running ones stay.
        for k in self.flow_runs.iter().keys().rev() {
            let k = k?;
            let (flow_key, id) = split_run_key(&k);
            if flow.0 != flow_key {
                flow = (flow_key.to_vec(), 0);
            }
            let Some(v) = self.runs.get(id)? else {
                self.flow_runs.remove(&k)?;
                continue;
            };
            let r: RunRecord = unjson(&v)?;
            if r.outcome == RunOutcome::Running {
                continue;
            }
            flow.1 += 1;
            if flow.1 > keep.max(1) || (flow.1 > 1 && r.started_ms < before_ms) {
                self.runs.remove(id)?;
                self.flow_runs.remove(&k)?;
                pruned += 1;
            }
        }
        if pruned > 0 {
            self.flush_db()?;
        }
        Ok(pruned)
    }

    fn run(&self, id: &str) -> anyhow::Result<Option<RunRecord>> {
        self.runs
            .get(id.as_bytes())?
            .map(|v| unjson(&v))
            .transpose()
    }

    fn set_attention(&self, tenant: &str, flow: &str, reason: Option<&str>) -> anyhow::Result<()> {
        put_or_remove(&self.flows, key2(tenant, flow), reason)?;
        self.flush_db()
    }

    fn attention(&self, tenant: &str, flow: &str) -> anyhow::Result<Option<String>> {
        text_at(&self.flows, key2(tenant, flow))
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
        self.flush_db()
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

    fn export(&self, each: &mut dyn FnMut(StateItem) -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.export_items(each)
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

/// Splits a key of `parts` `\0`-separated names (the last may hold `\0`).
/// A `runs_by_flow` key, `tenant\0flow\0id`, as (`tenant\0flow`, `id`).
fn split_run_key(k: &[u8]) -> (&[u8], &[u8]) {
    let at = k.iter().rposition(|b| *b == 0).unwrap_or(0);
    (&k[..at], &k[at + 1..])
}

/// The text at `key` of `tree`.
fn text_at(tree: &::sled::Tree, key: Vec<u8>) -> anyhow::Result<Option<String>> {
    Ok(tree
        .get(key)?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Sets `key` of `tree` to `value`, or removes it when there is none.
fn put_or_remove(tree: &::sled::Tree, key: Vec<u8>, value: Option<&str>) -> anyhow::Result<()> {
    match value {
        Some(v) => tree.insert(key, v.as_bytes())?,
        None => tree.remove(key)?,
    };
    Ok(())
}

/// Where the record key begins in `key3(tenant, scope, key)`: after the
/// second NUL.
fn scope_end(k: &[u8]) -> Option<usize> {
    let first = k.iter().position(|b| *b == 0)?;
    let second = first + 1 + k[first + 1..].iter().position(|b| *b == 0)?;
    Some(second + 1)
}

/// A chunk [`SledState::chunk_of`] found: its sled key, its stored form, and
/// the record key the scope's next chunk starts at (`None`: the last).
struct Found {
    at: Vec<u8>,
    value: ::sled::IVec,
    next: Option<Vec<u8>>,
}

/// Every entry of `tree` with its key cut into its `N` NUL-separated
/// parts (`what` names a key that has fewer).
fn keyed<const N: usize>(
    tree: &::sled::Tree,
    what: &'static str,
) -> impl Iterator<Item = anyhow::Result<([String; N], ::sled::IVec)>> {
    tree.iter().map(move |item| {
        let (k, v) = item?;
        let parts: [String; N] = split_key(&k, N)
            .try_into()
            .map_err(|_| anyhow::anyhow!("{what}"))?;
        Ok((parts, v))
    })
}

fn split_key(k: &[u8], parts: usize) -> Vec<String> {
    k.splitn(parts, |b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

impl SledState {
    fn export_items(
        &self,
        each: &mut dyn FnMut(StateItem) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.flush()?;
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        for item in keyed::<2>(&self.cursors, "a cursor key") {
            let ([tenant, flow], v) = item?;
            each(StateItem::Cursor {
                tenant,
                flow,
                cursor: text(&v),
            })?;
        }
        for item in keyed::<3>(&self.deliveries, "a chunk of record entries' key") {
            let ([tenant, scope, _], v) = item?;
            for (key, entry) in Chunk::decode(&v)?.entries() {
                let d = Delivery::decode(entry)?;
                each(StateItem::Delivery {
                    tenant: tenant.clone(),
                    scope: scope.clone(),
                    key: String::from_utf8_lossy(key).into_owned(),
                    present: d.present,
                    versions: d.versions,
                })?;
            }
        }
        for item in self.dead.iter().values() {
            each(StateItem::DeadLetter(Box::new(unjson(&item?)?)))?;
        }
        for item in self.runs.iter().values() {
            each(StateItem::Run(Box::new(unjson(&item?)?)))?;
        }
        for item in keyed::<2>(&self.flows, "an attention key") {
            let ([tenant, flow], v) = item?;
            each(StateItem::Attention {
                tenant,
                flow,
                reason: text(&v),
            })?;
        }
        for item in keyed::<2>(&self.fingerprints, "a fingerprint key") {
            let ([tenant, flow], v) = item?;
            each(StateItem::Fingerprint {
                tenant,
                flow,
                fingerprint: text(&v),
            })?;
        }
        for item in self.registry.iter().values() {
            each(StateItem::Connector(unjson(&item?)?))?;
        }
        for item in keyed::<2>(&self.docs, "a document key") {
            let ([kind, id], v) = item?;
            each(StateItem::Doc {
                kind,
                id,
                value: v.to_vec(),
            })?;
        }
        for e in self.inbox_pending()? {
            each(StateItem::Inbox(Box::new(e)))?;
        }
        for item in keyed::<3>(&self.webhook_ids, "a webhook ID key") {
            let ([tenant, flow, webhook_id], v) = item?;
            let accepted_ms = <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            each(StateItem::WebhookId {
                tenant,
                flow,
                webhook_id,
                accepted_ms,
            })?;
        }
        for entry in self.kv.entries() {
            let (tenant, connector, key, value) = entry?;
            each(StateItem::Kv {
                tenant,
                connector,
                key,
                value,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::behaviour::{page, version};

    crate::state::behaviour::state_behaviour_tests!(SledState::temporary().unwrap());

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

    /// Entries an earlier version kept one to a value move into chunks
    /// when the state opens: every one is found after, in chunks of at
    /// most `CHUNK_MAX`, each scope's own, and an export lists them all.
    #[test]
    fn single_entries_of_an_earlier_version_move_into_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<String> = (0..300).map(|i| format!("k{i:04}")).collect();
        {
            let s = SledState::open(dir.path()).unwrap();
            for scope in ["a", "b"] {
                for (i, k) in keys.iter().enumerate() {
                    let d = Delivery {
                        present: Some(i % 2 == 0),
                        versions: vec![("f".into(), i as i64)],
                    };
                    s.single_entries
                        .insert(key3("t", scope, k), d.encode().unwrap())
                        .unwrap();
                }
            }
            s.db.flush().unwrap();
        }
        let s = SledState::open(dir.path()).unwrap();
        assert!(s.single_entries.is_empty());
        for scope in ["a", "b"] {
            for (i, k) in keys.iter().enumerate() {
                let d = s.delivery("t", scope, k).unwrap();
                assert_eq!(d.version("f"), Some(i as i64), "{scope}/{k}");
                assert_eq!(d.present, Some(i % 2 == 0));
            }
            let prefix = key3("t", scope, "");
            let stored: Vec<::sled::IVec> = s
                .deliveries
                .scan_prefix(&prefix)
                .values()
                .map(Result::unwrap)
                .collect();
            let sizes: Vec<usize> = stored
                .iter()
                .map(|v| Chunk::decode(v).unwrap().len())
                .collect();
            assert!(sizes.len() >= 300 / CHUNK_MAX);
            assert!(sizes.iter().all(|n| *n <= CHUNK_MAX));
            assert_eq!(sizes.iter().sum::<usize>(), 300);
            // The scope's first chunk is at its empty key.
            assert!(s.deliveries.get(&prefix).unwrap().is_some());
        }
        let mut exported = 0;
        s.export_items(&mut |item| {
            if matches!(item, StateItem::Delivery { .. }) {
                exported += 1;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(exported, 600);
    }

    /// Pages that keep adding to one scope split its chunks; a read, a
    /// later page's change and a reset find each entry in the chunk that
    /// holds it.
    #[test]
    fn chunks_split_as_a_scope_grows_and_every_entry_stays_found() {
        let s = SledState::temporary().unwrap();
        // Keys in an order that lands pages before, between and after
        // earlier ones.
        let keys: Vec<String> = (0..1000)
            .map(|i| format!("k{:04}", (i * 7919) % 1000))
            .collect();
        for page_keys in keys.chunks(90) {
            let records: Vec<(&str, i64, Option<bool>)> = page_keys
                .iter()
                .map(|k| (k.as_str(), 1, Some(true)))
                .collect();
            s.commit_page("t", "f", &page("dest", &records)).unwrap();
        }
        let chunks = s.deliveries.scan_prefix(key3("t", "dest", "")).count();
        assert!(chunks >= 1000 / CHUNK_MAX, "{chunks} chunks");
        let asked: Vec<&str> = keys.iter().map(String::as_str).rev().collect();
        let found = s.deliveries("t", "dest", &asked).unwrap();
        assert!(found.iter().all(|d| d.version("f") == Some(1)));
        // One record's newer version and another flow's, in one page.
        let commit = page("dest", &[("k0500", 2, None), ("k0999", 3, Some(false))]);
        s.commit_page("t", "g", &commit).unwrap();
        let d = s.delivery("t", "dest", "k0999").unwrap();
        assert_eq!(
            (d.version("f"), d.version("g"), d.present),
            (Some(1), Some(3), Some(false))
        );
        s.reset_flow("t", "f", None).unwrap();
        let found = s.deliveries("t", "dest", &asked).unwrap();
        assert!(found.iter().all(|d| d.version("f").is_none()));
        assert_eq!(
            s.delivery("t", "dest", "k0500").unwrap().version("g"),
            Some(2)
        );
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
            let commit = PageCommit {
                dead_letters: vec![crate::state::behaviour::dl("a", 1, 1)],
                ..page("dest", &[("a", 1, None)])
            };
            s.commit_page("t", "f", &commit).unwrap();
        }
        let s = SledState::open(dir.path()).unwrap();
        assert_eq!(s.cursor("t", "f").unwrap().as_deref(), Some("c9"));
        assert_eq!(s.attention("t", "f").unwrap().as_deref(), Some("bad key"));
        // Dead letters are counted again at open.
        assert_eq!(s.dead_letter_count("t").unwrap(), 1);
    }

    #[test]
    fn runs_kept_by_an_earlier_version_are_indexed_by_flow_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledState::open(dir.path()).unwrap();
            // As earlier versions wrote them: by ID alone.
            for (id, flow) in [("run_1", "f"), ("run_2", "g"), ("run_3", "f")] {
                let r = RunRecord::started(id, "t", flow, 1);
                s.runs.insert(id.as_bytes(), json(&r).unwrap()).unwrap();
            }
            s.flush_db().unwrap();
        }
        let s = SledState::open(dir.path()).unwrap();
        let ids: Vec<String> = s
            .runs(Some("t"), Some("f"), 10)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["run_3", "run_1"]);
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
