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
use std::sync::Arc;

const INDEX_HTML: &str = include_str!("../../console/index.html");
const APP_JS: &str = include_str!("../../console/app.js");
const APP_CSS: &str = include_str!("../../console/app.css");

/// Scripts, styles, images and API calls from this origin only; no
/// plugins, no `<base>` games, forms post nowhere else; framed only by
/// this origin and `frame_ancestors` (the platform embedding the console).
fn csp(frame_ancestors: &[String]) -> String {
    let mut ancestors = String::from("'self'");
    for origin in frame_ancestors {
        ancestors.push(' ');
        ancestors.push_str(origin);
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
    )
}

/// The console's routes: `/` and its assets under `/console/`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(frame_ancestors: &[String]) -> Router<S> {
    let csp: Arc<str> = csp(frame_ancestors).into();
    let serve = move |content_type: &'static str, body: &'static str| {
        let csp = csp.clone();
        get(move || async move { asset(content_type, body, &csp) })
    };
    Router::new()
        .route("/", serve("text/html; charset=utf-8", INDEX_HTML))
        .route(
            "/console/app.js",
            serve("text/javascript; charset=utf-8", APP_JS),
        )
        .route(
            "/console/app.css",
            serve("text/css; charset=utf-8", APP_CSS),
        )
}

fn asset(content_type: &'static str, body: &'static str, csp: &str) -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // A new binary may bring new files: ask each time (they are
            // small, and revalidation needs no server state).
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    if let Ok(v) = header::HeaderValue::from_str(csp) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_may_be_framed_by_its_own_origin_and_the_platforms_only() {
        assert!(csp(&[]).ends_with("frame-ancestors 'self'"));
        let framed = csp(&["https://app.example.com".into()]);
        assert!(
            framed.ends_with("frame-ancestors 'self' https://app.example.com"),
            "{framed}"
        );
        assert!(framed.contains("script-src 'self';"), "{framed}");
    }
}
