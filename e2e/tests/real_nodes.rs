//! Real nodes: a kubelet, containerd and runc on this machine for each of two members, with
//! pictor's device plugin (fake backend, device files it made) and pictor-scheduler.
//!
//! One test, in phases, because the nodes share the machine's bridge, iptables and sysctls:
//! the nodes go Ready with the plugin's GPUs in capacity and the labeller's labels; a pod gets
//! the GPU that Allocate chose (its env and device file, seen from inside the container); a GPU
//! turned unhealthy leaves allocatable and comes back; the plugin registers again after a
//! kubelet restart; a gang of two binds whole on a real node; the GPUs time-sliced two ways
//! are four replicas, two half-GPU pods run on one GPU, a GPU's fault takes both its replicas
//! and the PictorGPUHealthy condition with it and healing brings them back; then a RenderJob renders real
//! frames with Blender on one member's node, verification re-renders on the other member's,
//! and a frame altered in storage after its render is caught. Last, nothing of the nodes is
//! left on the machine.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use pictor_crds::contract::verification::{Finding, Judgement};
use pictor_crds::contract::{annotations, labels, node_conditions, node_labels};
use pictor_crds::v1alpha1::{RenderJob, RenderJobPhase, WorkUnit, WorkUnitPhase};
use pictor_e2e::network::{self, eventually, start_scheduler};
use pictor_e2e::real_node::{HostSnapshot, NODE_ROOT, NVML, RENDER_WORKER_IMAGE, RealNodeSpec, RealNodes};
use pictor_e2e::s3::render_store;
use pictor_e2e::workspace_binary;
use pictor_e2e::{Cluster, ControlPlane, ControlPlaneOptions};
use serde_json::json;
use sha2::Digest;
use std::path::Path;
use std::time::{Duration, Instant};

const WORK: &str = "default";
const GPUS: usize = 2;

fn real_node_name(cluster: &Cluster) -> String {
    format!("{}-real", cluster.name)
}

fn gpu_count(node: &Node, field: &str) -> Option<String> {
    let status = node.status.as_ref()?;
    let map = if field == "capacity" { status.capacity.as_ref()? } else { status.allocatable.as_ref()? };
    map.get("nvidia.com/gpu").map(|q| q.0.clone())
}

/// A pod of the render-worker image on `node`'s cluster, through pictor-scheduler.
fn shell_pod(name: &str, script: &str, gpus: usize, extra_metadata: serde_json::Value) -> Pod {
    let mut metadata = json!({"name": name, "namespace": WORK});
    for (k, v) in extra_metadata.as_object().into_iter().flatten() {
        metadata[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
        "spec": {
            "schedulerName": "pictor-scheduler",
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "work", "image": RENDER_WORKER_IMAGE, "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", script],
                "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}},
            }],
        }
    }))
    .expect("a pod")
}

async fn pod_phase(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get_opt(name).await.ok().flatten().and_then(|p| p.status?.phase)
}

/// Waits for the pod to end Succeeded and returns its log, read through the API server (which
/// asks the real kubelet).
async fn succeeded_log(cluster: &Cluster, pods: &Api<Pod>, name: &str) -> String {
    eventually(&format!("pod {name} to end"), Duration::from_secs(120), || async {
        pod_phase(pods, name).await.filter(|p| p == "Succeeded" || p == "Failed")
    })
    .await;
    let log = pods.logs(name, &Default::default()).await.unwrap_or_else(|e| panic!("logs of {name}: {e}"));
    let phase = pod_phase(pods, name).await;
    assert_eq!(phase.as_deref(), Some("Succeeded"), "pod {name} on {}: {log}", cluster.name);
    log
}

/// The machine's bridge, iptables and sysctls are shared: one real-node test at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_nodes_run_pods_render_and_verify_and_leave_nothing_behind() {
    if !RealNodes::required("real_nodes") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let before = HostSnapshot::take(Path::new(NODE_ROOT));
    {
        let plane = ControlPlane::start(ControlPlaneOptions { members: 2, ..Default::default() })
            .await
            .expect("control plane");
        let specs: Vec<RealNodeSpec> = plane
            .members
            .iter()
            .map(|m| RealNodeSpec {
                cluster: m.clone(),
                name: real_node_name(m),
                gpu_model: "rtx4090".into(),
                gpus: GPUS,
            })
            .collect();
        let started = Instant::now();
        let mut nodes = RealNodes::start(&plane, specs).await.expect("real nodes start");
        println!("two real nodes Ready with their GPUs in {:.1} s", started.elapsed().as_secs_f64());
        let _schedulers: Vec<_> =
            plane.members.iter().map(|m| start_scheduler(&plane, m).expect("pictor-scheduler")).collect();

        device_plugin_phases(&plane.members[0], &mut nodes).await;
        render_phases(&plane, &nodes).await;

        let failures = nodes.stop();
        assert!(failures.is_empty(), "could not undo: {failures:?}");
    }
    let after = HostSnapshot::take(Path::new(NODE_ROOT));
    let left = before.differences(&after);
    assert!(left.is_empty(), "real nodes left things behind:\n{}", left.join("\n"));
}

/// Capacity and labels, Allocate seen from inside a container, health, kubelet restart, gang.
async fn device_plugin_phases(member: &Cluster, nodes: &mut RealNodes) {
    let client = member.client().await.unwrap();
    let node_api: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client, WORK);
    let name = real_node_name(member);
    let node = node_api.get(&name).await.unwrap();
    assert_eq!(gpu_count(&node, "capacity").as_deref(), Some("2"), "the device plugin's GPUs in capacity");
    let labels_of = |n: &Node| n.metadata.labels.clone().unwrap_or_default();
    eventually("the labeller to label the real node", Duration::from_secs(30), || async {
        let n = node_api.get(&name).await.ok()?;
        labels_of(&n).get(node_labels::PRODUCT).filter(|p| p.contains("4090")).cloned()
    })
    .await;

    // A pod asking for one GPU sees what Allocate returned: the id in NVIDIA_VISIBLE_DEVICES and
    // that GPU's device file, and no other.
    let inventory: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&nodes.node(&name).inventory_file).unwrap()).unwrap();
    let ids: Vec<String> =
        inventory["gpus"].as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap().to_string()).collect();
    let dev_dir = nodes.node(&name).dir.join("dev");
    let script = format!("echo visible=$NVIDIA_VISIBLE_DEVICES; ls {}", dev_dir.display());
    pods.create(&PostParams::default(), &shell_pod("one-gpu", &script, 1, json!({}))).await.unwrap();
    let log = succeeded_log(member, &pods, "one-gpu").await;
    let visible = log.lines().find_map(|l| l.strip_prefix("visible=")).unwrap_or_default().to_string();
    let index =
        ids.iter().position(|id| *id == visible).unwrap_or_else(|| panic!("{visible:?} in {ids:?}: {log}"));
    let files: Vec<&str> = log.lines().filter(|l| l.starts_with("gpu")).collect();
    assert_eq!(files, [format!("gpu{index}")], "only the allocated GPU's device file: {log}");

    // A GPU turned unhealthy leaves allocatable; healthy again, it comes back.
    let set_health = |index: usize, health: &str| {
        let mut inv = inventory.clone();
        inv["gpus"][index]["health"] = json!(health);
        std::fs::write(&nodes.node(&name).inventory_file, serde_json::to_vec(&inv).unwrap()).unwrap();
    };
    let turned = Instant::now();
    set_health(1, "Unhealthy");
    let allocatable = allocatable_of(&node_api, &name);
    allocatable("1").await;
    println!("unhealthy GPU left the node's allocatable in {:.2} s", turned.elapsed().as_secs_f64());
    let node = node_api.get(&name).await.unwrap();
    assert_eq!(gpu_count(&node, "capacity").as_deref(), Some("2"), "capacity keeps the unhealthy GPU");
    set_health(1, "Healthy");
    allocatable("2").await;

    // The kubelet restarts: the plugin sees its socket go, registers again, the GPUs return.
    let registrations = nodes.node(&name).device_plugin_registrations();
    assert!(registrations >= 1, "the plugin registered with the kubelet");
    nodes.node_mut(&name).stop_kubelet();
    nodes.node_mut(&name).start_kubelet().unwrap();
    let restarted = Instant::now();
    eventually("the plugin registered with the new kubelet", Duration::from_secs(60), || async {
        (nodes.node(&name).device_plugin_registrations() > registrations).then_some(())
    })
    .await;
    eventually("the kubelet back with the plugin's GPUs", Duration::from_secs(90), || async {
        let n = node_api.get(&name).await.ok()?;
        let ready =
            n.status.as_ref()?.conditions.as_ref()?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && gpu_count(&n, "allocatable").as_deref() == Some("2")).then_some(())
    })
    .await;
    println!(
        "after a kubelet restart the GPUs were allocatable again in {:.1} s",
        restarted.elapsed().as_secs_f64()
    );
    pods.create(
        &PostParams::default(),
        &shell_pod("after-restart", "echo $NVIDIA_VISIBLE_DEVICES", 1, json!({})),
    )
    .await
    .unwrap();
    succeeded_log(member, &pods, "after-restart").await;

    // A gang of two binds whole on the real node and both run.
    for i in 0..2 {
        let gang = json!({"labels": {labels::GANG: "pair"}, "annotations": {annotations::GANG_SIZE: "2"}});
        pods.create(
            &PostParams::default(),
            &shell_pod(&format!("pair-{i}"), "echo $NVIDIA_VISIBLE_DEVICES", 1, gang),
        )
        .await
        .unwrap();
    }
    let mut seen = vec![];
    for i in 0..2 {
        let pod_name = format!("pair-{i}");
        let log = succeeded_log(member, &pods, &pod_name).await;
        let pod = pods.get(&pod_name).await.unwrap();
        assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some(name.as_str()));
        seen.push(log.trim().to_string());
    }
    assert_ne!(seen[0], seen[1], "the gang's two pods got different GPUs: {seen:?}");
    for pod in ["one-gpu", "after-restart", "pair-0", "pair-1"] {
        let _ = pods.delete(pod, &DeleteParams::default()).await;
    }
    time_sliced_phase(member, nodes).await;
}

/// Waits until the node's allocatable `nvidia.com/gpu` is `want`.
fn allocatable_of(
    api: &Api<Node>,
    name: &str,
) -> impl Fn(&'static str) -> futures::future::BoxFuture<'static, ()> {
    let (api, name) = (api.clone(), name.to_string());
    move |want| {
        let (api, name) = (api.clone(), name.clone());
        Box::pin(async move {
            eventually(&format!("allocatable nvidia.com/gpu {want}"), Duration::from_secs(60), || async {
                let n = api.get(&name).await.ok()?;
                (gpu_count(&n, "allocatable").as_deref() == Some(want)).then_some(())
            })
            .await
        })
    }
}

/// The node's GPUs time-sliced two ways through the real kubelet: the plugin restarted with a
/// sharing config its Node's label picks advertises four replicas of the two GPUs, the labeller
/// says so, two pods asking half a GPU's memory each run on one GPU, a GPU turning unhealthy
/// takes both its replicas out and the PictorGPUHealthy condition with it, and healing brings
/// them back. Then the plugin serves whole GPUs again for the phases after this one.
async fn time_sliced_phase(member: &Cluster, nodes: &mut RealNodes) {
    let client = member.client().await.unwrap();
    let node_api: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client, WORK);
    let name = real_node_name(member);
    let allocatable = allocatable_of(&node_api, &name);
    let sharing = nodes.node(&name).dir.join("gpu-sharing.yaml");
    std::fs::write(&sharing, "configs:\n  whole: {}\n  two-way:\n    timeSlicing: {replicas: 2}\n").unwrap();
    let label = |value: Option<&str>| json!({"metadata": {"labels": {node_labels::SHARING_CONFIG: value}}});
    node_api.patch(&name, &PatchParams::default(), &Patch::Merge(label(Some("two-way")))).await.unwrap();
    nodes.node_mut(&name).restart_device_plugin(Some(&sharing)).unwrap();
    allocatable("4").await;
    let labels = eventually("the time-slicing labels", Duration::from_secs(30), || async {
        let labels = node_api.get(&name).await.ok()?.metadata.labels?;
        (labels.get(node_labels::REPLICAS).map(String::as_str) == Some("2")).then_some(labels)
    })
    .await;
    assert_eq!(labels[node_labels::SHARING], "time-slicing");
    assert_eq!(labels[node_labels::COUNT], GPUS.to_string(), "the count stays the GPUs");
    println!("time-sliced two ways: {} GPUs allocatable as 4 replicas", GPUS);

    // Two pods asking half a GPU's memory each: both bound and run, on the same GPU.
    let half = (labels[node_labels::MEMORY_MIB].parse::<i64>().unwrap() / 2).to_string();
    let mut seen = vec![];
    for i in 0..2 {
        let pod_name = format!("half-{i}");
        let fractional = json!({"annotations": {annotations::GPU_MEMORY_MIB: half}});
        let pod = shell_pod(&pod_name, "echo $NVIDIA_VISIBLE_DEVICES", 1, fractional);
        pods.create(&PostParams::default(), &pod).await.unwrap();
        seen.push(succeeded_log(member, &pods, &pod_name).await.trim().to_string());
    }
    assert_eq!(seen[0], seen[1], "both halves ran on one GPU: {seen:?}");
    println!("two half-GPU pods ran on {}", seen[0]);

    // A shared GPU faults: both its replicas leave allocatable, the condition turns False.
    let inventory: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&nodes.node(&name).inventory_file).unwrap()).unwrap();
    let set_health = |health: &str| {
        let mut inv = inventory.clone();
        inv["gpus"][1]["health"] = json!(health);
        std::fs::write(&nodes.node(&name).inventory_file, serde_json::to_vec(&inv).unwrap()).unwrap();
    };
    let condition = |status: &'static str| {
        let (api, name) = (node_api.clone(), name.clone());
        async move {
            eventually(&format!("PictorGPUHealthy {status}"), Duration::from_secs(60), || async {
                let n = api.get_status(&name).await.ok()?;
                let conditions = n.status?.conditions?;
                conditions.into_iter().find(|c| c.type_ == node_conditions::GPU_HEALTHY && c.status == status)
            })
            .await
        }
    };
    condition("True").await;
    set_health("Unhealthy");
    allocatable("2").await;
    let sick = condition("False").await;
    assert!(
        sick.message.as_deref().unwrap_or_default().contains(inventory["gpus"][1]["id"].as_str().unwrap())
    );
    set_health("Healthy");
    allocatable("4").await;
    condition("True").await;
    println!("an unhealthy shared GPU took both its replicas out; healed, they came back");

    // Whole GPUs again for what follows.
    for pod in ["half-0", "half-1"] {
        let _ = pods.delete(pod, &DeleteParams::default()).await;
    }
    node_api.patch(&name, &PatchParams::default(), &Patch::Merge(label(Some("whole")))).await.unwrap();
    nodes.node_mut(&name).restart_device_plugin(Some(&sharing)).unwrap();
    allocatable("2").await;
    eventually("the time-slicing labels gone", Duration::from_secs(30), || async {
        let labels = node_api.get(&name).await.ok()?.metadata.labels?;
        (!labels.contains_key(node_labels::SHARING)).then_some(())
    })
    .await;
}

const SCENE: &str = "s3://renders/scenes/anim.blend";
const WIDTH: u32 = 160;
const HEIGHT: u32 = 90;

fn render_job(name: &str, last_frame: i64) -> RenderJob {
    serde_json::from_value(json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"scene": SCENE, "frames": {"start": 1, "end": last_frame}, "chunkSize": 2,
                 "output": {"location": format!("s3://renders/{name}/")}, "gpu": {"vendor": "nvidia", "count": 1},
                 "credentialsSecret": "render-store", "verificationPercent": 100, "retriesPerChunk": 2,
                 "unitTimeoutSeconds": 600}
    }))
    .expect("a RenderJob")
}

fn judgement(unit: &WorkUnit) -> Option<Judgement> {
    let text = unit.metadata.annotations.as_ref()?.get(annotations::JUDGEMENT)?;
    serde_json::from_str(text).ok()
}

fn is_check(unit: &WorkUnit) -> bool {
    unit.metadata.labels.as_ref().is_some_and(|l| l.contains_key(labels::VERIFIES))
}

fn member_of(unit: &WorkUnit) -> String {
    unit.metadata.namespace.clone().unwrap_or_default()
}

/// The hub, both members' agents and the S3 test server on the node bridge; a RenderJob renders
/// with Blender on the real nodes, every chunk is re-rendered on the other member and judged;
/// a frame altered in storage after its render is caught.
async fn render_phases(plane: &ControlPlane, nodes: &RealNodes) {
    plane.install_crds().await.unwrap();
    let s3 = render_store(plane, nodes.nodes()[0].ip.into(), SCENE, (WIDTH, HEIGHT, 4), "render-store")
        .await
        .expect("the S3 test server with the scene");
    let hub = plane.hub.client().await.unwrap();
    let _operator =
        network::start_operator(plane, 6, None, &[&format!("--render-image={RENDER_WORKER_IMAGE}")]).unwrap();
    let work_env = s3.work_env_flags();
    let mut agents = vec![];
    for member in &plane.members {
        let kubeconfig = network::agent_kubeconfig_path(plane, member);
        network::member_add(
            &plane.hub,
            &member.name,
            "0xfeed",
            &["NVIDIA-GeForce-RTX-4090=40000000"],
            &kubeconfig,
        )
        .unwrap();
        agents.push(
            network::start_agent_with(plane, member, &kubeconfig, "pictor-scheduler", &work_env).unwrap(),
        );
    }
    network::wait_for_members(plane, Duration::from_secs(90)).await.unwrap();

    let jobs: Api<RenderJob> = Api::namespaced(hub.clone(), "default");
    let units: Api<WorkUnit> = Api::all(hub.clone());
    let started = Instant::now();
    let job = jobs.create(&PostParams::default(), &render_job("anim", 4)).await.unwrap();
    let uid = job.metadata.uid.unwrap();
    eventually("RenderJob anim Succeeded", Duration::from_secs(420), || async {
        let j = jobs.get("anim").await.ok()?;
        let phase = j.status.as_ref()?.phase;
        assert_ne!(phase, Some(RenderJobPhase::Failed), "anim failed: {:?}", j.status);
        (phase == Some(RenderJobPhase::Succeeded)).then_some(())
    })
    .await;
    println!("4 frames rendered and verified on real nodes in {:.0} s", started.elapsed().as_secs_f64());

    let of_job = network::units_of_job(&units, &uid).await;
    let renders: Vec<&WorkUnit> = of_job
        .iter()
        .filter(|u| !is_check(u) && u.status.as_ref().and_then(|s| s.phase) == Some(WorkUnitPhase::Succeeded))
        .collect();
    let checks: Vec<&WorkUnit> = of_job.iter().filter(|u| is_check(u)).collect();
    assert_eq!(renders.len(), 2, "two chunks of two frames");
    for render in &renders {
        let name = render.metadata.name.clone().unwrap();
        let check = checks
            .iter()
            .find(|c| c.metadata.labels.as_ref().unwrap()[labels::VERIFIES] == name)
            .unwrap_or_else(|| panic!("a verification of {name}"));
        assert_ne!(member_of(check), member_of(render), "{name} was verified on another member");
        let judged = judgement(check).unwrap_or_else(|| panic!("the hub judged {:?}", check.metadata.name));
        assert_eq!(judged.finding, Finding::Reproduced, "{judged:?}");
        // Every frame exists where the member reported it, is a PNG of the requested size, and
        // its bytes are what the member reported.
        for output in &render.status.as_ref().unwrap().outputs {
            let bytes = s3.get(&output.url).await.unwrap();
            assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), output.sha256, "{}", output.url);
            let image =
                image::load_from_memory(&bytes).unwrap_or_else(|e| panic!("{} decodes: {e}", output.url));
            assert_eq!((image.width(), image.height()), (WIDTH, HEIGHT), "{}", output.url);
        }
    }

    // The units' logs, as `pictor logs` prints them from what the agents copied: Blender's own.
    let logs = std::process::Command::new(workspace_binary("pictor-cli", "pictor"))
        .args(["logs", "anim", "-n", "default", "--kubeconfig"])
        .arg(&plane.hub.kubeconfig)
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.contains("Blender") && logs.contains("Fra:"), "Blender's output in pictor logs:\n{logs}");

    // A frame changed in storage after its render (as a member overwriting what it delivered
    // would) is caught when the hub judges the verification.
    let job = jobs.create(&PostParams::default(), &render_job("tampered", 2)).await.unwrap();
    let uid = job.metadata.uid.unwrap();
    let check = eventually("a verification unit of tampered", Duration::from_secs(300), || async {
        let list = units.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|u| u.spec.job_ref.uid == uid && is_check(u))
    })
    .await;
    let frame: i64 = check.spec.frames.parse().unwrap();
    let rendered = units.list(&ListParams::default()).await.unwrap().items.into_iter().find(|u| {
        u.spec.job_ref.uid == uid
            && !is_check(u)
            && u.status.as_ref().and_then(|s| s.phase) == Some(WorkUnitPhase::Succeeded)
    });
    let rendered = rendered.expect("the rendered chunk");
    let frame_url = rendered
        .status
        .unwrap()
        .outputs
        .iter()
        .map(|o| o.url.clone())
        .find(|u| u.contains(&format!("{frame:04}")));
    let frame_url = frame_url.unwrap_or_else(|| panic!("frame {frame} among the outputs"));
    let mut image = image::load_from_memory(&s3.get(&frame_url).await.unwrap()).unwrap().to_rgb8();
    for pixel in image.pixels_mut().take((WIDTH * HEIGHT / 3) as usize) {
        pixel.0 = [255 - pixel.0[0], 255 - pixel.0[1], 255 - pixel.0[2]];
    }
    let mut altered = std::io::Cursor::new(vec![]);
    image.write_to(&mut altered, image::ImageFormat::Png).unwrap();
    s3.put(&frame_url, altered.into_inner()).await.unwrap();
    let check_name = check.metadata.name.clone().unwrap();
    let check_namespace = member_of(&check);
    let judged =
        eventually("the hub's judgement of the tampered frame", Duration::from_secs(300), || async {
            let unit =
                Api::<WorkUnit>::namespaced(hub.clone(), &check_namespace).get(&check_name).await.ok()?;
            judgement(&unit)
        })
        .await;
    assert_eq!(judged.finding, Finding::Differs, "the altered frame {frame} is caught: {judged:?}");
    println!("a frame altered after its render was caught: {}", judged.detail);
    drop(agents);
}

/// The NVIDIA GPUs of this machine, by NVML's device files; `None` (with the reason) without.
fn nvidia_gpus() -> Result<usize, String> {
    if !Path::new("/dev/nvidiactl").exists() {
        return Err("no NVIDIA GPU on this machine (/dev/nvidiactl is missing)".into());
    }
    let gpus = std::fs::read_dir("/dev")
        .map_err(|e| e.to_string())?
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_prefix("nvidia")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    if gpus == 0 { Err("/dev/nvidiactl but no /dev/nvidiaN".into()) } else { Ok(gpus) }
}

/// On a machine with NVIDIA GPUs: a real node whose device plugin reads them through NVML has
/// them in its capacity, and a pod given one sees its device file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_node_with_nvml_serves_the_machines_gpus() {
    let gpus = match nvidia_gpus() {
        Ok(gpus) => gpus,
        Err(reason) => {
            eprintln!("a_real_node_with_nvml_serves_the_machines_gpus: skipped: {reason}");
            return;
        }
    };
    if !RealNodes::required("real_nodes (nvml)") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let plane = ControlPlane::start(ControlPlaneOptions { members: 1, ..Default::default() }).await.unwrap();
    let member = plane.members[0].clone();
    let name = real_node_name(&member);
    let spec = RealNodeSpec { cluster: member.clone(), name: name.clone(), gpu_model: NVML.into(), gpus };
    let nodes = RealNodes::start(&plane, vec![spec]).await.expect("a real node with NVML's GPUs in capacity");
    let _scheduler = start_scheduler(&plane, &member).unwrap();
    let pods: Api<Pod> = Api::namespaced(member.client().await.unwrap(), WORK);
    let script = "echo visible=$NVIDIA_VISIBLE_DEVICES; ls /dev | grep '^nvidia[0-9]'";
    pods.create(&PostParams::default(), &shell_pod("nvml-gpu", script, 1, json!({}))).await.unwrap();
    let log = succeeded_log(&member, &pods, "nvml-gpu").await;
    println!("a pod on the NVML node:\n{log}");
    assert!(log.lines().any(|l| l.starts_with("visible=GPU-")), "a GPU UUID from NVML: {log}");
    assert_eq!(log.lines().filter(|l| l.starts_with("nvidia")).count(), 1, "one GPU's device file: {log}");
    assert!(nodes.stop().is_empty());
}
