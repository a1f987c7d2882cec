//! NVML on the machine the tests run on: with an NVIDIA GPU, the backend lists it with UUID,
//! name and memory, reads each GPU's MIG mode (never changes it) and lists a MIG-mode GPU's
//! MIG devices as resources of their own; its GPUs time-sliced are replicas that follow their
//! GPU's health. Without a GPU the backend must say why, and these tests skip saying so. A
//! machine with the NVIDIA driver loaded may not skip.

use pictor_crds::contract::node_labels;
use pictor_device_plugins::advertise::advertise;
use pictor_device_plugins::allocation::served_allocation;
use pictor_device_plugins::labeller::gpu_labels;
use pictor_device_plugins::nvml::NvmlBackend;
use pictor_device_plugins::sharing::SharingConfig;
use pictor_device_plugins::{BackendError, GpuBackend, GpuInventory, Health, Vendor};
use std::path::Path;

/// The backend and its inventory, or `None` (said why) on a machine without NVIDIA GPUs.
fn real_inventory() -> Option<(NvmlBackend, GpuInventory)> {
    let backend = match NvmlBackend::new() {
        Ok(backend) => backend,
        Err(BackendError::Unavailable { backend, reason }) => {
            assert!(
                !Path::new("/proc/driver/nvidia/version").exists(),
                "the NVIDIA driver is loaded, yet {backend} is unavailable: {reason}"
            );
            eprintln!("skipping: {backend} not available ({reason})");
            return None;
        }
        Err(other) => panic!("NVML loaded but failed: {other}"),
    };
    let inventory = match backend.inventory() {
        Ok(inventory) => inventory,
        Err(BackendError::Unavailable { reason, .. }) => {
            eprintln!("skipping: NVML loads but {reason}");
            return None;
        }
        Err(other) => panic!("NVML inventory failed (MIG mode included): {other}"),
    };
    Some((backend, inventory))
}

#[test]
fn nvml_lists_the_real_gpus_or_skips_saying_why() {
    let Some((backend, inventory)) = real_inventory() else { return };
    assert_eq!(inventory.vendor, Vendor::Nvidia);
    assert!(!inventory.driver_version.is_empty());
    for gpu in &inventory.gpus {
        eprintln!(
            "{} {} {} MiB, PCI {}, NUMA {:?}, compute {}, {} NVLink peer(s), {:?}, MIG mode {}, {} MIG device(s)",
            gpu.id,
            gpu.name,
            gpu.memory_mib,
            gpu.pci_bus_id,
            gpu.numa_node,
            gpu.compute,
            gpu.peers.len(),
            gpu.device_nodes,
            if gpu.mig_enabled { "enabled" } else { "disabled" },
            gpu.mig_devices.len()
        );
        assert!(gpu.id.starts_with("GPU-") && gpu.id.len() <= 63, "UUID {}", gpu.id);
        assert!(!gpu.name.is_empty());
        assert!(gpu.memory_mib >= 1024, "{} has {} MiB", gpu.name, gpu.memory_mib);
        assert!(gpu.pci_bus_id.len() == 12 && gpu.pci_bus_id.contains(':'), "bus id {}", gpu.pci_bus_id);
        assert!(gpu.compute.contains('.'), "compute capability {}", gpu.compute);
        assert!(gpu.device_nodes[0].to_str().unwrap().starts_with("/dev/nvidia"));
    }
    // Waiting for health events works (normally nothing happens in a second).
    backend.wait_health_events(std::time::Duration::from_millis(200)).unwrap();
}

/// MIG mode as NVML reports it, read twice to the same answer (reading changes nothing); a GPU
/// in MIG mode is served as its MIG devices, one resource per profile, never whole.
#[test]
fn nvml_reads_mig_mode_and_serves_mig_devices_as_their_own_resources() {
    let Some((backend, inventory)) = real_inventory() else { return };
    let again = backend.inventory().expect("a second read");
    let modes =
        |inv: &GpuInventory| inv.gpus.iter().map(|g| (g.id.clone(), g.mig_enabled)).collect::<Vec<_>>();
    assert_eq!(modes(&inventory), modes(&again), "MIG mode is read, never changed");
    let served = advertise(&inventory, &SharingConfig::whole(), "nvidia.com/gpu");
    for gpu in &inventory.gpus {
        let whole = served["nvidia.com/gpu"].iter().any(|d| d.id == gpu.id);
        eprintln!("{}: MIG mode {}", gpu.id, if gpu.mig_enabled { "enabled" } else { "disabled" });
        assert_eq!(whole, !gpu.mig_enabled, "a GPU is served whole exactly when MIG mode is off");
        if !gpu.mig_enabled {
            assert!(gpu.mig_devices.is_empty());
        }
        for mig in &gpu.mig_devices {
            eprintln!("  {} {} {} MiB", mig.id, mig.profile, mig.memory_mib);
            assert!(mig.id.starts_with("MIG-"), "MIG UUID {}", mig.id);
            let resource = format!("nvidia.com/mig-{}", mig.profile);
            assert!(
                served.get(&resource).is_some_and(|d| d.iter().any(|d| d.id == mig.id && d.gpu == gpu.id)),
                "{} is served under {resource}",
                mig.id
            );
        }
    }
    for (resource, devices) in &served {
        eprintln!("{resource}: {} device(s)", devices.len());
    }
}

/// The real GPUs time-sliced four ways: four replicas each, all showing their GPU, allocatable,
/// and all out when their GPU is (health as the plugin applies a backend's event).
#[test]
fn nvml_gpus_time_sliced_are_replicas_that_share_their_gpus_health() {
    let Some((_backend, mut inventory)) = real_inventory() else { return };
    let sharing = SharingConfig::time_sliced(4);
    let whole: Vec<String> = inventory.gpus.iter().filter(|g| !g.mig_enabled).map(|g| g.id.clone()).collect();
    if whole.is_empty() {
        eprintln!("skipping: every GPU is in MIG mode; time-slicing applies to whole GPUs");
        return;
    }
    let served = advertise(&inventory, &sharing, "nvidia.com/gpu");
    let replicas = &served["nvidia.com/gpu"];
    assert_eq!(replicas.len(), whole.len() * 4);
    for gpu in &whole {
        let of_gpu: Vec<&str> = replicas.iter().filter(|d| d.gpu == *gpu).map(|d| d.id.as_str()).collect();
        assert_eq!(of_gpu.len(), 4, "{gpu}");
        let ids: Vec<String> = of_gpu[..2].iter().map(|s| s.to_string()).collect();
        let given = served_allocation(&inventory, replicas, &ids).expect("two replicas of a healthy GPU");
        assert_eq!(given.envs["NVIDIA_VISIBLE_DEVICES"], *gpu);
        assert!(given.devices.iter().any(|d| d.host_path.starts_with("/dev/nvidia")));
    }
    let labels = gpu_labels(&inventory, &sharing);
    assert_eq!(labels[node_labels::SHARING], "time-slicing");
    assert_eq!(labels[node_labels::REPLICAS], "4");
    assert_eq!(labels[node_labels::COUNT], inventory.gpus.len().to_string());
    // The first whole GPU faults: its four replicas go, every other replica stays.
    let sick = whole[0].clone();
    inventory.gpus.iter_mut().find(|g| g.id == sick).unwrap().health = Health::Unhealthy;
    let served = advertise(&inventory, &sharing, "nvidia.com/gpu");
    for device in &served["nvidia.com/gpu"] {
        let expected = if device.gpu == sick { Health::Unhealthy } else { Health::Healthy };
        assert_eq!(device.health, expected, "{}", device.id);
    }
}
