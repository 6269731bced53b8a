//! Dead letters back through their flow, with the connector versions in
//! force now; a webhook delivery's dead letter through `on-webhook` again.

use super::*;

impl Host {
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
        let lease = self
            .leases
            .acquire(&dl.tenant, &writer_lease(&flow), "replay")
            .await?;
        close_abandoned_runs(&*self.state, &dl.tenant, &dl.flow)?;
        if dl.stage == "on-webhook" {
            return self.replay_delivery(dl, &flow, lease.fence.as_ref()).await;
        }
        let run_id = new_run_id();
        let mut labels = Vec::new();
        let mut p = self
            .pipeline(&dl.tenant, &dl.flow, &flow, &run_id, false, &mut labels)
            .await?;
        p.sink.fence = lease.fence.clone();
        let mut run = RunRecord {
            id: run_id,
            trigger: "replay".into(),
            connectors: labels,
            fetched: 1,
            replica: self.state.replica().map(str::to_owned),
            ..new_run(&dl.tenant, &dl.flow)
        };
        let scope = delivery_scope(&flow);
        let before = self.state.delivery(&dl.tenant, &scope, &dl.record.key)?;
        let mut items = vec![Self::item(&dl.flow, dl.record.clone(), before, &mut run)];
        let result = self
            .deliver(&mut p.sink, &scope, &mut items, &flow.retry, &mut run)
            .await;
        run.ended_ms = Some(now_ms());
        if let Err(stop) = result {
            let (Stop::Failed(e) | Stop::Attention(e)) = stop;
            run.outcome = RunOutcome::Failed;
            run.error = Some(e.clone());
            self.save_run(&run)?;
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
        commit.fence = p.sink.fence.clone();
        self.state.commit_page(&dl.tenant, &dl.flow, &commit)?;
        run.outcome = RunOutcome::Succeeded;
        self.save_run(&run)?;
        match &item.dead {
            None => Ok(Ok(())),
            Some(_) => Ok(Err(self.state.dead_letter(id)?.unwrap_or(dl))),
        }
    }

    /// Replays the dead letter of a webhook delivery: the source's
    /// `on-webhook` again, then the records on through the flow.
    pub(crate) async fn replay_delivery(
        &self,
        dl: DeadLetter,
        flow: &FlowConfig,
        fence: Option<&Fence>,
    ) -> anyhow::Result<Result<(), DeadLetter>> {
        let delivery = delivery_of(&dl.record)?;
        let mut run = RunRecord {
            trigger: "replay".into(),
            replica: self.state.replica().map(str::to_owned),
            ..new_run(&dl.tenant, &dl.flow)
        };
        let result = self
            .webhook_pages(&dl.tenant, &dl.flow, flow, vec![delivery], &mut run, fence)
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
