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

/// One `#[test]` per behaviour of this module, each on the store `$make`
/// returns (an expression, evaluated once per test).
macro_rules! state_behaviour_tests {
    ($make:expr) => {
        #[test]
        fn commit_moves_cursor_versions_and_dead_letters_together() {
            let store = $make;
            $crate::state::behaviour::commit_moves_cursor_versions_and_dead_letters_together(&store);
        }
        #[test]
        fn records_that_get_through_settle_their_dead_letters() {
            let store = $make;
            $crate::state::behaviour::records_that_get_through_settle_their_dead_letters(&store);
        }
        #[test]
        fn dead_letter_counts_follow_every_change() {
            let store = $make;
            $crate::state::behaviour::dead_letter_counts_follow_every_change(&store);
        }
        #[test]
        fn an_entry_read_before_another_commit_is_read_again() {
            let store = $make;
            $crate::state::behaviour::an_entry_read_before_another_commit_is_read_again(&store);
        }
        #[test]
        fn a_page_read_before_a_reset_does_not_bring_back_what_it_removed() {
            let store = $make;
            $crate::state::behaviour::a_page_read_before_a_reset_does_not_bring_back_what_it_removed(&store);
        }
        #[test]
        fn reset_is_scoped_to_the_flow_and_keeps_presence() {
            let store = $make;
            $crate::state::behaviour::reset_is_scoped_to_the_flow_and_keeps_presence(&store);
        }
    };
}
pub(crate) use state_behaviour_tests;
