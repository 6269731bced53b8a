//! The console: a web app for operators and tenant admins, served at `/`.
//!
//! It is a client of the admin API and nothing else. Its three files
//! (`host/console/`) are compiled into the binary and served as they are:
//! no CDN, no build step, it works offline. The page holds the token it
//! was given (pasted, or from a link's `#token=` fragment, which never
//! reaches a server's logs) in the tab's `sessionStorage` and sends it as
//! `Authorization: Bearer` to `/v1`, so it can never do more than that
//! token may: a tenant token sees its own tenant's pages and nothing else.
//!
//! This module must not reach into the host: it serves bytes, with headers
//! that keep the page to its own origin (a content security policy that
//! allows no inline script and no other origin).

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../../console/index.html");
const APP_JS: &str = include_str!("../../console/app.js");
const APP_CSS: &str = include_str!("../../console/app.css");

/// Scripts, styles, images and API calls from this origin only; no
/// plugins, no `<base>` games, forms post nowhere else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'";

/// The console's routes: `/` and its assets under `/console/`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/console/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // A new binary may bring new files: ask each time (they are
            // small, and revalidation needs no server state).
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
