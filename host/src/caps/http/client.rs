//! One outbound HTTP attempt, with the policy's address check in the path:
//! the host name is resolved here, every address is checked, and the
//! connection goes to a checked address (so a second DNS answer cannot swap
//! in a private one). Responses are read whole, up to a size cap.

use super::policy::{Denial, Origin, Policy};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
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

/// Makes one request to `origin` within `timeout`, reading at most
/// `max_body` bytes of response body.
pub async fn send_once(
    resolver: &dyn Resolver,
    policy: &Policy,
    origin: &Origin,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> Result<http::Response<Bytes>, SendError> {
    tokio::time::timeout(timeout, attempt(resolver, policy, origin, req, max_body))
        .await
        .unwrap_or(Err(SendError::Timeout))
}

async fn attempt(
    resolver: &dyn Resolver,
    policy: &Policy,
    origin: &Origin,
    mut req: http::Request<Full<Bytes>>,
    max_body: usize,
) -> Result<http::Response<Bytes>, SendError> {
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

    let response = if origin.scheme == "https" {
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(origin.host.clone())
            .map_err(|e| SendError::Tls(origin.to_string(), std::io::Error::other(e)))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, stream)
            .await
            .map_err(|e| SendError::Tls(origin.to_string(), e))?;
        exchange(TokioIo::new(tls), req).await?
    } else {
        exchange(TokioIo::new(stream), req).await?
    };

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
    Ok(http::Response::from_parts(parts, body.to_bytes()))
}

async fn exchange<IO>(
    io: TokioIo<IO>,
    req: http::Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, SendError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| SendError::Protocol(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "outbound connection ended with an error");
        }
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| SendError::Protocol(e.to_string()))
}
