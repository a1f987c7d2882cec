//! `pictor-device-plugins`: the DaemonSet process of a member's GPU node. It finds the node's
//! GPUs (NVML or ROCm-SMI), serves them to the kubelet as a device plugin and keeps the Node's
//! `pictor.network/gpu.*` labels current.
#![forbid(unsafe_code)]

use clap::{Parser, ValueEnum};
use pictor_crds::contract::node_labels;
use pictor_device_plugins::labeller::NodeLabeller;
use pictor_device_plugins::metrics::DeviceMetrics;
use pictor_device_plugins::nvml::NvmlBackend;
use pictor_device_plugins::plugin::{self, PluginConfig};
use pictor_device_plugins::sharing::{SharingConfig, SharingConfigs};
use pictor_device_plugins::v1beta1::DEVICE_PLUGIN_DIR;
use pictor_device_plugins::{BackendError, FakeBackend, GpuBackend};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{error, info, warn};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// NVML when the node has an NVIDIA GPU, else ROCm-SMI when it has an AMD one.
    Auto,
    Nvml,
    Rocm,
    /// GPUs that are not there, from --fake-inventory: for tests and demos.
    Fake,
}

#[derive(Debug, Parser)]
#[command(version, about = "Kubelet device plugin and node labeller for Pictor's GPU nodes")]
struct Args {
    /// The Node this pod runs on (in a DaemonSet: the downward API's spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Where the GPUs are read from.
    #[arg(long, env = "PICTOR_GPU_BACKEND", value_enum, default_value_t = BackendKind::Auto)]
    backend: BackendKind,
    /// The extended resource to advertise; by default nvidia.com/gpu or amd.com/gpu.
    #[arg(long, env = "PICTOR_RESOURCE_NAME")]
    resource_name: Option<String>,
    /// The kubelet's device-plugin directory (holds kubelet.sock).
    #[arg(long, env = "PICTOR_DEVICE_PLUGIN_DIR", default_value = DEVICE_PLUGIN_DIR)]
    socket_dir: PathBuf,
    /// For --backend fake: a catalogue model and count (`h100x8`, `mi300x8`, `rtx4090x1`,
    /// `rx7900xtx1`; the `x` is optional) or a JSON inventory file, re-read on every look.
    #[arg(long, env = "PICTOR_FAKE_INVENTORY")]
    fake_inventory: Option<String>,
    /// Seconds between two looks at the GPUs by the node labeller.
    #[arg(long, env = "PICTOR_LABEL_INTERVAL", default_value_t = 30)]
    label_interval: u64,
    /// The sharing config file (YAML: `defaultConfig` and named `configs`, each maybe with
    /// `timeSlicing: {replicas: N}`); the Node label pictor.network/device-plugin.config picks
    /// one. Without it every GPU is served whole. Read at start: restart after changing either.
    #[arg(long, env = "PICTOR_SHARING_CONFIG")]
    sharing_config: Option<PathBuf>,
    /// Do not serve the device plugin (label only).
    #[arg(long, env = "PICTOR_NO_DEVICE_PLUGIN")]
    no_device_plugin: bool,
    /// Do not label the Node (device plugin only).
    #[arg(long, env = "PICTOR_NO_LABELLER")]
    no_labeller: bool,
    #[command(flatten)]
    metrics: pictor_telemetry::MetricsArgs,
}

/// `h100x8` / `h100:8` / `mi300x8` as a model and count of the fake catalogue.
fn fake_preset(spec: &str) -> Option<(String, usize)> {
    let digits = spec.trim_end_matches(|c: char| c.is_ascii_digit());
    let count = spec[digits.len()..].parse().ok()?;
    let separated = [digits.strip_suffix(':'), digits.strip_suffix('x'), Some(digits)];
    for candidate in separated.into_iter().flatten() {
        if FakeBackend::preset(candidate, 1).is_some() {
            return Some((candidate.to_string(), count));
        }
    }
    None
}

fn fake_backend(spec: Option<&str>) -> Result<FakeBackend, BackendError> {
    let spec = spec.unwrap_or("h100x8");
    if let Some((model, count)) = fake_preset(spec)
        && let Some(inventory) = FakeBackend::preset(&model, count)
    {
        return Ok(FakeBackend::new(inventory));
    }
    FakeBackend::from_file(PathBuf::from(spec))
}

#[cfg(feature = "rocm")]
fn rocm_backend() -> Result<Arc<dyn GpuBackend>, BackendError> {
    Ok(Arc::new(pictor_device_plugins::rocm::RocmBackend::new()?))
}

#[cfg(not(feature = "rocm"))]
fn rocm_backend() -> Result<Arc<dyn GpuBackend>, BackendError> {
    Err(BackendError::Unavailable { backend: "ROCm-SMI", reason: "built without the `rocm` feature".into() })
}

/// The backend to use, or every reason none fits.
fn pick_backend(args: &Args) -> Result<Arc<dyn GpuBackend>, Vec<BackendError>> {
    let nvml = || NvmlBackend::new().map(|b| Arc::new(b) as Arc<dyn GpuBackend>);
    // A backend counts only when it actually sees a GPU.
    let with_gpus = |backend: Result<Arc<dyn GpuBackend>, BackendError>| {
        let backend = backend?;
        backend.inventory()?;
        Ok(backend)
    };
    match args.backend {
        BackendKind::Nvml => with_gpus(nvml()).map_err(|e| vec![e]),
        BackendKind::Rocm => with_gpus(rocm_backend()).map_err(|e| vec![e]),
        BackendKind::Fake => fake_backend(args.fake_inventory.as_deref())
            .map(|b| Arc::new(b) as Arc<dyn GpuBackend>)
            .map_err(|e| vec![e]),
        BackendKind::Auto => match with_gpus(nvml()) {
            Ok(backend) => Ok(backend),
            Err(nvml_error) => with_gpus(rocm_backend()).map_err(|rocm_error| vec![nvml_error, rocm_error]),
        },
    }
}

async fn shutdown_signal(stop: watch::Sender<bool>) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop.send(true);
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("stopping");
    let _ = stop.send(true);
}

/// The sharing config this node uses: the file's config that the Node's label names (or its
/// default). The Node is read only when there is a file to choose from.
async fn node_sharing(args: &Args) -> anyhow::Result<SharingConfig> {
    let Some(path) = &args.sharing_config else { return Ok(SharingConfig::whole()) };
    let configs = SharingConfigs::read(path)?;
    let label = match &args.node_name {
        Some(node) => {
            let nodes =
                kube::Api::<k8s_openapi::api::core::v1::Node>::all(kube::Client::try_default().await?);
            let node = nodes.get(node).await?;
            node.metadata.labels.unwrap_or_default().get(node_labels::SHARING_CONFIG).cloned()
        }
        None => None,
    };
    let (name, config) = configs.select(label.as_deref())?;
    info!(config = %name, replicas = config.replicas(), "GPU sharing config chosen");
    Ok(config)
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let metrics = Arc::new(DeviceMetrics::new());
    let waiting_for = Some("no GPU backend chosen yet");
    let readiness = pictor_telemetry::start("info", &args.metrics, metrics.registry(), waiting_for).await?;
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(shutdown_signal(stop));

    let backend = match pick_backend(&args) {
        Ok(backend) => backend,
        Err(reasons) => {
            // Said plainly and then idle, not a crash loop: a DaemonSet may well land on a node
            // without GPUs of the kind it was asked for.
            let reasons: Vec<String> = reasons.iter().map(ToString::to_string).collect();
            error!("no GPU of the kind asked for ({:?}) on this node: {}", args.backend, reasons.join("; "));
            stopped(stop_rx).await;
            return Ok(());
        }
    };
    let vendor = backend.vendor();
    info!(%vendor, "GPU backend chosen");
    // A sharing config that names nothing is the provider's typo: fail loudly rather than serve
    // the GPUs some other way than asked.
    let sharing = node_sharing(&args).await?;
    readiness.set(true);

    let plugin_task = (!args.no_device_plugin).then(|| {
        let resource = args.resource_name.clone().unwrap_or_else(|| vendor.resource_name().to_string());
        let mut config = PluginConfig::new(resource, args.socket_dir.clone());
        config.metrics = metrics.clone();
        config.sharing = sharing.clone();
        tokio::spawn(plugin::run(config, backend.clone(), stopped(stop_rx.clone())))
    });
    let labeller_task = if args.no_labeller {
        None
    } else {
        let node_name = args
            .node_name
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--node-name (or NODE_NAME) is required for the node labeller"))?;
        let labeller = NodeLabeller {
            client: kube::Client::try_default().await?,
            node_name,
            backend: backend.clone(),
            sharing: sharing.clone(),
            interval: Duration::from_secs(args.label_interval.max(1)),
            resync: Duration::from_secs(600),
            metrics: metrics.clone(),
        };
        Some(tokio::spawn(labeller.run(stopped(stop_rx.clone()))))
    };
    if let Some(task) = plugin_task {
        task.await??;
    }
    if let Some(task) = labeller_task {
        task.await??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_presets_parse_with_and_without_separator() {
        assert_eq!(fake_preset("h100x8"), Some(("h100".into(), 8)));
        assert_eq!(fake_preset("mi300x8"), Some(("mi300x".into(), 8)));
        assert_eq!(fake_preset("mi300xx2"), Some(("mi300x".into(), 2)));
        assert_eq!(fake_preset("rtx4090:1"), Some(("rtx4090".into(), 1)));
        assert_eq!(fake_preset("/tmp/inventory.json"), None);
    }

    #[test]
    fn command_line_parses_daemonset_flags() {
        let args = Args::try_parse_from([
            "pictor-device-plugins",
            "--node-name=n1",
            "--backend=rocm",
            "--socket-dir=/tmp/dp",
            "--resource-name=amd.com/gpu",
        ])
        .unwrap();
        assert_eq!(args.backend, BackendKind::Rocm);
        assert_eq!(args.socket_dir, PathBuf::from("/tmp/dp"));
        assert!(Args::try_parse_from(["pictor-device-plugins", "--backend=tpu"]).is_err());
    }
}
