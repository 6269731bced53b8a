//! A tiny HTTP client and a recording receiver for the sandbox tests.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// An answer, read whole.
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).cloned()
    }
}

pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<(&str, String)>,
) -> Resp {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut b = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    let req = match body {
        Some((ct, text)) => b
            .header("content-type", ct)
            .body(Full::new(Bytes::from(text))),
        None => b.body(Full::new(Bytes::new())),
    }
    .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let text =
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
    Resp {
        status,
        headers,
        text,
    }
}

pub async fn get(base: &str, path: &str, headers: &[(&str, String)]) -> Resp {
    request("GET", &format!("{base}{path}"), headers, None).await
}

pub async fn delete(base: &str, path: &str) -> Resp {
    request("DELETE", &format!("{base}{path}"), &[], None).await
}

pub async fn post_form(base: &str, path: &str, form: &str) -> Resp {
    request(
        "POST",
        &format!("{base}{path}"),
        &[],
        Some(("application/x-www-form-urlencoded", form.to_owned())),
    )
    .await
}

/// `method` with the JSON `body` to `base` + `path`, with `headers`.
pub async fn send_json(
    method: &str,
    base: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &Value,
) -> Resp {
    let json = ("application/json", body.to_string());
    request(method, &format!("{base}{path}"), headers, Some(json)).await
}

pub async fn post_json(base: &str, path: &str, body: &Value) -> Resp {
    send_json("POST", base, path, &[], body).await
}

pub async fn post_json_auth(base: &str, path: &str, body: &Value, auth: (&str, String)) -> Resp {
    send_json("POST", base, path, &[auth], body).await
}

pub async fn put_json(base: &str, path: &str, body: &Value) -> Resp {
    send_json("PUT", base, path, &[], body).await
}

pub async fn patch_json(base: &str, path: &str, body: &Value) -> Resp {
    send_json("PATCH", base, path, &[], body).await
}

/// One request a [`TestServer`] received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// A recording HTTP receiver on 127.0.0.1 that answers with the status the
/// script returns; stops when dropped.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _serving: weft_sandbox::Serving,
}

impl TestServer {
    pub async fn start(script: impl Fn(&Seen) -> u16 + Send + Sync + 'static) -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s2 = seen.clone();
        let script = Arc::new(script);
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (seen, script) = (s2.clone(), script.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default()
                    .to_vec();
                let s = Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.to_string(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect(),
                    body,
                };
                let status = script(&s);
                seen.lock().unwrap().push(s);
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        });
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let (addr, _serving) = weft_sandbox::Serving::bind(loopback, app).await.unwrap();
        TestServer {
            addr,
            seen,
            _serving,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
