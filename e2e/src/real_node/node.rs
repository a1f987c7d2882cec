//! One real node: containerd, the kubelet and pictor's device plugin (fake backend) for one
//! member cluster, in a mount namespace of its own.
//!
//! Why a mount namespace: the kubelet dials device plugins at a fixed path
//! (`/var/lib/kubelet/device-plugins/kubelet.sock`) and writes `/var/log/containers`, and
//! containerd 1.6 puts its shims' sockets under `/run/containerd`, whatever their flags say; two
//! nodes on one machine would share them. Each node binds its own folders over those paths in a
//! private namespace that containerd and the kubelet share (the kubelet's volume mounts must be
//! seen by containerd), so nothing a node mounts is visible on the host, and all of it goes when
//! the namespace's last process does.

use super::host::{BOUND_HOST_PATHS, cgroup_hierarchies, run_quiet};
use super::{CGROUP_PREFIX, NodeImages, RealNodeError};
use crate::control_plane::Cluster;
use crate::process::ManagedProcess;
use crate::workspace_binaries::workspace_binary;
use pictor_device_plugins::Vendor;
use pictor_device_plugins::fake::FakeBackend;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// [`RealNodeSpec::gpu_model`] for a node whose device plugin serves the real GPUs.
pub const NVML: &str = "nvml";

/// What a real node is to be.
#[derive(Clone, Debug)]
pub struct RealNodeSpec {
    /// The member cluster the kubelet registers with.
    pub cluster: Cluster,
    /// Node name (also the device plugin's `--node-name`).
    pub name: String,
    /// A model of the fake catalogue (`rtx4090`, `h100`, …) the device plugin serves, or
    /// [`NVML`]: the machine's own NVIDIA GPUs, read through NVML.
    pub gpu_model: String,
    /// How many (with [`NVML`], how many the machine has).
    pub gpus: usize,
}

impl RealNodeSpec {
    /// The extended resource the node's GPUs are advertised as.
    pub fn resource_name(&self) -> &'static str {
        FakeBackend::preset(&self.gpu_model, 1).map_or(Vendor::Nvidia, |i| i.vendor).resource_name()
    }
}

/// A running real node. Stopped (every process killed, cgroups removed, folder deleted) by
/// [`super::RealNodes`] when it is dropped.
pub struct RealNode {
    /// The node's name in its member cluster.
    pub name: String,
    /// Its InternalIP, on the harness's bridge.
    pub ip: Ipv4Addr,
    /// Its folder: containerd's root, the kubelet's, logs, the fake GPUs' device files.
    pub dir: PathBuf,
    /// The device plugin's inventory (JSON, re-read live): edit a GPU's health here.
    pub inventory_file: PathBuf,
    /// containerd's socket, for `ctr`.
    pub containerd_socket: PathBuf,
    pub(super) cni_bridge: String,
    cgroup: String,
    log_dir: PathBuf,
    cluster: Cluster,
    kubelet_port: u16,
    namespace_holder: Option<ManagedProcess>,
    containerd: Option<ManagedProcess>,
    kubelet: Option<ManagedProcess>,
    device_plugin: Option<ManagedProcess>,
    /// The device plugin reads the machine's GPUs through NVML, not a fake inventory.
    nvml: bool,
}

impl RealNode {
    /// Lays out the node's folder, starts its namespace and containerd, imports `images`, then
    /// starts the kubelet and the device plugin. `index` numbers the node on this machine.
    pub(super) fn start(
        spec: &RealNodeSpec,
        index: u8,
        root: &Path,
        images: &NodeImages,
        log_dir: &Path,
    ) -> Result<Self, RealNodeError> {
        let dir = root.join(&spec.name);
        let _ = std::fs::remove_dir_all(&dir);
        let mut node = RealNode {
            name: spec.name.clone(),
            ip: Ipv4Addr::new(198, 18, 0, index + 1),
            inventory_file: dir.join("gpus.json"),
            containerd_socket: dir.join("containerd/containerd.sock"),
            dir,
            cni_bridge: format!("pictorcni{index}"),
            cgroup: format!("{CGROUP_PREFIX}{index}"),
            log_dir: log_dir.to_path_buf(),
            cluster: spec.cluster.clone(),
            kubelet_port: free_port()?,
            namespace_holder: None,
            containerd: None,
            kubelet: None,
            device_plugin: None,
            nvml: spec.gpu_model == NVML,
        };
        node.lay_out(spec, index)?;
        node.start_namespace()?;
        node.start_containerd()?;
        node.import(images)?;
        node.start_kubelet()?;
        node.start_device_plugin(None)?;
        Ok(node)
    }

    fn lay_out(&self, spec: &RealNodeSpec, index: u8) -> Result<(), RealNodeError> {
        for sub in ["b", "containerd/root", "containerd/state", "cni/net.d", "ipam", "dev", "opt"] {
            std::fs::create_dir_all(self.dir.join(sub)).map_err(host_error("create the node folder"))?;
        }
        for path in BOUND_HOST_PATHS {
            std::fs::create_dir_all(self.bound(path)).map_err(host_error("create a bound folder"))?;
        }
        if spec.gpu_model == NVML {
            return self.write_configs(index);
        }
        // Fake GPUs whose device files exist: character devices with /dev/null's numbers, made
        // here, so the container runtime can hand them to a pod as it would /dev/nvidia0.
        let mut inventory = fake_inventory(&spec.gpu_model, spec.gpus)?;
        for (i, gpu) in inventory["gpus"].as_array_mut().into_iter().flatten().enumerate() {
            let device = self.dir.join(format!("dev/gpu{i}"));
            let status = Command::new("mknod")
                .args(["-m", "666"])
                .arg(&device)
                .args(["c", "1", "3"])
                .status()
                .map_err(host_error("mknod"))?;
            if !status.success() {
                return Err(RealNodeError::Host(format!("mknod {}: {status}", device.display())));
            }
            gpu["deviceNodes"] = serde_json::json!([device]);
        }
        inventory["sharedDeviceNodes"] = serde_json::json!([]);
        std::fs::write(&self.inventory_file, serde_json::to_vec_pretty(&inventory).expect("json"))
            .map_err(host_error("write the GPU inventory"))?;
        self.write_configs(index)
    }

    /// The CNI, containerd and kubelet configurations, and the node's cgroup root.
    fn write_configs(&self, index: u8) -> Result<(), RealNodeError> {
        let subnet = format!("10.89.{}.0/24", index + 1);
        let cni = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": format!("pictor-{}", self.name),
            "plugins": [{
                "type": "bridge",
                "bridge": self.cni_bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": self.dir.join("ipam"),
                }
            }]
        });
        std::fs::write(self.dir.join("cni/net.d/10-pictor.conflist"), cni.to_string())
            .map_err(host_error("write the CNI config"))?;
        std::fs::write(self.dir.join("containerd.toml"), self.containerd_config())
            .map_err(host_error("write containerd's config"))?;
        std::fs::write(self.dir.join("kubelet.yaml"), self.kubelet_config())
            .map_err(host_error("write the kubelet config"))?;

        // The kubelet wants its cgroup root to exist in every hierarchy; a new cpuset cgroup
        // has no CPUs until given its parent's.
        for hierarchy in cgroup_hierarchies() {
            let cgroup = hierarchy.join(&self.cgroup);
            std::fs::create_dir_all(&cgroup).map_err(host_error("create the node's cgroup"))?;
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(value) = std::fs::read_to_string(hierarchy.join(file)) {
                    std::fs::write(cgroup.join(file), value.trim())
                        .map_err(host_error("set the node's cpuset"))?;
                }
            }
        }
        Ok(())
    }

    /// The node's own folder bound over a host `path` inside its namespace.
    /// Short names: the device plugins' sockets live below and a socket path has 108 bytes.
    fn bound(&self, path: &str) -> PathBuf {
        let short = match path {
            "/run/containerd" => "run-containerd",
            "/var/lib/cni" => "cni-state",
            other => other.rsplit('/').next().unwrap_or(other),
        };
        self.dir.join("b").join(short)
    }

    fn containerd_config(&self) -> String {
        let d = self.dir.display();
        format!(
            r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{d}/containerd/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # Without CAP_SYS_RESOURCE runc cannot lower a container's oom_score_adj below its own.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni/net.d"
"#,
            pause = super::PAUSE_IMAGE,
        )
    }

    fn kubelet_config(&self) -> String {
        format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {ip}
port: {port}
readOnlyPort: 0
healthzPort: 0
# Only the API server on this machine reaches the node's address (a bridge with no ports); it
# presents no client certificate to kubelets here.
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://{socket}
imageServiceEndpoint: unix://{socket}
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
# These machines are VMs with cgroup v1, swap and no CAP_SYS_RESOURCE.
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: false
resolvConf: /etc/resolv.conf
maxPods: 30
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
nodeStatusUpdateFrequency: 2s
nodeStatusReportFrequency: 10s
syncFrequency: 5s
fileCheckFrequency: 5s
"#,
            ip = self.ip,
            port = self.kubelet_port,
            socket = self.containerd_socket.display(),
            cgroup = self.cgroup,
        )
    }

    /// The process that holds the node's mount namespace, and the binds made in it.
    fn start_namespace(&mut self) -> Result<(), RealNodeError> {
        let holder = ManagedProcess::spawn(
            &format!("{}-namespace", self.name),
            Path::new("unshare"),
            &[
                "--mount".into(),
                "--propagation=private".into(),
                "--".into(),
                "/bin/sh".into(),
                "-c".into(),
                "while :; do sleep 3600; done".into(),
                // $0: the node's folder on the command line, so a leftover is found by it.
                self.dir.display().to_string(),
            ],
            &self.log_dir,
        )
        .map_err(|e| RealNodeError::Host(format!("start the namespace holder: {e}")))?;
        let pid = holder.pid();
        self.namespace_holder = Some(holder);
        let deadline = Instant::now() + Duration::from_secs(5);
        // unshare has switched namespaces once its mnt link differs from ours.
        while std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
            == std::fs::read_link("/proc/self/ns/mnt").ok()
        {
            if Instant::now() > deadline {
                return Err(RealNodeError::Host("unshare did not make a mount namespace".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for path in BOUND_HOST_PATHS {
            let source = self.bound(path);
            let output = Command::new("nsenter")
                .arg(format!("--target={pid}"))
                .arg("--mount")
                .args(["--", "mount", "--bind"])
                .arg(&source)
                .arg(path)
                .output()
                .map_err(|e| RealNodeError::Host(format!("nsenter: {e}")))?;
            if !output.status.success() {
                return Err(RealNodeError::Host(format!(
                    "bind {} over {path} in {}'s namespace: {}",
                    source.display(),
                    self.name,
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
        }
        Ok(())
    }

    /// Starts `program args` inside the node's mount namespace.
    fn spawn_inside(
        &self,
        what: &str,
        program: &Path,
        args: Vec<String>,
        env: &[(&str, &Path)],
    ) -> Result<ManagedProcess, RealNodeError> {
        let pid = self.namespace_holder.as_ref().map(ManagedProcess::pid).unwrap_or_default();
        let mut all =
            vec![format!("--target={pid}"), "--mount".into(), "--".into(), program.display().to_string()];
        all.extend(args);
        ManagedProcess::spawn_with_env(
            &format!("{}-{what}", self.name),
            Path::new("nsenter"),
            &all,
            env,
            &self.log_dir,
        )
        .map_err(|e| RealNodeError::Host(format!("start {what} on {}: {e}", self.name)))
    }

    fn start_containerd(&mut self) -> Result<(), RealNodeError> {
        let containerd = self.spawn_inside(
            "containerd",
            Path::new("/usr/bin/containerd"),
            vec![format!("--config={}", self.dir.join("containerd.toml").display())],
            &[],
        )?;
        self.containerd = Some(containerd);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ctr(&["version"]).is_ok_and(|o| o.status.success()) {
            if Instant::now() > deadline {
                return Err(RealNodeError::NotReady(format!(
                    "containerd of {} did not answer within 30 s:\n{}",
                    self.name,
                    self.containerd.as_ref().map(|p| p.log_tail(20)).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// `ctr` against this node's containerd, in the namespace the kubelet's images live in.
    pub fn ctr(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new("ctr")
            .arg(format!("--address={}", self.containerd_socket.display()))
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
    }

    fn import(&self, images: &NodeImages) -> Result<(), RealNodeError> {
        for archive in [&images.pause, &images.render_worker] {
            let started = Instant::now();
            let archive_text = archive.display().to_string();
            let output = self
                .ctr(&["images", "import", "--no-unpack=false", &archive_text])
                .map_err(|e| RealNodeError::Host(format!("ctr: {e}")))?;
            if !output.status.success() {
                return Err(RealNodeError::Images(format!(
                    "importing {archive_text} into {}: {}",
                    self.name,
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            tracing::info!(node = %self.name, archive = %archive_text, seconds = started.elapsed().as_secs_f64(), "image imported");
        }
        Ok(())
    }

    /// Starts (or starts again) the kubelet.
    pub fn start_kubelet(&mut self) -> Result<(), RealNodeError> {
        let kubelet = self.spawn_inside(
            "kubelet",
            &crate::Binaries::default_dir().join("kubelet"),
            vec![
                format!("--config={}", self.dir.join("kubelet.yaml").display()),
                format!("--kubeconfig={}", self.cluster.kubeconfig.display()),
                format!("--hostname-override={}", self.name),
                format!("--node-ip={}", self.ip),
                "--root-dir=/var/lib/kubelet".into(),
                "--v=1".into(),
            ],
            &[],
        )?;
        self.kubelet = Some(kubelet);
        Ok(())
    }

    /// Kills the kubelet (as a crash or an upgrade would); [`Self::start_kubelet`] brings it back.
    pub fn stop_kubelet(&mut self) {
        self.kubelet = None;
    }

    /// Stops the device plugin and starts it again, with `sharing_config` (a file of named GPU
    /// sharing configs; the Node's label picks one) or without (whole GPUs).
    pub fn restart_device_plugin(&mut self, sharing_config: Option<&Path>) -> Result<(), RealNodeError> {
        self.device_plugin = None;
        self.start_device_plugin(sharing_config)
    }

    fn start_device_plugin(&mut self, sharing_config: Option<&Path>) -> Result<(), RealNodeError> {
        let nvml = self.nvml;
        let binary = workspace_binary("pictor-device-plugins", "pictor-device-plugins");
        let mut args = vec![
            format!("--node-name={}", self.name),
            format!("--socket-dir={}", self.bound("/var/lib/kubelet").join("device-plugins").display()),
            "--label-interval=2".into(),
            "--metrics-addr=127.0.0.1:0".into(),
        ];
        if let Some(config) = sharing_config {
            args.push(format!("--sharing-config={}", config.display()));
        }
        if nvml {
            args.push("--backend=nvml".into());
        } else {
            args.extend([
                "--backend=fake".into(),
                format!("--fake-inventory={}", self.inventory_file.display()),
            ]);
        }
        let plugin = ManagedProcess::spawn_with_env(
            &format!("{}-device-plugin", self.name),
            &binary,
            &args,
            &[("KUBECONFIG", self.cluster.kubeconfig.as_path())],
            &self.log_dir,
        )
        .map_err(|e| RealNodeError::Host(format!("start the device plugin of {}: {e}", self.name)))?;
        self.device_plugin = Some(plugin);
        Ok(())
    }

    /// How many times the device plugin has registered with this node's kubelet (from its log).
    pub fn device_plugin_registrations(&self) -> usize {
        let log = self.device_plugin.as_ref().map(|p| std::fs::read_to_string(p.log()).unwrap_or_default());
        log.unwrap_or_default().matches("registered with the kubelet").count()
    }

    /// The kubelet's log so far (for messages).
    pub fn kubelet_log_tail(&self, lines: usize) -> String {
        self.kubelet.as_ref().map(|k| k.log_tail(lines)).unwrap_or_default()
    }

    /// Whether every process of the node still runs; the first that died, with its log, if not.
    pub fn check_alive(&mut self) -> Result<(), RealNodeError> {
        for process in
            [&mut self.containerd, &mut self.kubelet, &mut self.device_plugin].into_iter().flatten()
        {
            if let Some(status) = process.exited() {
                return Err(RealNodeError::Died(format!(
                    "{} exited ({status}):\n{}",
                    process.name(),
                    process.log_tail(30)
                )));
            }
        }
        Ok(())
    }

    /// Kills everything of the node — its processes, those in its namespace (shims) and in its
    /// cgroups (the pods') — then removes its cgroups, its bridge and its folder. Returns what
    /// could not be undone.
    pub(super) fn stop(&mut self) -> Vec<String> {
        let namespace = self
            .namespace_holder
            .as_ref()
            .and_then(|h| std::fs::read_link(format!("/proc/{}/ns/mnt", h.pid())).ok());
        self.device_plugin = None;
        self.kubelet = None;
        self.containerd = None;
        let hierarchies = cgroup_hierarchies();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut pids = vec![];
            if let Some(namespace) = &namespace {
                pids.extend(processes_in_namespace(namespace));
            }
            for hierarchy in &hierarchies {
                pids.extend(processes_in_cgroup(&hierarchy.join(&self.cgroup)));
            }
            let holder = self.namespace_holder.as_ref().map(|h| h.pid().to_string());
            pids.retain(|p| Some(p) != holder.as_ref());
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            let mut kill = vec!["-KILL".to_string()];
            kill.extend(pids);
            let _ = Command::new("kill").args(&kill).output();
            std::thread::sleep(Duration::from_millis(100));
        }
        self.namespace_holder = None;
        let mut failures = vec![];
        for hierarchy in &hierarchies {
            if let Err(e) = remove_cgroup_tree(&hierarchy.join(&self.cgroup)) {
                failures.push(format!("remove cgroup {}: {e}", hierarchy.join(&self.cgroup).display()));
            }
        }
        run_quiet("ip", &["link", "delete", &self.cni_bridge]);
        // The namespace is gone with its last process, and its mounts with it.
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            failures.push(format!("remove {}: {e}", self.dir.display()));
        }
        failures
    }
}

/// The fake catalogue's inventory of `count` `model` GPUs, as the device plugin's JSON file holds it.
fn fake_inventory(model: &str, count: usize) -> Result<serde_json::Value, RealNodeError> {
    let inventory = FakeBackend::preset(model, count)
        .ok_or_else(|| RealNodeError::Host(format!("{model} is not a model of the fake catalogue")))?;
    Ok(serde_json::to_value(inventory).expect("an inventory is JSON"))
}

fn free_port() -> Result<u16, RealNodeError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| RealNodeError::Host(format!("find a free port: {e}")))
}

/// Pids of live processes in the mount namespace `namespace` (a `mnt:[…]` link).
fn processes_in_namespace(namespace: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.to_string();
            pid.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
            (std::fs::read_link(e.path().join("ns/mnt")).ok()? == namespace).then_some(pid)
        })
        .collect()
}

/// Pids in `cgroup` and every cgroup below it.
pub(super) fn processes_in_cgroup(cgroup: &Path) -> Vec<String> {
    let mut pids: Vec<String> = std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    for child in std::fs::read_dir(cgroup).into_iter().flatten().flatten() {
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            pids.extend(processes_in_cgroup(&child.path()));
        }
    }
    pids
}

/// Removes a cgroup and those below it, deepest first (a cgroup is removed with rmdir).
pub(super) fn remove_cgroup_tree(cgroup: &Path) -> std::io::Result<()> {
    if !cgroup.exists() {
        return Ok(());
    }
    for child in std::fs::read_dir(cgroup)?.flatten() {
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&child.path())?;
        }
    }
    std::fs::remove_dir(cgroup)
}

/// Turns an I/O error of `what` into the harness's error.
fn host_error(what: &str) -> impl Fn(std::io::Error) -> RealNodeError + '_ {
    move |e| RealNodeError::Host(format!("{what}: {e}"))
}
