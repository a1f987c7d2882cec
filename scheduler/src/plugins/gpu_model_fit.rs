//! Filter: GPU vendor, product and memory per GPU, read from the `pictor.network/gpu.*` labels
//! the node labeller publishes, against the pod's `pictor.network/gpu-*` annotations (what a
//! WorkUnit's `gpu: {vendor, models, minMemoryGiB}` becomes on its pods).

use crate::framework::{FilterPlugin, Reason};
use crate::resources::Resources;
use crate::view::{NodeInfo, PodInfo};
use pictor_crds::contract::node_labels;

/// Rejects nodes whose GPUs are not of the vendor, model or memory the pod asks for.
pub struct GpuModelFit;

impl FilterPlugin for GpuModelFit {
    fn name(&self) -> &'static str {
        "GpuModelFit"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _free: &Resources) -> Result<(), Reason> {
        let label = |k: &str| node.labels.get(k).map(String::as_str);
        let vendor_ok = pod.gpu_vendor.as_deref().is_none_or(|v| label(node_labels::VENDOR) == Some(v));
        let model_ok = pod.gpu_models.is_empty()
            || label(node_labels::PRODUCT).is_some_and(|p| pod.gpu_models.iter().any(|m| m == p));
        let memory_ok = pod.gpu_min_memory_mib.is_none_or(|min| {
            label(node_labels::MEMORY_MIB).and_then(|m| m.parse::<i64>().ok()).is_some_and(|m| m >= min)
        });
        if vendor_ok && model_ok && memory_ok { Ok(()) } else { Err(Reason::GpuModel) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::tests::{node, pod};
    use pictor_crds::contract::Vendor;

    fn h100() -> NodeInfo {
        let mut n = node("h100-0", 8);
        n.labels.insert(node_labels::VENDOR.into(), Vendor::Nvidia.label_value().into());
        n.labels.insert(node_labels::PRODUCT.into(), "NVIDIA-H100-80GB-HBM3".into());
        n.labels.insert(node_labels::MEMORY_MIB.into(), "81559".into());
        n
    }

    #[test]
    fn vendor_model_and_memory_must_all_match() {
        let n = h100();
        let fits = |p: PodInfo| GpuModelFit.filter(&p, &n, &n.free()).is_ok();
        assert!(fits(pod("any", 1)));
        assert!(fits(PodInfo { gpu_vendor: Some("nvidia".into()), ..pod("p", 1) }));
        assert!(!fits(PodInfo { gpu_vendor: Some("amd".into()), ..pod("p", 1) }));
        assert!(fits(PodInfo {
            gpu_models: vec!["X".into(), "NVIDIA-H100-80GB-HBM3".into()],
            ..pod("p", 1)
        }));
        assert!(!fits(PodInfo { gpu_models: vec!["NVIDIA-GeForce-RTX-4090".into()], ..pod("p", 1) }));
        assert!(fits(PodInfo { gpu_min_memory_mib: Some(80_000), ..pod("p", 1) }));
        assert!(!fits(PodInfo { gpu_min_memory_mib: Some(100_000), ..pod("p", 1) }));
    }

    #[test]
    fn a_node_without_gpu_labels_fails_any_gpu_requirement() {
        let n = node("cpu-only", 0);
        assert!(
            GpuModelFit
                .filter(&PodInfo { gpu_min_memory_mib: Some(1), ..pod("p", 1) }, &n, &n.free())
                .is_err()
        );
    }
}
