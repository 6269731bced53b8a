//! Webhook subscriptions with vendors, made by the host for sources that
//! export the optional `weft:webhooks/registration` interface
//! (`wit/webhooks-v0.1.0`).
//!
//! The connector only describes the requests ([`WebhookSetup`]); the host
//! makes them with the tenant's grants and credentials
//! ([`ConnectorInstance::host_http`]), reads the subscription ID and the
//! signing secret from the vendor's answer, seals the secret in the tenant's
//! vault (`webhook-{flow}`, and `webhook-{flow}-previous` during a
//! rotation's overlap) and keeps the subscription as a `webhook` document.
//! The connector never sees the answer, so it never sees the secret.
//! Webhook ingress accepts signatures made with either secret.

use crate::Host;
use crate::model::{HttpCall, WebhookSetup};
use crate::runtime::connector::ConnectorInstance;
use crate::state::now_ms;
use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The state-store document kind of subscriptions (`{tenant}/{flow}`).
pub const SUBSCRIPTION_DOC: &str = "webhook";

/// The document kind of subscriptions weft could not delete at the vendor
/// (`{tenant}/{flow}/{id}`): kept, and listed, so that a person can remove
/// them there, instead of forgotten while the vendor keeps delivering.
pub const ORPHAN_DOC: &str = "webhook-orphan";

/// A subscription as listed for a tenant: live, or orphaned at the vendor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// The flow it was made for.
    pub flow: String,
    /// The subscription.
    pub subscription: Subscription,
    /// Why it could not be deleted at the vendor; none: live.
    pub orphaned: Option<String>,
}

/// A flow's subscription to a vendor's webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The vendor's ID of the subscription.
    pub id: String,
    /// The URL the vendor delivers to.
    pub url: String,
    /// How it was made (for rotating and deleting it).
    pub setup: WebhookSetup,
    /// When it was made.
    pub created_ms: u64,
    /// When its secret was last rotated.
    pub rotated_ms: Option<u64>,
}

/// Why a subscription request cannot be made, whatever the vendor would
/// say (the admin API answers these 404 and 409, and a vendor's failure
/// 502).
#[derive(Debug, thiserror::Error)]
pub enum NotPossible {
    /// There is no subscription to rotate or delete.
    #[error("the flow has no webhook subscription")]
    NoSubscription,
    /// The source cannot subscribe the flow (the reason, in words).
    #[error("{0}")]
    CannotRegister(String),
    /// The vendor offers no rotation.
    #[error("the vendor's webhooks cannot be rotated")]
    CannotRotate,
}

/// The tenant secret names of a flow's current and previous signing secret.
pub fn secret_names(flow: &str) -> (String, String) {
    (
        format!("webhook-{flow}"),
        format!("webhook-{flow}-previous"),
    )
}

fn doc_id(tenant: &str, flow: &str) -> String {
    format!("{tenant}/{flow}")
}

/// `call` as a request: `{url}` and `{id}` filled in.
fn request(
    call: &HttpCall,
    url: &str,
    id: Option<&str>,
) -> anyhow::Result<http::Request<bytes::Bytes>> {
    let fill = |s: &str, json: bool| {
        let u = if json {
            let quoted = serde_json::to_string(url).unwrap_or_default();
            quoted[1..quoted.len() - 1].to_owned()
        } else {
            url.to_owned()
        };
        let s = s.replace("{url}", &u);
        match id {
            Some(id) => s.replace("{id}", id),
            None => s,
        }
    };
    let mut b = http::Request::builder()
        .method(call.method.as_str())
        .uri(fill(&call.url, false));
    let body = match &call.body {
        Some(body) => {
            b = b.header("content-type", "application/json");
            bytes::Bytes::from(fill(body, true))
        }
        None => bytes::Bytes::new(),
    };
    b.body(body).context("building the vendor request")
}

/// The string at `pointer` in `v` (numbers are written as text).
fn at(v: &Value, pointer: &str, what: &str) -> anyhow::Result<String> {
    match v.pointer(pointer) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => bail!("the vendor's answer has no {what} at {pointer}"),
    }
}

impl Host {
    /// The URL at which `tenant`'s `flow` receives webhooks.
    pub fn webhook_url(&self, tenant: &str, flow: &str) -> String {
        format!(
            "{}/hooks/{tenant}/{flow}",
            self.public_url().trim_end_matches('/')
        )
    }

    /// The tenant's subscriptions: live ones, and orphans that could not be
    /// deleted at the vendor (the tenant may have been deleted since).
    pub fn subscriptions_of(&self, tenant: &str) -> anyhow::Result<Vec<Listed>> {
        let mut out = Vec::new();
        for (id, doc) in self
            .state
            .doc_list(SUBSCRIPTION_DOC, &format!("{tenant}/"))?
        {
            let flow = id[tenant.len() + 1..].to_owned();
            out.push(Listed {
                flow,
                subscription: serde_json::from_slice(&doc).context("reading a subscription")?,
                orphaned: None,
            });
        }
        for (_, doc) in self.state.doc_list(ORPHAN_DOC, &format!("{tenant}/"))? {
            out.push(serde_json::from_slice(&doc).context("reading an orphaned subscription")?);
        }
        Ok(out)
    }

    /// The flow's subscription, if it has one.
    pub fn subscription(&self, tenant: &str, flow: &str) -> anyhow::Result<Option<Subscription>> {
        self.state
            .doc_get(SUBSCRIPTION_DOC, &doc_id(tenant, flow))?
            .map(|d| serde_json::from_slice(&d).context("reading a webhook subscription"))
            .transpose()
    }

    async fn source_instance(
        &self,
        tenant: &str,
        flow: &str,
    ) -> anyhow::Result<(ConnectorInstance, String)> {
        let f = self.flow(tenant, flow)?;
        let (stage, c) = self
            .source_connector(&f, &format!("tenants.{tenant}.flows.{flow}"))
            .await?;
        let mut slots = self.runtime.reserve_slots(1).await?;
        let inst = self
            .instantiate(&c, tenant, flow, "webhooks", &stage, &mut slots)
            .await?;
        Ok((inst, f.source.stream))
    }

    async fn setup(
        &self,
        inst: &mut ConnectorInstance,
        stream: &str,
        tenant: &str,
        flow: &str,
    ) -> anyhow::Result<WebhookSetup> {
        inst.webhook_setup(stream).await?.ok_or_else(|| {
            NotPossible::CannotRegister(format!(
                "{} cannot register webhooks for stream {stream:?} (it does not export weft:webhooks/registration, or the stream has none): register {} with the vendor by hand and store its signing secret as tenant secret {:?}",
                inst.label(),
                self.webhook_url(tenant, flow),
                secret_names(flow).0
            ))
            .into()
        })
    }

    async fn call_vendor(
        http: &crate::caps::http::OutboundHttp,
        call: &HttpCall,
        url: &str,
        id: Option<&str>,
    ) -> anyhow::Result<Value> {
        let resp = http
            .send_for_host(request(call, url, id)?)
            .await
            .map_err(|e| anyhow!("{} {}: {e:?}", call.method, call.url))?;
        let status = resp.status();
        if !status.is_success() {
            let text = String::from_utf8_lossy(resp.body());
            bail!(
                "{} {}: the vendor answered {status}: {}",
                call.method,
                call.url,
                text.chars().take(300).collect::<String>()
            );
        }
        Ok(serde_json::from_slice(resp.body()).unwrap_or(Value::Null))
    }

    /// Subscribes the flow to its vendor's webhooks (once: an existing
    /// subscription is returned as it is) and seals the signing secret.
    pub async fn subscribe_webhooks(
        &self,
        tenant: &str,
        flow: &str,
    ) -> anyhow::Result<Subscription> {
        if let Some(s) = self.subscription(tenant, flow)? {
            return Ok(s);
        }
        let vault = self.runtime.secrets().vault().cloned().context(
            "webhook secrets are sealed in the tenant's vault: set WEFT_SECRET_KEY or service.key_file",
        )?;
        let (mut inst, stream) = self.source_instance(tenant, flow).await?;
        let setup = self.setup(&mut inst, &stream, tenant, flow).await?;
        let url = self.webhook_url(tenant, flow);
        let answer = Self::call_vendor(&inst.host_http(), &setup.create, &url, None).await?;
        let id = at(&answer, &setup.id_pointer, "subscription ID")?;
        let secret = at(&answer, &setup.secret_pointer, "signing secret")?;
        vault.put(tenant, &secret_names(flow).0, &secret)?;
        let sub = Subscription {
            id,
            url,
            setup,
            created_ms: now_ms(),
            rotated_ms: None,
        };
        self.state.doc_put(
            SUBSCRIPTION_DOC,
            &doc_id(tenant, flow),
            &serde_json::to_vec(&sub)?,
        )?;
        tracing::info!(tenant, flow, id = %sub.id, "subscribed to the vendor's webhooks");
        Ok(sub)
    }

    /// Asks the vendor for a new signing secret; the old one stays accepted
    /// for the vendor's overlap.
    pub async fn rotate_webhook_secret(
        &self,
        tenant: &str,
        flow: &str,
    ) -> anyhow::Result<Subscription> {
        let mut sub = self
            .subscription(tenant, flow)?
            .ok_or(NotPossible::NoSubscription)?;
        let rotate = sub.setup.rotate.clone().ok_or(NotPossible::CannotRotate)?;
        let vault = self
            .runtime
            .secrets()
            .vault()
            .cloned()
            .context("no secret key")?;
        let (inst, _) = self.source_instance(tenant, flow).await?;
        let answer = Self::call_vendor(&inst.host_http(), &rotate, &sub.url, Some(&sub.id)).await?;
        let secret = at(&answer, &sub.setup.secret_pointer, "signing secret")?;
        let (current, previous) = secret_names(flow);
        if let Some(old) = vault.get(tenant, &current)? {
            vault.put(tenant, &previous, old.expose())?;
        }
        vault.put(tenant, &current, &secret)?;
        sub.rotated_ms = Some(now_ms());
        self.state.doc_put(
            SUBSCRIPTION_DOC,
            &doc_id(tenant, flow),
            &serde_json::to_vec(&sub)?,
        )?;
        Ok(sub)
    }

    /// Deletes the flow's subscription at the vendor (with the flow's
    /// grants as they are now: call it before changing them) and its
    /// secrets here; whether there was one. When the vendor cannot be
    /// reached or refuses, the subscription is kept as an orphan (listed by
    /// [`Host::subscriptions_of`]) and the error returned; the flow itself
    /// no longer has one, so a new subscription can be made.
    pub async fn unsubscribe_webhooks(&self, tenant: &str, flow: &str) -> anyhow::Result<bool> {
        let Some(sub) = self.subscription(tenant, flow)? else {
            return Ok(false);
        };
        if let Some(delete) = &sub.setup.delete {
            let deleted = async {
                let (inst, _) = self.source_instance(tenant, flow).await?;
                Self::call_vendor(&inst.host_http(), delete, &sub.url, Some(&sub.id)).await
            }
            .await;
            if let Err(e) = deleted {
                let why = format!("{e:#}");
                let orphan = Listed {
                    flow: flow.to_owned(),
                    subscription: sub.clone(),
                    orphaned: Some(why.clone()),
                };
                self.state.doc_put(
                    ORPHAN_DOC,
                    &format!("{}/{}", doc_id(tenant, flow), sub.id),
                    &serde_json::to_vec(&orphan)?,
                )?;
                self.state
                    .doc_delete(SUBSCRIPTION_DOC, &doc_id(tenant, flow))?;
                self.forget_signing_secrets(tenant, flow)?;
                tracing::warn!(tenant, flow, id = %sub.id, error = %why, "a webhook subscription could not be deleted at the vendor; kept as an orphan");
                bail!(
                    "{why} (the subscription {} is kept as orphaned: GET /v1/tenants/{tenant}/webhooks)",
                    sub.id
                );
            }
        }
        self.forget_signing_secrets(tenant, flow)?;
        self.state
            .doc_delete(SUBSCRIPTION_DOC, &doc_id(tenant, flow))?;
        Ok(true)
    }

    /// Deletes the signing secrets weft keeps for the flow's subscription:
    /// deliveries signed with them are refused from now on.
    fn forget_signing_secrets(&self, tenant: &str, flow: &str) -> anyhow::Result<()> {
        if let Some(vault) = self.runtime.secrets().vault() {
            let (current, previous) = secret_names(flow);
            vault.delete(tenant, &current)?;
            vault.delete(tenant, &previous)?;
        }
        Ok(())
    }

    /// The signing secrets a delivery to the flow may be signed with: the
    /// configured ones, the subscription's current one, and its previous
    /// one during the rotation overlap.
    pub fn webhook_secrets(&self, tenant: &str, flow: &str) -> anyhow::Result<Vec<String>> {
        let f = self.flow(tenant, flow)?;
        let store = self.runtime.secrets().for_tenant(tenant);
        let mut out = Vec::new();
        if let Some(hook) = &f.source.webhook {
            for r in &hook.secrets {
                match store.resolve(r) {
                    Ok(s) => out.push(s.expose().to_owned()),
                    Err(e) => {
                        tracing::error!(tenant, flow, error = %format!("{e:#}"), "a webhook secret cannot be resolved")
                    }
                }
            }
        }
        if let (Some(sub), Some(vault)) = (
            self.subscription(tenant, flow)?,
            self.runtime.secrets().vault(),
        ) {
            let (current, previous) = secret_names(flow);
            if let Some(s) = vault.get(tenant, &current)? {
                out.push(s.expose().to_owned());
            }
            let overlap = sub.setup.rotation_overlap_secs * 1000;
            if sub.rotated_ms.is_some_and(|r| now_ms() < r + overlap)
                && let Some(s) = vault.get(tenant, &previous)?
            {
                out.push(s.expose().to_owned());
            }
        }
        Ok(out)
    }
}
