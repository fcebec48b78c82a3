//! Prometheus metrics, on an explicit registry per server.

use std::sync::atomic::AtomicI64;

use baton_core::EventKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub events: Family<KindLabels, Counter>,
    pub stale_lease_rejections: Counter,
    pub long_polls_waiting: Gauge<i64, AtomicI64>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("baton");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests served, by route and status", http_requests.clone());
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route (long-polls included)",
            http_duration.clone(),
        );
        let events = Family::<KindLabels, Counter>::default();
        registry.register(
            "events",
            "State changes committed, by event kind (job.offered, job.attempt_lost, runner.offline, ...)",
            events.clone(),
        );
        let stale_lease_rejections = Counter::default();
        registry.register(
            "stale_lease_rejections",
            "Job calls refused because their fencing epoch was stale",
            stale_lease_rejections.clone(),
        );
        let long_polls_waiting = Gauge::<i64, AtomicI64>::default();
        registry.register("long_polls_waiting", "Runner long-polls currently waiting", long_polls_waiting.clone());
        Metrics { registry, http_requests, http_duration, events, stale_lease_rejections, long_polls_waiting }
    }

    pub fn record_event(&self, kind: EventKind) {
        self.events.get_or_create(&KindLabels { kind: kind.to_string() }).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "encode metrics");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
