//! The device plugin against a test kubelet: the kubelet's Registration service, written here,
//! on a temporary socket, and a DevicePlugin client that calls the plugin as the kubelet would.
//! Each flavour (NVIDIA, AMD) with the fake backend goes through: registration, ListAndWatch,
//! Allocate of 1 and of 4 devices, a GPU turning unhealthy and healthy again (seen in the
//! stream), refusals of unknown and unhealthy devices, a kubelet restart and re-registration,
//! and a clean shutdown that removes the plugin's socket.

use pictor_device_plugins::plugin::{self, PluginConfig};
use pictor_device_plugins::registration::unix_channel;
use pictor_device_plugins::v1beta1::device_plugin_client::DevicePluginClient;
use pictor_device_plugins::v1beta1::registration_server::{Registration, RegistrationServer};
use pictor_device_plugins::v1beta1::{
    AllocateRequest, ContainerAllocateRequest, ContainerAllocateResponse,
    ContainerPreferredAllocationRequest, Empty, ListAndWatchResponse, PreferredAllocationRequest,
    RegisterRequest,
};
use pictor_device_plugins::{FakeBackend, GpuBackend, Health, Vendor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};

/// Only a guard against hanging forever; nothing here is a speed assertion.
const PATIENCE: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The kubelet's side of registration: accepts v1beta1 and records every request (or refuses
/// all, as a kubelet does whose resource name is taken).
struct RecordingRegistration {
    seen: mpsc::UnboundedSender<RegisterRequest>,
    refuse: Option<&'static str>,
}

#[tonic::async_trait]
impl Registration for RecordingRegistration {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let request = request.into_inner();
        if let Some(why) = self.refuse {
            return Err(Status::already_exists(why));
        }
        if request.version != "v1beta1" {
            return Err(Status::invalid_argument(format!("unsupported version {}", request.version)));
        }
        let _ = self.seen.send(request);
        Ok(Response::new(Empty {}))
    }
}

/// A kubelet that serves only Registration, on `<dir>/kubelet.sock`.
struct TestKubelet {
    dir: PathBuf,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl TestKubelet {
    fn start(dir: &Path, seen: mpsc::UnboundedSender<RegisterRequest>) -> Self {
        Self::serve(dir, RecordingRegistration { seen, refuse: None })
    }

    /// Starts as the real kubelet's device manager does: it first empties the folder, sockets
    /// of plugins that were there before it included.
    fn serve(dir: &Path, registration: RecordingRegistration) -> Self {
        for entry in std::fs::read_dir(dir).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        let listener = UnixListener::bind(dir.join("kubelet.sock")).expect("kubelet.sock binds");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(RegistrationServer::new(registration))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .expect("test kubelet serves");
        });
        TestKubelet { dir: dir.to_path_buf(), stop, task }
    }

    /// Stops like a restarting kubelet: its socket and every plugin socket in the folder go.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "sock") {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
}

async fn plugin_client(dir: &Path, endpoint: &str) -> DevicePluginClient<Channel> {
    let socket = dir.join(endpoint);
    assert!(socket.exists(), "the plugin serves on {}", socket.display());
    DevicePluginClient::new(unix_channel(&socket).await.expect("the plugin's socket accepts"))
}

fn healths(list: &ListAndWatchResponse) -> BTreeMap<String, String> {
    list.devices.iter().map(|d| (d.id.clone(), d.health.clone())).collect()
}

/// Reads the stream until a list where `id` has `health`.
async fn until_health(
    stream: &mut Streaming<ListAndWatchResponse>,
    id: &str,
    health: Health,
) -> ListAndWatchResponse {
    within(&format!("{id} to turn {}", health.as_str()), async {
        loop {
            let list = stream.message().await.expect("stream stays open").expect("stream goes on");
            if healths(&list).get(id).map(String::as_str) == Some(health.as_str()) {
                return list;
            }
        }
    })
    .await
}

async fn allocate(
    client: &mut DevicePluginClient<Channel>,
    ids: &[String],
) -> Result<ContainerAllocateResponse, Status> {
    let request =
        AllocateRequest { container_requests: vec![ContainerAllocateRequest { devices_ids: ids.to_vec() }] };
    let mut response = client.allocate(request).await?.into_inner();
    assert_eq!(response.container_responses.len(), 1);
    Ok(response.container_responses.remove(0))
}

fn host_paths(response: &ContainerAllocateResponse) -> Vec<&str> {
    response.devices.iter().map(|d| d.host_path.as_str()).collect()
}

/// What a container given `ids` must see, per vendor.
fn check_allocation(vendor: Vendor, response: &ContainerAllocateResponse, ids: &[String], gpus: usize) {
    let paths = host_paths(response);
    match vendor {
        Vendor::Nvidia => {
            assert_eq!(response.envs["NVIDIA_VISIBLE_DEVICES"], ids.join(","));
            assert_eq!(
                paths
                    .iter()
                    .filter(|p| p.starts_with("/dev/nvidia") && p[11..].parse::<u32>().is_ok())
                    .count(),
                gpus,
                "{paths:?}"
            );
            for shared in ["/dev/nvidiactl", "/dev/nvidia-uvm"] {
                assert!(paths.contains(&shared), "{shared} missing from {paths:?}");
            }
        }
        Vendor::Amd => {
            assert!(paths.contains(&"/dev/kfd"), "{paths:?}");
            assert_eq!(paths.iter().filter(|p| p.starts_with("/dev/dri/renderD")).count(), gpus, "{paths:?}");
            assert!(!response.envs.contains_key("NVIDIA_VISIBLE_DEVICES"));
        }
    }
    assert!(response.devices.iter().all(|d| d.permissions == "rw"));
}

async fn drive(model: &str, resource: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let kubelet = TestKubelet::start(dir.path(), seen_tx.clone());

    let fake = FakeBackend::new(FakeBackend::preset(model, 8).unwrap());
    let vendor = fake.vendor();
    let ids: Vec<String> = fake.inventory().unwrap().gpus.iter().map(|g| g.id.clone()).collect();
    let mut config = PluginConfig::new(resource, dir.path());
    config.poll_interval = Duration::from_millis(100);
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    let backend: Arc<dyn GpuBackend> = Arc::new(fake.clone());
    let running = tokio::spawn(plugin::run(config, backend, async {
        let _ = shutdown_rx.await;
    }));

    // Registration.
    let first = within("registration", seen.recv()).await.unwrap();
    assert_eq!(first.version, "v1beta1");
    assert_eq!(first.resource_name, resource);
    assert!(first.options.as_ref().unwrap().get_preferred_allocation_available);
    let mut client = plugin_client(dir.path(), &first.endpoint).await;
    let options = client.get_device_plugin_options(Empty {}).await.unwrap().into_inner();
    assert!(options.get_preferred_allocation_available && !options.pre_start_required);

    // ListAndWatch: all eight, healthy, with their NUMA node.
    let mut stream = client.list_and_watch(Empty {}).await.unwrap().into_inner();
    let list = within("the first device list", stream.message()).await.unwrap().unwrap();
    assert_eq!(list.devices.len(), 8);
    assert!(list.devices.iter().all(|d| d.health == "Healthy"), "{list:?}");
    assert_eq!(list.devices[5].topology.as_ref().unwrap().nodes[0].id, 1);

    // Allocate one, then the four the plugin prefers: one linked half.
    let one = allocate(&mut client, &ids[..1]).await.unwrap();
    check_allocation(vendor, &one, &ids[..1], 1);
    let preferred = client
        .get_preferred_allocation(PreferredAllocationRequest {
            container_requests: vec![ContainerPreferredAllocationRequest {
                available_device_i_ds: ids[1..].to_vec(),
                must_include_device_i_ds: vec![],
                allocation_size: 4,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let four = preferred.container_responses[0].device_i_ds.clone();
    assert_eq!(four, ids[4..8].to_vec(), "GPU 0 is taken, so the whole second half is the closest four");
    let allocated = allocate(&mut client, &four).await.unwrap();
    check_allocation(vendor, &allocated, &four, 4);

    // A GPU fails: the stream says so, and it can no longer be allocated; then it recovers.
    let sick = ids[3].clone();
    fake.set_health(&sick, Health::Unhealthy);
    let list = until_health(&mut stream, &sick, Health::Unhealthy).await;
    assert_eq!(list.devices.iter().filter(|d| d.health == "Healthy").count(), 7);
    let refused = allocate(&mut client, &[ids[2].clone(), sick.clone()]).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("unhealthy") && refused.message().contains(&sick),
        "{}",
        refused.message()
    );
    fake.set_health(&sick, Health::Healthy);
    until_health(&mut stream, &sick, Health::Healthy).await;
    allocate(&mut client, std::slice::from_ref(&sick)).await.expect("a recovered GPU is allocatable");

    // A device the plugin never listed.
    let unknown =
        allocate(&mut client, &["GPU-00000000-dead-beef-0000-000000000000".into()]).await.unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(unknown.message().contains("unknown device"), "{}", unknown.message());

    // The kubelet restarts: the plugin notices, serves on a fresh socket and registers again.
    kubelet.stop().await;
    let ended = within("the old stream to end", stream.message()).await;
    assert!(!matches!(ended, Ok(Some(_))), "the old ListAndWatch stream ended: {ended:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kubelet = TestKubelet::start(dir.path(), seen_tx);
    let again = within("re-registration", seen.recv()).await.unwrap();
    assert_eq!(again.resource_name, resource);
    assert_ne!(again.endpoint, first.endpoint, "a fresh socket per start");
    let mut client = plugin_client(dir.path(), &again.endpoint).await;
    let mut stream = client.list_and_watch(Empty {}).await.unwrap().into_inner();
    let list = within("the device list after the restart", stream.message()).await.unwrap().unwrap();
    assert_eq!(list.devices.len(), 8);
    assert!(list.devices.iter().all(|d| d.health == "Healthy"));
    fake.set_health(&ids[7], Health::Unhealthy);
    until_health(&mut stream, &ids[7], Health::Unhealthy).await;
    check_allocation(vendor, &allocate(&mut client, &ids[..1]).await.unwrap(), &ids[..1], 1);

    // Shutdown: the plugin returns and takes its socket with it.
    shutdown.send(()).unwrap();
    within("the plugin to stop", running).await.unwrap().unwrap();
    assert!(!dir.path().join(&again.endpoint).exists(), "the plugin removed its socket");
    kubelet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvidia_plugin_serves_a_test_kubelet() {
    drive("h100", "nvidia.com/gpu").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amd_plugin_serves_a_test_kubelet() {
    drive("mi300x", "amd.com/gpu").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_waits_for_a_kubelet_that_is_not_there_yet() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBackend::new(FakeBackend::preset("rtx4090", 1).unwrap());
    let mut config = PluginConfig::new("nvidia.com/gpu", dir.path());
    config.poll_interval = Duration::from_millis(100);
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    let running = tokio::spawn(plugin::run(config, Arc::new(fake), async {
        let _ = shutdown_rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!running.is_finished(), "no kubelet is no reason to exit");
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let kubelet = TestKubelet::start(dir.path(), seen_tx);
    let registered = within("a late registration", seen.recv()).await.unwrap();
    assert_eq!(registered.resource_name, "nvidia.com/gpu");
    // The kubelet emptied the folder as it started: what the plugin registered is a socket
    // that serves, not the one deleted under it.
    let mut client = plugin_client(dir.path(), &registered.endpoint).await;
    client.get_device_plugin_options(Empty {}).await.expect("the registered socket serves");
    shutdown.send(()).unwrap();
    within("the plugin to stop", running).await.unwrap().unwrap();
    kubelet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_stops_with_the_kubelets_reason_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (seen, _) = mpsc::unbounded_channel();
    let why = "resource amd.com/gpu is already registered";
    let kubelet = TestKubelet::serve(dir.path(), RecordingRegistration { seen, refuse: Some(why) });
    let fake = FakeBackend::new(FakeBackend::preset("rx7900xtx", 1).unwrap());
    let mut config = PluginConfig::new("amd.com/gpu", dir.path());
    config.poll_interval = Duration::from_millis(100);
    let result =
        within("the refused plugin to stop", plugin::run(config, Arc::new(fake), std::future::pending()))
            .await;
    let error = result.expect_err("a refused registration ends the plugin").to_string();
    assert!(error.contains("refused to register amd.com/gpu") && error.contains(why), "{error}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["kubelet.sock"], "the plugin removed its own socket");
    kubelet.stop().await;
}

/// Time-slicing and MIG through the kubelet's API: a node of two H100s, one in MIG mode with two
/// 1g.10gb slices, the other time-sliced four ways. Two resources register; the replicas of the
/// shared GPU all go unhealthy with it and all come back when it heals by itself (the backend
/// says healthy again, nothing restarts); a replica's allocation shows the GPU and says it is
/// shared; the MIG slices follow their GPU's health too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_sliced_replicas_and_mig_devices_follow_their_gpus_health() {
    use pictor_crds::contract::node_labels;
    use pictor_device_plugins::sharing::SharingConfig;

    let dir = tempfile::tempdir().unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let kubelet = TestKubelet::start(dir.path(), seen_tx);
    let mut inventory = FakeBackend::preset("h100", 2).unwrap();
    FakeBackend::split_mig(&mut inventory, 0, &["1g.10gb", "1g.10gb"]);
    let (mig_a, mig_b) =
        (inventory.gpus[0].mig_devices[0].id.clone(), inventory.gpus[0].mig_devices[1].id.clone());
    let (mig_gpu, shared_gpu) = (inventory.gpus[0].id.clone(), inventory.gpus[1].id.clone());
    let fake = FakeBackend::new(inventory);
    let mut config = PluginConfig::new("nvidia.com/gpu", dir.path());
    config.poll_interval = Duration::from_millis(100);
    config.sharing = SharingConfig::time_sliced(4);
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    let running = tokio::spawn(plugin::run(config, Arc::new(fake.clone()), async {
        let _ = shutdown_rx.await;
    }));

    let mut registered = BTreeMap::new();
    for _ in 0..2 {
        let r = within("registrations", seen.recv()).await.unwrap();
        registered.insert(r.resource_name.clone(), r.endpoint);
    }
    assert_eq!(registered.keys().collect::<Vec<_>>(), ["nvidia.com/gpu", "nvidia.com/mig-1g.10gb"]);

    let mut gpus = plugin_client(dir.path(), &registered["nvidia.com/gpu"]).await;
    let mut replicas = gpus.list_and_watch(Empty {}).await.unwrap().into_inner();
    let list = within("the replica list", replicas.message()).await.unwrap().unwrap();
    let expected: Vec<String> = (0..4).map(|n| format!("{shared_gpu}::{n}")).collect();
    assert_eq!(list.devices.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), expected);
    let mut mig = plugin_client(dir.path(), &registered["nvidia.com/mig-1g.10gb"]).await;
    let mut slices = mig.list_and_watch(Empty {}).await.unwrap().into_inner();
    let list = within("the MIG list", slices.message()).await.unwrap().unwrap();
    assert_eq!(
        healths(&list),
        BTreeMap::from([(mig_a, "Healthy".into()), (mig_b.clone(), "Healthy".into())])
    );

    // Two replicas to one container: the GPU once, marked time-sliced four ways.
    let given = allocate(&mut gpus, &expected[1..3]).await.unwrap();
    assert_eq!(given.envs["NVIDIA_VISIBLE_DEVICES"], shared_gpu);
    assert_eq!(given.annotations[node_labels::SHARING], "time-slicing");
    assert_eq!(given.annotations[node_labels::REPLICAS], "4");
    let slice = allocate(&mut mig, std::slice::from_ref(&mig_b)).await.unwrap();
    assert_eq!(slice.envs["NVIDIA_VISIBLE_DEVICES"], mig_b);
    assert!(slice.annotations.is_empty());

    // The shared GPU faults: every replica goes; it heals: every replica returns.
    fake.set_health(&shared_gpu, Health::Unhealthy);
    let list = until_health(&mut replicas, &expected[3], Health::Unhealthy).await;
    assert!(list.devices.iter().all(|d| d.health == "Unhealthy"), "all replicas out: {list:?}");
    let refused = allocate(&mut gpus, &expected[..1]).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    fake.set_health(&shared_gpu, Health::Healthy);
    let list = until_health(&mut replicas, &expected[3], Health::Healthy).await;
    assert!(list.devices.iter().all(|d| d.health == "Healthy"), "all replicas back: {list:?}");
    allocate(&mut gpus, &expected[..1]).await.expect("a healed replica is allocatable");

    // The MIG-mode GPU faults: both of its slices go with it.
    fake.set_health(&mig_gpu, Health::Unhealthy);
    let list = until_health(&mut slices, &mig_b, Health::Unhealthy).await;
    assert!(list.devices.iter().all(|d| d.health == "Unhealthy"), "{list:?}");

    shutdown.send(()).unwrap();
    within("the plugin to stop", running).await.unwrap().unwrap();
    for endpoint in registered.values() {
        assert!(!dir.path().join(endpoint).exists(), "the plugin removed {endpoint}");
    }
    kubelet.stop().await;
}
