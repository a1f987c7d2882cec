//! NVML on the machine the tests run on: with an NVIDIA GPU, the backend lists it with UUID,
//! name and memory; without one it must say why, and this test skips saying so. A machine with
//! the NVIDIA driver loaded may not skip.

use pictor_device_plugins::nvml::NvmlBackend;
use pictor_device_plugins::{BackendError, GpuBackend, Vendor};
use std::path::Path;

#[test]
fn nvml_lists_the_real_gpus_or_skips_saying_why() {
    let backend = match NvmlBackend::new() {
        Ok(backend) => backend,
        Err(BackendError::Unavailable { backend, reason }) => {
            assert!(
                !Path::new("/proc/driver/nvidia/version").exists(),
                "the NVIDIA driver is loaded, yet {backend} is unavailable: {reason}"
            );
            eprintln!("skipping: {backend} not available ({reason})");
            return;
        }
        Err(other) => panic!("NVML loaded but failed: {other}"),
    };
    let inventory = match backend.inventory() {
        Ok(inventory) => inventory,
        Err(BackendError::Unavailable { reason, .. }) => {
            eprintln!("skipping: NVML loads but {reason}");
            return;
        }
        Err(other) => panic!("NVML inventory failed: {other}"),
    };
    assert_eq!(inventory.vendor, Vendor::Nvidia);
    assert!(!inventory.driver_version.is_empty());
    for gpu in &inventory.gpus {
        eprintln!(
            "{} {} {} MiB, PCI {}, NUMA {:?}, compute {}, {} NVLink peer(s), {:?}",
            gpu.id,
            gpu.name,
            gpu.memory_mib,
            gpu.pci_bus_id,
            gpu.numa_node,
            gpu.compute,
            gpu.peers.len(),
            gpu.device_nodes
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
