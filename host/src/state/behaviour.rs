//! What every [`StateStore`] backend must do, as tests any backend runs:
//! each function takes a fresh store and checks one behaviour through the
//! trait alone; [`state_behaviour_tests!`] makes them `#[test]`s of a
//! backend (sled's in `sled.rs`; PostgreSQL's will call it the same way).

use super::*;
use crate::model::Operation;

pub(crate) fn dl(key: &str, attempts: u32, at: u64) -> DeadLetter {
    DeadLetter {
        id: DeadLetter::id_for("t", "dest", "k", key),
        tenant: "t".into(),
        flow: "f".into(),
        stage: "map".into(),
        connector: "m@1.0.0".into(),
        destination: "d@1.0.0".into(),
        record: Record {
            key: key.into(),
            kind: "k".into(),
            version: 1,
            op: Operation::Upsert,
            body: "{}".into(),
        },
        error: ConnectorError::Invalid("bad".into()),
        attempts,
        first_seen_ms: at,
        last_seen_ms: at,
    }
}
/// A page of `(key, version, present)` for `scope`, read with nothing
/// stored before.
pub(crate) fn page(scope: &str, records: &[(&str, i64, Option<bool>)]) -> PageCommit {
    PageCommit {
        scope: scope.into(),
        records: records
            .iter()
            .map(|(key, version, present)| Handled {
                key: (*key).into(),
                version: *version,
                present: *present,
                before: Delivery::default(),
                settles: None,
            })
            .collect(),
        ..Default::default()
    }
}
pub(crate) fn version(s: &dyn StateStore, scope: &str, flow: &str, key: &str) -> Option<i64> {
    s.delivery("t", scope, key).unwrap().version(flow)
}

pub(crate) fn commit_moves_cursor_versions_and_dead_letters_together(s: &dyn StateStore) {
    s.commit_page(
        "t",
        "f",
        &PageCommit {
            cursor: Some("c1".into()),
            dead_letters: vec![dl("b", 1, 100)],
            ..page("dest", &[("a", 5, Some(true)), ("b", 7, None)])
        },
    )
    .unwrap();
    assert_eq!(s.cursor("t", "f").unwrap().as_deref(), Some("c1"));
    assert_eq!(version(s, "dest", "f", "a"), Some(5));
    assert_eq!(version(s, "dest", "other", "a"), None);
    assert_eq!(version(s, "elsewhere", "f", "a"), None);
    // Versions never go backwards; a repeated dead letter counts attempts.
    s.commit_page(
        "t",
        "f",
        &PageCommit {
            dead_letters: vec![dl("b", 1, 200)],
            ..page("dest", &[("a", 3, None)])
        },
    )
    .unwrap();
    assert_eq!(version(s, "dest", "f", "a"), Some(5));
    assert_eq!(s.cursor("t", "f").unwrap().as_deref(), Some("c1"));
    let d = s
        .dead_letter(&DeadLetter::id_for("t", "dest", "k", "b"))
        .unwrap()
        .unwrap();
    assert_eq!((d.attempts, d.first_seen_ms, d.last_seen_ms), (2, 100, 200));
    assert_eq!(s.dead_letters(Some("t"), None).unwrap().len(), 1);
    assert!(s.dead_letters(Some("u"), None).unwrap().is_empty());
    assert_eq!(s.delivery("t", "dest", "a").unwrap().present, Some(true));
    assert_eq!(s.delivery("t", "dest", "b").unwrap().present, None);
    // Another flow to the same scope keeps its own version, and the
    // record's presence is the scope's.
    s.commit_page("t", "g", &page("dest", &[("a", 1, Some(false))]))
        .unwrap();
    let a = s.delivery("t", "dest", "a").unwrap();
    assert_eq!((a.version("f"), a.version("g")), (Some(5), Some(1)));
    assert_eq!(a.present, Some(false));
    // A page's entries at once, in the order asked, unknown ones empty.
    assert_eq!(
        s.deliveries("t", "dest", &["zz", "a", "b", "a"]).unwrap(),
        [
            Delivery::default(),
            a.clone(),
            s.delivery("t", "dest", "b").unwrap(),
            a
        ]
    );
}

/// A record that gets through settles its dead letter in the scope:
/// by its kind and key (the ID computed in the commit, only when dead
/// letters exist), or by an ID the commit names (a replay's).
pub(crate) fn records_that_get_through_settle_their_dead_letters(s: &dyn StateStore) {
    let commit = PageCommit {
        dead_letters: vec![dl("a", 1, 1), dl("b", 1, 1), dl("c", 1, 1)],
        ..page("dest", &[("a", 1, None), ("b", 1, None), ("c", 1, None)])
    };
    s.commit_page("t", "f", &commit).unwrap();
    let mut next = page("dest", &[("a", 2, Some(true)), ("b", 2, None)]);
    next.records[0].settles = Some("k".into());
    next.resolved = vec![DeadLetter::id_for("t", "dest", "k", "c")];
    s.commit_page("t", "f", &next).unwrap();
    let left: Vec<String> = s
        .dead_letters(None, None)
        .unwrap()
        .into_iter()
        .map(|d| d.record.key)
        .collect();
    assert_eq!(left, ["b"], "b was handled, but dead-lettered again");
    // Another kind of record with the same key is another dead letter.
    let mut other = page("dest", &[("b", 3, Some(true))]);
    other.records[0].settles = Some("other-kind".into());
    s.commit_page("t", "f", &other).unwrap();
    assert_eq!(s.dead_letters(None, None).unwrap().len(), 1);
    other.records[0].settles = Some("k".into());
    s.commit_page("t", "f", &other).unwrap();
    assert!(s.dead_letters(None, None).unwrap().is_empty());
}

/// A tenant's count of dead letters follows every change: new ones,
/// repeats of one (not counted twice), settled ones, removed ones, and it
/// is the tenant's alone.
pub(crate) fn dead_letter_counts_follow_every_change(s: &dyn StateStore) {
    let count = |t: &str| s.dead_letter_count(t).unwrap();
    let listed = |t: &str| s.dead_letters(Some(t), None).unwrap().len();
    s.commit_page(
        "t",
        "f",
        &PageCommit {
            dead_letters: vec![dl("a", 1, 1), dl("b", 1, 1), dl("c", 1, 1)],
            ..page("dest", &[("a", 1, None), ("b", 1, None), ("c", 1, None)])
        },
    )
    .unwrap();
    assert_eq!((count("t"), count("u")), (3, 0));
    // The same record dead again is the same dead letter.
    s.commit_page(
        "t",
        "f",
        &PageCommit {
            dead_letters: vec![dl("a", 1, 2)],
            ..page("dest", &[("a", 2, None)])
        },
    )
    .unwrap();
    assert_eq!(count("t"), 3);
    let mut settle = page("dest", &[("b", 3, Some(true))]);
    settle.records[0].settles = Some("k".into());
    s.commit_page("t", "f", &settle).unwrap();
    assert_eq!(count("t"), 2);
    assert!(
        s.remove_dead_letter(&DeadLetter::id_for("t", "dest", "k", "c"))
            .unwrap()
    );
    assert!(
        !s.remove_dead_letter(&DeadLetter::id_for("t", "dest", "k", "c"))
            .unwrap()
    );
    assert_eq!((count("t"), listed("t")), (1, 1));
}

pub(crate) fn an_entry_read_before_another_commit_is_read_again(s: &dyn StateStore) {
    let at = |version: i64, read_at: Option<u64>| PageCommit {
        read_at,
        ..page("dest", &[("a", version, Some(true))])
    };
    let before = s.commit_stamp("t", "dest").unwrap();
    s.commit_page("t", "f", &at(5, Some(before))).unwrap();
    assert_eq!(version(s, "dest", "f", "a"), Some(5));
    // Read at `before` (nothing stored then), committed after the page
    // above: version 3 must not replace 5.
    s.commit_page("t", "f", &at(3, Some(before))).unwrap();
    assert_eq!(version(s, "dest", "f", "a"), Some(5));
    // A stamp read before another flow's commit to the scope: that
    // flow's version is kept.
    let now = s.commit_stamp("t", "dest").unwrap();
    s.commit_page("t", "g", &page("dest", &[("a", 1, None)]))
        .unwrap();
    let mut later = at(9, Some(now));
    later.records[0].before = Delivery {
        present: Some(true),
        versions: vec![("f".into(), 5)],
    };
    s.commit_page("t", "f", &later).unwrap();
    assert_eq!(version(s, "dest", "f", "a"), Some(9));
    assert_eq!(version(s, "dest", "g", "a"), Some(1));
    // Commits to another scope leave this scope's stamp as it was.
    let now = s.commit_stamp("t", "dest").unwrap();
    s.commit_page("t", "f", &page("other", &[("a", 1, None)]))
        .unwrap();
    assert_eq!(s.commit_stamp("t", "dest").unwrap(), now);
}

/// `note_sending` marks records present before they are sent, moves the
/// scope's stamp (a page read before it reads its entries again), keeps
/// versions, and the page's commit then writes what happened.
pub(crate) fn records_noted_as_sent_are_present_until_the_commit_says(s: &dyn StateStore) {
    s.commit_page("t", "f", &page("dest", &[("a", 4, Some(false))]))
        .unwrap();
    let stamp = s.commit_stamp("t", "dest").unwrap();
    s.note_sending("t", "dest", &["a", "b", "b"]).unwrap();
    s.flush().unwrap();
    assert_ne!(s.commit_stamp("t", "dest").unwrap(), stamp);
    let a = s.delivery("t", "dest", "a").unwrap();
    assert_eq!((a.present, a.version("f")), (Some(true), Some(4)));
    let b = s.delivery("t", "dest", "b").unwrap();
    assert_eq!((b.present, b.version("f")), (Some(true), None));
    let both = s.deliveries("t", "dest", &["b", "a"]).unwrap();
    assert!(both.iter().all(|d| d.present == Some(true)), "{both:?}");
    // Nothing else moved.
    assert_eq!(s.delivery("t", "other", "a").unwrap(), Delivery::default());
    // The commit of the page that sent them writes what happened: `b`
    // went (an upsert), `a` did not (only deletes reached it).
    let mut done = page("dest", &[("a", 5, Some(false)), ("b", 1, Some(true))]);
    done.read_at = Some(stamp);
    s.commit_page("t", "f", &done).unwrap();
    let a = s.delivery("t", "dest", "a").unwrap();
    assert_eq!((a.present, a.version("f")), (Some(false), Some(5)));
    let b = s.delivery("t", "dest", "b").unwrap();
    assert_eq!((b.present, b.version("f")), (Some(true), Some(1)));
    s.note_sending("t", "dest", &[]).unwrap();
}

pub(crate) fn a_page_read_before_a_reset_does_not_bring_back_what_it_removed(s: &dyn StateStore) {
    s.commit_page("t", "f", &page("dest", &[("a", 1, Some(true))]))
        .unwrap();
    s.commit_page("t", "g", &page("dest", &[("a", 1, None)]))
        .unwrap();
    // A run of `f` reads the entry, then `g` is reset, then the run
    // commits.
    let read_at = s.commit_stamp("t", "dest").unwrap();
    let before = s.delivery("t", "dest", "a").unwrap();
    assert_eq!(before.version("g"), Some(1));
    s.reset_flow("t", "g", None).unwrap();
    let mut commit = PageCommit {
        read_at: Some(read_at),
        ..page("dest", &[("a", 2, Some(true))])
    };
    commit.records[0].before = before;
    s.commit_page("t", "f", &commit).unwrap();
    assert_eq!(version(s, "dest", "f", "a"), Some(2));
    assert_eq!(version(s, "dest", "g", "a"), None);
}

pub(crate) fn reset_is_scoped_to_the_flow_and_keeps_presence(s: &dyn StateStore) {
    let commit = PageCommit {
        cursor: Some("c".into()),
        ..page("dest", &[("a", 1, Some(true))])
    };
    s.commit_page("t", "f", &commit).unwrap();
    s.commit_page("t", "f2", &commit).unwrap();
    s.reset_flow("t", "f", Some("since:2026-01-01T00:00:00Z"))
        .unwrap();
    assert_eq!(version(s, "dest", "f", "a"), None);
    assert_eq!(
        s.cursor("t", "f").unwrap().as_deref(),
        Some("since:2026-01-01T00:00:00Z")
    );
    assert_eq!(version(s, "dest", "f2", "a"), Some(1));
    assert_eq!(s.cursor("t", "f2").unwrap().as_deref(), Some("c"));
    assert_eq!(s.delivery("t", "dest", "a").unwrap().present, Some(true));
    s.reset_flow("t", "f2", None).unwrap();
    assert_eq!(s.cursor("t", "f2").unwrap(), None);
}

fn space(t: &str) -> kv::KvSpace {
    kv::KvSpace {
        tenant: t.into(),
        connector: "c".into(),
    }
}

fn quota(max_bytes: u64) -> kv::KvQuota {
    kv::KvQuota {
        max_bytes,
        max_keys: 1000,
    }
}

pub(crate) fn kv_spaces_are_isolated_and_usage_is_tracked(s: &dyn StateStore) {
    let kv = s.kv();
    kv.set(&space("a"), "k", b"1234", &quota(1000)).unwrap();
    assert_eq!(kv.get(&space("b"), "k").unwrap(), None);
    assert_eq!(kv.get(&space("a"), "k").unwrap(), Some(b"1234".to_vec()));
    // "a" "\0" "c" "\0" "k" + 4 bytes of value + the overhead.
    assert_eq!(
        kv.usage(&space("a")).unwrap(),
        4 + 1 + 4 + kv::ENTRY_OVERHEAD
    );
    kv.set(&space("a"), "k", b"12", &quota(1000)).unwrap();
    assert_eq!(
        kv.usage(&space("a")).unwrap(),
        4 + 1 + 2 + kv::ENTRY_OVERHEAD
    );
    kv.delete(&space("a"), "k").unwrap();
    kv.delete(&space("a"), "never-there").unwrap();
    assert_eq!(kv.usage(&space("a")).unwrap(), 0);
}

pub(crate) fn kv_quota_refuses_and_keeps_the_old_value(s: &dyn StateStore) {
    let kv = s.kv();
    let q = quota(kv::ENTRY_OVERHEAD + 16);
    kv.set(&space("a"), "k", b"old", &q).unwrap();
    let err = kv.set(&space("a"), "k", &[0; 20], &q).unwrap_err();
    assert!(matches!(err, kv::KvError::QuotaExceeded(_)), "{err}");
    assert!(err.to_string().contains("max_kv_total_bytes"), "{err}");
    assert_eq!(kv.get(&space("a"), "k").unwrap(), Some(b"old".to_vec()));
}

/// Nine-byte keys with empty values once filled the disk while the quota
/// counted almost nothing: every entry costs its prefix and overhead, and
/// the number of keys is limited.
pub(crate) fn kv_tiny_entries_count_their_real_cost_and_keys_are_limited(s: &dyn StateStore) {
    let kv = s.kv();
    let q = kv::KvQuota {
        max_bytes: 1 << 30,
        max_keys: 100,
    };
    for i in 0..100 {
        kv.set(&space("a"), &format!("k{i:08}"), b"", &q).unwrap();
    }
    assert!(kv.usage(&space("a")).unwrap() >= 100 * (9 + kv::ENTRY_OVERHEAD));
    let err = kv.set(&space("a"), "one-more", b"", &q).unwrap_err();
    assert!(err.to_string().contains("max_kv_keys"), "{err}");
    // Replacing an existing key is not a new key; deleting frees one.
    kv.set(&space("a"), "k00000001", b"v", &q).unwrap();
    kv.delete(&space("a"), "k00000002").unwrap();
    kv.set(&space("a"), "one-more", b"", &q).unwrap();
}

pub(crate) fn kv_lists_keys_by_prefix_in_byte_order(s: &dyn StateStore) {
    let kv = s.kv();
    for k in ["user:2", "user:1", "User:0", "contact:1"] {
        kv.set(&space("a"), k, b"x", &quota(1000)).unwrap();
    }
    kv.set(&space("b"), "user:3", b"x", &quota(1000)).unwrap();
    assert_eq!(
        kv.list_keys(&space("a"), "user:", 10).unwrap(),
        vec!["user:1", "user:2"]
    );
    assert_eq!(
        kv.list_keys(&space("a"), "", 2).unwrap(),
        vec!["User:0", "contact:1"]
    );
}

fn inbox_entry(tenant: &str, id: &str, at: u64) -> InboxEntry {
    InboxEntry {
        seq: 0,
        tenant: tenant.into(),
        flow: "f".into(),
        webhook_id: id.into(),
        headers: vec![("webhook-id".into(), id.into())],
        body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        received_ms: at,
    }
}

/// A delivery is queued once per (tenant, flow, webhook ID), kept in order
/// of arrival until done, and its ID is remembered after it is processed,
/// until pruned.
pub(crate) fn the_inbox_keeps_each_delivery_once_in_order(s: &dyn StateStore) {
    let seqs = s
        .inbox_append(&[
            inbox_entry("t", "w1", 10),
            inbox_entry("t", "w2", 20),
            inbox_entry("t", "w1", 30),
            inbox_entry("u", "w1", 40),
        ])
        .unwrap();
    assert!(
        seqs[0].is_some() && seqs[1].is_some() && seqs[3].is_some(),
        "{seqs:?}"
    );
    assert_eq!(seqs[2], None, "a repeat in the same batch");
    assert!(seqs[0] < seqs[1] && seqs[1] < seqs[3], "{seqs:?}");
    s.inbox_sync().unwrap();
    let pending = s.inbox_pending().unwrap();
    let ids: Vec<(&str, &str)> = pending
        .iter()
        .map(|e| (e.tenant.as_str(), e.webhook_id.as_str()))
        .collect();
    assert_eq!(ids, [("t", "w1"), ("t", "w2"), ("u", "w1")]);
    assert_eq!(
        pending[0],
        InboxEntry {
            seq: pending[0].seq,
            ..inbox_entry("t", "w1", 10)
        }
    );
    s.inbox_done(&[pending[0].seq]).unwrap();
    assert_eq!(s.inbox_pending().unwrap().len(), 2);
    // Processed, and still known.
    assert_eq!(
        s.inbox_append(&[inbox_entry("t", "w1", 50)]).unwrap(),
        [None]
    );
    s.inbox_sync().unwrap();
    // Pruned: the IDs accepted before 25 ms are forgotten (u's, at 40,
    // is kept), pending or not.
    s.flush().unwrap();
    assert_eq!(s.prune_webhook_ids(25).unwrap(), 2);
    let again = s
        .inbox_append(&[
            inbox_entry("t", "w1", 60),
            inbox_entry("t", "w2", 60),
            inbox_entry("u", "w1", 60),
        ])
        .unwrap();
    assert!(again[0].is_some() && again[1].is_some(), "{again:?}");
    assert_eq!(again[2], None);
}

pub(crate) fn documents_list_by_prefix_in_id_order(s: &dyn StateStore) {
    for (kind, id) in [
        ("tenant", "b"),
        ("tenant", "a"),
        ("tenant", "ab"),
        ("token", "a"),
    ] {
        s.doc_put(kind, id, format!("{kind}/{id}").as_bytes())
            .unwrap();
    }
    s.doc_put("tenant", "a", b"again").unwrap();
    let listed = s.doc_list("tenant", "a").unwrap();
    assert_eq!(
        listed,
        [
            ("a".to_owned(), b"again".to_vec()),
            ("ab".to_owned(), b"tenant/ab".to_vec())
        ]
    );
    assert_eq!(s.doc_list("tenant", "").unwrap().len(), 3);
    assert_eq!(s.doc_get("token", "a").unwrap(), Some(b"token/a".to_vec()));
    assert_eq!(s.doc_get("token", "b").unwrap(), None);
    assert!(s.doc_delete("tenant", "b").unwrap());
    assert!(!s.doc_delete("tenant", "b").unwrap());
}

fn run_record(id: &str, tenant: &str, flow: &str) -> RunRecord {
    RunRecord {
        trigger: "manual".into(),
        connectors: vec!["c@1.0.0".into()],
        ..RunRecord::started(id, tenant, flow, 1)
    }
}

pub(crate) fn runs_list_newest_first_by_tenant_and_flow(s: &dyn StateStore) {
    for (id, t, f) in [
        ("run_01", "t", "f"),
        ("run_02", "u", "f"),
        ("run_03", "t", "g"),
        ("run_04", "t", "f"),
    ] {
        s.save_run(&run_record(id, t, f)).unwrap();
    }
    let mut done = run_record("run_01", "t", "f");
    done.outcome = RunOutcome::Succeeded;
    s.save_run_progress(&done).unwrap();
    s.flush().unwrap();
    let ids = |r: Vec<RunRecord>| r.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.runs(None, None, 3).unwrap()),
        ["run_04", "run_03", "run_02"]
    );
    assert_eq!(
        ids(s.runs(Some("t"), Some("f"), 10).unwrap()),
        ["run_04", "run_01"]
    );
    assert_eq!(ids(s.runs(None, Some("g"), 10).unwrap()), ["run_03"]);
    assert_eq!(
        ids(s.runs(Some("t"), None, 2).unwrap()),
        ["run_04", "run_03"]
    );
    assert_eq!(s.run("run_01").unwrap(), Some(done));
    assert_eq!(s.run("run_09").unwrap(), None);
}

pub(crate) fn old_runs_go_but_each_flows_newest_and_running_ones_stay(s: &dyn StateStore) {
    let finished = |id: &str, tenant: &str, flow: &str, at: u64| RunRecord {
        outcome: RunOutcome::Succeeded,
        ended_ms: Some(at + 10),
        ..RunRecord::started(id, tenant, flow, at)
    };
    for i in 1..=5u64 {
        s.save_run(&finished(&format!("run_0{i}"), "t", "f", i * 1000))
            .unwrap();
    }
    s.save_run(&RunRecord::started("run_06", "t", "f", 6000))
        .unwrap();
    s.save_run(&finished("run_07", "t", "g", 100)).unwrap();
    s.save_run(&finished("run_08", "u", "f", 9000)).unwrap();
    s.save_run(&finished("run_09", "u", "f", 9500)).unwrap();
    // Keep 2 per flow, nothing started before 5000 but each flow's newest.
    assert_eq!(s.prune_runs(2, 5000).unwrap(), 4);
    let ids = |r: Vec<RunRecord>| r.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.runs(Some("t"), Some("f"), 10).unwrap()),
        ["run_06", "run_05"]
    );
    assert_eq!(ids(s.runs(Some("t"), Some("g"), 10).unwrap()), ["run_07"]);
    assert_eq!(
        ids(s.runs(Some("u"), None, 10).unwrap()),
        ["run_09", "run_08"]
    );
    assert_eq!(s.run("run_02").unwrap(), None);
    assert_eq!(s.runs(None, None, 100).unwrap().len(), 5);
    assert_eq!(s.prune_runs(2, 5000).unwrap(), 0);
    // Only the count: the newest finished run of each flow.
    assert_eq!(s.prune_runs(1, 0).unwrap(), 1);
    assert_eq!(ids(s.runs(Some("u"), Some("f"), 10).unwrap()), ["run_09"]);
}

pub(crate) fn flow_marks_and_the_registry_round_trip(s: &dyn StateStore) {
    s.set_attention("t", "f", Some("api key rejected")).unwrap();
    assert_eq!(
        s.attention("t", "f").unwrap().as_deref(),
        Some("api key rejected")
    );
    assert_eq!(s.attention("t", "g").unwrap(), None);
    s.set_attention("t", "f", None).unwrap();
    assert_eq!(s.attention("t", "f").unwrap(), None);
    s.set_flow_fingerprint("t", "f", "fp1").unwrap();
    s.set_flow_fingerprint("t", "f", "fp2").unwrap();
    assert_eq!(
        s.flow_fingerprint("t", "f").unwrap().as_deref(),
        Some("fp2")
    );
    s.set_cursor("t", "f", Some("c1")).unwrap();
    s.set_cursor("t", "f", None).unwrap();
    assert_eq!(s.cursor("t", "f").unwrap(), None);
    for v in ["1.10.0", "1.2.0"] {
        s.register_connector(&ConnectorEntry {
            name: "acme".into(),
            version: v.parse().unwrap(),
            digest: format!("d{v}"),
            world: "source".into(),
            added_ms: 1,
        })
        .unwrap();
    }
    let versions: Vec<String> = s
        .connectors()
        .unwrap()
        .iter()
        .map(|c| c.version.to_string())
        .collect();
    assert_eq!(versions, ["1.2.0", "1.10.0"]);
}

/// One `#[test]` per behaviour of this module, each on the store `$make`
/// returns (an expression, evaluated once per test).
macro_rules! state_behaviour_tests {
    ($make:expr) => {
        $crate::state::behaviour::state_behaviour_tests!(@each $make;
            commit_moves_cursor_versions_and_dead_letters_together,
            records_that_get_through_settle_their_dead_letters,
            dead_letter_counts_follow_every_change,
            an_entry_read_before_another_commit_is_read_again,
            records_noted_as_sent_are_present_until_the_commit_says,
            a_page_read_before_a_reset_does_not_bring_back_what_it_removed,
            reset_is_scoped_to_the_flow_and_keeps_presence,
            kv_spaces_are_isolated_and_usage_is_tracked,
            kv_quota_refuses_and_keeps_the_old_value,
            kv_tiny_entries_count_their_real_cost_and_keys_are_limited,
            kv_lists_keys_by_prefix_in_byte_order,
            the_inbox_keeps_each_delivery_once_in_order,
            documents_list_by_prefix_in_id_order,
            runs_list_newest_first_by_tenant_and_flow,
            old_runs_go_but_each_flows_newest_and_running_ones_stay,
            flow_marks_and_the_registry_round_trip,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let store = $make;
                $crate::state::behaviour::$name(&store);
            }
        )*
    };
}
pub(crate) use state_behaviour_tests;
