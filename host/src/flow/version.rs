//! Where a record's version is checked: newest wins per destination
//! record, across the tenant's flows that write one place, and the names of
//! that place (its delivery scope and its writers' lease).

use super::*;

impl Host {
    /// The tenant's other flows that deliver to the same place as `flow`
    /// (the same destination connector with the same config): a record
    /// must be newer than what any of them delivered there.
    pub(crate) fn same_destination(
        &self,
        tenant: &str,
        flow: &str,
        config: &FlowConfig,
    ) -> Vec<String> {
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
    pub(crate) fn fresh_items(
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
        let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
        let entries = self.state.deliveries(tenant, scope, &keys)?;
        let mut items = Vec::with_capacity(records.len());
        for ((i, r), before) in records.into_iter().enumerate().zip(entries) {
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
}

/// The lease a flow's writers take ([`crate::flow::lease`]): one per destination
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
