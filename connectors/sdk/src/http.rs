//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! The host enforces the tenant's grants, adds credentials, waits out rate
//! limits (`429`/`503` with `Retry-After`) and retries idempotent requests on
//! server errors, so this client only builds requests and reads answers. It
//! never follows redirects: a connector that wants to follows the `Location`
//! itself, and the host checks the new origin like any other request.

use crate::wasi::http::outgoing_handler;
use crate::wasi::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use crate::wasi::io::streams::StreamError;
use crate::{Error, TransientError, invalid, transient};

/// An HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON into `T`; a malformed body is an `invalid`
    /// error that says what was wrong and where.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let snippet: String = self.text().chars().take(120).collect();
            invalid(format!(
                "malformed JSON in HTTP {} answer: {e} (body starts {snippet:?})",
                self.status
            ))
        })
    }

    /// `Ok(self)` for a 2xx answer, otherwise the weft error class that fits
    /// the status: `429`/`5xx` transient (with `Retry-After` when given),
    /// `401`/`403` config (the host has already refreshed OAuth tokens and
    /// retried, so a `401` that reaches a connector means a refused API key
    /// or static credential), other statuses invalid. `context` starts the
    /// message.
    pub fn error_for_status(self, context: &str) -> Result<Self, Error> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        Err(self.to_error(context))
    }

    /// The weft error class for this (non-2xx) answer; see
    /// [`Response::error_for_status`].
    pub fn to_error(&self, context: &str) -> Error {
        let snippet: String = self.text().chars().take(300).collect();
        let message = format!("{context}: HTTP {}: {snippet}", self.status);
        match self.status {
            429 | 500..=599 => Error::Transient(TransientError {
                message,
                retry_after_ms: self.retry_after_ms(),
            }),
            401 | 403 => Error::Config(message),
            _ => Error::Invalid(message),
        }
    }

    /// `Retry-After` in milliseconds, when it is a number of seconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| s.saturating_mul(1000))
    }
}

/// An HTTP request to send with [`send`].
#[derive(Debug, Clone)]
pub struct Request {
    /// The method, for example `GET`.
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
}

impl Request {
    /// A request with `method` to `url`, no headers and no body.
    pub fn new(method: &str, url: &str) -> Self {
        Request {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// A `GET` of `url`.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets a body and its content type.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push(("content-type".to_owned(), content_type.to_owned()));
        self.body = Some(body.into());
        self
    }

    /// Sets a JSON body.
    pub fn json(self, value: &serde_json::Value) -> Self {
        self.body("application/json", value.to_string())
    }

    /// Sends the request; see [`send`].
    pub fn send(&self) -> Result<Response, Error> {
        send(self)
    }
}

/// Percent-encodes `s` for one path segment or query value: every byte but
/// the unreserved characters (`A-Z a-z 0-9 - . _ ~`) and those of `keep`
/// (e.g. `b"@+"` for an e-mail address in a path) becomes `%XX`.
pub fn percent_encode(s: &str, keep: &[u8]) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ if keep.contains(&b) => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends `req` and reads the whole answer.
///
/// A request the host refuses (origin not granted, address not allowed,
/// quota spent, answer too large) and transport failures come back as a
/// `transient` error naming the cause, except a refused origin, which is a
/// `config` error: no retry will help until the tenant's grants change.
pub fn send(req: &Request) -> Result<Response, Error> {
    start(req)?.wait()
}

/// Sends every request of `reqs`, at most `in_flight` at once, and returns
/// their answers in the same order. The host runs the requests concurrently
/// (within the tenant's rate and its `max_http_in_flight` limit), so a
/// destination that writes a batch this way takes about the time of the
/// slowest `len / in_flight` requests instead of the sum of all.
pub fn send_all(reqs: &[Request], in_flight: usize) -> Vec<Result<Response, Error>> {
    let in_flight = in_flight.max(1);
    let mut out: Vec<Option<Result<Response, Error>>> = (0..reqs.len()).map(|_| None).collect();
    let mut pending: std::collections::VecDeque<(usize, Pending)> = Default::default();
    let mut next = 0;
    while next < reqs.len() || !pending.is_empty() {
        while next < reqs.len() && pending.len() < in_flight {
            match start(&reqs[next]) {
                Ok(p) => pending.push_back((next, p)),
                Err(e) => out[next] = Some(Err(e)),
            }
            next += 1;
        }
        if let Some((i, p)) = pending.pop_front() {
            out[i] = Some(p.wait());
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(transient("request was not sent"))))
        .collect()
}

/// A request on its way: started with its body sent, the answer not read.
pub struct Pending {
    url: String,
    future: crate::wasi::http::types::FutureIncomingResponse,
}

impl Pending {
    /// Waits for the answer and reads it whole.
    pub fn wait(self) -> Result<Response, Error> {
        let Pending { url, future } = self;
        let incoming = loop {
            match future.get() {
                Some(result) => break result,
                None => future.subscribe().block(),
            }
        };
        let incoming = incoming
            .map_err(|()| transient(format!("request to {url}: response already taken")))?
            .map_err(|e| transport_error(&url, e))?;
        read_response(&url, incoming)
    }
}

/// Starts `req`: builds it, hands it to the host and sends its body; the
/// answer is read by [`Pending::wait`].
pub fn start(req: &Request) -> Result<Pending, Error> {
    let url =
        url::Url::parse(&req.url).map_err(|e| invalid(format!("bad URL {:?}: {e}", req.url)))?;
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(invalid(format!(
                "unsupported URL scheme {other:?} in {}",
                req.url
            )));
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| invalid(format!("URL has no host: {}", req.url)))?;
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let mut path = url.path().to_owned();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }

    let headers = Fields::new();
    for (k, v) in &req.headers {
        headers
            .append(k, v.as_bytes())
            .map_err(|e| invalid(format!("header {k:?} refused: {e:?}")))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let method = match req.method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_owned()),
    };
    let bad = |what: &str| invalid(format!("request to {}: bad {what}", req.url));
    outgoing.set_method(&method).map_err(|_| bad("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|_| bad("scheme"))?;
    outgoing
        .set_authority(Some(&authority))
        .map_err(|_| bad("authority"))?;
    outgoing
        .set_path_with_query(Some(&path))
        .map_err(|_| bad("path"))?;

    let body = outgoing.body().map_err(|_| bad("body"))?;
    let future =
        outgoing_handler::handle(outgoing, None).map_err(|e| transport_error(&req.url, e))?;
    let written = {
        let stream = body.write().map_err(|_| bad("body stream"))?;
        req.body
            .as_deref()
            .unwrap_or_default()
            .chunks(4096)
            .try_for_each(|chunk| stream.blocking_write_and_flush(chunk))
    };
    if let Err(e) = written {
        drop(body);
        // The host closes the body when it refuses or fails the request (an
        // origin not granted, no connection): the reason is in the answer.
        let url = req.url.clone();
        Pending { url, future }.wait()?;
        return Err(transient(format!(
            "request to {}: writing body: {e:?}",
            req.url
        )));
    }
    OutgoingBody::finish(body, None).map_err(|e| transport_error(&req.url, e))?;
    Ok(Pending {
        url: req.url.clone(),
        future,
    })
}

fn read_response(
    url: &str,
    incoming: crate::wasi::http::types::IncomingResponse,
) -> Result<Response, Error> {
    let status = incoming.status();
    let headers = incoming
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect();
    let body = incoming
        .consume()
        .map_err(|()| transient(format!("request to {url}: body already taken")))?;
    let mut bytes = Vec::new();
    {
        let stream = body
            .stream()
            .map_err(|()| transient(format!("request to {url}: body stream already taken")))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(transient(format!(
                        "request to {url}: reading body: {}",
                        e.to_debug_string()
                    )));
                }
            }
        }
    }
    drop(body);
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

/// Maps a transport-level failure to a weft error: a request the host denied
/// is a `config` problem, anything else may pass and is `transient`.
fn transport_error(url: &str, e: ErrorCode) -> Error {
    match e {
        ErrorCode::HttpRequestDenied => Error::Config(format!(
            "request to {url} denied by the host: the origin is not granted to this connector for this tenant"
        )),
        ErrorCode::DestinationIpProhibited => Error::Config(format!(
            "request to {url} denied by the host: it resolves to a loopback, private or other non-public address; if that is meant, the operator lists the host in `private_hosts` in weft.toml"
        )),
        // The host's word for a credential that was refused (the token
        // endpoint refused the client): a person must fix it.
        ErrorCode::InternalError(Some(m)) if m.starts_with("weft: credential refused: ") => {
            Error::Config(format!("request to {url}: {m}"))
        }
        ErrorCode::InternalError(Some(m)) => transient(format!("request to {url}: {m}")),
        other => transient(format!("request to {url}: {other:?}")),
    }
}
