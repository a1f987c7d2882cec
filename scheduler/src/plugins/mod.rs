//! pictor-scheduler's plugins, one per file, each tested alone.

mod cpu_spread;
mod gang_permit;
mod gang_topology;
mod gpu_bin_packing;
mod gpu_model_fit;
mod node_affinity;
mod node_unschedulable;
mod resources_fit;
mod shared_gpu_fit;
mod shared_gpu_packing;
mod taint_toleration;
mod view_reservation;

pub use cpu_spread::CpuSpread;
pub use gang_permit::GangPermit;
pub use gang_topology::GangTopology;
pub use gpu_bin_packing::GpuBinPacking;
pub use gpu_model_fit::GpuModelFit;
pub use node_affinity::NodeAffinity;
pub use node_unschedulable::NodeUnschedulable;
pub use resources_fit::ResourcesFit;
pub use shared_gpu_fit::SharedGpuFit;
pub use shared_gpu_packing::SharedGpuPacking;
pub use taint_toleration::{TaintToleration, tolerates};
pub use view_reservation::ViewReservation;
