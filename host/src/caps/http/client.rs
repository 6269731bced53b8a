//! One outbound HTTP attempt, with the policy's address check in the path:
//! the host name is resolved here, every address is checked, and the
//! connection goes to a checked address (so a second DNS answer cannot swap
//! in a private one). Responses are read whole, up to a size cap. A
//! connector instance keeps its connections alive between requests in a
//! [`Pool`].

use super::is_idempotent;
use super::policy::{Denial, Origin, Policy};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Resolves host names to addresses.
pub trait Resolver: Send + Sync + 'static {
    /// The addresses of `host`.
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'a>>;
}

/// The system resolver.
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'a>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host, port))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// A fixed name table, for tests that must not depend on real DNS.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver(pub HashMap<String, Vec<IpAddr>>);

impl Resolver for StaticResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        _port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'a>> {
        let found = self.0.get(host).cloned();
        Box::pin(async move {
            found.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host}: no such host"),
                )
            })
        })
    }
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The policy refused the resolved address.
    #[error("denied: {0}")]
    Denied(Denial),
    /// The name did not resolve.
    #[error("DNS lookup of {0} failed: {1}")]
    Dns(String, String),
    /// No connection could be made.
    #[error("connection to {0} failed: {1}")]
    Connect(String, std::io::Error),
    /// TLS failed.
    #[error("TLS with {0} failed: {1}")]
    Tls(String, std::io::Error),
    /// The attempt ran out of time.
    #[error("timed out")]
    Timeout,
    /// The response body was larger than allowed.
    #[error("response body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The peer broke HTTP.
    #[error("HTTP protocol error: {0}")]
    Protocol(String),
}

impl SendError {
    /// Whether trying again may help (the request may not have been
    /// processed, or the failure was in transport).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SendError::Connect(..)
                | SendError::Timeout
                | SendError::Protocol(_)
                | SendError::Dns(..)
        )
    }
}

fn tls_config() -> Arc<tokio_rustls::rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<tokio_rustls::rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = tokio_rustls::rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            Arc::new(
                tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default TLS versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        })
        .clone()
}

/// Connections kept alive between the requests of one connector instance,
/// by origin: a run's pages from one vendor go over one connection (and one
/// TLS handshake) instead of one each. A connection serves one request at a
/// time; it goes back to the pool once its answer was read whole, and is
/// dropped when the server closes it or after [`IDLE_TIMEOUT`] unused. It
/// was made to an address the policy allowed, for the origin it is kept
/// under, and nothing else.
#[derive(Default)]
pub struct Pool {
    idle: std::sync::Mutex<HashMap<String, Vec<(Sender, Instant)>>>,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// How long an unused connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most idle connections kept per origin.
const MAX_IDLE_PER_ORIGIN: usize = 8;

impl Pool {
    /// An idle connection to `origin` that can take a request now.
    fn take(&self, origin: &str) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(origin)?;
        while let Some((sender, since)) = list.pop() {
            if since.elapsed() < IDLE_TIMEOUT && sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps a connection whose answer was read whole.
    fn put(&self, origin: String, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(origin).or_default();
        list.retain(|(s, since)| since.elapsed() < IDLE_TIMEOUT && !s.is_closed());
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push((sender, Instant::now()));
        }
    }
}

/// Makes one request to `origin` within `timeout`, reading at most
/// `max_body` bytes of response body, over a connection of `pool` if one
/// is idle (and keeping the connection there afterwards).
pub async fn send_once(
    resolver: &dyn Resolver,
    policy: &Policy,
    origin: &Origin,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
    pool: Option<&Pool>,
) -> Result<http::Response<Bytes>, SendError> {
    tokio::time::timeout(
        timeout,
        attempt(resolver, policy, origin, req, max_body, pool),
    )
    .await
    .unwrap_or(Err(SendError::Timeout))
}

async fn attempt(
    resolver: &dyn Resolver,
    policy: &Policy,
    origin: &Origin,
    mut req: http::Request<Full<Bytes>>,
    max_body: usize,
    pool: Option<&Pool>,
) -> Result<http::Response<Bytes>, SendError> {
    prepare(origin, &mut req)?;
    let key = origin.to_string();
    if let Some(mut sender) = pool.and_then(|p| p.take(&key)) {
        // A server may close an idle connection just as a request goes out
        // on it. An idempotent request then goes again on a new connection
        // (RFC 9110, 9.2.2), as one that never went out does.
        let again = is_idempotent(req.method()).then(|| copy(&req));
        match sender.try_send_request(req).await {
            Ok(response) => return read_whole(response, max_body, pool, key, sender).await,
            Err(mut e) => match (e.take_message(), again) {
                (Some(unsent), _) => req = unsent,
                (None, Some(copied)) => req = copied,
                (None, None) => return Err(SendError::Protocol(e.into_error().to_string())),
            },
        }
    }
    let addrs = match origin.host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => resolver
            .resolve(&origin.host, origin.port)
            .await
            .map_err(|e| SendError::Dns(origin.host.clone(), e.to_string()))?,
    };
    if addrs.is_empty() {
        return Err(SendError::Dns(origin.host.clone(), "no addresses".into()));
    }
    policy
        .check_addrs(origin, &addrs)
        .map_err(SendError::Denied)?;

    let mut last_err = None;
    let mut stream = None;
    for ip in &addrs {
        match TcpStream::connect(SocketAddr::new(*ip, origin.port)).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let stream = match stream {
        Some(s) => s,
        None => {
            let e = last_err.unwrap_or_else(|| std::io::Error::other("no address to connect to"));
            return Err(SendError::Connect(origin.to_string(), e));
        }
    };
    let _ = stream.set_nodelay(true);

    let mut sender = if origin.scheme == "https" {
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(origin.host.clone())
            .map_err(|e| SendError::Tls(origin.to_string(), std::io::Error::other(e)))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, stream)
            .await
            .map_err(|e| SendError::Tls(origin.to_string(), e))?;
        handshake(TokioIo::new(tls)).await?
    } else {
        handshake(TokioIo::new(stream)).await?
    };
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| SendError::Protocol(e.to_string()))?;
    read_whole(response, max_body, pool, key, sender).await
}

/// A copy of `req` (its body is shared, not copied).
fn copy(req: &http::Request<Full<Bytes>>) -> http::Request<Full<Bytes>> {
    let mut c = http::Request::new(req.body().clone());
    *c.method_mut() = req.method().clone();
    *c.uri_mut() = req.uri().clone();
    *c.version_mut() = req.version();
    *c.headers_mut() = req.headers().clone();
    c
}

/// Sets what the connection-level client needs: a `Host` header and an
/// origin-form target.
fn prepare(origin: &Origin, req: &mut http::Request<Full<Bytes>>) -> Result<(), SendError> {
    // The `Host` header names the checked origin and nothing else (no user
    // info, whatever the guest put in the URL or the header).
    let host_header = match (
        origin.host.contains(':'),
        origin.port,
        origin.scheme.as_str(),
    ) {
        (v6, 80, "http") | (v6, 443, "https") => {
            if v6 {
                format!("[{}]", origin.host)
            } else {
                origin.host.clone()
            }
        }
        (true, port, _) => format!("[{}]:{port}", origin.host),
        (false, port, _) => format!("{}:{port}", origin.host),
    };
    req.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_str(&host_header)
            .map_err(|e| SendError::Protocol(format!("bad host {host_header:?}: {e}")))?,
    );
    // hyper's connection-level client wants origin-form request targets.
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    *req.uri_mut() = path
        .parse()
        .map_err(|e| SendError::Protocol(format!("bad request path: {e}")))?;

    Ok(())
}

/// Reads the answer's body (at most `max_body` bytes); the connection goes
/// back to `pool` once it is read whole.
async fn read_whole(
    response: http::Response<hyper::body::Incoming>,
    max_body: usize,
    pool: Option<&Pool>,
    origin: String,
    sender: Sender,
) -> Result<http::Response<Bytes>, SendError> {
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, max_body).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            SendError::BodyTooLarge(max_body)
        } else {
            SendError::Protocol(format!("reading response body: {e}"))
        }
    })?;
    if let Some(pool) = pool {
        pool.put(origin, sender);
    }
    Ok(http::Response::from_parts(parts, body.to_bytes()))
}

/// An HTTP/1.1 connection over `io`, driven by a task of its own until it
/// closes.
async fn handshake<IO>(io: TokioIo<IO>) -> Result<Sender, SendError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| SendError::Protocol(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "outbound connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// How a test server ends each exchange.
    #[derive(Clone, Copy)]
    enum Ending {
        /// Keeps the connection open for the next request.
        KeepAlive,
        /// Says `Connection: close` and closes.
        SaysClose,
        /// Closes without saying so.
        Hangs,
    }

    /// A tiny HTTP/1.1 server on loopback answering `ok` to every request;
    /// returns its origin and the number of connections it accepted.
    async fn server(ending: Ending) -> (Origin, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        buf.drain(..end);
                        let close = match ending {
                            Ending::SaysClose => "Connection: close\r\n",
                            _ => "",
                        };
                        let answer =
                            format!("HTTP/1.1 200 OK\r\n{close}Content-Length: 2\r\n\r\nok");
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        if !matches!(ending, Ending::KeepAlive) {
                            return;
                        }
                    }
                });
            }
        });
        let origin = Origin {
            scheme: "http".into(),
            host: "127.0.0.1".into(),
            port,
        };
        (origin, accepted)
    }

    async fn get(origin: &Origin, pool: Option<&Pool>) -> http::Response<Bytes> {
        let policy = Policy {
            private_hosts: vec!["127.0.0.1".into()],
            ..Policy::default()
        };
        let req = http::Request::get(format!("{origin}/x"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        send_once(
            &SystemResolver,
            &policy,
            origin,
            req,
            Duration::from_secs(5),
            1 << 10,
            pool,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_pool_sends_requests_one_after_another_over_one_connection() {
        let (origin, accepted) = server(Ending::KeepAlive).await;
        let pool = Pool::default();
        for _ in 0..3 {
            assert_eq!(get(&origin, Some(&pool)).await.body().as_ref(), b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // Without a pool, a connection each.
        for _ in 0..2 {
            get(&origin, None).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn connections_the_server_closes_are_replaced() {
        for ending in [Ending::SaysClose, Ending::Hangs] {
            let (origin, accepted) = server(ending).await;
            let pool = Pool::default();
            // Right after each other: whether the close reached the client
            // before the next request or not, each gets its answer.
            for _ in 0..3 {
                assert_eq!(get(&origin, Some(&pool)).await.body().as_ref(), b"ok");
            }
            assert_eq!(accepted.load(Ordering::SeqCst), 3);
        }
    }
}
