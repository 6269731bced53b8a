//! The host: configuration, runtime, state, registry, leases and the live
//! tenants together ([`Host`]), opened once per process. The flows
//! (`flow/`) and the tenant store (`tenants/`) add to it.

use crate::config::{TenantConfig, WeftConfig};
use crate::flow::*;
use crate::runtime::connector::{HostConfig, Runtime};
use crate::runtime::registry::Registry;
use crate::state::{RunOutcome, SledState, StateStore};
use crate::tenants::{TENANT_DOC, Tenants};
use anyhow::Context;
use std::sync::Arc;

/// A weft host: configuration, runtime, state and registry together.
pub struct Host {
    /// The configuration file as loaded, without its tenants: they move
    /// into the live set at open (one copy in memory, however many tenants
    /// there are). Read tenants with [`Host::tenants`] and [`Host::flow`].
    pub config: WeftConfig,
    /// `weft.toml`'s tenants, what the live set is overlaid on.
    pub(crate) file_tenants: Tenants,
    /// The live tenants: `weft.toml`'s, overlaid with those written over the
    /// admin API (kept in the state store, `tenant` documents). A snapshot
    /// is an `Arc`; a change copies the map of `Arc`s, never a tenant.
    pub(crate) tenants: std::sync::RwLock<Arc<Tenants>>,
    /// Bumped whenever the live tenants change.
    pub(crate) generation: std::sync::atomic::AtomicU64,
    /// Where the outside world reaches `weft serve` (for webhook URLs).
    pub(crate) public_url: std::sync::RwLock<String>,
    /// The sandbox runtime.
    pub runtime: Runtime,
    /// Durable state.
    pub state: Arc<dyn StateStore>,
    /// Registered connectors.
    pub registry: Registry,
    /// Where `weft run --record` keeps the calls of this process's runs.
    pub(crate) recording: std::sync::OnceLock<Arc<crate::runtime::record::Recording>>,
    /// Who may run each flow: every trigger takes the flow's lease first
    /// ([`crate::flow::lease`]).
    pub leases: Arc<dyn crate::flow::lease::Leases>,
    /// Every run record as it is saved (start, each page, end), for live
    /// views (`GET /v1/events`); nothing waits for a slow listener.
    pub(crate) run_events: tokio::sync::broadcast::Sender<crate::state::RunRecord>,
}

impl Host {
    /// Opens the host described by `config`: the state (the sled database
    /// in `{data_dir}/state`, or PostgreSQL as `[state]` says), the registry in `{data_dir}/connectors`, the
    /// compile cache in `{data_dir}/cache`.
    pub fn open(config: WeftConfig) -> anyhow::Result<Self> {
        let state: Arc<dyn StateStore> = match config
            .state
            .resolve(std::env::var("WEFT_DATABASE_URL").ok())?
        {
            (crate::config::StateBackend::Postgres, Some(url)) => Arc::new(
                crate::state::PgState::open_with(&url, config.state.pg_options())?,
            ),
            _ => Arc::new(SledState::open(&config.data_dir.join("state"))?),
        };
        // A state that is this process's alone (sled's directory lock): a
        // run still marked running was left by a process that ended without
        // finishing it. Replicas sharing a state close such runs when they
        // take the flow's lease (`flow::close_abandoned_runs`).
        if state.replica().is_none() {
            mark_interrupted(&*state)?;
        }
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
        mut config: WeftConfig,
        state: Arc<dyn StateStore>,
        resolver: Arc<dyn crate::caps::http::Resolver>,
        secrets: crate::secrets::SecretStore,
    ) -> anyhow::Result<Self> {
        crate::metrics::set_max_tenants(config.metrics.max_tenants);
        let host_config = HostConfig {
            limits: config.limits.clone(),
            cache_dir: Some(config.data_dir.join("cache")),
            private_hosts: config.private_hosts.clone(),
            default_rate: config.default_rate,
            secrets_file: None,
        };
        let runtime = Runtime::with_parts(host_config, state.kv(), resolver, secrets)?;
        if let Some(buckets) = state.token_buckets() {
            runtime.share_quotas(buckets);
        }
        let registry = Registry::new(config.data_dir.join("connectors"), state.clone())?;
        let file_tenants: Tenants = std::mem::take(&mut config.tenants)
            .into_iter()
            .map(|(id, t)| (id, Arc::new(t)))
            .collect();
        let tenants = live_tenants(&file_tenants, &*state)?;
        // Versions and presence as earlier versions of weft kept them move
        // into per-scope entries (once; nothing to do afterwards).
        state.migrate_deliveries(&|tenant, flow| {
            tenants
                .get(tenant)
                .and_then(|t| t.flows.get(flow))
                .map(delivery_scope)
        })?;
        // Replicas sharing the state share its leases; a process alone
        // keeps them in memory.
        let leases: Arc<dyn crate::flow::lease::Leases> = match state.replica() {
            Some(_) => Arc::new(crate::flow::lease::SharedLeases::new(state.clone())),
            None => Arc::new(crate::flow::lease::MemoryLeases::default()),
        };
        let public_url = config
            .service
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.service.listen));
        Ok(Host {
            config,
            file_tenants,
            tenants: std::sync::RwLock::new(Arc::new(tenants)),
            generation: Default::default(),
            public_url: std::sync::RwLock::new(public_url),
            runtime,
            state,
            registry,
            recording: Default::default(),
            leases,
            run_events: tokio::sync::broadcast::channel(256).0,
        })
    }

    /// Run records as they are saved from now on (a listener that falls
    /// 256 behind misses the oldest: it reads the state again).
    pub fn run_events(&self) -> tokio::sync::broadcast::Receiver<crate::state::RunRecord> {
        self.run_events.subscribe()
    }

    /// Saves a run's progress (see [`StateStore::save_run_progress`]) and
    /// tells live views of it.
    pub(crate) fn save_run_progress(&self, run: &crate::state::RunRecord) -> anyhow::Result<()> {
        self.state.save_run_progress(run)?;
        self.publish_run(run);
        Ok(())
    }

    /// Saves a run's end (see [`StateStore::save_run`]) and tells live
    /// views of it.
    pub(crate) fn save_run(&self, run: &crate::state::RunRecord) -> anyhow::Result<()> {
        self.state.save_run(run)?;
        self.publish_run(run);
        Ok(())
    }

    fn publish_run(&self, run: &crate::state::RunRecord) {
        if self.run_events.receiver_count() > 0 {
            let _ = self.run_events.send(run.clone());
        }
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
}

/// `weft.toml`'s tenants overlaid with those written over the admin API
/// (kept in the state; a tombstone deletes one of the file's).
fn live_tenants(file_tenants: &Tenants, state: &dyn StateStore) -> anyhow::Result<Tenants> {
    let mut tenants = file_tenants.clone();
    for (id, doc) in state.doc_list(TENANT_DOC, "")? {
        match serde_json::from_slice::<Option<TenantConfig>>(&doc)
            .with_context(|| format!("reading tenant {id:?} from the state"))?
        {
            Some(t) => tenants.insert(id, Arc::new(t)),
            None => tenants.remove(&id),
        };
    }
    Ok(tenants)
}

impl Host {
    /// Reads the live tenants again from the state (what another replica
    /// wrote); whether they changed. The scheduler and the webhook routes
    /// pick a change up as they do one made here.
    pub fn reload_tenants(&self) -> anyhow::Result<bool> {
        let fresh = live_tenants(&self.file_tenants, &*self.state)?;
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        if **tenants == fresh {
            return Ok(false);
        }
        *tenants = Arc::new(fresh);
        drop(tenants);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(true)
    }
}

/// Marks every run still recorded as running as interrupted: called when the
/// state is opened by the one process that may write it, so such a run
/// belonged to a process that ended without finishing it.
pub fn mark_interrupted(state: &dyn StateStore) -> anyhow::Result<usize> {
    let mut n = 0;
    for mut r in state.runs(None, None, usize::MAX)? {
        if r.outcome == RunOutcome::Running {
            r.interrupt(
                "the weft process ended while this run was going; pages after the last commit will be read again",
            );
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
