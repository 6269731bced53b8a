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

use crate::caps::http::OriginPattern;
use crate::runtime::connector::{CallError, Connector, ConnectorInstance, Runtime, TenantGrant};
use crate::model::Record;
use crate::state::kv::{KvQuota, KvSpace, KvStore};
use anyhow::Context;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A body: text when it is UTF-8, base64 otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// The body as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The body as base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
}

impl Body {
    /// Wraps `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(t) => Body {
                text: Some(t.to_owned()),
                base64: None,
            },
            Err(_) => Body {
                text: None,
                base64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            },
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> Vec<u8> {
        match (&self.text, &self.base64) {
            (Some(t), _) => t.as_bytes().to_vec(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }
}

/// A request as the guest made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The method.
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// The headers the guest set.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body.
    #[serde(default)]
    pub body: Body,
}

/// The answer the guest got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedResponse {
    /// The status.
    pub status: u16,
    /// The headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body.
    #[serde(default)]
    pub body: Body,
}

/// One request and what came of it: a response, or the transport error the
/// guest saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// The request.
    pub request: RecordedRequest,
    /// The response, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<RecordedResponse>,
    /// The error, when there was no response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One call's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// `fetch(stream, cursor)`.
    Fetch {
        /// The stream.
        stream: String,
        /// The cursor.
        cursor: Option<String>,
    },
    /// `on-webhook(delivery)`.
    Webhook {
        /// The headers of the delivery.
        headers: Vec<(String, String)>,
        /// Its body.
        body: Body,
    },
    /// `map(records)`.
    Map {
        /// The input.
        records: Vec<Record>,
    },
    /// `emit(records)`.
    Emit {
        /// The input.
        records: Vec<Record>,
    },
}

impl Call {
    fn describe(&self) -> String {
        match self {
            Call::Fetch { stream, cursor } => format!("fetch {stream} from {cursor:?}"),
            Call::Webhook { .. } => "on-webhook".into(),
            Call::Map { records } => format!("map of {} record(s)", records.len()),
            Call::Emit { records } => format!("emit of {} record(s)", records.len()),
        }
    }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedCall {
    /// What was called, with its input.
    #[serde(flatten)]
    pub call: Call,
    /// The wall-clock time when the call started (Unix milliseconds): the
    /// replay's clock shows this instant, so that a connector reading the
    /// time asks and answers as it did.
    #[serde(default)]
    pub at_ms: u64,
    /// Which instance made the call (calls of one instance share the
    /// guest's memory, such as a cache kept for a run; a replay starts a
    /// fresh instance where the recording did).
    #[serde(default)]
    pub instance: u32,
    /// The key-value space at the start of the call (values in base64),
    /// when it differs from what the previous call of this file left: other
    /// flows of the tenant share the connector's space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<BTreeMap<String, String>>,
    /// The HTTP exchanges the call made, in order.
    #[serde(default)]
    pub http: Vec<Exchange>,
    /// What it returned: `{"ok": …}`, `{"error": …}` (a WIT error) or
    /// `{"failed": "…"}` (the sandbox stopped it).
    pub output: Value,
}

/// A case file: one connector's calls in one flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseFile {
    /// `name@version` of the connector recorded.
    pub connector: String,
    /// The stage's configuration (never a secret: credentials are grants).
    pub config: Value,
    /// The key-value space before the first call (values in base64).
    #[serde(default)]
    pub kv: BTreeMap<String, String>,
    /// The calls, in order.
    pub calls: Vec<RecordedCall>,
}

/// The output of a call as a case file holds it.
pub fn output_of<T: Serialize>(result: &Result<T, CallError>) -> Value {
    match result {
        Ok(v) => serde_json::json!({ "ok": v }),
        Err(CallError::Connector(e)) => serde_json::json!({ "error": e }),
        Err(other) => serde_json::json!({ "failed": other.to_string() }),
    }
}

/// The current wall-clock time in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A wall clock a replay sets to each recorded call's start: the guest's
/// `wasi:clocks/wall-clock` reads it instead of the host's clock.
#[derive(Debug, Clone, Default)]
pub struct FrozenClock(Arc<std::sync::atomic::AtomicU64>);

impl FrozenClock {
    /// Shows `ms` (Unix milliseconds) from now on.
    pub fn set(&self, ms: u64) {
        self.0.store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// What an instance's outbound HTTP does besides (or instead of) sending.
#[derive(Debug, Clone)]
pub enum HttpTap {
    /// Send, and keep each exchange.
    Record {
        /// Exchanges of the call in progress.
        exchanges: Arc<Mutex<Vec<Exchange>>>,
        /// Credential values to replace with `[scrubbed]` in the case file.
        scrub: Arc<Mutex<Vec<String>>>,
    },
    /// Answer from a cassette; never send.
    Replay(Arc<Mutex<Cassette>>),
}

/// The exchanges one call may use, and the requests it made that were not
/// in them.
#[derive(Debug, Default)]
pub struct Cassette {
    exchanges: Vec<(Exchange, bool)>,
    /// Requests that found no recorded exchange (`METHOD URL`).
    pub misses: Vec<String>,
}

impl Cassette {
    /// A cassette of `exchanges`, none used yet.
    pub fn new(exchanges: Vec<Exchange>) -> Self {
        Cassette {
            exchanges: exchanges.into_iter().map(|e| (e, false)).collect(),
            misses: Vec::new(),
        }
    }

    /// The recorded exchange for `request`: the first unused one with the
    /// same method, URL and body, else with the same method and URL.
    pub fn answer(&mut self, request: &RecordedRequest) -> Option<Exchange> {
        let same = |e: &Exchange, body: bool| {
            e.request.method == request.method
                && e.request.url == request.url
                && (!body || e.request.body == request.body)
        };
        let found = self
            .exchanges
            .iter()
            .position(|(e, used)| !used && same(e, true))
            .or_else(|| {
                self.exchanges
                    .iter()
                    .position(|(e, used)| !used && same(e, false))
            });
        match found {
            Some(i) => {
                self.exchanges[i].1 = true;
                Some(self.exchanges[i].0.clone())
            }
            None => {
                self.misses
                    .push(format!("{} {}", request.method, request.url));
                None
            }
        }
    }
}

/// Replaces every value of `scrub` in `text`.
pub fn scrub_text(text: &str, scrub: &[String]) -> String {
    let mut out = text.to_owned();
    for s in scrub.iter().filter(|s| s.len() >= 4) {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "[scrubbed]");
        }
    }
    out
}

/// Scrubs every string in `v` (keys included).
pub fn scrub_value(v: &mut Value, scrub: &[String]) {
    match v {
        Value::String(t) => *t = scrub_text(t, scrub),
        Value::Array(items) => items.iter_mut().for_each(|i| scrub_value(i, scrub)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut item) in entries {
                scrub_value(&mut item, scrub);
                map.insert(scrub_text(&k, scrub), item);
            }
        }
        _ => {}
    }
}

/// Collects the calls of one connector of one flow during a recorded run.
#[derive(Debug, Clone)]
pub struct CallRecorder {
    case: Arc<Mutex<CaseFile>>,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    /// The key-value space after the last recorded call, and at the start
    /// of the call in progress.
    kv: Arc<Mutex<KvMarks>>,
    /// Instances started so far.
    instances: Arc<std::sync::atomic::AtomicU32>,
    /// Credential values of every instance of the recording, scrubbed
    /// from every case file (a record carries what a source read).
    scrub: Arc<Mutex<Vec<String>>>,
}

/// See [`CallRecorder`].
type KvMarks = (
    Option<BTreeMap<String, String>>,
    Option<BTreeMap<String, String>>,
);

impl CallRecorder {
    /// The tap to give the instance's outbound HTTP, which adds the
    /// instance's credential values to what is scrubbed.
    pub fn tap(&self) -> HttpTap {
        HttpTap::Record {
            exchanges: self.exchanges.clone(),
            scrub: self.scrub.clone(),
        }
    }

    /// A number for a new instance.
    pub fn next_instance(&self) -> u32 {
        self.instances
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes the key-value space at the start of a call.
    pub fn begin(&self, kv_now: BTreeMap<String, String>) {
        self.kv.lock().unwrap_or_else(|e| e.into_inner()).1 = Some(kv_now);
    }

    /// Adds a finished call, started at `at_ms`, with the exchanges it made
    /// and the key-value space it left (`kv_after`).
    pub fn push(
        &self,
        call: Call,
        (instance, at_ms): (u32, u64),
        output: Value,
        kv_after: BTreeMap<String, String>,
    ) {
        let http = std::mem::take(&mut *self.exchanges.lock().unwrap_or_else(|e| e.into_inner()));
        let mut kv = self.kv.lock().unwrap_or_else(|e| e.into_inner());
        let before = kv.1.take().unwrap_or_default();
        let mut case = self.case.lock().unwrap_or_else(|e| e.into_inner());
        let changed_between = match &kv.0 {
            None => {
                case.kv = before.clone();
                false
            }
            Some(after_last) => *after_last != before,
        };
        kv.0 = Some(kv_after);
        case.calls.push(RecordedCall {
            call,
            at_ms,
            instance,
            kv: changed_between.then_some(before),
            http,
            output,
        });
    }
}

/// The case files of a recorded run, written by [`Recording::write`].
#[derive(Debug)]
pub struct Recording {
    dir: PathBuf,
    cases: Mutex<BTreeMap<String, CallRecorder>>,
    scrub: Arc<Mutex<Vec<String>>>,
}

impl Recording {
    /// Records into `dir` (created when written).
    pub fn new(dir: &Path) -> Self {
        Recording {
            dir: dir.to_owned(),
            cases: Mutex::default(),
            scrub: Arc::default(),
        }
    }

    /// The recorder of `connector` (`name@version`) in `tenant`'s `flow`.
    pub fn recorder(
        &self,
        tenant: &str,
        flow: &str,
        connector: &str,
        config: &Value,
    ) -> CallRecorder {
        let name = connector.split('@').next().unwrap_or(connector);
        let file = format!("{tenant}.{flow}.{name}.json");
        self.cases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(file)
            .or_insert_with(|| CallRecorder {
                case: Arc::new(Mutex::new(CaseFile {
                    connector: connector.to_owned(),
                    config: config.clone(),
                    kv: BTreeMap::new(),
                    calls: Vec::new(),
                })),
                exchanges: Arc::default(),
                kv: Arc::default(),
                instances: Arc::default(),
                scrub: self.scrub.clone(),
            })
            .clone()
    }

    /// Writes every case file that has calls; returns their paths.
    pub fn write(&self) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let mut written = Vec::new();
        for (file, rec) in self.cases.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let case = rec.case.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if case.calls.is_empty() {
                continue;
            }
            let mut value = serde_json::to_value(&case)?;
            scrub_value(
                &mut value,
                &rec.scrub.lock().unwrap_or_else(|e| e.into_inner()),
            );
            let path = self.dir.join(file);
            std::fs::write(&path, case_text(value)?)
                .with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }
}

fn write_case(path: &Path, case: &CaseFile) -> anyhow::Result<()> {
    let text = case_text(serde_json::to_value(case)?)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A case file's text, the one form `weft run --record` and `weft test
/// --update` both write: pretty JSON with every object's keys sorted, so
/// that an update changes only the outputs that changed.
fn case_text(mut value: Value) -> anyhow::Result<String> {
    fn sort(v: &mut Value) {
        match v {
            Value::Object(map) => {
                let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                for (k, mut v) in entries {
                    sort(&mut v);
                    map.insert(k, v);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(sort),
            _ => {}
        }
    }
    sort(&mut value);
    Ok(serde_json::to_string_pretty(&value)? + "\n")
}

/// Reads a connector's whole key-value space (values in base64).
pub fn dump_kv(kv: &dyn KvStore, space: &KvSpace) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let keys = kv.list_keys(space, "", 100_000).unwrap_or_default();
    for k in keys {
        if let Ok(Some(v)) = kv.get(space, &k) {
            out.insert(k, base64::engine::general_purpose::STANDARD.encode(v));
        }
    }
    out
}

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
