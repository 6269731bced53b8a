//! Stand-ins for the outside systems weft's first integration talks to, so
//! that tests and the demo run against servers that behave like the real
//! ones, faults included:
//!
//! - [`acme`]: the Acme CRM API (`../shared/specs/acme-crm-api.md`).
//! - [`dashboard`]: our touch-points dashboard (`../shared/specs/our-app.md` §2).
//! - [`radicale`]: starts and stops a real CalDAV server (Radicale) from the
//!   project's virtualenv.
//!
//! Every server binds the address it is given (tests use `127.0.0.1:0`) and
//! stops when its handle is stopped or dropped.

#![deny(missing_docs)]

pub mod acme;
pub mod dashboard;
pub mod radicale;

use std::time::{Duration, Instant};

/// Sends the logs of a sandbox's binary to stderr (stdout is for what the
/// binary prints for its caller: its URL and credentials).
pub fn log_to_stderr() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
}

/// A server running on a task of its own: it stops when [`Serving::stop`]
/// is called or when it is dropped. Every server of this crate, and the
/// sandbox tests' receiver, runs in one.
pub struct Serving {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Serving {
    /// Serves `app` on `listener` until stopped.
    pub fn start(listener: tokio::net::TcpListener, app: axum::Router) -> Self {
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Serving {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Binds `listen` (port 0: one the OS picks) and serves `app` there
    /// until stopped; the address bound.
    pub async fn bind(
        listen: std::net::SocketAddr,
        app: axum::Router,
    ) -> std::io::Result<(std::net::SocketAddr, Self)> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        Ok((addr, Serving::start(listener, app)))
    }

    /// Stops serving and waits for the server to end.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `burst`.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(burst: u32) -> Self {
        Bucket {
            tokens: f64::from(burst),
            at: Instant::now(),
        }
    }

    fn refill(&mut self, rate: f64, burst: u32) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(f64::from(burst));
        self.at = now;
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&mut self, rate: f64, burst: u32) -> Result<(), Duration> {
        self.refill(rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / rate.max(1e-9),
            ))
        }
    }

    /// Whole tokens left.
    pub fn remaining(&self) -> u32 {
        self.tokens.max(0.0).floor() as u32
    }

    /// How long until the bucket is full again.
    pub fn until_full(&self, rate: f64, burst: u32) -> Duration {
        Duration::from_secs_f64(((f64::from(burst) - self.tokens).max(0.0)) / rate.max(1e-9))
    }
}

/// Whether a fault with probability `share` strikes now.
pub(crate) fn roll(rng: &mut impl rand::Rng, share: f64) -> bool {
    share > 0.0 && rng.random_bool(share.clamp(0.0, 1.0))
}
