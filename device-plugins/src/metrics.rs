//! What a GPU node's `/metrics` exports: the devices each plugin serves by health, allocations
//! the kubelet asked for and their outcome, registrations with the kubelet, and the node
//! labeller's view of the node's GPUs and its label writes.

use crate::advertise::ServedDevice;
use crate::inventory::{GpuInventory, Health};
use pictor_telemetry::NamedRegistry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Devices of one resource in one health.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    /// The extended resource, e.g. `nvidia.com/gpu`.
    pub resource: String,
    /// `Healthy` or `Unhealthy`.
    pub health: &'static str,
}

/// An allocation's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AllocationLabels {
    /// The extended resource.
    pub resource: String,
    /// `ok`, or why it was refused: `unhealthy`, `unknown_device`, `empty`.
    pub result: &'static str,
}

/// One resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// The extended resource.
    pub resource: String,
}

/// The GPUs the labeller saw.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeGpuLabels {
    /// `nvidia` or `amd`.
    pub vendor: String,
    /// `Healthy` or `Unhealthy`.
    pub health: &'static str,
}

/// A label write's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Every metric family of the device plugins and the node labeller, one registry per process.
#[derive(Debug)]
pub struct DeviceMetrics {
    registry: Arc<Registry>,
    series: BTreeSet<String>,
    /// `pictor_device_plugin_devices{resource,health}`.
    pub devices: Family<DeviceLabels, Gauge>,
    /// `pictor_device_plugin_allocations_total{resource,result}`: containers allocated devices.
    pub allocations: Family<AllocationLabels, Counter>,
    /// `pictor_device_plugin_registrations_total{resource}`: registrations the kubelet accepted.
    pub registrations: Family<ResourceLabels, Counter>,
    /// `pictor_node_labeller_gpus{vendor,health}`: the GPUs the labeller last read.
    pub node_gpus: Family<NodeGpuLabels, Gauge>,
    /// `pictor_node_labeller_label_writes_total{result}`.
    pub label_writes: Family<ResultLabels, Counter>,
}

impl Default for DeviceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl DeviceMetrics {
    /// Registers every family under the `pictor_` prefix.
    pub fn new() -> Self {
        let mut registry = NamedRegistry::with_prefix("pictor");
        let devices = Family::<DeviceLabels, Gauge>::default();
        let allocations = Family::<AllocationLabels, Counter>::default();
        let registrations = Family::<ResourceLabels, Counter>::default();
        let node_gpus = Family::<NodeGpuLabels, Gauge>::default();
        let label_writes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "device_plugin_devices",
            "Devices served to the kubelet by health",
            devices.clone(),
        );
        registry.register(
            "device_plugin_allocations",
            "Container allocations the kubelet asked for, by result",
            allocations.clone(),
        );
        registry.register(
            "device_plugin_registrations",
            "Registrations with the kubelet (one more after each kubelet restart)",
            registrations.clone(),
        );
        registry.register(
            "node_labeller_gpus",
            "GPUs the node labeller last read, by health",
            node_gpus.clone(),
        );
        registry.register("node_labeller_label_writes", "Node label writes by result", label_writes.clone());
        let (registry, series) = registry.finish();
        Self { registry, series, devices, allocations, registrations, node_gpus, label_writes }
    }

    /// The registry `/metrics` serves.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// The name of every series `/metrics` may export.
    pub fn series(&self) -> &BTreeSet<String> {
        &self.series
    }

    /// The OpenMetrics text of every family.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        pictor_telemetry::encode(&self.registry)
    }

    /// Sets the devices a plugin serves for `resource` by health.
    pub fn serving(&self, resource: &str, devices: &[ServedDevice]) {
        for health in [Health::Healthy, Health::Unhealthy] {
            let n = devices.iter().filter(|d| d.health == health).count() as i64;
            let labels = DeviceLabels { resource: resource.to_string(), health: health.as_str() };
            self.devices.get_or_create(&labels).set(n);
        }
    }

    /// Counts one container allocation: `ok` or the refusal's reason.
    pub fn allocated(&self, resource: &str, result: &'static str) {
        self.allocations.get_or_create(&AllocationLabels { resource: resource.to_string(), result }).inc();
    }

    /// Sets the GPUs the labeller read.
    pub fn labelled(&self, inventory: &GpuInventory) {
        for health in [Health::Healthy, Health::Unhealthy] {
            let n = inventory.gpus.iter().filter(|g| g.health == health).count() as i64;
            let labels = NodeGpuLabels { vendor: inventory.vendor.to_string(), health: health.as_str() };
            self.node_gpus.get_or_create(&labels).set(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeBackend;
    use crate::sharing::SharingConfig;

    #[test]
    fn devices_by_health_and_allocations_are_exported() {
        let m = DeviceMetrics::new();
        let mut inventory = FakeBackend::preset("h100", 4).unwrap();
        inventory.gpus[0].health = Health::Unhealthy;
        let served =
            crate::advertise::advertise(&inventory, &SharingConfig::time_sliced(2), "nvidia.com/gpu");
        m.serving("nvidia.com/gpu", &served["nvidia.com/gpu"]);
        m.labelled(&inventory);
        m.allocated("nvidia.com/gpu", "ok");
        m.allocated("nvidia.com/gpu", "unhealthy");
        let text = m.render().unwrap();
        for line in [
            "pictor_device_plugin_devices{resource=\"nvidia.com/gpu\",health=\"Healthy\"} 6",
            "pictor_device_plugin_devices{resource=\"nvidia.com/gpu\",health=\"Unhealthy\"} 2",
            "pictor_device_plugin_allocations_total{resource=\"nvidia.com/gpu\",result=\"ok\"} 1",
            "pictor_device_plugin_allocations_total{resource=\"nvidia.com/gpu\",result=\"unhealthy\"} 1",
            "pictor_node_labeller_gpus{vendor=\"nvidia\",health=\"Healthy\"} 3",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(m.series().contains("pictor_device_plugin_registrations_total"));
        assert!(m.series().contains("pictor_node_labeller_label_writes_total"));
    }
}
