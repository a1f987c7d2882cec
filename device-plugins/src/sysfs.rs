//! Topology the vendor libraries do not report (or not on every version), read from Linux's
//! view of the PCI bus: which root complex and NUMA node a GPU sits on, and its DRM render node.

use std::path::Path;

const PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// `00000000:17:00.0` (NVML's 8-digit domain) or `0000:17:00.0` to sysfs's `0000:17:00.0`.
pub fn normalise_bus_id(bus_id: &str) -> String {
    let bus_id = bus_id.trim().to_ascii_lowercase();
    match bus_id.split_once(':') {
        Some((domain, rest)) => match u32::from_str_radix(domain, 16) {
            Ok(domain) => format!("{domain:04x}:{rest}"),
            Err(_) => bus_id,
        },
        None => bus_id,
    }
}

/// The root complex (`pci0000:16`) in the device's resolved sysfs path.
pub fn pci_root(bus_id: &str) -> Option<String> {
    let path = std::fs::canonicalize(Path::new(PCI_DEVICES).join(bus_id)).ok()?;
    root_of(&path)
}

fn root_of(path: &Path) -> Option<String> {
    path.components()
        .filter_map(|c| c.as_os_str().to_str())
        .find(|c| c.starts_with("pci"))
        .map(str::to_string)
}

/// The NUMA node, or `None` where the kernel says -1 (no NUMA) or cannot tell.
pub fn numa_node(bus_id: &str) -> Option<i64> {
    let text = std::fs::read_to_string(Path::new(PCI_DEVICES).join(bus_id).join("numa_node")).ok()?;
    text.trim().parse::<i64>().ok().filter(|n| *n >= 0)
}

#[cfg(feature = "rocm")]
/// `/dev/dri/renderD<N>` of the GPU, from the `drm/renderD<N>` entry under its PCI device.
pub fn render_node(bus_id: &str) -> Option<std::path::PathBuf> {
    let entries = std::fs::read_dir(Path::new(PCI_DEVICES).join(bus_id).join("drm")).ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .find(|name| name.starts_with("renderD"))
        .map(|name| Path::new("/dev/dri").join(name))
}

#[cfg(feature = "rocm")]
const KFD_NODES: &str = "/sys/class/kfd/kfd/topology/nodes";
/// The io_link type the KFD topology gives an xGMI link.
#[cfg(feature = "rocm")]
const KFD_LINK_XGMI: u64 = 11;

#[cfg(feature = "rocm")]
/// One GPU as the AMD kernel driver's topology (KFD) describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KfdGpu {
    pub bus_id: String,
    /// `gfx942`, `gfx1100`, …
    pub gfx_target: String,
    /// Bus ids of the GPUs this one has an xGMI link to.
    pub xgmi_peers: Vec<String>,
}

#[cfg(feature = "rocm")]
/// The GPUs of the KFD topology (CPU nodes, which have no gfx target, are left out).
pub fn kfd_gpus() -> Vec<KfdGpu> {
    let Ok(entries) = std::fs::read_dir(KFD_NODES) else { return vec![] };
    let mut nodes: Vec<(u64, KfdGpu, Vec<u64>)> = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Some(node) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else { continue };
        let Ok(text) = std::fs::read_to_string(entry.path().join("properties")) else { continue };
        let properties = key_values(&text);
        let Some(gpu) = kfd_gpu(&properties) else { continue };
        let links = std::fs::read_dir(entry.path().join("io_links"))
            .map(|links| {
                links
                    .filter_map(Result::ok)
                    .filter_map(|l| std::fs::read_to_string(l.path().join("properties")).ok())
                    .filter_map(|t| {
                        let link = key_values(&t);
                        let xgmi = link.get("type") == Some(&KFD_LINK_XGMI);
                        link.get("node_to").copied().filter(|_| xgmi)
                    })
                    .collect()
            })
            .unwrap_or_default();
        nodes.push((node, gpu, links));
    }
    let bus_of: std::collections::BTreeMap<u64, String> =
        nodes.iter().map(|(n, g, _)| (*n, g.bus_id.clone())).collect();
    nodes
        .into_iter()
        .map(|(_, mut gpu, links)| {
            gpu.xgmi_peers = links.iter().filter_map(|n| bus_of.get(n).cloned()).collect();
            gpu
        })
        .collect()
}

#[cfg(feature = "rocm")]
fn key_values(text: &str) -> std::collections::BTreeMap<&str, u64> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| v.trim().parse().ok().map(|v| (k, v)))
        .collect()
}

#[cfg(feature = "rocm")]
/// A KFD node's properties as a GPU: `gfx_target_version` 90402 is gfx942 (major, then minor
/// and stepping as one hex digit each); `domain` and `location_id` (bus << 8 | devfn) give
/// the PCI bus id.
fn kfd_gpu(properties: &std::collections::BTreeMap<&str, u64>) -> Option<KfdGpu> {
    let version = *properties.get("gfx_target_version").filter(|v| **v != 0)?;
    let location = *properties.get("location_id")?;
    let domain = properties.get("domain").copied().unwrap_or(0);
    let (bus, devfn) = (location >> 8, location & 0xff);
    Some(KfdGpu {
        bus_id: format!("{domain:04x}:{bus:02x}:{:02x}.{:x}", devfn >> 3, devfn & 7),
        gfx_target: format!("gfx{}{:x}{:x}", version / 10_000, (version / 100) % 100, version % 100),
        xgmi_peers: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_take_the_sysfs_form() {
        assert_eq!(normalise_bus_id("00000000:17:00.0"), "0000:17:00.0");
        assert_eq!(normalise_bus_id("0000:C1:00.0"), "0000:c1:00.0");
        assert_eq!(normalise_bus_id("garbage"), "garbage");
    }

    #[test]
    fn root_complex_is_the_first_pci_component() {
        let path = Path::new("/sys/devices/pci0000:16/0000:16:02.0/0000:17:00.0");
        assert_eq!(root_of(path).as_deref(), Some("pci0000:16"));
        assert_eq!(root_of(Path::new("/sys/devices/platform/x")), None);
    }

    #[cfg(feature = "rocm")]
    #[test]
    fn kfd_properties_give_bus_id_and_gfx_target() {
        let mi300x =
            "cpu_cores_count 0\nsimd_count 1216\ngfx_target_version 90402\nlocation_id 49408\ndomain 0\n";
        let gpu = kfd_gpu(&key_values(mi300x)).unwrap();
        assert_eq!(gpu.bus_id, "0000:c1:00.0");
        assert_eq!(gpu.gfx_target, "gfx942");
        let mi210 = "gfx_target_version 90010\nlocation_id 768\ndomain 1\n";
        let gpu = kfd_gpu(&key_values(mi210)).unwrap();
        assert_eq!((gpu.bus_id.as_str(), gpu.gfx_target.as_str()), ("0001:03:00.0", "gfx90a"));
        assert_eq!(
            kfd_gpu(&key_values("gfx_target_version 110000\nlocation_id 2048\n")).unwrap().gfx_target,
            "gfx1100"
        );
        let cpu = "cpu_cores_count 64\ngfx_target_version 0\nlocation_id 0\n";
        assert_eq!(kfd_gpu(&key_values(cpu)), None);
    }
}
