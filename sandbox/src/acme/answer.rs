//! What the API's handlers answer before headers are added: a status, a
//! JSON body and extra headers; shared by `api` (which routes) and
//! `webhooks` (registration), so that neither imports the other.

use axum::http::StatusCode;
use serde_json::{Value, json};

/// An answer before headers: status, JSON body, extra headers.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub(crate) fn with_body(status: StatusCode, body: Value) -> Self {
        Answer {
            status,
            body,
            headers: vec![],
        }
    }
}

pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Answer {
    Answer {
        status,
        body: json!({ "error": { "code": code, "message": message.into() } }),
        headers: vec![],
    }
}
