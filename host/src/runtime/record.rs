//! Recording a run's connector calls (`weft run --record`): each call's
//! input, the HTTP exchanges it made (through the tap of `caps::http`), the
//! key-value space around it and its output, collected per connector of
//! each flow into case files that `weft test` replays.

use crate::caps::http::tap::{Body, Exchange, HttpTap, scrub_value};
use crate::model::Record;
use crate::runtime::connector::CallError;
use crate::state::kv::{KvSpace, KvStore};
use anyhow::Context;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    pub(crate) fn describe(&self) -> String {
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

pub(crate) fn write_case(path: &Path, case: &CaseFile) -> anyhow::Result<()> {
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
