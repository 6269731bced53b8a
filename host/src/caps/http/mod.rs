//! Outbound HTTP: the `wasi:http/outgoing-handler` a connector calls, with
//! weft's policy in wasmtime's `send_request` hook.
//!
//! For every request the host, in order: checks the origin against what the
//! connector declared and the tenant granted ([`policy`]); reads the request
//! body (up to a cap); takes a token from the (tenant, origin) quota
//! ([`quota`]), waiting only as long as the guest call has left; adds the
//! tenant's credential for that origin ([`auth`]); resolves the host, refuses
//! non-public addresses unless the operator allowed that host, and sends
//! ([`client`]) with a timeout cut to the call's remaining time. Idempotent
//! requests are retried by the host: `429`/`503` after `Retry-After`, other
//! `5xx` and transport failures with jittered exponential backoff, as long as
//! the call's deadline allows; once an origin has run out of those retries,
//! its requests get one attempt for a while ([`Outages`]), so a destination
//! that is down fails a batch in one pass instead of record by record.
//! OAuth tokens are refreshed once on `401`.
//! Redirects are never followed by the host: a guest that follows one makes a
//! new request, which is checked again.

pub mod auth;
pub mod client;
pub mod policy;
pub mod quota;
pub mod tap;

pub use auth::{Credential, CredentialGrant, ResolvedAuth, TokenCache};
pub use client::{Resolver, StaticResolver, SystemResolver};
pub use policy::{Origin, OriginPattern, Policy};
pub use quota::{Quotas, Rate};

use crate::events::{EventKind, EventLog};
use crate::runtime::limits::Limits;
use crate::secrets::SecretStore;
use bytes::Bytes;
use client::SendError;
use http::{HeaderName, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody,
    WasiHttpHooks,
};

/// What a tenant grants one connector over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HttpGrants {
    /// Origins the connector may call (`scheme://host[:port]`, `*.` host
    /// prefixes and `*` ports allowed). Empty means none.
    #[schema(value_type = Vec<String>)]
    pub allow: Vec<OriginPattern>,
    /// Credentials the host adds, per origin. The first matching entry wins.
    pub credentials: Vec<CredentialGrant>,
    /// The request quota per origin for this tenant; the host default when
    /// unset.
    pub rate: Option<Rate>,
}

/// Host-wide state of outbound HTTP, shared by all instances.
#[derive(Clone)]
pub struct HttpShared {
    /// Name resolution.
    pub resolver: Arc<dyn Resolver>,
    /// Quota buckets.
    pub quotas: Quotas,
    /// OAuth tokens.
    pub tokens: TokenCache,
    /// Origins that are down for a tenant: no host retries while marked.
    pub outages: Outages,
    /// Where denials are recorded.
    pub events: EventLog,
    /// Host names the operator lets reach non-public addresses.
    pub private_hosts: Vec<String>,
    /// The quota when a tenant sets none.
    pub default_rate: Rate,
}

/// Origins whose last request ran out of the host's retries on a server
/// error or a transport failure, per (tenant, origin).
///
/// Retrying each request of a batch for seconds against a destination that
/// is down would hold a run for minutes (six attempts per record) when the
/// runner's own retry of the whole batch, with its backoff, is the better
/// judge. So while an origin is marked (at most [`OUTAGE_HOLD`] after the
/// last exhausted request), its requests get one attempt; the first answer
/// that is not a server error clears the mark.
#[derive(Debug, Clone, Default)]
pub struct Outages {
    marks: Arc<Mutex<std::collections::HashMap<(String, String), Instant>>>,
}

/// How long an exhausted origin gets single attempts before the host
/// retries its requests again.
pub const OUTAGE_HOLD: Duration = Duration::from_secs(30);

impl Outages {
    fn is_down(&self, tenant: &str, origin: &str) -> bool {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        let key = (tenant.to_owned(), origin.to_owned());
        match marks.get(&key) {
            Some(at) if at.elapsed() < OUTAGE_HOLD => true,
            Some(_) => {
                marks.remove(&key);
                false
            }
            None => false,
        }
    }

    fn mark(&self, tenant: &str, origin: &str) {
        self.marks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((tenant.to_owned(), origin.to_owned()), Instant::now());
    }

    fn clear(&self, tenant: &str, origin: &str) {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        if !marks.is_empty() {
            marks.remove(&(tenant.to_owned(), origin.to_owned()));
        }
    }
}

/// The deadline of the guest call in progress, shared between the store and
/// the HTTP hook (which runs on another task).
#[derive(Debug, Clone, Default)]
pub struct CallDeadline(Arc<Mutex<Option<Instant>>>);

impl CallDeadline {
    /// Sets the deadline for the call about to start.
    pub fn set(&self, at: Instant) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    /// The deadline, or `fallback` from now when no call is running.
    pub fn get_or(&self, fallback: Duration) -> Instant {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_else(|| Instant::now() + fallback)
    }

    /// The deadline, if a call is running.
    pub fn get(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Per-instance outbound HTTP: the hook wasmtime calls for each request.
#[derive(Clone)]
pub struct OutboundHttp {
    inner: Arc<Outbound>,
}

struct Outbound {
    shared: HttpShared,
    tenant: String,
    connector: String,
    policy: Policy,
    credentials: Vec<(OriginPattern, ResolvedAuth)>,
    rate: Rate,
    limits: Limits,
    deadline: CallDeadline,
    forbidden: Vec<HeaderName>,
    /// Requests of this instance in flight (`limits.max_http_in_flight`).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Recording or replaying the guest's requests (the test kit).
    tap: Option<crate::caps::http::tap::HttpTap>,
    /// This instance's keep-alive connections.
    pool: client::Pool,
    /// The instance's kv writes, made durable before a request leaves.
    write_ahead: Option<crate::caps::kv::WriteAhead>,
}

impl OutboundHttp {
    /// Builds the hook for one instance; resolves the credentials' secrets.
    #[allow(
        clippy::too_many_arguments,
        reason = "each is a distinct input of the policy"
    )]
    pub fn new(
        shared: HttpShared,
        tenant: &str,
        connector: &str,
        requested: Vec<OriginPattern>,
        grants: &HttpGrants,
        secrets: &SecretStore,
        limits: Limits,
        deadline: CallDeadline,
    ) -> anyhow::Result<Self> {
        let mut credentials = Vec::new();
        for g in &grants.credentials {
            let resolved = ResolvedAuth::resolve(&g.auth, secrets).map_err(|e| {
                anyhow::anyhow!(
                    "tenant {tenant}, connector {connector}, credential for {}: {e:#}",
                    g.origin
                )
            })?;
            credentials.push((g.origin.clone(), resolved));
        }
        let mut forbidden: Vec<HeaderName> = vec![
            http::header::AUTHORIZATION,
            http::header::PROXY_AUTHORIZATION,
            http::header::COOKIE,
        ];
        for (_, c) in &credentials {
            let name = c.header_name();
            if !forbidden.contains(&name) {
                forbidden.push(name);
            }
        }
        let policy = Policy {
            requested,
            granted: grants.allow.clone(),
            private_hosts: shared.private_hosts.clone(),
        };
        Ok(OutboundHttp {
            inner: Arc::new(Outbound {
                rate: grants.rate.unwrap_or(shared.default_rate),
                shared,
                tenant: tenant.to_owned(),
                connector: connector.to_owned(),
                policy,
                credentials,
                in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_http_in_flight)),
                limits,
                deadline,
                forbidden,
                tap: None,
                pool: Default::default(),
                write_ahead: None,
            }),
        })
    }

    /// Records or replays the guest's requests (see [`tap`]).
    /// A recording scrubs this instance's credential values.
    pub fn with_tap(mut self, tap: Option<crate::caps::http::tap::HttpTap>) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("a new hook is not shared yet");
        if let Some(crate::caps::http::tap::HttpTap::Record { scrub, .. }) = &tap {
            let mut scrub = scrub.lock().unwrap_or_else(|e| e.into_inner());
            for (_, c) in &inner.credentials {
                match c {
                    ResolvedAuth::Header(_, v) => {
                        if let Ok(v) = v.to_str() {
                            scrub.push(v.to_owned());
                            // `Bearer xyz`, `Basic xyz`: the token alone too.
                            if let Some((_, token)) = v.rsplit_once(' ') {
                                scrub.push(token.to_owned());
                            }
                        }
                    }
                    ResolvedAuth::OAuth { client_secret, .. } => {
                        scrub.push(client_secret.expose().to_owned());
                    }
                }
            }
        }
        inner.tap = tap;
        self
    }

    /// Makes the instance's kv writes durable before each of its requests
    /// leaves (see [`crate::caps::kv::WriteAhead`]).
    pub fn with_write_ahead(mut self, w: crate::caps::kv::WriteAhead) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("a new hook is not shared yet");
        inner.write_ahead = Some(w);
        self
    }
}

impl OutboundHttp {
    /// Makes one request on the tenant's behalf for the host itself (for
    /// example registering a webhook): the same grants, address policy,
    /// quota and credential injection as a guest's request, and the answer
    /// goes to the host only.
    pub async fn send_for_host(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        use http_body_util::BodyExt;
        let (parts, body) = request.into_parts();
        let body: WasiBody = http_body_util::Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync();
        self.inner
            .handle(http::Request::from_parts(parts, body))
            .await
    }
}

impl WasiHttpHooks for OutboundHttp {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        let extra = self.inner.forbidden.clone();
        Arc::new(move |name| DEFAULT_FORBIDDEN_HEADERS.contains(name) || extra.contains(name))
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        let inner = self.inner.clone();
        // What the guest wrote to its kv before this request is durable
        // before the request can have an effect.
        if let Some(Err(e)) = inner.write_ahead.as_ref().map(|w| w.sync()) {
            return Box::new(async move {
                Err(HttpError::InternalError(Some(format!(
                    "weft: the connector's kv writes could not be made durable before the request: {e}"
                ))))
            });
        }
        // A guest that starts requests without finishing them holds their
        // bodies in the host: only so many at once.
        let permit = inner.in_flight.clone().try_acquire_owned();
        Box::new(async move {
            let Ok(_permit) = permit else {
                inner.record(EventKind::HttpDenied {
                    origin: request.uri().to_string(),
                    reason: format!(
                        "more than {} requests in flight (limits.max_http_in_flight)",
                        inner.limits.max_http_in_flight
                    ),
                });
                return Err(HttpError::InternalError(Some(format!(
                    "weft: more than {} requests of this connector in flight at once (limits.max_http_in_flight)",
                    inner.limits.max_http_in_flight
                ))));
            };
            let response = match &inner.tap {
                None => inner.handle(request).await?,
                Some(tap) => inner.tapped(tap, request).await?,
            };
            let response =
                response.map(|b| Full::new(b).map_err(|never| match never {}).boxed_unsync());
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// Most attempts the host makes for one idempotent request.
const MAX_ATTEMPTS: u32 = 6;

/// How a transport error starts when the host could not get a credential
/// because the credential itself was refused (the token endpoint refused the
/// client): the guest SDK turns it into a `config` error, where every other
/// `internal-error` is `transient`.
pub const CREDENTIAL_REFUSED: &str = "weft: credential refused: ";

pub(super) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Jittered exponential backoff: between half and all of 200 ms × 2^(n-1),
/// capped at 10 s.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(200).saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let base = base.min(Duration::from_secs(10));
    let jitter: f64 = rand::random_range(0.5..=1.0);
    base.mul_f64(jitter)
}

/// `Retry-After` as a number of seconds (HTTP dates are not honoured; the
/// host falls back to its backoff).
fn retry_after(resp: &http::Response<Bytes>) -> Option<Duration> {
    resp.headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl Outbound {
    /// A guest request under the test kit: recorded on its way through
    /// [`Outbound::handle`], or answered from the cassette (after the origin
    /// checks) without sending anything.
    async fn tapped(
        &self,
        tap: &crate::caps::http::tap::HttpTap,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        use crate::caps::http::tap::{Body, Exchange, HttpTap, RecordedRequest, RecordedResponse};
        let (parts, body) = request.into_parts();
        let body = Limited::new(body, self.limits.max_http_request_bytes)
            .collect()
            .await
            .map_err(|e| HttpError::InternalError(Some(format!("reading request body: {e}"))))?
            .to_bytes();
        let headers = |h: &http::HeaderMap| -> Vec<(String, String)> {
            h.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect()
        };
        let recorded = RecordedRequest {
            method: parts.method.to_string(),
            url: parts.uri.to_string(),
            headers: headers(&parts.headers),
            body: Body::of(&body),
        };
        match tap {
            HttpTap::Replay(cassette) => {
                let origin =
                    Origin::from_uri(&parts.uri).map_err(|_| HttpError::HttpRequestUriInvalid)?;
                if let Err(denial) = self.policy.check_origin(&origin) {
                    self.record(EventKind::HttpDenied {
                        origin: origin.to_string(),
                        reason: denial.to_string(),
                    });
                    return Err(HttpError::HttpRequestDenied);
                }
                let found = cassette
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .answer(&recorded);
                match found {
                    Some(Exchange {
                        response: Some(r), ..
                    }) => {
                        let mut b = http::Response::builder().status(r.status);
                        for (k, v) in &r.headers {
                            b = b.header(k, v);
                        }
                        b.body(Bytes::from(r.body.bytes()))
                            .map_err(|e| HttpError::InternalError(Some(e.to_string())))
                    }
                    Some(Exchange { error, .. }) => Err(HttpError::InternalError(Some(
                        error.unwrap_or_else(|| "recorded without an answer".into()),
                    ))),
                    None => Err(HttpError::InternalError(Some(format!(
                        "weft test: no recorded exchange for {} {}",
                        recorded.method, recorded.url
                    )))),
                }
            }
            HttpTap::Record { exchanges, .. } => {
                let full: WasiBody = Full::new(body)
                    .map_err(|never| match never {})
                    .boxed_unsync();
                let result = self.handle(http::Request::from_parts(parts, full)).await;
                let exchange = Exchange {
                    request: recorded,
                    response: result.as_ref().ok().map(|r| RecordedResponse {
                        status: r.status().as_u16(),
                        headers: headers(r.headers()),
                        body: Body::of(r.body()),
                    }),
                    error: result.as_ref().err().map(|e| e.to_string()),
                };
                exchanges
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(exchange);
                result
            }
        }
    }

    fn record(&self, kind: EventKind) {
        self.shared
            .events
            .record(&self.tenant, &self.connector, kind);
    }

    fn credential_for(&self, origin: &Origin) -> Option<&ResolvedAuth> {
        self.credentials
            .iter()
            .find(|(p, _)| p.matches(origin))
            .map(|(_, c)| c)
    }

    /// Takes one request token of the (tenant, origin) quota, waiting only
    /// as long as the call's deadline allows.
    async fn acquire(&self, origin_str: &str, deadline: Instant) -> Result<(), HttpError> {
        if let Err(e) = self
            .shared
            .quotas
            .acquire(&self.tenant, origin_str, self.rate, deadline)
            .await
        {
            self.record(EventKind::QuotaExhausted {
                origin: origin_str.to_owned(),
            });
            return Err(HttpError::InternalError(Some(format!(
                "weft: request quota for {origin_str} is spent; the next request could start in {} ms, after this call's deadline",
                e.wait.as_millis()
            ))));
        }
        Ok(())
    }

    async fn handle(
        &self,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let deadline = self.deadline.get_or(self.limits.call_timeout());
        let origin =
            Origin::from_uri(request.uri()).map_err(|_| HttpError::HttpRequestUriInvalid)?;
        let origin_str = origin.to_string();
        // User info in the authority (`http://evil@granted-host/`) is
        // refused: it is never sent, and a URL that carries it is a trick.
        if request
            .uri()
            .authority()
            .is_some_and(|a| a.as_str().contains('@'))
        {
            self.record(EventKind::HttpDenied {
                origin: origin_str,
                reason: "the URL carries user info (`user@`), which weft refuses".into(),
            });
            return Err(HttpError::HttpRequestUriInvalid);
        }
        if let Err(denial) = self.policy.check_origin(&origin) {
            self.record(EventKind::HttpDenied {
                origin: origin_str,
                reason: denial.to_string(),
            });
            return Err(HttpError::HttpRequestDenied);
        }

        // The first request token is taken before the body is read: a guest
        // over its quota does not get a body buffered in the host.
        self.acquire(&origin_str, deadline).await?;
        let (parts, body) = request.into_parts();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let body = match tokio::time::timeout(
            remaining,
            Limited::new(body, self.limits.max_http_request_bytes).collect(),
        )
        .await
        {
            Err(_) => return Err(HttpError::ConnectionWriteTimeout),
            Ok(Err(e)) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    self.record(EventKind::BodyTooLarge {
                        origin: origin_str,
                        limit: self.limits.max_http_request_bytes,
                    });
                    return Err(HttpError::HttpRequestBodySize(Some(
                        self.limits.max_http_request_bytes as u64,
                    )));
                }
                return Err(HttpError::InternalError(Some(format!(
                    "reading request body: {e}"
                ))));
            }
            Ok(Ok(b)) => b.to_bytes(),
        };

        let idempotent = is_idempotent(&parts.method);
        let outages = &self.shared.outages;
        let max_attempts = if outages.is_down(&self.tenant, &origin_str) {
            1
        } else {
            MAX_ATTEMPTS
        };
        let credential = self.credential_for(&origin);
        let mut stale_token = None;
        // How many tokens in a row the API refused with `401`.
        let mut refusals = 0u32;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if attempt > 1 {
                self.acquire(&origin_str, deadline).await?;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(HttpError::ConnectionTimeout);
            }
            let timeout = remaining.min(Duration::from_millis(self.limits.http_request_timeout_ms));

            let mut req = http::Request::builder()
                .method(parts.method.clone())
                .uri(parts.uri.clone())
                .version(http::Version::HTTP_11)
                .body(Full::new(body.clone()))
                .map_err(|e| HttpError::InternalError(Some(e.to_string())))?;
            *req.headers_mut() = parts.headers.clone();
            let mut used_token = None;
            match credential {
                Some(ResolvedAuth::Header(name, value)) => {
                    req.headers_mut().insert(name.clone(), value.clone());
                }
                Some(oauth @ ResolvedAuth::OAuth { .. }) => {
                    let token = self
                        .shared
                        .tokens
                        .token(
                            &self.tenant,
                            oauth,
                            stale_token.as_ref(),
                            &*self.shared.resolver,
                            &self.policy,
                            timeout,
                        )
                        .await;
                    match token {
                        Ok(t) => {
                            req.headers_mut()
                                .insert(http::header::AUTHORIZATION, t.clone());
                            used_token = Some(t);
                        }
                        Err(e) => {
                            self.record(EventKind::CredentialFailed {
                                origin: origin_str.clone(),
                                reason: e.to_string(),
                            });
                            // The token endpoint refusing the client is for a
                            // person to fix; anything else may pass.
                            return Err(HttpError::InternalError(Some(if e.client_refused {
                                format!("{CREDENTIAL_REFUSED}{e}")
                            } else {
                                format!("weft: {e}")
                            })));
                        }
                    }
                }
                None => {}
            }

            let result = client::send_once(
                &*self.shared.resolver,
                &self.policy,
                &origin,
                req,
                timeout,
                self.limits.max_http_response_bytes,
                Some(&self.pool),
            )
            .await;
            tracing::debug!(
                tenant = %self.tenant,
                connector = %self.connector,
                method = %parts.method,
                origin = %origin_str,
                attempt,
                status = result.as_ref().map(|r| r.status().as_u16()).unwrap_or(0),
                "outbound request"
            );
            crate::metrics::metrics()
                .http_requests
                .get_or_create(&crate::metrics::HttpLabels {
                    tenant: crate::metrics::tenant_label(&self.tenant),
                    origin: origin_str.clone(),
                    status: match &result {
                        Ok(r) => r.status().as_u16().to_string(),
                        Err(_) => "error".into(),
                    },
                })
                .inc();
            let wait = match result {
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED && used_token.is_some() {
                        // Tokens can die before their `expires_in`: refresh
                        // at once. A token refused right after it was issued
                        // is the API's trouble, not the tenant's: back off
                        // and refresh again while the call has time, then
                        // report it as transient, never as the 401 a guest
                        // would take for a configuration problem.
                        refusals += 1;
                        stale_token = used_token;
                        if refusals == 1 {
                            continue;
                        }
                        let w = backoff(refusals - 1);
                        if refusals < MAX_ATTEMPTS && Instant::now() + w < deadline {
                            tokio::time::sleep(w).await;
                            continue;
                        }
                        self.record(EventKind::CredentialFailed {
                            origin: origin_str.clone(),
                            reason: format!("{refusals} tokens in a row refused with 401"),
                        });
                        return Err(HttpError::InternalError(Some(format!(
                            "weft: {origin_str} refused {refusals} freshly issued tokens in a row (401); will retry later"
                        ))));
                    }
                    let retry = idempotent && attempt < max_attempts;
                    let wait = match status {
                        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                            if retry =>
                        {
                            retry_after(&resp)
                                .or_else(|| status.is_server_error().then(|| backoff(attempt)))
                        }
                        s if s.is_server_error() && retry => Some(backoff(attempt)),
                        _ => None,
                    };
                    match wait {
                        Some(w) if Instant::now() + w < deadline => w,
                        _ => {
                            if status.is_server_error() {
                                outages.mark(&self.tenant, &origin_str);
                            } else {
                                outages.clear(&self.tenant, &origin_str);
                            }
                            return Ok(resp);
                        }
                    }
                }
                Err(SendError::Denied(d)) => {
                    let address = match &d {
                        policy::Denial::PrivateAddress(ip) => ip.to_string(),
                        other => other.to_string(),
                    };
                    self.record(EventKind::AddressDenied {
                        host: origin.host.clone(),
                        address,
                    });
                    return Err(HttpError::DestinationIpProhibited);
                }
                Err(SendError::BodyTooLarge(limit)) => {
                    self.record(EventKind::BodyTooLarge {
                        origin: origin_str.clone(),
                        limit,
                    });
                    return Err(HttpError::HttpResponseBodySize(Some(limit as u64)));
                }
                Err(e) => {
                    let w = backoff(attempt);
                    if idempotent
                        && e.is_retryable()
                        && attempt < max_attempts
                        && Instant::now() + w < deadline
                    {
                        w
                    } else {
                        if e.is_retryable() {
                            outages.mark(&self.tenant, &origin_str);
                        }
                        return Err(match e {
                            SendError::Dns(_, m) => HttpError::DnsError {
                                rcode: Some(m),
                                info_code: None,
                            },
                            SendError::Connect(..) => HttpError::ConnectionRefused,
                            SendError::Timeout => HttpError::ConnectionTimeout,
                            SendError::Tls(..) => HttpError::TlsProtocolError,
                            other => HttpError::InternalError(Some(other.to_string())),
                        });
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= Duration::from_millis(200));
        assert!(backoff(1) >= Duration::from_millis(100));
        assert!(backoff(4) >= Duration::from_millis(800));
        assert!(backoff(30) <= Duration::from_secs(10));
    }

    #[test]
    fn only_idempotent_methods_are_retried() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
    }
}
