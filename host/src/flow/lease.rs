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
//! [`Leases`] is the interface; [`MemoryLeases`] serves one process, and
//! [`SharedLeases`] replicas sharing a state: a row per lease in the state
//! (a replica, a holder and an expiry), renewed while the run lives, taken
//! over by another replica once its replica stops renewing it.
//!
//! This module imports only the state's lease calls: the runner asks it,
//! nothing else.

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The right to run one flow, until dropped.
pub struct Lease {
    /// Who holds it (a run ID, or what the trigger calls itself).
    pub holder: String,
    /// Where the lease is a row shared by replicas: what its holder's
    /// commits must still hold.
    pub fence: Option<crate::state::Fence>,
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
                fence: None,
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

/// The leases of replicas that share a state: first the process's own
/// (waiters in one replica are served in order), then the state's row,
/// polled every [`SharedLeases::POLL`] while another replica holds it, and
/// renewed every third of the lease time while held. A replica that dies
/// stops renewing: its leases are free once their time runs out.
pub struct SharedLeases {
    local: MemoryLeases,
    state: Arc<dyn crate::state::StateStore>,
}

impl SharedLeases {
    /// How often a lease another replica holds is asked for again.
    pub const POLL: std::time::Duration = std::time::Duration::from_millis(100);

    /// Leases in `state` (which must be shared: [`StateStore::replica`]).
    ///
    /// [`StateStore::replica`]: crate::state::StateStore::replica
    pub fn new(state: Arc<dyn crate::state::StateStore>) -> Self {
        SharedLeases {
            local: MemoryLeases::default(),
            state,
        }
    }
}

/// A lease held in the state: released (and no longer renewed) when dropped.
struct SharedHeld {
    _local: Lease,
    renew: tokio::task::AbortHandle,
    state: Arc<dyn crate::state::StateStore>,
    tenant: String,
    name: String,
    token: String,
}

impl Drop for SharedHeld {
    fn drop(&mut self) {
        self.renew.abort();
        if let Err(e) = self
            .state
            .release_lease(&self.tenant, &self.name, &self.token)
        {
            // Its time runs out on its own.
            tracing::warn!(tenant = %self.tenant, lease = %self.name, error = %format!("{e:#}"), "releasing a lease");
        }
    }
}

impl Leases for SharedLeases {
    fn acquire<'a>(
        &'a self,
        tenant: &'a str,
        flow: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Lease>> {
        Box::pin(async move {
            let local = self.local.acquire(tenant, flow, holder).await?;
            // Unique per taking, so that a late release of an earlier one
            // never frees this one.
            let token = format!("{holder}/{:016x}", rand::random::<u64>());
            while !self.state.try_lease(tenant, flow, &token)? {
                tokio::time::sleep(Self::POLL).await;
            }
            let every = self.state.lease_time() / 3;
            let renew = {
                let (state, tenant, name, token) = (
                    self.state.clone(),
                    tenant.to_owned(),
                    flow.to_owned(),
                    token.clone(),
                );
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(every).await;
                        match state.renew_lease(&tenant, &name, &token) {
                            Ok(true) => {}
                            Ok(false) => {
                                tracing::error!(tenant, lease = name, "a lease ran out before it was renewed: another replica may take it");
                                return;
                            }
                            Err(e) => {
                                tracing::warn!(tenant, lease = name, error = %format!("{e:#}"), "renewing a lease")
                            }
                        }
                    }
                })
                .abort_handle()
            };
            Ok(Lease {
                holder: holder.to_owned(),
                fence: Some(crate::state::Fence {
                    name: flow.to_owned(),
                    token: token.clone(),
                }),
                _guard: Box::new(SharedHeld {
                    _local: local,
                    renew,
                    state: self.state.clone(),
                    tenant: tenant.to_owned(),
                    name: flow.to_owned(),
                    token,
                }),
            })
        })
    }

    fn holder(&self, tenant: &str, flow: &str) -> Option<String> {
        match self.state.lease_holder(tenant, flow) {
            Ok(h) => h.map(|(_, token)| {
                token
                    .rsplit_once('/')
                    .map_or(token.clone(), |(h, _)| h.to_owned())
            }),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "reading a lease");
                None
            }
        }
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

    /// Tasks of two replicas asking for one lease: never two holders at
    /// once, and each gets it.
    #[tokio::test(flavor = "multi_thread")]
    async fn shared_leases_never_have_two_holders_across_replicas() {
        use crate::state::StateStore;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (a, b) = crate::state::postgres::test_replicas(std::time::Duration::from_secs(30));
        let leases: [Arc<SharedLeases>; 2] = [
            Arc::new(SharedLeases::new(a.clone())),
            Arc::new(SharedLeases::new(b.clone())),
        ];
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..12 {
            let (l, inside, most) = (leases[i % 2].clone(), inside.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let lease = l.acquire("t", "dest", &format!("run{i}")).await.unwrap();
                let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                drop(lease);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "two holders at once");
        assert_eq!(a.leases_held().unwrap() + b.leases_held().unwrap(), 0);
    }
}
