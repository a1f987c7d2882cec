//! Federation on a real local control plane: members join with `pictor member add`, their agents
//! (processes holding only the printed kubeconfig) report heartbeat and inventory, run WorkUnits
//! as pods, are held to their RBAC by the real authorizer, survive their own restart, are
//! declared Lost when silent, and `pictor member remove` leaves nothing behind.

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use pictor_crds::v1alpha1::{GpuCluster, WorkUnit, WorkUnitPhase};
use pictor_e2e::network::{self, eventually};
use pictor_e2e::{Cluster, ControlPlane, ControlPlaneOptions, ManagedProcess, fake_nodes, workspace_binary};
use std::path::Path;
use std::time::{Duration, Instant};

const GRACE_SECONDS: u64 = 6;
/// How often the agents renew their Lease (`--heartbeat-seconds` in `network::start_agent`).
const HEARTBEAT_SECONDS: u64 = 1;

fn member_add(hub: &Cluster, name: &str, payout: &str, out: &Path) {
    network::member_add(hub, name, payout, &["NVIDIA-H100-80GB-HBM3=90000000"], out).unwrap();
}

fn start_agent(plane: &ControlPlane, member: &Cluster, hub_kubeconfig: &Path) -> ManagedProcess {
    network::start_agent(plane, member, hub_kubeconfig, "pictor-scheduler").unwrap()
}

fn unit(name: &str, run_seconds: Option<u32>, gpus: i64) -> WorkUnit {
    let mut annotations = serde_json::Map::new();
    if let Some(s) = run_seconds {
        annotations.insert("pictor.network/fake-run-seconds".into(), s.to_string().into());
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
        "metadata": {"name": name},
        "spec": {"jobRef": {"kind": "RenderJob", "namespace": "default", "name": "shot", "uid": "00000000-0000-4000-8000-000000000001"},
                 "pods": [{"name": "render", "image": "pictor/render-worker:dev", "gpuVendor": "nvidia", "gpus": gpus,
                           "annotations": annotations}],
                 "frames": "1-10", "agreedPricePerGpuHour": 90000000}
    }))
    .unwrap()
}

fn ready(cluster: &GpuCluster) -> Option<bool> {
    let c = cluster.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some(c.status == "True")
}

fn status_code<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected the API server to refuse, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_run_units_and_leave() {
    let started = Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 2, kube_scheduler: false }).await.unwrap();
    plane.install_crds().await.unwrap();
    let (a, b) = (&plane.members[0], &plane.members[1]);
    let model = |s| fake_nodes::model(s).unwrap();
    plane
        .add_nodes(a, fake_nodes::fleet(&a.name, &[(model("h100"), 2), (model("rtx4090"), 1)]))
        .await
        .unwrap();
    plane
        .add_nodes(b, fake_nodes::fleet(&b.name, &[(model("mi300x"), 1), (model("rx7900xtx"), 2)]))
        .await
        .unwrap();

    let _operator = network::start_operator(&plane, GRACE_SECONDS, None, &[]).unwrap();
    let _schedulers: Vec<_> =
        plane.members.iter().map(|m| network::start_scheduler(&plane, m).unwrap()).collect();

    let kubeconfig_of = |m: &Cluster| network::agent_kubeconfig_path(&plane, m);
    member_add(&plane.hub, &a.name, "0xa11ce", &kubeconfig_of(a));
    member_add(&plane.hub, &b.name, "0xb0b", &kubeconfig_of(b));
    // Admitting again is harmless: same objects, a fresh token, the first one still valid.
    member_add(&plane.hub, &a.name, "0xa11ce", &plane.run_dir().join("again.kubeconfig"));

    let mut agent_a = start_agent(&plane, a, &kubeconfig_of(a));
    let _agent_b = start_agent(&plane, b, &kubeconfig_of(b));

    let hub = plane.hub.client().await.unwrap();
    let clusters: Api<GpuCluster> = Api::all(hub.clone());
    // Both members Ready with inventories that match their fake nodes.
    for (member, total, pools) in [(a, 17, 2), (b, 10, 2)] {
        let cluster = eventually(
            &format!("{} Ready with its inventory", member.name),
            Duration::from_secs(60),
            || async {
                let c = clusters.get(&member.name).await.ok()?;
                let inv = c.status.as_ref()?.inventory.as_ref()?;
                (ready(&c)? && inv.total_gpus == total).then_some(c)
            },
        )
        .await;
        let inventory = cluster.status.unwrap().inventory.unwrap();
        assert_eq!((inventory.free_gpus, inventory.pools.len()), (total, pools), "{}", member.name);
    }
    eprintln!("members Ready with inventories after {:?}", started.elapsed());

    // A unit for member A runs as a pod on A and reports Succeeded with times and GPU-seconds.
    let units_a: Api<WorkUnit> = Api::namespaced(hub.clone(), "pictor-member-member-a");
    units_a.create(&PostParams::default(), &unit("shot-0001", Some(2), 2)).await.unwrap();
    let done = eventually("shot-0001 Succeeded", Duration::from_secs(60), || async {
        let u = units_a.get("shot-0001").await.ok()?;
        (u.status.as_ref()?.phase == Some(WorkUnitPhase::Succeeded)).then_some(u)
    })
    .await;
    let status = done.status.unwrap();
    assert!(status.start_time.is_some() && status.completion_time.is_some(), "{status:?}");
    assert!(status.gpu_seconds >= 2, "2 GPUs for about 2 s: {}", status.gpu_seconds);
    assert_eq!(status.exit_codes, [0]);
    let member_pods: Api<Pod> = Api::namespaced(a.client().await.unwrap(), "pictor-work");
    let pod = member_pods.get("shot-0001-render").await.unwrap();
    assert!(pod.spec.unwrap().node_name.unwrap().starts_with("member-a-"), "the pod ran on member A");

    // A's identity is held to its own namespace, GpuCluster and Lease by the real authorizer.
    let agent_client = pictor_operator_client(&kubeconfig_of(a)).await;
    let refused = [
        ("list WorkUnits of member B", status_code(Api::<WorkUnit>::namespaced(agent_client.clone(), "pictor-member-member-b").list(&ListParams::default()).await)),
        ("read Secrets in its own namespace", status_code(Api::<Secret>::namespaced(agent_client.clone(), "pictor-member-member-a").list(&ListParams::default()).await)),
        ("write B's GpuCluster status", status_code(
            Api::<GpuCluster>::all(agent_client.clone())
                .patch_status("member-b", &PatchParams::apply("intruder").force(), &Patch::Apply(serde_json::json!({
                    "apiVersion": "pictor.network/v1alpha1", "kind": "GpuCluster", "status": {"inventory": {"nodes": 99, "totalGpus": 99, "freeGpus": 99}}})))
                .await)),
        ("create WorkUnits", status_code(Api::<WorkUnit>::namespaced(agent_client.clone(), "pictor-member-member-a").create(&PostParams::default(), &unit("forged", None, 1)).await)),
    ];
    for (what, code) in refused {
        assert_eq!(code, 403, "{what} must be forbidden");
    }

    // A hub outage longer than the grace period: the unit finishes meanwhile, its pod keeps
    // running, and the agent reports once the hub answers again; nobody is declared Lost.
    units_a.create(&PostParams::default(), &unit("outage-0001", Some(4), 1)).await.unwrap();
    eventually("outage-0001 Running", Duration::from_secs(60), || async {
        (units_a.get("outage-0001").await.ok()?.status?.phase == Some(WorkUnitPhase::Running)).then_some(())
    })
    .await;
    plane.suspend("hub-kube-apiserver").unwrap();
    tokio::time::sleep(Duration::from_secs(GRACE_SECONDS + 4)).await;
    let pod = member_pods.get("outage-0001-render").await.unwrap();
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Succeeded"), "the pod ran through the outage");
    plane.resume("hub-kube-apiserver").unwrap();
    eventually("outage-0001 reported Succeeded after the outage", Duration::from_secs(60), || async {
        (units_a.get("outage-0001").await.ok()?.status?.phase == Some(WorkUnitPhase::Succeeded)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(GRACE_SECONDS)).await;
    assert_eq!(
        ready(&clusters.get("member-a").await.unwrap()),
        Some(true),
        "a hub outage is not the member's fault"
    );

    // The agent restarted mid-unit neither loses the pod nor creates a second one.
    units_a.create(&PostParams::default(), &unit("long-0001", None, 1)).await.unwrap();
    let running_uid = eventually("long-0001 Running", Duration::from_secs(60), || async {
        let u = units_a.get("long-0001").await.ok()?;
        (u.status.as_ref()?.phase == Some(WorkUnitPhase::Running)).then_some(())?;
        member_pods.get("long-0001-render").await.ok()?.metadata.uid
    })
    .await;
    drop(agent_a);
    agent_a = start_agent(&plane, a, &kubeconfig_of(a));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pods =
        member_pods.list(&ListParams::default().labels("pictor.network/work-unit=long-0001")).await.unwrap();
    assert_eq!(pods.items.len(), 1, "one pod for the unit after the restart");
    assert_eq!(pods.items[0].metadata.uid, Some(running_uid), "the same pod, not a new one");
    assert_eq!(units_a.get("long-0001").await.unwrap().status.unwrap().phase, Some(WorkUnitPhase::Running));

    // Stopping A's agent turns A NotReady and its running unit Lost within the grace period plus
    // one heartbeat (the hub judges by when it last saw a renewal, on its own clock).
    drop(agent_a);
    let stopped = Instant::now();
    eventually("member A NotReady and long-0001 Lost", Duration::from_secs(GRACE_SECONDS * 3), || async {
        let not_ready = ready(&clusters.get("member-a").await.ok()?) == Some(false);
        let lost = units_a.get("long-0001").await.ok()?.status?.phase == Some(WorkUnitPhase::Lost);
        (not_ready && lost).then_some(())
    })
    .await;
    let took = stopped.elapsed();
    eprintln!("member A NotReady, unit Lost {took:?} after its agent stopped (grace {GRACE_SECONDS}s)");
    // The bound, plus one poll of this test (250 ms and two reads) to see it.
    let bound = Duration::from_secs(GRACE_SECONDS + HEARTBEAT_SECONDS) + Duration::from_millis(500);
    assert!(
        took <= bound,
        "NotReady and Lost took {took:?}; the grace period plus one heartbeat is {bound:?}"
    );
    let finished = units_a.get("shot-0001").await.unwrap().status.unwrap().phase;
    assert_eq!(finished, Some(WorkUnitPhase::Succeeded), "a finished unit is never Lost");
    assert_eq!(ready(&clusters.get("member-b").await.unwrap()), Some(true), "B is unaffected");

    // `member remove` leaves nothing behind.
    let pictor = workspace_binary("pictor-cli", "pictor");
    let out = std::process::Command::new(pictor)
        .args(["member", "remove", "member-a", "--kubeconfig"])
        .arg(&plane.hub.kubeconfig)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let namespaces: Api<Namespace> = Api::all(hub.clone());
    eventually("member A's hub objects gone", Duration::from_secs(60), || async {
        let gone = clusters.get_opt("member-a").await.ok()?.is_none()
            && namespaces.get_opt("pictor-member-member-a").await.ok()?.is_none()
            && Api::<ClusterRole>::all(hub.clone()).get_opt("pictor-member-member-a").await.ok()?.is_none()
            && Api::<ClusterRoleBinding>::all(hub.clone())
                .get_opt("pictor-member-member-a")
                .await
                .ok()?
                .is_none();
        gone.then_some(())
    })
    .await;
    let code = status_code(
        Api::<WorkUnit>::namespaced(agent_client, "pictor-member-member-a")
            .list(&ListParams::default())
            .await,
    );
    assert_eq!(code, 401, "the removed member's token no longer authenticates");
    eprintln!("federation e2e wall time {:?}", started.elapsed());
}

async fn pictor_operator_client(kubeconfig: &Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}
