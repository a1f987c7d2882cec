//! A backend without hardware, for tests and the local demo: an inventory held in memory (or
//! read from a JSON file on every look) whose GPUs' health a test flips at will — in memory with
//! [`FakeBackend::set_health`], or by editing the file, which a plugin in another process sees.

use crate::backend::{BackendError, GpuBackend};
use crate::inventory::{Gpu, GpuInventory, Health, HealthEvent, MigDevice};
use pictor_crds::contract::Vendor;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Hands out clones that share one inventory, so a test keeps a handle to the backend it gave
/// the plugin or the labeller.
#[derive(Clone)]
pub struct FakeBackend {
    shared: Arc<Shared>,
}

struct Shared {
    vendor: Vendor,
    inventory: Mutex<GpuInventory>,
    file: Option<PathBuf>,
    /// The health each GPU of the file had when last looked at, to turn edits into events.
    file_health: Mutex<HashMap<String, Health>>,
    events_in: Mutex<Sender<HealthEvent>>,
    events_out: Mutex<Receiver<HealthEvent>>,
}

impl FakeBackend {
    pub fn new(inventory: GpuInventory) -> Self {
        Self::build(inventory, None)
    }

    /// Reads `path` (a JSON [`GpuInventory`]) now and again on every [`GpuBackend::inventory`],
    /// so editing the file changes what the node labeller publishes.
    pub fn from_file(path: PathBuf) -> Result<Self, BackendError> {
        let inventory = read_file(&path)?;
        Ok(Self::build(inventory, Some(path)))
    }

    fn build(inventory: GpuInventory, file: Option<PathBuf>) -> Self {
        let (tx, rx) = channel();
        let file_health = inventory.gpus.iter().map(|g| (g.id.clone(), g.health)).collect();
        FakeBackend {
            shared: Arc::new(Shared {
                file_health: Mutex::new(file_health),
                vendor: inventory.vendor,
                inventory: Mutex::new(inventory),
                file,
                events_in: Mutex::new(tx),
                events_out: Mutex::new(rx),
            }),
        }
    }

    /// `count` GPUs of a model of the e2e catalogue (`h100`, `rtx4090`, `mi300x`, `rx7900xtx`).
    /// Eight-GPU boxes are two halves of four: each half linked (NVLink / xGMI), on its own NUMA
    /// node and PCIe root, so topology-aware allocation has something to choose.
    pub fn preset(model: &str, count: usize) -> Option<GpuInventory> {
        let (vendor, name, memory_mib, compute, driver) = match model {
            "h100" => (Vendor::Nvidia, "NVIDIA H100 80GB HBM3", 81_559, "9.0", "570.124.06"),
            "rtx4090" => (Vendor::Nvidia, "NVIDIA GeForce RTX 4090", 24_564, "8.9", "570.124.06"),
            "mi300x" => (Vendor::Amd, "AMD Instinct MI300X", 196_592, "gfx942", "6.10.5"),
            "rx7900xtx" => (Vendor::Amd, "AMD Radeon RX 7900 XTX", 24_560, "gfx1100", "6.10.5"),
            _ => return None,
        };
        let id = |i: usize| match vendor {
            Vendor::Nvidia => format!("GPU-{:08x}-0000-4000-8000-{:012x}", 0x5eed_0000 + i, i),
            Vendor::Amd => bus_id(i),
        };
        let half = |i: usize| i / 4;
        let gpus = (0..count)
            .map(|i| Gpu {
                id: id(i),
                name: name.to_string(),
                memory_mib,
                pci_bus_id: bus_id(i),
                pci_root: Some(format!("pci0000:{:02x}", half(i) * 0x80)),
                numa_node: Some(half(i) as i64),
                peers: (0..count).filter(|&j| j != i && half(j) == half(i)).map(id).collect(),
                device_nodes: vec![PathBuf::from(match vendor {
                    Vendor::Nvidia => format!("/dev/nvidia{i}"),
                    Vendor::Amd => format!("/dev/dri/renderD{}", 128 + i),
                })],
                compute: compute.to_string(),
                health: Health::Healthy,
                mig_enabled: false,
                mig_devices: Vec::new(),
            })
            .collect();
        Some(GpuInventory { vendor, driver_version: driver.to_string(), gpus, shared_device_nodes: None })
    }

    /// Puts GPU `index` of `inventory` in MIG mode, split into one MIG device per profile
    /// (`1g.10gb`: its memory is read from the name), as `nvidia-smi mig -cgi … -C` would leave
    /// it. A JSON inventory file says the same with `migEnabled` and `migDevices`.
    pub fn split_mig(inventory: &mut GpuInventory, index: usize, profiles: &[&str]) {
        let gpu = &mut inventory.gpus[index];
        gpu.mig_enabled = true;
        gpu.mig_devices = profiles
            .iter()
            .enumerate()
            .map(|(n, profile)| {
                let gib: u64 = profile
                    .rsplit('.')
                    .next()
                    .and_then(|m| m.trim_end_matches("gb").parse().ok())
                    .unwrap_or(1);
                MigDevice {
                    id: format!("MIG-{:08x}-0000-4000-8000-{:012x}", 0x319_0000 + index, n),
                    profile: profile.to_string(),
                    memory_mib: gib * 1024,
                }
            })
            .collect();
    }

    /// Flips a GPU's health and tells whoever waits for health events, as a real XID would.
    pub fn set_health(&self, id: &str, health: Health) {
        let mut inventory = lock(&self.shared.inventory);
        if let Some(gpu) = inventory.gpus.iter_mut().find(|g| g.id == id) {
            gpu.health = health;
        }
        let event = HealthEvent { id: id.to_string(), health, reason: "injected by the test".to_string() };
        // The receiver lives as long as `shared`, so the send cannot fail.
        let _ = lock(&self.shared.events_in).send(event);
    }

    /// Replaces the whole inventory (GPUs added, removed, a driver upgrade).
    pub fn set_inventory(&self, inventory: GpuInventory) {
        *lock(&self.shared.inventory) = inventory;
    }
}

fn bus_id(i: usize) -> String {
    format!("0000:{:02x}:00.0", 0x10 + (i / 4) * 0x80 + (i % 4) * 0x10)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not hide the inventory from the others.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How often a file inventory is looked at for health edits while events are awaited.
const FILE_HEALTH_POLL: Duration = Duration::from_millis(20);

fn read_file(path: &PathBuf) -> Result<GpuInventory, BackendError> {
    let fail = |reason: String| BackendError::FakeInventory { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| fail(e.to_string()))
}

impl GpuBackend for FakeBackend {
    fn vendor(&self) -> Vendor {
        self.shared.vendor
    }

    fn inventory(&self) -> Result<GpuInventory, BackendError> {
        if let Some(path) = &self.shared.file {
            let fresh = read_file(path)?;
            *lock(&self.shared.inventory) = fresh;
        }
        Ok(lock(&self.shared.inventory).clone())
    }

    fn wait_health_events(&self, timeout: Duration) -> Result<Vec<HealthEvent>, BackendError> {
        match &self.shared.file {
            Some(path) => self.wait_file_health_events(path, timeout),
            None => self.wait_set_health_events(timeout),
        }
    }
}

impl FakeBackend {
    fn wait_set_health_events(&self, timeout: Duration) -> Result<Vec<HealthEvent>, BackendError> {
        let events = lock(&self.shared.events_out);
        let mut seen = match events.recv_timeout(timeout) {
            Ok(event) => vec![event],
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return Ok(vec![]),
        };
        seen.extend(events.try_iter());
        Ok(seen)
    }

    /// The health changes made by editing the inventory file (and by [`Self::set_health`]),
    /// looked for every [`FILE_HEALTH_POLL`] until one is seen or `timeout` passes. A file
    /// caught half-written is looked at again on the next poll.
    fn wait_file_health_events(
        &self,
        path: &PathBuf,
        timeout: Duration,
    ) -> Result<Vec<HealthEvent>, BackendError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let mut seen: Vec<HealthEvent> = lock(&self.shared.events_out).try_iter().collect();
            if let Ok(inventory) = read_file(path) {
                let mut known = lock(&self.shared.file_health);
                for gpu in &inventory.gpus {
                    if known.insert(gpu.id.clone(), gpu.health) != Some(gpu.health) {
                        seen.push(HealthEvent {
                            id: gpu.id.clone(),
                            health: gpu.health,
                            reason: format!("{} edited", path.display()),
                        });
                    }
                }
            }
            let now = std::time::Instant::now();
            if !seen.is_empty() || now >= deadline {
                return Ok(seen);
            }
            std::thread::sleep(FILE_HEALTH_POLL.min(deadline - now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_gpu_preset_is_two_linked_halves() {
        let inv = FakeBackend::preset("h100", 8).unwrap();
        assert_eq!(inv.gpus.len(), 8);
        assert_eq!(inv.gpus[0].peers.len(), 3);
        assert!(inv.gpus[0].peers.contains(&inv.gpus[3].id));
        assert!(!inv.gpus[0].peers.contains(&inv.gpus[4].id));
        assert_eq!(inv.gpus[5].numa_node, Some(1));
        let ids: std::collections::BTreeSet<_> = inv.gpus.iter().map(|g| &g.id).collect();
        assert_eq!(ids.len(), 8, "ids are unique");
        assert!(inv.gpus.iter().all(|g| g.id.len() <= 63));
        assert!(FakeBackend::preset("tpu", 1).is_none());
    }

    #[test]
    fn health_flips_are_seen_once_in_order() {
        let fake = FakeBackend::new(FakeBackend::preset("mi300x", 2).unwrap());
        let id = fake.inventory().unwrap().gpus[1].id.clone();
        fake.set_health(&id, Health::Unhealthy);
        fake.set_health(&id, Health::Healthy);
        let events = fake.wait_health_events(Duration::from_millis(10)).unwrap();
        let healths: Vec<_> = events.iter().map(|e| e.health).collect();
        assert_eq!(healths, [Health::Unhealthy, Health::Healthy]);
        assert!(fake.wait_health_events(Duration::from_millis(10)).unwrap().is_empty());
    }

    #[test]
    fn a_mig_split_reads_back_from_an_inventory_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.json");
        let mut inventory = FakeBackend::preset("h100", 2).unwrap();
        FakeBackend::split_mig(&mut inventory, 1, &["3g.40gb", "1g.10gb"]);
        let mig = &inventory.gpus[1];
        assert!(mig.mig_enabled && !inventory.gpus[0].mig_enabled);
        assert_eq!(mig.mig_devices.iter().map(|m| m.memory_mib).collect::<Vec<_>>(), [40 * 1024, 10 * 1024]);
        assert_ne!(mig.mig_devices[0].id, mig.mig_devices[1].id);
        let json = serde_json::to_string(&inventory).unwrap();
        assert!(json.contains("\"migEnabled\":true") && json.contains("\"profile\":\"3g.40gb\""), "{json}");
        std::fs::write(&path, json).unwrap();
        assert_eq!(FakeBackend::from_file(path).unwrap().inventory().unwrap(), inventory);
    }

    #[test]
    fn file_inventory_is_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.json");
        let one = FakeBackend::preset("rtx4090", 1).unwrap();
        std::fs::write(&path, serde_json::to_string(&one).unwrap()).unwrap();
        let fake = FakeBackend::from_file(path.clone()).unwrap();
        assert_eq!(fake.inventory().unwrap().gpus.len(), 1);
        let two = FakeBackend::preset("rtx4090", 2).unwrap();
        std::fs::write(&path, serde_json::to_string(&two).unwrap()).unwrap();
        assert_eq!(fake.inventory().unwrap().gpus.len(), 2);
    }

    #[test]
    fn editing_the_file_health_becomes_events_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.json");
        let mut inventory = FakeBackend::preset("rtx4090", 2).unwrap();
        std::fs::write(&path, serde_json::to_string(&inventory).unwrap()).unwrap();
        let fake = FakeBackend::from_file(path.clone()).unwrap();
        assert!(fake.wait_health_events(Duration::from_millis(50)).unwrap().is_empty());
        inventory.gpus[1].health = Health::Unhealthy;
        std::fs::write(&path, serde_json::to_string(&inventory).unwrap()).unwrap();
        let events = fake.wait_health_events(Duration::from_secs(2)).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].id.as_str(), events[0].health),
            (inventory.gpus[1].id.as_str(), Health::Unhealthy)
        );
        assert!(fake.wait_health_events(Duration::from_millis(50)).unwrap().is_empty(), "seen once");
        inventory.gpus[1].health = Health::Healthy;
        std::fs::write(&path, serde_json::to_string(&inventory).unwrap()).unwrap();
        let events = fake.wait_health_events(Duration::from_secs(2)).unwrap();
        assert_eq!(events.iter().map(|e| e.health).collect::<Vec<_>>(), [Health::Healthy]);
    }
}
