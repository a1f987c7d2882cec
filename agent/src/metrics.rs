//! What the member agent's `/metrics` exports: the member's WorkUnits and their pods by phase,
//! heartbeats and their failures, status and inventory reports to the hub.

use k8s_openapi::api::core::v1::Pod;
use pictor_crds::v1alpha1::WorkUnit;
use pictor_telemetry::NamedRegistry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The phase as the API writes it; `New` for a unit not reported on yet.
    pub phase: String,
}

/// How a write to the hub went.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Every metric family of the agent and the registry `/metrics` serves.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Arc<Registry>,
    series: BTreeSet<String>,
    /// `pictor_agent_work_units{phase}`: this member's WorkUnits on the hub.
    pub work_units: Family<PhaseLabels, Gauge>,
    /// `pictor_agent_pods{phase}`: the unit pods in the work namespace.
    pub pods: Family<PhaseLabels, Gauge>,
    /// `pictor_agent_heartbeats_total`: Lease renewals the hub accepted.
    pub heartbeats: Counter,
    /// `pictor_agent_heartbeat_failures_total`: renewals that failed (hub unreachable).
    pub heartbeat_failures: Counter,
    /// `pictor_agent_status_reports_total{result}`: WorkUnit status writes.
    pub status_reports: Family<ResultLabels, Counter>,
    /// `pictor_agent_inventory_reports_total{result}`: GpuCluster inventory writes.
    pub inventory_reports: Family<ResultLabels, Counter>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    /// Registers every family under the `pictor_agent_` prefix.
    pub fn new() -> Self {
        let mut registry = NamedRegistry::with_prefix("pictor_agent");
        let metrics = Self {
            registry: Arc::new(Registry::default()),
            series: BTreeSet::new(),
            work_units: Family::default(),
            pods: Family::default(),
            heartbeats: Counter::default(),
            heartbeat_failures: Counter::default(),
            status_reports: Family::default(),
            inventory_reports: Family::default(),
        };
        registry.register("work_units", "This member's WorkUnits by phase", metrics.work_units.clone());
        registry.register("pods", "Unit pods in the work namespace by phase", metrics.pods.clone());
        registry.register("heartbeats", "Lease renewals the hub accepted", metrics.heartbeats.clone());
        registry.register(
            "heartbeat_failures",
            "Lease renewals that failed (the hub unreachable or refusing)",
            metrics.heartbeat_failures.clone(),
        );
        registry.register(
            "status_reports",
            "WorkUnit status writes to the hub by result",
            metrics.status_reports.clone(),
        );
        registry.register(
            "inventory_reports",
            "GpuCluster inventory writes to the hub by result",
            metrics.inventory_reports.clone(),
        );
        let (registry, series) = registry.finish();
        Self { registry, series, ..metrics }
    }

    /// The name of every series `/metrics` may export.
    pub fn series(&self) -> &BTreeSet<String> {
        &self.series
    }

    /// The registry `/metrics` serves.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// The OpenMetrics text of every family.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        pictor_telemetry::encode(&self.registry)
    }

    /// Counts one status write.
    pub fn status_reported(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.status_reports.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts one inventory write.
    pub fn inventory_reported(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.inventory_reports.get_or_create(&ResultLabels { result }).inc();
    }

    /// Sets the unit and pod gauges from what the work loop sees.
    pub fn observe(&self, units: &[&WorkUnit], pods: &[&Pod]) {
        let mut by_phase: BTreeMap<String, i64> =
            ["New", "Pending", "Running", "Succeeded", "Failed", "Lost"].map(|p| (p.to_string(), 0)).into();
        for unit in units {
            let phase = unit.status.as_ref().and_then(|s| s.phase);
            let name = phase
                .and_then(|p| serde_json::to_value(p).ok()?.as_str().map(str::to_string))
                .unwrap_or_else(|| "New".into());
            *by_phase.entry(name).or_default() += 1;
        }
        for (phase, n) in by_phase {
            self.work_units.get_or_create(&PhaseLabels { phase }).set(n);
        }
        let mut by_phase: BTreeMap<String, i64> =
            ["Pending", "Running", "Succeeded", "Failed", "Unknown"].map(|p| (p.to_string(), 0)).into();
        for pod in pods {
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
            *by_phase.entry(phase).or_default() += 1;
        }
        for (phase, n) in by_phase {
            self.pods.get_or_create(&PhaseLabels { phase }).set(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_pods_are_counted_by_phase() {
        let m = AgentMetrics::new();
        let unit: WorkUnit = serde_json::from_value(serde_json::json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit", "metadata": {"name": "u"},
            "spec": {"jobRef": {"kind": "RenderJob", "namespace": "d", "name": "j", "uid": "1"},
                     "pods": [{"name": "p", "image": "i", "gpuVendor": "nvidia", "gpus": 1}], "agreedPricePerGpuHour": 1},
            "status": {"phase": "Running"}}))
        .unwrap();
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}}),
        )
        .unwrap();
        m.observe(&[&unit], &[&pod]);
        m.heartbeat_failures.inc();
        m.status_reported(true);
        let text = m.render().unwrap();
        for line in [
            "pictor_agent_work_units{phase=\"Running\"} 1",
            "pictor_agent_work_units{phase=\"Lost\"} 0",
            "pictor_agent_pods{phase=\"Running\"} 1",
            "pictor_agent_heartbeat_failures_total 1",
            "pictor_agent_heartbeats_total 0",
            "pictor_agent_status_reports_total{result=\"ok\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(m.series().contains("pictor_agent_inventory_reports_total"), "{:?}", m.series());
    }
}
