//! Loading, identifying and calling connector components.
//!
//! [`Runtime`] owns the engine, the linker (restricted WASI, policed
//! `wasi:http`, and weft's `config`/`kv`/`log`) and the host-wide shared
//! state. [`Runtime::load`] compiles a component (through the cache), works
//! out which world it targets from its exports, pre-instantiates it and asks
//! it to `describe` itself, giving a [`Connector`]. [`Runtime::instantiate`]
//! makes a fresh [`ConnectorInstance`] for one tenant's run, with that
//! tenant's grants. Every call on an instance gets a wall-clock deadline,
//! enforced by epoch interruption inside wasm and by a timeout around the
//! whole call (epochs cannot interrupt a host call in progress); a call that
//! traps leaves the instance unusable, and the runner makes a new one.

use crate::caps::http::{
    CallDeadline, HttpGrants, HttpShared, OriginPattern, OutboundHttp, Rate, Resolver,
    SystemResolver,
};
use crate::caps::log::{GuestLog, LogLine};
use crate::caps::{ConnectorCtx, Identity};
use crate::events::{EventKind, EventLog};
use crate::model::{ConnectorError, ConnectorInfo, Operation, Page, Record, StreamInfo};
use crate::runtime::bindings::v0_1_0::{destination, mapper, source, types as wit};
use crate::runtime::engine::{WeftEngine, digest};
use crate::runtime::limits::Limits;
use crate::secrets::SecretStore;
use crate::state::kv::{KvSpace, KvStore, SledKv};
use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The contract versions this host accepts.
pub const SUPPORTED_CONTRACTS: &[&str] = &["0.1.0"];

/// Extra time the outer timeout gives a call beyond its deadline, so that the
/// epoch check (which reports the deadline precisely) normally fires first.
const TIMEOUT_GRACE: Duration = Duration::from_millis(500);

/// Host-wide settings an operator configures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Sandbox limits for every instance.
    pub limits: Limits,
    /// Where compiled components are cached; no cache when unset.
    pub cache_dir: Option<PathBuf>,
    /// Host names (exact, case-insensitive) that may resolve to loopback,
    /// private or link-local addresses. Empty: only public addresses.
    pub private_hosts: Vec<String>,
    /// The outbound request quota per (tenant, origin) when a tenant sets
    /// none.
    pub default_rate: Rate,
    /// A TOML file of `name = "secret"` lines that credentials may refer to.
    pub secrets_file: Option<PathBuf>,
}

/// Which world a component targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorldKind {
    /// `source-connector`.
    Source,
    /// `mapper-connector`.
    Mapper,
    /// `destination-connector`.
    Destination,
}

impl std::fmt::Display for WorldKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorldKind::Source => "source",
            WorldKind::Mapper => "mapper",
            WorldKind::Destination => "destination",
        })
    }
}

/// What a tenant grants a connector for one run.
#[derive(Debug, Clone, Default)]
pub struct TenantGrant {
    /// The tenant.
    pub tenant: String,
    /// The flow this instance serves, for logs.
    pub flow: Option<String>,
    /// The run, for logs.
    pub run_id: Option<String>,
    /// The connector's configuration for this tenant (no secrets).
    pub config: serde_json::Value,
    /// Outbound HTTP grants and credentials.
    pub http: HttpGrants,
    /// Record or replay this instance's HTTP (the offline test kit).
    pub http_tap: Option<crate::caps::http::tap::HttpTap>,
    /// Record this instance's calls (`weft run --record`).
    pub recorder: Option<crate::runtime::record::CallRecorder>,
    /// The guest's wall clock, when a replay sets it (the host's otherwise).
    pub clock: Option<crate::caps::clock::FrozenClock>,
}

impl TenantGrant {
    /// A grant for `tenant` with empty config and no HTTP.
    pub fn new(tenant: &str) -> Self {
        TenantGrant {
            tenant: tenant.to_owned(),
            config: serde_json::json!({}),
            ..Default::default()
        }
    }
}

/// A failed call. [`CallError::Connector`] is the guest reporting an
/// expected failure; every other variant is the sandbox stopping or
/// refusing the guest, after which the instance is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The guest returned one of the WIT error classes.
    #[error("{0}")]
    Connector(ConnectorError),
    /// The call ran past its deadline.
    #[error("{call}: deadline of {timeout_ms} ms exceeded")]
    Deadline {
        /// The export.
        call: String,
        /// The limit.
        timeout_ms: u64,
    },
    /// The guest tried to grow its memory past the limit.
    #[error("{call}: memory limit of {limit} bytes exceeded")]
    MemoryLimit {
        /// The export.
        call: String,
        /// The limit.
        limit: usize,
    },
    /// The guest exhausted its stack.
    #[error("{call}: stack overflow")]
    StackOverflow {
        /// The export.
        call: String,
    },
    /// The guest handed back more than the limits allow, or something the
    /// contract rules out (wrong number of outcomes).
    #[error("{call}: {detail}")]
    BadOutput {
        /// The export.
        call: String,
        /// What was wrong.
        detail: String,
    },
    /// The guest trapped (a Rust panic shows up as `unreachable`).
    #[error("{call}: guest trapped: {detail}")]
    Trap {
        /// The export.
        call: String,
        /// The trap, and the last stderr line when there is one.
        detail: String,
    },
    /// The instance trapped earlier and cannot be called again.
    #[error("instance is unusable after an earlier failure: {0}")]
    Poisoned(String),
    /// The call does not exist in this connector's world.
    #[error("{connector} is a {world} connector; it has no {call}")]
    WrongWorld {
        /// `name@version`.
        connector: String,
        /// Its world.
        world: WorldKind,
        /// The export asked for.
        call: String,
    },
}

impl CallError {
    /// Whether the instance can still be used after this error.
    pub fn instance_usable(&self) -> bool {
        matches!(self, CallError::Connector(_) | CallError::WrongWorld { .. })
    }
}

/// A loaded, identified connector version, ready to instantiate.
#[derive(Clone)]
pub struct Connector {
    inner: Arc<ConnectorInner>,
}

struct ConnectorInner {
    digest: String,
    world: WorldKind,
    contract: &'static str,
    info: ConnectorInfo,
    requested: Vec<OriginPattern>,
    pre: InstancePre<StoreState>,
    from_cache: bool,
    /// The config schema compiled once, on first use: every run checks
    /// its tenant's config, and compiling took 3% of a many-tenant
    /// `weft run`'s CPU when it was done per run.
    validator: std::sync::OnceLock<Result<jsonschema::Validator, String>>,
}

impl Connector {
    /// What `describe` said.
    pub fn info(&self) -> &ConnectorInfo {
        &self.inner.info
    }
    /// The world it targets.
    pub fn world(&self) -> WorldKind {
        self.inner.world
    }
    /// The contract version it was built against.
    pub fn contract(&self) -> &str {
        self.inner.contract
    }
    /// The SHA-256 of the component.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }
    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.inner.info.name, self.inner.info.version)
    }
    /// Whether the compiled code came from the on-disk cache.
    pub fn from_cache(&self) -> bool {
        self.inner.from_cache
    }
}

/// Everything one instance's store holds.
pub struct StoreState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHttp,
    caps: ConnectorCtx,
    limiter: MemoryLimiter,
    deadline: CallDeadline,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Raised by the epoch callback when a call's deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;

/// Raised by the limiter when a guest asks for more memory than allowed.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (asked for {desired})")]
struct MemoryLimitExceeded {
    limit: usize,
    desired: usize,
}

struct MemoryLimiter {
    memory_bytes: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(MemoryLimitExceeded {
                limit: self.memory_bytes,
                desired,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The weft host runtime: engine, linker and shared state.
pub struct Runtime {
    engine: WeftEngine,
    linker: Linker<StoreState>,
    kv: Arc<dyn KvStore>,
    http: HttpShared,
    secrets: SecretStore,
    limits: Limits,
    events: EventLog,
    /// One permit per slot of the instance pool (`limits.max_instances`):
    /// an instantiation waits for a slot instead of failing when runs at
    /// once need more instances than the pool holds.
    slots: Arc<tokio::sync::Semaphore>,
}

/// Slots of the instance pool held for instances to come (a pipeline
/// takes all of its slots at once, so that runs waiting for their second
/// slot cannot hold every first one).
pub struct InstanceSlots(tokio::sync::OwnedSemaphorePermit);

impl InstanceSlots {
    /// One slot out of the reservation, if any is left.
    fn take(&mut self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.0.split(1)
    }
}

impl Runtime {
    /// A runtime with a temporary key-value store, the system resolver and
    /// secrets from the environment (and `secrets_file` when set).
    pub fn new(config: HostConfig) -> anyhow::Result<Self> {
        let secrets = match &config.secrets_file {
            Some(p) => SecretStore::with_file(p)?,
            None => SecretStore::from_env(),
        };
        let kv: Arc<dyn KvStore> = SledKv::temporary()?;
        Self::with_parts(config, kv, Arc::new(SystemResolver), secrets)
    }

    /// The secrets the runtime resolves credentials with (the tenants'
    /// vault among them, when the operator gave a key).
    pub fn secrets(&self) -> &SecretStore {
        &self.secrets
    }

    /// Takes the (tenant, origin) request quotas from `buckets`, shared
    /// with the other replicas of a state, from now on.
    pub fn share_quotas(&self, buckets: Arc<dyn crate::state::TokenBuckets>) {
        self.http.quotas.share(buckets);
    }

    /// A runtime with the given key-value backend, resolver and secrets.
    pub fn with_parts(
        config: HostConfig,
        kv: Arc<dyn KvStore>,
        resolver: Arc<dyn Resolver>,
        secrets: SecretStore,
    ) -> anyhow::Result<Self> {
        let engine = WeftEngine::new(&config.limits, config.cache_dir.clone())?;
        let mut linker = Linker::<StoreState>::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::Error::from(e).context("linking WASI"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| anyhow::Error::from(e).context("linking wasi:http"))?;
        source::weft::connector::config::add_to_linker::<_, HasSelf<ConnectorCtx>>(
            &mut linker,
            |s| &mut s.caps,
        )?;
        source::weft::connector::kv::add_to_linker::<_, HasSelf<ConnectorCtx>>(&mut linker, |s| {
            &mut s.caps
        })?;
        source::weft::connector::log::add_to_linker::<_, HasSelf<ConnectorCtx>>(
            &mut linker,
            |s| &mut s.caps,
        )?;
        let events = EventLog::default();
        let http = HttpShared {
            resolver,
            quotas: Default::default(),
            tokens: Default::default(),
            outages: Default::default(),
            events: events.clone(),
            private_hosts: config.private_hosts.clone(),
            default_rate: config.default_rate,
        };
        Ok(Runtime {
            engine,
            linker,
            kv,
            http,
            secrets,
            slots: Arc::new(tokio::sync::Semaphore::new(
                config.limits.max_instances as usize,
            )),
            limits: config.limits,
            events,
        })
    }

    /// Waits for `n` slots of the instance pool, for the instances of one
    /// pipeline ([`Runtime::instantiate_in`]); an error when the pool has
    /// fewer than `n` (`limits.max_instances`).
    pub async fn reserve_slots(&self, n: usize) -> anyhow::Result<InstanceSlots> {
        let max = self.limits.max_instances as usize;
        if n > max {
            anyhow::bail!(
                "a run of this flow needs {n} connector instances at once; limits.max_instances is {max}"
            );
        }
        let permit = self
            .slots
            .clone()
            .acquire_many_owned(n as u32)
            .await
            .map_err(|_| anyhow!("the instance pool is closed"))?;
        Ok(InstanceSlots(permit))
    }

    /// The sandbox events recorded so far.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Loads the component at `path`; see [`Runtime::load`].
    pub async fn load_file(&self, path: &Path) -> anyhow::Result<Connector> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.load(&bytes)
            .await
            .with_context(|| format!("{} is not a usable weft connector", path.display()))
    }

    /// Compiles (or loads from cache), identifies and describes a component.
    /// Errors say why a file is not a weft connector: not WebAssembly, a core
    /// module rather than a component, a different world, or a contract
    /// version this host does not support.
    pub async fn load(&self, bytes: &[u8]) -> anyhow::Result<Connector> {
        check_header(bytes)?;
        let digest = digest(bytes);
        let (component, from_cache) =
            tokio::task::block_in_place(|| self.engine.compile(bytes, &digest))
                .context("compiling the component")?;
        let (world, contract) = identify(self.engine.engine(), &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("the component imports something weft does not provide: {e:#}"))?;
        let mut probe = Connector {
            inner: Arc::new(ConnectorInner {
                digest,
                world,
                contract,
                info: ConnectorInfo {
                    name: "unknown".into(),
                    version: semver::Version::new(0, 0, 0),
                    description: String::new(),
                    streams: vec![],
                    config_schema: serde_json::json!({}),
                    outbound_hosts: vec![],
                },
                requested: vec![],
                pre,
                from_cache,
                validator: std::sync::OnceLock::new(),
            }),
        };
        let mut instance = self
            .instantiate(&probe, &TenantGrant::new("_describe"))
            .await
            .context("instantiating the component")?;
        let raw = instance.describe_raw().await.context("calling describe")?;
        let info = convert_info(raw, &self.limits)?;
        let requested = info
            .outbound_hosts
            .iter()
            .map(|h| OriginPattern::parse(h).map_err(|e| anyhow!("describe: outbound-hosts: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let inner = Arc::get_mut(&mut probe.inner).expect("probe connector is not shared");
        inner.info = info;
        inner.requested = requested;
        inner.validator = std::sync::OnceLock::new();
        drop(instance);
        Ok(probe)
    }

    /// `n` slots of the instance pool if they are free now.
    pub fn try_reserve_slots(&self, n: usize) -> Option<InstanceSlots> {
        self.slots
            .clone()
            .try_acquire_many_owned(u32::try_from(n).ok()?)
            .ok()
            .map(InstanceSlots)
    }

    /// A fresh instance of `connector` for one tenant's run, once a slot
    /// of the instance pool is free.
    pub async fn instantiate(
        &self,
        connector: &Connector,
        grant: &TenantGrant,
    ) -> anyhow::Result<ConnectorInstance> {
        let mut slots = self.reserve_slots(1).await?;
        self.instantiate_in(connector, grant, &mut slots).await
    }

    /// A fresh instance of `connector` in one of `slots`.
    pub async fn instantiate_in(
        &self,
        connector: &Connector,
        grant: &TenantGrant,
        slots: &mut InstanceSlots,
    ) -> anyhow::Result<ConnectorInstance> {
        let slot = slots
            .take()
            .ok_or_else(|| anyhow!("no instance slot left in this reservation"))?;
        let label = connector.label();
        let identity = Identity {
            tenant: grant.tenant.clone(),
            flow: grant.flow.clone(),
            run_id: grant.run_id.clone(),
            connector: label.clone(),
        };
        let logs = GuestLog::new(
            identity.clone(),
            self.limits.max_log_line_bytes,
            self.limits.max_log_lines_per_call,
        );
        let deadline = CallDeadline::default();
        let kv_space = KvSpace {
            tenant: grant.tenant.clone(),
            connector: connector.inner.info.name.clone(),
        };
        let write_ahead = crate::caps::kv::WriteAhead::new(self.kv.clone(), kv_space.clone());
        let hooks = OutboundHttp::new(
            self.http.clone(),
            &grant.tenant,
            &label,
            connector.inner.requested.clone(),
            &grant.http,
            &self.secrets.for_tenant(&grant.tenant),
            self.limits.clone(),
            deadline.clone(),
        )?
        .with_tap(
            grant
                .http_tap
                .clone()
                .or_else(|| grant.recorder.as_ref().map(|r| r.tap())),
        )
        .with_write_ahead(write_ahead.clone());
        // Host memory a guest can make the host hold is bounded: entries in
        // its resource table, and the size of each header set.
        let mut table = ResourceTable::new();
        table.set_max_capacity(self.limits.max_resources);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(self.limits.max_http_fields_bytes);
        let state = StoreState {
            wasi: crate::caps::wasi::restricted_ctx(&logs, grant.clock.clone()),
            http,
            table,
            hooks,
            caps: ConnectorCtx {
                identity,
                config: grant.config.clone(),
                kv: self.kv.clone(),
                kv_space,
                write_ahead,
                limits: self.limits.clone(),
                events: self.events.clone(),
                logs: logs.clone(),
                deadline: deadline.clone(),
            },
            limiter: MemoryLimiter {
                memory_bytes: self.limits.memory_bytes,
            },
            deadline: deadline.clone(),
        };
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|ctx| match ctx.data().deadline.get() {
            Some(d) if Instant::now() >= d => Err(DeadlineExceeded.into()),
            _ => Ok(UpdateDeadline::Yield(1)),
        });
        store.set_epoch_deadline(1);
        // Instantiation runs guest start functions and static constructors:
        // it gets the call deadline too, by epoch inside wasm and by a
        // timeout around it (a constructor blocked in a host call, on a
        // pollable say, is not interrupted by epochs).
        deadline.set(Instant::now() + self.limits.call_timeout());
        let pre = &connector.inner.pre;
        let world = connector.inner.world;
        let instantiating = async {
            Ok::<_, wasmtime::Error>(match world {
                WorldKind::Source => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let bound = source::SourceConnector::new(&mut store, &instance)?;
                    // The optional capability: absent in most sources.
                    let hooks =
                        crate::runtime::bindings::webhooks_v0_1_0::WebhookRegistration::new(
                            &mut store, &instance,
                        )
                        .ok();
                    Bound::Source(bound, hooks)
                }
                WorldKind::Mapper => Bound::Mapper(
                    mapper::MapperConnectorPre::new(pre.clone())?
                        .instantiate_async(&mut store)
                        .await?,
                ),
                WorldKind::Destination => Bound::Destination(
                    destination::DestinationConnectorPre::new(pre.clone())?
                        .instantiate_async(&mut store)
                        .await?,
                ),
            })
        };
        let too_slow = || {
            self.events.record(
                &grant.tenant,
                &label,
                EventKind::Deadline {
                    call: "instantiate".into(),
                },
            );
            anyhow!(
                "instantiating {label}: deadline of {} ms exceeded (limits.call_timeout_ms): a start function or static constructor did not return",
                self.limits.call_timeout_ms
            )
        };
        let bound =
            match tokio::time::timeout(self.limits.call_timeout() + TIMEOUT_GRACE, instantiating)
                .await
            {
                Err(_) => return Err(too_slow()),
                Ok(Err(e)) if e.downcast_ref::<DeadlineExceeded>().is_some() => {
                    return Err(too_slow());
                }
                Ok(Err(e)) => return Err(anyhow::Error::from(e)),
                Ok(Ok(b)) => b,
            };
        Ok(ConnectorInstance {
            store,
            bound: Arc::new(bound),
            label,
            world: connector.inner.world,
            tenant: grant.tenant.clone(),
            limits: self.limits.clone(),
            events: self.events.clone(),
            logs,
            poisoned: None,
            call_started: Instant::now(),
            recorder: grant.recorder.clone(),
            started_ms: 0,
            recorded_instance: grant
                .recorder
                .as_ref()
                .map(|r| r.next_instance())
                .unwrap_or_default(),
            _slot: slot,
        })
    }
}

enum Bound {
    /// A source, with its webhook-registration export if it has one.
    Source(
        source::SourceConnector,
        Option<crate::runtime::bindings::webhooks_v0_1_0::WebhookRegistration>,
    ),
    Mapper(mapper::MapperConnector),
    Destination(destination::DestinationConnector),
}

/// One live instance of a connector, serving one tenant's run.
pub struct ConnectorInstance {
    store: Store<StoreState>,
    bound: Arc<Bound>,
    label: String,
    world: WorldKind,
    tenant: String,
    limits: Limits,
    events: EventLog,
    logs: GuestLog,
    poisoned: Option<String>,
    call_started: Instant,
    recorder: Option<crate::runtime::record::CallRecorder>,
    /// Wall-clock start of the call in progress (Unix ms), for recordings.
    started_ms: u64,
    /// This instance's number in its recording.
    recorded_instance: u32,
    /// Its slot of the pool, given back after the store (fields drop in
    /// order) has given back the memory.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl ConnectorInstance {
    /// The lines the guest logged (newest few hundred).
    pub fn logs(&self) -> Vec<LogLine> {
        self.logs.lines()
    }

    /// The connector's `name@version`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The instance's key-value space, for recordings.
    fn kv_dump(&self) -> std::collections::BTreeMap<String, String> {
        let caps = &self.store.data().caps;
        crate::runtime::record::dump_kv(&*caps.kv, &caps.kv_space)
    }

    fn begin(&mut self) -> Result<(), CallError> {
        if let Some(p) = &self.poisoned {
            return Err(CallError::Poisoned(p.clone()));
        }
        self.store
            .data()
            .deadline
            .set(Instant::now() + self.limits.call_timeout());
        self.logs.start_call();
        self.call_started = Instant::now();
        if let Some(r) = &self.recorder {
            self.started_ms = crate::runtime::record::now_ms();
            r.begin(self.kv_dump());
        }
        Ok(())
    }

    fn wrong_world(&self, call: &str) -> CallError {
        CallError::WrongWorld {
            connector: self.label.clone(),
            world: self.world,
            call: call.to_owned(),
        }
    }

    /// Turns the outcome of a guest call into a value or a classified error,
    /// recording sandbox failures and poisoning the instance after them.
    fn settle<R>(
        &mut self,
        call: &str,
        outcome: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
    ) -> Result<R, CallError> {
        let m = crate::metrics::metrics();
        let labels = crate::metrics::CallLabels {
            connector: self.label.clone(),
            call: call.to_owned(),
        };
        m.guest_call_seconds
            .get_or_create(&labels)
            .observe(self.call_started.elapsed().as_secs_f64());
        let err = match outcome {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => self.classify(call, e),
            Err(_) => CallError::Deadline {
                call: call.to_owned(),
                timeout_ms: self.limits.call_timeout_ms,
            },
        };
        m.guest_traps.get_or_create(&labels).inc();
        Err(self.fail(call, err))
    }

    fn classify(&self, call: &str, e: wasmtime::Error) -> CallError {
        let call = call.to_owned();
        if e.downcast_ref::<DeadlineExceeded>().is_some() {
            return CallError::Deadline {
                call,
                timeout_ms: self.limits.call_timeout_ms,
            };
        }
        if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
            return CallError::MemoryLimit {
                call,
                limit: m.limit,
            };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::StackOverflow) => CallError::StackOverflow { call },
            Some(Trap::Interrupt) => CallError::Deadline {
                call,
                timeout_ms: self.limits.call_timeout_ms,
            },
            Some(trap) => {
                let mut detail = trap.to_string();
                // A guest says where and why on stderr before trapping: a
                // Python traceback, a Rust panic (see `trap_excerpt`).
                let lines = self.logs.lines();
                let stderr: Vec<&str> = lines
                    .iter()
                    .filter(|l| l.level == "warn")
                    .map(|l| l.message.as_str())
                    .collect();
                if let Some(text) = crate::caps::log::trap_excerpt(&stderr) {
                    detail = format!("{detail}; stderr: {text}");
                }
                CallError::Trap { call, detail }
            }
            None => CallError::Trap {
                call,
                detail: format!("{e:#}"),
            },
        }
    }

    /// Records a sandbox failure and poisons the instance.
    fn fail(&mut self, call: &str, err: CallError) -> CallError {
        let call = call.to_owned();
        let kind = match &err {
            CallError::Deadline { .. } => EventKind::Deadline { call },
            CallError::MemoryLimit { .. } => EventKind::MemoryLimit { call },
            CallError::StackOverflow { .. } => EventKind::StackOverflow { call },
            CallError::BadOutput { detail, .. } => EventKind::OutputTooLarge {
                call,
                detail: detail.clone(),
            },
            other => EventKind::Trap {
                call,
                detail: other.to_string(),
            },
        };
        self.events.record(&self.tenant, &self.label, kind);
        self.poisoned = Some(err.to_string());
        err
    }

    fn call_timeout(&self) -> Duration {
        self.limits.call_timeout() + TIMEOUT_GRACE
    }

    fn check_records(&mut self, call: &str, records: &[Record]) -> Result<(), CallError> {
        let max = self.limits.max_records_per_call;
        let detail = if records.len() > max {
            Some(format!(
                "returned {} records; the limit is {max}",
                records.len()
            ))
        } else {
            let l = &self.limits;
            records.iter().find_map(|r| {
                let key = || r.key.chars().take(64).collect::<String>();
                if r.key.len() > l.max_record_key_bytes {
                    Some(format!(
                        "record {}… has a key of {} bytes; the limit is {} (limits.max_record_key_bytes)",
                        key(),
                        r.key.len(),
                        l.max_record_key_bytes
                    ))
                } else if r.kind.len() > l.max_label_bytes {
                    Some(format!(
                        "record {} has a kind of {} bytes; the limit is {} (limits.max_label_bytes)",
                        key(),
                        r.kind.len(),
                        l.max_label_bytes
                    ))
                } else if r.body.len() > l.max_record_body_bytes {
                    Some(format!(
                        "record {} has a body of {} bytes; the limit is {} (limits.max_record_body_bytes)",
                        key(),
                        r.body.len(),
                        l.max_record_body_bytes
                    ))
                } else {
                    None
                }
            })
        };
        match detail {
            Some(detail) => Err(self.fail(
                call,
                CallError::BadOutput {
                    call: call.to_owned(),
                    detail,
                },
            )),
            None => Ok(()),
        }
    }

    async fn describe_raw(&mut self) -> Result<wit::ConnectorInfo, CallError> {
        self.begin()?;
        let timeout = self.call_timeout();
        let bound = self.bound.clone();
        let out = match &*bound {
            Bound::Source(b, _) => {
                tokio::time::timeout(
                    timeout,
                    b.weft_connector_metadata().call_describe(&mut self.store),
                )
                .await
            }
            Bound::Mapper(b) => {
                tokio::time::timeout(
                    timeout,
                    b.weft_connector_metadata().call_describe(&mut self.store),
                )
                .await
            }
            Bound::Destination(b) => {
                tokio::time::timeout(
                    timeout,
                    b.weft_connector_metadata().call_describe(&mut self.store),
                )
                .await
            }
        };
        self.settle("describe", out)
    }

    /// Calls `describe`.
    pub async fn describe(&mut self) -> anyhow::Result<ConnectorInfo> {
        let limits = self.limits.clone();
        convert_info(self.describe_raw().await?, &limits)
    }

    /// How `stream`'s webhooks are registered with the vendor, when the
    /// source exports the optional `weft:webhooks/registration` interface;
    /// `None` when it does not, or the stream takes no webhooks.
    pub async fn webhook_setup(
        &mut self,
        stream: &str,
    ) -> Result<Option<crate::model::WebhookSetup>, CallError> {
        let bound = self.bound.clone();
        let Bound::Source(_, hooks) = &*bound else {
            return Err(self.wrong_world("webhook-setup"));
        };
        let Some(hooks) = hooks else {
            return Ok(None);
        };
        self.begin()?;
        let out = tokio::time::timeout(
            self.call_timeout(),
            hooks
                .weft_webhooks_registration()
                .call_webhook_setup(&mut self.store, stream),
        )
        .await;
        let setup = self
            .settle("webhook-setup", out)?
            .map_err(|e| CallError::Connector(ConnectorError::Config(e)))?;
        use crate::runtime::bindings::webhooks_v0_1_0::exports::weft::webhooks::registration as wit;
        let call = |c: wit::HttpCall| crate::model::HttpCall {
            method: c.method,
            url: c.url,
            body: c.body,
        };
        Ok(setup.map(|s| crate::model::WebhookSetup {
            create: call(s.create),
            id_pointer: s.id_pointer,
            secret_pointer: s.secret_pointer,
            rotate: s.rotate.map(call),
            delete: s.delete.map(call),
            rotation_overlap_secs: s.rotation_overlap_secs,
        }))
    }

    /// This instance's outbound HTTP (grants, policy, quota, credentials),
    /// for requests the host makes on the tenant's behalf
    /// ([`crate::caps::http::OutboundHttp::send_for_host`]).
    pub fn host_http(&self) -> crate::caps::http::OutboundHttp {
        self.store.data().hooks.clone()
    }

    /// Fetches one page of `stream` after `cursor` (source connectors).
    pub async fn fetch(&mut self, stream: &str, cursor: Option<&str>) -> Result<Page, CallError> {
        let out = self.fetch_now(stream, cursor).await;
        self.record(
            || crate::runtime::record::Call::Fetch {
                stream: stream.to_owned(),
                cursor: cursor.map(str::to_owned),
            },
            &out,
        );
        out
    }

    /// Keeps a finished call when the run is recorded.
    fn record<T: serde::Serialize>(
        &self,
        call: impl FnOnce() -> crate::runtime::record::Call,
        out: &Result<T, CallError>,
    ) {
        if let Some(r) = &self.recorder {
            r.push(
                call(),
                (self.recorded_instance, self.started_ms),
                crate::runtime::record::output_of(out),
                self.kv_dump(),
            );
        }
    }

    async fn fetch_now(&mut self, stream: &str, cursor: Option<&str>) -> Result<Page, CallError> {
        let bound = self.bound.clone();
        let Bound::Source(b, _) = &*bound else {
            return Err(self.wrong_world("fetch"));
        };
        self.begin()?;
        let out = tokio::time::timeout(
            self.call_timeout(),
            b.weft_connector_source()
                .call_fetch(&mut self.store, stream, cursor),
        )
        .await;
        let limits = self.limits.clone();
        let page = self
            .settle("fetch", out)?
            .map_err(|e| CallError::Connector(limited_error(e, &limits)))?;
        let records: Vec<Record> = page.records.into_iter().map(Record::from).collect();
        self.check_records("fetch", &records)?;
        if let Some(c) = &page.next_cursor
            && c.len() > limits.max_text_bytes
        {
            return Err(self.fail(
                "fetch",
                CallError::BadOutput {
                    call: "fetch".into(),
                    detail: format!(
                        "the next cursor is {} bytes long; the limit is {} (limits.max_text_bytes)",
                        c.len(),
                        limits.max_text_bytes
                    ),
                },
            ));
        }
        Ok(Page {
            records,
            next_cursor: page.next_cursor,
            has_more: page.has_more,
        })
    }

    /// Turns a verified webhook delivery into records (source connectors).
    pub async fn on_webhook(
        &mut self,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<Vec<Record>, CallError> {
        let call = self
            .recorder
            .as_ref()
            .map(|_| crate::runtime::record::Call::Webhook {
                headers: headers.clone(),
                body: crate::caps::http::tap::Body::of(&body),
            });
        let out = self.on_webhook_now(headers, body).await;
        if let Some(call) = call {
            self.record(|| call, &out);
        }
        out
    }

    async fn on_webhook_now(
        &mut self,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<Vec<Record>, CallError> {
        let bound = self.bound.clone();
        let Bound::Source(b, _) = &*bound else {
            return Err(self.wrong_world("on-webhook"));
        };
        self.begin()?;
        let delivery = source::exports::weft::connector::source::Webhook {
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            body,
        };
        let out = tokio::time::timeout(
            self.call_timeout(),
            b.weft_connector_source()
                .call_on_webhook(&mut self.store, &delivery),
        )
        .await;
        let limits = self.limits.clone();
        let records = self
            .settle("on-webhook", out)?
            .map_err(|e| CallError::Connector(limited_error(e, &limits)))?;
        let records: Vec<Record> = records.into_iter().map(Record::from).collect();
        self.check_records("on-webhook", &records)?;
        Ok(records)
    }

    /// Maps a batch (mapper connectors): one outcome per input record.
    pub async fn map(
        &mut self,
        records: &[Record],
    ) -> Result<Vec<Result<Vec<Record>, ConnectorError>>, CallError> {
        self.map_refs(&records.iter().collect::<Vec<_>>()).await
    }

    /// Like [`ConnectorInstance::map`], for records held elsewhere (the
    /// runner's items): each is copied once, into the guest.
    pub(crate) async fn map_refs(
        &mut self,
        records: &[&Record],
    ) -> Result<Vec<Result<Vec<Record>, ConnectorError>>, CallError> {
        let out = self.map_now(records).await;
        self.record(
            || crate::runtime::record::Call::Map {
                records: records.iter().map(|r| (*r).clone()).collect(),
            },
            &out,
        );
        out
    }

    async fn map_now(
        &mut self,
        records: &[&Record],
    ) -> Result<Vec<Result<Vec<Record>, ConnectorError>>, CallError> {
        let bound = self.bound.clone();
        let Bound::Mapper(b) = &*bound else {
            return Err(self.wrong_world("map"));
        };
        self.begin()?;
        let input: Vec<wit::Record> = records.iter().map(|r| wit::Record::from(*r)).collect();
        let out = tokio::time::timeout(
            self.call_timeout(),
            b.weft_connector_mapper().call_map(&mut self.store, &input),
        )
        .await;
        let outcomes = self.settle("map", out)?;
        self.check_outcome_count("map", outcomes.len(), records.len())?;
        let limits = self.limits.clone();
        let outcomes: Vec<Result<Vec<Record>, ConnectorError>> = outcomes
            .into_iter()
            .map(|o| match o {
                Ok(rs) => Ok(rs.into_iter().map(Record::from).collect()),
                Err(e) => Err(limited_error(e, &limits)),
            })
            .collect();
        let all: Vec<Record> = outcomes
            .iter()
            .flat_map(|o| o.iter().flatten().cloned())
            .collect();
        self.check_records("map", &all)?;
        Ok(outcomes)
    }

    /// Delivers a batch (destination connectors): one outcome per record.
    pub async fn emit(
        &mut self,
        records: &[Record],
    ) -> Result<Vec<Result<(), ConnectorError>>, CallError> {
        self.emit_refs(&records.iter().collect::<Vec<_>>()).await
    }

    /// Like [`ConnectorInstance::emit`], for records held elsewhere (the
    /// runner's items): each is copied once, into the guest.
    pub(crate) async fn emit_refs(
        &mut self,
        records: &[&Record],
    ) -> Result<Vec<Result<(), ConnectorError>>, CallError> {
        let out = self.emit_now(records).await;
        self.record(
            || crate::runtime::record::Call::Emit {
                records: records.iter().map(|r| (*r).clone()).collect(),
            },
            &out,
        );
        out
    }

    async fn emit_now(
        &mut self,
        records: &[&Record],
    ) -> Result<Vec<Result<(), ConnectorError>>, CallError> {
        let bound = self.bound.clone();
        let Bound::Destination(b) = &*bound else {
            return Err(self.wrong_world("emit"));
        };
        self.begin()?;
        let input: Vec<wit::Record> = records.iter().map(|r| wit::Record::from(*r)).collect();
        let out = tokio::time::timeout(
            self.call_timeout(),
            b.weft_connector_destination()
                .call_emit(&mut self.store, &input),
        )
        .await;
        let outcomes = self.settle("emit", out)?;
        self.check_outcome_count("emit", outcomes.len(), records.len())?;
        let limits = self.limits.clone();
        Ok(outcomes
            .into_iter()
            .map(|o| o.map_err(|e| limited_error(e, &limits)))
            .collect())
    }

    fn check_outcome_count(
        &mut self,
        call: &str,
        got: usize,
        want: usize,
    ) -> Result<(), CallError> {
        if got == want {
            return Ok(());
        }
        Err(self.fail(
            call,
            CallError::BadOutput {
                call: call.to_owned(),
                detail: format!("returned {got} outcomes for {want} records"),
            },
        ))
    }
}

/// Checks the WebAssembly header, to tell "not wasm" and "a core module"
/// apart from real components before compiling.
fn check_header(bytes: &[u8]) -> anyhow::Result<()> {
    if bytes.starts_with(b"!<arch>\n") {
        bail!(
            "not a WebAssembly file (no `\\0asm` header): this is a library archive (a Rust `.rlib`); \
             set `crate-type = [\"cdylib\"]` under `[lib]` in Cargo.toml and build with \
             `cargo build --release --target wasm32-wasip2`"
        );
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        bail!(
            "not a WebAssembly file (no `\\0asm` header); a Rust connector needs \
             `crate-type = [\"cdylib\"]` under `[lib]` and `--target wasm32-wasip2`"
        );
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => bail!(
            "a core WebAssembly module, not a component: build the connector for \
             `wasm32-wasip2` (or wrap a module with `wasm-tools component new`)"
        ),
        [_, _, 1, 0] => Ok(()),
        _ => bail!("unknown WebAssembly binary version {:?}", &bytes[4..8]),
    }
}

/// Works out the world and contract version from the component's exports.
fn identify(
    engine: &wasmtime::Engine,
    component: &Component,
) -> anyhow::Result<(WorldKind, &'static str)> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let mut found = None;
    let mut other_versions = Vec::new();
    for name in &exports {
        let Some(rest) = name.strip_prefix("weft:connector/") else {
            continue;
        };
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        let world = match iface {
            "source" => WorldKind::Source,
            "mapper" => WorldKind::Mapper,
            "destination" => WorldKind::Destination,
            _ => continue,
        };
        match SUPPORTED_CONTRACTS.iter().find(|v| **v == version) {
            Some(v) => found = Some((world, *v)),
            None => other_versions.push(format!("weft:connector@{version}")),
        }
    }
    if let Some(f) = found {
        let metadata = format!("weft:connector/metadata@{}", f.1);
        if !exports.contains(&metadata) {
            bail!("the component does not export {metadata}: every weft world exports `describe`");
        }
        return Ok(f);
    }
    if !other_versions.is_empty() {
        bail!(
            "incompatible WIT version: the component was built against {}; this host supports weft:connector@{}",
            other_versions.join(", "),
            SUPPORTED_CONTRACTS.join(", weft:connector@")
        );
    }
    bail!(
        "wrong world: a weft connector exports weft:connector/source, mapper or destination (generate the bindings of `source-connector`, `mapper-connector` or `destination-connector` from the SDK's WIT and export your type); this component exports {}",
        if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports.join(", ")
        }
    )
}

/// Refuses a string a guest handed back that is longer than `max` bytes,
/// naming what it was and the limit.
fn check_len(what: &str, s: &str, max: usize, limit: &str) -> anyhow::Result<()> {
    if s.len() > max {
        bail!(
            "{what} is {} bytes long; the limit is {max} (limits.{limit})",
            s.len()
        );
    }
    Ok(())
}

/// Cuts a guest's error message to `max` bytes (on a character boundary),
/// saying how much was cut.
fn cut_message(m: &mut String, max: usize) {
    if m.len() > max {
        let total = m.len();
        let mut end = max;
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        m.truncate(end);
        m.push_str(&format!(
            "… ({} more bytes cut: limits.max_text_bytes)",
            total - end
        ));
    }
}

/// A connector error with its message cut to the limit.
fn limited_error(e: wit::Error, limits: &Limits) -> ConnectorError {
    let mut e = ConnectorError::from(e);
    match &mut e {
        ConnectorError::Transient { message, .. } => cut_message(message, limits.max_text_bytes),
        ConnectorError::Invalid(m) | ConnectorError::Config(m) => {
            cut_message(m, limits.max_text_bytes)
        }
    }
    e
}

fn convert_info(raw: wit::ConnectorInfo, limits: &Limits) -> anyhow::Result<ConnectorInfo> {
    let label = limits.max_label_bytes;
    check_len("describe: name", &raw.name, label, "max_label_bytes")?;
    check_len("describe: version", &raw.version, label, "max_label_bytes")?;
    check_len(
        "describe: description",
        &raw.description,
        limits.max_text_bytes,
        "max_text_bytes",
    )?;
    check_len(
        "describe: config-schema",
        &raw.config_schema,
        limits.max_schema_bytes,
        "max_schema_bytes",
    )?;
    for (what, n) in [
        ("streams", raw.streams.len()),
        ("outbound-hosts", raw.outbound_hosts.len()),
    ] {
        if n > limits.max_list_items {
            bail!(
                "describe: {what} lists {n} entries; the limit is {} (limits.max_list_items)",
                limits.max_list_items
            );
        }
    }
    for s in &raw.streams {
        check_len("describe: a stream name", &s.name, label, "max_label_bytes")?;
        check_len(
            "describe: a stream description",
            &s.description,
            limits.max_text_bytes,
            "max_text_bytes",
        )?;
    }
    for h in &raw.outbound_hosts {
        check_len("describe: an outbound host", h, label, "max_label_bytes")?;
    }
    let version = semver::Version::parse(&raw.version)
        .map_err(|e| anyhow!("describe: version {:?} is not semver: {e}", raw.version))?;
    if raw.name.is_empty()
        || !raw
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        bail!(
            "describe: name {:?} must be lowercase letters, digits and dashes",
            raw.name
        );
    }
    let config_schema: serde_json::Value = if raw.config_schema.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(&raw.config_schema)
            .map_err(|e| anyhow!("describe: config-schema is not JSON: {e}"))?
    };
    Ok(ConnectorInfo {
        name: raw.name,
        version,
        description: raw.description,
        streams: raw
            .streams
            .into_iter()
            .map(|s| StreamInfo {
                name: s.name,
                description: s.description,
            })
            .collect(),
        config_schema,
        outbound_hosts: raw.outbound_hosts,
    })
}

impl From<wit::Record> for Record {
    fn from(r: wit::Record) -> Self {
        Record {
            key: r.key,
            kind: r.kind,
            version: r.version,
            op: match r.op {
                wit::Operation::Upsert => Operation::Upsert,
                wit::Operation::Delete => Operation::Delete,
            },
            body: r.body,
        }
    }
}

impl From<&Record> for wit::Record {
    fn from(r: &Record) -> Self {
        wit::Record {
            key: r.key.clone(),
            kind: r.kind.clone(),
            version: r.version,
            op: match r.op {
                Operation::Upsert => wit::Operation::Upsert,
                Operation::Delete => wit::Operation::Delete,
            },
            body: r.body.clone(),
        }
    }
}

impl From<wit::Error> for ConnectorError {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::Transient(t) => ConnectorError::Transient {
                message: t.message,
                retry_after: t.retry_after_ms.map(Duration::from_millis),
            },
            wit::Error::Invalid(m) => ConnectorError::Invalid(m),
            wit::Error::Config(m) => ConnectorError::Config(m),
        }
    }
}

impl Connector {
    /// Checks a stage's `config` against this connector's JSON Schema.
    pub fn validate_config(&self, config: &serde_json::Value) -> Result<(), String> {
        let errors: Vec<String> = self
            .config_errors(config)?
            .into_iter()
            .map(|(path, e)| {
                if path.is_empty() {
                    e
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
                self.label(),
                errors.join("; ")
            ))
        }
    }

    /// Where `config` breaks this connector's JSON Schema: each error's
    /// JSON Pointer into the config (empty: the config as a whole) and
    /// what is wrong. `Err` when the schema itself is unusable.
    pub fn config_errors(
        &self,
        config: &serde_json::Value,
    ) -> Result<Vec<(String, String)>, String> {
        let validator = self
            .inner
            .validator
            .get_or_init(|| {
                jsonschema::validator_for(&self.info().config_schema).map_err(|e| {
                    format!("{} publishes an unusable config schema: {e}", self.label())
                })
            })
            .as_ref()
            .map_err(Clone::clone)?;
        Ok(validator
            .iter_errors(config)
            .map(|e| (e.instance_path().to_string(), e.to_string()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn info(name: &str, description: &str, streams: usize, schema: &str) -> wit::ConnectorInfo {
        wit::ConnectorInfo {
            name: name.into(),
            version: "1.0.0".into(),
            description: description.into(),
            streams: (0..streams)
                .map(|i| wit::StreamInfo {
                    name: format!("s{i}"),
                    description: String::new(),
                })
                .collect(),
            config_schema: schema.into(),
            outbound_hosts: vec![],
        }
    }

    proptest! {
        /// A cut message is at most the limit plus its note, cut on a
        /// character boundary, and says what it cut.
        #[test]
        fn cut_messages_stay_within_the_limit(m in "\\PC{0,600}", max in 1usize..300) {
            let mut cut = m.clone();
            cut_message(&mut cut, max);
            if m.len() <= max {
                prop_assert_eq!(cut, m);
            } else {
                prop_assert!(cut.len() <= max + 80, "{} > {}", cut.len(), max + 80);
                prop_assert!(cut.contains("limits.max_text_bytes"));
            }
        }

        /// `describe` output is accepted exactly when every part is within
        /// its limit (and the name is well formed); nothing panics.
        #[test]
        fn describe_output_is_checked_against_every_limit(
            name_len in 0usize..300,
            desc_len in 0usize..40_000,
            streams in 0usize..300,
            schema_len in 0usize..300_000,
        ) {
            let limits = Limits::default();
            let schema = format!("{{\"description\":\"{}\"}}", "x".repeat(schema_len));
            let raw = info(&"a".repeat(name_len), &"d".repeat(desc_len), streams, &schema);
            let ok = name_len >= 1
                && name_len <= limits.max_label_bytes
                && desc_len <= limits.max_text_bytes
                && streams <= limits.max_list_items
                && schema.len() <= limits.max_schema_bytes;
            prop_assert_eq!(convert_info(raw, &limits).is_ok(), ok);
        }
    }

    #[test]
    fn header_check_explains() {
        assert!(
            check_header(b"hello world")
                .unwrap_err()
                .to_string()
                .contains("not a WebAssembly")
        );
        let core = b"\0asm\x01\0\0\0";
        assert!(
            check_header(core)
                .unwrap_err()
                .to_string()
                .contains("core WebAssembly module")
        );
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
