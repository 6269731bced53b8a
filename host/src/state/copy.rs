//! `weft state copy`: moves a state into another backend (sled into
//! PostgreSQL, when a deployment grows past one machine) and checks the
//! copy: every fact is exported from the source, imported into the target
//! (which must be empty), exported again from the target and compared,
//! kind by kind, by count and content.

use super::{StateItem, StateStore};
use std::collections::BTreeMap;

/// What a copy moved, and how it compared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopyReport {
    /// Per kind of fact: (in the source, in the target after the copy).
    pub counts: BTreeMap<&'static str, (usize, usize)>,
    /// Facts that differ (at most a few per kind are named).
    pub differences: Vec<String>,
}

/// The facts of `items` in a canonical form, per kind: JSON lines, sorted
/// (an inbox delivery's sequence number is the store's own: left out).
fn canonical(items: &[StateItem]) -> BTreeMap<&'static str, Vec<String>> {
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for item in items {
        let item = match item {
            StateItem::Inbox(e) => StateItem::Inbox(Box::new(super::InboxEntry {
                seq: 0,
                ..(**e).clone()
            })),
            other => other.clone(),
        };
        out.entry(item.kind())
            .or_default()
            .push(serde_json::to_string(&item).unwrap_or_default());
    }
    for lines in out.values_mut() {
        lines.sort();
    }
    out
}

/// Copies `from` into `to` and compares them. `extra` are facts to add
/// that the source keeps outside its state (the component files of the
/// registry, as documents the target's replicas read).
pub fn copy_state(
    from: &dyn StateStore,
    to: &dyn StateStore,
    extra: Vec<StateItem>,
) -> anyhow::Result<CopyReport> {
    let mut items = Vec::new();
    from.export(&mut |i| {
        items.push(i);
        Ok(())
    })?;
    items.extend(extra);
    to.import(items.clone())?;
    let mut back = Vec::new();
    to.export(&mut |i| {
        back.push(i);
        Ok(())
    })?;
    let (a, b) = (canonical(&items), canonical(&back));
    let mut report = CopyReport::default();
    for kind in a.keys().chain(b.keys()) {
        let (x, y) = (
            a.get(kind).map(Vec::as_slice).unwrap_or_default(),
            b.get(kind).map(Vec::as_slice).unwrap_or_default(),
        );
        report.counts.insert(kind, (x.len(), y.len()));
        if x != y {
            let missing = x.iter().filter(|l| y.binary_search(l).is_err());
            let added = y.iter().filter(|l| x.binary_search(l).is_err());
            report.differences.extend(
                missing
                    .take(3)
                    .map(|l| format!("{kind}: not copied: {l}"))
                    .chain(
                        added
                            .take(3)
                            .map(|l| format!("{kind}: not in the source: {l}")),
                    ),
            );
        }
    }
    report.differences.dedup();
    Ok(report)
}
