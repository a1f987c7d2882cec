//! NVIDIA GPUs through NVML (`nvml-wrapper`, which loads `libnvidia-ml.so` at run time, so the
//! binary starts on nodes without the driver and says so). Health comes from NVML's critical
//! XID and double-bit ECC events.

use crate::backend::{BackendError, GpuBackend};
use crate::inventory::{Gpu, GpuInventory, Health, HealthEvent};
use crate::sysfs;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{EventSet, Nvml};
use pictor_crds::contract::Vendor;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tracing::warn;

const BACKEND: &str = "NVML";
/// NVML reports at most this many NVLinks per GPU (NVML_NVLINK_MAX_LINKS).
const MAX_NVLINKS: u32 = 18;
/// XIDs caused by the application, not the GPU (the same list NVIDIA's own plugin skips):
/// graphics engine exception, MMU fault, reset channel, preemptive cleanup, video decoder
/// exception, and a context-switch timeout.
const APPLICATION_XIDS: [u64; 6] = [13, 31, 43, 45, 68, 109];

/// NVML initialised once per process: event sets borrow it for as long as they live.
static NVML: OnceLock<Nvml> = OnceLock::new();

pub struct NvmlBackend {
    nvml: &'static Nvml,
    /// Events of every GPU that supports them; `None` where none does (GeForce without ECC).
    events: Mutex<Option<EventSet<'static>>>,
    /// GPUs an event marked unhealthy; NVML has no "recovered" event, so they stay so.
    unhealthy: Mutex<BTreeSet<String>>,
}

fn unavailable(error: NvmlError) -> BackendError {
    let reason = match error {
        NvmlError::LibloadingError(e) => format!("libnvidia-ml.so not found: {e}"),
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".to_string(),
        NvmlError::LibraryNotFound => "libnvidia-ml.so not found".to_string(),
        other => other.to_string(),
    };
    BackendError::Unavailable { backend: BACKEND, reason }
}

fn query(what: impl Into<String>) -> impl FnOnce(NvmlError) -> BackendError {
    let what = what.into();
    move |e| BackendError::Query { backend: BACKEND, what, reason: e.to_string() }
}

/// Why an NVML event makes its GPU unhealthy, or `None` when it does not (the application's
/// own faults: the GPU is fine for the next container).
fn unhealthy_because(event_type: EventTypes, xid: Option<&XidError>) -> Option<String> {
    if event_type.contains(EventTypes::DOUBLE_BIT_ECC_ERROR) {
        return Some("double-bit ECC error".to_string());
    }
    match xid {
        Some(XidError::Value(xid)) if APPLICATION_XIDS.contains(xid) => None,
        Some(XidError::Value(xid)) => Some(format!("critical XID {xid}")),
        _ => Some("critical XID (unknown)".to_string()),
    }
}

/// Each GPU's NVLink peers as GPU IDs, from the PCI bus ids at the far end of its active links.
/// A far end that is no GPU of ours is an NVSwitch: the GPUs linked to a switch are all peers.
fn nvlink_peers(gpus: &[(String, String)], far_ends: &[Vec<String>]) -> Vec<Vec<String>> {
    let by_bus: BTreeMap<&str, &str> = gpus.iter().map(|(id, bus)| (bus.as_str(), id.as_str())).collect();
    let switched: Vec<&str> = gpus
        .iter()
        .zip(far_ends)
        .filter(|(_, ends)| ends.iter().any(|bus| !by_bus.contains_key(bus.as_str())))
        .map(|((id, _), _)| id.as_str())
        .collect();
    gpus.iter()
        .zip(far_ends)
        .map(|((id, _), ends)| {
            let mut peers: BTreeSet<&str> =
                ends.iter().filter_map(|bus| by_bus.get(bus.as_str()).copied()).collect();
            if switched.contains(&id.as_str()) {
                peers.extend(switched.iter().copied());
            }
            peers.remove(id.as_str());
            peers.into_iter().map(str::to_string).collect()
        })
        .collect()
}

impl NvmlBackend {
    /// Loads NVML; [`BackendError::Unavailable`] when the node has no NVIDIA driver.
    pub fn new() -> Result<Self, BackendError> {
        let nvml = match NVML.get() {
            Some(nvml) => nvml,
            None => {
                let fresh = Nvml::init().map_err(unavailable)?;
                NVML.get_or_init(|| fresh)
            }
        };
        let events = Self::register_events(nvml);
        Ok(NvmlBackend { nvml, events: Mutex::new(events), unhealthy: Mutex::new(BTreeSet::new()) })
    }

    fn register_events(nvml: &'static Nvml) -> Option<EventSet<'static>> {
        let wanted = EventTypes::CRITICAL_XID_ERROR | EventTypes::DOUBLE_BIT_ECC_ERROR;
        let mut set = nvml.create_event_set().map_err(|e| warn!("NVML events unavailable: {e}")).ok()?;
        let mut any = false;
        for index in 0..nvml.device_count().unwrap_or(0) {
            let Ok(device) = nvml.device_by_index(index) else { continue };
            let supported = device.supported_event_types().unwrap_or(EventTypes::empty()) & wanted;
            if supported.is_empty() {
                continue;
            }
            match device.register_events(supported, set) {
                Ok(kept) => {
                    set = kept;
                    any = true;
                }
                Err(e) => {
                    // NVML freed the set; health is then only what enumeration shows.
                    warn!("NVML: registering health events of GPU {index} failed: {e:?}");
                    return None;
                }
            }
        }
        any.then_some(set)
    }
}

impl GpuBackend for NvmlBackend {
    fn vendor(&self) -> Vendor {
        Vendor::Nvidia
    }

    fn inventory(&self) -> Result<GpuInventory, BackendError> {
        let nvml = self.nvml;
        let count = nvml.device_count().map_err(query("device count"))?;
        if count == 0 {
            return Err(BackendError::Unavailable { backend: BACKEND, reason: "no NVIDIA GPU found".into() });
        }
        let driver_version = nvml.sys_driver_version().map_err(query("driver version"))?;
        let unhealthy = self.unhealthy.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut gpus = Vec::new();
        // NVLink ends are reported as PCI bus ids; they become UUIDs once all GPUs are known.
        let mut links: Vec<Vec<String>> = Vec::new();
        for index in 0..count {
            let device = nvml.device_by_index(index).map_err(query(format!("GPU {index}")))?;
            let id = device.uuid().map_err(query(format!("UUID of GPU {index}")))?;
            let pci = device.pci_info().map_err(query(format!("PCI info of GPU {index}")))?;
            let pci_bus_id = sysfs::normalise_bus_id(&pci.bus_id);
            let memory = device.memory_info().map_err(query(format!("memory of GPU {index}")))?;
            let compute = device
                .cuda_compute_capability()
                .map(|c| format!("{}.{}", c.major, c.minor))
                .map_err(query(format!("compute capability of GPU {index}")))?;
            let minor = device.minor_number().map_err(query(format!("minor number of GPU {index}")))?;
            let numa_node =
                device.numa_node_id().ok().map(i64::from).or_else(|| sysfs::numa_node(&pci_bus_id));
            links.push(
                (0..MAX_NVLINKS)
                    .map(|link| device.link_wrapper_for(link))
                    .filter(|link| link.is_active().unwrap_or(false))
                    .filter_map(|link| link.remote_pci_info().ok())
                    .map(|remote| sysfs::normalise_bus_id(&remote.bus_id))
                    .collect(),
            );
            gpus.push(Gpu {
                health: if unhealthy.contains(&id) { Health::Unhealthy } else { Health::Healthy },
                id,
                name: device.name().map_err(query(format!("name of GPU {index}")))?,
                memory_mib: memory.total / (1024 * 1024),
                pci_root: sysfs::pci_root(&pci_bus_id),
                pci_bus_id,
                numa_node,
                peers: Vec::new(),
                device_nodes: vec![PathBuf::from(format!("/dev/nvidia{minor}"))],
                compute,
            });
        }
        let ids: Vec<(String, String)> = gpus.iter().map(|g| (g.id.clone(), g.pci_bus_id.clone())).collect();
        for (gpu, peers) in gpus.iter_mut().zip(nvlink_peers(&ids, &links)) {
            gpu.peers = peers;
        }
        Ok(GpuInventory { vendor: Vendor::Nvidia, driver_version, gpus, shared_device_nodes: None })
    }

    fn wait_health_events(&self, timeout: Duration) -> Result<Vec<HealthEvent>, BackendError> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(set) = events.as_ref() else {
            std::thread::sleep(timeout);
            return Ok(vec![]);
        };
        let millis = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let data = match set.wait(millis) {
            Ok(data) => data,
            Err(NvmlError::Timeout) => return Ok(vec![]),
            Err(e) => return Err(query("waiting for events")(e)),
        };
        let Some(reason) = unhealthy_because(data.event_type, data.event_data.as_ref()) else {
            return Ok(vec![]);
        };
        let id = data.device.uuid().map_err(query("UUID of the GPU of an event"))?;
        self.unhealthy.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone());
        Ok(vec![HealthEvent { id, health: Health::Unhealthy, reason }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_faults_make_it_unhealthy_application_faults_do_not() {
        let xid = |x| Some(XidError::Value(x));
        assert_eq!(
            unhealthy_because(EventTypes::CRITICAL_XID_ERROR, xid(79).as_ref()).unwrap(),
            "critical XID 79"
        );
        assert_eq!(unhealthy_because(EventTypes::CRITICAL_XID_ERROR, xid(13).as_ref()), None);
        assert_eq!(unhealthy_because(EventTypes::CRITICAL_XID_ERROR, xid(31).as_ref()), None);
        assert!(unhealthy_because(EventTypes::DOUBLE_BIT_ECC_ERROR, None).unwrap().contains("ECC"));
        assert!(unhealthy_because(EventTypes::CRITICAL_XID_ERROR, Some(&XidError::Unknown)).is_some());
    }

    fn gpu(i: u8) -> (String, String) {
        (format!("GPU-{i}"), format!("0000:{i:02x}:00.0"))
    }

    #[test]
    fn direct_links_name_their_peers() {
        let gpus = [gpu(1), gpu(2), gpu(3)];
        let ends = vec![vec![gpus[1].1.clone(), gpus[1].1.clone()], vec![gpus[0].1.clone()], vec![]];
        let peers = nvlink_peers(&gpus, &ends);
        assert_eq!(peers, [vec!["GPU-2".to_string()], vec!["GPU-1".to_string()], vec![]]);
    }

    #[test]
    fn gpus_behind_an_nvswitch_are_all_peers() {
        let gpus = [gpu(1), gpu(2), gpu(3)];
        let switch = "0000:f0:00.0".to_string();
        let ends = vec![vec![switch.clone()], vec![switch], vec![]];
        let peers = nvlink_peers(&gpus, &ends);
        assert_eq!(peers[0], ["GPU-2"]);
        assert_eq!(peers[1], ["GPU-1"]);
        assert!(peers[2].is_empty(), "a GPU without NVLink has no peers");
    }
}
