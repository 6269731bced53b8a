//! Process-wide metrics in the Prometheus text format (`GET /metrics` of
//! `weft serve`), on `prometheus-client`. One registry per process, like
//! Prometheus clients everywhere: the runner, the sandbox's HTTP capability
//! and the service count into [`metrics()`]; [`encode`] renders them.
//!
//! Label values are tenant and flow IDs, connector labels and origins: all
//! bounded by configuration, never by data. Tenants are bounded too: the
//! first `metrics.max_tenants` tenants seen (100 by default) get series of
//! their own, the rest are counted together under [`OTHER`] (their flows
//! too), so a platform with thousands of tenants scrapes a bounded page and
//! the totals (the sum over `tenant`) stay exact. See [`tenant_label`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The `tenant` (and `flow`) label of the tenants past the bound.
pub const OTHER: &str = "_other";

/// Which tenants have series of their own: the first `max` seen.
#[derive(Default)]
struct TenantBound {
    max: AtomicUsize,
    labelled: Mutex<HashSet<String>>,
}

impl TenantBound {
    fn label(&self, tenant: &str) -> String {
        let mut labelled = self.labelled.lock().unwrap_or_else(|p| p.into_inner());
        if labelled.contains(tenant) {
            return tenant.to_owned();
        }
        if labelled.len() < self.max.load(Ordering::Relaxed) {
            labelled.insert(tenant.to_owned());
            return tenant.to_owned();
        }
        OTHER.to_owned()
    }

    fn flow_labels(&self, tenant: &str, flow: &str) -> (String, String) {
        let t = self.label(tenant);
        let f = if t == OTHER {
            OTHER.to_owned()
        } else {
            flow.to_owned()
        };
        (t, f)
    }
}

/// The process's bound (`metrics.max_tenants`, 100 by default).
fn bound() -> &'static TenantBound {
    static B: OnceLock<TenantBound> = OnceLock::new();
    B.get_or_init(|| TenantBound {
        max: AtomicUsize::new(100),
        labelled: Mutex::default(),
    })
}

/// Sets how many tenants get series of their own (from the configuration,
/// when the host opens).
pub fn set_max_tenants(n: usize) {
    bound().max.store(n, Ordering::Relaxed);
}

/// The `tenant` label of `tenant`: itself while fewer than the bound have
/// series (or it has one already), [`OTHER`] past it. A tenant named in a
/// webhook URL that does not exist counts like any other, so no request
/// can add series without bound.
pub fn tenant_label(tenant: &str) -> String {
    bound().label(tenant)
}

/// The `(tenant, flow)` labels of a flow: [`OTHER`] for both past the
/// bound.
pub fn flow_labels(tenant: &str, flow: &str) -> (String, String) {
    bound().flow_labels(tenant, flow)
}

/// (tenant, flow).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    /// The tenant.
    pub tenant: String,
    /// The flow.
    pub flow: String,
}

/// (tenant, flow, outcome).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// The tenant.
    pub tenant: String,
    /// The flow.
    pub flow: String,
    /// `succeeded`, `failed`, `needs_attention`, ...
    pub outcome: String,
}

/// (tenant, flow, what happened to records).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    /// The tenant.
    pub tenant: String,
    /// The flow.
    pub flow: String,
    /// `fetched`, `emitted`, `stale` or `dead_lettered`.
    pub stage: String,
}

/// (tenant, origin, status).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The tenant.
    pub tenant: String,
    /// `scheme://host:port`.
    pub origin: String,
    /// The status code, or `error` when no answer came.
    pub status: String,
}

/// (tenant, origin).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginLabels {
    /// The tenant.
    pub tenant: String,
    /// `scheme://host:port`.
    pub origin: String,
}

/// (tenant, flow, result) of a webhook delivery.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// The tenant (as in the URL).
    pub tenant: String,
    /// The flow (as in the URL).
    pub flow: String,
    /// `accepted`, `duplicate`, or why it was rejected.
    pub result: String,
}

/// (connector, call).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// `name@version`.
    pub connector: String,
    /// The export called.
    pub call: String,
}

/// (tenant).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// The tenant.
    pub tenant: String,
}

/// (replica).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    /// The replica's ID.
    pub replica: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric weft keeps.
pub struct Metrics {
    registry: Registry,
    /// Runs ended, by outcome.
    pub runs: Family<RunLabels, Counter>,
    /// Records by what happened to them.
    pub records: Family<RecordLabels, Counter>,
    /// Open dead letters per tenant (set when scraped).
    pub dead_letters_open: Family<TenantLabels, Gauge>,
    /// Outbound requests of connectors.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Requests that had to wait for the (tenant, origin) quota, or found it
    /// spent.
    pub quota_waits: Family<OriginLabels, Counter>,
    /// Webhook deliveries by result.
    pub webhooks: Family<WebhookLabels, Counter>,
    /// Seconds from a webhook's arrival to its durable `2xx`.
    pub webhook_ack_seconds: Histogram,
    /// Webhook deliveries accepted but not yet processed.
    pub webhook_inbox: Gauge,
    /// Guest call durations.
    pub guest_call_seconds: HistogramFamily<CallLabels>,
    /// Guest calls that trapped or hit a limit.
    pub guest_traps: Family<CallLabels, Counter>,
    /// How late scheduled runs started, in seconds.
    pub schedule_lag_seconds: Histogram,
    /// Alerts sent.
    pub alerts: Family<TenantLabels, Counter>,
    /// Connections refused at the front door (a connection cap was full).
    pub connections_refused: Counter,
    /// Leases this replica holds (set when scraped), labelled with its ID:
    /// replicas sharing a state report themselves here.
    pub leases_held: Family<ReplicaLabels, Gauge>,
}

fn call_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("weft");
        let m = Metrics {
            runs: Family::default(),
            records: Family::default(),
            dead_letters_open: Family::default(),
            http_requests: Family::default(),
            quota_waits: Family::default(),
            webhooks: Family::default(),
            webhook_ack_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            webhook_inbox: Gauge::default(),
            guest_call_seconds: Family::new_with_constructor(call_histogram),
            guest_traps: Family::default(),
            schedule_lag_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            alerts: Family::default(),
            connections_refused: Counter::default(),
            leases_held: Family::default(),
            registry: Registry::default(),
        };
        // Each metric's name and help, once, in the order of the fields.
        macro_rules! register {
            ($($name:literal => $field:ident: $help:literal,)*) => {
                $(registry.register($name, $help, m.$field.clone());)*
            };
        }
        register! {
            "runs" => runs: "Flow runs ended, by outcome",
            "records" => records: "Records fetched, emitted, skipped as stale or dead-lettered",
            "dead_letters_open" => dead_letters_open: "Dead letters waiting for an operator",
            "http_requests" => http_requests: "Outbound requests of connectors, by status",
            "quota_waits" => quota_waits: "Outbound requests held back by the (tenant, origin) quota",
            "webhook_deliveries" => webhooks: "Webhook deliveries, accepted or rejected (by reason)",
            "webhook_ack_seconds" => webhook_ack_seconds: "Seconds from a webhook's arrival to its durable 2xx",
            "webhook_inbox" => webhook_inbox: "Webhook deliveries accepted and not yet processed",
            "guest_call_seconds" => guest_call_seconds: "Duration of calls into connectors",
            "guest_traps" => guest_traps: "Calls into connectors that trapped or hit a sandbox limit",
            "schedule_lag_seconds" => schedule_lag_seconds: "How late scheduled runs started",
            "alerts" => alerts: "Alerts sent",
            "connections_refused" => connections_refused: "Connections answered 503 because a connection cap was full",
            "leases_held" => leases_held: "Flow leases this replica holds (replicas sharing a state)",
        }
        Metrics { registry, ..m }
    }

    /// Counts a finished run and its records.
    pub fn run_ended(&self, run: &crate::state::RunRecord) {
        let (tenant, flow) = flow_labels(&run.tenant, &run.flow);
        self.runs
            .get_or_create(&RunLabels {
                tenant: tenant.clone(),
                flow: flow.clone(),
                outcome: run.outcome.label().replace(' ', "_").to_lowercase(),
            })
            .inc();
        for (stage, n) in [
            ("fetched", run.fetched),
            ("emitted", run.emitted),
            ("stale", run.skipped_stale),
            ("dead_lettered", run.dead_lettered),
        ] {
            if n > 0 {
                self.records
                    .get_or_create(&RecordLabels {
                        tenant: tenant.clone(),
                        flow: flow.clone(),
                        stage: stage.into(),
                    })
                    .inc_by(n);
            }
        }
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// The metrics in the Prometheus text format.
pub fn encode() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &metrics().registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_past_the_bound_share_one_label() {
        let b = TenantBound::default();
        b.max.store(2, Ordering::Relaxed);
        assert_eq!((b.label("a"), b.label("b")), ("a".into(), "b".into()));
        assert_eq!(b.label("c"), OTHER);
        assert_eq!(b.flow_labels("c", "f"), (OTHER.into(), OTHER.into()));
        // One with series keeps them.
        assert_eq!(b.label("a"), "a");
        assert_eq!(b.flow_labels("b", "f").1, "f");
    }
}
