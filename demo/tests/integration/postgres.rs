//! The integration with its state in PostgreSQL (`[state] backend =
//! "postgres"`): the same exactness as on sled, by poll and by webhook,
//! with tenants' secrets, the inbox, dead letters and runs in the database.

use crate::service::{appointment_arrives, create_appointment, event_arrives, serve_with_webhook};
use crate::support::*;
use std::time::{Duration, Instant};
use weft::state::RunOutcome;
use weft_demo::{DemoEnv, TenantSetup};

#[tokio::test(flavor = "multi_thread")]
async fn the_integration_on_postgres_is_exact_by_poll_and_by_webhook() {
    let pg = weft_test_pg::Postgres::start().unwrap();
    let url = pg.create_database("weft").unwrap();
    let env = DemoEnv::start_on_postgres(
        acme(),
        vec![TenantSetup::new("t1"), TenantSetup::new("t2")],
        &url,
    )
    .await
    .unwrap();
    for t in ["t1", "t2"] {
        sync_ok(&env, t).await;
        let check = matches_acme(&env, t, t).await;
        assert!(check.events > 0 && check.touchpoints > 0, "{check:?}");
    }
    // Nothing went to sled: the state is the database's.
    assert!(!env.dir.path().join("data/state").exists());
    let state = &env.host.state;
    let dead = state.dead_letters(Some("t1"), None).unwrap();
    assert_eq!(state.dead_letter_count("t1").unwrap(), dead.len());
    assert_eq!(state.runs(Some("t2"), None, 10).unwrap().len(), 3);

    // A second sync finds nothing new and writes nothing twice.
    for r in env.sync("t1").await.unwrap() {
        assert_eq!((r.outcome, r.emitted), (RunOutcome::Succeeded, 0), "{r:?}");
    }

    // By webhook: the sealed secret, the tenant written over the API and
    // the durable inbox are rows.
    let (svc, _) = serve_with_webhook(&env).await;
    let arrived = appointment_arrives(&env, "Booked on PostgreSQL").await;
    eprintln!("created in Acme → in Radicale, on PostgreSQL: {arrived:?}");
    assert!(state.doc_list("tenant", "t1").unwrap().len() == 1);
    svc.stop().await;
    matches_acme(&env, "t1", "at the end").await;
}

/// The database stops (as if it crashed) while `weft serve` runs on it: no
/// delivery is acknowledged that is not committed (Acme's attempts get
/// `503`s, and it retries), `/readyz` says `503`; when the database is
/// back, Acme's retries land and the calendar catches up, with no restart
/// of weft.
#[tokio::test(flavor = "multi_thread")]
async fn when_the_database_stops_nothing_is_acknowledged_and_weft_catches_up() {
    let pg = weft_test_pg::Postgres::start().unwrap();
    let url = pg.create_database("weft").unwrap();
    let env = DemoEnv::start_on_postgres(acme(), vec![TenantSetup::new("t1")], &url)
        .await
        .unwrap();
    sync_ok(&env, "t1").await;
    let (svc, _) = serve_with_webhook(&env).await;
    let before = env.acme.deliveries().len();

    pg.stop().unwrap();
    let (email, uid) = create_appointment(&env, "Booked while the database was down").await;
    let t = Instant::now();
    loop {
        let answered: Vec<u16> = env.acme.deliveries()[before..]
            .iter()
            .map(|d| d.status)
            .filter(|s| *s != 0)
            .collect();
        assert!(
            answered.iter().all(|s| *s >= 500),
            "a delivery was acknowledged while the database was down: {answered:?}"
        );
        if !answered.is_empty() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "Acme never tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = api(&svc.url, None, "GET", "/readyz", None).await.unwrap();
    assert_eq!(status, 503);

    pg.restart().unwrap();
    let late = "the appointment did not arrive after the database came back";
    event_arrives(&env, &email, &uid, Duration::from_secs(60), late).await;
    let (status, _) = api(&svc.url, None, "GET", "/readyz", None).await.unwrap();
    assert_eq!(status, 200);
    svc.stop().await;
    matches_acme(&env, "t1", "at the end").await;
}
