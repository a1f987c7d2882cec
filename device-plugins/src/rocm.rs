//! AMD GPUs through ROCm-SMI (`rocm_smi_lib`, linked against `librocm_smi64`). The gfx target
//! and xGMI links come from the KFD topology in sysfs, which rocm_smi_lib 0.3 does not expose.
//! Health is polled: a GPU that stops answering, or whose uncorrectable ECC count grows, is
//! unhealthy; one that answers again with no new uncorrectable errors is healthy again.

use crate::backend::{BackendError, GpuBackend};
use crate::inventory::{Gpu, GpuInventory, Health, HealthEvent};
use crate::sysfs;
use pictor_crds::contract::Vendor;
use rocm_smi_lib::{RocmErr, RocmSmi};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const BACKEND: &str = "ROCm-SMI";
/// How often health is polled.
const POLL_EVERY: Duration = Duration::from_secs(5);

pub struct RocmBackend {
    state: Mutex<State>,
}

struct State {
    smi: RocmSmi,
    /// Per GPU index, what polling compares against.
    watched: BTreeMap<u32, Watched>,
    polled: Option<Instant>,
}

struct Watched {
    id: String,
    uncorrectable: u64,
    health: Health,
    /// Uncorrectable memory errors do not heal: such a GPU stays unhealthy until a restart.
    ecc_failed: bool,
}

fn query(what: impl Into<String>) -> impl FnOnce(RocmErr) -> BackendError {
    let what = what.into();
    move |e| BackendError::Query { backend: BACKEND, what, reason: format!("{e:?}") }
}

/// `domain << 32 | bus << 8 | device << 3 | function`, as rsmi_dev_pci_id_get packs it.
fn bus_id(packed: u64) -> String {
    format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        (packed >> 32) & 0xffff_ffff,
        (packed >> 8) & 0xff,
        (packed >> 3) & 0x1f,
        packed & 0x7
    )
}

/// The market name as the label shows it: ROCm reports it without the maker on some versions.
fn product_name(name: &str) -> String {
    let name = name.trim();
    if name.to_ascii_uppercase().starts_with("AMD") { name.to_string() } else { format!("AMD {name}") }
}

/// A GPU's health from one poll: new uncorrectable errors, or no answer, make it unhealthy;
/// one that ever had uncorrectable errors stays so; otherwise it is healthy (again).
fn polled_health(answers: bool, new_errors: u64, ecc_failed: bool) -> (Health, String) {
    if new_errors > 0 {
        (Health::Unhealthy, format!("{new_errors} new uncorrectable ECC error(s)"))
    } else if !answers {
        (Health::Unhealthy, "the GPU stopped answering ROCm-SMI".to_string())
    } else if ecc_failed {
        (Health::Unhealthy, "uncorrectable ECC errors earlier".to_string())
    } else {
        (Health::Healthy, "the GPU answers again".to_string())
    }
}

impl RocmBackend {
    /// Initialises ROCm-SMI; [`BackendError::Unavailable`] when the node has no AMD GPU.
    pub fn new() -> Result<Self, BackendError> {
        let mut smi = RocmSmi::init().map_err(|e| BackendError::Unavailable {
            backend: BACKEND,
            reason: format!("no AMD GPU: ROCm-SMI did not initialise ({e:?}; is the amdgpu driver loaded?)"),
        })?;
        if smi.get_device_count() == 0 {
            return Err(BackendError::Unavailable {
                backend: BACKEND,
                reason: "no AMD GPU found".to_string(),
            });
        }
        Ok(RocmBackend { state: Mutex::new(State { smi, watched: BTreeMap::new(), polled: None }) })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn uncorrectable_errors(smi: &mut RocmSmi, index: u32) -> u64 {
    smi.get_device_ecc_data(index)
        .blocks
        .iter()
        .filter_map(|b| b.block.as_ref())
        .map(|b| b.counters.uncorrectable_err)
        .sum()
}

impl GpuBackend for RocmBackend {
    fn vendor(&self) -> Vendor {
        Vendor::Amd
    }

    fn inventory(&self) -> Result<GpuInventory, BackendError> {
        let mut state = self.state();
        let State { smi, watched, .. } = &mut *state;
        let count = smi.get_device_count();
        let driver_version = smi.get_rsmi_driver_version().map_err(query("driver version"))?;
        let kfd: BTreeMap<String, sysfs::KfdGpu> =
            sysfs::kfd_gpus().into_iter().map(|g| (g.bus_id.clone(), g)).collect();
        let mut gpus = Vec::new();
        for index in 0..count {
            let ids = smi.get_device_identifiers(index).map_err(query(format!("GPU {index}")))?;
            let pcie = smi.get_device_pcie_data(index).map_err(query(format!("PCIe of GPU {index}")))?;
            let memory = smi.get_device_memory_data(index).map_err(query(format!("VRAM of GPU {index}")))?;
            let pci_bus_id = bus_id(pcie.id);
            let topology = kfd.get(&pci_bus_id).cloned().unwrap_or_default();
            let render = match ids.drm_render_minor {
                Ok(minor) => Some(std::path::PathBuf::from(format!("/dev/dri/renderD{minor}"))),
                Err(_) => sysfs::render_node(&pci_bus_id),
            };
            let health = watched.get(&index).map_or(Health::Healthy, |w| w.health);
            watched.entry(index).or_insert_with(|| Watched {
                id: pci_bus_id.clone(),
                uncorrectable: uncorrectable_errors(smi, index),
                health,
                ecc_failed: false,
            });
            gpus.push(Gpu {
                // The PCI bus id: stable across reboots and how AMD's tools name a GPU.
                id: pci_bus_id.clone(),
                name: product_name(&ids.name.map_err(query(format!("name of GPU {index}")))?),
                memory_mib: memory.vram_total / (1024 * 1024),
                pci_root: sysfs::pci_root(&pci_bus_id),
                numa_node: Some(i64::from(pcie.associated_numa_node))
                    .filter(|n| *n >= 0)
                    .or_else(|| sysfs::numa_node(&pci_bus_id)),
                peers: topology.xgmi_peers,
                device_nodes: render.into_iter().collect(),
                compute: topology.gfx_target,
                health,
                pci_bus_id,
                // MIG is NVIDIA's; AMD's partition modes are not served.
                mig_enabled: false,
                mig_devices: Vec::new(),
            });
        }
        Ok(GpuInventory { vendor: Vendor::Amd, driver_version, gpus, shared_device_nodes: None })
    }

    fn wait_health_events(&self, timeout: Duration) -> Result<Vec<HealthEvent>, BackendError> {
        // ROCm-SMI 0.3 exposes no event wait: poll, but only every POLL_EVERY (an ECC read
        // is a dozen sysfs reads per GPU).
        std::thread::sleep(timeout);
        let mut state = self.state();
        if state.polled.is_some_and(|at| at.elapsed() < POLL_EVERY) {
            return Ok(vec![]);
        }
        state.polled = Some(Instant::now());
        let State { smi, watched, .. } = &mut *state;
        let mut events = Vec::new();
        for (index, gpu) in watched.iter_mut() {
            let answers = smi.get_device_busy_percent(*index).is_ok();
            let uncorrectable = uncorrectable_errors(smi, *index);
            let new_errors = uncorrectable.saturating_sub(gpu.uncorrectable);
            gpu.uncorrectable = uncorrectable;
            gpu.ecc_failed |= new_errors > 0;
            let (now, reason) = polled_health(answers, new_errors, gpu.ecc_failed);
            if now != gpu.health {
                gpu.health = now;
                events.push(HealthEvent { id: gpu.id.clone(), health: now, reason });
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_pci_ids_unpack_to_bus_ids() {
        assert_eq!(bus_id(0xc100), "0000:c1:00.0");
        assert_eq!(bus_id((1 << 32) | (0x03 << 8) | (2 << 3) | 1), "0001:03:02.1");
    }

    #[test]
    fn polling_flips_health_and_ecc_failures_stick() {
        assert_eq!(polled_health(true, 0, false).0, Health::Healthy);
        assert_eq!(polled_health(false, 0, false).0, Health::Unhealthy);
        assert_eq!(
            polled_health(true, 2, true),
            (Health::Unhealthy, "2 new uncorrectable ECC error(s)".into())
        );
        assert_eq!(polled_health(true, 0, true).0, Health::Unhealthy, "memory errors do not heal");
    }

    #[test]
    fn products_carry_the_maker() {
        assert_eq!(product_name("Instinct MI300X"), "AMD Instinct MI300X");
        assert_eq!(product_name("AMD Radeon RX 7900 XTX"), "AMD Radeon RX 7900 XTX");
    }
}
