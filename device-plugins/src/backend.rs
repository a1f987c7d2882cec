//! The one seam between Pictor and a GPU vendor's library: a backend enumerates the node's GPUs
//! and reports their health changes. The FFI (NVML, ROCm-SMI) stays behind it, one module each.

use crate::inventory::{GpuInventory, HealthEvent};
use pictor_crds::contract::Vendor;
use std::time::Duration;

/// A source of GPUs: NVML, ROCm-SMI, or the fake one tests drive.
pub trait GpuBackend: Send + Sync + 'static {
    /// Which vendor's GPUs this backend sees (known before any GPU is found).
    fn vendor(&self) -> Vendor;

    /// The GPUs as they are now.
    fn inventory(&self) -> Result<GpuInventory, BackendError>;

    /// Blocks for at most `timeout` and returns the health changes seen meanwhile (often none).
    /// Called in a loop from a blocking thread, because vendor libraries wait synchronously.
    fn wait_health_events(&self, timeout: Duration) -> Result<Vec<HealthEvent>, BackendError>;
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The vendor library is missing or found no GPU: the node has no GPU of this kind.
    #[error("{backend} not available: {reason}")]
    Unavailable { backend: &'static str, reason: String },
    /// The library is there but a query failed.
    #[error("{backend}: {what} failed: {reason}")]
    Query { backend: &'static str, what: String, reason: String },
    /// The fake backend's inventory file could not be read.
    #[error("fake inventory {path}: {reason}")]
    FakeInventory { path: String, reason: String },
}
