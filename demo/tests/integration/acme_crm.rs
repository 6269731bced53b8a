//! The `acme-crm` source connector on its own, in the weft runtime against
//! the Acme sandbox: both auth schemes through the host, paging and the
//! restart after an expired cursor, `+` encoded in `updated_since`, contact
//! lookups in batches of at most 50, cut-short answers asked again, and
//! instants (not text) as versions.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use weft::caps::http::{Credential, CredentialGrant, HttpGrants, OriginPattern};
use weft::secrets::{SecretRef, SecretStore};
use weft::state::kv::SledKv;
use weft::{ConnectorInstance, HostConfig, Page, Runtime, TenantGrant};
use weft_sandbox::acme::data::Counts;
use weft_sandbox::acme::{AcmeConfig, AcmeSandbox, Faults};
use weft_test_artifacts as artifacts;

async fn sandbox(appointments: usize, faults: Faults) -> AcmeSandbox {
    let config = AcmeConfig {
        counts: Counts {
            users: 3,
            contacts: 120,
            appointments,
            activities: 30,
        },
        faults,
        ..AcmeConfig::default()
    };
    AcmeSandbox::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// [`sandbox`] with a rate limit of 500 requests a second.
async fn fast_sandbox(appointments: usize) -> AcmeSandbox {
    let faults = Faults {
        rate_burst: 500,
        rate_per_second: 500.0,
        ..Faults::default()
    };
    sandbox(appointments, faults).await
}

/// The paths of the listings of `kind` that Acme was asked for, in order.
fn listings(acme: &AcmeSandbox, kind: &str) -> Vec<String> {
    let prefix = format!("/api/v1/{kind}?");
    acme.requests()
        .into_iter()
        .filter(|r| r.path.starts_with(&prefix))
        .map(|r| r.path)
        .collect()
}

fn runtime() -> Runtime {
    runtime_with(SledKv::temporary().unwrap())
}

/// The runtime of [`runtime`] on the kv store `kv` (a test that looks into
/// the connector's kv space keeps a handle on it).
fn runtime_with(kv: Arc<SledKv>) -> Runtime {
    let config = HostConfig {
        private_hosts: vec!["127.0.0.1".into()],
        ..HostConfig::default()
    };
    let secrets = SecretStore::from_map(
        [
            ("cs".to_string(), "demo-secret".to_string()),
            ("key".to_string(), "acme-demo-key".to_string()),
        ]
        .into(),
    );
    Runtime::with_parts(
        config,
        kv,
        Arc::new(weft::caps::http::SystemResolver),
        secrets,
    )
    .unwrap()
}

/// Changes contact `cid`'s phone in the Acme sandbox.
async fn change_contact(acme: &AcmeSandbox, cid: &str, phone: &str) {
    patch_contact(acme, cid, json!({ "phone": phone })).await;
}

/// Applies `patch` to contact `cid` in the Acme sandbox (an `updated_at` in
/// it is kept; without one the sandbox stamps the change with its clock).
async fn patch_contact(acme: &AcmeSandbox, cid: &str, patch: Value) {
    weft_demo::http(
        "PATCH",
        &format!("{}/_sandbox/contacts/{cid}", acme.root_url()),
        &[],
        Some(("application/json", patch.to_string())),
    )
    .await
    .unwrap();
}

/// The appointment IDs of enriched appointment `bodies` whose contact is one
/// of `contacts`.
fn appointments_of(bodies: &[Value], contacts: &BTreeSet<String>) -> BTreeSet<String> {
    bodies
        .iter()
        .filter(|b| {
            b["contact"]["id"]
                .as_str()
                .is_some_and(|c| contacts.contains(c))
        })
        .map(|b| b["appointment"]["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn instance(
    rt: &Runtime,
    acme: &AcmeSandbox,
    page_size: u32,
    oauth: bool,
) -> ConnectorInstance {
    let c = rt.load_file(artifacts::ACME_CRM.as_ref()).await.unwrap();
    rt.instantiate(&c, &grant(acme, page_size, oauth))
        .await
        .unwrap()
}

/// The tenant grant of `acme-crm` against `acme`: config, origin, credential.
fn grant(acme: &AcmeSandbox, page_size: u32, oauth: bool) -> TenantGrant {
    let origin = OriginPattern::parse(&format!("http://{}", acme.addr())).unwrap();
    let auth = if oauth {
        Credential::OAuth2ClientCredentials {
            token_url: format!("{}/oauth/token", acme.base_url()),
            client_id: "weft-demo".into(),
            client_secret: SecretRef::Secret("cs".into()),
            scope: None,
        }
    } else {
        Credential::ApiKey {
            header: "X-Acme-Api-Key".into(),
            value: SecretRef::Secret("key".into()),
        }
    };
    TenantGrant {
        config: json!({ "base_url": acme.base_url(), "page_size": page_size }),
        http: HttpGrants {
            allow: vec![origin.clone()],
            credentials: vec![CredentialGrant { origin, auth }],
            rate: None,
        },
        ..TenantGrant::new("t")
    }
}

/// The pages of `stream` from `cursor` to the last one.
async fn fetch_rest(
    src: &mut ConnectorInstance,
    stream: &str,
    mut cursor: Option<String>,
) -> Vec<Page> {
    let mut pages = Vec::new();
    loop {
        let p = src.fetch(stream, cursor.as_deref()).await.unwrap();
        cursor = p.next_cursor.clone();
        let more = p.has_more;
        pages.push(p);
        if !more {
            return pages;
        }
    }
}

fn bodies(p: &Page) -> Vec<Value> {
    p.records
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_restart_after_an_expired_cursor_and_encode_plus() {
    let acme = sandbox(60, Faults::default()).await;
    let rt = runtime();
    let mut src = instance(&rt, &acme, 25, true).await;
    let first = src.fetch("appointments", None).await.unwrap();
    assert_eq!(first.records.len(), 25);
    assert!(first.has_more);
    let cursor: Value = serde_json::from_str(first.next_cursor.as_deref().unwrap()).unwrap();
    assert!(
        cursor["acme"].is_string() && cursor["since"].is_string(),
        "{cursor}"
    );

    weft_demo::http(
        "POST",
        &format!("{}/_sandbox/cursors/expire", acme.root_url()),
        &[],
        None,
    )
    .await
    .unwrap();
    let second = src
        .fetch("appointments", first.next_cursor.as_deref())
        .await
        .unwrap();
    assert!(!second.records.is_empty());
    let log = acme.requests();
    let expired = log
        .iter()
        .position(|r| r.status == 400)
        .expect("the expired cursor was refused");
    let restart = &log[expired + 1..]
        .iter()
        .find(|r| r.path.starts_with("/api/v1/appointments?"))
        .unwrap()
        .path;
    assert!(restart.contains("updated_since="), "{restart}");
    let since = cursor["since"].as_str().unwrap();
    if since.contains('+') {
        assert!(restart.contains("%2B"), "`+` is encoded: {restart}");
    }
    // The restart reads from the newest `updated_at` of page one, inclusive.
    let updated = |b: &Value| {
        chrono::DateTime::parse_from_rfc3339(b["appointment"]["updated_at"].as_str().unwrap())
            .unwrap()
    };
    let newest_first = bodies(&first).iter().map(updated).max().unwrap();
    assert!(bodies(&second).iter().all(|b| updated(b) >= newest_first));
    assert!(
        bodies(&second).iter().any(|b| updated(b) == newest_first),
        "inclusive: the last record comes again"
    );
    assert!(
        log.iter()
            .all(|r| r.auth == "bearer" || r.path.contains("oauth")),
        "OAuth through the host"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn records_are_enriched_with_batched_contact_lookups_and_versioned_by_instant() {
    let acme = sandbox(
        150,
        Faults {
            rate_burst: 200,
            ..Faults::default()
        },
    )
    .await;
    let rt = runtime();
    let mut src = instance(&rt, &acme, 150, false).await;
    let page = src.fetch("appointments", None).await.unwrap();
    assert_eq!(page.records.len(), 150);
    for lookup in acme.requests().iter().filter(|r| r.path.contains("ids=")) {
        let ids = lookup
            .path
            .split("ids=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        assert!(
            ids.split(',').count() <= 50,
            "at most 50 IDs a call: {}",
            lookup.path
        );
    }
    assert!(acme.requests().iter().all(|r| r.auth == "api_key"));
    for (r, b) in page.records.iter().zip(bodies(&page)) {
        let apt = &b["appointment"];
        let updated =
            chrono::DateTime::parse_from_rfc3339(apt["updated_at"].as_str().unwrap()).unwrap();
        let contact_updated = b["contact"]["updated_at"].as_str().map(|c| {
            chrono::DateTime::parse_from_rfc3339(c)
                .unwrap()
                .timestamp_millis()
        });
        // The newest instant in the high bits (the oldest breaks ties below).
        assert_eq!(
            r.version >> 21,
            updated
                .timestamp_millis()
                .max(contact_updated.unwrap_or(i64::MIN))
        );
        assert_eq!(r.key, apt["id"].as_str().unwrap());
        assert_eq!(b["owner"]["id"], apt["owner_id"]);
        assert!(b["owner"]["email"].is_string(), "owner email from /users");
        assert_eq!(
            r.op == weft::Operation::Delete,
            !apt["deleted_at"].is_null()
        );
    }
    assert!(
        bodies(&page).iter().any(|b| b["contact"].is_null()),
        "missing contacts come through as null"
    );
    // Users are cached in kv: a second page does not ask /users again.
    let before = acme
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/users")
        .count();
    src.fetch("appointments", page.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(
        acme.requests()
            .iter()
            .filter(|r| r.path == "/api/v1/users")
            .count(),
        before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_short_answers_are_asked_again_and_named_when_they_persist() {
    let acme = sandbox(
        20,
        Faults {
            malformed_json: 1.0,
            ..Faults::default()
        },
    )
    .await;
    let rt = runtime();
    let mut src = instance(&rt, &acme, 50, false).await;
    let e = src.fetch("appointments", None).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("transient")
            && msg.contains("malformed JSON")
            && msg.contains("GET /appointments"),
        "{msg}"
    );
    assert_eq!(acme.requests().len(), 3, "asked three times");
}

/// The tenant's very first listing of activities asks for emails and calls
/// only (nothing was delivered before it); every later one lists all types,
/// so that an activity whose type changes away from email or call reaches
/// the mapper and leaves the dashboard.
#[tokio::test(flavor = "multi_thread")]
async fn activities_first_listing_is_touchpoints_then_every_type() {
    let acme = sandbox(5, Faults::default()).await;
    let rt = runtime();
    let mut src = instance(&rt, &acme, 200, false).await;
    let first = src.fetch("activities", None).await.unwrap();
    for b in bodies(&first) {
        assert!(matches!(
            b["activity"]["type"].as_str(),
            Some("email") | Some("call")
        ));
    }
    let lists = listings(&acme, "activities");
    assert!(
        lists.iter().all(|p| p.contains("types=email%2Ccall")),
        "{lists:?}"
    );
    // The next listing from the beginning (a backfill) lists every type;
    // the others come unenriched.
    let mut src = instance(&rt, &acme, 200, false).await;
    acme.clear_requests();
    let again = src.fetch("activities", None).await.unwrap();
    let types: std::collections::BTreeSet<String> = bodies(&again)
        .iter()
        .map(|b| b["activity"]["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        types.contains("meeting") || types.contains("note"),
        "{types:?}"
    );
    for b in bodies(&again) {
        if !matches!(b["activity"]["type"].as_str(), Some("email") | Some("call")) {
            assert!(b["contact"].is_null(), "not looked up: {b}");
        }
    }
    assert!(acme.requests().iter().all(|r| !r.path.contains("types=")));
}

/// A run asks `/users` once, even when owners are missing from it, and a
/// full sync lists the contacts (200 a page) instead of looking them up by
/// ID page after page.
#[tokio::test(flavor = "multi_thread")]
async fn users_once_per_run_and_contacts_listed_once_in_a_full_sync() {
    let acme = fast_sandbox(600).await;
    // Owners Acme does not list, on several pages.
    for i in 0..5 {
        weft_demo::http(
            "POST",
            &format!("{}/_sandbox/appointments", acme.root_url()),
            &[],
            Some((
                "application/json",
                json!({ "owner_id": format!("usr_gone{i}"), "contact_id": "con_1001", "starts_at": "2026-12-01T10:00:00Z" }).to_string(),
            )),
        )
        .await
        .unwrap();
    }
    let rt = runtime();
    let mut src = instance(&rt, &acme, 50, false).await;
    let pages = fetch_rest(&mut src, "appointments", None).await.len();
    assert!(pages > 10);
    let log = acme.requests();
    let count = |f: &dyn Fn(&str) -> bool| log.iter().filter(|r| f(&r.path)).count();
    assert_eq!(count(&|p| p == "/api/v1/users"), 1, "one /users per run");
    // After the full listing no contact is looked up by ID (the data has
    // appointments whose contact never existed: those are not asked about).
    let looked_up: Vec<String> = log
        .iter()
        .filter_map(|r| r.path.split("ids=").nth(1))
        .flat_map(|ids| ids.split('&').next().unwrap_or("").split(','))
        .map(str::to_owned)
        .collect();
    let distinct: std::collections::BTreeSet<&String> = looked_up.iter().collect();
    assert_eq!(
        distinct.len(),
        looked_up.len(),
        "each ID once: {looked_up:?}"
    );
    assert!(
        looked_up.iter().all(|id| !id.starts_with("con_1")),
        "listed contacts are not looked up again: {looked_up:?}"
    );
    // 120 contacts: one listing page of 200.
    assert_eq!(
        count(&|p| p.starts_with("/api/v1/contacts?") && !p.contains("ids=")),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn limit_is_sent_on_every_page() {
    let acme = sandbox(60, Faults::default()).await;
    let rt = runtime();
    let mut src = instance(&rt, &acme, 25, false).await;
    let pages = fetch_rest(&mut src, "appointments", None).await.len();
    assert_eq!(pages, 3, "60 appointments, 25 a page");
    let lists = listings(&acme, "appointments");
    assert_eq!(lists.len(), 3);
    assert!(lists.iter().all(|p| p.contains("limit=25")), "{lists:?}");
}

/// The contacts stream re-reads the appointments of each changed contact; a
/// call does at most `reads_per_call` of them so that it fits in its
/// deadline at the tenant's rate, and the next call goes on from there.
///
/// The twelve contacts change at one instant, as a bulk edit does (and as
/// quick edits do at Acme's millisecond resolution: this test failed 3 runs
/// in 5 when it let the sandbox stamp each change): a call that stopped in
/// the middle of them listed again from that instant and, finding no later
/// one to resume from, re-read every appointment of the rest in one call.
#[tokio::test(flavor = "multi_thread")]
async fn contacts_stream_rereads_at_most_reads_per_call() {
    let acme = fast_sandbox(150).await;
    let rt = runtime();
    let c = rt.load_file(artifacts::ACME_CRM.as_ref()).await.unwrap();
    let grant = TenantGrant {
        config: json!({ "base_url": acme.base_url(), "page_size": 200, "reads_per_call": 5 }),
        ..grant(&acme, 200, false)
    };
    let mut src = rt.instantiate(&c, &grant).await.unwrap();
    // The appointments stream fills the contact -> appointments index.
    let pages = fetch_rest(&mut src, "appointments", None).await;
    let apts: Vec<Value> = pages.iter().flat_map(bodies).collect();
    // Twelve customers with appointments change, at one instant.
    let at = chrono::Utc::now()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        .to_string();
    let mut changed = BTreeSet::new();
    for b in &apts {
        if changed.len() == 12 {
            break;
        }
        if let Some(cid) = b["contact"]["id"].as_str()
            && changed.insert(cid.to_owned())
        {
            let patch = json!({ "phone": "+1 555 0123", "updated_at": at });
            patch_contact(&acme, cid, patch).await;
        }
    }
    let expected = appointments_of(&apts, &changed);
    let most_per_contact = changed
        .iter()
        .map(|c| {
            apts.iter()
                .filter(|b| b["contact"]["id"].as_str() == Some(c))
                .count()
        })
        .max()
        .unwrap();
    let mut cursor = None;
    let mut got = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let before = acme.requests().len();
        let p = src.fetch("contacts", cursor.as_deref()).await.unwrap();
        let reads = acme.requests()[before..]
            .iter()
            .filter(|r| r.path.starts_with("/api/v1/appointments/"))
            .count();
        assert!(
            reads <= 5.max(most_per_contact),
            "{reads} re-reads in one call (WEFT_ACME_SEED={})",
            AcmeConfig::default().seed
        );
        for b in bodies(&p) {
            got.insert(b["appointment"]["id"].as_str().unwrap().to_owned());
        }
        cursor = p.next_cursor;
        if !p.has_more {
            break;
        }
    }
    assert!(
        expected.is_subset(&got),
        "every appointment of a changed customer: missing {:?} (WEFT_ACME_SEED={})",
        expected.difference(&got).collect::<Vec<_>>(),
        AcmeConfig::default().seed
    );
}

/// The contact → appointments index of a listing's pages goes through a
/// journal (one kv key per page) that is folded into the per-contact keys
/// every 256 pages and at the end of the listing: a changed contact finds
/// its appointments from the journal before the fold (here: a run stopped
/// after two pages), from the contacts' keys after it, and the fold leaves
/// no journal behind.
#[tokio::test(flavor = "multi_thread")]
async fn journaled_index_pages_are_found_before_and_after_their_fold() {
    use weft::state::kv::{KvSpace, KvStore};
    let acme = fast_sandbox(500).await;
    let kv = SledKv::temporary().unwrap();
    let rt = runtime_with(kv.clone());
    let space = KvSpace {
        tenant: "t".into(),
        connector: "acme-crm".into(),
    };
    let journal = || {
        kv.list_keys(&space, "contact-journal:", 1000)
            .unwrap()
            .len()
    };
    let c = rt.load_file(artifacts::ACME_CRM.as_ref()).await.unwrap();
    let grant = grant(&acme, 100, false);
    // Changes each named contact, then reads the contacts stream with a
    // fresh instance (another run): the appointment IDs it re-emits.
    let change_and_reread = async |contacts: &BTreeSet<String>| {
        for cid in contacts {
            change_contact(&acme, cid, "+1 555 0199").await;
        }
        let mut src = rt.instantiate(&c, &grant).await.unwrap();
        let pages = fetch_rest(&mut src, "contacts", None).await;
        pages
            .iter()
            .flat_map(bodies)
            .map(|b| b["appointment"]["id"].as_str().unwrap().to_owned())
            .collect::<BTreeSet<String>>()
    };
    // Three contacts of `pages`, past the first `skip` (by ID).
    let contacts_of = |pages: &[Value], skip: usize| -> BTreeSet<String> {
        let ids: BTreeSet<&str> = pages
            .iter()
            .filter_map(|b| b["contact"]["id"].as_str())
            .collect();
        ids.into_iter()
            .skip(skip)
            .take(3)
            .map(str::to_owned)
            .collect()
    };

    // Two pages of five, then the run stops: two journal keys, unfolded.
    let mut src = rt.instantiate(&c, &grant).await.unwrap();
    let mut first = Vec::new();
    let mut cursor = None;
    for _ in 0..2 {
        let p = src.fetch("appointments", cursor.as_deref()).await.unwrap();
        assert!(p.has_more);
        first.extend(bodies(&p));
        cursor = p.next_cursor;
    }
    assert_eq!(journal(), 2, "one journal key per page");
    let changed = contacts_of(&first, 0);
    let expected = appointments_of(&first, &changed);
    assert!(!expected.is_empty());
    let got = change_and_reread(&changed).await;
    assert!(
        expected.is_subset(&got),
        "from the journal: missing {:?}",
        expected.difference(&got).collect::<Vec<_>>()
    );

    // The next run lists to the end: the fold takes its pages and the
    // stopped run's, and deletes the journal.
    let mut src = rt.instantiate(&c, &grant).await.unwrap();
    let mut all = first;
    let rest = fetch_rest(&mut src, "appointments", cursor).await;
    all.extend(rest.iter().flat_map(bodies));
    assert_eq!(journal(), 0, "folded and deleted at the end of the listing");
    let changed = contacts_of(&all, 5);
    let expected = appointments_of(&all, &changed);
    let got = change_and_reread(&changed).await;
    assert!(
        expected.is_subset(&got),
        "from the folded keys: missing {:?}",
        expected.difference(&got).collect::<Vec<_>>()
    );
}
