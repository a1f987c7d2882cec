//! What a container that was given some GPUs needs from the runtime: the device nodes (the
//! GPUs' own and those every GPU process opens) and, for NVIDIA, `NVIDIA_VISIBLE_DEVICES` so the
//! container toolkit and CUDA see exactly these GPUs. Pure, checked against the inventory.

use crate::inventory::{GpuInventory, Health};
use crate::v1beta1::{ContainerAllocateResponse, DeviceSpec};
use pictor_crds::contract::Vendor;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllocationError {
    #[error("unknown device {id:?}: this plugin serves {known}")]
    UnknownDevice { id: String, known: String },
    #[error("device {id:?} is unhealthy and cannot be allocated")]
    Unhealthy { id: String },
    #[error("no devices requested")]
    Empty,
}

/// The allocation of `ids` to one container, or why it is refused.
pub fn container_allocation(
    inventory: &GpuInventory,
    ids: &[String],
) -> Result<ContainerAllocateResponse, AllocationError> {
    if ids.is_empty() {
        return Err(AllocationError::Empty);
    }
    let mut gpus = Vec::with_capacity(ids.len());
    for id in ids {
        let gpu = inventory.gpu(id).ok_or_else(|| AllocationError::UnknownDevice {
            id: id.clone(),
            known: inventory.gpus.iter().map(|g| g.id.as_str()).collect::<Vec<_>>().join(", "),
        })?;
        if gpu.health == Health::Unhealthy {
            return Err(AllocationError::Unhealthy { id: id.clone() });
        }
        gpus.push(gpu);
    }
    let device = |path: &Path| DeviceSpec {
        container_path: path.display().to_string(),
        host_path: path.display().to_string(),
        permissions: "rw".to_string(),
    };
    let mut devices: Vec<DeviceSpec> =
        gpus.iter().flat_map(|g| g.device_nodes.iter()).map(|p| device(p)).collect();
    devices.extend(inventory.shared_device_nodes().iter().map(|p| device(p)));
    let envs = match inventory.vendor {
        Vendor::Nvidia => HashMap::from([(
            "NVIDIA_VISIBLE_DEVICES".to_string(),
            gpus.iter().map(|g| g.id.as_str()).collect::<Vec<_>>().join(","),
        )]),
        // ROCm sees the render nodes it is given; no variable is needed to narrow it.
        Vendor::Amd => HashMap::new(),
    };
    Ok(ContainerAllocateResponse { envs, devices, ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeBackend;

    fn paths(r: &ContainerAllocateResponse) -> Vec<&str> {
        r.devices.iter().map(|d| d.host_path.as_str()).collect()
    }

    #[test]
    fn nvidia_gets_its_device_nodes_and_visible_devices() {
        let inv = FakeBackend::preset("h100", 8).unwrap();
        let ids = vec![inv.gpus[2].id.clone(), inv.gpus[5].id.clone()];
        let r = container_allocation(&inv, &ids).unwrap();
        assert_eq!(r.envs["NVIDIA_VISIBLE_DEVICES"], format!("{},{}", ids[0], ids[1]));
        assert_eq!(
            paths(&r),
            ["/dev/nvidia2", "/dev/nvidia5", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
        );
        assert!(r.devices.iter().all(|d| d.permissions == "rw" && d.container_path == d.host_path));
    }

    #[test]
    fn amd_gets_kfd_and_its_render_nodes() {
        let inv = FakeBackend::preset("mi300x", 8).unwrap();
        let r = container_allocation(&inv, &[inv.gpus[7].id.clone()]).unwrap();
        assert_eq!(paths(&r), ["/dev/dri/renderD135", "/dev/kfd"]);
        assert!(r.envs.is_empty());
    }

    #[test]
    fn unknown_and_unhealthy_devices_are_refused() {
        let mut inv = FakeBackend::preset("rtx4090", 2).unwrap();
        let err = container_allocation(&inv, &["GPU-nope".into()]).unwrap_err();
        assert!(err.to_string().starts_with("unknown device \"GPU-nope\": this plugin serves GPU-"), "{err}");
        inv.gpus[1].health = Health::Unhealthy;
        let id = inv.gpus[1].id.clone();
        let err = container_allocation(&inv, &[inv.gpus[0].id.clone(), id.clone()]).unwrap_err();
        assert_eq!(err, AllocationError::Unhealthy { id });
        assert_eq!(container_allocation(&inv, &[]).unwrap_err(), AllocationError::Empty);
    }
}
