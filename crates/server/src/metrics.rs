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
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
    pub webhook_delivery_duration: Histogram,
    pub dispatch_latency: Histogram,
    pub job_duration: Histogram,
    pub queue_depth: Family<QueueLabels, Gauge<i64, AtomicI64>>,
    pub runners: Family<StateLabels, Gauge<i64, AtomicI64>>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The job's labels, comma-separated.
    pub labels: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
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
        let webhook_deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_delivery_attempts",
            "Webhook delivery attempts, by outcome (delivered, failed)",
            webhook_deliveries.clone(),
        );
        let webhook_delivery_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "webhook_delivery_duration_seconds",
            "Time one webhook delivery attempt took",
            webhook_delivery_duration.clone(),
        );
        let dispatch_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 20));
        registry.register(
            "dispatch_latency_seconds",
            "Time an attempt waited queued before it was offered to a runner",
            dispatch_latency.clone(),
        );
        let job_duration = Histogram::new(exponential_buckets(0.01, 2.0, 20));
        registry.register("job_duration_seconds", "Time from a job's enqueue to its completion", job_duration.clone());
        let queue_depth = Family::<QueueLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "queue_depth",
            "Queued attempts by their job's labels (the 50 largest groups)",
            queue_depth.clone(),
        );
        let runners = Family::<StateLabels, Gauge<i64, AtomicI64>>::default();
        registry.register("runners", "Runners by state", runners.clone());
        Metrics {
            registry,
            dispatch_latency,
            job_duration,
            queue_depth,
            runners,
            http_requests,
            http_duration,
            events,
            stale_lease_rejections,
            long_polls_waiting,
            webhook_deliveries,
            webhook_delivery_duration,
        }
    }

    pub fn record_event(&self, kind: EventKind) {
        self.events.get_or_create(&KindLabels { kind: kind.to_string() }).inc();
    }

    pub fn record_webhook(&self, delivered: bool, took: std::time::Duration) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.webhook_deliveries.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
        self.webhook_delivery_duration.observe(took.as_secs_f64());
    }

    /// Sets the fleet gauges from a snapshot read at scrape time.
    pub fn set_fleet(&self, queue: &[(Vec<String>, u64)], runners: &[(String, u64)]) {
        self.queue_depth.clear();
        for (labels, depth) in queue {
            self.queue_depth
                .get_or_create(&QueueLabels { labels: labels.join(",") })
                .set(i64::try_from(*depth).unwrap_or(i64::MAX));
        }
        self.runners.clear();
        for (state, count) in runners {
            self.runners
                .get_or_create(&StateLabels { state: state.clone() })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
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
