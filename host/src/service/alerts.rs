//! Alerts: a JSON `POST` to the tenant's `alert_url` (else the operator's
//! `alerts.url`) when a flow fails `alerts.after_failures` runs in a row,
//! needs attention, is overdue by more than twice its schedule, or its
//! tenant's open dead letters grow past `alerts.dead_letters_over`. Each
//! alert is sent once per episode, and once more when it resolves. Open
//! alerts are kept in the state store (`alert` documents), so a restart
//! neither repeats nor forgets them.
//!
//! The body: `{"alert": "failing" | "needs_attention" | "overdue" |
//! "dead_letters", "state": "firing" | "resolved", "tenant", "flow",
//! "detail", "at_ms"}`. Events in a tenant's life go the same way
//! ([`tell`]): `{"event": "activated", "tenant", "detail", "at_ms"}`.

use crate::Host;
use crate::state::{RunOutcome, RunRecord, now_ms};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The document kind of open alerts.
pub const ALERT_DOC: &str = "alert";

/// Per flow: failures in a row and when it last ran.
#[derive(Default, Clone, Copy)]
struct FlowTrack {
    failures: u32,
    last_ended_ms: u64,
    /// The flow's schedule when that run ended.
    schedule_ms: u64,
}

/// How long after the last run ended a flow is overdue: twice its
/// schedule, taking the longer of the schedule in force when that run
/// ended and the one in force now. A schedule shortened at runtime is not
/// overdue before a run of the new schedule had time to come (the
/// scheduler moves the next run to within the new schedule), and a
/// lengthened one not before its new due time.
fn overdue_after_ms(schedule_at_last_end_ms: Option<u64>, schedule_now_ms: u64) -> u64 {
    2 * schedule_at_last_end_ms
        .unwrap_or(schedule_now_ms)
        .max(schedule_now_ms)
}

/// Decides and sends alerts.
pub struct Alerter {
    host: Arc<Host>,
    started_ms: u64,
    flows: Mutex<HashMap<(String, String), FlowTrack>>,
}

impl Alerter {
    /// An alerter for `host`.
    pub fn new(host: Arc<Host>) -> Self {
        Alerter {
            host,
            started_ms: now_ms(),
            flows: Mutex::default(),
        }
    }

    /// Called with every finished run.
    pub fn after_run(&self, run: &RunRecord) {
        let after = self.host.config.alerts.after_failures.max(1);
        let track = {
            let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
            let t = flows
                .entry((run.tenant.clone(), run.flow.clone()))
                .or_default();
            t.last_ended_ms = run.ended_ms.unwrap_or_else(now_ms);
            t.schedule_ms = self
                .host
                .flow(&run.tenant, &run.flow)
                .map(|f| f.schedule.as_millis() as u64)
                .unwrap_or(0);
            t.failures = match run.outcome {
                RunOutcome::Succeeded => 0,
                _ => t.failures + 1,
            };
            *t
        };
        let error = run.error.clone().unwrap_or_default();
        self.set(
            &run.tenant,
            &run.flow,
            "failing",
            track.failures >= after,
            &format!("{} runs in a row did not succeed: {error}", track.failures),
        );
        self.set(
            &run.tenant,
            &run.flow,
            "needs_attention",
            run.outcome == RunOutcome::NeedsAttention,
            &error,
        );
        self.set(&run.tenant, &run.flow, "overdue", false, "ran");
        self.check_dead_letters(&run.tenant);
    }

    /// Periodic checks: overdue flows.
    pub fn sweep(&self) {
        let now = now_ms();
        let flows = self.flows.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (tid, tenant) in self.host.tenants().iter() {
            if !tenant.active {
                continue;
            }
            for (fid, flow) in &tenant.flows {
                if flow.paused {
                    continue;
                }
                let track = flows.get(&(tid.clone(), fid.clone()));
                let last = track.map(|t| t.last_ended_ms).unwrap_or(self.started_ms);
                let limit = overdue_after_ms(
                    track.map(|t| t.schedule_ms),
                    flow.schedule.as_millis() as u64,
                );
                if now.saturating_sub(last) > limit {
                    self.set(
                        tid,
                        fid,
                        "overdue",
                        true,
                        &format!(
                            "no run ended in {} s (schedule {} s)",
                            now.saturating_sub(last) / 1000,
                            flow.schedule.as_secs()
                        ),
                    );
                }
            }
        }
    }

    fn check_dead_letters(&self, tenant: &str) {
        let Ok(open) = self.host.state.dead_letter_count(tenant) else {
            return;
        };
        let over = self.host.config.alerts.dead_letters_over;
        self.set(
            tenant,
            "",
            "dead_letters",
            open > over,
            &format!("{open} open dead letters (threshold {over})"),
        );
    }

    /// Fires or resolves one alert, sending only on a change.
    fn set(&self, tenant: &str, flow: &str, alert: &str, firing: bool, detail: &str) {
        let id = format!("{tenant}/{flow}/{alert}");
        let open = matches!(self.host.state.doc_get(ALERT_DOC, &id), Ok(Some(_)));
        if open == firing {
            return;
        }
        let stored = if firing {
            self.host.state.doc_put(ALERT_DOC, &id, detail.as_bytes())
        } else {
            self.host.state.doc_delete(ALERT_DOC, &id).map(|_| ())
        };
        if let Err(e) = stored {
            tracing::warn!(error = %format!("{e:#}"), "recording an alert");
        }
        let url = self
            .host
            .tenant(tenant)
            .and_then(|t| t.alert_url)
            .or_else(|| self.host.config.alerts.url.clone());
        let body = serde_json::json!({
            "alert": alert,
            "state": if firing { "firing" } else { "resolved" },
            "tenant": tenant,
            "flow": if flow.is_empty() { None } else { Some(flow) },
            "detail": detail,
            "at_ms": now_ms(),
        });
        if firing {
            tracing::warn!(tenant, flow, alert, detail, "alert");
        } else {
            tracing::info!(tenant, flow, alert, "alert resolved");
        }
        crate::metrics::metrics()
            .alerts
            .get_or_create(&crate::metrics::TenantLabels {
                tenant: crate::metrics::tenant_label(tenant),
            })
            .inc();
        if let Some(url) = url {
            let private_hosts = self.host.config.private_hosts.clone();
            tokio::spawn(async move {
                if let Err(e) = post_json(&url, &body, private_hosts).await {
                    tracing::warn!(url, error = %e, "sending an alert");
                }
            });
        }
    }
}

/// Tells the platform of an event in a tenant's life (`activated`): a JSON
/// `POST` of `{"event", "tenant", "detail", "at_ms"}` to where the tenant's
/// alerts go (its `alert_url`, else the operator's `alerts.url`), on the
/// same channel as alerts, so a platform's backend hears of activations,
/// failures and flows that need attention in one place.
pub(crate) fn tell(host: &Host, tenant: &str, event: &str, detail: serde_json::Value) {
    let url = host
        .tenant(tenant)
        .and_then(|t| t.alert_url)
        .or_else(|| host.config.alerts.url.clone());
    tracing::info!(tenant, event, "event");
    let Some(url) = url else { return };
    let body = serde_json::json!({
        "event": event,
        "tenant": tenant,
        "detail": detail,
        "at_ms": now_ms(),
    });
    let private_hosts = host.config.private_hosts.clone();
    tokio::spawn(async move {
        if let Err(e) = post_json(&url, &body, private_hosts).await {
            tracing::warn!(url, error = %e, "sending an event");
        }
    });
}

/// POSTs `body` to `url` under the egress policy of connectors' requests:
/// a loopback, private or link-local address only when `private_hosts`
/// (the operator's `private_hosts`) allows it, never because it is an alert
/// URL; a 10 s timeout.
pub(crate) async fn post_json(
    url: &str,
    body: &serde_json::Value,
    private_hosts: Vec<String>,
) -> Result<(), String> {
    use crate::caps::http::policy::{Origin, Policy};
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let origin = Origin::from_uri(&uri)?;
    let policy = Policy {
        requested: vec![],
        granted: vec![],
        private_hosts,
    };
    let req = http::Request::post(uri)
        .header("content-type", "application/json")
        .header("host", origin.host.as_str())
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .map_err(|e| e.to_string())?;
    let resp = crate::caps::http::client::send_once(
        &crate::caps::http::SystemResolver,
        &policy,
        &origin,
        req,
        std::time::Duration::from_secs(10),
        64 << 10,
        None,
    )
    .await
    .map_err(|e| format!("{e:?}"))?;
    if !resp.status().is_success() {
        return Err(format!("answered {}", resp.status()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19, item 7: shortening a schedule fired "overdue" alerts for
    /// every flow at once (the time since the last run, due under the old
    /// schedule, was measured against the new one).
    #[test]
    fn overdue_is_measured_from_the_schedule_in_force_at_the_last_run() {
        let (hour, minute) = (3_600_000, 60_000);
        // Shortened from an hour to a minute: 2 h, not 2 min.
        assert_eq!(overdue_after_ms(Some(hour), minute), 2 * hour);
        // Lengthened: the new schedule.
        assert_eq!(overdue_after_ms(Some(minute), hour), 2 * hour);
        // Never ran since the start: the schedule now.
        assert_eq!(overdue_after_ms(None, minute), 2 * minute);
    }

    /// Issue 18, item 2: the alert sender added the alert URL's host to
    /// `private_hosts`, so an alert URL on loopback, a private network or
    /// the cloud metadata address was posted to. Now an alert goes through
    /// the connectors' egress policy: such an address only when the
    /// operator's `private_hosts` lists it.
    #[tokio::test]
    async fn alerts_follow_the_egress_policy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}/alert");
        let body = serde_json::json!({ "alert": "test" });
        let e = post_json(&url, &body, vec![]).await.unwrap_err();
        assert!(e.contains("127.0.0.1"), "{e}");
        let e = post_json("http://169.254.169.254/latest", &body, vec![])
            .await
            .unwrap_err();
        assert!(e.contains("169.254.169.254"), "{e}");
        // Listed by the operator: sent.
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        post_json(&url, &body, vec!["127.0.0.1".into()])
            .await
            .unwrap();
        assert!(server.await.unwrap().starts_with("POST /alert"));
    }
}
