//! What the people who run Pictor see, on a real local control plane: after a small render job
//! the hub operator's and the member agent's `/metrics` carry every family with values that
//! match what happened, `/healthz` and `/readyz` answer, and the job and the member have their
//! Events.

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use pictor_crds::v1alpha1::{RenderJob, RenderJobPhase};
use pictor_e2e::network::{self, eventually, http_get, sample};
use pictor_e2e::{ControlPlane, ControlPlaneOptions, fake_nodes};
use std::time::{Duration, Instant};

fn render_job(name: &str) -> RenderJob {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"scene": "s3://scenes/cube.blend", "frames": {"start": 1, "end": 20}, "chunkSize": 10,
                 "output": {"location": format!("s3://renders/{name}/")}, "verificationPercent": 0}
    }))
    .unwrap()
}

/// The `/metrics` text once `check` holds for it (gauges are refreshed every few seconds).
async fn scrape_until(addr: std::net::SocketAddr, what: &str, check: impl Fn(&str) -> bool) -> String {
    eventually(what, Duration::from_secs(30), || async {
        let (code, text) = http_get(addr, "/metrics").await.ok()?;
        (code == 200 && check(&text)).then_some(text)
    })
    .await
}

/// Stores a WorkUnit the operator's types cannot read, as one written under an older schema
/// would be: the CRD is loosened (no `gpuVendor` enum), the unit created with `gpuVendor: intel`,
/// and the CRD restored. The operator must start, become ready and count it, not fail its list.
async fn store_an_undecodable_unit(plane: &ControlPlane, hub: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(hub.clone());
    let mut crd = serde_json::to_value(crds.get("workunits.pictor.network").await.unwrap()).unwrap();
    let vendor = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["pods"]["items"]["properties"]["gpuVendor"];
    vendor.as_object_mut().unwrap().remove("enum");
    let loosened: CustomResourceDefinition = serde_json::from_value(crd).unwrap();
    crds.replace("workunits.pictor.network", &PostParams::default(), &loosened).await.unwrap();
    let old: pictor_crds::v1alpha1::WorkUnit = serde_json::from_value(serde_json::json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
        "metadata": {"name": "from-an-older-schema", "namespace": "default"},
        "spec": {"jobRef": {"kind": "RenderJob", "namespace": "default", "name": "gone", "uid": "0"},
                 "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": 1}],
                 "agreedPricePerGpuHour": 1}
    }))
    .unwrap();
    let mut body = serde_json::to_value(&old).unwrap();
    body["spec"]["pods"][0]["gpuVendor"] = "intel".into();
    let units: Api<kube::api::DynamicObject> = Api::namespaced_with(
        hub.clone(),
        "default",
        &kube::api::ApiResource::erase::<pictor_crds::v1alpha1::WorkUnit>(&()),
    );
    let object: kube::api::DynamicObject = serde_json::from_value(body).unwrap();
    eventually("the loosened schema takes the unit", Duration::from_secs(20), || async {
        units.create(&PostParams::default(), &object).await.ok()
    })
    .await;
    plane.install_crds().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_and_agent_export_their_metrics_after_a_job() {
    let started = Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 1, kube_scheduler: false }).await.unwrap();
    plane.install_crds().await.unwrap();
    let member = &plane.members[0];
    let rtx = fake_nodes::model("rtx4090").unwrap();
    plane.add_nodes(member, fake_nodes::fleet(&member.name, &[(rtx, 2)])).await.unwrap();
    let hub = plane.hub.client().await.unwrap();
    store_an_undecodable_unit(&plane, &hub).await;
    let operator = network::start_operator(&plane, 6, Some(2), &[]).unwrap();
    let _scheduler = network::start_scheduler(&plane, member).unwrap();
    let kubeconfig = network::agent_kubeconfig_path(&plane, member);
    network::member_add(
        &plane.hub,
        &member.name,
        "0xfeed",
        &["NVIDIA-GeForce-RTX-4090=40000000"],
        &kubeconfig,
    )
    .unwrap();
    let agent = network::start_agent(&plane, member, &kubeconfig, "pictor-scheduler").unwrap();
    network::wait_for_members(&plane, Duration::from_secs(90)).await.unwrap();
    let operator_addr = network::metrics_addr(&operator, Duration::from_secs(30)).await;
    let agent_addr = network::metrics_addr(&agent, Duration::from_secs(30)).await;
    eprintln!("network up in {:?}; operator at {operator_addr}, agent at {agent_addr}", started.elapsed());

    for addr in [operator_addr, agent_addr] {
        assert_eq!(http_get(addr, "/healthz").await.unwrap().0, 200);
        assert_eq!(http_get(addr, "/readyz").await.unwrap().0, 200);
    }

    let jobs: Api<RenderJob> = Api::namespaced(hub.clone(), "default");
    jobs.create(&PostParams::default(), &render_job("cube")).await.unwrap();
    eventually("cube Succeeded", Duration::from_secs(120), || async {
        (jobs.get("cube").await.ok()?.status?.phase == Some(RenderJobPhase::Succeeded)).then_some(())
    })
    .await;
    eprintln!("job done in {:?}", started.elapsed());

    // The hub: the gauges catch up within a refresh; the counters are there at once.
    let text = scrape_until(operator_addr, "the operator's gauges to show the finished job", |t| {
        sample(t, "pictor_jobs{kind=\"RenderJob\",phase=\"Succeeded\"}") == Some(1.0)
            && sample(t, "pictor_work_units{phase=\"Succeeded\"}") == Some(2.0)
    })
    .await;
    let value =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} missing from\n{text}"));
    assert!(value("pictor_operator_reconciles_total{controller=\"renderjob\",result=\"success\"}") >= 1.0);
    assert!(value("pictor_operator_reconciles_total{controller=\"gpucluster\",result=\"success\"}") >= 1.0);
    assert!(value("pictor_operator_reconcile_duration_seconds_count{controller=\"renderjob\"}") >= 1.0);
    assert_eq!(value("pictor_units_placed_total{kind=\"RenderJob\",attempt=\"first\"}"), 2.0);
    assert_eq!(value("pictor_placement_latency_seconds_count{kind=\"RenderJob\"}"), 2.0);
    let waited = value("pictor_placement_latency_seconds_sum{kind=\"RenderJob\"}");
    assert!((0.0..60.0).contains(&waited), "both chunks placed within a minute of the job: {waited}s");
    assert_eq!(value("pictor_members{state=\"Ready\"}"), 1.0);
    assert_eq!(value("pictor_members{state=\"NotReady\"}"), 0.0);
    assert_eq!(value("pictor_work_units{phase=\"Lost\"}"), 0.0);
    assert_eq!(value("pictor_member_gpus{member=\"member-a\",state=\"total\"}"), 2.0);
    assert_eq!(value("pictor_render_job_frames{namespace=\"default\",job=\"cube\",state=\"done\"}"), 20.0);
    assert_eq!(value("pictor_render_job_frames{namespace=\"default\",job=\"cube\",state=\"total\"}"), 20.0);
    assert!(
        !text.contains(
            "pictor_units_awaiting_placement{kind=\"RenderJob\",namespace=\"default\",job=\"cube\"}"
        ),
        "a finished job waits for nothing:\n{text}"
    );
    assert!(!text.contains("pictor_operator_reconcile_errors_total"), "no reconcile failed:\n{text}");
    // One watch per kind: the job controllers are woken by the hub index's WorkUnit watch
    // instead of each opening its own.
    for kind in ["WorkUnit", "GpuCluster", "Lease", "RenderJob", "TrainingJob"] {
        assert_eq!(value(&format!("pictor_operator_watches{{kind=\"{kind}\"}}")), 1.0, "watches of {kind}");
    }
    // The unit stored under an older schema was skipped and counted, and nothing else failed.
    assert!(value("pictor_operator_undecodable_objects_total{kind=\"WorkUnit\"}") >= 1.0);

    // The member: its units and pods, heartbeats without a failure, reports accepted.
    let text = scrape_until(agent_addr, "the agent to count the finished units", |t| {
        sample(t, "pictor_agent_work_units{phase=\"Succeeded\"}") == Some(2.0)
    })
    .await;
    let value =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} missing from\n{text}"));
    assert!(value("pictor_agent_heartbeats_total") >= 1.0);
    assert_eq!(value("pictor_agent_heartbeat_failures_total"), 0.0);
    assert!(value("pictor_agent_status_reports_total{result=\"ok\"}") >= 2.0);
    assert!(value("pictor_agent_inventory_reports_total{result=\"ok\"}") >= 1.0);
    let pods: f64 = ["Pending", "Running", "Succeeded", "Failed", "Unknown"]
        .iter()
        .map(|p| value(&format!("pictor_agent_pods{{phase=\"{p}\"}}")))
        .sum();
    assert_eq!(pods, 2.0, "one pod per chunk:\n{text}");

    // Events: the job was placed and succeeded; the member turned Ready.
    let events: Api<Event> = Api::all(hub);
    let reasons = |name: &'static str| {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            let reasons: Vec<String> = list
                .items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
                .filter_map(|e| e.reason)
                .collect();
            Some(reasons)
        }
    };
    let job_reasons = eventually("the job's Events", Duration::from_secs(10), || async {
        reasons("cube").await.filter(|r| r.iter().any(|x| x == "Succeeded"))
    })
    .await;
    assert!(job_reasons.iter().any(|r| r == "Placed"), "{job_reasons:?}");
    let member_reasons = reasons("member-a").await.unwrap();
    assert!(member_reasons.iter().any(|r| r == "MemberReady"), "{member_reasons:?}");
    eprintln!("metrics and events checked in {:?}", started.elapsed());
}
