//! Running flows: fetch a page, map it, emit it, commit it, until the source
//! has no more.
//!
//! The cursor of (tenant, flow) moves only in [`StateStore::commit_page`],
//! after every record of the page was delivered or dead-lettered, together
//! with the versions delivered and the dead letters, flushed to disk. A crash
//! anywhere before that means the page comes again; destinations are
//! idempotent, so a repeat is harmless. Records whose version is not newer
//! than the last one delivered for their key are skipped ("newer wins").
//! Transient errors are retried with jittered exponential backoff within the
//! flow's budget, then the run fails with the cursor where it was; invalid
//! records are dead-lettered and the rest of the page goes on; config errors
//! stop the flow and mark it as needing attention.

use crate::config::{FlowConfig, RetryPolicy, Stage, TenantConfig, WeftConfig};
use crate::model::{ConnectorError, Operation, Record};
use crate::runtime::connector::{
    CallError, Connector, ConnectorInstance, HostConfig, Runtime, TenantGrant, WorldKind,
};
use crate::runtime::registry::Registry;
use crate::state::{
    DeadLetter, Delivery, Handled, PageCommit, RunOutcome, RunRecord, SledState, StateStore, now_ms,
};
use anyhow::{Context, anyhow, bail};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// An operator ran it.
    Manual,
    /// An operator asked for everything from the beginning.
    Backfill,
    /// The schedule.
    Schedule,
}

impl Trigger {
    /// A run asked for while one is pending: the pending one becomes the
    /// stronger of the two (a backfill covers a manual run, and a manual
    /// run a scheduled one), so that no request is lost by waiting.
    fn merge(pending: Option<Trigger>, asked: Trigger) -> Trigger {
        let rank = |t: Trigger| match t {
            Trigger::Schedule => 0,
            Trigger::Manual => 1,
            Trigger::Backfill => 2,
        };
        match pending {
            Some(p) if rank(p) >= rank(asked) => p,
            _ => asked,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Backfill => "backfill",
            Trigger::Schedule => "schedule",
        }
    }
}

/// A weft host: configuration, runtime, state and registry together.
pub struct Host {
    /// The configuration file as loaded. Its tenants are where the live set
    /// started: read tenants with [`Host::tenants`] and [`Host::flow`].
    pub config: WeftConfig,
    /// The live tenants: `weft.toml`'s, overlaid with those written over the
    /// admin API (kept in the state store, `tenant` documents).
    tenants: std::sync::RwLock<std::collections::BTreeMap<String, TenantConfig>>,
    /// Bumped whenever the live tenants change.
    generation: std::sync::atomic::AtomicU64,
    /// Where the outside world reaches `weft serve` (for webhook URLs).
    public_url: std::sync::RwLock<String>,
    /// The sandbox runtime.
    pub runtime: Runtime,
    /// Durable state.
    pub state: Arc<dyn StateStore>,
    /// Registered connectors.
    pub registry: Registry,
    /// Where `weft run --record` keeps the calls of this process's runs.
    recording: std::sync::OnceLock<Arc<crate::runtime::record::Recording>>,
    /// Who may run each flow: every trigger takes the flow's lease first
    /// ([`crate::lease`]).
    pub leases: Arc<dyn crate::lease::Leases>,
}

/// Why a run stopped early.
enum Stop {
    /// Retry budget spent or sandbox failure: the run failed.
    Failed(String),
    /// A config error: the flow needs a person.
    Attention(String),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Failed(format!("{e:#}"))
    }
}

/// A dead item: the source record and why it was dead-lettered.
struct Dead {
    stage: &'static str,
    connector: String,
    error: ConnectorError,
}

/// One source record on its way through the pipeline.
struct Item {
    source: Record,
    /// What the last stage made of it; `None`: the source record as it is
    /// (no copy of its body until a connector is called).
    outputs: Option<Vec<Record>>,
    dead: Option<Dead>,
    /// Whether something of this record may exist at the destination: a
    /// delete of a record that is surely absent is not sent.
    maybe_present: bool,
    /// The record's entry at the destination scope as read before delivery
    /// (the commit writes it back with the new version).
    before: Delivery,
    /// A mapper asked to retract and dead-letter the record
    /// ([`RETRACT_FIELD`]): the dead letter it becomes once its deletes are
    /// delivered.
    retract: Option<Dead>,
    /// Its deletes reached the destination: it no longer exists there.
    retracted: bool,
}

impl Item {
    /// What goes to the next stage.
    fn outputs(&self) -> &[Record] {
        self.outputs
            .as_deref()
            .unwrap_or(std::slice::from_ref(&self.source))
    }

    fn clear_outputs(&mut self) {
        self.outputs = Some(Vec::new());
    }
}

/// The body field of a mapper's delete output that asks the host to retract
/// the record and dead-letter it with the field's text as the reason (the
/// SDK's `DEAD_LETTER_FIELD`).
pub const RETRACT_FIELD: &str = "weft_dead_letter";

/// One webhook delivery: (headers with lowercase names, raw body).
pub type WebhookDelivery = (Vec<(String, String)>, Vec<u8>);

/// The state-store document kind of tenants written at runtime.
pub const TENANT_DOC: &str = "tenant";

/// The reason of a retract request in `r`, if it is one.
fn retract_reason(r: &Record) -> Option<String> {
    if r.op != Operation::Delete || !r.body.contains(RETRACT_FIELD) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    v.get(RETRACT_FIELD)?.as_str().map(str::to_owned)
}

struct Pipeline {
    source: Option<ConnectorInstance>,
    sink: Sink,
}

/// The stages after the source: what a page is delivered through while the
/// source fetches the next one.
struct Sink {
    mappers: Vec<ConnectorInstance>,
    destination: ConnectorInstance,
    /// How to make a fresh instance of each mapper and of the destination
    /// (after a trap poisoned one): the connector and its stage.
    mapper_specs: Vec<(Connector, Stage)>,
    destination_spec: (Connector, Stage),
    /// (tenant, flow, run ID) the instances serve.
    serving: (String, String, String),
}

impl Host {
    /// Opens the host described by `config`: the sled database in
    /// `{data_dir}/state`, the registry in `{data_dir}/connectors`, the
    /// compile cache in `{data_dir}/cache`.
    pub fn open(config: WeftConfig) -> anyhow::Result<Self> {
        let state: Arc<dyn StateStore> = Arc::new(SledState::open(&config.data_dir.join("state"))?);
        // The state directory is locked by this process: a run still marked
        // running was left by a process that ended without finishing it.
        mark_interrupted(&*state)?;
        let mut secrets = match &config.secrets_file {
            Some(p) => crate::secrets::SecretStore::with_file(p)?,
            None => crate::secrets::SecretStore::from_env(),
        };
        if let Some(key) = crate::secrets::Vault::key_from(config.service.key_file.as_deref())? {
            secrets = secrets.with_vault(crate::secrets::Vault::new(&key, state.clone())?);
        }
        Self::open_with(
            config,
            state,
            Arc::new(crate::caps::http::SystemResolver),
            secrets,
        )
    }

    /// Opens a host with the given state, resolver and secrets.
    pub fn open_with(
        config: WeftConfig,
        state: Arc<dyn StateStore>,
        resolver: Arc<dyn crate::caps::http::Resolver>,
        secrets: crate::secrets::SecretStore,
    ) -> anyhow::Result<Self> {
        let host_config = HostConfig {
            limits: config.limits.clone(),
            cache_dir: Some(config.data_dir.join("cache")),
            private_hosts: config.private_hosts.clone(),
            default_rate: config.default_rate,
            secrets_file: None,
        };
        let runtime = Runtime::with_parts(host_config, state.kv(), resolver, secrets)?;
        let registry = Registry::new(config.data_dir.join("connectors"), state.clone())?;
        let mut tenants = config.tenants.clone();
        for (id, doc) in state.doc_list(TENANT_DOC, "")? {
            match serde_json::from_slice::<Option<TenantConfig>>(&doc)
                .with_context(|| format!("reading tenant {id:?} from the state"))?
            {
                Some(t) => tenants.insert(id, t),
                None => tenants.remove(&id),
            };
        }
        // Versions and presence as earlier versions of weft kept them move
        // into per-scope entries (once; nothing to do afterwards).
        state.migrate_deliveries(&|tenant, flow| {
            tenants
                .get(tenant)
                .and_then(|t| t.flows.get(flow))
                .map(delivery_scope)
        })?;
        let public_url = config
            .service
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.service.listen));
        Ok(Host {
            config,
            tenants: std::sync::RwLock::new(tenants),
            generation: Default::default(),
            public_url: std::sync::RwLock::new(public_url),
            runtime,
            state,
            registry,
            recording: Default::default(),
            leases: Arc::new(crate::lease::MemoryLeases::default()),
        })
    }

    /// Records every connector call of the runs this host makes from now on
    /// (see [`crate::testkit`]); write the case files with
    /// [`Recording::write`](crate::runtime::record::Recording::write).
    pub fn record_into(&self, dir: &std::path::Path) -> Arc<crate::runtime::record::Recording> {
        self.recording
            .get_or_init(|| Arc::new(crate::runtime::record::Recording::new(dir)))
            .clone()
    }

    /// Where the outside world reaches `weft serve`: `service.public_url`,
    /// else the address it listens on.
    pub fn public_url(&self) -> String {
        self.public_url
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets the address `weft serve` listens on as the public URL, unless
    /// `service.public_url` names one.
    pub fn set_listening_on(&self, addr: std::net::SocketAddr) {
        if self.config.service.public_url.is_none() {
            *self.public_url.write().unwrap_or_else(|e| e.into_inner()) = format!("http://{addr}");
        }
    }

    /// A number that changes whenever the live tenants change.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A snapshot of the live tenants.
    pub fn tenants(&self) -> std::collections::BTreeMap<String, TenantConfig> {
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// One live tenant.
    pub fn tenant(&self, id: &str) -> Option<TenantConfig> {
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// The flow `tenant`/`flow` as configured now, or an error listing what
    /// exists.
    pub fn flow(&self, tenant: &str, flow: &str) -> anyhow::Result<FlowConfig> {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        let t = tenants.get(tenant).with_context(|| {
            format!(
                "no tenant {tenant:?} (tenants: {})",
                tenants.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        t.flows.get(flow).cloned().with_context(|| {
            format!(
                "tenant {tenant:?} has no flow {flow:?} (flows: {})",
                t.flows.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// Creates or replaces a tenant at runtime: validated, kept in the state
    /// store (it survives restarts and overrides `weft.toml`'s tenant of the
    /// same ID), and used by the next run of each of its flows.
    pub fn put_tenant(&self, id: &str, tenant: TenantConfig) -> anyhow::Result<()> {
        crate::config::validate_tenant(id, &tenant)?;
        self.state
            .doc_put(TENANT_DOC, id, &serde_json::to_vec(&Some(&tenant))?)?;
        self.tenants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), tenant);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The flow's source stage and connector: registered, a source, its
    /// config valid, and offering the flow's stream.
    pub(crate) async fn source_connector(
        &self,
        flow: &FlowConfig,
        at: &str,
    ) -> anyhow::Result<(Stage, Connector)> {
        let stage = flow.source.stage();
        let c = self
            .stage_connector(&stage, WorldKind::Source, &format!("{at}.source"))
            .await?;
        let streams = &c.info().streams;
        if !streams.is_empty() && !streams.iter().any(|s| s.name == flow.source.stream) {
            bail!(
                "{at}.source.stream: {} offers no stream {:?} (streams: {})",
                c.label(),
                flow.source.stream,
                streams
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok((stage, c))
    }

    /// Checks a tenant's flows as a run would, without running them: each
    /// stage's connector is registered, of the right world, offers the
    /// stream, and its config passes the connector's JSON Schema. Errors
    /// name the field (`tenants.T.flows.F.destination.config: ...`).
    pub async fn check_tenant(&self, id: &str, tenant: &TenantConfig) -> anyhow::Result<()> {
        for (name, flow) in &tenant.flows {
            let at = format!("tenants.{id}.flows.{name}");
            self.source_connector(flow, &at).await?;
            for (i, m) in flow.mappers.iter().enumerate() {
                self.stage_connector(m, WorldKind::Mapper, &format!("{at}.mappers[{i}]"))
                    .await?;
            }
            self.stage_connector(
                &flow.destination,
                WorldKind::Destination,
                &format!("{at}.destination"),
            )
            .await?;
        }
        Ok(())
    }

    /// The configuration with the live tenants, as `weft.toml` text
    /// (secrets appear only as references).
    pub fn export_config(&self) -> anyhow::Result<String> {
        let mut config = self.config.clone();
        config.tenants = self.tenants();
        toml::to_string(&config).context("writing the configuration as TOML")
    }

    /// Deletes a tenant (its state stays until reset); whether it existed.
    pub fn delete_tenant(&self, id: &str) -> anyhow::Result<bool> {
        let existed = self.tenant(id).is_some();
        // A tombstone, so that a tenant of `weft.toml` stays deleted.
        self.state
            .doc_put(TENANT_DOC, id, &serde_json::to_vec(&None::<TenantConfig>)?)?;
        self.tenants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(existed)
    }

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
        validate_config(&c, &stage.config).map_err(|e| anyhow!("{at}.config: {e}"))?;
        Ok(c)
    }

    pub(crate) async fn instantiate(
        &self,
        c: &Connector,
        tenant: &str,
        flow: &str,
        run_id: &str,
        stage: &Stage,
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
        self.runtime.instantiate(c, &grant).await
    }

    /// Builds the pipeline of a flow for one run: resolves every connector
    /// (highest matching version), validates its config against its schema
    /// and instantiates it. Errors here are configuration problems.
    async fn pipeline(
        &self,
        tenant: &str,
        flow_name: &str,
        flow: &FlowConfig,
        run_id: &str,
        with_source: bool,
        labels: &mut Vec<String>,
    ) -> anyhow::Result<Pipeline> {
        let at = format!("tenants.{tenant}.flows.{flow_name}");
        let source = if with_source {
            let (src_stage, c) = self.source_connector(flow, &at).await?;
            labels.push(c.label());
            Some(
                self.instantiate(&c, tenant, flow_name, run_id, &src_stage)
                    .await?,
            )
        } else {
            None
        };
        let mut mappers = Vec::new();
        let mut mapper_specs = Vec::new();
        for (i, m) in flow.mappers.iter().enumerate() {
            let c = self
                .stage_connector(m, WorldKind::Mapper, &format!("{at}.mappers[{i}]"))
                .await?;
            labels.push(c.label());
            mappers.push(self.instantiate(&c, tenant, flow_name, run_id, m).await?);
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
        let destination = self
            .instantiate(&c, tenant, flow_name, run_id, &flow.destination)
            .await?;
        Ok(Pipeline {
            source,
            sink: Sink {
                mappers,
                destination,
                mapper_specs,
                destination_spec: (c, flow.destination.clone()),
                serving: (tenant.to_owned(), flow_name.to_owned(), run_id.to_owned()),
            },
        })
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
        // The flow is this run's alone from before its record starts to
        // after its last commit.
        let _lease = self
            .leases
            .acquire(tenant, &writer_lease(&flow), trigger.as_str())
            .await?;
        let mut run = RunRecord {
            trigger: trigger.as_str().to_owned(),
            ..new_run(tenant, flow_name)
        };
        self.state.save_run(&run)?;
        let span = tracing::info_span!("run", tenant, flow = flow_name, run_id = %run.id);
        let result = self
            .run_pages(tenant, flow_name, &flow, trigger, &mut run, progress)
            .instrument(span)
            .await;
        self.finish(tenant, flow_name, &mut run, result)?;
        Ok(run)
    }

    async fn run_pages(
        &self,
        tenant: &str,
        flow_name: &str,
        flow: &FlowConfig,
        trigger: Trigger,
        run: &mut RunRecord,
        progress: &(dyn Fn(&RunRecord) + Sync),
    ) -> Result<(), Stop> {
        let mut pipeline = self
            .pipeline(tenant, flow_name, flow, &run.id, true, &mut run.connectors)
            .await
            .map_err(|e| Stop::Attention(format!("{e:#}")))?;
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
    async fn process(
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
        self.deliver(sink, &mut items, retry, run).await?;
        let mut commit = PageCommit {
            read_at: Some(read_at),
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
        self.state.save_run_progress(run)?;
        Ok(())
    }

    /// Turns one verified webhook delivery into records with the flow's
    /// source (`on-webhook`) and delivers them like a page, without moving
    /// the cursor. Duplicates and out-of-order deliveries are dropped by
    /// newer-wins. Returns the run record (trigger `webhook`).
    pub async fn deliver_webhook(
        &self,
        tenant: &str,
        flow_name: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> anyhow::Result<RunRecord> {
        self.deliver_webhooks(tenant, flow_name, vec![(headers, body)])
            .await
    }

    /// Like [`Host::deliver_webhook`] for several deliveries of one flow, in
    /// order, as one run: one instance of each stage, one commit.
    pub async fn deliver_webhooks(
        &self,
        tenant: &str,
        flow_name: &str,
        deliveries: Vec<WebhookDelivery>,
    ) -> anyhow::Result<RunRecord> {
        let flow = self.flow(tenant, flow_name)?;
        // A batch waits for a poll of the flow in progress (and a poll for
        // a batch): never beside it.
        let _lease = self
            .leases
            .acquire(tenant, &writer_lease(&flow), "webhook")
            .await?;
        let mut run = RunRecord {
            trigger: "webhook".into(),
            ..new_run(tenant, flow_name)
        };
        self.state.save_run_progress(&run)?;
        let span = tracing::info_span!("webhook", tenant, flow = flow_name, run_id = %run.id);
        let result = self
            .webhook_pages(tenant, flow_name, &flow, deliveries, &mut run)
            .instrument(span)
            .await;
        self.finish(tenant, flow_name, &mut run, result)?;
        Ok(run)
    }

    async fn webhook_pages(
        &self,
        tenant: &str,
        flow_name: &str,
        flow: &FlowConfig,
        deliveries: Vec<WebhookDelivery>,
        run: &mut RunRecord,
    ) -> Result<(), Stop> {
        let mut p = self
            .pipeline(tenant, flow_name, flow, &run.id, true, &mut run.connectors)
            .await
            .map_err(|e| Stop::Attention(format!("{e:#}")))?;
        let scope = delivery_scope(flow);
        let mut records = Vec::new();
        let mut dead = Vec::new();
        // Each delivery is a call of its own, so each fails alone: one the
        // source refuses (`invalid`) or that makes it trap becomes a dead
        // letter of its own and the rest go on; a transient failure is
        // retried for that delivery only.
        for (headers, body) in deliveries {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let source = p
                    .source
                    .as_mut()
                    .expect("pipelines built with_source have one");
                let label = source.label().to_owned();
                match source.on_webhook(headers.clone(), body.clone()).await {
                    Ok(r) => records.extend(r),
                    Err(CallError::Connector(ConnectorError::Transient {
                        message,
                        retry_after,
                    })) if attempt < flow.retry.max_attempts => {
                        run.retries += 1;
                        let wait = backoff(&flow.retry, attempt, retry_after);
                        tracing::info!(attempt, wait_ms = wait.as_millis() as u64, error = %message, "on-webhook failed, retrying this delivery");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    Err(e) if delivery_at_fault(&e) => {
                        tracing::warn!(connector = %label, error = %e, "webhook delivery dead-lettered");
                        let trapped = !matches!(e, CallError::Connector(_));
                        let error = match e {
                            CallError::Connector(c) => c,
                            other => ConnectorError::Invalid(other.to_string()),
                        };
                        let record = delivery_record(&headers, &body);
                        dead.push(DeadLetter {
                            id: DeadLetter::id_for(tenant, &scope, WEBHOOK_KIND, &record.key),
                            tenant: tenant.to_owned(),
                            flow: flow_name.to_owned(),
                            stage: "on-webhook".into(),
                            connector: label,
                            destination: p.sink.destination.label().to_owned(),
                            record,
                            error,
                            attempts: 1,
                            first_seen_ms: now_ms(),
                            last_seen_ms: now_ms(),
                        });
                        if trapped {
                            // The instance is unusable after a trap.
                            p = self
                                .pipeline(tenant, flow_name, flow, &run.id, true, &mut Vec::new())
                                .await
                                .map_err(|e| Stop::Attention(format!("{e:#}")))?;
                        }
                    }
                    Err(e) => return Err(stop_for("on-webhook", &label, e)),
                }
                break;
            }
        }
        run.fetched += records.len() as u64;
        self.process(
            &mut p.sink,
            tenant,
            flow_name,
            records,
            None,
            dead,
            &flow.retry,
            run,
        )
        .await
    }

    /// Records how a run ended.
    fn finish(
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
                self.state.set_attention(tenant, flow, None)?;
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
        self.state.save_run(run)
    }

    /// A source record of `flow` on its way to the destination `scope`,
    /// with whether it may exist there (from `before`, its entry there). A
    /// delete of a record that surely does not exist there has nothing to
    /// do: it gets no outputs, so no connector sees it, but its version is
    /// still committed (an older revision arriving later stays stale) and
    /// it settles an older dead letter of the record.
    fn item(flow: &str, r: Record, before: Delivery, run: &mut RunRecord) -> Item {
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

    /// The tenant's other flows that deliver to the same place as `flow`
    /// (the same destination connector with the same config): a record
    /// must be newer than what any of them delivered there.
    fn same_destination(&self, tenant: &str, flow: &str, config: &FlowConfig) -> Vec<String> {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        let Some(t) = tenants.get(tenant) else {
            return vec![];
        };
        t.flows
            .iter()
            .filter(|(name, f)| {
                name.as_str() != flow
                    && f.destination.connector.name == config.destination.connector.name
                    && f.destination.config == config.destination.config
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Drops records that are not newer than what was delivered (and earlier
    /// duplicates of a key within the page). Newest wins at the destination,
    /// not per flow: a version at or below what this flow delivered, or
    /// below what a flow in `siblings` (the same destination) delivered, is
    /// stale. An equal version from a sibling goes through: it carries the
    /// same record seen another way (Acme's `contacts` flow re-emits an
    /// appointment with a contact's change that its own timestamps cannot
    /// order), and delivering it twice is harmless.
    fn fresh_items(
        &self,
        tenant: &str,
        flow: &str,
        siblings: &[String],
        scope: &str,
        records: Vec<Record>,
        run: &mut RunRecord,
    ) -> anyhow::Result<Vec<Item>> {
        // The newest of each key within the page.
        let mut newest: HashMap<&str, usize> = HashMap::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            match newest.get(r.key.as_str()) {
                Some(&j) if records[j].version >= r.version => {}
                _ => {
                    newest.insert(&r.key, i);
                }
            }
        }
        let mut kept = vec![false; records.len()];
        for i in newest.into_values() {
            kept[i] = true;
        }
        let mut items = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            let before = self.state.delivery(tenant, scope, &r.key)?;
            let delivered = before.version(flow);
            let elsewhere = before
                .versions
                .iter()
                .filter(|(f, _)| siblings.contains(f))
                .map(|(_, v)| *v)
                .max();
            if !kept[i]
                || delivered.is_some_and(|v| v >= r.version)
                || elsewhere.is_some_and(|v| v > r.version)
            {
                run.skipped_stale += 1;
                tracing::debug!(key = %r.key, version = r.version, ?delivered, "skipping stale record");
                continue;
            }
            items.push(Self::item(flow, r, before, run));
        }
        Ok(items)
    }

    /// Maps and emits the live items, retrying transient failures and
    /// marking invalid ones dead.
    async fn deliver(
        &self,
        p: &mut Sink,
        items: &mut [Item],
        retry: &RetryPolicy,
        run: &mut RunRecord,
    ) -> Result<(), Stop> {
        for (mapper, spec) in p.mappers.iter_mut().zip(&p.mapper_specs) {
            let label = mapper.label().to_owned();
            let (owners, records) = live_outputs(items);
            let fresh = Fresh {
                host: self,
                spec,
                serving: &p.serving,
            };
            let outcomes = call_isolating_traps(retry, run, &records, mapper, &fresh, |m, rs| {
                Box::pin(m.map_refs(rs))
            })
            .await
            .map_err(|e| stop_for("map", &label, e))?;
            for it in items.iter_mut().filter(|it| it.dead.is_none()) {
                it.clear_outputs();
            }
            for (i, outcome) in owners.into_iter().zip(outcomes) {
                let it = &mut items[i];
                if it.dead.is_some() {
                    continue;
                }
                match outcome {
                    Ok(rs) => {
                        run.mapped += rs.len() as u64;
                        if let Some(reason) = rs.iter().find_map(retract_reason) {
                            it.retract = Some(Dead {
                                stage: "map",
                                connector: label.clone(),
                                error: ConnectorError::Invalid(reason),
                            });
                        }
                        it.outputs.get_or_insert_with(Vec::new).extend(rs);
                    }

                    Err(e) => {
                        it.clear_outputs();
                        it.dead = Some(record_failure("map", &label, e)?);
                    }
                }
            }
        }
        // Deletes of what the destination surely does not have are not sent
        // (a mapper's filter turning a never-delivered record into a delete).
        for it in items.iter_mut() {
            if it.outputs().is_empty() || it.outputs().iter().any(|o| o.op != Operation::Delete) {
                continue;
            }
            if !it.maybe_present {
                it.clear_outputs();
            }
        }
        let label = p.destination.label().to_owned();
        let (owners, records) = live_outputs(items);
        let destination = &mut p.destination;
        let fresh = Fresh {
            host: self,
            spec: &p.destination_spec,
            serving: &p.serving,
        };
        let outcomes = call_isolating_traps(retry, run, &records, destination, &fresh, |d, rs| {
            Box::pin(d.emit_refs(rs))
        })
        .await
        .map_err(|e| stop_for("emit", &label, e))?;
        for (i, outcome) in owners.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => run.emitted += 1,
                Err(e) => {
                    let dead = record_failure("emit", &label, e)?;
                    items[i].dead.get_or_insert(dead);
                }
            }
        }
        for it in items.iter_mut() {
            if let Some(dead) = it.retract.take()
                && it.dead.is_none()
            {
                it.retracted = true;
                it.dead = Some(dead);
            }
        }
        Ok(())
    }

    /// The ID of the dead letter that source record `key` (of `kind`) gets
    /// in (tenant, flow): shared with every flow of the tenant that delivers
    /// to the same destination.
    pub fn dead_letter_id(
        &self,
        tenant: &str,
        flow: &str,
        kind: &str,
        key: &str,
    ) -> anyhow::Result<String> {
        let scope = delivery_scope(&self.flow(tenant, flow)?);
        Ok(DeadLetter::id_for(tenant, &scope, kind, key))
    }

    /// Sends one dead letter through the flow's *current* mappers and
    /// destination. On success it is removed and its version recorded; on
    /// failure the dead letter is updated with the new error.
    pub async fn replay(&self, id: &str) -> anyhow::Result<Result<(), DeadLetter>> {
        let dl = self
            .state
            .dead_letter(id)?
            .with_context(|| format!("no dead letter {id}"))?;
        let flow = self.flow(&dl.tenant, &dl.flow)?;
        let _lease = self
            .leases
            .acquire(&dl.tenant, &writer_lease(&flow), "replay")
            .await?;
        if dl.stage == "on-webhook" {
            return self.replay_delivery(dl, &flow).await;
        }
        let run_id = new_run_id();
        let mut labels = Vec::new();
        let mut p = self
            .pipeline(&dl.tenant, &dl.flow, &flow, &run_id, false, &mut labels)
            .await?;
        let mut run = RunRecord {
            id: run_id,
            trigger: "replay".into(),
            connectors: labels,
            fetched: 1,
            ..new_run(&dl.tenant, &dl.flow)
        };
        let scope = delivery_scope(&flow);
        let before = self.state.delivery(&dl.tenant, &scope, &dl.record.key)?;
        let mut items = vec![Self::item(&dl.flow, dl.record.clone(), before, &mut run)];
        let result = self
            .deliver(&mut p.sink, &mut items, &flow.retry, &mut run)
            .await;
        run.ended_ms = Some(now_ms());
        if let Err(stop) = result {
            let (Stop::Failed(e) | Stop::Attention(e)) = stop;
            run.outcome = RunOutcome::Failed;
            run.error = Some(e.clone());
            self.state.save_run(&run)?;
            bail!("replay of {id} could not finish: {e}");
        }
        let item = &items[0];
        let destination = p.sink.destination.label().to_owned();
        let mut commit = commit_for(
            &dl.tenant,
            &dl.flow,
            &scope,
            &destination,
            &items,
            None,
            &mut run,
        );
        if item.dead.is_none() {
            // Also settles a dead letter filed under an older ID scheme.
            commit.resolved.push(dl.id.clone());
        }
        self.state.commit_page(&dl.tenant, &dl.flow, &commit)?;
        run.outcome = RunOutcome::Succeeded;
        self.state.save_run(&run)?;
        match &item.dead {
            None => Ok(Ok(())),
            Some(_) => Ok(Err(self.state.dead_letter(id)?.unwrap_or(dl))),
        }
    }

    /// Replays the dead letter of a webhook delivery: the source's
    /// `on-webhook` again, then the records on through the flow.
    async fn replay_delivery(
        &self,
        dl: DeadLetter,
        flow: &FlowConfig,
    ) -> anyhow::Result<Result<(), DeadLetter>> {
        let delivery = delivery_of(&dl.record)?;
        let mut run = RunRecord {
            trigger: "replay".into(),
            ..new_run(&dl.tenant, &dl.flow)
        };
        let result = self
            .webhook_pages(&dl.tenant, &dl.flow, flow, vec![delivery], &mut run)
            .await;
        let refused_again = run.dead_lettered > 0;
        self.finish(&dl.tenant, &dl.flow, &mut run, result)?;
        if run.outcome != RunOutcome::Succeeded {
            bail!(
                "replay of {} could not finish: {}",
                dl.id,
                run.error.unwrap_or_default()
            );
        }
        if refused_again {
            return Ok(Err(self.state.dead_letter(&dl.id)?.unwrap_or(dl)));
        }
        self.state.remove_dead_letter(&dl.id)?;
        Ok(Ok(()))
    }
}

/// Fetches one page, retrying transient errors with backoff within the
/// flow's budget. Returns the outcome and how many retries it took.
async fn fetch_with_retry(
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
fn live_outputs(items: &[Item]) -> (Vec<usize>, Vec<&Record>) {
    items
        .iter()
        .enumerate()
        .filter(|(_, it)| it.dead.is_none())
        .flat_map(|(i, it)| it.outputs().iter().map(move |r| (i, r)))
        .unzip()
}

/// What a record's failure that outlived its retries means: `invalid`
/// dead-letters the record; `config` and `transient` stop the run.
fn record_failure(stage: &'static str, label: &str, e: ConnectorError) -> Result<Dead, Stop> {
    match e {
        ConnectorError::Invalid(_) => Ok(Dead {
            stage,
            connector: label.to_owned(),
            error: e,
        }),
        other => Err(stop_for(stage, label, CallError::Connector(other))),
    }
}

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
    host: &Host,
    stop: impl Future<Output = ()>,
    report: &(dyn Fn(&RunRecord) + Sync),
) -> anyhow::Result<()> {
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    serve_with(host, stop, report, rx).await
}

/// The scheduler. Flows run concurrently, at most `max_concurrent_runs` at
/// once, and never two runs of one flow at once (a run still going when its
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
    host: &Host,
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
            for (t, tc) in tenants {
                if !tc.active {
                    continue;
                }
                for (f, fc) in tc.flows {
                    if fc.paused {
                        continue;
                    }
                    let key = (t.clone(), f);
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
                crate::metrics::metrics().schedule_lag_seconds.observe(
                    Instant::now()
                        .saturating_duration_since(due_at)
                        .as_secs_f64(),
                );
            }
            d.running = true;
            running.push(async move {
                let r = host.run_flow(&key.0, &key.1, trigger, &|_| {}).await;
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

/// The lease a flow's writers take ([`crate::lease`]): one per destination
/// (its connector and config), not per flow, so that two flows of a tenant
/// that write the same place (Acme's `appointments` and `contacts` flows,
/// one calendar) never write it at once. Per flow, a `contacts` run could
/// read an appointment's entry, an `appointments` run deliver and commit
/// its delete, and the `contacts` run's older upsert land after it: the
/// version check happens before the write, so only one writer at a time
/// makes it hold at the destination.
pub fn writer_lease(flow: &FlowConfig) -> String {
    use sha2::Digest;
    let config = serde_json::to_string(&flow.destination.config).unwrap_or_default();
    let digest = hex::encode(sha2::Sha256::digest(config.as_bytes()));
    format!(
        "destination {}#{}",
        flow.destination.connector.name,
        &digest[..12]
    )
}

/// Where a flow delivers, as far as dead letters and presence go: the
/// destination connector's name. Flows of one tenant that carry the same
/// source records to the same destination (Acme's `appointments` and
/// `contacts` flows, both into `caldav`) share one dead letter per record
/// and one notion of what exists there.
pub fn delivery_scope(flow: &FlowConfig) -> String {
    flow.destination.connector.name.clone()
}

/// What a flow's records become, as far as configuration goes: the stream
/// and every stage's `config` (not connector versions, grants or
/// credentials). When it changes, records delivered under the old
/// configuration may no longer be right (a status the tenant stopped
/// syncing, another title template, another calendar), so the next run
/// reads everything again.
pub fn flow_fingerprint(flow: &FlowConfig) -> String {
    use sha2::Digest;
    let shape = serde_json::json!({
        "stream": flow.source.stream,
        "source": flow.source.config,
        "mappers": flow.mappers.iter().map(|m| (&m.connector.name, &m.config)).collect::<Vec<_>>(),
        "destination": (&flow.destination.connector.name, &flow.destination.config),
    });
    hex::encode(sha2::Sha256::digest(shape.to_string().as_bytes()))
}

/// One line on how a flow is doing, for `weft state show`: whether it needs
/// attention, how its last finished run ended, and how many finished runs
/// in a row did not succeed.
pub fn flow_health(state: &dyn StateStore, tenant: &str, flow: &str) -> anyhow::Result<String> {
    let runs = state.runs(Some(tenant), Some(flow), 1000)?;
    let mut finished = runs
        .iter()
        .filter(|r| r.outcome != RunOutcome::Running && r.trigger != "replay");
    let last = finished.clone().next();
    let failing = finished
        .by_ref()
        .take_while(|r| r.outcome != RunOutcome::Succeeded)
        .count();
    let mut s = match state.attention(tenant, flow)? {
        Some(a) => format!("NEEDS ATTENTION: {a}"),
        None if failing > 0 => "FAILING".to_owned(),
        None => "ok".to_owned(),
    };
    match last {
        None => s.push_str("\tno run yet"),
        Some(r) => {
            s.push_str(&format!("\tlast run {} ({})", r.outcome.label(), r.id));
            if failing > 0 {
                s.push_str(&format!(
                    ", {failing} run(s) in a row not succeeded; last error: {}",
                    r.error.as_deref().unwrap_or("(none recorded)")
                ));
            }
        }
    }
    if runs.iter().any(|r| r.outcome == RunOutcome::Running) {
        s.push_str("\ta run is in progress");
    }
    Ok(s)
}

/// Marks every run still recorded as running as interrupted: called when the
/// state is opened by the one process that may write it, so such a run
/// belonged to a process that ended without finishing it.
pub fn mark_interrupted(state: &dyn StateStore) -> anyhow::Result<usize> {
    let mut n = 0;
    for mut r in state.runs(None, None, usize::MAX)? {
        if r.outcome == RunOutcome::Running {
            r.outcome = RunOutcome::Interrupted;
            r.error = Some(
                "the weft process ended while this run was going; pages after the last commit will be read again".into(),
            );
            r.ended_ms = Some(now_ms());
            state.save_run(&r)?;
            n += 1;
        }
    }
    if n > 0 {
        tracing::warn!(
            runs = n,
            "marked runs left running by an earlier process as interrupted"
        );
    }
    Ok(n)
}

/// Builds the commit of a page: every live or dead item's version, the dead
/// letters, what now exists at the destination, and the cursor.
fn commit_for(
    tenant: &str,
    flow: &str,
    scope: &str,
    destination: &str,
    items: &[Item],
    cursor: Option<String>,
    run: &mut RunRecord,
) -> PageCommit {
    let now = now_ms();
    let mut commit = PageCommit {
        cursor,
        scope: scope.to_owned(),
        ..Default::default()
    };
    for it in items {
        let present = if it.retracted {
            Some(false)
        } else if it.dead.is_none() && !it.outputs().is_empty() {
            Some(it.outputs().iter().any(|o| o.op == Operation::Upsert))
        } else {
            None
        };
        commit.records.push(Handled {
            key: it.source.key.clone(),
            version: it.source.version,
            present,
            before: it.before.clone(),
            // A newer revision got through: an older dead letter of the
            // same record is settled.
            settles: it.dead.is_none().then(|| it.source.kind.clone()),
        });
        if let Some(d) = &it.dead {
            run.dead_lettered += 1;
            commit.dead_letters.push(DeadLetter {
                id: DeadLetter::id_for(tenant, scope, &it.source.kind, &it.source.key),
                tenant: tenant.to_owned(),
                flow: flow.to_owned(),
                stage: d.stage.to_owned(),
                connector: d.connector.clone(),
                destination: destination.to_owned(),
                record: it.source.clone(),
                error: d.error.clone(),
                attempts: 1,
                first_seen_ms: now,
                last_seen_ms: now,
            });
        }
    }
    commit
}

/// Calls `f` on `records`, then again on the ones that failed transiently,
/// until none do or the budget is spent. Returns one outcome per record.
/// What makes a fresh instance of one stage.
struct Fresh<'a> {
    host: &'a Host,
    spec: &'a (Connector, Stage),
    serving: &'a (String, String, String),
}

impl Fresh<'_> {
    async fn instance(&self) -> Result<ConnectorInstance, CallError> {
        let (tenant, flow, run_id) = self.serving;
        self.host
            .instantiate(&self.spec.0, tenant, flow, run_id, &self.spec.1)
            .await
            .map_err(|e| CallError::Poisoned(format!("a fresh instance after a trap: {e:#}")))
    }
}

/// Whether a failed call says "this input breaks the guest" (a trap, a
/// stack overflow, the memory limit) rather than "the guest is slow" or
/// "the contract is broken".
fn input_trap(e: &CallError) -> bool {
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
async fn call_isolating_traps<T: Send>(
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
type BatchCall<T> =
    for<'a> fn(
        &'a mut ConnectorInstance,
        &'a [&'a Record],
    )
        -> futures::future::BoxFuture<'a, Result<Vec<Result<T, ConnectorError>>, CallError>>;

async fn call_with_retry<T>(
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
fn backoff(policy: &RetryPolicy, attempt: u32, hint: Option<Duration>) -> Duration {
    let exp = Duration::from_millis(policy.base_delay_ms)
        .saturating_mul(1 << attempt.saturating_sub(1).min(20));
    let jittered = exp.mul_f64(rand::random_range(0.5..=1.0));
    jittered
        .max(hint.unwrap_or_default())
        .min(Duration::from_millis(policy.max_delay_ms))
}

/// Turns a call failure into how the run stops.
fn stop_for(stage: &str, label: &str, e: CallError) -> Stop {
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

/// The kind of the dead letter of a webhook delivery the source refused.
pub const WEBHOOK_KIND: &str = "webhook-delivery";

/// Whether an `on-webhook` failure is the delivery's own: the source
/// refused it (`invalid`), or it made the guest trap, run out of memory or
/// stack, or hand back what the contract rules out. Such a delivery is
/// dead-lettered alone; anything else (config, a transient failure past
/// its retries, a deadline) stops the run.
fn delivery_at_fault(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Connector(ConnectorError::Invalid(_))
            | CallError::Trap { .. }
            | CallError::MemoryLimit { .. }
            | CallError::StackOverflow { .. }
            | CallError::BadOutput { .. }
    )
}

/// The headers of a delivery kept with its dead letter: those that name,
/// date, sign or type it (not cookies or proxies' additions).
fn kept_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("webhook-") || n.starts_with("x-") || n == "content-type" || n == "user-agent"
}

/// The key of a delivery's dead letter: its `webhook-id`, else the SHA-256
/// of its body.
fn delivery_key(headers: &[(String, String)], body: &[u8]) -> String {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("webhook-id"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| {
            use sha2::Digest;
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)))
        })
}

/// A refused delivery as the record of its dead letter: `{"headers":
/// {...}, "body": "<text>"}` (or `"body_base64"` when it is not UTF-8).
fn delivery_record(headers: &[(String, String)], body: &[u8]) -> Record {
    let kept: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .filter(|(k, _)| kept_header(k))
        .map(|(k, v)| (k.to_ascii_lowercase(), serde_json::Value::String(v.clone())))
        .collect();
    let mut v = serde_json::json!({ "headers": kept });
    match std::str::from_utf8(body) {
        Ok(text) => v["body"] = serde_json::Value::String(text.to_owned()),
        Err(_) => {
            use base64::Engine;
            v["body_base64"] = base64::engine::general_purpose::STANDARD
                .encode(body)
                .into();
        }
    }
    Record {
        key: delivery_key(headers, body),
        kind: WEBHOOK_KIND.to_owned(),
        version: 0,
        op: Operation::Upsert,
        body: v.to_string(),
    }
}

/// The delivery a webhook dead letter's record holds.
fn delivery_of(r: &Record) -> anyhow::Result<WebhookDelivery> {
    let v: serde_json::Value = serde_json::from_str(&r.body).context("a webhook dead letter")?;
    let headers = v["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let body = match (v["body"].as_str(), v["body_base64"].as_str()) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(b64)) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .context("a webhook dead letter's body")?
        }
        (None, None) => bail!("a webhook dead letter without its body"),
    };
    Ok((headers, body))
}

/// A fresh run record, running since now.
fn new_run(tenant: &str, flow: &str) -> RunRecord {
    RunRecord {
        id: new_run_id(),
        tenant: tenant.to_owned(),
        flow: flow.to_owned(),
        trigger: String::new(),
        started_ms: now_ms(),
        ended_ms: None,
        connectors: vec![],
        pages: 0,
        fetched: 0,
        mapped: 0,
        emitted: 0,
        skipped_stale: 0,
        skipped_absent: 0,
        dead_lettered: 0,
        retries: 0,
        outcome: RunOutcome::Running,
        error: None,
    }
}

/// A run ID that sorts by start time.
fn new_run_id() -> String {
    format!("run_{:012x}{:04x}", now_ms(), rand::random::<u16>())
}

/// Checks `config` against the connector's JSON Schema.
pub fn validate_config(c: &Connector, config: &serde_json::Value) -> Result<(), String> {
    let schema = &c.info().config_schema;
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("{} publishes an unusable config schema: {e}", c.label()))?;
    let errors: Vec<String> = validator
        .iter_errors(config)
        .map(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("{path}: {e}")
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "does not match the schema of {}: {}",
            c.label(),
            errors.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_honours_hint_and_cap() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay_ms: 100,
            max_delay_ms: 1_000,
        };
        assert!(backoff(&p, 1, None) <= Duration::from_millis(100));
        assert_eq!(
            backoff(&p, 1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            backoff(&p, 1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
        assert!(backoff(&p, 10, None) <= Duration::from_secs(1));
    }

    /// Flows that write one place share one lease; others do not.
    #[test]
    fn flows_writing_one_destination_share_a_lease() {
        let config = crate::config::WeftConfig::parse(
            r#"
[tenants.t.flows.appointments]
source = { connector = "s@^1", stream = "appointments" }
destination = { connector = "caldav@^1", config = { collection_url = "http://c/{email}/" } }
[tenants.t.flows.contacts]
source = { connector = "s@^1", stream = "contacts" }
destination = { connector = "caldav@^1", config = { collection_url = "http://c/{email}/" } }
[tenants.t.flows.other]
source = { connector = "s@^1", stream = "contacts" }
destination = { connector = "caldav@^1", config = { collection_url = "http://elsewhere/{email}/" } }
[tenants.t.flows.touchpoints]
source = { connector = "s@^1", stream = "activities" }
destination = { connector = "dashboard@^1" }
"#,
        )
        .unwrap();
        let flows = &config.tenants["t"].flows;
        let lease = |f: &str| writer_lease(&flows[f]);
        assert_eq!(lease("appointments"), lease("contacts"));
        assert_ne!(lease("appointments"), lease("other"));
        assert_ne!(lease("appointments"), lease("touchpoints"));
    }

    #[test]
    fn run_ids_sort_by_time() {
        let a = new_run_id();
        std::thread::sleep(Duration::from_millis(2));
        let b = new_run_id();
        assert!(a < b, "{a} {b}");
    }
}
