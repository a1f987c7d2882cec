//! Fake GPU nodes for kwok: a small catalogue of real GPU servers and desktops, with the
//! capacity and `pictor.network/gpu.*` labels a member's device plugin and node labeller give a
//! real node.

use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pictor_crds::contract::{Vendor, node_labels};
use std::collections::BTreeMap;

/// One kind of GPU machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuModel {
    /// Short name used in node names, e.g. `h100`.
    pub short: &'static str,
    /// The GPU vendor, which also names the extended resource its device plugin advertises.
    pub vendor: Vendor,
    /// Product name as the node labeller publishes it.
    pub product: &'static str,
    /// Memory per GPU in MiB.
    pub memory_mib: u32,
    /// GPUs per node.
    pub gpus: u32,
    /// CUDA compute capability or gfx target.
    pub compute: &'static str,
    /// Driver version.
    pub driver: &'static str,
    /// CPUs of the node.
    pub cpu: &'static str,
    /// Memory of the node.
    pub memory: &'static str,
}

/// NVIDIA H100 80GB ×8, NVIDIA RTX 4090 24GB ×1, AMD MI300X 192GB ×8, AMD RX 7900 XTX 24GB ×1.
pub const CATALOGUE: [GpuModel; 4] = [
    GpuModel {
        short: "h100",
        vendor: Vendor::Nvidia,
        product: "NVIDIA-H100-80GB-HBM3",
        memory_mib: 81_559,
        gpus: 8,
        compute: "9.0",
        driver: "570.124.06",
        cpu: "192",
        memory: "2048Gi",
    },
    GpuModel {
        short: "rtx4090",
        vendor: Vendor::Nvidia,
        product: "NVIDIA-GeForce-RTX-4090",
        memory_mib: 24_564,
        gpus: 1,
        compute: "8.9",
        driver: "570.124.06",
        cpu: "16",
        memory: "64Gi",
    },
    GpuModel {
        short: "mi300x",
        vendor: Vendor::Amd,
        product: "AMD-Instinct-MI300X",
        memory_mib: 196_592,
        gpus: 8,
        compute: "gfx942",
        driver: "6.10.5",
        cpu: "192",
        memory: "2048Gi",
    },
    GpuModel {
        short: "rx7900xtx",
        vendor: Vendor::Amd,
        product: "AMD-Radeon-RX-7900-XTX",
        memory_mib: 24_560,
        gpus: 1,
        compute: "gfx1100",
        driver: "6.10.5",
        cpu: "16",
        memory: "64Gi",
    },
];

/// Looks a model up by its short name.
pub fn model(short: &str) -> Option<GpuModel> {
    CATALOGUE.into_iter().find(|m| m.short == short)
}

/// A Node object kwok plays: annotated `kwok.x-k8s.io/node: fake`, with the model's capacity,
/// allocatable and GPU labels.
pub fn fake_node(name: &str, model: &GpuModel) -> Node {
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("type".to_string(), "kwok".to_string()),
        (node_labels::VENDOR.to_string(), model.vendor.label_value().to_string()),
        (node_labels::PRODUCT.to_string(), model.product.to_string()),
        (node_labels::MEMORY_MIB.to_string(), model.memory_mib.to_string()),
        (node_labels::COUNT.to_string(), model.gpus.to_string()),
        (node_labels::DRIVER_VERSION.to_string(), model.driver.to_string()),
        (node_labels::COMPUTE.to_string(), model.compute.to_string()),
    ]);
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(model.cpu.to_string())),
        ("memory".to_string(), Quantity(model.memory.to_string())),
        ("pods".to_string(), Quantity("110".to_string())),
        // Unit pods ask for scratch disk, as on any real node.
        ("ephemeral-storage".to_string(), Quantity("1Ti".to_string())),
        (model.vendor.resource_name().to_string(), Quantity(model.gpus.to_string())),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([("kwok.x-k8s.io/node".to_string(), "fake".to_string())])),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(resources.clone()),
            capacity: Some(resources),
            ..Default::default()
        }),
    }
}

/// Node names and objects for `count` nodes of each model, named `<prefix>-<short>-<i>`.
pub fn fleet(prefix: &str, counts: &[(GpuModel, usize)]) -> Vec<Node> {
    counts
        .iter()
        .flat_map(|(model, count)| {
            (0..*count).map(move |i| fake_node(&format!("{prefix}-{}-{i}", model.short), model))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_node_advertises_its_gpus_as_capacity_and_labels() {
        let h100 = model("h100").unwrap();
        let node = fake_node("n1", &h100);
        let status = node.status.unwrap();
        assert_eq!(status.capacity.unwrap()["nvidia.com/gpu"], Quantity("8".into()));
        assert_eq!(status.allocatable.unwrap()["pods"], Quantity("110".into()));
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels[node_labels::PRODUCT], "NVIDIA-H100-80GB-HBM3");
        assert_eq!(labels[node_labels::COUNT], "8");
        assert_eq!(node.metadata.annotations.unwrap()["kwok.x-k8s.io/node"], "fake");
    }

    #[test]
    fn fleet_names_nodes_by_prefix_model_and_index() {
        let nodes = fleet("m1", &[(model("mi300x").unwrap(), 2), (model("rtx4090").unwrap(), 1)]);
        let names: Vec<_> = nodes.iter().map(|n| n.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["m1-mi300x-0", "m1-mi300x-1", "m1-rtx4090-0"]);
    }
}
