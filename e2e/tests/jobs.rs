//! Jobs end to end on a real local control plane: the hub operator splits RenderJobs into chunk
//! WorkUnits and TrainingJobs into gangs, places them on two members whose agents run them as
//! pods (kwok plays the GPUs), re-places the chunks of a member that goes silent, keeps jobs
//! inside their budget and cleans up what a deleted job left.

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use pictor_crds::v1alpha1::{
    RenderJob, RenderJobPhase, TrainingJob, TrainingJobPhase, WorkUnit, WorkUnitPhase,
};
use pictor_e2e::network::{self, eventually};
use pictor_e2e::{ControlPlane, ControlPlaneOptions, fake_nodes};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const GRACE_SECONDS: u64 = 6;
const RUN_SECONDS: u32 = 5;

fn render_job(name: &str, end: i64, gpu: serde_json::Value, budget: serde_json::Value) -> RenderJob {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"scene": "s3://scenes/classroom.blend", "frames": {"start": 1, "end": end}, "chunkSize": 10,
                 "output": {"location": format!("s3://renders/{name}/")}, "gpu": gpu, "budget": budget,
                 "verificationPercent": 0, "retriesPerChunk": 3}
    }))
    .unwrap()
}

fn units_by_chunk(units: &[WorkUnit], job_uid: &str) -> BTreeMap<String, Vec<WorkUnit>> {
    let mut chunks: BTreeMap<String, Vec<WorkUnit>> = BTreeMap::new();
    for u in units.iter().filter(|u| u.spec.job_ref.uid == job_uid) {
        let chunk = u
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("pictor.network/chunk"))
            .cloned()
            .unwrap_or_default();
        chunks.entry(chunk).or_default().push(u.clone());
    }
    chunks
}

fn phase_of(u: &WorkUnit) -> Option<WorkUnitPhase> {
    u.status.as_ref().and_then(|s| s.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_and_training_jobs_run_across_members() {
    let started = Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 2, kube_scheduler: false }).await.unwrap();
    plane.install_crds().await.unwrap();
    let (a, b) = (&plane.members[0], &plane.members[1]);
    let model = |s| fake_nodes::model(s).unwrap();
    plane
        .add_nodes(a, fake_nodes::fleet(&a.name, &[(model("h100"), 4), (model("rtx4090"), 2)]))
        .await
        .unwrap();
    plane
        .add_nodes(b, fake_nodes::fleet(&b.name, &[(model("mi300x"), 1), (model("rx7900xtx"), 2)]))
        .await
        .unwrap();
    let _operator = network::start_operator(
        &plane,
        GRACE_SECONDS,
        Some(RUN_SECONDS),
        &["--fake-mismatch-member=member-a"],
    )
    .unwrap();
    let prices = [
        "NVIDIA-H100-80GB-HBM3=90000000",
        "NVIDIA-GeForce-RTX-4090=40000000",
        "AMD-Instinct-MI300X=50000000",
        "AMD-Radeon-RX-7900-XTX=50000000",
    ];
    let _schedulers: Vec<_> =
        plane.members.iter().map(|m| network::start_scheduler(&plane, m).unwrap()).collect();
    let mut agents = Vec::new();
    for member in &plane.members {
        let kubeconfig = network::agent_kubeconfig_path(&plane, member);
        network::member_add(&plane.hub, &member.name, "0xfeed", &prices, &kubeconfig).unwrap();
        agents.push(Some(network::start_agent(&plane, member, &kubeconfig, "pictor-scheduler").unwrap()));
    }
    network::wait_for_members(&plane, Duration::from_secs(90)).await.unwrap();
    eprintln!("network up in {:?}", started.elapsed());

    let hub = plane.hub.client().await.unwrap();
    let render_jobs: Api<RenderJob> = Api::namespaced(hub.clone(), "default");
    let all_units: Api<WorkUnit> = Api::all(hub.clone());

    // 240 frames in chunks of 10; member A's agent dies midway and its chunks move to B.
    let job = render_jobs
        .create(
            &PostParams::default(),
            &render_job("classroom", 240, serde_json::json!({}), serde_json::json!({})),
        )
        .await
        .unwrap();
    let uid = job.metadata.uid.clone().unwrap();
    eventually("a chunk running on member A", Duration::from_secs(60), || async {
        let units = all_units.list(&ListParams::default()).await.ok()?;
        units
            .items
            .iter()
            .any(|u| {
                u.metadata.namespace.as_deref() == Some("pictor-member-member-a")
                    && phase_of(u) == Some(WorkUnitPhase::Running)
            })
            .then_some(())
    })
    .await;
    agents[0] = None; // stop A's agent
    let done = eventually("classroom Succeeded", Duration::from_secs(180), || async {
        let j = render_jobs.get("classroom").await.ok()?;
        (j.status.as_ref()?.phase == Some(RenderJobPhase::Succeeded)).then_some(j)
    })
    .await;
    let status = done.status.unwrap();
    let frames = status.frames.unwrap();
    assert_eq!((frames.done, frames.total, frames.done_of_total.as_str()), (240, 240, "240/240"));
    let units = all_units.list(&ListParams::default()).await.unwrap().items;
    let chunks = units_by_chunk(&units, &uid);
    assert_eq!(chunks.len(), 24);
    let mut accounted = 0;
    for (chunk, attempts) in &chunks {
        let succeeded: Vec<_> =
            attempts.iter().filter(|u| phase_of(u) == Some(WorkUnitPhase::Succeeded)).collect();
        assert_eq!(
            succeeded.len(),
            1,
            "chunk {chunk} accounted once: {:?}",
            attempts.iter().map(phase_of).collect::<Vec<_>>()
        );
        accounted += 10;
    }
    assert_eq!(accounted, 240);
    let lost = units
        .iter()
        .filter(|u| u.spec.job_ref.uid == uid && phase_of(u) == Some(WorkUnitPhase::Lost))
        .count();
    assert!(lost > 0, "A's running chunks were Lost");
    assert!(status.providers.contains(&"member-b".to_string()), "{:?}", status.providers);
    assert!(status.cost_octas > 0 && status.cost.is_some());
    eprintln!("240 frames done in {:?} with {lost} chunks moved off the silent member", started.elapsed());

    // A comes back; a job for AMD GPUs lands only on AMD nodes.
    agents[0] = Some(
        network::start_agent(&plane, a, &network::agent_kubeconfig_path(&plane, a), "pictor-scheduler")
            .unwrap(),
    );
    network::wait_for_members(&plane, Duration::from_secs(60)).await.unwrap();
    let amd = render_jobs
        .create(
            &PostParams::default(),
            &render_job("amd-only", 30, serde_json::json!({"vendor": "amd"}), serde_json::json!({})),
        )
        .await
        .unwrap();
    eventually("amd-only Succeeded", Duration::from_secs(90), || async {
        (render_jobs.get("amd-only").await.ok()?.status?.phase == Some(RenderJobPhase::Succeeded))
            .then_some(())
    })
    .await;
    let amd_units: Vec<_> = all_units
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|u| u.spec.job_ref.uid == amd.metadata.uid.clone().unwrap())
        .collect();
    assert!(
        amd_units.iter().all(|u| u.metadata.namespace.as_deref() == Some("pictor-member-member-b")),
        "AMD work only on the AMD member"
    );
    let b_pods: Api<Pod> = Api::namespaced(b.client().await.unwrap(), "pictor-work");
    let amd_uid = amd.metadata.uid.unwrap();
    let pods = b_pods
        .list(&ListParams::default().labels(&format!("pictor.network/job-uid={amd_uid}")))
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 3);
    for pod in &pods.items {
        let node = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
        assert!(node.contains("mi300x") || node.contains("rx7900xtx"), "pod on {node}");
    }

    // A budget no member meets keeps the job Pending with the reason.
    render_jobs
        .create(
            &PostParams::default(),
            &render_job(
                "cheapskate",
                10,
                serde_json::json!({}),
                serde_json::json!({"maxPricePerGpuHour": 1000}),
            ),
        )
        .await
        .unwrap();
    let reason = eventually("cheapskate's NoMemberFits condition", Duration::from_secs(30), || async {
        let s = render_jobs.get("cheapskate").await.ok()?.status?;
        let c = s.conditions.iter().find(|c| c.type_ == "Ready" && c.reason == "NoMemberFits")?;
        (s.phase == Some(RenderJobPhase::Pending)).then(|| c.message.clone())
    })
    .await;
    assert!(reason.contains("under 0.00001 APT/GPU-hour") && reason.contains("too expensive"), "{reason}");

    // A TrainingJob of 4 workers × 8 GPUs lands whole in the one member that can hold it.
    let training: Api<TrainingJob> = Api::namespaced(hub.clone(), "default");
    let tj: TrainingJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "llm", "namespace": "default"},
        "spec": {"image": "pytorch/pytorch:2.9.0", "command": ["torchrun", "train.py"], "workers": 4, "gpu": {"count": 8},
                 "checkpoint": "s3://ckpt/llm/"}
    }))
    .unwrap();
    training.create(&PostParams::default(), &tj).await.unwrap();
    let unit_name = eventually("llm placed", Duration::from_secs(60), || async {
        training.get("llm").await.ok()?.status?.work_unit
    })
    .await;
    let a_pods: Api<Pod> = Api::namespaced(a.client().await.unwrap(), "pictor-work");
    let workers = eventually("4 workers on member A", Duration::from_secs(60), || async {
        let pods = a_pods
            .list(&ListParams::default().labels(&format!("pictor.network/work-unit={unit_name}")))
            .await
            .ok()?;
        (pods.items.len() == 4
            && pods.items.iter().all(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some())))
        .then_some(pods.items)
    })
    .await;
    let nodes: std::collections::BTreeSet<_> =
        workers.iter().map(|p| p.spec.as_ref().unwrap().node_name.clone().unwrap()).collect();
    assert!(nodes.iter().all(|n| n.contains("h100")), "{nodes:?}");
    let rank2 =
        workers.iter().find(|p| p.metadata.name.as_deref().is_some_and(|n| n.ends_with("worker-2"))).unwrap();
    let env: BTreeMap<String, String> = rank2.spec.as_ref().unwrap().containers[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    assert_eq!(env["MASTER_ADDR"], format!("worker-0.{unit_name}"));
    assert_eq!(
        (env["WORLD_SIZE"].as_str(), env["RANK"].as_str(), env["PET_NNODES"].as_str()),
        ("32", "2", "4")
    );
    assert_eq!(rank2.spec.as_ref().unwrap().subdomain.as_deref(), Some(unit_name.as_str()));
    let services: Api<Service> = Api::namespaced(a.client().await.unwrap(), "pictor-work");
    let service = eventually("the gang's headless Service", Duration::from_secs(30), || async {
        services.get_opt(&unit_name).await.ok().flatten()
    })
    .await;
    assert_eq!(service.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    eventually("llm Succeeded", Duration::from_secs(60), || async {
        (training.get("llm").await.ok()?.status?.phase == Some(TrainingJobPhase::Succeeded)).then_some(())
    })
    .await;

    // Deleting a running job removes every unit and pod.
    let doomed = render_jobs
        .create(
            &PostParams::default(),
            &render_job("doomed", 100, serde_json::json!({}), serde_json::json!({})),
        )
        .await
        .unwrap();
    let doomed_uid = doomed.metadata.uid.unwrap();
    eventually("doomed running", Duration::from_secs(60), || async {
        (render_jobs.get("doomed").await.ok()?.status?.phase == Some(RenderJobPhase::Rendering)).then_some(())
    })
    .await;
    render_jobs.delete("doomed", &DeleteParams::default()).await.unwrap();
    // Units of chunks that finished stay, being deleted, until billing has paid their providers
    // (no billing runs here); every other unit and every running pod goes.
    eventually("doomed's unpaid work gone", Duration::from_secs(60), || async {
        let job_gone = render_jobs.get_opt("doomed").await.ok()?.is_none();
        let units = all_units
            .list(&ListParams::default().labels(&format!("pictor.network/job-uid={doomed_uid}")))
            .await
            .ok()?;
        let only_owed = units.items.iter().all(|u| {
            u.metadata.deletion_timestamp.is_some()
                && u.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("pictor.network/billing"))
                    .map(String::as_str)
                    == Some("accrued")
        });
        let selector = ListParams::default().labels(&format!("pictor.network/job-uid={doomed_uid}"));
        let running = |pods: Vec<Pod>| {
            pods.iter()
                .filter(|p| {
                    !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
                })
                .count()
        };
        let pods_a = running(a_pods.list(&selector).await.ok()?.items);
        let pods_b = running(b_pods.list(&selector).await.ok()?.items);
        (job_gone && only_owed && pods_a + pods_b == 0).then_some(())
    })
    .await;
    // Placement reads the members' inventories, which follow the deleted pods within a second
    // or so: wait for them, so the next job sees member A's cheap GPUs free.
    let clusters: Api<pictor_crds::v1alpha1::GpuCluster> = Api::all(hub.clone());
    eventually("every member's GPUs reported free again", Duration::from_secs(30), || async {
        let all = clusters.list(&ListParams::default()).await.ok()?.items;
        all.iter()
            .all(|c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.inventory.as_ref())
                    .is_some_and(|i| i.free_gpus == i.total_gpus)
            })
            .then_some(())
    })
    .await;
    // Verification: every chunk is rendered again by another member; member A's output does not
    // reproduce (the operator's fake-verification switch), so A's chunks are rejected, rendered
    // again elsewhere, and count against A's reputation.
    let mut checked = render_job("checked", 40, serde_json::json!({}), serde_json::json!({}));
    checked.spec.verification_percent = 100;
    let checked = render_jobs.create(&PostParams::default(), &checked).await.unwrap();
    let checked_uid = checked.metadata.uid.unwrap();
    eventually("checked Succeeded after verification", Duration::from_secs(150), || async {
        (render_jobs.get("checked").await.ok()?.status?.phase == Some(RenderJobPhase::Succeeded))
            .then_some(())
    })
    .await;
    let units = all_units
        .list(&ListParams::default().labels(&format!("pictor.network/job-uid={checked_uid}")))
        .await
        .unwrap()
        .items;
    let rejected: Vec<_> = units
        .iter()
        .filter(|u| {
            u.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.get("pictor.network/verdict").is_some_and(|v| v == "mismatch"))
        })
        .collect();
    let verifications = units
        .iter()
        .filter(|u| u.metadata.labels.as_ref().is_some_and(|l| l.contains_key("pictor.network/verifies")))
        .count();
    assert!(verifications >= 4, "every chunk verified: {verifications}");
    assert!(rejected.iter().all(|u| u.metadata.namespace.as_deref() == Some("pictor-member-member-a")));
    let chunks = units_by_chunk(
        &units
            .iter()
            .filter(|u| !u.metadata.labels.as_ref().unwrap().contains_key("pictor.network/verifies"))
            .cloned()
            .collect::<Vec<_>>(),
        &checked_uid,
    );
    for (chunk, attempts) in &chunks {
        let accepted = attempts
            .iter()
            .filter(|u| {
                phase_of(u) == Some(WorkUnitPhase::Succeeded)
                    && !rejected.iter().any(|r| r.metadata.name == u.metadata.name)
            })
            .count();
        assert_eq!(accepted, 1, "chunk {chunk} accepted once");
    }
    if !rejected.is_empty() {
        let mismatches =
            eventually("A's reputation shows the mismatches", Duration::from_secs(30), || async {
                let r = clusters.get("member-a").await.ok()?.status?.reputation?;
                (r.verification_mismatches >= rejected.len() as i64).then_some(r.verification_mismatches)
            })
            .await;
        eprintln!(
            "{} chunks of member A rejected by verification; reputation records {mismatches}",
            rejected.len()
        );
    }
    assert!(!rejected.is_empty(), "some chunk was first rendered on member A (the cheapest) and rejected");

    eprintln!("jobs e2e wall time {:?}", started.elapsed());
}
