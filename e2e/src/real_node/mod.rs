//! Real nodes beside kwok's fake ones: a kubelet built with the control plane, Debian's
//! containerd and runc, the CNI bridge plugin and pictor's device plugin, so unit pods really
//! run (Blender included) on this machine.
//!
//! Each node gets an address on a bridge with no ports that the harness makes (`pictor0`,
//! 198.18.0.0/15, set aside for benchmarks): nothing is sent off the machine. Everything a node
//! changes — processes, mounts (kept inside its own mount namespace), cgroups, interfaces,
//! iptables chains, sysctls and host paths — is undone when [`RealNodes`] is dropped, on panic
//! too; a run that was killed outright is cleaned up by the next one.
//!
//! Needs root, containerd, runc, the CNI plugins and mmdebstrap (`scripts/install-deps.sh`
//! installs them). [`RealNodes::required`] says whether a test that needs them must run:
//! where `make test` installed them it must, and fails when they are missing;
//! `PICTOR_SKIP_REAL_NODES=1` is the one way to skip.

mod host;
mod node;

pub use host::HostSnapshot;
pub use node::{NVML, RealNode, RealNodeSpec};

use crate::control_plane::ControlPlane;
use crate::workspace_binaries::workspace_binary;
use host::SavedHost;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Where every node's folder lives.
pub const NODE_ROOT: &str = "/var/tmp/pictor-nodes";
/// The bridge that carries the nodes' addresses.
pub const NODE_BRIDGE: &str = "pictor0";
/// Image names as the nodes know them (imported, never pulled).
pub const PAUSE_IMAGE: &str = "localhost/pictor/pause:local";
pub const RENDER_WORKER_IMAGE: &str = "localhost/pictor/render-worker:local";
/// The prefix of the nodes' cgroups in every hierarchy.
const CGROUP_PREFIX: &str = "pictor-node-";
/// The variable that lets a machine without what real nodes need skip their tests.
pub const SKIP_VARIABLE: &str = "PICTOR_SKIP_REAL_NODES";

/// Why real nodes could not be had.
#[derive(Debug, thiserror::Error)]
pub enum RealNodeError {
    /// Something this machine lacks or refused.
    #[error("real nodes: {0}")]
    Host(String),
    /// Building or importing an image failed.
    #[error("real-node images: {0}")]
    Images(String),
    /// A node did not come up in time.
    #[error("real node not ready: {0}")]
    NotReady(String),
    /// A node's process died.
    #[error("real node process died: {0}")]
    Died(String),
}

/// The OCI archives a node imports.
#[derive(Clone, Debug)]
pub struct NodeImages {
    pub pause: PathBuf,
    pub render_worker: PathBuf,
}

impl NodeImages {
    /// Builds (or finds cached) the pause and render-worker images, the latter around the
    /// workspace's current `pictor-render-worker`.
    pub fn build() -> Result<Self, RealNodeError> {
        let worker = workspace_binary("pictor-render-worker", "pictor-render-worker");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("real-node/build-images.sh");
        let started = Instant::now();
        let output = Command::new("bash")
            .arg(&script)
            .arg(&worker)
            .args([PAUSE_IMAGE, RENDER_WORKER_IMAGE])
            .output()
            .map_err(|e| RealNodeError::Images(format!("run {}: {e}", script.display())))?;
        if !output.status.success() {
            return Err(RealNodeError::Images(format!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key).map(PathBuf::from))
                .ok_or_else(|| RealNodeError::Images(format!("{} printed no {key}", script.display())))
        };
        let images = NodeImages { pause: line("pause=")?, render_worker: line("render-worker=")? };
        tracing::info!(seconds = started.elapsed().as_secs_f64(), "real-node images ready");
        Ok(images)
    }
}

/// Running real nodes and the host state they changed; dropping it stops them and restores it.
pub struct RealNodes {
    nodes: Vec<RealNode>,
    saved: Option<SavedHost>,
}

impl RealNodes {
    /// Why this machine cannot run real nodes, if it cannot.
    pub fn unavailable() -> Option<String> {
        if !Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n")) {
            return Some("real nodes need root (the kubelet, containerd, mounts, cgroups)".into());
        }
        for (tool, package) in [
            ("/usr/bin/containerd", "containerd"),
            ("/usr/bin/ctr", "containerd"),
            ("/usr/sbin/runc", "runc"),
            ("/usr/lib/cni/bridge", "containernetworking-plugins"),
            ("/usr/bin/mmdebstrap", "mmdebstrap"),
            ("/usr/bin/unshare", "util-linux"),
            ("/usr/bin/nsenter", "util-linux"),
        ] {
            if !Path::new(tool).exists() {
                return Some(format!(
                    "{tool} is missing: install Debian's {package} (scripts/install-deps.sh does)"
                ));
            }
        }
        let kubelet = crate::Binaries::default_dir().join("kubelet");
        if !kubelet.exists() {
            return Some(format!("{} is missing: run e2e/control-plane/build.sh", kubelet.display()));
        }
        None
    }

    /// Whether a test that needs real nodes runs: true where they can run; false, with the
    /// reason printed, only where [`SKIP_VARIABLE`] opts out; otherwise it panics with what
    /// is missing, since `make test` installs it all.
    pub fn required(test: &str) -> bool {
        let Some(reason) = Self::unavailable() else { return true };
        if std::env::var(SKIP_VARIABLE).is_ok_and(|v| !v.is_empty() && v != "0") {
            eprintln!("{test}: skipped ({SKIP_VARIABLE} is set): {reason}");
            return false;
        }
        panic!("{test}: {reason}. Set {SKIP_VARIABLE}=1 to skip the real-node tests on this machine.");
    }

    /// Starts one real node per spec (in order; node `i` gets 198.18.0.`i+1`) and waits until
    /// each is Ready in its cluster. Cleans up what a killed earlier run left first.
    pub async fn start(plane: &ControlPlane, specs: Vec<RealNodeSpec>) -> Result<Self, RealNodeError> {
        if let Some(reason) = Self::unavailable() {
            return Err(RealNodeError::Host(reason));
        }
        let root = Path::new(NODE_ROOT);
        clean_leftovers(root);
        let images = tokio::task::spawn_blocking(NodeImages::build)
            .await
            .map_err(|e| RealNodeError::Images(e.to_string()))??;
        let saved = SavedHost::save(root);
        saved.make_bound_paths()?;
        let mut nodes = RealNodes { nodes: vec![], saved: Some(saved) };
        make_bridge(specs.len())?;
        let log_dir = plane.run_dir().to_path_buf();
        // One node after the other: importing the 1 GB image twice at once only thrashes the disk.
        for (index, spec) in specs.iter().enumerate() {
            let (spec, images, log_dir) = (spec.clone(), images.clone(), log_dir.clone());
            let node = tokio::task::spawn_blocking(move || {
                RealNode::start(&spec, index as u8, Path::new(NODE_ROOT), &images, &log_dir)
            })
            .await
            .map_err(|e| RealNodeError::Host(e.to_string()))?;
            nodes.nodes.push(node?);
        }
        for (node, spec) in nodes.nodes.iter_mut().zip(&specs) {
            wait_ready(node, spec).await?;
        }
        Ok(nodes)
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> &RealNode {
        self.nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("no real node {name}"))
    }

    /// The node named `name`, to restart its kubelet.
    pub fn node_mut(&mut self, name: &str) -> &mut RealNode {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap_or_else(|| panic!("no real node {name}"))
    }

    /// Every node, in the order started.
    pub fn nodes(&self) -> &[RealNode] {
        &self.nodes
    }

    /// Stops every node and restores the host; what could not be undone, if anything.
    pub fn stop(mut self) -> Vec<String> {
        self.stop_all()
    }

    fn stop_all(&mut self) -> Vec<String> {
        let mut failures: Vec<String> = self.nodes.iter_mut().flat_map(|n| n.stop()).collect();
        self.nodes.clear();
        if let Some(saved) = self.saved.take() {
            failures.extend(saved.restore());
        }
        let _ = std::fs::remove_dir(NODE_ROOT);
        failures
    }
}

impl Drop for RealNodes {
    fn drop(&mut self) {
        for failure in self.stop_all() {
            eprintln!("real nodes: could not undo: {failure}");
        }
    }
}

/// The bridge with one address per node.
fn make_bridge(nodes: usize) -> Result<(), RealNodeError> {
    let ip = |args: &[&str]| -> Result<(), RealNodeError> {
        let output =
            Command::new("ip").args(args).output().map_err(|e| RealNodeError::Host(format!("ip: {e}")))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(RealNodeError::Host(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    };
    ip(&["link", "add", NODE_BRIDGE, "type", "bridge"])?;
    for i in 0..nodes {
        ip(&["addr", "add", &format!("198.18.0.{}/32", i + 1), "dev", NODE_BRIDGE])?;
    }
    ip(&["link", "set", NODE_BRIDGE, "up"])
}

/// What a run killed outright (SIGKILL, a lost machine) left: processes of nodes, cgroups, the
/// bridges, the folders. The sysctls and iptables of such a run are not known any more; the
/// chains are removed by name.
fn clean_leftovers(root: &Path) {
    let leftovers = HostSnapshot::take(root);
    let folders_left = std::fs::read_dir(root).is_ok_and(|mut entries| entries.next().is_some());
    if leftovers.node_processes.is_empty() && leftovers.node_cgroups.is_empty() && !folders_left {
        return;
    }
    eprintln!("real nodes: cleaning up after an earlier run that did not stop: {leftovers:?}");
    let pids: Vec<String> =
        leftovers.node_processes.iter().filter_map(|p| p.split(' ').next().map(str::to_string)).collect();
    if !pids.is_empty() {
        let _ = Command::new("kill").arg("-KILL").args(&pids).output();
    }
    for cgroup in leftovers.node_cgroups.iter().map(Path::new) {
        for _ in 0..50 {
            let pids = node::processes_in_cgroup(cgroup);
            if pids.is_empty() {
                break;
            }
            let _ = Command::new("kill").arg("-KILL").args(&pids).output();
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = node::remove_cgroup_tree(cgroup);
    }
    for link in leftovers.links.iter().filter(|l| l.starts_with("pictorcni") || l.as_str() == NODE_BRIDGE) {
        host::run_quiet("ip", &["link", "delete", link]);
    }
    let _ = std::fs::remove_dir_all(root);
}

/// Waits until the node is Ready in its cluster with the device plugin's GPUs in its capacity.
async fn wait_ready(node: &mut RealNode, spec: &RealNodeSpec) -> Result<(), RealNodeError> {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::Api;
    let client = spec.cluster.client().await.map_err(|e| RealNodeError::Host(e.to_string()))?;
    let nodes: Api<Node> = Api::all(client);
    let resource = spec.resource_name();
    let started = Instant::now();
    let limit = std::time::Duration::from_secs(90);
    loop {
        node.check_alive()?;
        if let Ok(Some(n)) = nodes.get_opt(&node.name).await {
            let status = n.status.unwrap_or_default();
            let ready = status
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let gpus = status.capacity.unwrap_or_default().get(resource).map(|q| q.0.clone());
            if ready && gpus.as_deref() == Some(spec.gpus.to_string().as_str()) {
                tracing::info!(node = %node.name, seconds = started.elapsed().as_secs_f64(), "real node ready");
                return Ok(());
            }
        }
        if started.elapsed() > limit {
            return Err(RealNodeError::NotReady(format!(
                "{} not Ready with {} {resource} after {limit:?}; kubelet log:\n{}",
                node.name,
                spec.gpus,
                node.kubelet_log_tail(40)
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
