//! Outbound HTTP through the sandbox, against local recording servers:
//! denials (origin not granted, not declared, redirect to a denied host,
//! names resolving to loopback or link-local addresses, spent quota,
//! oversized answers), the host's own retries, and credential injection
//! including an OAuth refresh after a `401`.

use crate::common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use weft::caps::http::{Credential, CredentialGrant, Rate};
use weft::events::EventKind;
use weft::secrets::{SecretRef, SecretStore};
use weft::state::kv::{KvError, KvQuota, KvSpace, KvStore};
use weft::{HttpGrants, Limits, OriginPattern, Runtime, TenantGrant};
use weft_test_artifacts as artifacts;

fn pattern(s: &str) -> OriginPattern {
    OriginPattern::parse(s).unwrap()
}

/// Runs the test source's `stream` with `url` as config and the given
/// grants; returns the result record's body.
async fn call(rt: &Runtime, stream: &str, url: &str, http: HttpGrants) -> Value {
    let c = rt.load_file(artifacts::TEST_SOURCE.as_ref()).await.unwrap();
    let grant = TenantGrant {
        config: json!({ "url": url }),
        http,
        ..TenantGrant::new("t")
    };
    let mut i = rt.instantiate(&c, &grant).await.unwrap();
    let page = i.fetch(stream, None).await.unwrap();
    serde_json::from_str(&page.records[0].body).unwrap()
}

/// [`call`] of `stream` to `path` on `server`, whose origin is granted.
async fn call_granted(rt: &Runtime, stream: &str, server: &TestServer, path: &str) -> Value {
    call(rt, stream, &server.url(path), allow(&[&server.origin()])).await
}

/// A runtime with `limits` whose tenants may make `per_second` requests
/// (`burst` at once).
fn runtime_with_quota(limits: Limits, per_second: f64, burst: u32) -> Runtime {
    let rate = Rate { per_second, burst };
    runtime_with(limits, SecretStore::default(), Some(rate))
}

fn allow(origins: &[&str]) -> HttpGrants {
    HttpGrants {
        allow: origins.iter().map(|o| pattern(o)).collect(),
        ..Default::default()
    }
}

fn error_of(v: &Value) -> String {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error in {v}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn granted_request_goes_through() {
    let server = TestServer::start(|s, _| Reply::ok(format!("hello {}", s.path))).await;
    let rt = runtime();
    let v = call_granted(&rt, "http", &server, "/x?a=1").await;
    assert_eq!(v["status"], 200);
    assert_eq!(v["body"], "hello /x?a=1");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-test").as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_not_granted_is_denied_without_a_request() {
    let granted = TestServer::start(|_, _| Reply::ok("a")).await;
    let other = TestServer::start(|_, _| Reply::ok("b")).await;
    let rt = runtime();
    let v = call(&rt, "http", &other.url("/"), allow(&[&granted.origin()])).await;
    assert!(error_of(&v).contains("denied by the host"), "{v}");
    assert!(other.seen().is_empty());
    let events = rt.events().for_tenant("t");
    assert!(
        events.iter().any(|e| matches!(&e.kind, EventKind::HttpDenied { reason, .. } if reason.contains("tenant does not grant"))),
        "{events:?}"
    );
}

/// The host refuses a request before reading its body and closes it: a
/// guest writing a long body then fails on the write, and the SDK must
/// report the refusal (config), not "writing body: closed" (transient).
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_request_with_a_long_body_reports_the_refusal() {
    let granted = TestServer::start(|_, _| Reply::ok("a")).await;
    let other = TestServer::start(|_, _| Reply::ok("b")).await;
    let rt = runtime();
    let c = rt.load_file(artifacts::TEST_SOURCE.as_ref()).await.unwrap();
    let grant = TenantGrant {
        config: json!({ "url": other.url("/"), "post_bytes": 1_000_000 }),
        http: allow(&[&granted.origin()]),
        ..TenantGrant::new("t")
    };
    let mut i = rt.instantiate(&c, &grant).await.unwrap();
    let page = i.fetch("http-post", None).await.unwrap();
    let v: Value = serde_json::from_str(&page.records[0].body).unwrap();
    assert!(error_of(&v).contains("denied by the host"), "{v}");
    assert!(other.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_the_connector_did_not_declare_is_denied_even_if_granted() {
    let rt = runtime();
    // test-source declares 127.0.0.1, localhost, evil.test and metadata.test only.
    let v = call(
        &rt,
        "http",
        "http://127.0.0.2:9/",
        allow(&["http://127.0.0.2:9"]),
    )
    .await;
    assert!(error_of(&v).contains("denied by the host"), "{v}");
    assert!(rt.events().all().iter().any(
        |e| matches!(&e.kind, EventKind::HttpDenied { reason, .. } if reason.contains("does not declare"))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_to_a_denied_host_is_checked_again_and_denied() {
    let target = TestServer::start(|_, _| Reply::ok("secret stuff")).await;
    let target_url = target.url("/internal");
    let redirector =
        TestServer::start(move |_, _| Reply::new(302, "").header("location", &target_url)).await;
    let rt = runtime();
    let v = call_granted(&rt, "http", &redirector, "/start").await;
    assert!(error_of(&v).contains("denied by the host"), "{v}");
    assert_eq!(v["redirects"], json!([target.url("/internal")]));
    assert!(
        target.seen().is_empty(),
        "the denied host must not be contacted"
    );
    assert_eq!(
        redirector.seen().len(),
        1,
        "the host itself does not follow redirects"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn names_resolving_to_loopback_or_link_local_are_denied() {
    let server = TestServer::start(|_, _| Reply::ok("should not be reached")).await;
    let port = server.addr.port();
    let rt = runtime();
    // evil.test resolves to 127.0.0.1; the operator allowed "127.0.0.1", not "evil.test".
    let v = call(
        &rt,
        "http",
        &format!("http://evil.test:{port}/"),
        allow(&["http://evil.test:*"]),
    )
    .await;
    assert!(
        error_of(&v).contains("non-public address") && error_of(&v).contains("`private_hosts`"),
        "{v}"
    );
    assert!(server.seen().is_empty());
    // metadata.test resolves to the cloud metadata address.
    let v = call(
        &rt,
        "http",
        "http://metadata.test:80/latest",
        allow(&["http://metadata.test:*"]),
    )
    .await;
    assert!(
        error_of(&v).contains("non-public address") && error_of(&v).contains("`private_hosts`"),
        "{v}"
    );
    let addrs: Vec<String> = rt
        .events()
        .all()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::AddressDenied { address, .. } => Some(address),
            _ => None,
        })
        .collect();
    assert_eq!(addrs, vec!["127.0.0.1", "169.254.169.254"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn spent_quota_fails_with_a_clear_error_within_the_deadline() {
    let server = TestServer::start(|_, _| Reply::ok("ok")).await;
    let limits = Limits {
        call_timeout_ms: 2_000,
        ..test_limits()
    };
    let rt = runtime_with_quota(limits, 0.01, 2);
    for _ in 0..2 {
        let v = call_granted(&rt, "http", &server, "/").await;
        assert_eq!(v["status"], 200, "{v}");
    }
    let started = Instant::now();
    let v = call_granted(&rt, "http", &server, "/").await;
    assert!(error_of(&v).contains("request quota"), "{v}");
    assert!(
        started.elapsed().as_millis() < 2_000,
        "it fails at once instead of sleeping past the deadline"
    );
    assert_eq!(server.seen().len(), 2);
    assert!(has_event(&rt, |k| matches!(
        k,
        EventKind::QuotaExhausted { .. }
    )));
}

#[tokio::test(flavor = "multi_thread")]
async fn quota_waits_when_the_deadline_allows() {
    let server = TestServer::start(|_, _| Reply::ok("ok")).await;
    let rt = runtime_with_quota(test_limits(), 5.0, 1);
    for _ in 0..3 {
        let v = call_granted(&rt, "http", &server, "/").await;
        assert_eq!(v["status"], 200, "{v}");
    }
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_response_is_refused() {
    let server = TestServer::start(|_, _| Reply::ok(vec![b'x'; 64 * 1024])).await;
    let rt = runtime_with(
        Limits {
            max_http_response_bytes: 16 * 1024,
            ..test_limits()
        },
        SecretStore::default(),
        None,
    );
    let v = call_granted(&rt, "http", &server, "/").await;
    assert!(error_of(&v).contains("HttpResponseBodySize"), "{v}");
    assert!(has_event(&rt, |k| matches!(
        k,
        EventKind::BodyTooLarge { limit: 16384, .. }
    )));
}

#[tokio::test(flavor = "multi_thread")]
async fn host_waits_out_429_and_503_with_retry_after_for_idempotent_requests() {
    let server = TestServer::start(|_, n| match n {
        0 => Reply::new(429, "slow down").header("retry-after", "1"),
        1 => Reply::new(503, "maintenance").header("retry-after", "0"),
        _ => Reply::ok("finally"),
    })
    .await;
    let rt = runtime();
    let started = Instant::now();
    let v = call_granted(&rt, "http", &server, "/").await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["body"], "finally");
    assert_eq!(server.seen().len(), 3);
    assert!(
        started.elapsed().as_millis() >= 1_000,
        "Retry-After: 1 was honoured"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn host_retries_5xx_with_backoff_but_not_for_post() {
    let get_server = TestServer::start(|_, n| {
        if n < 2 {
            Reply::new(500, "boom")
        } else {
            Reply::ok("ok")
        }
    })
    .await;
    let rt = runtime();
    let v = call_granted(&rt, "http", &get_server, "/").await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(get_server.seen().len(), 3);

    let post_server = TestServer::start(|_, _| Reply::new(500, "boom")).await;
    let v = call_granted(&rt, "http-post", &post_server, "/").await;
    assert_eq!(v["status"], 500, "{v}");
    assert_eq!(
        post_server.seen().len(),
        1,
        "a POST is never repeated by the host"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&post_server.seen()[0].body).unwrap(),
        json!({"hello": "world"})
    );
}

/// An origin that is down costs one attempt per request once a request has
/// run out of the host's retries: a batch against a dead destination fails
/// in one pass, not after six backoffs per record. An answer that is not a
/// server error ends the outage.
#[tokio::test(flavor = "multi_thread")]
async fn an_origin_that_ran_out_of_retries_gets_single_attempts_until_it_answers() {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let up2 = up.clone();
    let server = TestServer::start(move |_, _| {
        if up2.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::ok("back")
        } else {
            Reply::new(503, "down")
        }
    })
    .await;
    // Room for all six attempts and their backoff within one call.
    let rt = runtime_with(
        Limits {
            call_timeout_ms: 30_000,
            ..test_limits()
        },
        SecretStore::default(),
        None,
    );
    let grants = || allow(&[&server.origin()]);
    let v = call(&rt, "http", &server.url("/"), grants()).await;
    assert_eq!(v["status"], 503, "{v}");
    let first = server.seen().len();
    assert_eq!(first, 6, "the first request gets the host's retries");
    for _ in 0..3 {
        let v = call(&rt, "http", &server.url("/"), grants()).await;
        assert_eq!(v["status"], 503, "{v}");
    }
    assert_eq!(
        server.seen().len(),
        first + 3,
        "one attempt per request while the origin is down"
    );
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let v = call(&rt, "http", &server.url("/"), grants()).await;
    assert_eq!(v["status"], 200, "{v}");
    // Down again: a fresh outage gets the retries again.
    up.store(false, std::sync::atomic::Ordering::SeqCst);
    let before = server.seen().len();
    let v = call(&rt, "http", &server.url("/"), grants()).await;
    assert_eq!(v["status"], 503, "{v}");
    assert_eq!(server.seen().len(), before + 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_beyond_the_deadline_is_handed_to_the_guest() {
    let server =
        TestServer::start(|_, _| Reply::new(429, "later").header("retry-after", "60")).await;
    let rt = runtime();
    let started = Instant::now();
    let v = call_granted(&rt, "http", &server, "/").await;
    assert_eq!(v["status"], 429);
    assert_eq!(v["retry_after_ms"], 60_000);
    assert!(started.elapsed().as_secs() < 5);
    assert_eq!(server.seen().len(), 1);
}

fn with_credential(server: &TestServer, auth: Credential) -> HttpGrants {
    HttpGrants {
        allow: vec![pattern(&server.origin())],
        credentials: vec![CredentialGrant {
            origin: pattern(&server.origin()),
            auth,
        }],
        rate: None,
    }
}

/// The client secret of the OAuth tests, `cs` in their secret store.
const CLIENT_SECRET: &str = "client-secret-value";

/// OAuth client credentials for `server` (client `weft-client`, secret
/// `cs`, token endpoint `/oauth/token`) with `scope`.
fn client_credentials(server: &TestServer, scope: Option<&str>) -> HttpGrants {
    with_credential(
        server,
        Credential::OAuth2ClientCredentials {
            token_url: server.url("/oauth/token"),
            client_id: "weft-client".into(),
            client_secret: SecretRef::Secret("cs".into()),
            scope: scope.map(str::to_owned),
        },
    )
}

/// A token endpoint's answer with the token `t{n}`, good for an hour.
fn token_reply(n: usize) -> Reply {
    Reply::ok(format!(
        r#"{{"access_token":"t{n}","token_type":"Bearer","expires_in":3600}}"#
    ))
    .header("content-type", "application/json")
}

fn secrets(pairs: &[(&str, &str)]) -> SecretStore {
    SecretStore::from_map(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_basic_and_api_key_are_added_by_the_host() {
    let server = TestServer::start(|_, _| Reply::ok("ok")).await;
    let rt = runtime_with(
        test_limits(),
        secrets(&[("tok", "s3cret"), ("pw", "hunter2"), ("key", "k-123")]),
        None,
    );
    let cases = [
        (
            Credential::Bearer {
                token: SecretRef::Secret("tok".into()),
            },
            "authorization",
            "Bearer s3cret",
        ),
        (
            Credential::Basic {
                username: "dana".into(),
                password: SecretRef::Secret("pw".into()),
            },
            "authorization",
            "Basic ZGFuYTpodW50ZXIy",
        ),
        (
            Credential::ApiKey {
                header: "X-Acme-Api-Key".into(),
                value: SecretRef::Secret("key".into()),
            },
            "x-acme-api-key",
            "k-123",
        ),
    ];
    for (i, (cred, header, want)) in cases.into_iter().enumerate() {
        let v = call(
            &rt,
            "http",
            &server.url("/"),
            with_credential(&server, cred),
        )
        .await;
        assert_eq!(v["status"], 200, "{v}");
        assert_eq!(server.seen()[i].header(header).as_deref(), Some(want));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_token_from_the_environment() {
    // cargo sets CARGO_PKG_NAME in the environment of every test process.
    let server = TestServer::start(|_, _| Reply::ok("ok")).await;
    let rt = runtime();
    let from_env = |var: &str| {
        with_credential(
            &server,
            Credential::Bearer {
                token: SecretRef::Env(var.into()),
            },
        )
    };
    let v = call(&rt, "http", &server.url("/"), from_env("CARGO_PKG_NAME")).await;
    assert_eq!(v["status"], 200);
    assert_eq!(
        server.seen()[0].header("authorization").as_deref(),
        Some("Bearer weft-host")
    );

    let c = rt.load_file(artifacts::TEST_SOURCE.as_ref()).await.unwrap();
    let grant = TenantGrant {
        http: from_env("WEFT_TEST_VARIABLE_THAT_IS_NOT_SET"),
        ..TenantGrant::new("t")
    };
    let e = rt.instantiate(&c, &grant).await.err().unwrap();
    assert!(
        format!("{e:#}").contains("WEFT_TEST_VARIABLE_THAT_IS_NOT_SET is not set"),
        "{e:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_cannot_set_the_credential_header() {
    let server = TestServer::start(|_, _| Reply::ok("ok")).await;
    let rt = runtime_with(test_limits(), secrets(&[("tok", "real")]), None);
    let v = call(
        &rt,
        "http-auth-header",
        &server.url("/"),
        with_credential(
            &server,
            Credential::Bearer {
                token: SecretRef::Secret("tok".into()),
            },
        ),
    )
    .await;
    let e = error_of(&v);
    assert!(
        e.contains("authorization") && e.contains("Forbidden"),
        "{e}"
    );
    assert!(server.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_token_is_fetched_cached_and_refreshed_after_a_401() {
    // The token endpoint issues t1, t2, ...; the API accepts only the newest
    // token, and revokes it after two uses, like a server-side expiry.
    let issued = Arc::new(AtomicUsize::new(0));
    let uses = Arc::new(AtomicUsize::new(0));
    let (i2, u2) = (issued.clone(), uses.clone());
    let server = TestServer::start(move |s, _| {
        if s.path == "/oauth/token" {
            let n = i2.fetch_add(1, Ordering::SeqCst) + 1;
            u2.store(0, Ordering::SeqCst);
            return token_reply(n);
        }
        let current = format!("Bearer t{}", i2.load(Ordering::SeqCst));
        if s.header("authorization") != Some(current) || u2.fetch_add(1, Ordering::SeqCst) >= 2 {
            return Reply::new(
                401,
                r#"{"error":{"code":"invalid_token","message":"expired"}}"#,
            );
        }
        Reply::ok("data")
    })
    .await;
    let rt = runtime_with(test_limits(), secrets(&[("cs", CLIENT_SECRET)]), None);
    let grants = client_credentials(&server, Some("read"));
    for _ in 0..3 {
        let v = call(&rt, "http", &server.url("/api/things"), grants.clone()).await;
        assert_eq!(v["status"], 200, "{v}");
    }
    let seen = server.seen();
    let token_calls: Vec<_> = seen.iter().filter(|s| s.path == "/oauth/token").collect();
    assert_eq!(
        token_calls.len(),
        2,
        "one token, cached for two calls, then one refresh after the 401"
    );
    let form = String::from_utf8_lossy(&token_calls[0].body).into_owned();
    for part in [
        "grant_type=client_credentials",
        "client_id=weft-client",
        "client_secret=client-secret-value",
        "scope=read",
    ] {
        assert!(form.contains(part), "{form}");
    }
    let api: Vec<_> = seen.iter().filter(|s| s.path == "/api/things").collect();
    let auths: Vec<_> = api
        .iter()
        .map(|s| s.header("authorization").unwrap())
        .collect();
    assert_eq!(
        auths,
        vec!["Bearer t1", "Bearer t1", "Bearer t1", "Bearer t2"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_token_endpoint_is_reported_not_leaked() {
    let server = TestServer::start(|s, _| {
        if s.path == "/oauth/token" {
            Reply::new(
                401,
                r#"{"error":{"code":"invalid_client","message":"bad client"}}"#,
            )
        } else {
            Reply::ok("data")
        }
    })
    .await;
    let rt = runtime_with(test_limits(), secrets(&[("cs", CLIENT_SECRET)]), None);
    let grants = client_credentials(&server, None);
    let v = call(&rt, "http", &server.url("/api"), grants).await;
    let e = error_of(&v);
    assert!(
        e.contains("OAuth token") && e.contains("invalid_client"),
        "{e}"
    );
    assert!(
        e.starts_with("Error::Config"),
        "a refused client is for a person to fix: {e}"
    );
    assert!(!e.contains(CLIENT_SECRET));
    assert!(server.seen().iter().all(|s| s.path == "/oauth/token"));
    assert!(has_event(&rt, |k| matches!(
        k,
        EventKind::CredentialFailed { .. }
    )));
}

/// Tokens can die before their `expires_in`, several in a row: a `401` on a
/// token the host has just fetched is the API's trouble, so the host backs
/// off, refreshes again and retries; the guest never sees the `401` (which
/// it would take for a configuration error).
#[tokio::test(flavor = "multi_thread")]
async fn tokens_refused_right_after_refresh_are_retried_not_handed_to_the_guest() {
    let refusals = Arc::new(AtomicUsize::new(3));
    let r2 = refusals.clone();
    let issued = Arc::new(AtomicUsize::new(0));
    let i2 = issued.clone();
    let server = TestServer::start(move |s, _| {
        if s.path == "/oauth/token" {
            return token_reply(i2.fetch_add(1, Ordering::SeqCst) + 1);
        }
        if r2
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Reply::new(
                401,
                r#"{"error":{"code":"invalid_token","message":"revoked"}}"#,
            );
        }
        Reply::ok("data")
    })
    .await;
    let rt = runtime_with(test_limits(), secrets(&[("cs", "s")]), None);
    let grants = client_credentials(&server, None);
    let v = call(&rt, "http", &server.url("/api"), grants.clone()).await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(
        issued.load(Ordering::SeqCst),
        4,
        "a new token after each refusal"
    );

    // Refused for good: the guest gets a transient error, not a 401.
    refusals.store(1000, Ordering::SeqCst);
    let v = call(&rt, "http", &server.url("/api"), grants).await;
    let e = error_of(&v);
    assert!(e.starts_with("Error::Transient"), "{e}");
    assert!(e.contains("refused") && e.contains("401"), "{e}");
}

/// A kv store that journals its writes and flushes (beside the requests a
/// test server saw, in one list).
struct Journaled {
    inner: Arc<weft::state::kv::SledKv>,
    journal: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Journaled {
    fn note(&self, what: String) {
        self.journal.lock().unwrap().push(what);
    }
}

impl KvStore for Journaled {
    fn get(&self, space: &KvSpace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(space, key)
    }
    fn set(
        &self,
        space: &KvSpace,
        key: &str,
        value: &[u8],
        quota: &KvQuota,
    ) -> Result<(), KvError> {
        self.note(format!("set {key}"));
        self.inner.set(space, key, value, quota)
    }
    fn delete(&self, space: &KvSpace, key: &str) -> Result<(), KvError> {
        self.note(format!("delete {key}"));
        self.inner.delete(space, key)
    }
    fn list_keys(
        &self,
        space: &KvSpace,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, KvError> {
        self.inner.list_keys(space, prefix, limit)
    }
    fn usage(&self, space: &KvSpace) -> Result<u64, KvError> {
        self.inner.usage(space)
    }
    fn flush(&self, space: &KvSpace) -> Result<(), KvError> {
        self.note(format!("flush {}", space.connector));
        self.inner.flush(space)
    }
}

/// What a connector writes to its kv before a request is durable before the
/// request leaves: a crash after the request cannot lose the note (caldav
/// notes where it is about to write an event; the chaos test found an event
/// orphaned when that note was lost to a `kill -9`). One flush per write,
/// none when nothing was written; the flush names the guest's own space.
#[tokio::test(flavor = "multi_thread")]
async fn a_guests_kv_writes_are_durable_before_its_next_request_leaves() {
    let journal: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let j = journal.clone();
    let server = TestServer::start(move |_, _| {
        j.lock().unwrap().push("request".into());
        Reply::ok("ok")
    })
    .await;
    let kv = Arc::new(Journaled {
        inner: weft::state::kv::SledKv::temporary().unwrap(),
        journal: journal.clone(),
    });
    let rt = runtime_over(test_limits(), SecretStore::default(), None, kv);
    let c = rt.load_file(artifacts::TEST_SOURCE.as_ref()).await.unwrap();
    for note in [Some("about to write"), None] {
        let grant = TenantGrant {
            config: json!({ "url": server.url("/"), "note": note }),
            http: allow(&[&server.origin()]),
            ..TenantGrant::new("t")
        };
        let mut i = rt.instantiate(&c, &grant).await.unwrap();
        i.fetch("http", None).await.unwrap();
    }
    assert_eq!(
        *journal.lock().unwrap(),
        ["set note", "flush test-source", "request", "request"]
    );
}
