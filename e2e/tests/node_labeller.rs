//! The node labeller on a real local control plane, with the rights the provider's manifest
//! (device-plugins/deploy/) gives it and nothing more: a kwok node that starts without GPU labels
//! gets the `pictor.network/gpu.*` labels of its (fake) GPUs, with the same values the fake node
//! catalogue uses; a hand-edited one is put back, they follow the inventory when it changes, go
//! away when the GPUs do, belong to the `pictor-node-labeller` field manager alone, and leave
//! everyone else's labels be.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use kube::api::{Api, Patch, PatchParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use pictor_crds::contract::{node_conditions, node_labels};
use pictor_device_plugins::labeller::{FIELD_MANAGER, NodeLabeller};
use pictor_device_plugins::metrics::DeviceMetrics;
use pictor_device_plugins::sharing::SharingConfig;
use pictor_device_plugins::{FakeBackend, GpuBackend, Health};
use pictor_e2e::fake_nodes::{self, GpuModel};
use pictor_e2e::{Cluster, ControlPlane, ControlPlaneOptions, ManagedProcess, workspace_binary};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The GPU labels a node of `model` carries in the fake node catalogue.
fn catalogue_labels(model: &GpuModel) -> BTreeMap<String, String> {
    fake_nodes::fake_node("x", model)
        .metadata
        .labels
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with(node_labels::PREFIX))
        .collect()
}

fn gpu_labels(node: &Node) -> BTreeMap<String, String> {
    node.metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k.starts_with(node_labels::PREFIX))
        .collect()
}

/// Polls the node until its GPU labels are `expected`; the deadline only guards against a hang.
async fn until_labels(nodes: &Api<Node>, name: &str, expected: &BTreeMap<String, String>) -> Node {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let node = nodes.get(name).await.unwrap();
        if gpu_labels(&node) == *expected {
            return node;
        }
        assert!(
            Instant::now() < deadline,
            "labels of {name} stayed {:?}, expected {expected:?}",
            gpu_labels(&node)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

type Running = tokio::task::JoinHandle<Result<(), pictor_device_plugins::labeller::LabellerError>>;

/// A labeller of `node` with a quick interval, running until the sender is used.
fn start_labeller(
    client: &kube::Client,
    node: &str,
    fake: &FakeBackend,
    sharing: SharingConfig,
) -> (tokio::sync::oneshot::Sender<()>, Running) {
    let labeller = NodeLabeller {
        client: client.clone(),
        node_name: node.to_string(),
        backend: Arc::new(fake.clone()) as Arc<dyn GpuBackend>,
        sharing,
        interval: Duration::from_millis(200),
        resync: Duration::from_secs(2),
        metrics: Arc::new(DeviceMetrics::new()),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(labeller.run(async {
        let _ = stopped.await;
    }));
    (stop, running)
}

/// Polls the node until its GPU health condition has `status`; the deadline only guards
/// against a hang.
async fn until_condition(nodes: &Api<Node>, name: &str, status: &str) -> NodeCondition {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let node = nodes.get_status(name).await.unwrap();
        let condition = node
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == node_conditions::GPU_HEALTHY);
        if let Some(condition) = condition.as_ref().filter(|c| c.status == status) {
            return condition.clone();
        }
        assert!(Instant::now() < deadline, "{name}'s GPU condition stayed {condition:?}, expected {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The label keys the labeller's field manager owns, from the node's managedFields.
fn owned_labels(node: &Node) -> Vec<String> {
    let entry = node
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|m| m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply"))
        .expect("an Apply entry of pictor-node-labeller");
    let fields = serde_json::to_value(entry.fields_v1.as_ref().unwrap()).unwrap();
    let mut keys: Vec<String> = fields["f:metadata"]["f:labels"]
        .as_object()
        .map(|o| o.keys().map(|k| k.trim_start_matches("f:").to_string()).collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// Runs kubectl against `cluster` and returns stdout, failing the test with stderr.
fn kubectl(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster.kubectl().args(args).output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Installs the DaemonSet manifest a provider applies, and returns a client with exactly the
/// rights it gives the labeller's ServiceAccount.
async fn install_manifest(cluster: &Cluster) -> kube::Client {
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../device-plugins/deploy/pictor-device-plugins.yaml");
    kubectl(
        cluster,
        &["apply", "--server-side", "--field-manager=pictor-e2e", "-f", manifest.to_str().unwrap()],
    );
    let account = "system:serviceaccount:pictor-system:pictor-device-plugins";
    for (verb, expected) in [("patch", "yes"), ("get", "yes"), ("delete", "no"), ("create", "no")] {
        let out = cluster.kubectl().args(["auth", "can-i", verb, "nodes", "--as", account]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected, "can the labeller {verb} nodes?");
    }
    let token = kubectl(cluster, &["create", "token", "pictor-device-plugins", "-n", "pictor-system"]);
    let kubeconfig =
        Kubeconfig::from_yaml(&cluster.kubeconfig_for("pictor-device-plugins", token.trim())).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_labeller_keeps_a_fake_nodes_gpu_labels_current() {
    let started = Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 1, kube_scheduler: false }).await.unwrap();
    let member = &plane.members[0];
    let h100 = fake_nodes::model("h100").unwrap();
    let rtx4090 = fake_nodes::model("rtx4090").unwrap();

    // A kwok node as a real GPU node looks before the labeller ran: no GPU labels, one of its own.
    let name = format!("{}-unlabelled-0", member.name);
    let mut node = fake_nodes::fake_node(&name, &h100);
    let labels = node.metadata.labels.as_mut().unwrap();
    labels.retain(|k, _| !k.starts_with(node_labels::PREFIX));
    labels.insert("team".into(), "render".into());
    plane.add_nodes(member, vec![node]).await.unwrap();
    let nodes: Api<Node> = Api::all(member.client().await.unwrap());
    assert!(gpu_labels(&nodes.get(&name).await.unwrap()).is_empty(), "the node starts without GPU labels");

    // The provider's manifest: its DaemonSet wants a pod on the node, its RBAC is all the
    // labeller below gets.
    let client = install_manifest(member).await;
    let daemonsets: Api<DaemonSet> = Api::namespaced(member.client().await.unwrap(), "pictor-system");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ds = daemonsets.get("pictor-device-plugins").await.unwrap();
        if ds.status.as_ref().is_some_and(|s| s.desired_number_scheduled == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "the DaemonSet never wanted a pod on {name}: {:?}", ds.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("manifest installed, DaemonSet wants a pod on {name} ({:?})", started.elapsed());

    let fake = FakeBackend::new(FakeBackend::preset("h100", 8).unwrap());
    let (stop, running) = start_labeller(&client, &name, &fake, SharingConfig::whole());

    // The labels arrive, with the catalogue's values, owned by the labeller alone.
    let expected = catalogue_labels(&h100);
    assert_eq!(expected.len(), 6, "{expected:?}");
    let labelled = until_labels(&nodes, &name, &expected).await;
    assert_eq!(labelled.metadata.labels.as_ref().unwrap()["team"], "render");
    let mut keys: Vec<String> = expected.keys().cloned().collect();
    keys.sort();
    assert_eq!(owned_labels(&labelled), keys);
    eprintln!("labels arrived: {expected:?}");

    // The GPU health condition: True, then False naming the GPU that faulted, then True again
    // when it heals by itself — written by the labeller's field manager on the Node's status,
    // beside the kubelet's (here kwok's) own conditions.
    let healthy = until_condition(&nodes, &name, "True").await;
    assert_eq!(healthy.reason.as_deref(), Some("GPUsHealthy"));
    let sick = fake.inventory().unwrap().gpus[5].id.clone();
    fake.set_health(&sick, Health::Unhealthy);
    let unhealthy = until_condition(&nodes, &name, "False").await;
    assert_eq!(unhealthy.reason.as_deref(), Some("GPUsUnhealthy"));
    assert!(unhealthy.message.as_deref().unwrap().contains(&sick), "{unhealthy:?}");
    fake.set_health(&sick, Health::Healthy);
    let healed = until_condition(&nodes, &name, "True").await;
    let node = nodes.get_status(&name).await.unwrap();
    let conditions = node.status.unwrap().conditions.unwrap();
    assert!(conditions.iter().any(|c| c.type_ == "Ready"), "the node's own conditions stay: {conditions:?}");
    let owner =
        node.metadata.managed_fields.iter().flatten().find(|m| {
            m.subresource.as_deref() == Some("status") && m.manager.as_deref() == Some(FIELD_MANAGER)
        });
    assert!(owner.is_some(), "the condition is applied by {FIELD_MANAGER}");
    eprintln!("GPU health condition followed a fault and its recovery: {:?}", healed.message);

    // Somebody overwrites one by hand: the periodic re-apply puts it back, and leaves theirs be.
    let hand = serde_json::json!({"metadata": {"labels": {"team": "ml", node_labels::COUNT: "99"}}});
    nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&hand)).await.unwrap();
    let restored = until_labels(&nodes, &name, &expected).await;
    assert_eq!(restored.metadata.labels.as_ref().unwrap()["team"], "ml");

    // The inventory changes (the box now holds one RTX 4090): every label follows.
    fake.set_inventory(FakeBackend::preset("rtx4090", 1).unwrap());
    let relabelled = until_labels(&nodes, &name, &catalogue_labels(&rtx4090)).await;
    assert_eq!(
        relabelled.metadata.labels.as_ref().unwrap()["team"],
        "ml",
        "other labels stay as others set them"
    );
    eprintln!("labels followed the inventory: {:?}", gpu_labels(&relabelled));

    // A second node shares its GPUs four ways: it says so, with the count still of GPUs.
    let shared_name = format!("{}-shared-0", member.name);
    let mut shared_node = fake_nodes::fake_node(&shared_name, &h100);
    shared_node.metadata.labels.as_mut().unwrap().retain(|k, _| !k.starts_with(node_labels::PREFIX));
    plane.add_nodes(member, vec![shared_node]).await.unwrap();
    let shared_fake = FakeBackend::new(FakeBackend::preset("h100", 8).unwrap());
    let (stop_shared, shared_running) =
        start_labeller(&client, &shared_name, &shared_fake, SharingConfig::time_sliced(4));
    let mut expected_shared = catalogue_labels(&h100);
    expected_shared.insert(node_labels::SHARING.into(), "time-slicing".into());
    expected_shared.insert(node_labels::REPLICAS.into(), "4".into());
    until_labels(&nodes, &shared_name, &expected_shared).await;
    stop_shared.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), shared_running).await.unwrap().unwrap().unwrap();
    eprintln!("a time-sliced node is labelled so: {expected_shared:?}");

    // The shipped binary picks a node's sharing config by the node's label: a third node,
    // labelled two-way, is labelled time-sliced two ways by it.
    let picked = format!("{}-picked-0", member.name);
    let mut picked_node = fake_nodes::fake_node(&picked, &h100);
    let picked_labels = picked_node.metadata.labels.as_mut().unwrap();
    picked_labels.retain(|k, _| !k.starts_with(node_labels::PREFIX));
    picked_labels.insert(node_labels::SHARING_CONFIG.into(), "two-way".into());
    plane.add_nodes(member, vec![picked_node]).await.unwrap();
    let configs = plane.run_dir().join("gpu-sharing.yaml");
    let text = "defaultConfig: whole\nconfigs:\n  whole: {}\n  two-way:\n    timeSlicing: {replicas: 2}\n";
    std::fs::write(&configs, text).unwrap();
    let args = [
        format!("--node-name={picked}"),
        "--backend=fake".into(),
        "--fake-inventory=h100x8".into(),
        "--no-device-plugin".into(),
        "--label-interval=1".into(),
        "--metrics-addr=127.0.0.1:0".into(),
        format!("--sharing-config={}", configs.display()),
    ];
    let binary = workspace_binary("pictor-device-plugins", "pictor-device-plugins");
    let env = [("KUBECONFIG", member.kubeconfig.as_path())];
    let process =
        ManagedProcess::spawn_with_env("picked-labeller", &binary, &args, &env, plane.run_dir()).unwrap();
    let mut expected_picked = catalogue_labels(&h100);
    expected_picked.insert(node_labels::SHARING.into(), "time-slicing".into());
    expected_picked.insert(node_labels::REPLICAS.into(), "2".into());
    until_labels(&nodes, &picked, &expected_picked).await;
    drop(process);
    eprintln!("the binary chose the node's two-way config by its label");

    // The GPUs are gone: so are the labels.
    let mut empty = FakeBackend::preset("rtx4090", 1).unwrap();
    empty.gpus.clear();
    fake.set_inventory(empty);
    let bare = until_labels(&nodes, &name, &BTreeMap::new()).await;
    assert_eq!(bare.metadata.labels.as_ref().unwrap()["team"], "ml");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), running).await.unwrap().unwrap().unwrap();

    let pids = plane.pids();
    drop(plane);
    let alive: Vec<_> = pids.iter().filter(|pid| Path::new(&format!("/proc/{pid}")).exists()).collect();
    assert!(alive.is_empty(), "processes left behind: {alive:?}");
    eprintln!("e2e wall time {:?}", started.elapsed());
}
