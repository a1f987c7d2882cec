//! GPU vendors: everything that differs between them, keyed by one enum, so that a new vendor
//! (Intel, say) is one variant here and every crate — the API's `gpu.vendor`, the device plugins,
//! the node labeller, the agent's inventory, placement and pictor-scheduler — follows.

use std::fmt;

/// A GPU vendor the network runs work on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vendor {
    /// NVIDIA GPUs, through NVML.
    Nvidia,
    /// AMD GPUs, through ROCm-SMI.
    Amd,
}

impl Vendor {
    /// Every vendor, in a stable order ([`Vendor::index`] is the position here).
    pub const ALL: [Vendor; 2] = [Vendor::Nvidia, Vendor::Amd];

    /// The vendor as the `pictor.network/gpu.vendor` node label, the API's `gpu.vendor` and the
    /// pod annotation `pictor.network/gpu-vendor` spell it.
    pub fn label_value(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia",
            Vendor::Amd => "amd",
        }
    }

    /// The extended resource its device plugin advertises and pods ask for.
    pub fn resource_name(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia.com/gpu",
            Vendor::Amd => "amd.com/gpu",
        }
    }

    /// The PCI vendor ID of its devices (`/sys/bus/pci/devices/*/vendor`).
    pub fn pci_vendor_id(self) -> u16 {
        match self {
            Vendor::Nvidia => 0x10de,
            Vendor::Amd => 0x1002,
        }
    }

    /// Position in [`Vendor::ALL`], for per-vendor arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The vendor of a label value, if it names one.
    pub fn from_label_value(value: &str) -> Option<Vendor> {
        Vendor::ALL.into_iter().find(|v| v.label_value() == value)
    }

    /// The vendor whose GPUs an extended resource counts, if any.
    pub fn from_resource_name(resource: &str) -> Option<Vendor> {
        Vendor::ALL.into_iter().find(|v| v.resource_name() == resource)
    }

    /// The vendor of a PCI vendor ID, if the network runs its GPUs.
    pub fn from_pci_vendor_id(id: u16) -> Option<Vendor> {
        Vendor::ALL.into_iter().find(|v| v.pci_vendor_id() == id)
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label_value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vendor_round_trips_through_each_spelling() {
        for (i, vendor) in Vendor::ALL.into_iter().enumerate() {
            assert_eq!(vendor.index(), i);
            assert_eq!(Vendor::from_label_value(vendor.label_value()), Some(vendor));
            assert_eq!(Vendor::from_resource_name(vendor.resource_name()), Some(vendor));
            assert_eq!(Vendor::from_pci_vendor_id(vendor.pci_vendor_id()), Some(vendor));
        }
        assert_eq!(Vendor::from_label_value("any"), None);
        assert_eq!(Vendor::from_resource_name("cpu"), None);
    }
}
