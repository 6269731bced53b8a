//! The offline test kit: record a connector's calls in a live run, replay
//! them with no network, compare outputs.
//!
//! `weft run --record DIR` writes one **case file** per connector of each
//! flow it runs (`DIR/{tenant}.{flow}.{connector}.json`): the stage's
//! configuration, the connector's key-value space as it was before its first
//! call, and every call in order, each with its input (stream and cursor, a
//! webhook delivery, or records), the HTTP exchanges it made (its **cassette**:
//! requests as the guest made them, before the host added credentials, with
//! the tenant's credential values scrubbed from everything recorded) and its
//! output.
//!
//! `weft test CONNECTOR.wasm CASE…` ([`run_case`]) loads the component in a
//! runtime with no state directory and a resolver that knows no host, seeds
//! the key-value space, and makes the same calls in order on one instance,
//! answering each HTTP request from that call's cassette (the first unused
//! exchange with the same method, URL and body; then the same method and
//! URL). An output that differs from the recorded one is shown as a diff of
//! the pretty-printed JSON; `--update` writes the new outputs instead. A
//! request that is not in the cassette fails in the guest as a transport
//! error and is reported.

pub use crate::caps::clock::FrozenClock;
use crate::caps::http::OriginPattern;
pub use crate::caps::http::tap::{
    Body, Cassette, Exchange, HttpTap, RecordedRequest, RecordedResponse, scrub_text, scrub_value,
};
use crate::runtime::connector::{Connector, ConnectorInstance, Runtime, TenantGrant};
use crate::runtime::record::write_case;
pub use crate::runtime::record::{
    Call, CallRecorder, CaseFile, RecordedCall, Recording, dump_kv, now_ms, output_of,
};
use crate::state::kv::{KvQuota, KvSpace, KvStore};
use anyhow::Context;
use base64::Engine as _;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What replaying one case file found.
#[derive(Debug, Default)]
pub struct CaseReport {
    /// Calls whose output matched.
    pub passed: usize,
    /// One entry per call whose output differed: what the call was and the
    /// diff (`-` recorded, `+` now).
    pub failures: Vec<String>,
    /// Calls whose output was rewritten (`--update`).
    pub updated: usize,
}

/// The tenant a replay runs as.
pub const TEST_TENANT: &str = "weft-test";

/// Replays the case file at `path` against `connector`.
/// With `update`, rewrites the recorded outputs that differ.
pub async fn run_case(
    runtime: &Runtime,
    kv: &dyn KvStore,
    connector: &Connector,
    path: &Path,
    update: bool,
) -> anyhow::Result<CaseReport> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut case: CaseFile = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a weft case file", path.display()))?;
    let name = connector.info().name.clone();
    let recorded_name = case.connector.split('@').next().unwrap_or_default();
    if recorded_name != name {
        anyhow::bail!(
            "{} records {}, but the component is {}",
            path.display(),
            case.connector,
            connector.label()
        );
    }
    let space = KvSpace {
        tenant: TEST_TENANT.to_owned(),
        connector: name.clone(),
    };
    seed_kv(kv, &space, &case.kv).with_context(|| path.display().to_string())?;
    // Every origin the cassettes hold is granted; nothing is sent anyway.
    let mut allow: Vec<OriginPattern> = Vec::new();
    for call in &case.calls {
        for e in &call.http {
            if let Some(o) = origin_of(&e.request.url)
                && let Ok(p) = OriginPattern::parse(&o)
                && !allow.contains(&p)
            {
                allow.push(p);
            }
        }
    }
    let cassette = Arc::new(Mutex::new(Cassette::default()));
    let clock = FrozenClock::default();
    let mut grant = TenantGrant::new(TEST_TENANT);
    grant.clock = Some(clock.clone());
    grant.config = case.config.clone();
    grant.http.allow = allow;
    grant.http_tap = Some(HttpTap::Replay(cassette.clone()));
    let mut instance: Option<(u32, ConnectorInstance)> = None;
    let mut report = CaseReport::default();
    for (i, recorded) in case.calls.iter_mut().enumerate() {
        *cassette.lock().unwrap_or_else(|e| e.into_inner()) = Cassette::new(recorded.http.clone());
        clock.set(recorded.at_ms);
        if let Some(state) = &recorded.kv {
            seed_kv(kv, &space, state).with_context(|| path.display().to_string())?;
        }
        if instance
            .as_ref()
            .is_some_and(|(n, _)| *n != recorded.instance)
        {
            instance = None;
        }
        let inst = match &mut instance {
            Some((_, inst)) => inst,
            None => {
                &mut instance
                    .insert((
                        recorded.instance,
                        runtime.instantiate(connector, &grant).await?,
                    ))
                    .1
            }
        };
        let output = call_once(inst, &recorded.call).await;
        if output.get("failed").is_some() {
            // A trapped instance is not called again: the next call gets a
            // fresh one, as in a run.
            instance = None;
        }
        let misses = std::mem::take(&mut cassette.lock().unwrap_or_else(|e| e.into_inner()).misses);
        if output == recorded.output {
            report.passed += 1;
            continue;
        }
        if update {
            recorded.output = output;
            report.updated += 1;
            continue;
        }
        let mut text = format!(
            "call {} ({}): the output differs from the recording\n{}",
            i + 1,
            recorded.call.describe(),
            diff(&recorded.output, &output)
        );
        if !misses.is_empty() {
            text.push_str(&format!(
                "requests not in the cassette:\n  {}\n",
                misses.join("\n  ")
            ));
        }
        report.failures.push(text);
    }
    if update && report.updated > 0 {
        write_case(path, &case)?;
    }
    Ok(report)
}

/// Makes `space` hold exactly `state` (values in base64).
fn seed_kv(
    kv: &dyn KvStore,
    space: &KvSpace,
    state: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    for k in kv.list_keys(space, "", 100_000).unwrap_or_default() {
        let _ = kv.delete(space, &k);
    }
    let unlimited = KvQuota {
        max_bytes: u64::MAX,
        max_keys: u64::MAX,
    };
    for (k, v) in state {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v)
            .with_context(|| format!("kv {k:?} is not base64"))?;
        kv.set(space, k, &bytes, &unlimited)
            .map_err(|e| anyhow::anyhow!("seeding kv {k:?}: {e}"))?;
    }
    Ok(())
}

async fn call_once(inst: &mut ConnectorInstance, call: &Call) -> Value {
    match call {
        Call::Fetch { stream, cursor } => output_of(&inst.fetch(stream, cursor.as_deref()).await),
        Call::Webhook { headers, body } => {
            output_of(&inst.on_webhook(headers.clone(), body.bytes()).await)
        }
        Call::Map { records } => output_of(&inst.map(records).await),
        Call::Emit { records } => output_of(&inst.emit(records).await),
    }
}

/// `scheme://host[:port]` of `url`.
fn origin_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    Some(format!(
        "{}://{}",
        uri.scheme_str()?,
        uri.authority()?.as_str()
    ))
}

/// A line diff of two JSON values, pretty-printed: `-` recorded, `+` now,
/// with three lines of context.
pub fn diff(recorded: &Value, now: &Value) -> String {
    let a = serde_json::to_string_pretty(recorded).unwrap_or_default();
    let b = serde_json::to_string_pretty(now).unwrap_or_default();
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header("recorded", "now")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, url: &str, body: &str) -> RecordedRequest {
        RecordedRequest {
            method: method.into(),
            url: url.into(),
            headers: vec![],
            body: Body::of(body.as_bytes()),
        }
    }

    fn exchange(method: &str, url: &str, body: &str, status: u16) -> Exchange {
        Exchange {
            request: req(method, url, body),
            response: Some(RecordedResponse {
                status,
                headers: vec![],
                body: Body::default(),
            }),
            error: None,
        }
    }

    #[test]
    fn a_cassette_answers_each_exchange_once_preferring_the_same_body() {
        let mut c = Cassette::new(vec![
            exchange("PUT", "https://a/x", "one", 201),
            exchange("PUT", "https://a/x", "two", 200),
            exchange("GET", "https://a/y", "", 200),
        ]);
        let two = c.answer(&req("PUT", "https://a/x", "two")).unwrap();
        assert_eq!(two.response.unwrap().status, 200);
        // The same method and URL with another body takes what is left.
        let other = c.answer(&req("PUT", "https://a/x", "three")).unwrap();
        assert_eq!(other.response.unwrap().status, 201);
        assert!(c.answer(&req("PUT", "https://a/x", "one")).is_none());
        assert!(c.answer(&req("GET", "https://a/z", "")).is_none());
        assert_eq!(c.misses, ["PUT https://a/x", "GET https://a/z"]);
    }

    #[test]
    fn scrubbing_removes_credential_values_everywhere() {
        let mut e = exchange("GET", "https://a/x?key=s3cr3t-token", "", 200);
        e.request
            .headers
            .push(("x-echo".into(), "Bearer s3cr3t-token".into()));
        e.response.as_mut().unwrap().body = Body::of(b"{\"token\":\"s3cr3t-token\"}");
        let mut v = serde_json::json!({ "http": [e], "s3cr3t-token": 1 });
        scrub_value(&mut v, &["s3cr3t-token".into()]);
        let text = v.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("[scrubbed]"));
    }

    #[test]
    fn bodies_that_are_not_utf8_round_trip_as_base64() {
        let b = Body::of(&[0xff, 0x00, 0x10]);
        assert!(b.text.is_none());
        assert_eq!(b.bytes(), [0xff, 0x00, 0x10]);
    }

    #[test]
    fn the_diff_shows_what_changed() {
        let d = diff(
            &serde_json::json!({"ok": {"records": [{"key": "a", "n": 1}]}}),
            &serde_json::json!({"ok": {"records": [{"key": "a", "n": 2}]}}),
        );
        assert!(d.contains("-") && d.contains("\"n\": 1"), "{d}");
        assert!(d.contains("+") && d.contains("\"n\": 2"), "{d}");
    }
}
