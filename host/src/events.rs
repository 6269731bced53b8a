//! What the sandbox refused or stopped, recorded per tenant.
//!
//! Every denial (an origin not granted, a private address, a spent quota, an
//! oversized answer) and every limit hit (deadline, memory, stack, output
//! size, a trap) is logged with `tracing` and kept here, so that the runner
//! can attach it to the run that caused it and an operator can see what a
//! tenant's connectors ran into. Other tenants' work is not affected.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// An outbound request to an origin that is not both requested and granted.
    HttpDenied {
        /// `scheme://host:port`.
        origin: String,
        /// Why.
        reason: String,
    },
    /// An outbound request whose host resolved to a non-public address.
    AddressDenied {
        /// The host name.
        host: String,
        /// The address it resolved to.
        address: String,
    },
    /// The (tenant, origin) request quota was spent within the call's time.
    QuotaExhausted {
        /// `scheme://host:port`.
        origin: String,
    },
    /// A response (or request) body was larger than allowed.
    BodyTooLarge {
        /// `scheme://host:port`.
        origin: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// A credential could not be obtained (OAuth token endpoint failed, ...).
    CredentialFailed {
        /// `scheme://host:port`.
        origin: String,
        /// Why.
        reason: String,
    },
    /// A guest call ran past its deadline.
    Deadline {
        /// The export called.
        call: String,
    },
    /// A guest hit the memory limit.
    MemoryLimit {
        /// The export called.
        call: String,
    },
    /// A guest exhausted its stack.
    StackOverflow {
        /// The export called.
        call: String,
    },
    /// A guest handed back more than allowed.
    OutputTooLarge {
        /// The export called.
        call: String,
        /// What was too large.
        detail: String,
    },
    /// A guest trapped (panic, unreachable, ...).
    Trap {
        /// The export called.
        call: String,
        /// The trap.
        detail: String,
    },
    /// A key-value operation was refused for size.
    KvRefused {
        /// Why.
        detail: String,
    },
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When.
    #[serde(with = "epoch_millis")]
    pub at: SystemTime,
    /// Which tenant's work.
    pub tenant: String,
    /// Which connector (`name@version`).
    pub connector: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A bounded, shared log of events (the newest `capacity` are kept).
#[derive(Debug, Clone)]
pub struct EventLog {
    inner: Arc<Mutex<VecDeque<Event>>>,
    capacity: usize,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::with_capacity(10_000)
    }
}

impl EventLog {
    /// A log keeping at most `capacity` events.
    pub fn with_capacity(capacity: usize) -> Self {
        EventLog {
            inner: Arc::new(Mutex::new(VecDeque::new())),
            capacity,
        }
    }

    /// Records an event and logs it as a warning; a trap at `debug` (the
    /// runner says what it meant for the run or the record, once, where
    /// probing a batch for a bad record traps several times).
    pub fn record(&self, tenant: &str, connector: &str, kind: EventKind) {
        if matches!(kind, EventKind::Trap { .. }) {
            tracing::debug!(tenant, connector, event = ?kind, "sandbox event");
        } else {
            tracing::warn!(tenant, connector, event = ?kind, "sandbox event");
        }
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == self.capacity {
            q.pop_front();
        }
        q.push_back(Event {
            at: SystemTime::now(),
            tenant: tenant.to_owned(),
            connector: connector.to_owned(),
            kind,
        });
    }

    /// The events recorded for `tenant`, oldest first.
    pub fn for_tenant(&self, tenant: &str) -> Vec<Event> {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().filter(|e| e.tenant == tenant).cloned().collect()
    }

    /// Every recorded event, oldest first.
    pub fn all(&self) -> Vec<Event> {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().cloned().collect()
    }
}

mod epoch_millis {
    use serde::Serializer;
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        s.serialize_u128(ms)
    }
}
