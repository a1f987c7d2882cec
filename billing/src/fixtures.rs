//! Hub objects as tests of the pure decisions need them.

use k8s_openapi::jiff::Timestamp;
use pictor_crds::v1alpha1::{GpuCluster, WorkUnit};
use serde_json::json;

/// A time, from RFC 3339.
pub fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// An accrued unit of `member` worth `octas`, payable from `after`: the hub metered `octas`
/// GPU-seconds at one octa each, and the member reported as much.
pub fn unit(member: &str, name: &str, octas: i64, after: &str) -> WorkUnit {
    serde_json::from_value(json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
        "metadata": {"name": name, "namespace": format!("pictor-member-{member}"), "uid": format!("uid-{name}"),
                     "labels": {"pictor.network/billing": "accrued"},
                     "annotations": {"pictor.network/payable-after": after, "pictor.network/gpu-model": "NVIDIA-H100",
                                     "pictor.network/metered-gpu-seconds": octas.to_string()},
                     "finalizers": ["pictor.network/settlement"]},
        "spec": {"jobRef": {"kind": "RenderJob", "namespace": "art", "name": "shot", "uid": "j"},
                 "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": 1}],
                 "agreedPricePerGpuHour": 3600},
        "status": {"phase": "Succeeded", "gpuSeconds": octas,
                   "outputs": [{"url": "file:///o/1.png", "sha256": "ab"}]}
    }))
    .unwrap()
}

/// A member (GpuCluster) paid at `address`.
pub fn member(name: &str, address: &str) -> GpuCluster {
    serde_json::from_value(json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "GpuCluster",
        "metadata": {"name": name},
        "spec": {"tier": "community", "payoutAddress": address, "defaultPricePerGpuHour": 3600}
    }))
    .unwrap()
}
