//! The node labeller: publishes what the node's GPUs are as `pictor.network/gpu.*` labels on its
//! Node, the labels placement and pictor-scheduler read. Server-side apply under its own field
//! manager, so it owns exactly these labels: one that no longer applies (the GPUs are gone) is
//! removed by leaving it out, and nobody else's labels are touched. The same manager keeps the
//! Node condition `PictorGPUHealthy` on the Node's status, so GPU health reads at a glance in
//! `kubectl describe node`.

use crate::backend::{BackendError, GpuBackend};
use crate::inventory::{GpuInventory, Health};
use crate::metrics::{DeviceMetrics, ResultLabels};
use crate::sharing::{SharingConfig, TIME_SLICING};
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use pictor_crds::contract::{node_conditions, node_labels};
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
    #[error("writing the GPU health condition of node {node}: {source}")]
    Condition {
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

/// The labels for an inventory served with `sharing`; none for a node without GPUs. Product,
/// memory and compute are those of the first GPU: a node's GPUs are one model in every machine
/// Pictor accepts. The count is of physical GPUs; a time-sliced node says so and how many ways.
pub fn gpu_labels(inventory: &GpuInventory, sharing: &SharingConfig) -> BTreeMap<String, String> {
    let Some(first) = inventory.gpus.first() else { return BTreeMap::new() };
    let shared = sharing.is_shared() && inventory.gpus.iter().any(|g| !g.mig_enabled);
    let sharing_labels = shared.then(|| {
        [
            (node_labels::SHARING, TIME_SLICING.to_string()),
            (node_labels::REPLICAS, sharing.replicas().to_string()),
        ]
    });
    let mig = inventory.gpus.iter().any(|g| g.mig_enabled).then(|| (node_labels::MIG, "mixed".to_string()));
    [
        (node_labels::VENDOR, inventory.vendor.label_value().to_string()),
        (node_labels::PRODUCT, first.name.clone()),
        (node_labels::MEMORY_MIB, first.memory_mib.to_string()),
        (node_labels::COUNT, inventory.gpus.len().to_string()),
        (node_labels::DRIVER_VERSION, inventory.driver_version.clone()),
        (node_labels::COMPUTE, first.compute.clone()),
    ]
    .into_iter()
    .chain(sharing_labels.into_iter().flatten())
    .chain(mig)
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

/// The `PictorGPUHealthy` condition for an inventory: `True` while every GPU is healthy, else
/// `False` naming the unhealthy ones (and so, on a time-sliced node, every replica of them).
/// `lastTransitionTime` moves only when the status flips; `previous` is the condition as the
/// Node has it now.
pub fn gpu_health_condition(
    inventory: &GpuInventory,
    previous: Option<&NodeCondition>,
    now: Time,
) -> NodeCondition {
    let unhealthy: Vec<&str> =
        inventory.gpus.iter().filter(|g| g.health == Health::Unhealthy).map(|g| g.id.as_str()).collect();
    let (status, reason, message) = if inventory.gpus.is_empty() {
        ("False", "NoGPUs", "no GPU found on this node".to_string())
    } else if unhealthy.is_empty() {
        ("True", "GPUsHealthy", format!("all {} GPU(s) healthy", inventory.gpus.len()))
    } else {
        (
            "False",
            "GPUsUnhealthy",
            format!(
                "{} of {} GPU(s) unhealthy: {}",
                unhealthy.len(),
                inventory.gpus.len(),
                unhealthy.join(", ")
            ),
        )
    };
    let transition = previous
        .filter(|p| p.status == status)
        .and_then(|p| p.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    NodeCondition {
        type_: node_conditions::GPU_HEALTHY.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_heartbeat_time: Some(now),
        last_transition_time: Some(transition),
    }
}

/// Applies `condition` as this field manager's one condition on the Node's status; the
/// kubelet's own conditions are left alone (the list is keyed by type).
pub async fn apply_condition(
    client: &Client,
    node: &str,
    condition: &NodeCondition,
) -> Result<(), LabellerError> {
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": node },
        "status": { "conditions": [condition] },
    });
    Api::<Node>::all(client.clone())
        .patch_status(node, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| LabellerError::Condition { node: node.to_string(), source })?;
    Ok(())
}

/// The GPU health condition the Node has now, if any (read once at start, so a restart keeps
/// its transition time).
async fn current_condition(client: &Client, node: &str) -> Option<NodeCondition> {
    let node = Api::<Node>::all(client.clone()).get_status(node).await.ok()?;
    node.status?.conditions?.into_iter().find(|c| c.type_ == node_conditions::GPU_HEALTHY)
}

/// Keeps a Node's GPU labels current.
pub struct NodeLabeller {
    pub client: Client,
    pub node_name: String,
    pub backend: Arc<dyn GpuBackend>,
    /// How the device plugin shares the GPUs, for the sharing labels.
    pub sharing: SharingConfig,
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
        let mut condition = current_condition(&self.client, &self.node_name).await;
        let mut condition_at: Option<Instant> = None;
        loop {
            let backend = self.backend.clone();
            match tokio::task::spawn_blocking(move || backend.inventory()).await? {
                Ok(inventory) => {
                    self.metrics.labelled(&inventory);
                    self.keep_condition(&inventory, &mut condition, &mut condition_at).await;
                    let labels = gpu_labels(&inventory, &self.sharing);
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

    /// Writes the GPU health condition when its status, reason or message changed, or when the
    /// resync is due (its heartbeat time says the labeller is alive).
    async fn keep_condition(
        &self,
        inventory: &GpuInventory,
        last: &mut Option<NodeCondition>,
        at: &mut Option<Instant>,
    ) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let fresh = gpu_health_condition(inventory, last.as_ref(), now);
        let same = last.as_ref().is_some_and(|l| {
            (&l.status, &l.reason, &l.message) == (&fresh.status, &fresh.reason, &fresh.message)
        });
        if same && at.is_some_and(|at| at.elapsed() < self.resync) {
            return;
        }
        match apply_condition(&self.client, &self.node_name, &fresh).await {
            Ok(()) => {
                if !same {
                    info!(node = %self.node_name, status = %fresh.status, message = ?fresh.message, "GPU health condition");
                }
                *last = Some(fresh);
                *at = Some(Instant::now());
            }
            Err(e) => warn!("{e}"),
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
        let labels = gpu_labels(&FakeBackend::preset("mi300x", 8).unwrap(), &SharingConfig::whole());
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
        assert!(gpu_labels(&inventory, &SharingConfig::time_sliced(4)).is_empty());
    }

    #[test]
    fn a_time_sliced_node_says_so_and_how_many_ways() {
        let inventory = FakeBackend::preset("h100", 2).unwrap();
        let labels = gpu_labels(&inventory, &SharingConfig::time_sliced(4));
        assert_eq!(labels[node_labels::SHARING], "time-slicing");
        assert_eq!(labels[node_labels::REPLICAS], "4");
        assert_eq!(labels[node_labels::COUNT], "2", "the count stays the physical GPUs");
        let whole = gpu_labels(&inventory, &SharingConfig::whole());
        assert!(!whole.contains_key(node_labels::SHARING) && !whole.contains_key(node_labels::REPLICAS));
        assert!(!whole.contains_key(node_labels::MIG));
    }

    #[test]
    fn gpus_in_mig_mode_are_labelled_mixed_and_not_time_sliced() {
        let mut inventory = FakeBackend::preset("h100", 1).unwrap();
        inventory.gpus[0].mig_enabled = true;
        let labels = gpu_labels(&inventory, &SharingConfig::time_sliced(4));
        assert_eq!(labels[node_labels::MIG], "mixed");
        assert!(!labels.contains_key(node_labels::SHARING), "no GPU is left whole to time-slice");
    }

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap())
    }

    #[test]
    fn the_health_condition_follows_the_gpus_and_moves_its_transition_only_on_a_flip() {
        let mut inventory = FakeBackend::preset("rtx4090", 2).unwrap();
        let healthy = gpu_health_condition(&inventory, None, at(0));
        assert_eq!(healthy.type_, "PictorGPUHealthy");
        assert_eq!((healthy.status.as_str(), healthy.reason.as_deref()), ("True", Some("GPUsHealthy")));
        assert_eq!(healthy.last_transition_time, Some(at(0)));
        let later = gpu_health_condition(&inventory, Some(&healthy), at(30));
        assert_eq!(
            (later.last_transition_time.clone(), later.last_heartbeat_time.clone()),
            (Some(at(0)), Some(at(30)))
        );

        inventory.gpus[1].health = Health::Unhealthy;
        let sick = gpu_health_condition(&inventory, Some(&later), at(60));
        assert_eq!((sick.status.as_str(), sick.reason.as_deref()), ("False", Some("GPUsUnhealthy")));
        assert_eq!(
            sick.message.as_deref(),
            Some(format!("1 of 2 GPU(s) unhealthy: {}", inventory.gpus[1].id).as_str())
        );
        assert_eq!(sick.last_transition_time, Some(at(60)));

        inventory.gpus[1].health = Health::Healthy;
        let healed = gpu_health_condition(&inventory, Some(&sick), at(90));
        assert_eq!((healed.status.as_str(), healed.last_transition_time.clone()), ("True", Some(at(90))));

        inventory.gpus.clear();
        let none = gpu_health_condition(&inventory, Some(&healed), at(120));
        assert_eq!((none.status.as_str(), none.reason.as_deref()), ("False", Some("NoGPUs")));
    }
}
