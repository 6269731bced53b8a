//! The `caldav` connector against a scripted CalDAV server, for what a real
//! one does only by accident: answer an error to a `PUT` it applied (a
//! gateway's timeout, or a crash of weft between the `PUT` and the commit,
//! which leaves the same trace). Wherever the event was written, a later
//! move or delete of the record must find it.

use crate::common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use weft::{ConnectorError, HttpGrants, Operation, OriginPattern, Record, TenantGrant};
use weft_test_artifacts as artifacts;

/// Events by path. A `PUT` to a path in `lies` is stored and answered `503`
/// with a `Retry-After` longer than any call (so the host does not retry).
#[derive(Clone, Default)]
struct Calendars {
    events: Arc<Mutex<BTreeMap<String, String>>>,
    lies: Arc<Mutex<Vec<String>>>,
}

impl Calendars {
    async fn serve(&self) -> TestServer {
        let cal = self.clone();
        TestServer::start(move |s, _| {
            let mut events = cal.events.lock().unwrap();
            match s.method.as_str() {
                "PUT" => {
                    events.insert(s.path.clone(), String::from_utf8_lossy(&s.body).into());
                    if cal.lies.lock().unwrap().contains(&s.path) {
                        Reply::new(503, "gateway timeout").header("retry-after", "3600")
                    } else {
                        Reply::new(201, "")
                    }
                }
                "DELETE" => match events.remove(&s.path) {
                    Some(_) => Reply::new(204, ""),
                    None => Reply::new(404, ""),
                },
                "MKCALENDAR" | "MKCOL" => Reply::new(201, ""),
                _ => Reply::new(405, ""),
            }
        })
        .await
    }

    fn paths(&self) -> Vec<String> {
        self.events.lock().unwrap().keys().cloned().collect()
    }
}

fn event(key: &str, email: Option<&str>, op: Operation) -> Record {
    Record {
        key: key.into(),
        kind: "event".into(),
        version: 1,
        op,
        body: json!({
            "user_email": email,
            "resource": key,
            "ics": format!("BEGIN:VCALENDAR\r\nUID:{key}\r\nEND:VCALENDAR\r\n"),
        })
        .to_string(),
    }
}

/// The events of `keys`, all for `email` (or for no one).
fn events(keys: &[&str], email: Option<&str>, op: Operation) -> Vec<Record> {
    keys.iter().map(|k| event(k, email, op)).collect()
}

/// Emits `records` from a fresh instance (as each run has one).
async fn emit(
    rt: &weft::Runtime,
    server: &TestServer,
    records: &[Record],
) -> Vec<Result<(), ConnectorError>> {
    let c = rt.load_file(artifacts::CALDAV.as_ref()).await.unwrap();
    let grant = TenantGrant {
        config: json!({ "collection_url": server.url("/cal/{email}/") }),
        http: HttpGrants {
            allow: vec![OriginPattern::parse(&server.origin()).unwrap()],
            ..Default::default()
        },
        ..TenantGrant::new("t")
    };
    let mut i = rt.instantiate(&c, &grant).await.unwrap();
    i.emit(records).await.unwrap()
}

/// Before: the place was noted after the `PUT` succeeded, so an event
/// written under an error answer (or before a `kill -9`) stayed in its old
/// owner's calendar when the appointment was reassigned, then cancelled
/// (the chaos test's seed 3681650313532824153). Both paths: a first write
/// (one by one) and the concurrent batch into a known collection.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_written_under_an_error_answer_is_found_when_it_moves_or_goes() {
    let cal = Calendars::default();
    let server = cal.serve().await;
    let rt = runtime();
    // The events of the test, by record key.
    const KEYS: [&str; 3] = ["first", "warm", "batched"];
    cal.lies.lock().unwrap().extend([
        "/cal/ann@x.test/first.ics".to_owned(),
        "/cal/ann@x.test/batched.ics".to_owned(),
    ]);
    // `first` is the collection's first write; `batched` goes with the
    // concurrent batch once `warm` has shown the collection exists.
    let out = emit(
        &rt,
        &server,
        &events(&KEYS, Some("ann@x.test"), Operation::Upsert),
    )
    .await;
    assert!(
        matches!(
            &out[..],
            [
                Err(ConnectorError::Transient { .. }),
                Ok(()),
                Err(ConnectorError::Transient { .. })
            ]
        ),
        "{out:?}"
    );
    assert_eq!(
        cal.paths(),
        [
            "/cal/ann@x.test/batched.ics",
            "/cal/ann@x.test/first.ics",
            "/cal/ann@x.test/warm.ics"
        ]
    );

    // Reassigned to Bo: each event lives in Bo's calendar only.
    cal.lies.lock().unwrap().clear();
    let out = emit(
        &rt,
        &server,
        &events(&KEYS, Some("bo@x.test"), Operation::Upsert),
    )
    .await;
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(
        cal.paths(),
        [
            "/cal/bo@x.test/batched.ics",
            "/cal/bo@x.test/first.ics",
            "/cal/bo@x.test/warm.ics"
        ]
    );

    // A PUT to Cy answered with an error, then the record is deleted
    // without an owner: no copy is left anywhere.
    cal.lies
        .lock()
        .unwrap()
        .push("/cal/cy@x.test/first.ics".into());
    let out = emit(
        &rt,
        &server,
        &[event("first", Some("cy@x.test"), Operation::Upsert)],
    )
    .await;
    assert!(out[0].is_err(), "{out:?}");
    let out = emit(&rt, &server, &events(&KEYS, None, Operation::Delete)).await;
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(cal.paths(), Vec::<String>::new());
}
