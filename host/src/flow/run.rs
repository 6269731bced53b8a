//! One run of a flow: fetch a page (retrying what is transient), carry its
//! records through the stages, and finish the run's record.

use super::*;

impl Host {
    /// Resolves and loads a stage's connector, checking its world.
    pub(crate) async fn stage_connector(
        &self,
        stage: &Stage,
        world: WorldKind,
        at: &str,
    ) -> anyhow::Result<Connector> {
        let entry = self
            .registry
            .resolve(&stage.connector)
            .with_context(|| at.to_owned())?;
        let c = self.registry.load(&self.runtime, &entry).await?;
        if c.world() != world {
            bail!(
                "{at}: {} is a {} connector, not a {world}",
                c.label(),
                c.world()
            );
        }
        c.validate_config(&stage.config)
            .map_err(|e| anyhow!("{at}.config: {e}"))?;
        Ok(c)
    }

    /// An instance of `c` for one stage of a tenant's flow, in one of
    /// `slots` (reserved with [`crate::Runtime::reserve_slots`]).
    pub(crate) async fn instantiate(
        &self,
        c: &Connector,
        tenant: &str,
        flow: &str,
        run_id: &str,
        stage: &Stage,
        slots: &mut InstanceSlots,
    ) -> anyhow::Result<ConnectorInstance> {
        let grant = TenantGrant {
            tenant: tenant.to_owned(),
            flow: Some(flow.to_owned()),
            run_id: Some(run_id.to_owned()),
            config: stage.config.clone(),
            http: stage.http.clone(),
            http_tap: None,
            clock: None,
            recorder: self
                .recording
                .get()
                .map(|r| r.recorder(tenant, flow, &c.label(), &stage.config)),
        };
        self.runtime.instantiate_in(c, &grant, slots).await
    }

    /// Builds the pipeline of a flow for one run: resolves every connector
    /// (highest matching version), validates its config against its schema
    /// and instantiates it. Errors here are configuration problems.
    pub(crate) async fn pipeline(
        &self,
        tenant: &str,
        flow_name: &str,
        flow: &FlowConfig,
        run_id: &str,
        with_source: bool,
        labels: &mut Vec<String>,
    ) -> anyhow::Result<Pipeline> {
        let at = format!("tenants.{tenant}.flows.{flow_name}");
        // Every connector resolved and loaded first: loading one may
        // instantiate it (its `describe`), which takes a slot of its own.
        let source = match with_source {
            true => Some(self.source_connector(flow, &at).await?),
            false => None,
        };
        labels.extend(source.iter().map(|(_, c)| c.label()));
        let mut mapper_specs = Vec::new();
        for (i, m) in flow.mappers.iter().enumerate() {
            let c = self
                .stage_connector(m, WorldKind::Mapper, &format!("{at}.mappers[{i}]"))
                .await?;
            labels.push(c.label());
            mapper_specs.push((c, m.clone()));
        }
        let c = self
            .stage_connector(
                &flow.destination,
                WorldKind::Destination,
                &format!("{at}.destination"),
            )
            .await?;
        labels.push(c.label());
        // Then every instance of the run at once: with more runs than the
        // pool has slots for, runs wait for their turn instead of failing.
        let mut slots = self
            .runtime
            .reserve_slots(usize::from(with_source) + flow.mappers.len() + 1)
            .await?;
        let source = match source {
            Some((stage, sc)) => Some(
                self.instantiate(&sc, tenant, flow_name, run_id, &stage, &mut slots)
                    .await?,
            ),
            None => None,
        };
        let mut mappers = Vec::new();
        for (mc, m) in &mapper_specs {
            mappers.push(
                self.instantiate(mc, tenant, flow_name, run_id, m, &mut slots)
                    .await?,
            );
        }
        let destination = self
            .instantiate(&c, tenant, flow_name, run_id, &flow.destination, &mut slots)
            .await?;
        Ok(Pipeline {
            source,
            sink: Sink {
                mappers,
                destination,
                mapper_specs,
                destination_spec: (c, flow.destination.clone()),
                serving: (tenant.to_owned(), flow_name.to_owned(), run_id.to_owned()),
                fence: None,
            },
        })
    }

    /// What every run does first: takes the flow's writer lease for
    /// `trigger` (the flow is this run's alone from before its record
    /// starts to after its last commit), closes the runs a stopped process
    /// left open, and starts the run's record. The record is durable with
    /// the run's first flushed write (a kv write before a request, a page's
    /// commit, or its end): a run that ends the process before any of them
    /// changed nothing weft keeps.
    pub(crate) async fn begin_run(
        &self,
        tenant: &str,
        flow_name: &str,
        flow: &FlowConfig,
        trigger: &str,
    ) -> anyhow::Result<(super::lease::Lease, RunRecord)> {
        let lease = self
            .leases
            .acquire(tenant, &writer_lease(flow), trigger)
            .await?;
        close_abandoned_runs(&*self.state, tenant, flow_name)?;
        let run = RunRecord {
            trigger: trigger.to_owned(),
            replica: self.state.replica().map(str::to_owned),
            ..new_run(tenant, flow_name)
        };
        self.save_run_progress(&run)?;
        Ok((lease, run))
    }

    /// Runs one flow once and returns its run record (also saved in state).
    /// `progress` is called after every committed page.
    pub async fn run_flow(
        &self,
        tenant: &str,
        flow_name: &str,
        trigger: Trigger,
        progress: &(dyn Fn(&RunRecord) + Sync),
    ) -> anyhow::Result<RunRecord> {
        let flow = self.flow(tenant, flow_name)?;
        let (lease, mut run) = self
            .begin_run(tenant, flow_name, &flow, trigger.as_str())
            .await?;
        let span = tracing::info_span!("run", tenant, flow = flow_name, run_id = %run.id);
        let result = self
            .run_pages(
                tenant,
                flow_name,
                &flow,
                trigger,
                &mut run,
                progress,
                lease.fence.as_ref(),
            )
            .instrument(span)
            .await;
        self.finish(tenant, flow_name, &mut run, result)?;
        Ok(run)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "a run's flow, trigger, record, progress and lease"
    )]
    pub(crate) async fn run_pages(
        &self,
        tenant: &str,
        flow_name: &str,
        flow: &FlowConfig,
        trigger: Trigger,
        run: &mut RunRecord,
        progress: &(dyn Fn(&RunRecord) + Sync),
        fence: Option<&Fence>,
    ) -> Result<(), Stop> {
        let mut pipeline = self
            .pipeline(tenant, flow_name, flow, &run.id, true, &mut run.connectors)
            .await
            .map_err(|e| Stop::Attention(format!("{e:#}")))?;
        pipeline.sink.fence = fence.cloned();
        let fingerprint = flow_fingerprint(flow);
        let known = self.state.flow_fingerprint(tenant, flow_name)?;
        let changed = known.as_ref().is_some_and(|k| *k != fingerprint);
        if changed {
            tracing::warn!(
                "the flow's configuration changed since its last run: reading everything again so that what was delivered matches it"
            );
        }
        if trigger == Trigger::Backfill || changed {
            self.state.reset_flow(tenant, flow_name, None)?;
        }
        if known.as_deref() != Some(fingerprint.as_str()) {
            self.state
                .set_flow_fingerprint(tenant, flow_name, &fingerprint)?;
        }
        let cursor = self.state.cursor(tenant, flow_name)?;
        let retry = &flow.retry;
        let limits = self.runtime.limits().clone();
        let started = std::time::Instant::now();
        let Pipeline { source, sink } = &mut pipeline;
        let source = source.as_mut().expect("run pipelines have a source");
        let stream = flow.source.stream.as_str();
        let (first, retries) = fetch_with_retry(source, stream, cursor.clone(), retry).await;
        run.retries += retries;
        let mut page = first?;
        let mut cursor = cursor;
        loop {
            if page.has_more && page.next_cursor.is_some() && page.next_cursor == cursor {
                return Err(Stop::Failed(format!(
                    "{} returned the cursor it was given with has-more set; stopping to avoid a loop",
                    source.label()
                )));
            }
            run.fetched += page.records.len() as u64;
            let next = page.next_cursor.clone();
            let has_more = page.has_more;
            // While this page is mapped, emitted and committed, the next one
            // is already being fetched (pages still commit strictly in
            // order: the next is only processed after this one committed,
            // and is dropped if this one fails).
            let delivering = self.process(
                sink,
                tenant,
                flow_name,
                page.records,
                next.clone(),
                vec![],
                retry,
                run,
            );
            let prefetching = async {
                if has_more {
                    Some(
                        fetch_with_retry(source, stream, next.clone().or(cursor.clone()), retry)
                            .await,
                    )
                } else {
                    None
                }
            };
            let (delivered, prefetched) = tokio::join!(delivering, prefetching);
            delivered?;
            if let Some(c) = next {
                cursor = Some(c);
            }
            progress(run);
            let Some((fetched, retries)) = prefetched else {
                return Ok(());
            };
            run.retries += retries;
            // A source that never stops (empty pages with a new cursor and
            // has-more, forever) ends here, its pages so far committed.
            let over = if run.pages >= limits.max_run_pages {
                Some(format!("{} pages (limits.max_run_pages)", run.pages))
            } else if run.fetched >= limits.max_run_records {
                Some(format!("{} records (limits.max_run_records)", run.fetched))
            } else if started.elapsed().as_secs() >= limits.max_run_seconds {
                Some(format!(
                    "{} s (limits.max_run_seconds)",
                    started.elapsed().as_secs()
                ))
            } else {
                None
            };
            if let Some(what) = over {
                return Err(Stop::Failed(format!(
                    "stopped after {what} with the source still saying it has more; what was committed stays, and the next run goes on from there"
                )));
            }
            page = fetched?;
        }
    }

    /// Delivers one batch of source records (a page, or a webhook's records)
    /// and commits it with `cursor` and the `dead` letters found before
    /// (webhook deliveries the source refused).
    #[allow(
        clippy::too_many_arguments,
        reason = "the pieces of one page's processing"
    )]
    pub(crate) async fn process(
        &self,
        sink: &mut Sink,
        tenant: &str,
        flow: &str,
        records: Vec<Record>,
        cursor: Option<String>,
        dead: Vec<DeadLetter>,
        retry: &RetryPolicy,
        run: &mut RunRecord,
    ) -> Result<(), Stop> {
        let config = self.flow(tenant, flow)?;
        let scope = delivery_scope(&config);
        let siblings = self.same_destination(tenant, flow, &config);
        // Before the entries are read: the commit writes them without
        // reading them again if no other commit to the scope came between.
        let read_at = self.state.commit_stamp(tenant, &scope)?;
        let mut items = self.fresh_items(tenant, flow, &siblings, &scope, records, run)?;
        self.deliver(sink, &scope, &mut items, retry, run).await?;
        let mut commit = PageCommit {
            read_at: Some(read_at),
            fence: sink.fence.clone(),
            ..commit_for(
                tenant,
                flow,
                &scope,
                sink.destination.label(),
                &items,
                cursor,
                run,
            )
        };
        run.dead_lettered += dead.len() as u64;
        commit.dead_letters.extend(dead);
        self.state
            .commit_page(tenant, flow, &commit)
            .map_err(|e| Stop::Failed(format!("committing the page: {e:#}")))?;
        run.pages += 1;
        self.save_run_progress(run)?;
        Ok(())
    }

    /// Records how a run ended.
    pub(crate) fn finish(
        &self,
        tenant: &str,
        flow: &str,
        run: &mut RunRecord,
        result: Result<(), Stop>,
    ) -> anyhow::Result<()> {
        run.ended_ms = Some(now_ms());
        match result {
            Ok(()) => {
                run.outcome = RunOutcome::Succeeded;
                // Cleared only where set: a write (and a flush) per run
                // otherwise.
                if self.state.attention(tenant, flow)?.is_some() {
                    self.state.set_attention(tenant, flow, None)?;
                }
            }
            Err(Stop::Failed(e)) => {
                tracing::warn!(tenant, flow, run_id = %run.id, error = %e, "run failed");
                run.outcome = RunOutcome::Failed;
                run.error = Some(e);
            }
            Err(Stop::Attention(e)) => {
                tracing::error!(tenant, flow, run_id = %run.id, error = %e, "flow needs attention");
                self.state.set_attention(tenant, flow, Some(&e))?;
                run.outcome = RunOutcome::NeedsAttention;
                run.error = Some(e);
            }
        }
        crate::metrics::metrics().run_ended(run);
        self.save_run(run)
    }

    /// A source record of `flow` on its way to the destination `scope`,
    /// with whether it may exist there (from `before`, its entry there). A
    /// delete of a record that surely does not exist there has nothing to
    /// do: it gets no outputs, so no connector sees it, but its version is
    /// still committed (an older revision arriving later stays stale) and
    /// it settles an older dead letter of the record.
    pub(crate) fn item(flow: &str, r: Record, before: Delivery, run: &mut RunRecord) -> Item {
        // Unknown: delivered by this flow before weft kept presence.
        let maybe_present = before.present.unwrap_or(before.version(flow).is_some());
        let outputs = if r.op == Operation::Delete && !maybe_present {
            run.skipped_absent += 1;
            tracing::debug!(key = %r.key, "delete of a record the destination does not have");
            Some(vec![])
        } else {
            None
        };
        Item {
            outputs,
            source: r,
            dead: None,
            maybe_present,
            before,
            retract: None,
            retracted: false,
        }
    }
}

/// Fetches one page, retrying transient errors with backoff within the
/// flow's budget. Returns the outcome and how many retries it took.
pub(crate) async fn fetch_with_retry(
    source: &mut ConnectorInstance,
    stream: &str,
    cursor: Option<String>,
    retry: &RetryPolicy,
) -> (Result<crate::model::Page, Stop>, u64) {
    let mut attempt = 0;
    let mut retries = 0;
    loop {
        attempt += 1;
        match source.fetch(stream, cursor.as_deref()).await {
            Ok(p) => return (Ok(p), retries),
            Err(CallError::Connector(ConnectorError::Transient {
                message,
                retry_after,
            })) if attempt < retry.max_attempts => {
                retries += 1;
                let wait = backoff(retry, attempt, retry_after);
                tracing::info!(attempt, wait_ms = wait.as_millis() as u64, error = %message, "fetch failed, retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return (Err(stop_for("fetch", source.label(), e)), retries),
        }
    }
}

/// Every live item's outputs, with the index of the item each belongs to.
pub(crate) fn live_outputs(items: &[Item]) -> (Vec<usize>, Vec<&Record>) {
    items
        .iter()
        .enumerate()
        .filter(|(_, it)| it.dead.is_none())
        .flat_map(|(i, it)| it.outputs().iter().map(move |r| (i, r)))
        .unzip()
}

/// What a record's failure that outlived its retries means: `invalid`
/// dead-letters the record; `config` and `transient` stop the run.
pub(crate) fn record_failure(
    stage: &'static str,
    label: &str,
    e: ConnectorError,
) -> Result<Dead, Stop> {
    match e {
        ConnectorError::Invalid(_) => Ok(Dead {
            stage,
            connector: label.to_owned(),
            error: e,
        }),
        other => Err(stop_for(stage, label, CallError::Connector(other))),
    }
}

/// Calls `f` on `records`, then again on the ones that failed transiently,
/// until none do or the budget is spent. Returns one outcome per record.
/// What makes a fresh instance of one stage.
pub(crate) struct Fresh<'a> {
    pub(crate) host: &'a Host,
    pub(crate) spec: &'a (Connector, Stage),
    pub(crate) serving: &'a (String, String, String),
}

impl Fresh<'_> {
    pub(crate) async fn instance(&self) -> Result<ConnectorInstance, CallError> {
        let (tenant, flow, run_id) = self.serving;
        // Made while the trapped instance still holds its slot: waiting for
        // a slot here could wait on runs that wait the same way, so with
        // the pool full the call fails (and the run with it) instead.
        let mut slots = self.host.runtime.try_reserve_slots(1).ok_or_else(|| {
            CallError::Poisoned(
                "a fresh instance after a trap: every slot of the instance pool is taken (limits.max_instances)".into(),
            )
        })?;
        self.host
            .instantiate(&self.spec.0, tenant, flow, run_id, &self.spec.1, &mut slots)
            .await
            .map_err(|e| CallError::Poisoned(format!("a fresh instance after a trap: {e:#}")))
    }
}

/// Whether a failed call says "this input breaks the guest" (a trap, a
/// stack overflow, the memory limit) rather than "the guest is slow" or
/// "the contract is broken".
pub(crate) fn input_trap(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Trap { .. } | CallError::StackOverflow { .. } | CallError::MemoryLimit { .. }
    )
}

/// [`call_with_retry`], and when the guest traps on the batch (which
/// poisons the instance), finds the records that make it trap: the batch is
/// split and each half called on a fresh instance, down to single records.
/// A record that traps alone gets an `invalid` outcome carrying the trap
/// (and the guest's last stderr line), so it is dead-lettered and the rest
/// of the batch is delivered. The instance left in `instance` is usable.
/// Costs about 2·log2(batch) extra calls per trapping record.
pub(crate) async fn call_isolating_traps<T: Send>(
    retry: &RetryPolicy,
    run: &mut RunRecord,
    records: &[&Record],
    instance: &mut ConnectorInstance,
    fresh: &Fresh<'_>,
    f: BatchCall<T>,
) -> Result<Vec<Result<T, ConnectorError>>, CallError> {
    match call_with_retry(retry, run, records, instance, f).await {
        Err(e) if input_trap(&e) => {
            *instance = fresh.instance().await?;
            if records.len() <= 1 {
                tracing::warn!(key = records.first().map(|r| r.key.as_str()), error = %e, "a record makes the connector trap: dead-lettered");
                return Ok(records
                    .iter()
                    .map(|_| {
                        Err(ConnectorError::Invalid(format!(
                            "the connector trapped on this record: {e}"
                        )))
                    })
                    .collect());
            }
            let (a, b) = records.split_at(records.len() / 2);
            let mut out = Box::pin(call_isolating_traps(retry, run, a, instance, fresh, f)).await?;
            out.extend(Box::pin(call_isolating_traps(retry, run, b, instance, fresh, f)).await?);
            Ok(out)
        }
        other => other,
    }
}

/// One batch call of an instance (`map` or `emit`), boxed so that the
/// futures stay `Send` for the service's tasks.
pub(crate) type BatchCall<T> =
    for<'a> fn(
        &'a mut ConnectorInstance,
        &'a [&'a Record],
    )
        -> futures::future::BoxFuture<'a, Result<Vec<Result<T, ConnectorError>>, CallError>>;

pub(crate) async fn call_with_retry<T>(
    retry: &RetryPolicy,
    run: &mut RunRecord,
    records: &[&Record],
    instance: &mut ConnectorInstance,
    f: BatchCall<T>,
) -> Result<Vec<Result<T, ConnectorError>>, CallError> {
    let mut results: Vec<Option<Result<T, ConnectorError>>> =
        records.iter().map(|_| None).collect();
    let mut pending: Vec<usize> = (0..records.len()).collect();
    let mut attempt = 0;
    while !pending.is_empty() {
        attempt += 1;
        // The first attempt sends the records as they are; retries only the
        // ones that failed.
        let outcomes = if pending.len() == records.len() {
            f(instance, records).await?
        } else {
            let batch: Vec<&Record> = pending.iter().map(|&i| records[i]).collect();
            f(instance, &batch).await?
        };
        let mut still = Vec::new();
        let mut wait_hint = None;
        for (&i, outcome) in pending.iter().zip(outcomes) {
            match outcome {
                Err(ConnectorError::Transient {
                    message,
                    retry_after,
                }) if attempt < retry.max_attempts => {
                    tracing::info!(key = %records[i].key, attempt, error = %message, "transient failure, will retry");
                    wait_hint = wait_hint.max(retry_after);
                    still.push(i);
                }
                other => results[i] = Some(other),
            }
        }
        if !still.is_empty() {
            run.retries += still.len() as u64;
            tokio::time::sleep(backoff(retry, attempt, wait_hint)).await;
        }
        pending = still;
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every record has an outcome"))
        .collect())
}

/// Exponential backoff with jitter, at least the connector's `retry-after`,
/// at most `max_delay_ms`.
pub(crate) fn backoff(policy: &RetryPolicy, attempt: u32, hint: Option<Duration>) -> Duration {
    let exp = Duration::from_millis(policy.base_delay_ms)
        .saturating_mul(1 << attempt.saturating_sub(1).min(20));
    let jittered = exp.mul_f64(rand::random_range(0.5..=1.0));
    jittered
        .max(hint.unwrap_or_default())
        .min(Duration::from_millis(policy.max_delay_ms))
}

/// Turns a call failure into how the run stops.
pub(crate) fn stop_for(stage: &str, label: &str, e: CallError) -> Stop {
    match e {
        CallError::Connector(ConnectorError::Config(m)) => {
            Stop::Attention(format!("{stage} ({label}): {m}"))
        }
        CallError::Connector(ConnectorError::Invalid(m)) if stage == "fetch" => {
            Stop::Attention(format!(
                "fetch ({label}) says its input can never succeed: {m}; fix the source or reset the cursor with `weft state reset`"
            ))
        }
        CallError::Connector(ConnectorError::Transient { message, .. }) => Stop::Failed(format!(
            "{stage} ({label}): still failing after the retry budget: {message}"
        )),
        other => Stop::Failed(format!("{stage} ({label}): {other}")),
    }
}
