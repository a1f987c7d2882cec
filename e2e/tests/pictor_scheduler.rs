//! pictor-scheduler against a real local control plane (kube-apiserver, controller manager,
//! kwok nodes from the GPU catalogue), the scheduler running in-process: GPU pods land only
//! where they fit, gangs bind whole or not at all, unschedulable pods are told why, and a bind
//! conflict, a deleted node and a scheduler restart lose no pod and over-commit no node, and a
//! leader killed mid-run (SIGKILL, the real binary) is replaced by one started cold.

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use pictor_crds::contract::{Vendor, annotations, labels, node_labels};
use pictor_e2e::{Cluster, ControlPlane, ControlPlaneOptions, ManagedProcess, fake_nodes, workspace_binary};
use pictor_scheduler::api::{ApiError, ClusterWriter, KubeWriter};
use pictor_scheduler::scheduling::{Binding, SchedulerConfig, UnschedulableReport};
use pictor_scheduler::service::{ServiceConfig, ServiceError, run};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NS: &str = "default";

/// A scheduler running in this process; stopping it releases its lease.
struct InProcess {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServiceError>>,
}

impl InProcess {
    fn start<W: ClusterWriter>(client: Client, writer: W, config: ServiceConfig) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(client, writer, config, async move {
            let _ = stopped.await;
        }));
        Self { stop: Some(stop), task }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
        assert!(matches!(result, Ok(Ok(Ok(())))), "the scheduler stops cleanly: {result:?}");
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config(identity: &str) -> ServiceConfig {
    ServiceConfig {
        identity: identity.into(),
        leader_election: false,
        scheduler: SchedulerConfig { gang_wait: Duration::from_secs(3), ..Default::default() },
        ..Default::default()
    }
}

fn pod(name: &str, resource: &str, gpus: u32, extra: Value) -> Pod {
    let mut limits = serde_json::Map::new();
    if gpus > 0 {
        limits.insert(resource.into(), json!(gpus.to_string()));
    }
    let mut spec = json!({
        "schedulerName": "pictor-scheduler",
        "containers": [{"name": "main", "image": "pictor/fake", "resources": {
            "requests": {"cpu": "1", "memory": "1Gi"}, "limits": limits}}],
    });
    let mut metadata = json!({"name": name, "namespace": NS});
    if let Some(m) = extra.get("metadata") {
        for (k, v) in m.as_object().unwrap() {
            metadata[k] = v.clone();
        }
    }
    if let Some(s) = extra.get("spec") {
        for (k, v) in s.as_object().unwrap() {
            spec[k] = v.clone();
        }
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}))
        .unwrap()
}

fn gang_pod(gang: &str, i: usize, size: usize) -> Pod {
    pod(
        &format!("{gang}-{i}"),
        "nvidia.com/gpu",
        8,
        json!({"metadata": {
            "labels": {labels::GANG: gang},
            "annotations": {annotations::GANG_SIZE: size.to_string()},
        }}),
    )
}

async fn create(pods: &Api<Pod>, pod: &Pod) {
    pods.create(&PostParams::default(), pod).await.unwrap();
}

/// Node of every bound pod, by pod name.
async fn placements(pods: &Api<Pod>) -> BTreeMap<String, String> {
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|p| Some((p.metadata.name?, p.spec?.node_name?)))
        .collect()
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Fails when the pods bound to any node ask for more GPUs than it has.
async fn assert_no_node_over_committed(client: &Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut capacity: HashMap<String, i64> = HashMap::new();
    for n in nodes.list(&ListParams::default()).await.unwrap() {
        let alloc = n.status.and_then(|s| s.allocatable).unwrap_or_default();
        let gpus: i64 = Vendor::ALL
            .iter()
            .filter_map(|v| alloc.get(v.resource_name()).and_then(|q| q.0.parse::<i64>().ok()))
            .sum();
        capacity.insert(n.metadata.name.unwrap(), gpus);
    }
    let mut used: HashMap<String, i64> = HashMap::new();
    let pods: Api<Pod> = Api::all(client.clone());
    for p in pods.list(&ListParams::default()).await.unwrap() {
        let spec = p.spec.unwrap();
        let Some(node) = spec.node_name else { continue };
        let gpus: i64 = spec
            .containers
            .iter()
            .filter_map(|c| c.resources.as_ref()?.limits.clone())
            .flat_map(|l| l.into_iter())
            .filter(|(k, _)| k.ends_with("/gpu"))
            .map(|(_, q)| q.0.parse::<i64>().unwrap())
            .sum();
        *used.entry(node).or_default() += gpus;
    }
    for (node, gpus) in used {
        let cap = capacity.get(&node).copied();
        assert!(cap.is_some_and(|c| gpus <= c), "node {node} holds {gpus} GPUs of {cap:?}");
    }
}

/// The message a pod that fits nowhere is told, once its `PodScheduled=False` condition and a
/// `FailedScheduling` Event agree on it.
async fn unschedulable_message(client: &Client, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let started = Instant::now();
    loop {
        let p = pods.get(name).await.unwrap();
        let condition = p.status.and_then(|s| s.conditions).unwrap_or_default().into_iter().find(|c| {
            c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
        });
        let notes: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some("FailedScheduling")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            })
            .filter_map(|e| e.note)
            .collect();
        // The view may change between attempts (kwok readies nodes, the controller manager
        // lifts its taints), so the latest condition is matched with its own Event.
        if let Some(c) = condition
            && let Some(note) = notes.into_iter().find(|n| Some(n.as_str()) == c.message.as_deref())
        {
            return note;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{name} never got its condition and Event");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A kwok node as the device plugin and labeller make a node whose GPUs are time-sliced
/// `replicas` ways: its allocatable and labels are what they would advertise and apply.
fn time_sliced_node(name: &str, model: &str, replicas: u32) -> Node {
    use pictor_device_plugins::FakeBackend;
    use pictor_device_plugins::advertise::advertise;
    use pictor_device_plugins::labeller::gpu_labels;
    use pictor_device_plugins::sharing::SharingConfig;
    let catalogue = fake_nodes::model(model).unwrap();
    let inventory = FakeBackend::preset(model, catalogue.gpus as usize).unwrap();
    let sharing = SharingConfig::time_sliced(replicas);
    let resource = inventory.vendor.resource_name();
    let devices = advertise(&inventory, &sharing, resource)[resource].len();
    let mut node = fake_nodes::fake_node(name, &catalogue);
    node.metadata.labels.as_mut().unwrap().extend(gpu_labels(&inventory, &sharing));
    let status = node.status.as_mut().unwrap();
    for resources in [status.allocatable.as_mut().unwrap(), status.capacity.as_mut().unwrap()] {
        resources.insert(
            resource.to_string(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity(devices.to_string()),
        );
    }
    node
}

/// Two pods that each ask half an RTX 4090's memory share the one time-sliced GPU of a shared
/// node; a third that would overflow it waits, told why; once one of the two is gone it binds.
/// A whole-GPU node beside it is left alone by the fractional pods and takes the whole pod.
#[tokio::test]
async fn fractional_pods_share_a_time_sliced_gpu_within_its_memory_and_an_overflow_waits() {
    let plane = ControlPlane::start(ControlPlaneOptions { members: 1, kube_scheduler: false }).await.unwrap();
    let member = &plane.members[0];
    let shared = time_sliced_node("s-rtx4090-0", "rtx4090", 4);
    let labels = shared.metadata.labels.clone().unwrap();
    assert_eq!(
        (labels[node_labels::SHARING].as_str(), labels[node_labels::REPLICAS].as_str()),
        ("time-slicing", "4")
    );
    let whole = fake_nodes::fake_node("w-rtx4090-0", &fake_nodes::model("rtx4090").unwrap());
    plane.add_nodes(member, vec![shared, whole]).await.unwrap();
    let client = member.client().await.unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let allocatable = nodes.get("s-rtx4090-0").await.unwrap().status.unwrap().allocatable.unwrap();
    assert_eq!(allocatable["nvidia.com/gpu"].0, "4", "one GPU, four replicas allocatable");

    let scheduler = InProcess::start(client.clone(), KubeWriter::new(client.clone(), "t1"), config("t1"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let nv = Vendor::Nvidia.resource_name();
    let half = |name: &str| {
        pod(name, nv, 1, json!({"metadata": {"annotations": {annotations::GPU_MEMORY_MIB: "12000"}}}))
    };
    create(&pods, &half("half-a")).await;
    create(&pods, &half("half-b")).await;
    wait_until("both halves are bound", Duration::from_secs(30), || async {
        placements(&pods).await.len() == 2
    })
    .await;
    let placed = placements(&pods).await;
    assert_eq!(placed["half-a"], "s-rtx4090-0", "{placed:?}");
    assert_eq!(placed["half-b"], "s-rtx4090-0", "{placed:?}");

    create(&pods, &half("half-c")).await;
    let message = unschedulable_message(&client, "half-c").await;
    assert_eq!(
        message,
        "0/2 nodes are available: 1 node(s) didn't share their GPUs, 1 node(s) had no shared GPU with the requested memory free."
    );
    create(&pods, &pod("whole", nv, 1, json!({}))).await;
    wait_until("the whole-GPU pod is bound", Duration::from_secs(30), || async {
        placements(&pods).await.contains_key("whole")
    })
    .await;
    assert_eq!(placements(&pods).await["whole"], "w-rtx4090-0");
    assert!(!placements(&pods).await.contains_key("half-c"), "half-c still waits");

    pods.delete("half-a", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
        .await
        .unwrap();
    wait_until("half-c is bound once half-a is gone", Duration::from_secs(30), || async {
        placements(&pods).await.get("half-c").map(String::as_str) == Some("s-rtx4090-0")
    })
    .await;
    assert_no_node_over_committed(&client).await;
    scheduler.stop().await;
}

#[tokio::test]
async fn gpu_pods_land_only_where_vendor_model_memory_count_taints_and_affinity_fit() {
    let plane = ControlPlane::start(ControlPlaneOptions { members: 1, kube_scheduler: false }).await.unwrap();
    let member = &plane.members[0];
    let m = |s| fake_nodes::model(s).unwrap();
    let fleet =
        fake_nodes::fleet("a", &[(m("h100"), 2), (m("rtx4090"), 2), (m("mi300x"), 1), (m("rx7900xtx"), 1)]);
    plane.add_nodes(member, fleet).await.unwrap();
    let client = member.client().await.unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let taint = json!({"spec": {"taints": [{"key": "pictor.network/reserved", "value": "team", "effect": "NoSchedule"}]}});
    nodes.patch("a-h100-1", &PatchParams::default(), &Patch::Merge(&taint)).await.unwrap();
    let cordon = json!({"spec": {"unschedulable": true}});
    nodes.patch("a-rtx4090-1", &PatchParams::default(), &Patch::Merge(&cordon)).await.unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let with_http = ServiceConfig { http_addr: Some(([127, 0, 0, 1], port).into()), ..config("t1") };
    let scheduler = InProcess::start(client.clone(), KubeWriter::new(client.clone(), "t1"), with_http);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let nv = Vendor::Nvidia.resource_name();
    let amd = Vendor::Amd.resource_name();
    let cases = [
        pod(
            "h100-pair",
            nv,
            2,
            json!({"metadata": {"annotations": {annotations::GPU_MODELS: "NVIDIA-H100-80GB-HBM3"}}}),
        ),
        pod(
            "tolerant-eight",
            nv,
            8,
            json!({"spec": {"tolerations": [{"key": "pictor.network/reserved", "operator": "Equal", "value": "team", "effect": "NoSchedule"}]}}),
        ),
        pod(
            "big-memory",
            amd,
            1,
            json!({"metadata": {"annotations": {annotations::GPU_MIN_MEMORY_MIB: "100000"}}}),
        ),
        pod(
            "radeon",
            amd,
            1,
            json!({"spec": {"nodeSelector": {node_labels::PRODUCT: "AMD-Radeon-RX-7900-XTX"}}}),
        ),
        pod(
            "small-memory",
            nv,
            1,
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": node_labels::MEMORY_MIB, "operator": "Lt", "values": ["30000"]}]}]}}}}}),
        ),
        pod("sixteen", nv, 16, json!({})),
    ];
    for p in &cases {
        create(&pods, p).await;
    }
    wait_until("five pods are bound", Duration::from_secs(30), || async {
        placements(&pods).await.len() == 5
    })
    .await;
    let placed = placements(&pods).await;
    let expected = [
        ("h100-pair", "a-h100-0"),
        ("tolerant-eight", "a-h100-1"),
        ("big-memory", "a-mi300x-0"),
        ("radeon", "a-rx7900xtx-0"),
        ("small-memory", "a-rtx4090-0"),
    ];
    for (pod_name, node) in expected {
        assert_eq!(placed.get(pod_name).map(String::as_str), Some(node), "{pod_name}: {placed:?}");
    }
    assert!(!placed.contains_key("sixteen"));

    // The pod that fits nowhere is told why, on its condition and in an Event.
    let message = unschedulable_message(&client, "sixteen").await;
    assert!(message.starts_with("0/6 nodes are available: "), "{message}");
    assert!(message.contains("Insufficient nvidia.com/gpu"), "{message}");
    assert!(message.contains("1 node(s) were unschedulable"), "{message}");
    assert_no_node_over_committed(&client).await;

    // The HTTP endpoints: alive, ready once the watches have listed, and the metrics counted.
    assert!(http_get(port, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(http_get(port, "/readyz").await.starts_with("HTTP/1.1 200"));
    let expected = [
        "pictor_scheduler_schedule_attempts_total{result=\"scheduled\"} 5",
        "pictor_scheduler_scheduling_latency_seconds_count 5",
        "pictor_scheduler_pending_pods 1",
        "pictor_scheduler_schedule_attempts_total{result=\"unschedulable\"}",
    ];
    // A binding's answer reaches the metrics a moment after the binding itself is visible.
    let started = Instant::now();
    loop {
        let metrics = http_get(port, "/metrics").await;
        let missing: Vec<&str> = expected.iter().copied().filter(|l| !metrics.contains(l)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{missing:?} missing from\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    scheduler.stop().await;
}

/// A plain HTTP/1.1 GET; on a blocking thread, since the scheduler serves from this runtime.
async fn http_get(port: u16, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn gangs_bind_whole_or_not_at_all_and_competing_gangs_do_not_deadlock() {
    let plane = ControlPlane::start(ControlPlaneOptions { members: 1, kube_scheduler: false }).await.unwrap();
    let member = &plane.members[0];
    plane
        .add_nodes(member, fake_nodes::fleet("g", &[(fake_nodes::model("h100").unwrap(), 5)]))
        .await
        .unwrap();
    let client = member.client().await.unwrap();
    let scheduler = InProcess::start(client.clone(), KubeWriter::new(client.clone(), "t2"), config("t2"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    // A gang that never completes binds nothing and gives its room back after the wait.
    for i in 0..3 {
        create(&pods, &gang_pod("lonely", i, 4)).await;
    }
    wait_until("the incomplete gang reports that it gave up", Duration::from_secs(20), || async {
        let p = pods.get("lonely-0").await.unwrap();
        p.status.and_then(|s| s.conditions).unwrap_or_default().iter().any(|c| {
            c.type_ == "PodScheduled"
                && c.message.as_deref().is_some_and(|m| m.contains("3 of 4 pods arrived"))
        })
    })
    .await;
    assert!(placements(&pods).await.is_empty(), "no member of an incomplete gang is bound");

    // Two gangs that fit only one at a time, arriving interleaved: one binds whole, the other
    // binds nothing and waits, and nothing deadlocks.
    for i in 0..4 {
        create(&pods, &gang_pod("alpha", i, 4)).await;
        create(&pods, &gang_pod("beta", i, 4)).await;
    }
    let count =
        |placed: &BTreeMap<String, String>, gang: &str| placed.keys().filter(|k| k.starts_with(gang)).count();
    wait_until("one gang is bound", Duration::from_secs(30), || async {
        let placed = placements(&pods).await;
        count(&placed, "alpha") == 4 || count(&placed, "beta") == 4
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let placed = placements(&pods).await;
    let (winner, loser) = if count(&placed, "alpha") == 4 { ("alpha", "beta") } else { ("beta", "alpha") };
    assert_eq!(count(&placed, loser), 0, "the other gang holds nothing: {placed:?}");
    assert_eq!(count(&placed, "lonely"), 0);
    let winner_nodes: std::collections::BTreeSet<&String> =
        placed.iter().filter(|(k, _)| k.starts_with(winner)).map(|(_, n)| n).collect();
    assert_eq!(winner_nodes.len(), 4, "8-GPU members take one node each");

    // The winner finishes; the loser then binds whole.
    for i in 0..4 {
        pods.delete(&format!("{winner}-{i}"), &DeleteParams::default().grace_period(0)).await.unwrap();
    }
    wait_until("the second gang is bound", Duration::from_secs(30), || async {
        count(&placements(&pods).await, loser) == 4
    })
    .await;
    assert_eq!(count(&placements(&pods).await, "lonely"), 0);
    assert_no_node_over_committed(&client).await;
    scheduler.stop().await;
}

/// Binds the first pod named `victim` to `thief_node` itself before passing the binding on,
/// as a second scheduler would: the real API server then answers 409 Conflict. The first
/// binding of `flaky` fails without reaching the API server (a dropped connection, say).
#[derive(Clone)]
struct RacingWriter {
    inner: KubeWriter,
    pods: Api<Pod>,
    victim: String,
    thief_node: String,
    raced: Arc<Mutex<Option<String>>>,
    flaky: String,
    flaked: Arc<Mutex<bool>>,
}

impl ClusterWriter for RacingWriter {
    async fn bind(&self, b: &Binding) -> Result<(), ApiError> {
        if b.name == self.flaky && !std::mem::replace(&mut *self.flaked.lock().unwrap(), true) {
            return Err(ApiError::Conflict(b.key.clone(), "injected failure".into()));
        }
        let first = b.name == self.victim && self.raced.lock().unwrap().is_none();
        if first {
            *self.raced.lock().unwrap() = Some(b.node.clone());
            let theirs = Binding { node: self.thief_node.clone(), ..b.clone() };
            let body = pictor_scheduler::api::binding_body(&theirs);
            self.pods
                .create_subresource::<_, Value>("binding", &b.name, &PostParams::default(), &body)
                .await
                .expect("the racing binding succeeds");
        }
        let result = self.inner.bind(b).await;
        if first {
            assert!(matches!(result, Err(ApiError::Conflict(..))), "{result:?}");
        }
        result
    }

    async fn report_unschedulable(&self, r: &UnschedulableReport) -> Result<(), ApiError> {
        self.inner.report_unschedulable(r).await
    }
}

#[tokio::test]
async fn a_bind_conflict_a_deleted_node_and_a_restart_lose_no_pod_and_over_commit_none() {
    let plane = ControlPlane::start(ControlPlaneOptions { members: 1, kube_scheduler: false }).await.unwrap();
    let member = &plane.members[0];
    let m = |s| fake_nodes::model(s).unwrap();
    plane.add_nodes(member, fake_nodes::fleet("c", &[(m("rtx4090"), 12), (m("h100"), 2)])).await.unwrap();
    let client = member.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let nodes: Api<Node> = Api::all(client.clone());
    let leader = |id: &str| ServiceConfig {
        leader_election: true,
        lease_duration_seconds: 3,
        lease_grace_seconds: 1,
        ..config(id)
    };

    let raced = Arc::new(Mutex::new(None));
    let racing = RacingWriter {
        inner: KubeWriter::new(client.clone(), "first"),
        pods: pods.clone(),
        victim: "conflict".into(),
        thief_node: "c-h100-1".into(),
        raced: raced.clone(),
        flaky: "flaky".into(),
        flaked: Arc::new(Mutex::new(false)),
    };
    let mut first = Some(InProcess::start(client.clone(), racing, leader("first")));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    wait_until("the first replica holds the lease", Duration::from_secs(30), || async {
        let lease = leases.get_opt("pictor-scheduler").await.unwrap();
        lease.and_then(|l| l.spec?.holder_identity).as_deref() == Some("first")
    })
    .await;
    // A standby replica keeps its view warm but writes nothing while `first` leads.
    let standby =
        InProcess::start(client.clone(), KubeWriter::new(client.clone(), "standby"), leader("standby"));

    // A bind conflict: the other binding wins, our reservation on the chosen node is undone.
    create(&pods, &pod("conflict", "nvidia.com/gpu", 1, json!({}))).await;
    wait_until("the conflicting pod is bound", Duration::from_secs(30), || async {
        placements(&pods).await.contains_key("conflict")
    })
    .await;
    assert_eq!(placements(&pods).await["conflict"], "c-h100-1", "the racing binding won");
    let chosen = raced.lock().unwrap().clone().expect("the race ran");
    assert_ne!(chosen, "c-h100-1");

    // A binding that fails outright: the reservation is undone and the pod tried again.
    create(&pods, &pod("flaky", "nvidia.com/gpu", 1, json!({}))).await;
    wait_until("the flaky pod is bound on a retry", Duration::from_secs(30), || async {
        placements(&pods).await.contains_key("flaky")
    })
    .await;

    // A node deleted mid-run gets no more pods. The deleted node holds no pod and is not the
    // node given back after the conflict (which must get a pod again below).
    let taken: Vec<String> = placements(&pods).await.into_values().collect();
    let doomed = (0..12)
        .rev()
        .map(|i| format!("c-rtx4090-{i}"))
        .find(|n| *n != chosen && !taken.contains(n))
        .expect("a free RTX 4090 node");
    nodes.delete(&doomed, &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Exactly as many 1-GPU pods as GPUs are left: 11 RTX 4090 + 16 H100 - 2 = 25. A leaked
    // reservation or a double booking would leave one of them pending or a node over-committed.
    for i in 0..25 {
        create(&pods, &pod(&format!("fill-{i}"), "nvidia.com/gpu", 1, json!({}))).await;
        if i == 8 {
            // The leader stops mid-run; the standby takes the lease and finishes the work.
            first.take().expect("stopped once").stop().await;
        }
    }
    wait_until("all 27 pods are bound", Duration::from_secs(60), || async {
        placements(&pods).await.len() == 27
    })
    .await;
    let placed = placements(&pods).await;
    assert!(placed.values().all(|n| *n != doomed), "nothing on the deleted node {doomed}: {placed:?}");
    assert!(placed.values().any(|n| n == &chosen), "the node chosen before the conflict was given back");
    assert_no_node_over_committed(&client).await;
    let p = pods.get("fill-24").await.unwrap();
    assert!(p.spec.unwrap().node_name.is_some());
    standby.stop().await;
}

/// The real pictor-scheduler binary (a debug build) against `cluster`, leader election on with
/// a 3-second lease, `/metrics` on `port`.
fn scheduler_process(plane: &ControlPlane, cluster: &Cluster, identity: &str, port: u16) -> ManagedProcess {
    let binary = workspace_binary("pictor-scheduler", "pictor-scheduler");
    let args = vec![
        format!("--identity={identity}"),
        "--lease-duration-seconds=3".to_string(),
        format!("--http-addr=127.0.0.1:{port}"),
    ];
    let env: [(&str, &Path); 1] = [("KUBECONFIG", &cluster.kubeconfig)];
    ManagedProcess::spawn_with_env(
        &format!("pictor-scheduler-{identity}"),
        &binary,
        &args,
        &env,
        plane.run_dir(),
    )
    .unwrap()
}

/// A counter of `/metrics`, 0 when the series was never written.
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test]
async fn a_leader_killed_mid_run_is_replaced_cold_losing_no_pod_binding_none_twice_and_gangs_whole() {
    let plane = ControlPlane::start(ControlPlaneOptions { members: 1, kube_scheduler: false }).await.unwrap();
    let member = &plane.members[0];
    // 12 × 8 H100s, exactly what the 40 pods below ask for: 32 one-GPU pods (packed onto 4
    // nodes) and two 4×8 gangs. A lost pod, a reservation leaked across the restart or a double
    // booking leaves a pod pending or a node over-committed.
    plane
        .add_nodes(member, fake_nodes::fleet("k", &[(fake_nodes::model("h100").unwrap(), 12)]))
        .await
        .unwrap();
    let client = member.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = || async {
        let lease = leases.get_opt("pictor-scheduler").await.unwrap();
        lease.and_then(|l| l.spec?.holder_identity)
    };

    // Every node each pod is ever seen on, from a watch that runs throughout.
    let seen: Arc<Mutex<HashMap<String, BTreeSet<String>>>> = Arc::default();
    let watch = {
        let (seen, pods) = (seen.clone(), pods.clone());
        tokio::spawn(async move {
            let stream = watcher(pods, watcher::Config::default()).default_backoff().applied_objects();
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(p)) = stream.next().await {
                if let (Some(name), Some(node)) = (p.metadata.name, p.spec.and_then(|s| s.node_name)) {
                    seen.lock().unwrap().entry(name).or_default().insert(node);
                }
            }
        })
    };

    let first_port = free_port();
    let mut first = scheduler_process(&plane, member, "first", first_port);
    wait_until("the first replica holds the lease", Duration::from_secs(60), || async {
        holder().await.as_deref() == Some("first")
    })
    .await;

    // Before the kill: 24 one-GPU pods and gang g0 arrive at once, and 3 of g1's 4 members
    // (g1's reservation lives only in the leader's memory). The leader dies while it binds.
    let before: Vec<Pod> = (0..24)
        .map(|i| pod(&format!("one-{i}"), "nvidia.com/gpu", 1, json!({})))
        .chain((0..4).map(|i| gang_pod("g0", i, 4)))
        .chain((0..3).map(|i| gang_pod("g1", i, 4)))
        .collect();
    let creating = {
        let pods = pods.clone();
        tokio::spawn(async move {
            futures::future::join_all(before.iter().map(|p| create(&pods, p))).await;
        })
    };
    wait_until("the leader has bound some pods", Duration::from_secs(30), || async {
        !placements(&pods).await.is_empty()
    })
    .await;
    let status =
        std::process::Command::new("kill").args(["-KILL", &first.pid().to_string()]).status().unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = first.exited() {
            break exit;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the leader outlived SIGKILL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.signal(), Some(9), "the leader was killed, not stopped: {exit:?}");
    let bound_when_killed = placements(&pods).await.len();
    creating.await.unwrap();

    // With no scheduler alive the rest arrive: 8 more one-GPU pods and g1's last member.
    for i in 24..32 {
        create(&pods, &pod(&format!("one-{i}"), "nvidia.com/gpu", 1, json!({}))).await;
    }
    create(&pods, &gang_pod("g1", 3, 4)).await;
    let at_kill = placements(&pods).await;
    eprintln!(
        "the leader was killed with {bound_when_killed} pods bound ({} once it was gone)",
        at_kill.len()
    );
    assert_eq!(holder().await.as_deref(), Some("first"), "a killed leader does not release its lease");

    // A replica started cold (no warm view, nothing inherited) takes over once the lease expires.
    let second_port = free_port();
    let _second = scheduler_process(&plane, member, "second", second_port);
    let started = Instant::now();
    while placements(&pods).await.len() < 40 {
        if started.elapsed() > Duration::from_secs(90) {
            let waiting: Vec<String> = pods
                .list(&ListParams::default())
                .await
                .unwrap()
                .into_iter()
                .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_none()))
                .map(|p| {
                    let why = p
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .into_iter()
                        .find_map(|c| c.message);
                    format!("{}: {why:?}", p.metadata.name.unwrap_or_default())
                })
                .collect();
            panic!("after 90s these pods still wait: {waiting:#?}\nbound: {:?}", placements(&pods).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(holder().await.as_deref(), Some("second"));
    let placed = placements(&pods).await;
    for (pod_name, node) in &at_kill {
        assert_eq!(
            placed.get(pod_name),
            Some(node),
            "{pod_name} kept the node it was bound to before the kill"
        );
    }
    for gang in ["g0", "g1"] {
        let nodes: BTreeSet<&String> =
            placed.iter().filter(|(k, _)| k.starts_with(gang)).map(|(_, n)| n).collect();
        assert_eq!(nodes.len(), 4, "gang {gang} is whole, one member per node: {placed:?}");
    }
    assert_no_node_over_committed(&client).await;

    // The successor bound exactly the pods left, each once: none of its bindings conflicted
    // with one the dead leader had made.
    let remaining = (40 - at_kill.len()) as u64;
    let started = Instant::now();
    let metrics = loop {
        let metrics = http_get(second_port, "/metrics").await;
        if counter(&metrics, "pictor_scheduler_scheduling_latency_seconds_count") >= remaining {
            break metrics;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the successor counted too few bindings:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let scheduled = "pictor_scheduler_schedule_attempts_total{result=\"scheduled\"}";
    let failed = "pictor_scheduler_schedule_attempts_total{result=\"error\"}";
    assert_eq!(counter(&metrics, scheduled), remaining, "{metrics}");
    assert_eq!(counter(&metrics, failed), 0, "{metrics}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    watch.abort();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 40);
    for (pod_name, nodes) in seen.iter() {
        assert_eq!(nodes.len(), 1, "{pod_name} was seen on {nodes:?}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
