//! NVIDIA GPUs through NVML (`nvml-wrapper`, which loads `libnvidia-ml.so` at run time, so the
//! binary starts on nodes without the driver and says so). Health comes from NVML's critical
//! XID and double-bit ECC events; a faulted GPU returns once it has been quiet and answers a
//! probe ([`crate::recovery`]). MIG mode is read, never changed: a GPU in MIG mode is listed
//! with its MIG devices.

use crate::backend::{BackendError, GpuBackend};
use crate::inventory::{Gpu, GpuInventory, Health, HealthEvent, MigDevice};
use crate::recovery::{DEFAULT_QUIET, Recovery};
use crate::sysfs;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, EventSet, Nvml};
use pictor_crds::contract::Vendor;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
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
    /// GPUs an event marked unhealthy, until a probe after a quiet time finds them well
    /// (NVML has no "recovered" event).
    recovery: Mutex<Recovery>,
}

/// `nvmlDeviceGetMigMode`'s "enabled" (NVML_DEVICE_MIG_ENABLE).
const MIG_ENABLED: u32 = 1;

/// A MIG device's profile as NVIDIA names its resources: `<GPU slices>g.<GiB>gb`, with
/// `<compute slices>c.` in front when the compute instance is smaller than its GPU instance.
pub fn mig_profile(gpu_slices: u32, compute_slices: u32, memory_mb: u64) -> String {
    let gib = memory_mb.div_ceil(1024);
    if compute_slices != 0 && compute_slices != gpu_slices {
        format!("{compute_slices}c.{gpu_slices}g.{gib}gb")
    } else {
        format!("{gpu_slices}g.{gib}gb")
    }
}

/// Whether a GPU is in MIG mode now (not after the next reset); a GPU without MIG is not.
fn mig_enabled(device: &Device<'_>, index: u32) -> Result<bool, BackendError> {
    match device.mig_mode() {
        Ok(mode) => Ok(mode.current == MIG_ENABLED),
        Err(NvmlError::NotSupported | NvmlError::FunctionNotFound) => Ok(false),
        Err(e) => Err(query(format!("MIG mode of GPU {index}"))(e)),
    }
}

/// The MIG devices a GPU in MIG mode is split into now (empty slots skipped).
fn mig_devices(device: &Device<'_>, index: u32) -> Result<Vec<MigDevice>, BackendError> {
    let slots = device.mig_device_count().map_err(query(format!("MIG device count of GPU {index}")))?;
    let mut found = Vec::new();
    for slot in 0..slots {
        let mig = match device.mig_device_by_index(slot) {
            Ok(mig) => mig,
            Err(NvmlError::NotFound | NvmlError::InvalidArg) => continue,
            Err(e) => return Err(query(format!("MIG device {slot} of GPU {index}"))(e)),
        };
        let what = format!("MIG device {slot} of GPU {index}");
        let id = mig.uuid().map_err(query(what.clone()))?;
        let attributes = mig.attributes().map_err(query(what))?;
        found.push(MigDevice {
            id,
            profile: mig_profile(
                attributes.gpu_instance_slice_count,
                attributes.compute_instance_slice_count,
                attributes.memory_size_mb,
            ),
            memory_mib: attributes.memory_size_mb,
        });
    }
    Ok(found)
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
        Ok(NvmlBackend {
            nvml,
            events: Mutex::new(events),
            recovery: Mutex::new(Recovery::new(DEFAULT_QUIET)),
        })
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
        let recovery = self.recovery.lock().unwrap_or_else(PoisonError::into_inner).clone();
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
            let mig_enabled = mig_enabled(&device, index)?;
            let mig_devices = if mig_enabled { mig_devices(&device, index)? } else { Vec::new() };
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
                health: if recovery.is_faulted(&id) { Health::Unhealthy } else { Health::Healthy },
                id,
                name: device.name().map_err(query(format!("name of GPU {index}")))?,
                memory_mib: memory.total / (1024 * 1024),
                pci_root: sysfs::pci_root(&pci_bus_id),
                pci_bus_id,
                numa_node,
                peers: Vec::new(),
                device_nodes: vec![PathBuf::from(format!("/dev/nvidia{minor}"))],
                compute,
                mig_enabled,
                mig_devices,
            });
        }
        let ids: Vec<(String, String)> = gpus.iter().map(|g| (g.id.clone(), g.pci_bus_id.clone())).collect();
        for (gpu, peers) in gpus.iter_mut().zip(nvlink_peers(&ids, &links)) {
            gpu.peers = peers;
        }
        Ok(GpuInventory { vendor: Vendor::Nvidia, driver_version, gpus, shared_device_nodes: None })
    }

    fn wait_health_events(&self, timeout: Duration) -> Result<Vec<HealthEvent>, BackendError> {
        let mut seen = self.wait_fault(timeout)?;
        seen.extend(self.recovered());
        Ok(seen)
    }
}

impl NvmlBackend {
    /// A fault NVML reports within `timeout`, as an event, if any.
    fn wait_fault(&self, timeout: Duration) -> Result<Vec<HealthEvent>, BackendError> {
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
        self.recovery.lock().unwrap_or_else(PoisonError::into_inner).fault(&id, Instant::now());
        Ok(vec![HealthEvent { id, health: Health::Unhealthy, reason }])
    }

    /// Faulted GPUs, quiet long enough, that now answer NVML and have no page retirement
    /// pending (a double-bit ECC error's repair needs a GPU reset first).
    fn recovered(&self) -> Vec<HealthEvent> {
        let mut recovery = self.recovery.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let mut healed = Vec::new();
        for id in recovery.due(now) {
            let well = self.nvml.device_by_uuid(id.as_str()).is_ok_and(|device| {
                device.memory_info().is_ok() && !matches!(device.are_pages_pending_retired(), Ok(true))
            });
            if recovery.probed(&id, well, now) {
                let reason = "quiet since its fault and answering again".to_string();
                healed.push(HealthEvent { id, health: Health::Healthy, reason });
            }
        }
        healed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mig_profiles_are_named_as_nvidia_names_them() {
        assert_eq!(mig_profile(1, 1, 18_176), "1g.18gb");
        assert_eq!(mig_profile(3, 3, 71_424), "3g.70gb");
        assert_eq!(mig_profile(7, 0, 143_360), "7g.140gb");
        assert_eq!(mig_profile(4, 2, 47_616), "2c.4g.47gb");
    }

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
