//! Webhook batches: deliveries from the inbox through the source's
//! `on-webhook` and on through the flow; each delivery is a record that
//! fails alone (dead-lettered at stage `on-webhook`).

use super::*;

impl Host {
    /// Turns one verified webhook delivery into records with the flow's
    /// source (`on-webhook`) and delivers them like a page, without moving
    /// the cursor. Duplicates and out-of-order deliveries are dropped by
    /// newer-wins. Returns the run record (trigger `webhook`).
    pub async fn deliver_webhook(
        &self,
        tenant: &str,
        flow_name: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> anyhow::Result<RunRecord> {
        self.deliver_webhooks(tenant, flow_name, vec![(headers, body)])
            .await
    }

    /// Like [`Host::deliver_webhook`] for several deliveries of one flow, in
    /// order, as one run: one instance of each stage, one commit.
    pub async fn deliver_webhooks(
        &self,
        tenant: &str,
        flow_name: &str,
        deliveries: Vec<WebhookDelivery>,
    ) -> anyhow::Result<RunRecord> {
        let flow = self.flow(tenant, flow_name)?;
        // A batch waits for a poll of the flow in progress (and a poll for
        // a batch): never beside it.
        let (lease, mut run) = self.begin_run(tenant, flow_name, &flow, "webhook").await?;
        let span = tracing::info_span!("webhook", tenant, flow = flow_name, run_id = %run.id);
        let result = self
            .webhook_pages(
                tenant,
                flow_name,
                &flow,
                deliveries,
                &mut run,
                lease.fence.as_ref(),
            )
            .instrument(span)
            .await;
        self.finish(tenant, flow_name, &mut run, result)?;
        Ok(run)
    }

    pub(crate) async fn webhook_pages(
        &self,
        tenant: &str,
        flow_name: &str,
        flow: &FlowConfig,
        deliveries: Vec<WebhookDelivery>,
        run: &mut RunRecord,
        fence: Option<&Fence>,
    ) -> Result<(), Stop> {
        let mut p = self
            .pipeline(tenant, flow_name, flow, &run.id, true, &mut run.connectors)
            .await
            .map_err(|e| Stop::Attention(format!("{e:#}")))?;
        p.sink.fence = fence.cloned();
        let scope = delivery_scope(flow);
        let mut records = Vec::new();
        let mut dead = Vec::new();
        // Each delivery is a call of its own, so each fails alone: one the
        // source refuses (`invalid`) or that makes it trap becomes a dead
        // letter of its own and the rest go on; a transient failure is
        // retried for that delivery only.
        for (headers, body) in deliveries {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let source = p
                    .source
                    .as_mut()
                    .expect("pipelines built with_source have one");
                let label = source.label().to_owned();
                match source.on_webhook(headers.clone(), body.clone()).await {
                    Ok(r) => records.extend(r),
                    Err(CallError::Connector(ConnectorError::Transient {
                        message,
                        retry_after,
                    })) if attempt < flow.retry.max_attempts => {
                        run.retries += 1;
                        let wait = backoff(&flow.retry, attempt, retry_after);
                        tracing::info!(attempt, wait_ms = wait.as_millis() as u64, error = %message, "on-webhook failed, retrying this delivery");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    Err(e) if delivery_at_fault(&e) => {
                        tracing::warn!(connector = %label, error = %e, "webhook delivery dead-lettered");
                        let trapped = !matches!(e, CallError::Connector(_));
                        let error = match e {
                            CallError::Connector(c) => c,
                            other => ConnectorError::Invalid(other.to_string()),
                        };
                        let record = delivery_record(&headers, &body);
                        dead.push(DeadLetter {
                            id: DeadLetter::id_for(tenant, &scope, WEBHOOK_KIND, &record.key),
                            tenant: tenant.to_owned(),
                            flow: flow_name.to_owned(),
                            stage: "on-webhook".into(),
                            connector: label,
                            destination: p.sink.destination.label().to_owned(),
                            record,
                            error,
                            attempts: 1,
                            first_seen_ms: now_ms(),
                            last_seen_ms: now_ms(),
                        });
                        if trapped {
                            // The instance is unusable after a trap; its
                            // slots go back before the new pipeline takes its.
                            drop(p);
                            p = self
                                .pipeline(tenant, flow_name, flow, &run.id, true, &mut Vec::new())
                                .await
                                .map_err(|e| Stop::Attention(format!("{e:#}")))?;
                            p.sink.fence = fence.cloned();
                        }
                    }
                    Err(e) => return Err(stop_for("on-webhook", &label, e)),
                }
                break;
            }
        }
        run.fetched += records.len() as u64;
        self.process(
            &mut p.sink,
            tenant,
            flow_name,
            records,
            None,
            dead,
            &flow.retry,
            run,
        )
        .await
    }
}

/// The kind of the dead letter of a webhook delivery the source refused.
pub const WEBHOOK_KIND: &str = "webhook-delivery";

/// Whether an `on-webhook` failure is the delivery's own: the source
/// refused it (`invalid`), or it made the guest trap, run out of memory or
/// stack, or hand back what the contract rules out. Such a delivery is
/// dead-lettered alone; anything else (config, a transient failure past
/// its retries, a deadline) stops the run.
pub(crate) fn delivery_at_fault(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Connector(ConnectorError::Invalid(_))
            | CallError::Trap { .. }
            | CallError::MemoryLimit { .. }
            | CallError::StackOverflow { .. }
            | CallError::BadOutput { .. }
    )
}

/// The headers of a delivery kept with its dead letter: those that name,
/// date, sign or type it (not cookies or proxies' additions).
pub(crate) fn kept_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("webhook-") || n.starts_with("x-") || n == "content-type" || n == "user-agent"
}

/// The key of a delivery's dead letter: its `webhook-id`, else the SHA-256
/// of its body.
pub(crate) fn delivery_key(headers: &[(String, String)], body: &[u8]) -> String {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("webhook-id"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| {
            use sha2::Digest;
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)))
        })
}

/// A refused delivery as the record of its dead letter: `{"headers":
/// {...}, "body": "<text>"}` (or `"body_base64"` when it is not UTF-8).
pub(crate) fn delivery_record(headers: &[(String, String)], body: &[u8]) -> Record {
    let kept: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .filter(|(k, _)| kept_header(k))
        .map(|(k, v)| (k.to_ascii_lowercase(), serde_json::Value::String(v.clone())))
        .collect();
    let mut v = serde_json::json!({ "headers": kept });
    match std::str::from_utf8(body) {
        Ok(text) => v["body"] = serde_json::Value::String(text.to_owned()),
        Err(_) => {
            use base64::Engine;
            v["body_base64"] = base64::engine::general_purpose::STANDARD
                .encode(body)
                .into();
        }
    }
    Record {
        key: delivery_key(headers, body),
        kind: WEBHOOK_KIND.to_owned(),
        version: 0,
        op: Operation::Upsert,
        body: v.to_string(),
    }
}

/// The delivery a webhook dead letter's record holds.
pub(crate) fn delivery_of(r: &Record) -> anyhow::Result<WebhookDelivery> {
    let v: serde_json::Value = serde_json::from_str(&r.body).context("a webhook dead letter")?;
    let headers = v["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let body = match (v["body"].as_str(), v["body_base64"].as_str()) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(b64)) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .context("a webhook dead letter's body")?
        }
        (None, None) => bail!("a webhook dead letter without its body"),
    };
    Ok((headers, body))
}
