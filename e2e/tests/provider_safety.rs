//! Providers run strangers' work safely, on a real local control plane (kwok plays the GPUs):
//! the member's API server enforces the Pod Security Standard `restricted` in the work namespace
//! and admits every unit pod the agent makes for a RenderJob and a TrainingJob (a pod that broke
//! the standard would be refused right there) but refuses a hand-made privileged pod; unit pods
//! carry CPU, memory and disk limits; a training gang gets its own NetworkPolicy; and a unit whose
//! image or size a provider refuses is refused with a reason the hub's job shows, then runs on a
//! member that accepts it — whether the hub knew the policy (placement skips the member) or the
//! member changed it after the hub placed the work (the agent refuses, the chunk moves).

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use pictor_crds::v1alpha1::{
    GpuCluster, RenderJob, RenderJobPhase, TrainingJob, TrainingJobPhase, WorkUnit, WorkUnitPhase,
};
use pictor_e2e::network::{self, eventually};
use pictor_e2e::{ControlPlane, ControlPlaneOptions, fake_nodes};
use serde_json::json;
use std::time::{Duration, Instant};

const GRACE_SECONDS: u64 = 20;
const RUN_SECONDS: u32 = 2;
/// Member A runs the network's images only, and no pod over 8 GiB of memory.
const STRICT: [&str; 2] = ["--allow-image=docker.io/pictor/*", "--max-memory=8Gi"];

fn render_job(name: &str, image: &str, resources: serde_json::Value) -> RenderJob {
    serde_json::from_value(json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"scene": "s3://scenes/shot.blend", "frames": {"start": 1, "end": 10}, "chunkSize": 10,
                 "renderer": {"image": image}, "resources": resources,
                 "output": {"location": format!("s3://renders/{name}/")},
                 "verificationPercent": 0, "retriesPerChunk": 3}
    }))
    .unwrap()
}

async fn succeeded(jobs: &Api<RenderJob>, name: &str) -> RenderJob {
    eventually(&format!("{name} Succeeded"), Duration::from_secs(90), || async {
        let job = jobs.get(name).await.ok()?;
        (job.status.as_ref()?.phase == Some(RenderJobPhase::Succeeded)).then_some(job)
    })
    .await
}

/// The member namespaces on the hub the job's units went to.
async fn unit_members(units: &Api<WorkUnit>, job: &RenderJob) -> Vec<(String, Option<WorkUnitPhase>)> {
    let uid = job.metadata.uid.clone().unwrap();
    let mut found: Vec<_> = network::units_of_job(units, &uid)
        .await
        .into_iter()
        .map(|u| (u.metadata.namespace.unwrap_or_default(), u.status.and_then(|s| s.phase)))
        .collect();
    found.sort_by(|x, y| x.0.cmp(&y.0));
    found
}

fn set_cordoned(value: bool) -> Patch<serde_json::Value> {
    Patch::Merge(json!({"spec": {"cordoned": value}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_confine_units_and_refuse_what_they_do_not_run() {
    let started = Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 2, kube_scheduler: false }).await.unwrap();
    plane.install_crds().await.unwrap();
    let (a, b) = (&plane.members[0], &plane.members[1]);
    let rtx = fake_nodes::model("rtx4090").unwrap();
    for member in [a, b] {
        plane.add_nodes(member, fake_nodes::fleet(&member.name, &[(rtx, 3)])).await.unwrap();
    }
    let _operator = network::start_operator(&plane, GRACE_SECONDS, Some(RUN_SECONDS), &[]).unwrap();
    let _schedulers: Vec<_> =
        plane.members.iter().map(|m| network::start_scheduler(&plane, m).unwrap()).collect();
    // A is the cheaper: placement prefers it whenever it would take the work.
    let prices =
        [("member-a", "NVIDIA-GeForce-RTX-4090=30000000"), ("member-b", "NVIDIA-GeForce-RTX-4090=40000000")];
    let strict: Vec<String> = STRICT.iter().map(|s| s.to_string()).collect();
    let kubeconfig_a = network::agent_kubeconfig_path(&plane, a);
    let kubeconfig_b = network::agent_kubeconfig_path(&plane, b);
    for (member, kubeconfig) in [(a, &kubeconfig_a), (b, &kubeconfig_b)] {
        let price = prices.iter().find(|(m, _)| *m == member.name).unwrap().1;
        network::member_add(&plane.hub, &member.name, "0xfeed", &[price], kubeconfig).unwrap();
    }
    let mut agent_a =
        Some(network::start_agent_with(&plane, a, &kubeconfig_a, "pictor-scheduler", &strict).unwrap());
    let _agent_b = network::start_agent(&plane, b, &kubeconfig_b, "pictor-scheduler").unwrap();
    network::wait_for_members(&plane, Duration::from_secs(90)).await.unwrap();
    eprintln!("network up in {:?}", started.elapsed());

    let hub = plane.hub.client().await.unwrap();
    let jobs: Api<RenderJob> = Api::namespaced(hub.clone(), "default");
    let units: Api<WorkUnit> = Api::all(hub.clone());
    let clusters: Api<GpuCluster> = Api::all(hub.clone());
    let member_a = a.client().await.unwrap();
    let a_pods: Api<Pod> = Api::namespaced(member_a.clone(), "pictor-work");

    // A advertises what it runs.
    let advertised = clusters.get("member-a").await.unwrap().status.unwrap().work_policy.unwrap();
    assert_eq!(advertised.images, ["docker.io/pictor/*"]);
    assert_eq!(advertised.max_memory.as_deref(), Some("8Gi"));

    // The work namespace enforces `restricted`, and the render pod the agent made was admitted
    // there, confined and limited.
    let labels =
        Api::<Namespace>::all(member_a.clone()).get("pictor-work").await.unwrap().metadata.labels.unwrap();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    let job = jobs
        .create(&PostParams::default(), &render_job("shot", "pictor/render-worker:dev", json!({"cpu": "2"})))
        .await
        .unwrap();
    let pod = eventually("the shot's render pod on member A", Duration::from_secs(60), || async {
        let uid = job.metadata.uid.clone()?;
        let pods = a_pods
            .list(&ListParams::default().labels(&format!("pictor.network/job-uid={uid}")))
            .await
            .ok()?;
        pods.items.into_iter().next()
    })
    .await;
    let spec = pod.spec.unwrap();
    let security = spec.security_context.unwrap();
    assert_eq!(
        (security.run_as_non_root, security.seccomp_profile.unwrap().type_.as_str()),
        (Some(true), "RuntimeDefault")
    );
    let container = &spec.containers[0];
    assert_eq!(container.security_context.as_ref().unwrap().read_only_root_filesystem, Some(true));
    let limits = container.resources.as_ref().unwrap().limits.clone().unwrap();
    let limit = |name: &str| limits.get(name).map(|q| q.0.clone()).unwrap_or_default();
    assert_eq!(
        (limit("cpu"), limit("memory"), limit("ephemeral-storage"), limit("nvidia.com/gpu")),
        ("2".into(), "4Gi".into(), "10Gi".into(), "1".into()),
        "the job's CPU, the member's defaults for the rest"
    );
    succeeded(&jobs, "shot").await;

    // A TrainingJob's gang is admitted too, with a NetworkPolicy that opens the gang to itself.
    let training: Api<TrainingJob> = Api::namespaced(hub.clone(), "default");
    let tj: TrainingJob = serde_json::from_value(json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "tiny-llm", "namespace": "default"},
        "spec": {"image": "pictor/trainer:1", "command": ["torchrun", "train.py"], "workers": 2, "gpu": {"count": 1},
                 "env": [{"name": "OMP_NUM_THREADS", "value": "4"}], "resources": {"memory": "8Gi"}}
    }))
    .unwrap();
    training.create(&PostParams::default(), &tj).await.unwrap();
    let unit = eventually("tiny-llm placed", Duration::from_secs(60), || async {
        training.get("tiny-llm").await.ok()?.status?.work_unit
    })
    .await;
    let policies: Api<NetworkPolicy> = Api::namespaced(member_a.clone(), "pictor-work");
    let gang = eventually("the gang's NetworkPolicy on member A", Duration::from_secs(60), || async {
        policies.get_opt(&format!("{unit}-gang")).await.ok().flatten()
    })
    .await;
    let gang_spec = gang.spec.unwrap();
    assert_eq!(gang_spec.policy_types.unwrap(), ["Ingress", "Egress"]);
    eventually("tiny-llm Succeeded", Duration::from_secs(90), || async {
        (training.get("tiny-llm").await.ok()?.status?.phase == Some(TrainingJobPhase::Succeeded))
            .then_some(())
    })
    .await;
    eprintln!("render and training pods admitted under restricted at {:?}", started.elapsed());

    // A privileged pod made by hand in the same namespace is refused by the API server, which
    // admits it in a namespace without the standard (the cluster allows privileged pods).
    let privileged: Pod = serde_json::from_value(json!({
        "metadata": {"name": "escape"},
        "spec": {"containers": [{"name": "c", "image": "pictor/render-worker:dev",
                                  "securityContext": {"privileged": true}}]}
    }))
    .unwrap();
    let dry_run = PostParams { dry_run: true, ..Default::default() };
    Api::<Pod>::namespaced(member_a.clone(), "default").create(&dry_run, &privileged).await.unwrap();
    let refused = a_pods.create(&PostParams::default(), &privileged).await.unwrap_err();
    let kube::Error::Api(status) = refused else { panic!("not an API refusal: {refused}") };
    assert_eq!(status.code, 403, "{status:?}");
    assert!(status.message.contains("violates PodSecurity \"restricted"), "{}", status.message);
    assert!(status.message.contains("privileged"), "{}", status.message);

    // The hub knows A's policy: with B cordoned, work A would refuse waits and says why ...
    clusters.patch("member-b", &PatchParams::default(), &set_cordoned(true)).await.unwrap();
    jobs.create(&PostParams::default(), &render_job("miner", "docker.io/miner/xmrig:6", json!({})))
        .await
        .unwrap();
    jobs.create(
        &PostParams::default(),
        &render_job("big", "pictor/render-worker:dev", json!({"memory": "16Gi"})),
    )
    .await
    .unwrap();
    for (name, why) in [
        ("miner", "1 image not allowed by the provider"),
        ("big", "1 pod over the provider's CPU, memory or disk limits"),
    ] {
        let message =
            eventually(&format!("{name}'s NoMemberFits condition"), Duration::from_secs(30), || async {
                let status = jobs.get(name).await.ok()?.status?;
                let ready =
                    status.conditions.iter().find(|c| c.type_ == "Ready" && c.reason == "NoMemberFits")?;
                (status.phase == Some(RenderJobPhase::Pending)).then(|| ready.message.clone())
            })
            .await;
        assert!(message.contains(why) && message.contains("1 cordoned"), "{name}: {message}");
    }
    // ... and runs on B, which takes it, once B is back.
    clusters.patch("member-b", &PatchParams::default(), &set_cordoned(false)).await.unwrap();
    for name in ["miner", "big"] {
        let job = succeeded(&jobs, name).await;
        let went = unit_members(&units, &job).await;
        assert_eq!(went, [("pictor-member-member-b".to_string(), Some(WorkUnitPhase::Succeeded))], "{name}");
    }
    eprintln!("refused work waited with its reason, then ran on B at {:?}", started.elapsed());

    // A's provider runs anything for a while, then tightens its policy; the hub placed a job on
    // A in between. A's agent refuses it, the job's events say why, and the chunk moves to B.
    drop(agent_a.take());
    let open = vec!["--allow-image=*".to_string()];
    agent_a = Some(network::start_agent_with(&plane, a, &kubeconfig_a, "pictor-scheduler", &open).unwrap());
    eventually("A advertising any image", Duration::from_secs(30), || async {
        let policy = clusters.get("member-a").await.ok()?.status?.work_policy?;
        (policy.images == ["*"]).then_some(())
    })
    .await;
    drop(agent_a.take());
    let late = jobs
        .create(&PostParams::default(), &render_job("late", "docker.io/miner/xmrig:7", json!({})))
        .await
        .unwrap();
    let first = eventually("late placed on A", Duration::from_secs(30), || async {
        let went = unit_members(&units, &late).await;
        went.into_iter().next()
    })
    .await;
    assert_eq!(first.0, "pictor-member-member-a", "the cheaper member, which said it ran anything");
    let _agent_a = network::start_agent_with(&plane, a, &kubeconfig_a, "pictor-scheduler", &strict).unwrap();
    let late = succeeded(&jobs, "late").await;
    let went = unit_members(&units, &late).await;
    assert_eq!(
        went,
        [
            ("pictor-member-member-a".to_string(), Some(WorkUnitPhase::Failed)),
            ("pictor-member-member-b".to_string(), Some(WorkUnitPhase::Succeeded))
        ]
    );
    let described =
        plane.hub.kubectl().args(["describe", "renderjob", "late", "-n", "default"]).output().unwrap();
    let described = String::from_utf8_lossy(&described.stdout);
    assert!(
        described.contains("ChunkRetried")
            && described.contains("refused by this provider: pod render: image docker.io/miner/xmrig:7 is not allowed by this provider"),
        "{described}"
    );
    eprintln!("a unit A refused itself moved to B, its reason on the job, at {:?}", started.elapsed());
}
