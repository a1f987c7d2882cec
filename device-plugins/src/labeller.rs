//! The node labeller: publishes what the node's GPUs are as `pictor.network/gpu.*` labels on its
//! Node, the labels placement and pictor-scheduler read. Server-side apply under its own field
//! manager, so it owns exactly these labels: one that no longer applies (the GPUs are gone) is
//! removed by leaving it out, and nobody else's labels are touched.

use crate::backend::{BackendError, GpuBackend};
use crate::inventory::GpuInventory;
use crate::metrics::{DeviceMetrics, ResultLabels};
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use pictor_crds::contract::node_labels;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The field manager of every label write.
pub const FIELD_MANAGER: &str = "pictor-node-labeller";

#[derive(Debug, thiserror::Error)]
pub enum LabellerError {
    #[error("labelling node {node}: {source}")]
    Apply {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A valid label value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends. Anything
/// else (spaces, brackets, slashes) becomes one `-`, so `NVIDIA H100 80GB HBM3` reads
/// `NVIDIA-H100-80GB-HBM3`.
pub fn label_value(raw: &str) -> String {
    let mut value = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' };
        if !(c == '-' && value.ends_with('-')) {
            value.push(c);
        }
    }
    let trim = |s: &str| s.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    let value = trim(&value);
    trim(&value[..value.len().min(63)])
}

/// The labels for an inventory; none for a node without GPUs. Product, memory and compute are
/// those of the first GPU: a node's GPUs are one model in every machine Pictor accepts.
pub fn gpu_labels(inventory: &GpuInventory) -> BTreeMap<String, String> {
    let Some(first) = inventory.gpus.first() else { return BTreeMap::new() };
    [
        (node_labels::VENDOR, inventory.vendor.label_value().to_string()),
        (node_labels::PRODUCT, first.name.clone()),
        (node_labels::MEMORY_MIB, first.memory_mib.to_string()),
        (node_labels::COUNT, inventory.gpus.len().to_string()),
        (node_labels::DRIVER_VERSION, inventory.driver_version.clone()),
        (node_labels::COMPUTE, first.compute.clone()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), label_value(&value)))
    .filter(|(_, value)| !value.is_empty())
    .collect()
}

/// Applies exactly `labels` as this field manager's labels of `node`.
pub async fn apply_labels(
    client: &Client,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), LabellerError> {
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": node, "labels": labels },
    });
    // Force: these labels are ours; another manager that set one (a hand-written label from
    // before the labeller ran) gives it up to the value the hardware reports.
    Api::<Node>::all(client.clone())
        .patch(node, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| LabellerError::Apply { node: node.to_string(), source })?;
    Ok(())
}

/// Keeps a Node's GPU labels current.
pub struct NodeLabeller {
    pub client: Client,
    pub node_name: String,
    pub backend: Arc<dyn GpuBackend>,
    /// How often the inventory is read; labels are applied when they differ from the last.
    pub interval: Duration,
    /// Labels are applied again after this long even when unchanged, in case someone removed
    /// them by hand.
    pub resync: Duration,
    /// Where the GPUs read and the label writes are counted.
    pub metrics: Arc<DeviceMetrics>,
}

impl NodeLabeller {
    /// Runs until `shutdown`. A failed read or write is logged and retried on the next round.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), LabellerError> {
        tokio::pin!(shutdown);
        let mut applied: Option<(BTreeMap<String, String>, Instant)> = None;
        loop {
            let backend = self.backend.clone();
            match tokio::task::spawn_blocking(move || backend.inventory()).await? {
                Ok(inventory) => {
                    self.metrics.labelled(&inventory);
                    let labels = gpu_labels(&inventory);
                    let due = applied
                        .as_ref()
                        .is_none_or(|(last, at)| *last != labels || at.elapsed() >= self.resync);
                    if due {
                        let written = apply_labels(&self.client, &self.node_name, &labels).await;
                        let result = if written.is_ok() { "ok" } else { "error" };
                        self.metrics.label_writes.get_or_create(&ResultLabels { result }).inc();
                        match written {
                            Ok(()) => {
                                if applied.as_ref().is_none_or(|(last, _)| *last != labels) {
                                    info!(node = %self.node_name, ?labels, "GPU labels applied");
                                }
                                applied = Some((labels, Instant::now()));
                            }
                            Err(e) => warn!("{e}"),
                        }
                    }
                }
                Err(e) => warn!("reading the GPU inventory: {e}; labels left as they are"),
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeBackend;

    #[test]
    fn label_values_are_valid_and_match_the_catalogue() {
        assert_eq!(label_value("NVIDIA H100 80GB HBM3"), "NVIDIA-H100-80GB-HBM3");
        assert_eq!(label_value("NVIDIA GeForce RTX 4090"), "NVIDIA-GeForce-RTX-4090");
        assert_eq!(label_value("AMD Instinct MI300X"), "AMD-Instinct-MI300X");
        assert_eq!(
            label_value("  Aqua Vanjaram [Instinct MI300X OAM] "),
            "Aqua-Vanjaram-Instinct-MI300X-OAM"
        );
        assert_eq!(label_value("6.10.5"), "6.10.5");
        assert_eq!(label_value("(/)"), "");
        let long = label_value(&"A ".repeat(40));
        assert!(long.len() <= 63 && long.ends_with('A'), "{long}");
    }

    #[test]
    fn labels_describe_the_inventory() {
        let labels = gpu_labels(&FakeBackend::preset("mi300x", 8).unwrap());
        let expected: BTreeMap<String, String> = [
            (node_labels::VENDOR, "amd"),
            (node_labels::PRODUCT, "AMD-Instinct-MI300X"),
            (node_labels::MEMORY_MIB, "196592"),
            (node_labels::COUNT, "8"),
            (node_labels::DRIVER_VERSION, "6.10.5"),
            (node_labels::COMPUTE, "gfx942"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels, expected);
    }

    #[test]
    fn a_node_without_gpus_gets_no_labels() {
        let mut inventory = FakeBackend::preset("h100", 1).unwrap();
        inventory.gpus.clear();
        assert!(gpu_labels(&inventory).is_empty());
    }
}
