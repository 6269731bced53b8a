//! [`Ops`] over a running `weft serve`'s admin API, with hyper's
//! maintained client (`hyper_util`'s pooled client over HTTP/1).

use super::api::{
    ConnectorAdded, ConnectorVersion, DeadLetterView, FlowReset, FlowState, Replayed, ResetBody,
    TenantSummary,
};
use super::{OpError, OpResult, Ops, Scope, select_flows};
use crate::state::RunRecord;
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;

/// The operations of the `weft serve` at `base`, as the holder of `token`.
pub struct Remote {
    base: String,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Remote {
    /// The server at `base` (`http://host:port`), with an admin API token.
    pub fn new(base: &str, token: &str) -> Self {
        Remote {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `method path` with `body`: the answer's bytes on success; an error
    /// answer becomes [`OpError`] by its status, with the server's words.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> OpResult<Bytes> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .with_context(|| format!("--server {}: not a usable URL", self.base))?;
        let resp = self
            .client
            .request(req)
            .await
            .with_context(|| format!("{method} {path} at weft serve {}", self.base))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("{method} {path}: reading the answer"))?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        let why = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        let why = format!("{method} {path}: {status}: {why}");
        Err(match status.as_u16() {
            404 => OpError::NotFound(why),
            400..=499 => OpError::Invalid(why),
            _ => OpError::Other(anyhow::anyhow!(why)),
        })
    }

    /// A JSON call: `body` sent as JSON (none: empty), the answer read as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> OpResult<T> {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let bytes = self.send(method, path, "application/json", body).await?;
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"null")
        } else {
            bytes
        };
        Ok(serde_json::from_slice(&bytes)
            .with_context(|| format!("{method} {path}: the answer is not what weft serves"))?)
    }
}

/// `?tenant=…&flow=…` of a scope.
fn query(scope: &Scope) -> String {
    let mut q = Vec::new();
    if let Some(t) = &scope.tenant {
        q.push(format!("tenant={t}"));
    }
    if let Some(f) = &scope.flow {
        q.push(format!("flow={f}"));
    }
    q.join("&")
}

impl Ops for Remote {
    async fn dead_letters(&self, scope: &Scope) -> OpResult<Vec<DeadLetterView>> {
        self.call("GET", &format!("/v1/dead-letters?{}", query(scope)), None)
            .await
    }

    async fn dead_letter(&self, id: &str) -> OpResult<DeadLetterView> {
        self.call("GET", &format!("/v1/dead-letters/{id}"), None)
            .await
    }

    async fn discard_dead_letter(&self, id: &str) -> OpResult<()> {
        self.send(
            "DELETE",
            &format!("/v1/dead-letters/{id}"),
            "application/json",
            vec![],
        )
        .await?;
        Ok(())
    }

    async fn replay(&self, id: &str) -> OpResult<Replayed> {
        self.call("POST", &format!("/v1/dead-letters/{id}/replay"), None)
            .await
    }

    async fn replay_all(&self, scope: &Scope) -> OpResult<Vec<Replayed>> {
        self.call(
            "POST",
            &format!("/v1/dead-letters/replay?{}", query(scope)),
            None,
        )
        .await
    }

    async fn flows(&self, scope: &Scope) -> OpResult<Vec<(String, String)>> {
        let tenants: BTreeMap<String, TenantSummary> =
            self.call("GET", "/v1/tenants", None).await?;
        // The listing does not say which flows are paused.
        let listed = tenants.iter().map(|(id, t)| {
            let unpaused = t.flows.iter().map(|f| (f.as_str(), false)).collect();
            (id.as_str(), t.active, unpaused)
        });
        select_flows(listed, scope)
    }

    async fn flow_state(&self, tenant: &str, flow: &str) -> OpResult<FlowState> {
        self.call(
            "GET",
            &format!("/v1/tenants/{tenant}/flows/{flow}/state"),
            None,
        )
        .await
    }

    async fn reset_flow(
        &self,
        tenant: &str,
        flow: &str,
        since: Option<&str>,
    ) -> OpResult<FlowReset> {
        let body = ResetBody {
            since: since.map(str::to_owned),
        };
        self.call(
            "POST",
            &format!("/v1/tenants/{tenant}/flows/{flow}/reset"),
            Some(serde_json::to_value(body).context("writing the reset")?),
        )
        .await
    }

    async fn runs(&self, scope: &Scope, limit: usize) -> OpResult<Vec<RunRecord>> {
        self.call(
            "GET",
            &format!("/v1/runs?limit={limit}&{}", query(scope)),
            None,
        )
        .await
    }

    async fn run_record(&self, id: &str) -> OpResult<RunRecord> {
        self.call("GET", &format!("/v1/runs/{id}"), None).await
    }

    async fn connectors(&self, _tenant: Option<&str>) -> OpResult<Vec<ConnectorVersion>> {
        // The server scopes the listing to what the token sees.
        self.call("GET", "/v1/connectors", None).await
    }

    async fn add_connector(&self, file: &Path) -> OpResult<ConnectorAdded> {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let answer = self
            .send("POST", "/v1/connectors", "application/octet-stream", bytes)
            .await?;
        Ok(serde_json::from_slice(&answer).context("reading the server's answer")?)
    }

    async fn export_config(&self) -> OpResult<String> {
        let bytes = self
            .send("GET", "/v1/config/export", "application/json", vec![])
            .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
