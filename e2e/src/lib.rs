//! A real local control plane for Pictor's tests, benchmarks and demo (DESIGN.md, "Local control
//! plane").
//!
//! One etcd backs a hub API server and N member API servers (each under its own
//! `--etcd-prefix`); every cluster gets a kube-controller-manager and a kwok that plays fake GPU
//! nodes. All of it is built from Go modules by `e2e/control-plane/build.sh` and started here
//! from Rust, so a test needs no container runtime. Every process stops when the
//! [`ControlPlane`] is dropped, on panic too; a failed run keeps its logs and prints where.
//! Where the machine allows, [`real_node`] adds real nodes (kubelet, containerd, runc) beside
//! kwok's, [`s3`] the S3 test server their pods write to, and [`ipfs`] real kubo nodes.
#![forbid(unsafe_code)]

pub mod billing;
mod binaries;
mod control_plane;
pub mod fake_nodes;
pub mod ipfs;
mod kubeconfig;
pub mod network;
mod process;
pub mod real_node;
pub mod s3;
mod workspace_binaries;

pub use binaries::{Binaries, BinariesError};
pub use control_plane::{
    Cluster, ComponentFlags, ControlPlane, ControlPlaneError, ControlPlaneOptions, FAKE_LOG_NAMESPACE,
    FAKE_POD_LOG,
};
pub use fake_nodes::{CATALOGUE, GpuModel};
pub use process::ManagedProcess;
pub use workspace_binaries::{Profile, workspace_binary, workspace_binary_built};
