//! What `/metrics` exports: attempts by result, scheduling latency, pending pods, gangs waiting.

use pictor_telemetry::NamedRegistry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Why `/metrics` could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The text encoder failed.
    #[error("encoding metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

/// Outcome of one scheduling attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// `scheduled`, `unschedulable` or `error` (a failed binding).
    pub result: &'static str,
}

/// The scheduler's metrics and their registry.
pub struct Metrics {
    registry: Arc<Registry>,
    series: BTreeSet<String>,
    /// Attempts by result.
    pub attempts: Family<AttemptLabels, Counter>,
    /// Seconds from a pod first seen pending to its binding.
    pub latency: Histogram,
    /// Pods waiting for this scheduler.
    pub pending_pods: Gauge,
    /// Gangs holding a reservation while their members gather.
    pub gangs_waiting: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = NamedRegistry::with_prefix("pictor_scheduler");
        let attempts = Family::<AttemptLabels, Counter>::default();
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 18));
        let pending_pods = Gauge::default();
        let gangs_waiting = Gauge::default();
        registry.register("schedule_attempts", "Scheduling attempts by result", attempts.clone());
        registry.register(
            "scheduling_latency_seconds",
            "Seconds from a pod first seen pending to its binding",
            latency.clone(),
        );
        registry.register("pending_pods", "Pods waiting for pictor-scheduler", pending_pods.clone());
        registry.register(
            "gangs_waiting",
            "Gangs holding a reservation while they gather",
            gangs_waiting.clone(),
        );
        let (registry, series) = registry.finish();
        Self { registry, series, attempts, latency, pending_pods, gangs_waiting }
    }
}

impl Metrics {
    /// Counts one attempt.
    pub fn attempt(&self, result: &'static str) {
        self.attempts.get_or_create(&AttemptLabels { result }).inc();
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> Result<String, MetricsError> {
        Ok(pictor_telemetry::encode(&self.registry)?)
    }

    /// The name of every series `/metrics` may export.
    pub fn series(&self) -> &BTreeSet<String> {
        &self.series
    }

    /// The registry `/metrics` serves.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_appears_in_the_text() {
        let m = Metrics::default();
        m.attempt("scheduled");
        m.latency.observe(0.01);
        m.pending_pods.set(3);
        let text = m.render().unwrap();
        for name in [
            "pictor_scheduler_schedule_attempts_total{result=\"scheduled\"} 1",
            "pictor_scheduler_scheduling_latency_seconds_count 1",
            "pictor_scheduler_pending_pods 3",
            "pictor_scheduler_gangs_waiting 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
