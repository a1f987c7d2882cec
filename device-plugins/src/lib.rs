//! Device plugins for every GPU node of a member (DESIGN.md, "Device plugins"): the kubelet
//! device-plugin API v1beta1 served over a unix socket, NVML and ROCm-SMI backends behind one
//! trait, and the node labeller that publishes `pictor.network/gpu.*` labels.
#![forbid(unsafe_code)]

pub mod advertise;
pub mod allocation;
pub mod backend;
pub mod fake;
pub mod inventory;
pub mod labeller;
pub mod metrics;
pub mod nvml;
pub mod plugin;
pub mod recovery;
pub mod registration;
#[cfg(feature = "rocm")]
pub mod rocm;
pub mod sharing;
mod sysfs;
pub mod topology;

/// The kubelet device-plugin API, generated at build time from `proto/deviceplugin/v1beta1`.
#[allow(clippy::all, missing_docs)]
pub mod v1beta1 {
    tonic::include_proto!("v1beta1");

    /// The API version a plugin registers with.
    pub const VERSION: &str = "v1beta1";
    /// Where the kubelet looks for plugin sockets and serves its own.
    pub const DEVICE_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins/";
    /// The kubelet's Registration socket, inside the device-plugin directory.
    pub const KUBELET_SOCKET: &str = "kubelet.sock";
}

pub use backend::{BackendError, GpuBackend};
pub use fake::FakeBackend;
pub use inventory::{Gpu, GpuInventory, Health, HealthEvent, MigDevice};
/// The GPU vendor of the hub–member contract, which [`GpuBackend::vendor`] returns.
pub use pictor_crds::contract::Vendor;
