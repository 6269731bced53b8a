//! Map and emit: the live items of a page through the mappers and the
//! destination, transient failures retried, invalid records dead.

use super::*;

impl Host {
    /// Maps and emits the live items, retrying transient failures and
    /// marking invalid ones dead.
    pub(crate) async fn deliver(
        &self,
        p: &mut Sink,
        scope: &str,
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
        // What may reach the destination for the first time is noted as
        // there before it is sent, durably: a run killed before its commit
        // must not leave a record the destination holds looking absent (a
        // later delete of it would be skipped).
        let sending: Vec<&str> = items
            .iter()
            .filter(|it| {
                !it.maybe_present
                    && it.dead.is_none()
                    && it.outputs().iter().any(|o| o.op == Operation::Upsert)
            })
            .map(|it| it.source.key.as_str())
            .collect();
        if !sending.is_empty() {
            self.state
                .note_sending(&p.serving.0, scope, &sending)
                .and_then(|()| self.state.flush())
                .map_err(|e| Stop::Failed(format!("noting what is sent: {e:#}")))?;
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
}
