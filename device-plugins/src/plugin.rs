//! The device plugin: serves the kubelet's DevicePlugin service for one backend's GPUs on a unix
//! socket, registers it with the kubelet, streams every health change, and starts over (fresh
//! socket, new registration) whenever the kubelet restarts.
//!
//! The gRPC service is a thin adapter: what is advertised, allocation and topology are pure
//! functions in [`crate::advertise`], [`crate::allocation`] and [`crate::topology`]; the state is
//! one watched [`GpuInventory`]. One health monitor feeds every resource served: the whole
//! GPUs' (or their time-sliced replicas') and, for GPUs in MIG mode, one per MIG profile.

use crate::advertise::{ServedDevice, advertise, preferred_replicas};
use crate::allocation::{AllocationError, served_allocation};
use crate::backend::{BackendError, GpuBackend};
use crate::inventory::{GpuInventory, Health};
use crate::metrics::DeviceMetrics;
use crate::registration::{RegistrationError, register};
use crate::sharing::SharingConfig;
use crate::topology::preferred_allocation;
use crate::v1beta1::device_plugin_server::{DevicePlugin, DevicePluginServer};
use crate::v1beta1::{
    AllocateRequest, AllocateResponse, ContainerPreferredAllocationResponse, Device, DevicePluginOptions,
    Empty, KUBELET_SOCKET, ListAndWatchResponse, NumaNode, PreStartContainerRequest,
    PreStartContainerResponse, PreferredAllocationRequest, PreferredAllocationResponse, TopologyInfo,
};
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

/// How long one wait for health events may block; bounds how long shutdown waits for it.
const HEALTH_WAIT: Duration = Duration::from_millis(500);
/// How long a stopping gRPC server may take to finish before it is cut off.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Where and as what the plugin serves.
#[derive(Clone, Debug)]
pub struct PluginConfig {
    /// The extended resource of whole GPUs (or their replicas), e.g. `nvidia.com/gpu`.
    pub resource_name: String,
    /// How the GPUs are shared (whole unless the node's sharing config says otherwise).
    pub sharing: SharingConfig,
    /// The kubelet's device-plugin directory (its `kubelet.sock` and the plugins' sockets).
    pub socket_dir: PathBuf,
    /// How often to look whether the kubelet restarted or removed our socket.
    pub poll_interval: Duration,
    /// Where devices, allocations and registrations are counted.
    pub metrics: Arc<DeviceMetrics>,
}

impl PluginConfig {
    pub fn new(resource_name: impl Into<String>, socket_dir: impl Into<PathBuf>) -> Self {
        PluginConfig {
            resource_name: resource_name.into(),
            sharing: SharingConfig::whole(),
            socket_dir: socket_dir.into(),
            poll_interval: Duration::from_secs(1),
            metrics: Arc::new(DeviceMetrics::new()),
        }
    }

    fn kubelet_socket(&self) -> PathBuf {
        self.socket_dir.join(KUBELET_SOCKET)
    }

    /// The devices served under each resource.
    fn served(&self, inventory: &GpuInventory) -> std::collections::BTreeMap<String, Vec<ServedDevice>> {
        advertise(inventory, &self.sharing, &self.resource_name)
    }
}

/// A fresh socket name per start, so a late connection to the previous one cannot land here.
fn endpoint(resource: &str, generation: u64) -> String {
    let resource: String =
        resource.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("pictor-{resource}-{}-{generation}.sock", std::process::id())
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("cannot serve on {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The kubelet answered and said no (a wrong version, the resource taken): the API says the
    /// plugin should stop rather than retry.
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    #[error("a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Serves `backend`'s GPUs to the kubelet until `shutdown` completes: every resource the
/// inventory has at start (whole GPUs always, MIG profiles where GPUs are in MIG mode), each on
/// its own socket with its own registration. MIG devices made later need a restart.
pub async fn run(
    config: PluginConfig,
    backend: Arc<dyn GpuBackend>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PluginError> {
    let inventory = tokio::task::spawn_blocking({
        let backend = backend.clone();
        move || backend.inventory()
    })
    .await??;
    let served = config.served(&inventory);
    for (resource, devices) in &served {
        info!(
            resource = %resource,
            gpus = inventory.gpus.len(),
            devices = devices.len(),
            replicas = config.sharing.replicas(),
            "serving {} device(s) of {} {} GPU(s)",
            devices.len(),
            inventory.gpus.len(),
            inventory.vendor
        );
        config.metrics.serving(resource, devices);
    }
    let (inventory_tx, inventory_rx) = watch::channel(inventory);
    let monitor_stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let monitor = tokio::task::spawn_blocking({
        let stop = monitor_stop.0.clone();
        let config = config.clone();
        move || {
            watch_health(backend.as_ref(), &inventory_tx, &stop, &|inventory| {
                for (resource, devices) in config.served(inventory) {
                    config.metrics.serving(&resource, &devices);
                }
            })
        }
    });

    // One shutdown for every resource's server; the first to fail stops the others.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for resource in served.into_keys() {
        let (config, inventory, mut stop) = (config.clone(), inventory_rx.clone(), stop_rx.clone());
        servers.spawn(async move {
            serve_and_register(&config, &resource, inventory, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
        });
    }
    tokio::pin!(shutdown);
    let mut result = Ok(());
    loop {
        tokio::select! {
            ended = servers.join_next() => match ended {
                None => break,
                Some(ended) => if let Err(e) = ended.map_err(PluginError::from).and_then(|r| r) {
                    let _ = stop_tx.send(true);
                    if result.is_ok() { result = Err(e); }
                },
            },
            () = &mut shutdown, if !*stop_tx.borrow() => { let _ = stop_tx.send(true); }
        }
    }
    drop(monitor_stop);
    monitor.await?;
    result
}

/// Stops the health monitor also when `run` is dropped instead of finishing: a blocking thread
/// left looping would keep the runtime from shutting down.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The life of the plugin: serve, register, wait for the kubelet to go away, start over.
async fn serve_and_register(
    config: &PluginConfig,
    resource: &str,
    inventory: watch::Receiver<GpuInventory>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PluginError> {
    tokio::pin!(shutdown);
    // The kubelet makes the folder; creating it here lets the plugin start first (or in a test).
    std::fs::create_dir_all(&config.socket_dir)
        .map_err(|source| PluginError::Socket { path: config.socket_dir.clone(), source })?;
    let kubelet_socket = config.kubelet_socket();
    let mut generation = 0;
    loop {
        generation += 1;
        let endpoint = endpoint(resource, generation);
        let serving = Serving::start(config.socket_dir.join(&endpoint), inventory.clone(), config, resource)?;

        // Register; while the kubelet is not (yet) listening, wait for it. A kubelet that
        // starts empties the folder, our socket with it: serve again before registering it.
        let mut told = false;
        let kubelet = loop {
            if !serving.path.exists() {
                break None;
            }
            let options = plugin_options();
            match register(&kubelet_socket, &endpoint, resource, options).await {
                Ok(()) => break Some(socket_identity(&kubelet_socket)),
                Err(RegistrationError::Connect { path, reason }) => {
                    if !told {
                        info!("waiting for the kubelet at {}: {reason}", path.display());
                        told = true;
                    }
                }
                Err(refused) => {
                    serving.stop().await;
                    return Err(refused.into());
                }
            }
            tokio::select! {
                () = &mut shutdown => { serving.stop().await; return Ok(()); }
                () = tokio::time::sleep(config.poll_interval) => {}
            }
        };
        let Some(kubelet) = kubelet else {
            info!(
                "our socket {} was removed before the kubelet took it: serving again",
                serving.path.display()
            );
            serving.stop().await;
            continue;
        };
        info!(%resource, %endpoint, "registered with the kubelet");
        let labels = crate::metrics::ResourceLabels { resource: resource.to_string() };
        config.metrics.registrations.get_or_create(&labels).inc();

        // A restarting kubelet removes every socket in the folder and makes a new kubelet.sock.
        loop {
            tokio::select! {
                () = &mut shutdown => { serving.stop().await; return Ok(()); }
                () = tokio::time::sleep(config.poll_interval) => {}
            }
            if !serving.path.exists() {
                info!("our socket {} was removed (kubelet restart): serving again", serving.path.display());
                break;
            }
            if socket_identity(&kubelet_socket) != kubelet {
                info!("the kubelet socket changed (kubelet restart): registering again");
                break;
            }
        }
        serving.stop().await;
    }
}

fn plugin_options() -> DevicePluginOptions {
    DevicePluginOptions { pre_start_required: false, get_preferred_allocation_available: true }
}

/// Which file a path is now; changes when the kubelet makes a new socket there.
fn socket_identity(path: &Path) -> Option<(u64, u64, i64, i64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

/// Feeds health events into the watched inventory; runs on a blocking thread until `stop`.
/// `changed` sees the inventory after each health change.
fn watch_health(
    backend: &dyn GpuBackend,
    inventory: &watch::Sender<GpuInventory>,
    stop: &AtomicBool,
    changed: &dyn Fn(&GpuInventory),
) {
    // Nobody left to tell (the plugin was dropped) also means stop.
    while !stop.load(Ordering::Relaxed) && !inventory.is_closed() {
        let events = match backend.wait_health_events(HEALTH_WAIT) {
            Ok(events) => events,
            Err(e) => {
                warn!("health events: {e}");
                std::thread::sleep(HEALTH_WAIT);
                continue;
            }
        };
        for event in events {
            let modified =
                inventory.send_if_modified(|inv| match inv.gpus.iter_mut().find(|g| g.id == event.id) {
                    Some(gpu) if gpu.health != event.health => {
                        gpu.health = event.health;
                        match event.health {
                            Health::Unhealthy => {
                                warn!(gpu = %event.id, reason = %event.reason, "GPU unhealthy")
                            }
                            Health::Healthy => {
                                info!(gpu = %event.id, reason = %event.reason, "GPU healthy again")
                            }
                        }
                        true
                    }
                    Some(_) => false,
                    None => {
                        debug!(gpu = %event.id, "health event for a GPU this plugin does not serve");
                        false
                    }
                });
            if modified {
                changed(&inventory.borrow());
            }
        }
    }
}

/// One start of the gRPC server on one socket.
struct Serving {
    path: PathBuf,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Serving {
    fn start(
        path: PathBuf,
        inventory: watch::Receiver<GpuInventory>,
        config: &PluginConfig,
        resource: &str,
    ) -> Result<Self, PluginError> {
        // A socket left by a crashed run of ours would make bind fail.
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).map_err(|source| PluginError::Socket { path: path.clone(), source })?;
        let (stop, stopped) = watch::channel(false);
        let service = DevicePluginService {
            inventory,
            stop: stopped.clone(),
            resource: resource.to_string(),
            config: config.clone(),
        };
        let mut signal = stopped;
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(DevicePluginServer::new(service))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                    let _ = signal.wait_for(|s| *s).await;
                }),
        );
        debug!("serving on {}", path.display());
        Ok(Serving { path, stop, task })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        match tokio::time::timeout(STOP_GRACE, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!("gRPC server on {}: {e}", self.path.display()),
            Ok(Err(e)) => warn!("gRPC server on {}: {e}", self.path.display()),
            Err(_) => abort.abort(),
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Clone)]
struct DevicePluginService {
    inventory: watch::Receiver<GpuInventory>,
    /// Ends open ListAndWatch streams when this start of the server stops.
    stop: watch::Receiver<bool>,
    /// The resource this server serves.
    resource: String,
    /// Sharing, the whole-GPU resource's name and the metrics.
    config: PluginConfig,
}

impl DevicePluginService {
    /// This resource's devices as the inventory is now.
    fn served(&self, inventory: &GpuInventory) -> Vec<ServedDevice> {
        self.config.served(inventory).remove(&self.resource).unwrap_or_default()
    }
}

fn device_list(devices: &[ServedDevice]) -> ListAndWatchResponse {
    let devices = devices
        .iter()
        .map(|device| Device {
            id: device.id.clone(),
            health: device.health.as_str().to_string(),
            topology: device.numa_node.map(|id| TopologyInfo { nodes: vec![NumaNode { id }] }),
        })
        .collect();
    ListAndWatchResponse { devices }
}

fn refusal(error: AllocationError) -> Status {
    match error {
        AllocationError::Unhealthy { .. } => Status::failed_precondition(error.to_string()),
        AllocationError::UnknownDevice { .. } | AllocationError::Empty => {
            Status::invalid_argument(error.to_string())
        }
    }
}

#[tonic::async_trait]
impl DevicePlugin for DevicePluginService {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(plugin_options()))
    }

    type ListAndWatchStream = ReceiverStream<Result<ListAndWatchResponse, Status>>;

    async fn list_and_watch(&self, _: Request<Empty>) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let mut inventory = self.inventory.clone();
        let mut stop = self.stop.clone();
        let service = self.clone();
        // Each message is the whole list as it is now; changes that land while one is being
        // sent are folded into the next, which is all the kubelet needs (it keeps only the last).
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            loop {
                let devices = service.served(&inventory.borrow_and_update());
                let list = device_list(&devices);
                if tx.send(Ok(list)).await.is_err() {
                    return;
                }
                tokio::select! {
                    changed = inventory.changed() => if changed.is_err() { return },
                    _ = stop.wait_for(|s| *s) => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let inventory = self.inventory.borrow().clone();
        let served = self.served(&inventory);
        // Whole GPUs by NVLink / NUMA closeness; replicas and MIG devices packed by GPU.
        let whole = served.iter().all(|d| d.id == d.gpu);
        let container_responses = request
            .into_inner()
            .container_requests
            .iter()
            .map(|r| {
                let (available, must, size) = (
                    &r.available_device_i_ds,
                    &r.must_include_device_i_ds,
                    usize::try_from(r.allocation_size).unwrap_or(0),
                );
                ContainerPreferredAllocationResponse {
                    device_i_ds: if whole {
                        preferred_allocation(&inventory.gpus, available, must, size)
                    } else {
                        preferred_replicas(&served, available, must, size)
                    },
                }
            })
            .collect();
        Ok(Response::new(PreferredAllocationResponse { container_responses }))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let inventory = self.inventory.borrow().clone();
        let served = self.served(&inventory);
        let metrics = &self.config.metrics;
        let mut container_responses = Vec::new();
        for container in request.into_inner().container_requests {
            let response = served_allocation(&inventory, &served, &container.devices_ids).map_err(|e| {
                warn!("allocation of {:?} refused: {e}", container.devices_ids);
                let reason = match e {
                    AllocationError::Unhealthy { .. } => "unhealthy",
                    AllocationError::UnknownDevice { .. } => "unknown_device",
                    AllocationError::Empty => "empty",
                };
                metrics.allocated(&self.resource, reason);
                refusal(e)
            })?;
            metrics.allocated(&self.resource, "ok");
            info!(devices = ?container.devices_ids, "allocated");
            container_responses.push(response);
        }
        Ok(Response::new(AllocateResponse { container_responses }))
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        // Not asked for at registration: GPUs need no reset between containers.
        Ok(Response::new(PreStartContainerResponse {}))
    }
}
