//! The `kv` import: a key-value space private to (tenant, connector), with
//! the key, value and total-size limits of [`crate::Limits`] checked here,
//! before the backend is touched.

use super::ConnectorCtx;
use crate::events::EventKind;
use crate::runtime::bindings::v0_1_0::kv::{Host, KvError};
use crate::state::kv as kvstore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// An instance's kv writes that may not be durable yet. They are made
/// durable before the instance's next request leaves (the HTTP hook calls
/// [`WriteAhead::sync`]), so what a connector notes before acting outside
/// the sandbox survives a crash after the act: `caldav` notes which
/// calendar it is about to write an event into, and finds the copy again
/// when the event's owner changes, whatever happened in between. Writes
/// without a request after them become durable with the page's commit.
#[derive(Clone)]
pub struct WriteAhead {
    kv: Arc<dyn kvstore::KvStore>,
    space: kvstore::KvSpace,
    unsynced: Arc<AtomicBool>,
}

impl WriteAhead {
    /// Nothing written yet to `space`.
    pub fn new(kv: Arc<dyn kvstore::KvStore>, space: kvstore::KvSpace) -> Self {
        WriteAhead {
            kv,
            space,
            unsynced: Arc::default(),
        }
    }

    /// A write happened.
    fn mark(&self) {
        self.unsynced.store(true, Ordering::Release);
    }

    /// Makes the writes so far durable, once: a batch of requests after one
    /// write flushes the store once.
    pub fn sync(&self) -> Result<(), kvstore::KvError> {
        if self.unsynced.swap(false, Ordering::AcqRel)
            && let Err(e) = self.kv.flush(&self.space)
        {
            self.unsynced.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(())
    }
}

impl From<kvstore::KvError> for KvError {
    fn from(e: kvstore::KvError) -> Self {
        match e {
            kvstore::KvError::TooLarge(m) => KvError::TooLarge(m),
            kvstore::KvError::QuotaExceeded(m) => KvError::QuotaExceeded(m),
            kvstore::KvError::Unavailable(m) => KvError::Unavailable(m),
        }
    }
}

impl ConnectorCtx {
    /// Refuses kv calls once the guest call's deadline has passed: a guest
    /// looping over kv gets errors, and the epoch check stops it.
    fn check_deadline(&self) -> Result<(), KvError> {
        if self
            .deadline
            .get()
            .is_some_and(|d| std::time::Instant::now() >= d)
        {
            return Err(KvError::Unavailable(
                "the call's deadline has passed (limits.call_timeout_ms)".into(),
            ));
        }
        Ok(())
    }

    fn check_key(&self, key: &str) -> Result<(), KvError> {
        self.check_deadline()?;
        if key.len() > self.limits.max_kv_key_bytes {
            return Err(self.refuse(KvError::TooLarge(format!(
                "key of {} bytes; the limit is {}",
                key.len(),
                self.limits.max_kv_key_bytes
            ))));
        }
        Ok(())
    }

    fn refuse(&self, e: KvError) -> KvError {
        let detail = match &e {
            KvError::TooLarge(m) | KvError::QuotaExceeded(m) | KvError::Unavailable(m) => m.clone(),
        };
        self.events.record(
            &self.identity.tenant,
            &self.identity.connector,
            EventKind::KvRefused { detail },
        );
        e
    }
}

impl Host for ConnectorCtx {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        self.check_key(&key)?;
        Ok(self.kv.get(&self.kv_space, &key)?)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        self.check_key(&key)?;
        if value.len() > self.limits.max_kv_value_bytes {
            return Err(self.refuse(KvError::TooLarge(format!(
                "value of {} bytes; the limit is {}",
                value.len(),
                self.limits.max_kv_value_bytes
            ))));
        }
        let quota = kvstore::KvQuota {
            max_bytes: self.limits.max_kv_total_bytes,
            max_keys: self.limits.max_kv_keys,
        };
        self.write_ahead.mark();
        self.kv
            .set(&self.kv_space, &key, &value, &quota)
            .map_err(|e| match e {
                kvstore::KvError::QuotaExceeded(_) => self.refuse(e.into()),
                other => other.into(),
            })
    }

    fn delete(&mut self, key: String) -> Result<(), KvError> {
        self.check_key(&key)?;
        self.write_ahead.mark();
        Ok(self.kv.delete(&self.kv_space, &key)?)
    }

    fn list_keys(&mut self, prefix: String, limit: u32) -> Result<Vec<String>, KvError> {
        self.check_key(&prefix)?;
        let limit = (limit as usize).min(10_000);
        Ok(self.kv.list_keys(&self.kv_space, &prefix, limit)?)
    }
}
