//! What a container that was given some GPUs needs from the runtime: the device nodes (the
//! GPUs' own and those every GPU process opens) and, for NVIDIA, `NVIDIA_VISIBLE_DEVICES` so the
//! container toolkit and CUDA see exactly these GPUs (or MIG devices). Pure, checked against
//! what the plugin serves.

use crate::advertise::{ServedDevice, advertise};
use crate::inventory::{GpuInventory, Health};
use crate::sharing::{SharingConfig, TIME_SLICING};
use crate::v1beta1::{ContainerAllocateResponse, DeviceSpec};
use pictor_crds::contract::{Vendor, node_labels};
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

/// The allocation of whole GPUs `ids` to one container, or why it is refused.
pub fn container_allocation(
    inventory: &GpuInventory,
    ids: &[String],
) -> Result<ContainerAllocateResponse, AllocationError> {
    let whole = advertise(inventory, &SharingConfig::whole(), "");
    served_allocation(inventory, &whole[""], ids)
}

/// The allocation of served devices `ids` (whole GPUs, replicas or MIG devices, see
/// [`crate::advertise`]) to one container. Two replicas of one GPU show the container that GPU
/// once; a replica's allocation says in its annotations that the GPU is time-sliced and how
/// many ways, for whoever inspects the container.
pub fn served_allocation(
    inventory: &GpuInventory,
    served: &[ServedDevice],
    ids: &[String],
) -> Result<ContainerAllocateResponse, AllocationError> {
    if ids.is_empty() {
        return Err(AllocationError::Empty);
    }
    let mut devices_given = Vec::with_capacity(ids.len());
    for id in ids {
        let device = served.iter().find(|d| d.id == *id).ok_or_else(|| AllocationError::UnknownDevice {
            id: id.clone(),
            known: served.iter().map(|d| d.id.as_str()).collect::<Vec<_>>().join(", "),
        })?;
        if device.health == Health::Unhealthy {
            return Err(AllocationError::Unhealthy { id: id.clone() });
        }
        devices_given.push(device);
    }
    let mut gpus: Vec<&str> = Vec::new();
    let mut visible: Vec<&str> = Vec::new();
    for device in &devices_given {
        if !gpus.contains(&device.gpu.as_str()) {
            gpus.push(&device.gpu);
        }
        if !visible.contains(&device.visible.as_str()) {
            visible.push(&device.visible);
        }
    }
    let device = |path: &Path| DeviceSpec {
        container_path: path.display().to_string(),
        host_path: path.display().to_string(),
        permissions: "rw".to_string(),
    };
    let mut devices: Vec<DeviceSpec> = gpus
        .iter()
        .filter_map(|id| inventory.gpu(id))
        .flat_map(|g| g.device_nodes.iter())
        .map(|p| device(p))
        .collect();
    devices.extend(inventory.shared_device_nodes().iter().map(|p| device(p)));
    let envs = match inventory.vendor {
        Vendor::Nvidia => HashMap::from([("NVIDIA_VISIBLE_DEVICES".to_string(), visible.join(","))]),
        // ROCm sees the render nodes it is given; no variable is needed to narrow it.
        Vendor::Amd => HashMap::new(),
    };
    let mut annotations = HashMap::new();
    if devices_given.iter().any(|d| d.replica) {
        let replicas = served.iter().filter(|d| d.gpu == devices_given[0].gpu).count();
        annotations.insert(node_labels::SHARING.to_string(), TIME_SLICING.to_string());
        annotations.insert(node_labels::REPLICAS.to_string(), replicas.to_string());
    }
    Ok(ContainerAllocateResponse { envs, devices, annotations, ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advertise::replica_id;
    use crate::fake::FakeBackend;
    use crate::inventory::MigDevice;

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

    #[test]
    fn replicas_of_one_gpu_show_it_once_and_say_it_is_time_sliced() {
        let inv = FakeBackend::preset("h100", 2).unwrap();
        let served = advertise(&inv, &SharingConfig::time_sliced(4), "nvidia.com/gpu");
        let served = &served["nvidia.com/gpu"];
        let gpu = &inv.gpus[1].id;
        let ids = vec![replica_id(gpu, 0), replica_id(gpu, 3)];
        let r = served_allocation(&inv, served, &ids).unwrap();
        assert_eq!(r.envs["NVIDIA_VISIBLE_DEVICES"], *gpu);
        assert_eq!(paths(&r), ["/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]);
        assert_eq!(r.annotations[node_labels::SHARING], "time-slicing");
        assert_eq!(r.annotations[node_labels::REPLICAS], "4");
        // A whole GPU's allocation carries no sharing annotation.
        assert!(container_allocation(&inv, std::slice::from_ref(gpu)).unwrap().annotations.is_empty());
        // The GPU's own ID is no device when it is served as replicas.
        assert!(matches!(
            served_allocation(&inv, served, std::slice::from_ref(gpu)),
            Err(AllocationError::UnknownDevice { .. })
        ));
    }

    #[test]
    fn a_replica_of_an_unhealthy_gpu_is_refused() {
        let mut inv = FakeBackend::preset("rtx4090", 1).unwrap();
        inv.gpus[0].health = Health::Unhealthy;
        let served = advertise(&inv, &SharingConfig::time_sliced(2), "nvidia.com/gpu");
        let id = replica_id(&inv.gpus[0].id, 1);
        assert_eq!(
            served_allocation(&inv, &served["nvidia.com/gpu"], std::slice::from_ref(&id)).unwrap_err(),
            AllocationError::Unhealthy { id }
        );
    }

    #[test]
    fn a_mig_device_shows_its_own_uuid_and_its_gpus_device_node() {
        let mut inv = FakeBackend::preset("h100", 2).unwrap();
        inv.gpus[1].mig_enabled = true;
        inv.gpus[1].mig_devices =
            vec![MigDevice { id: "MIG-7f3c".into(), profile: "1g.10gb".into(), memory_mib: 9_984 }];
        let served = advertise(&inv, &SharingConfig::whole(), "nvidia.com/gpu");
        let r = served_allocation(&inv, &served["nvidia.com/mig-1g.10gb"], &["MIG-7f3c".into()]).unwrap();
        assert_eq!(r.envs["NVIDIA_VISIBLE_DEVICES"], "MIG-7f3c");
        assert_eq!(paths(&r)[0], "/dev/nvidia1");
    }
}
