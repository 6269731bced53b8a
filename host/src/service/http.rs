//! The HTTP front door of `weft serve`: accepts connections and hands each
//! to hyper with the router, under limits that keep slow or greedy clients
//! from starving everyone else.
//!
//! - **Headers in time**: a request's headers must arrive within
//!   `service.header_timeout_secs`; the same timer closes a kept-alive
//!   connection that sends no next request (hyper starts it whenever it
//!   waits for a request head).
//! - **A cap on connections** (`service.max_connections`), kept below the
//!   process's file-descriptor limit, which is raised to its hard limit at
//!   start; and a cap per client address (`service.max_connections_per_ip`),
//!   so that one client holding sockets open cannot take every slot from
//!   health checks and webhook senders.
//! - **Full is an answer**: past either cap a connection gets `503` with
//!   `Retry-After: 1` and is closed, without reading its request.
//! - **Body limits per route** are the routes' own (see
//!   [`super::router`]): admin JSON up to `service.max_request_bytes`,
//!   webhooks up to `service.max_webhook_bytes`, uploads up to
//!   `limits.max_component_bytes`, streamed to disk.
//!
//! Shutdown: when `stop` completes the listener closes, connections finish
//! the request they are serving (hyper's graceful shutdown) and idle ones
//! close.
//!
//! This module knows nothing of weft's routes: it serves any router.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// File descriptors kept out of the connection cap for everything else
/// the process opens (state files, the registry, outbound connections): a
/// quarter of the limit, at most 256.
pub fn fd_reserve(limit: u64) -> u64 {
    (limit / 4).min(256)
}

/// The front door's limits.
#[derive(Debug, Clone)]
pub struct FrontDoor {
    /// How long a request's headers (or an idle connection's next request)
    /// may take to arrive.
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one client address; 0: no cap.
    pub max_connections_per_ip: usize,
    /// Refused connections answered at once (each holds a file descriptor
    /// of the reserve for a moment); past it a refused connection is
    /// closed without an answer.
    pub max_refusals: usize,
}

impl FrontDoor {
    /// The limits of `service`, with the connection cap lowered below the
    /// file-descriptor limit (raised to its hard limit first, where the
    /// system allows).
    pub fn from_config(service: &crate::config::ServiceConfig) -> Self {
        let fds = raise_fd_limit();
        let room = fds.saturating_sub(fd_reserve(fds)).max(16) as usize;
        let max_connections = service.max_connections.min(room);
        if max_connections < service.max_connections {
            tracing::info!(
                fd_limit = fds,
                max_connections,
                "service.max_connections lowered below the file-descriptor limit"
            );
        }
        FrontDoor {
            header_timeout: Duration::from_secs(service.header_timeout_secs),
            max_connections,
            max_connections_per_ip: service.max_connections_per_ip,
            // What the descriptors left beside the served connections and
            // half the reserve allow, between 8 and 4096.
            max_refusals: fds
                .saturating_sub(max_connections as u64)
                .saturating_sub(fd_reserve(fds) / 2)
                .clamp(8, 4096) as usize,
        }
    }
}

/// Raises the soft limit of open files to the hard limit; the soft limit
/// in force afterwards.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "reading the file-descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024)
        }
    }
}

/// Connections per client address.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted against its address until dropped.
struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<IpSlot> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_default();
        if cap > 0 && *n >= cap {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// The answer to a connection past a cap.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: application/json\r\ncontent-length: 49\r\nconnection: close\r\n\r\n{\"error\":\"the server is at its connection limit\"}";

/// Serves `router` on `listener` until `stop` completes, then lets the
/// connections finish what they serve.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: FrontDoor,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp::default());
    let full_answers = Arc::new(Semaphore::new(limits.max_refusals));
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors (or another passing error):
                    // wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let admitted = slots.clone().try_acquire_owned().ok().and_then(|permit| {
            per_ip
                .take(peer.ip(), limits.max_connections_per_ip)
                .map(|slot| (permit, slot))
        });
        match admitted {
            Some((permit, slot)) => {
                let _ = stream.set_nodelay(true);
                let conn = connection(stream, &router, &limits);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                    drop((permit, slot));
                });
            }
            None => {
                crate::metrics::metrics().connections_refused.inc();
                if let Ok(permit) = full_answers.clone().try_acquire_owned() {
                    tokio::spawn(answer_full(stream, peer, permit));
                }
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn connection(
    stream: TcpStream,
    router: &Router,
    limits: &FrontDoor,
) -> hyper::server::conn::http1::Connection<TokioIo<TcpStream>, TowerToHyperService<Router>> {
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        )
}

async fn answer_full(mut stream: TcpStream, peer: SocketAddr, _permit: OwnedSemaphorePermit) {
    use tokio::io::AsyncReadExt;
    let answer = async {
        stream.write_all(FULL).await?;
        stream.shutdown().await?;
        // Take in what the client sends until it pauses for 20 ms (or
        // closes): a socket closed with unread data is reset, and a reset
        // can destroy the answer before the client reads it. A client that
        // keeps sending is not waited for past the second below.
        let mut sink = [0u8; 4096];
        while let Ok(read) =
            tokio::time::timeout(Duration::from_millis(20), stream.read(&mut sink)).await
        {
            if read? == 0 {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    if tokio::time::timeout(Duration::from_secs(1), answer)
        .await
        .is_err()
    {
        tracing::debug!(%peer, "a refused connection did not take its answer");
    }
}
