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
    /// Writes a value, refusing it when the space would exceed `max_total`
    /// bytes (keys plus values).
    fn set(&self, space: &KvSpace, key: &str, value: &[u8], max_total: u64) -> Result<(), KvError>;
    /// Removes a key.
    fn delete(&self, space: &KvSpace, key: &str) -> Result<(), KvError>;
    /// Lists keys with `prefix`, in byte order, at most `limit`.
    fn list_keys(
        &self,
        space: &KvSpace,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, KvError>;
    /// Bytes used by the space.
    fn usage(&self, space: &KvSpace) -> Result<u64, KvError>;
}

/// [`KvStore`] on a sled tree: keys are `tenant \0 connector \0 key`, and a
/// second tree keeps each space's byte count, updated in the same transaction.
#[derive(Clone)]
pub struct SledKv {
    data: sled::Tree,
    usage: sled::Tree,
}

impl SledKv {
    /// Opens (or creates) the trees `kv` and `kv_usage` in `db`.
    pub fn open(db: &sled::Db) -> anyhow::Result<Self> {
        Ok(SledKv {
            data: db.open_tree("kv").context("opening kv tree")?,
            usage: db.open_tree("kv_usage").context("opening kv_usage tree")?,
        })
    }

    /// A store in a temporary database, removed when dropped (tests).
    pub fn temporary() -> anyhow::Result<Arc<Self>> {
        let db = sled::Config::new().temporary(true).open()?;
        Ok(Arc::new(Self::open(&db)?))
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

fn read_usage(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

impl KvStore for SledKv {
    fn get(&self, space: &KvSpace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.data
            .get(full_key(space, key))
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(unavailable)
    }

    fn set(&self, space: &KvSpace, key: &str, value: &[u8], max_total: u64) -> Result<(), KvError> {
        use sled::Transactional;
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        let k = full_key(space, key);
        let u = prefix(space);
        let result = (&self.data, &self.usage).transaction(|(data, usage)| {
            let old = data
                .get(&k)?
                .map(|v| v.len() as u64 + key.len() as u64)
                .unwrap_or(0);
            let used = read_usage(usage.get(&u)?);
            let new_used = used - old.min(used) + key.len() as u64 + value.len() as u64;
            if new_used > max_total {
                return Err(ConflictableTransactionError::Abort(KvError::QuotaExceeded(
                    format!("space would hold {new_used} bytes, limit is {max_total}"),
                )));
            }
            data.insert(k.as_slice(), value)?;
            usage.insert(u.as_slice(), &new_used.to_be_bytes())?;
            Ok(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(unavailable(e)),
        }
    }

    fn delete(&self, space: &KvSpace, key: &str) -> Result<(), KvError> {
        use sled::Transactional;
        use sled::transaction::TransactionError;
        let k = full_key(space, key);
        let u = prefix(space);
        let result: Result<(), TransactionError<KvError>> =
            (&self.data, &self.usage).transaction(|(data, usage)| {
                if let Some(old) = data.remove(k.as_slice())? {
                    let used = read_usage(usage.get(&u)?);
                    let freed = old.len() as u64 + key.len() as u64;
                    usage.insert(u.as_slice(), &used.saturating_sub(freed).to_be_bytes())?;
                }
                Ok(())
            });
        result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => unavailable(e),
        })
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
        Ok(read_usage(
            self.usage.get(prefix(space)).map_err(unavailable)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(t: &str) -> KvSpace {
        KvSpace {
            tenant: t.into(),
            connector: "c".into(),
        }
    }

    #[test]
    fn spaces_are_isolated_and_usage_is_tracked() {
        let kv = SledKv::temporary().unwrap();
        kv.set(&space("a"), "k", b"1234", 1000).unwrap();
        assert_eq!(kv.get(&space("b"), "k").unwrap(), None);
        assert_eq!(kv.get(&space("a"), "k").unwrap(), Some(b"1234".to_vec()));
        assert_eq!(kv.usage(&space("a")).unwrap(), 5);
        kv.set(&space("a"), "k", b"12", 1000).unwrap();
        assert_eq!(kv.usage(&space("a")).unwrap(), 3);
        kv.delete(&space("a"), "k").unwrap();
        assert_eq!(kv.usage(&space("a")).unwrap(), 0);
    }

    #[test]
    fn quota_refuses_and_keeps_old_value() {
        let kv = SledKv::temporary().unwrap();
        kv.set(&space("a"), "k", b"old", 10).unwrap();
        let err = kv.set(&space("a"), "k", &[0; 20], 10).unwrap_err();
        assert!(matches!(err, KvError::QuotaExceeded(_)), "{err}");
        assert_eq!(kv.get(&space("a"), "k").unwrap(), Some(b"old".to_vec()));
    }

    #[test]
    fn list_keys_by_prefix() {
        let kv = SledKv::temporary().unwrap();
        for k in ["user:1", "user:2", "contact:1"] {
            kv.set(&space("a"), k, b"x", 1000).unwrap();
        }
        kv.set(&space("b"), "user:3", b"x", 1000).unwrap();
        assert_eq!(
            kv.list_keys(&space("a"), "user:", 10).unwrap(),
            vec!["user:1", "user:2"]
        );
        assert_eq!(kv.list_keys(&space("a"), "", 1).unwrap(), vec!["contact:1"]);
    }
}
