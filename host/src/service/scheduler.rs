//! The scheduler: starts each flow on its jittered schedule, runs queued
//! manual runs, never two writers of one destination at once (the runs
//! take their lease), picks up tenants changed at runtime.

use crate::Host;
use crate::flow::*;
use crate::state::RunRecord;
use std::sync::Arc;
use std::time::Duration;

/// A request to run a flow now (from the admin API).
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The tenant.
    pub tenant: String,
    /// The flow.
    pub flow: String,
    /// Whether to start from the beginning.
    pub backfill: bool,
}

/// Runs every active tenant's unpaused flows on their schedules until `stop`
/// completes; see [`serve_with`].
pub async fn serve(
    host: &Arc<Host>,
    stop: impl Future<Output = ()>,
    report: &(dyn Fn(&RunRecord) + Sync),
) -> anyhow::Result<()> {
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    serve_with(host, stop, report, rx).await
}

/// The scheduler. Flows run concurrently, each run a task of its own on
/// the current runtime (driven from the scheduler's own task, a run
/// waiting in a blocking state call, as every PostgreSQL call is, held up
/// every other, and all of them shared one core), at most
/// `max_concurrent_runs` at once, and never two runs of one flow at once (a run still going when its
/// next one is due makes that one wait), so a flow that runs long delays
/// only itself. Each flow runs on its own schedule: the first run at a
/// random point of a start-up window (25 ms per configured flow, between
/// `schedule_jitter` × schedule and the schedule) or, for a flow that
/// appears later, within its jitter; each next one a schedule plus a random
/// part of `schedule_jitter` × schedule after the last was due, so that many
/// tenants on one schedule spread out. Tenants
/// and flows added, changed or removed at runtime ([`Host::put_tenant`]) are
/// picked up at once. A flow that needs attention is skipped (a person must
/// fix it; a manual run of it clears the flag when it succeeds). A run that
/// fails is recorded and reported; the schedule goes on. `requests` start a
/// flow now. `report` gets every finished run.
///
/// Memory: one entry per scheduled flow (its IDs, schedule and due time)
/// and a heap of due times; everything else is in the state store.
pub async fn serve_with(
    host: &Arc<Host>,
    stop: impl Future<Output = ()>,
    report: &(dyn Fn(&RunRecord) + Sync),
    mut requests: tokio::sync::mpsc::Receiver<RunRequest>,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    use futures::stream::FuturesUnordered;
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, HashMap};
    use tokio::time::Instant;

    struct Due {
        at: Instant,
        every: Duration,
        running: bool,
        /// A run asked for while one was going: start it when that ends.
        again: Option<Trigger>,
    }
    type Key = (String, String);
    let jitter = host.config.service.schedule_jitter;
    let spread = move |every: Duration| every.mul_f64(jitter * rand::random::<f64>());
    let mut due: HashMap<Key, Due> = HashMap::new();
    let mut heap: BinaryHeap<Reverse<(Instant, Key)>> = BinaryHeap::new();
    let mut seen_generation = u64::MAX;
    let bound = host.config.max_concurrent_runs.max(1);
    let mut running = FuturesUnordered::new();
    let mut queued: std::collections::VecDeque<(Key, Trigger, Instant)> = Default::default();
    tokio::pin!(stop);
    loop {
        // Pick up tenants and flows changed at runtime.
        let generation = host.generation();
        if generation != seen_generation {
            let first_sync = seen_generation == u64::MAX;
            seen_generation = generation;
            let now = Instant::now();
            let mut live = std::collections::HashSet::new();
            let tenants = host.tenants();
            // At start, the first runs spread over a window that grows with
            // the number of flows (25 ms each, at most a schedule), so that
            // 10,000 tenants do not all start in the first seconds; flows
            // added later start within their jitter.
            let flows = tenants.values().map(|t| t.flows.len()).sum::<usize>() as u32;
            let startup = Duration::from_millis(25) * flows;
            let first_at = |every: Duration| {
                let window = if first_sync {
                    startup.clamp(every.mul_f64(jitter), every)
                } else {
                    every.mul_f64(jitter)
                };
                window.mul_f64(rand::random::<f64>())
            };
            for (t, tc) in tenants.iter() {
                if !tc.active {
                    continue;
                }
                for (f, fc) in &tc.flows {
                    if fc.paused {
                        continue;
                    }
                    let key = (t.clone(), f.clone());
                    live.insert(key.clone());
                    match due.get_mut(&key) {
                        Some(d) => {
                            if d.every != fc.schedule {
                                d.every = fc.schedule;
                                d.at = d.at.min(now + fc.schedule);
                                heap.push(Reverse((d.at, key)));
                            }
                        }
                        None => {
                            let at = now + first_at(fc.schedule);
                            heap.push(Reverse((at, key.clone())));
                            due.insert(
                                key,
                                Due {
                                    at,
                                    every: fc.schedule,
                                    running: false,
                                    again: None,
                                },
                            );
                        }
                    }
                }
            }
            due.retain(|k, d| live.contains(k) || d.running);
        }
        // What is due goes to the queue, oldest first.
        let now = Instant::now();
        while let Some(Reverse((at, key))) = heap.peek().cloned() {
            if at > now {
                break;
            }
            heap.pop();
            let Some(d) = due.get_mut(&key) else { continue };
            if d.at != at {
                continue; // superseded
            }
            if d.running {
                d.again = Some(Trigger::merge(d.again, Trigger::Schedule));
            } else {
                queued.push_back((key.clone(), Trigger::Schedule, at));
            }
            d.at = at + d.every + spread(d.every);
            heap.push(Reverse((d.at, key)));
        }
        // Start queued runs while there is room.
        while running.len() < bound {
            let Some((key, trigger, due_at)) = queued.pop_front() else {
                break;
            };
            let Some(d) = due.get_mut(&key) else { continue };
            if d.running {
                d.again = Some(Trigger::merge(d.again, trigger));
                continue;
            }
            if trigger == Trigger::Schedule {
                match host.state.attention(&key.0, &key.1) {
                    Ok(Some(reason)) => {
                        tracing::warn!(tenant = %key.0, flow = %key.1, reason, "skipping a flow that needs attention");
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(tenant = %key.0, flow = %key.1, error = %format!("{e:#}"), "reading the flow's state");
                        continue;
                    }
                }
                // Replicas sharing the state take turns: the start is this
                // replica's unless another claimed one within half a
                // schedule (a process alone always claims it).
                match host.state.claim_scheduled_start(
                    &key.0,
                    &key.1,
                    crate::state::now_ms(),
                    d.every / 2,
                ) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::error!(tenant = %key.0, flow = %key.1, error = %format!("{e:#}"), "claiming a scheduled start");
                        continue;
                    }
                }
                crate::metrics::metrics().schedule_lag_seconds.observe(
                    Instant::now()
                        .saturating_duration_since(due_at)
                        .as_secs_f64(),
                );
            }
            d.running = true;
            let (host, flow) = (host.clone(), key.clone());
            running.push(async move {
                let run = async move { host.run_flow(&flow.0, &flow.1, trigger, &|_| {}).await };
                let r = super::on_its_own_task(run)
                    .await
                    .unwrap_or_else(|| Err(anyhow::anyhow!("the runtime stopped")));
                (key, r)
            });
        }
        let next = heap
            .peek()
            .map(|Reverse((at, _))| *at)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
            .min(Instant::now() + Duration::from_secs(1));
        tokio::select! {
            _ = &mut stop => {
                // Let the runs in flight finish their page commits.
                while running.next().await.is_some() {}
                return Ok(());
            }
            Some((key, result)) = running.next(), if !running.is_empty() => {
                if let Some(d) = due.get_mut(&key) {
                    d.running = false;
                    if let Some(t) = d.again.take() {
                        queued.push_front((key.clone(), t, Instant::now()));
                    }
                }
                match result {
                    Ok(run) => report(&run),
                    Err(e) => tracing::error!(tenant = %key.0, flow = %key.1, error = %format!("{e:#}"), "a run could not start"),
                }
            }
            Some(req) = requests.recv() => {
                let key = (req.tenant, req.flow);
                let trigger = if req.backfill { Trigger::Backfill } else { Trigger::Manual };
                due.entry(key.clone()).or_insert_with(|| Due {
                    at: Instant::now() + Duration::from_secs(3600 * 24 * 365),
                    every: Duration::from_secs(3600 * 24 * 365),
                    running: false,
                    again: None,
                });
                queued.push_back((key, trigger, Instant::now()));
            }
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}
