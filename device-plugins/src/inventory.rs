//! What a node's GPUs are, as plain data: every backend produces a [`GpuInventory`], the device
//! plugin serves it to the kubelet and the node labeller turns it into labels.

use pictor_crds::contract::Vendor;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Whether a GPU can take work; the kubelet's words for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Health {
    #[default]
    Healthy,
    Unhealthy,
}

impl Health {
    /// As the device-plugin API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Unhealthy => "Unhealthy",
        }
    }
}

/// One GPU as the backend sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gpu {
    /// The device ID the kubelet sees: the UUID for NVIDIA (`GPU-…`), the PCI bus id for AMD.
    pub id: String,
    /// Product name as the driver reports it, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    pub memory_mib: u64,
    /// PCI bus id in sysfs form, e.g. `0000:17:00.0`.
    pub pci_bus_id: String,
    /// The PCIe root complex the GPU hangs under (e.g. `pci0000:16`), when known.
    #[serde(default)]
    pub pci_root: Option<String>,
    #[serde(default)]
    pub numa_node: Option<i64>,
    /// IDs of the GPUs this one has a direct NVLink / xGMI link to.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Device nodes only this GPU needs in a container (`/dev/nvidia3`, `/dev/dri/renderD131`).
    #[serde(default)]
    pub device_nodes: Vec<PathBuf>,
    /// CUDA compute capability (`9.0`) or gfx target (`gfx942`).
    pub compute: String,
    #[serde(default)]
    pub health: Health,
    /// NVIDIA only: the GPU is in MIG mode, so it is served as its [`Gpu::mig_devices`], never
    /// whole. Read from the driver; Pictor never changes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mig_enabled: bool,
    /// The MIG devices the GPU is split into (empty unless [`Gpu::mig_enabled`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mig_devices: Vec<MigDevice>,
}

/// One MIG device (a hardware slice of a GPU in MIG mode), served as a resource of its own
/// per profile (NVIDIA's "mixed" strategy): `nvidia.com/mig-1g.18gb`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigDevice {
    /// The MIG device's UUID (`MIG-…`), what `NVIDIA_VISIBLE_DEVICES` names.
    pub id: String,
    /// The profile, e.g. `1g.18gb`: compute slices and memory.
    pub profile: String,
    pub memory_mib: u64,
}

/// All GPUs of one vendor on a node, and what they share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuInventory {
    /// Who made the GPUs; decides the resource name and what a container needs to use them.
    #[serde(with = "vendor_label")]
    pub vendor: Vendor,
    pub driver_version: String,
    pub gpus: Vec<Gpu>,
    /// The device nodes every container with one of these GPUs needs, when not the vendor's
    /// usual ones: a fake inventory names files that exist on a machine without GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_device_nodes: Option<Vec<PathBuf>>,
}

impl GpuInventory {
    /// Device nodes every container with at least one of these GPUs needs.
    pub fn shared_device_nodes(&self) -> Vec<PathBuf> {
        if let Some(nodes) = &self.shared_device_nodes {
            return nodes.clone();
        }
        let nodes: &[&str] = match self.vendor {
            Vendor::Nvidia => &["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"],
            Vendor::Amd => &["/dev/kfd"],
        };
        nodes.iter().map(PathBuf::from).collect()
    }

    pub fn gpu(&self, id: &str) -> Option<&Gpu> {
        self.gpus.iter().find(|g| g.id == id)
    }
}

/// A GPU's health changed (a critical XID or an ECC error, or it recovered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    pub id: String,
    pub health: Health,
    /// Why, for the log: `XID 79`, `double-bit ECC error`, …
    pub reason: String,
}

/// A [`Vendor`] as its label value (`nvidia`, `amd`) in inventory files (the fake backend's),
/// the spelling those files had before the vendor moved into the contract.
mod vendor_label {
    use pictor_crds::contract::Vendor;
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(vendor: &Vendor, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(vendor.label_value())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vendor, D::Error> {
        let value = String::deserialize(deserializer)?;
        Vendor::from_label_value(&value)
            .ok_or_else(|| D::Error::custom(format!("unknown GPU vendor {value:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inventory_spells_its_vendor_as_the_label_value() {
        for vendor in Vendor::ALL {
            let inventory =
                GpuInventory { vendor, driver_version: "1".into(), gpus: vec![], shared_device_nodes: None };
            let json = serde_json::to_value(&inventory).unwrap();
            assert_eq!(json["vendor"], vendor.label_value());
            assert_eq!(serde_json::from_value::<GpuInventory>(json).unwrap(), inventory);
        }
        let unknown = serde_json::json!({"vendor": "intel", "driverVersion": "1", "gpus": []});
        assert!(serde_json::from_value::<GpuInventory>(unknown).is_err());
    }
}
