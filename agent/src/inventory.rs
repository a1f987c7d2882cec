//! What a member has: its GPU nodes summarised into the GpuCluster status the hub places by.

use k8s_openapi::api::core::v1::{Node, Pod};
use pictor_crds::contract::{Vendor, node_labels};
use pictor_crds::v1alpha1::{GpuInventory, GpuPool, SharedGpuPool};
use std::collections::{BTreeMap, HashMap};

/// Whole units of an extended resource; GPUs are never fractional.
fn count(quantity: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> i64 {
    quantity.and_then(|q| q.0.parse().ok()).unwrap_or(0)
}

fn is_ready(node: &Node) -> bool {
    let schedulable = !node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    schedulable && ready
}

/// GPUs of `resource` a pod holds: what its containers ask for (limits, as the device plugin
/// API requires them equal to requests), for pods bound and not finished.
pub fn pod_gpus(pod: &Pod, resource: &str) -> i64 {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    if finished {
        return 0;
    }
    let Some(spec) = pod.spec.as_ref() else { return 0 };
    spec.containers
        .iter()
        .map(|c| {
            let r = c.resources.as_ref();
            let limit = count(r.and_then(|r| r.limits.as_ref()).and_then(|l| l.get(resource)));
            let request = count(r.and_then(|r| r.requests.as_ref()).and_then(|l| l.get(resource)));
            limit.max(request)
        })
        .sum()
}

/// Summarises Ready, schedulable GPU nodes by vendor and model, with what bound pods hold. A
/// node whose GPUs are time-sliced (labelled `pictor.network/gpu.sharing`) advertises replicas,
/// not GPUs: it is counted in `sharedPools`, never in the whole-GPU pools placement reads.
pub fn summarise<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> GpuInventory {
    let mut used: HashMap<&str, HashMap<&str, i64>> = HashMap::new();
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else { continue };
        for resource in Vendor::ALL.map(Vendor::resource_name) {
            let gpus = pod_gpus(pod, resource);
            if gpus > 0 {
                *used.entry(node).or_default().entry(resource).or_default() += gpus;
            }
        }
    }
    let mut pools: BTreeMap<(String, String), GpuPool> = BTreeMap::new();
    let mut shared: BTreeMap<(String, String), SharedGpuPool> = BTreeMap::new();
    for node in nodes.into_iter().filter(|n| is_ready(n)) {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        for vendor in Vendor::ALL {
            let resource = vendor.resource_name();
            let total = count(allocatable.and_then(|a| a.get(resource)));
            if total == 0 {
                continue;
            }
            let held = used.get(name).and_then(|u| u.get(resource)).copied().unwrap_or(0);
            let free = (total - held).max(0);
            let model = labels.get(node_labels::PRODUCT).cloned().unwrap_or_else(|| "unknown".into());
            let memory_mib = labels.get(node_labels::MEMORY_MIB).and_then(|m| m.parse().ok()).unwrap_or(0);
            let key = (vendor.label_value().to_string(), model.clone());
            if labels.contains_key(node_labels::SHARING) {
                let gpus = labels.get(node_labels::COUNT).and_then(|c| c.parse().ok()).unwrap_or(0);
                let pool = shared.entry(key).or_insert_with(|| SharedGpuPool {
                    vendor: vendor.into(),
                    model,
                    ..Default::default()
                });
                pool.nodes += 1;
                pool.gpus += gpus;
                pool.replicas += total;
                pool.free_replicas += free;
                pool.memory_mib = pool.memory_mib.max(memory_mib);
                continue;
            }
            let pool = pools.entry(key).or_insert_with(|| GpuPool {
                vendor: vendor.into(),
                model,
                ..Default::default()
            });
            pool.nodes += 1;
            pool.total += total;
            pool.free += free;
            pool.memory_mib = pool.memory_mib.max(memory_mib);
            pool.largest_free_on_node = pool.largest_free_on_node.max(free);
        }
    }
    let pools: Vec<GpuPool> = pools.into_values().collect();
    GpuInventory {
        nodes: pools.iter().map(|p| p.nodes).sum::<i64>() + shared.values().map(|p| p.nodes).sum::<i64>(),
        total_gpus: pools.iter().map(|p| p.total).sum(),
        free_gpus: pools.iter().map(|p| p.free).sum(),
        pools,
        shared_pools: shared.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pictor_crds::v1alpha1::GpuVendor;
    use serde_json::json;

    fn node(name: &str, resource: &str, gpus: i64, product: &str, ready: bool) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"pictor.network/gpu.product": product, "pictor.network/gpu.memory-mib": "81559"}},
            "status": {"allocatable": {resource: gpus.to_string()},
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    fn pod(node: &str, resource: &str, gpus: i64, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("p-{node}-{gpus}")},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"limits": {resource: gpus.to_string()}}}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn pools_count_free_gpus_minus_what_running_pods_hold() {
        let nodes = [
            node("a", "nvidia.com/gpu", 8, "NVIDIA-H100-80GB-HBM3", true),
            node("b", "nvidia.com/gpu", 8, "NVIDIA-H100-80GB-HBM3", true),
            node("c", "amd.com/gpu", 1, "AMD-Radeon-RX-7900-XTX", true),
            node("d", "nvidia.com/gpu", 8, "NVIDIA-H100-80GB-HBM3", false),
        ];
        let pods = [
            pod("a", "nvidia.com/gpu", 3, "Running"),
            pod("a", "nvidia.com/gpu", 2, "Succeeded"),
            pod("b", "nvidia.com/gpu", 8, "Pending"),
        ];
        let inventory = summarise(&nodes, &pods);
        assert_eq!((inventory.nodes, inventory.total_gpus, inventory.free_gpus), (3, 17, 6));
        let h100 = inventory.pools.iter().find(|p| p.model == "NVIDIA-H100-80GB-HBM3").unwrap();
        assert_eq!(
            (h100.vendor, h100.nodes, h100.total, h100.free, h100.largest_free_on_node),
            (GpuVendor::Only(Vendor::Nvidia), 2, 16, 5, 5)
        );
        assert_eq!(h100.memory_mib, 81559);
        let amd = inventory.pools.iter().find(|p| p.vendor == GpuVendor::Only(Vendor::Amd)).unwrap();
        assert_eq!((amd.total, amd.free), (1, 1));
    }

    #[test]
    fn time_sliced_replicas_are_counted_apart_from_whole_gpus() {
        let mut shared = node("s", "nvidia.com/gpu", 8, "NVIDIA-GeForce-RTX-4090", true);
        let labels = shared.metadata.labels.as_mut().unwrap();
        labels.insert(node_labels::SHARING.into(), "time-slicing".into());
        labels.insert(node_labels::REPLICAS.into(), "4".into());
        labels.insert(node_labels::COUNT.into(), "2".into());
        let nodes = [shared, node("w", "nvidia.com/gpu", 8, "NVIDIA-H100-80GB-HBM3", true)];
        let pods = [pod("s", "nvidia.com/gpu", 3, "Running"), pod("w", "nvidia.com/gpu", 1, "Running")];
        let inventory = summarise(&nodes, &pods);
        assert_eq!(
            (inventory.nodes, inventory.total_gpus, inventory.free_gpus),
            (2, 8, 7),
            "replicas are no GPUs"
        );
        assert_eq!(inventory.pools.len(), 1);
        assert_eq!(
            inventory.shared_pools,
            [SharedGpuPool {
                vendor: GpuVendor::Only(Vendor::Nvidia),
                model: "NVIDIA-GeForce-RTX-4090".into(),
                memory_mib: 81559,
                nodes: 1,
                gpus: 2,
                replicas: 8,
                free_replicas: 5,
            }]
        );
    }
}
