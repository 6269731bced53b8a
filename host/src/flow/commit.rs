//! What a page's commit writes: the cursor, each record's entry at its
//! destination and the dead letters, together (`StateStore::commit_page`).

use super::*;

/// Builds the commit of a page: every live or dead item's version, the dead
/// letters, what now exists at the destination, and the cursor.
pub(crate) fn commit_for(
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
