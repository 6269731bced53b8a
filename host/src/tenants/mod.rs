//! The tenant store: the live tenants (`weft.toml`'s, overlaid with those
//! written over the admin API), their checks against each connector's
//! schema and world, export and delete; [`access`] says what a tenant may
//! write versus an operator.

use crate::Host;
use crate::config::{FlowConfig, Stage, TenantConfig};
use crate::runtime::connector::{Connector, WorldKind};
use anyhow::{Context, bail};

pub mod access;
pub mod integrations;

/// The live tenants by ID, each shared between snapshots.
pub type Tenants = std::collections::BTreeMap<String, std::sync::Arc<TenantConfig>>;

impl Host {
    /// A snapshot of the live tenants (an `Arc`: nothing is copied).
    pub fn tenants(&self) -> std::sync::Arc<Tenants> {
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
            .map(|t| TenantConfig::clone(t))
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
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        std::sync::Arc::make_mut(&mut tenants).insert(id.to_owned(), std::sync::Arc::new(tenant));
        drop(tenants);
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
        config.tenants = self
            .tenants()
            .iter()
            .map(|(id, t)| (id.clone(), TenantConfig::clone(t)))
            .collect();
        toml::to_string(&config).context("writing the configuration as TOML")
    }

    /// Deletes a tenant (its state stays until reset); whether it existed.
    pub fn delete_tenant(&self, id: &str) -> anyhow::Result<bool> {
        let existed = self.tenant(id).is_some();
        // A tombstone, so that a tenant of `weft.toml` stays deleted.
        self.state
            .doc_put(TENANT_DOC, id, &serde_json::to_vec(&None::<TenantConfig>)?)?;
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        std::sync::Arc::make_mut(&mut tenants).remove(id);
        drop(tenants);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(existed)
    }
}

/// The state-store document kind of tenants written at runtime.
pub const TENANT_DOC: &str = "tenant";
