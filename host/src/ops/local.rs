//! [`Ops`] over a host opened in this process.

use super::api::{
    ConnectorAdded, ConnectorVersion, DeadLetterView, FlowReset, FlowState, Replayed,
};
use super::{OpError, OpResult, Ops, Scope, reset_cursor, select_flows};
use crate::Host;
use crate::state::{DeadLetter, RunRecord};
use std::path::Path;

/// The operations over `host`'s state, for whoever has the host: the admin
/// handlers (after authorising) and the CLI without `--server`.
pub struct Local<'a> {
    host: &'a Host,
}

impl<'a> Local<'a> {
    /// The operations over `host`.
    pub fn new(host: &'a Host) -> Self {
        Local { host }
    }

    /// A dead letter with where its flow delivers now.
    fn view(&self, d: DeadLetter) -> DeadLetterView {
        let now = self
            .host
            .flow(&d.tenant, &d.flow)
            .ok()
            .map(|f| f.destination.connector);
        let was = d.destination.split('@').next().unwrap_or("");
        let destination_changed = match &now {
            Some(r) => !d.destination.is_empty() && r.name != was,
            None => true,
        };
        DeadLetterView {
            flow_destination: now.map(|r| r.to_string()),
            destination_changed,
            dead_letter: d,
        }
    }

    fn known_flow(&self, tenant: &str, flow: &str) -> OpResult<()> {
        self.host
            .flow(tenant, flow)
            .map(|_| ())
            .map_err(|e| OpError::NotFound(format!("{e:#}")))
    }
}

impl Ops for Local<'_> {
    async fn dead_letters(&self, scope: &Scope) -> OpResult<Vec<DeadLetterView>> {
        let all = self
            .host
            .state
            .dead_letters(scope.tenant.as_deref(), scope.flow.as_deref())?;
        Ok(all.into_iter().map(|d| self.view(d)).collect())
    }

    async fn dead_letter(&self, id: &str) -> OpResult<DeadLetterView> {
        match self.host.state.dead_letter(id)? {
            Some(d) => Ok(self.view(d)),
            None => Err(OpError::NotFound(format!("no dead letter {id}"))),
        }
    }

    async fn discard_dead_letter(&self, id: &str) -> OpResult<()> {
        if self.host.state.remove_dead_letter(id)? {
            Ok(())
        } else {
            Err(OpError::NotFound(format!("no dead letter {id}")))
        }
    }

    async fn replay(&self, id: &str) -> OpResult<Replayed> {
        if self.host.state.dead_letter(id)?.is_none() {
            return Err(OpError::NotFound(format!("no dead letter {id}")));
        }
        let outcome = self.host.replay(id).await?;
        Ok(Replayed {
            id: id.to_owned(),
            delivered: outcome.is_ok(),
            dead_letter: outcome.err(),
        })
    }

    async fn replay_all(&self, scope: &Scope) -> OpResult<Vec<Replayed>> {
        let all = self
            .host
            .state
            .dead_letters(scope.tenant.as_deref(), scope.flow.as_deref())?;
        let mut out = Vec::with_capacity(all.len());
        for d in all {
            out.push(self.replay(&d.id).await?);
        }
        Ok(out)
    }

    async fn flows(&self, scope: &Scope) -> OpResult<Vec<(String, String)>> {
        let tenants = self.host.tenants();
        select_flows(
            tenants.iter().map(|(id, t)| {
                let flows = t.flows.iter().map(|(f, c)| (f.as_str(), c.paused));
                (id.as_str(), t.active, flows.collect())
            }),
            scope,
        )
    }

    async fn flow_state(&self, tenant: &str, flow: &str) -> OpResult<FlowState> {
        self.known_flow(tenant, flow)?;
        let st = &*self.host.state;
        Ok(FlowState {
            cursor: st.cursor(tenant, flow)?,
            attention: st.attention(tenant, flow)?,
            health: crate::flow::flow_health(st, tenant, flow)?,
            paused: self.host.flow(tenant, flow).is_ok_and(|f| f.paused),
            tenant: tenant.to_owned(),
            flow: flow.to_owned(),
        })
    }

    async fn reset_flow(
        &self,
        tenant: &str,
        flow: &str,
        since: Option<&str>,
    ) -> OpResult<FlowReset> {
        self.known_flow(tenant, flow)?;
        let cursor = reset_cursor(since)?;
        self.host
            .state
            .reset_flow(tenant, flow, cursor.as_deref())?;
        Ok(FlowReset {
            tenant: tenant.to_owned(),
            flow: flow.to_owned(),
            cursor,
        })
    }

    async fn runs(&self, scope: &Scope, limit: usize) -> OpResult<Vec<RunRecord>> {
        Ok(self
            .host
            .state
            .runs(scope.tenant.as_deref(), scope.flow.as_deref(), limit)?)
    }

    async fn run_record(&self, id: &str) -> OpResult<RunRecord> {
        self.host
            .state
            .run(id)?
            .ok_or_else(|| OpError::NotFound(format!("no run {id}")))
    }

    /// Each version with the flows whose requirement picks it now.
    async fn connectors(&self, tenant: Option<&str>) -> OpResult<Vec<ConnectorVersion>> {
        let entries = self.host.registry.list()?;
        let tenants = self.host.tenants();
        let mut out = Vec::new();
        for e in entries {
            let mut used_by = Vec::new();
            let chosen = tenants
                .iter()
                .filter(|(t, _)| tenant.is_none_or(|x| x == *t));
            for (tid, t) in chosen {
                for (fid, f) in &t.flows {
                    let refs = std::iter::once(&f.source.connector)
                        .chain(f.mappers.iter().map(|m| &m.connector))
                        .chain(std::iter::once(&f.destination.connector));
                    for r in refs {
                        if r.name == e.name
                            && self
                                .host
                                .registry
                                .resolve(r)
                                .is_ok_and(|picked| picked.version == e.version)
                        {
                            used_by.push(format!("{tid}/{fid}"));
                        }
                    }
                }
            }
            out.push(ConnectorVersion { entry: e, used_by });
        }
        Ok(out)
    }

    async fn add_connector(&self, file: &Path) -> OpResult<ConnectorAdded> {
        let (connector, added) = self
            .host
            .registry
            .add(&self.host.runtime, file)
            .await
            .map_err(|e| OpError::Invalid(format!("{e:#}")))?;
        Ok(ConnectorAdded { connector, added })
    }

    async fn export_config(&self) -> OpResult<String> {
        Ok(self.host.export_config()?)
    }
}
