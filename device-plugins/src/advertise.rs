//! What the plugin advertises to the kubelet, per extended resource, from the node's GPUs and
//! its sharing config: a whole GPU once, a time-sliced GPU as N replicas (`<uuid>::<n>`), a GPU
//! in MIG mode as its MIG devices under `nvidia.com/mig-<profile>` (NVIDIA's "mixed"
//! strategy). A served device's health is always its GPU's: a shared GPU that turns unhealthy
//! takes every replica and every MIG slice of it out with it (NVIDIA's plugin misses this for
//! shared and MIG devices), and they all return when it heals. Pure.

use crate::inventory::{GpuInventory, Health};
use crate::sharing::SharingConfig;
use std::collections::BTreeMap;

/// Separates a GPU's ID from its replica number in a replica's device ID.
const REPLICA_SEPARATOR: &str = "::";

/// One device as the kubelet sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedDevice {
    /// The ID the kubelet sees and hands back in Allocate.
    pub id: String,
    /// The GPU it is (part of): its ID in the inventory.
    pub gpu: String,
    /// What a container given it is shown: the GPU's ID, or a MIG device's UUID.
    pub visible: String,
    pub health: Health,
    pub numa_node: Option<i64>,
    /// Shared by time-slicing with the GPU's other replicas.
    pub replica: bool,
}

/// The MIG resource of a profile, e.g. `nvidia.com/mig-1g.18gb`.
pub fn mig_resource(profile: &str) -> String {
    format!("nvidia.com/mig-{profile}")
}

/// The device ID of a GPU's `n`th replica.
pub fn replica_id(gpu: &str, n: u32) -> String {
    format!("{gpu}{REPLICA_SEPARATOR}{n}")
}

/// Every resource served and its devices, `resource` being the whole GPUs' (and their
/// replicas') resource name. A resource always appears, empty or not, so that a node whose
/// GPUs are all in MIG mode still says it has none of them whole.
pub fn advertise(
    inventory: &GpuInventory,
    config: &SharingConfig,
    resource: &str,
) -> BTreeMap<String, Vec<ServedDevice>> {
    let mut served: BTreeMap<String, Vec<ServedDevice>> = BTreeMap::new();
    served.insert(resource.to_string(), Vec::new());
    let replicas = config.replicas();
    for gpu in &inventory.gpus {
        let device = |id: String, visible: &str, replica: bool| ServedDevice {
            id,
            gpu: gpu.id.clone(),
            visible: visible.to_string(),
            health: gpu.health,
            numa_node: gpu.numa_node,
            replica,
        };
        if gpu.mig_enabled {
            for mig in &gpu.mig_devices {
                served.entry(mig_resource(&mig.profile)).or_default().push(device(
                    mig.id.clone(),
                    &mig.id,
                    false,
                ));
            }
            continue;
        }
        let whole = served.entry(resource.to_string()).or_default();
        if replicas > 1 {
            whole.extend((0..replicas).map(|n| device(replica_id(&gpu.id, n), &gpu.id, true)));
        } else {
            whole.push(device(gpu.id.clone(), &gpu.id, false));
        }
    }
    served
}

/// Replicas to give a container asking for `size` of them, from those the kubelet still has:
/// on the GPUs with the fewest replicas left first, so partly used GPUs fill up and untouched
/// ones stay whole for whole-GPU work; the kubelet's must-include ones always. Where several
/// are needed they come from as many different GPUs as that order allows before doubling up.
pub fn preferred_replicas(
    devices: &[ServedDevice],
    available: &[String],
    must_include: &[String],
    size: usize,
) -> Vec<String> {
    let by_id: BTreeMap<&str, &ServedDevice> = devices.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut left: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for id in available {
        if let Some(device) = by_id.get(id.as_str())
            && device.health == Health::Healthy
        {
            left.entry(device.gpu.as_str()).or_default().push(id.as_str());
        }
    }
    // Fullest GPU first (fewest replicas left, counting the must-include ones as left so a
    // GPU they come from is not also the next pick), then by ID for a stable answer.
    let mut order: Vec<(&str, usize)> = left.iter().map(|(gpu, ids)| (*gpu, ids.len())).collect();
    order.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
    let mut chosen: Vec<String> = must_include.iter().take(size).cloned().collect();
    for ids in left.values_mut() {
        ids.retain(|id| !chosen.iter().any(|c| c == id));
        ids.sort_unstable();
    }
    let mut round = 0;
    while chosen.len() < size {
        let mut took = false;
        for (gpu, _) in &order {
            if chosen.len() == size {
                break;
            }
            if let Some(id) = left[gpu].get(round) {
                chosen.push(id.to_string());
                took = true;
            }
        }
        if !took {
            break;
        }
        round += 1;
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeBackend;
    use crate::inventory::MigDevice;

    fn ids(devices: &[ServedDevice]) -> Vec<&str> {
        devices.iter().map(|d| d.id.as_str()).collect()
    }

    #[test]
    fn whole_gpus_are_served_once_under_their_own_id() {
        let inv = FakeBackend::preset("h100", 2).unwrap();
        let served = advertise(&inv, &SharingConfig::whole(), "nvidia.com/gpu");
        assert_eq!(served.len(), 1);
        let gpus = &served["nvidia.com/gpu"];
        assert_eq!(ids(gpus), [inv.gpus[0].id.as_str(), inv.gpus[1].id.as_str()]);
        assert!(gpus.iter().all(|d| !d.replica && d.visible == d.gpu));
    }

    #[test]
    fn a_time_sliced_gpu_is_n_replicas_showing_the_same_gpu() {
        let inv = FakeBackend::preset("rtx4090", 2).unwrap();
        let served = advertise(&inv, &SharingConfig::time_sliced(3), "nvidia.com/gpu");
        let devices = &served["nvidia.com/gpu"];
        assert_eq!(devices.len(), 6);
        let first = &inv.gpus[0].id;
        assert_eq!(ids(&devices[..3]), [format!("{first}::0"), format!("{first}::1"), format!("{first}::2")]);
        assert!(devices[..3].iter().all(|d| d.visible == *first && d.gpu == *first && d.replica));
        assert_eq!(devices[3].numa_node, inv.gpus[1].numa_node);
    }

    #[test]
    fn an_unhealthy_shared_gpu_takes_all_its_replicas_out_and_back() {
        let mut inv = FakeBackend::preset("h100", 2).unwrap();
        inv.gpus[1].health = Health::Unhealthy;
        let served = advertise(&inv, &SharingConfig::time_sliced(4), "nvidia.com/gpu");
        let health = |gpu: &str| {
            served["nvidia.com/gpu"].iter().filter(|d| d.gpu == gpu).map(|d| d.health).collect::<Vec<_>>()
        };
        assert_eq!(health(&inv.gpus[1].id), [Health::Unhealthy; 4]);
        assert_eq!(health(&inv.gpus[0].id), [Health::Healthy; 4]);
        inv.gpus[1].health = Health::Healthy;
        let served = advertise(&inv, &SharingConfig::time_sliced(4), "nvidia.com/gpu");
        assert!(served["nvidia.com/gpu"].iter().all(|d| d.health == Health::Healthy));
    }

    #[test]
    fn mig_devices_are_resources_of_their_own_and_share_their_gpus_health() {
        let mut inv = FakeBackend::preset("h100", 2).unwrap();
        let mig = |id: &str, profile: &str, memory_mib| MigDevice {
            id: id.into(),
            profile: profile.into(),
            memory_mib,
        };
        inv.gpus[0].mig_enabled = true;
        inv.gpus[0].mig_devices = vec![
            mig("MIG-a", "1g.10gb", 9_984),
            mig("MIG-b", "1g.10gb", 9_984),
            mig("MIG-c", "3g.40gb", 40_192),
        ];
        inv.gpus[0].health = Health::Unhealthy;
        // Time-slicing applies to whole GPUs only; a MIG slice is served once.
        let served = advertise(&inv, &SharingConfig::time_sliced(2), "nvidia.com/gpu");
        assert_eq!(
            served.keys().collect::<Vec<_>>(),
            ["nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "nvidia.com/mig-3g.40gb"]
        );
        assert_eq!(ids(&served["nvidia.com/mig-1g.10gb"]), ["MIG-a", "MIG-b"]);
        assert_eq!(served["nvidia.com/gpu"].len(), 2, "the MIG-mode GPU is not served whole");
        assert!(served["nvidia.com/gpu"].iter().all(|d| d.gpu == inv.gpus[1].id));
        let c = &served["nvidia.com/mig-3g.40gb"][0];
        assert_eq!(
            (c.visible.as_str(), c.gpu.as_str(), c.health),
            ("MIG-c", inv.gpus[0].id.as_str(), Health::Unhealthy)
        );
    }

    #[test]
    fn all_gpus_in_mig_mode_leave_the_whole_resource_empty_but_served() {
        let mut inv = FakeBackend::preset("h100", 1).unwrap();
        inv.gpus[0].mig_enabled = true;
        let served = advertise(&inv, &SharingConfig::whole(), "nvidia.com/gpu");
        assert_eq!(served.len(), 1);
        assert!(served["nvidia.com/gpu"].is_empty());
    }

    #[test]
    fn replicas_pack_onto_the_fullest_gpu_and_spread_when_several_are_asked() {
        let inv = FakeBackend::preset("h100", 2).unwrap();
        let served = advertise(&inv, &SharingConfig::time_sliced(3), "nvidia.com/gpu");
        let devices = &served["nvidia.com/gpu"];
        let (a, b) = (&inv.gpus[0].id, &inv.gpus[1].id);
        // GPU b has one replica in use (two left), GPU a none: b is the fuller.
        let available: Vec<String> =
            [replica_id(a, 0), replica_id(a, 1), replica_id(a, 2), replica_id(b, 1), replica_id(b, 2)].into();
        assert_eq!(preferred_replicas(devices, &available, &[], 1), [replica_id(b, 1)]);
        assert_eq!(preferred_replicas(devices, &available, &[], 2), [replica_id(b, 1), replica_id(a, 0)]);
        assert_eq!(
            preferred_replicas(devices, &available, &[replica_id(a, 2)], 2),
            [replica_id(a, 2), replica_id(b, 1)]
        );
        assert_eq!(preferred_replicas(devices, &available, &[], 9).len(), 5, "no more than there are");
    }

    #[test]
    fn replicas_of_an_unhealthy_gpu_are_never_preferred() {
        let mut inv = FakeBackend::preset("h100", 2).unwrap();
        inv.gpus[1].health = Health::Unhealthy;
        let served = advertise(&inv, &SharingConfig::time_sliced(2), "nvidia.com/gpu");
        let devices = &served["nvidia.com/gpu"];
        let available: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
        let chosen = preferred_replicas(devices, &available, &[], 2);
        assert!(chosen.iter().all(|id| id.starts_with(&inv.gpus[0].id)), "{chosen:?}");
    }
}
