//! The durable backend of the connectors' key-value spaces.
//!
//! Each (tenant, connector) pair has its own space; the host enforces key,
//! value and total-size limits before anything is written. The trait keeps
//! the capability independent of the store: [`SledKv`] is the embedded
//! backend weft ships with.

use anyhow::Context;
use std::sync::Arc;

/// Why a key-value operation was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// Key or value over the size limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The space is full.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The store failed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Identifies one space.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KvSpace {
    /// The tenant.
    pub tenant: String,
    /// The connector's name (not its version: a new version keeps its data).
    pub connector: String,
}

/// A key-value backend.
pub trait KvStore: Send + Sync + 'static {
    /// Reads a value.
    fn get(&self, space: &KvSpace, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Writes a value, refusing it when the space would exceed the quota
    /// (bytes counted by [`entry_cost`], and keys).
    fn set(&self, space: &KvSpace, key: &str, value: &[u8], quota: &KvQuota)
    -> Result<(), KvError>;
    /// Removes a key.
    fn delete(&self, space: &KvSpace, key: &str) -> Result<(), KvError>;
    /// Lists keys with `prefix`, in byte order, at most `limit`.
    fn list_keys(
        &self,
        space: &KvSpace,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, KvError>;
    /// Bytes used by the space (as [`entry_cost`] counts them).
    fn usage(&self, space: &KvSpace) -> Result<u64, KvError>;
    /// Makes every write to `space` so far durable. The host calls it
    /// before a guest's request leaves when the guest wrote since its last
    /// request (see [`crate::caps::kv::WriteAhead`]). A backend whose writes
    /// are durable when they return keeps this default.
    fn flush(&self, space: &KvSpace) -> Result<(), KvError> {
        let _ = space;
        Ok(())
    }
}

/// What one space may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    /// Bytes, as [`entry_cost`] counts them.
    pub max_bytes: u64,
    /// Keys.
    pub max_keys: u64,
}

/// What the store pays for one entry, not just what the guest sees: the
/// stored key carries the space's prefix (`tenant \0 connector \0`), and
/// every entry has a fixed cost in the tree's nodes and log.
pub fn entry_cost(space: &KvSpace, key: &str, value_len: usize) -> u64 {
    (space.tenant.len() + space.connector.len() + 2 + key.len() + value_len) as u64 + ENTRY_OVERHEAD
}

/// Why a write was refused: the space would hold `n` of `what` (`"bytes"`
/// or `"keys"`), over `quota`. One wording for every backend.
pub fn quota_refusal(what: &str, n: u64, quota: &KvQuota) -> KvError {
    KvError::QuotaExceeded(if what == "keys" {
        format!(
            "space would hold {n} keys; the limit is {} (limits.max_kv_keys)",
            quota.max_keys
        )
    } else {
        format!(
            "space would hold {n} bytes (each entry counts its key, value and {ENTRY_OVERHEAD} bytes of overhead); the limit is {} (limits.max_kv_total_bytes)",
            quota.max_bytes
        )
    })
}

/// The fixed cost counted for every key-value entry, in bytes: an estimate
/// of the store's per-entry node and log overhead, so that many tiny entries
/// cannot fill the disk while the quota counts next to nothing.
pub const ENTRY_OVERHEAD: u64 = 64;

/// [`KvStore`] on a sled tree: keys are `tenant \0 connector \0 key`.
///
/// Every write is a plain insert: sled's atomic groups (transactions and
/// batches) each write and sync a log buffer, which at one per `set` made
/// the connectors' kv the largest cost of a sync (issue 10: 39,000 log
/// writes in a first sync of 53,000 records). Each space's usage is kept in
/// memory instead, counted from the space's entries the first time the
/// process touches it (so it is never out of step with what is stored,
/// whatever a crash cut short), and updated under the space's lock with the
/// size of the value each insert replaced.
///
/// In memory: one [`Usage`] (two counters and a lock) per space touched
/// since the process started.
#[derive(Clone)]
pub struct SledKv {
    data: sled::Tree,
    /// The database's flushes, shared with the state's own commits.
    flusher: Arc<super::group_flush::GroupFlush>,
    usage: Arc<std::sync::Mutex<std::collections::HashMap<Vec<u8>, SpaceUsage>>>,
}

/// One space's counters, behind the lock its writes take.
type SpaceUsage = Arc<std::sync::Mutex<Usage>>;

/// What one space holds, as [`entry_cost`] counts it.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    bytes: u64,
    keys: u64,
}

impl SledKv {
    /// Opens (or creates) the tree `kv` in `db`. The `kv_usage` tree of
    /// earlier versions is dropped: usage is counted from the entries.
    /// Its flushes go through `flusher`, the database's.
    pub(crate) fn open(
        db: &sled::Db,
        flusher: Arc<super::group_flush::GroupFlush>,
    ) -> anyhow::Result<Self> {
        if db.tree_names().iter().any(|n| n.as_ref() == b"kv_usage") {
            db.drop_tree("kv_usage")
                .context("dropping the kv_usage tree")?;
        }
        Ok(SledKv {
            data: db.open_tree("kv").context("opening kv tree")?,
            flusher,
            usage: Default::default(),
        })
    }

    /// A store in a temporary database, removed when dropped (tests).
    pub fn temporary() -> anyhow::Result<Arc<Self>> {
        let db = sled::Config::new().temporary(true).open()?;
        let flusher = Arc::new(super::group_flush::GroupFlush::new(db.clone()));
        Ok(Arc::new(Self::open(&db, flusher)?))
    }

    /// Every entry: (tenant, connector, key, value).
    pub(crate) fn entries(
        &self,
    ) -> impl Iterator<Item = anyhow::Result<(String, String, String, Vec<u8>)>> + '_ {
        self.data.iter().map(|item| {
            let (k, v) = item?;
            let mut parts = k.splitn(3, |b| *b == 0);
            let mut next =
                || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let (tenant, connector, key) = (next(), next(), next());
            Ok((tenant, connector, key, v.to_vec()))
        })
    }

    /// The lock and counters of `space`, counted from its entries the first
    /// time.
    fn space_usage(&self, space: &KvSpace) -> Result<SpaceUsage, KvError> {
        let p = prefix(space);
        let mut spaces = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = spaces.get(&p) {
            return Ok(u.clone());
        }
        let mut usage = Usage::default();
        for item in self.data.scan_prefix(&p) {
            let (k, v) = item.map_err(unavailable)?;
            usage.bytes += (k.len() + v.len()) as u64 + ENTRY_OVERHEAD;
            usage.keys += 1;
        }
        let u = Arc::new(std::sync::Mutex::new(usage));
        spaces.insert(p, u.clone());
        Ok(u)
    }
}

fn prefix(space: &KvSpace) -> Vec<u8> {
    let mut p = Vec::with_capacity(space.tenant.len() + space.connector.len() + 2);
    p.extend_from_slice(space.tenant.as_bytes());
    p.push(0);
    p.extend_from_slice(space.connector.as_bytes());
    p.push(0);
    p
}

fn full_key(space: &KvSpace, key: &str) -> Vec<u8> {
    let mut k = prefix(space);
    k.extend_from_slice(key.as_bytes());
    k
}

fn unavailable(e: impl std::fmt::Display) -> KvError {
    KvError::Unavailable(e.to_string())
}

impl KvStore for SledKv {
    fn get(&self, space: &KvSpace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.data
            .get(full_key(space, key))
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(unavailable)
    }

    fn set(
        &self,
        space: &KvSpace,
        key: &str,
        value: &[u8],
        quota: &KvQuota,
    ) -> Result<(), KvError> {
        let k = full_key(space, key);
        let lock = self.space_usage(space)?;
        let mut usage = lock.lock().unwrap_or_else(|e| e.into_inner());
        let cost = entry_cost(space, key, value.len());
        // A value that fits even as a new key needs no read first: the
        // insert returns the value it replaced, which corrects the count.
        if usage.bytes + cost > quota.max_bytes || usage.keys >= quota.max_keys {
            let old = self
                .data
                .get(&k)
                .map_err(unavailable)?
                .map(|v| entry_cost(space, key, v.len()));
            let new_bytes = usage.bytes - old.unwrap_or(0).min(usage.bytes) + cost;
            let new_keys = usage.keys + u64::from(old.is_none());
            if new_bytes > quota.max_bytes {
                return Err(quota_refusal("bytes", new_bytes, quota));
            }
            if new_keys > quota.max_keys {
                return Err(quota_refusal("keys", new_keys, quota));
            }
        }
        let old_cost = self
            .data
            .insert(k, value)
            .map_err(unavailable)?
            .map(|v| entry_cost(space, key, v.len()));
        *usage = Usage {
            bytes: usage.bytes - old_cost.unwrap_or(0).min(usage.bytes) + cost,
            keys: usage.keys + u64::from(old_cost.is_none()),
        };
        Ok(())
    }

    fn delete(&self, space: &KvSpace, key: &str) -> Result<(), KvError> {
        let k = full_key(space, key);
        let lock = self.space_usage(space)?;
        let mut usage = lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = self.data.remove(k).map_err(unavailable)? {
            usage.bytes = usage
                .bytes
                .saturating_sub(entry_cost(space, key, old.len()));
            usage.keys = usage.keys.saturating_sub(1);
        }
        Ok(())
    }

    fn list_keys(
        &self,
        space: &KvSpace,
        prefix_str: &str,
        limit: usize,
    ) -> Result<Vec<String>, KvError> {
        let base = prefix(space);
        let mut scan = base.clone();
        scan.extend_from_slice(prefix_str.as_bytes());
        let mut out = Vec::new();
        for item in self.data.scan_prefix(&scan).keys().take(limit) {
            let k = item.map_err(unavailable)?;
            out.push(String::from_utf8_lossy(&k[base.len()..]).into_owned());
        }
        Ok(out)
    }

    fn usage(&self, space: &KvSpace) -> Result<u64, KvError> {
        let lock = self.space_usage(space)?;
        let usage = lock.lock().unwrap_or_else(|e| e.into_inner());
        Ok(usage.bytes)
    }

    fn flush(&self, _: &KvSpace) -> Result<(), KvError> {
        self.flusher.flush().map_err(unavailable)
    }
}

/// What every backend's kv must do is in `state::behaviour` (`kv_*`);
/// these are sled's own.
#[cfg(test)]
mod tests {
    use super::*;

    fn space(t: &str) -> KvSpace {
        KvSpace {
            tenant: t.into(),
            connector: "c".into(),
        }
    }

    fn quota(max_bytes: u64) -> KvQuota {
        KvQuota {
            max_bytes,
            max_keys: 1000,
        }
    }

    /// Without sled's flusher thread, which holds the database (and its
    /// file lock) for a moment after the last handle is dropped: a reopen
    /// right after could fail under load.
    fn open(dir: &std::path::Path) -> sled::Db {
        sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .unwrap()
    }

    fn open_kv(db: &sled::Db) -> SledKv {
        let flusher = Arc::new(super::super::group_flush::GroupFlush::new(db.clone()));
        SledKv::open(db, flusher).unwrap()
    }

    /// Usage lives in memory: a process that opens the database again
    /// counts it from the entries, as the quota saw it before.
    #[test]
    fn usage_is_the_same_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let q = quota(10_000);
        let before = {
            let db = open(dir.path());
            let kv = open_kv(&db);
            kv.set(&space("a"), "k1", b"12345", &q).unwrap();
            kv.set(&space("a"), "k2", b"1", &q).unwrap();
            kv.set(&space("a"), "k1", b"123", &q).unwrap();
            kv.delete(&space("a"), "k2").unwrap();
            kv.set(&space("b"), "k", b"x", &q).unwrap();
            db.flush().unwrap();
            (
                kv.usage(&space("a")).unwrap(),
                kv.usage(&space("b")).unwrap(),
            )
        };
        assert_eq!(before.0, 4 + 2 + 3 + ENTRY_OVERHEAD);
        let db = open(dir.path());
        let kv = open_kv(&db);
        assert_eq!(
            (
                kv.usage(&space("a")).unwrap(),
                kv.usage(&space("b")).unwrap()
            ),
            before
        );
        // The key count came back too: the quota's key limit still holds.
        let one_key = KvQuota {
            max_bytes: 10_000,
            max_keys: 1,
        };
        let err = kv.set(&space("a"), "k3", b"", &one_key).unwrap_err();
        assert!(err.to_string().contains("max_kv_keys"), "{err}");
    }
}
