//! The recording tap of outbound HTTP: what `weft run --record` keeps of
//! each request a guest makes (before the host adds credentials, with the
//! tenant's credential values scrubbed) and what `weft test` answers from
//! (a [`Cassette`]). A capability of `caps::http` that the test kit uses.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
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
