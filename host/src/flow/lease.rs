//! Who may write: one lease per (tenant, name). The runner names a lease
//! after the place a flow writes (`flow::writer_lease`: its destination
//! connector and config), so one lease covers a flow and every flow of the
//! tenant that writes the same place. Every trigger that reads a flow's
//! cursor or delivers its records (a scheduled, manual or backfill run, a
//! webhook batch, a replay) takes it first and holds it until its last
//! commit, so that two writers of one destination never interleave: an
//! older version written by one cannot land after a newer one written by
//! the other. A webhook batch that arrives during a poll waits for the poll
//! to end, and the other way round.
//!
//! [`Leases`] is the interface; [`MemoryLeases`] serves one process. A
//! store shared by several replicas implements the same interface with a
//! row per flow (an owner and an expiry, renewed while the run lives).
//!
//! This module imports nothing of weft's: the runner asks it, nothing else.

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The right to run one flow, until dropped.
pub struct Lease {
    /// Who holds it (a run ID, or what the trigger calls itself).
    pub holder: String,
    _guard: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("holder", &self.holder)
            .finish()
    }
}

/// Grants flows' leases.
pub trait Leases: Send + Sync + 'static {
    /// Waits until (tenant, name) is free, then takes it for `holder`.
    fn acquire<'a>(
        &'a self,
        tenant: &'a str,
        flow: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Lease>>;

    /// Who holds (tenant, name) now, if anyone.
    fn holder(&self, tenant: &str, flow: &str) -> Option<String>;
}

/// The leases of one process: a mutex per flow (tokio's, fair: waiters are
/// served in the order they came).
#[derive(Default)]
pub struct MemoryLeases {
    flows: Mutex<HashMap<(String, String), Arc<Slot>>>,
}

/// One flow's lease: the mutex that is the lease, and who holds it.
#[derive(Default)]
struct Slot {
    lease: Arc<tokio::sync::Mutex<()>>,
    holder: Mutex<Option<String>>,
}

/// Holds a flow's mutex; clears the holder when dropped.
struct Held {
    slot: Arc<Slot>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        *self.slot.holder.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl MemoryLeases {
    fn slot(&self, tenant: &str, flow: &str) -> Arc<Slot> {
        self.flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((tenant.to_owned(), flow.to_owned()))
            .or_default()
            .clone()
    }
}

impl Leases for MemoryLeases {
    fn acquire<'a>(
        &'a self,
        tenant: &'a str,
        flow: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Lease>> {
        let slot = self.slot(tenant, flow);
        Box::pin(async move {
            let guard = slot.lease.clone().lock_owned().await;
            *slot.holder.lock().unwrap_or_else(|e| e.into_inner()) = Some(holder.to_owned());
            Ok(Lease {
                holder: holder.to_owned(),
                _guard: Box::new(Held {
                    slot,
                    _guard: guard,
                }),
            })
        })
    }

    fn holder(&self, tenant: &str, flow: &str) -> Option<String> {
        self.slot(tenant, flow)
            .holder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread")]
    async fn one_holder_per_flow_and_flows_apart() {
        let leases = Arc::new(MemoryLeases::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (leases, inside, most) = (leases.clone(), inside.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let _lease = leases.acquire("t", "f", &format!("run{i}")).await.unwrap();
                let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        // Another flow is not held up by them.
        let other = tokio::time::timeout(
            Duration::from_millis(500),
            leases.acquire("t", "g", "other"),
        )
        .await;
        assert!(other.is_ok(), "another flow waited");
        drop(other);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "two holders at once");
        assert_eq!(leases.holder("t", "f"), None);
        let lease = leases.acquire("t", "f", "me").await.unwrap();
        assert_eq!(lease.holder, "me");
        assert!(leases.holder("t", "f").is_some());
    }
}
