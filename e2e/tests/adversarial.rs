//! A malicious member on a real local hub. Member B runs no agent: this test is its agent, making
//! the plain API calls a dishonest one would with the token `pictor member add` gave it — it
//! renews its Lease and claims GPUs so the hub places work on it, then lies. Member A is honest
//! (the real agent, pods on kwok). Each attack is either refused by the API server (admission
//! policies, schema bounds, RBAC), with a message that says what and why, or has no effect on
//! what anyone is paid.
//!
//! The numbers are those of the trust issue's list: 1 set its own pay, 2 revive a Lost unit,
//! 3 and 4 skip work and judge verification (mallory renders nothing and reports every frame it
//! verifies as wrong: the hub judges both itself, pays it nothing for the job and cordons it;
//! that the sample cannot be predicted is shown by the plan's tests and `make
//! bench-verification`), 5 hold work hostage (stalled units, a Lease renewed into the future),
//! 6 forge its record, 7 overflow sums, 8 overload the hub.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use pictor_crds::contract::annotations::{FINISHED_OBSERVED_AT, RUNNING_OBSERVED_AT};
use pictor_crds::contract::billing_marks::{self, BillingState};
use pictor_crds::v1alpha1::{GpuCluster, RenderJob, Settlement, WorkUnit, WorkUnitPhase};
use pictor_e2e::billing;
use pictor_e2e::network::{self, eventually};
use pictor_e2e::{ControlPlane, ControlPlaneOptions, fake_nodes};
use serde_json::json;
use std::time::{Duration, Instant};

const GRACE_SECONDS: u64 = 6;
const RUN_SECONDS: u32 = 3;
/// The job's `spec.unitTimeoutSeconds` (the least the API accepts).
const UNIT_TIMEOUT_SECONDS: u64 = 60;
const MALLORY: &str = "member-b";
const MALLORY_NS: &str = "pictor-member-member-b";
const HONEST_NS: &str = "pictor-member-member-a";
const H100: &str = "NVIDIA-H100-80GB-HBM3";
/// Seconds a submitter may dispute a unit before billing pays it.
const DISPUTE_WINDOW_SECONDS: u64 = 5;

fn phase_of(u: &WorkUnit) -> Option<WorkUnitPhase> {
    u.status.as_ref().and_then(|s| s.phase)
}

fn annotation(u: &WorkUnit, key: &str) -> Option<String> {
    u.metadata.annotations.as_ref()?.get(key).cloned()
}

/// The API server's refusal of `result`: its code and message; panics when it was accepted.
fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(s)) => {
            eprintln!("refused as it must be: {what}: {} {}", s.code, s.message);
            (s.code, s.message)
        }
        other => panic!("the API server must refuse {what}, got {other:?}"),
    }
}

fn assert_refused<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>, says: &str) {
    let (code, message) = refused(what, result);
    assert!((400..500).contains(&code), "{what}: {code} {message}");
    assert!(message.contains(says), "{what}: the refusal must say {says:?}: {message}");
}

/// A job the hub splits over both members: 6 chunks of 10 frames on NVIDIA GPUs, with
/// `verification_percent` of them checked and a unit timeout of a minute.
fn render_job(name: &str, verification_percent: i64) -> RenderJob {
    serde_json::from_value(json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"scene": format!("s3://scenes/{name}.blend"), "frames": {"start": 1, "end": 60}, "chunkSize": 10,
                 "output": {"location": format!("s3://renders/{name}/")}, "gpu": {"vendor": "nvidia", "count": 1},
                 "verificationPercent": verification_percent, "retriesPerChunk": 5,
                 "unitTimeoutSeconds": UNIT_TIMEOUT_SECONDS}
    }))
    .unwrap()
}

/// A status patch as the agent would send it: a merge patch of the status subresource.
async fn patch_status(
    units: &Api<WorkUnit>,
    name: &str,
    status: serde_json::Value,
) -> Result<WorkUnit, kube::Error> {
    units.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malicious_member_is_refused_or_paid_nothing_it_did_not_earn() {
    let plane = ControlPlane::start(ControlPlaneOptions { members: 2, kube_scheduler: false }).await.unwrap();
    plane.install_crds().await.unwrap();
    let honest = &plane.members[0];
    let model = |s| fake_nodes::model(s).unwrap();
    plane.add_nodes(honest, fake_nodes::fleet(&honest.name, &[(model("h100"), 2)])).await.unwrap();
    // On kwok no frames exist: the hub's judge stands in for the comparison and finds mallory's
    // renders not reproduced (its verdict on everyone else's: reproduced).
    // Billing pays on the Aptos test node once a unit's (short) dispute window has passed.
    let hub = plane.hub.client().await.unwrap();
    let node = billing::local_chain(&hub, 100_000_000_000).await.unwrap();
    let _operator = network::start_operator(
        &plane,
        GRACE_SECONDS,
        Some(RUN_SECONDS),
        &[
            &format!("--fake-mismatch-member={MALLORY}"),
            &format!("--dispute-window-seconds={DISPUTE_WINDOW_SECONDS}"),
        ],
    )
    .unwrap();
    let _billing =
        billing::start_billing(&plane, "billing", &node.url(), &billing::settle_at_once()).unwrap();
    let (honest_payout, mallory_payout) = (billing::payout_address(1), billing::payout_address(2));
    let _scheduler = network::start_scheduler(&plane, honest).unwrap();
    let prices = [&format!("{H100}=90000000")[..]];
    // Mallory undercuts the honest member, so the hub places work on it first.
    let mallory_prices = [&format!("{H100}=50000000")[..]];
    let honest_kubeconfig = network::agent_kubeconfig_path(&plane, honest);
    network::member_add(&plane.hub, &honest.name, &honest_payout, &prices, &honest_kubeconfig).unwrap();
    let _honest_agent = network::start_agent(&plane, honest, &honest_kubeconfig, "pictor-scheduler").unwrap();
    let mallory_kubeconfig = plane.run_dir().join("mallory.kubeconfig");
    network::member_add(&plane.hub, MALLORY, &mallory_payout, &mallory_prices, &mallory_kubeconfig).unwrap();

    // Mallory's "agent": its own token, and nothing else.
    let file = kube::config::Kubeconfig::read_from(&mallory_kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await.unwrap();
    let mallory = kube::Client::try_from(config).unwrap();
    let mallory_units: Api<WorkUnit> = Api::namespaced(mallory.clone(), MALLORY_NS);
    let mallory_cluster: Api<GpuCluster> = Api::all(mallory.clone());
    let mallory_leases: Api<Lease> = Api::namespaced(mallory.clone(), MALLORY_NS);
    let renewing = tokio::spawn({
        let leases = mallory_leases.clone();
        async move {
            loop {
                let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                    k8s_openapi::jiff::Timestamp::now(),
                );
                let body = json!({"spec": {"holderIdentity": "mallory", "renewTime": now}});
                let _ = leases.patch("pictor-agent", &PatchParams::default(), &Patch::Merge(body)).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    // It claims four free H100s it does not have: the hub cannot check inventory, only what
    // comes of the work.
    let inventory = json!({"status": {"inventory": {"nodes": 1, "totalGpus": 4, "freeGpus": 4, "pools": [
        {"vendor": "nvidia", "model": H100, "memoryMib": 81559, "nodes": 1, "total": 4, "free": 4, "largestFreeOnNode": 4}]}}});
    mallory_cluster.patch_status(MALLORY, &PatchParams::apply("mallory").force(), &Patch::Apply(json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "GpuCluster", "status": inventory["status"].clone()})))
        .await
        .expect("a member reports its inventory");
    // It inflates its time-sliced capacity past anything real: every shared-pool field is
    // bounded, and the API server refuses the report.
    let shared_pool = |field: &str, value: serde_json::Value| {
        let mut pool = json!({"vendor": "nvidia", "model": H100, "memoryMib": 81559, "nodes": 1, "gpus": 1,
            "replicas": 4, "freeReplicas": 4});
        pool[field] = value;
        pool
    };
    let inflated = [
        ("replicas", vec![shared_pool("replicas", json!(1_000_000_000_000i64))], "sharedPools[0].replicas"),
        ("freeReplicas", vec![shared_pool("freeReplicas", json!(-1))], "sharedPools[0].freeReplicas"),
        ("gpus", vec![shared_pool("gpus", json!(1_000_000_000))], "sharedPools[0].gpus"),
        ("model", vec![shared_pool("model", json!("X".repeat(129)))], "sharedPools[0].model"),
        ("pools", vec![shared_pool("nodes", json!(1)); 65], "sharedPools"),
    ];
    for (what, pools, says) in inflated {
        let result = mallory_cluster
            .patch_status(
                MALLORY,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"inventory": {"sharedPools": pools}}})),
            )
            .await;
        assert_refused(&format!("an inflated shared {what}"), result, says);
    }
    network::wait_for_members(&plane, Duration::from_secs(90)).await.unwrap();

    // 6. Forge its record: reputation, earnings and conditions are the hub's.
    for (field, value) in [
        ("reputation", json!({"unitsSucceeded": 100000, "unitsFailed": 0, "verificationMismatches": 0})),
        ("earnings", json!({"pendingOctas": 0, "paidOctas": 999999999})),
        ("lastHeartbeat", json!("2099-01-01T00:00:00Z")),
    ] {
        let result = mallory_cluster
            .patch_status(MALLORY, &PatchParams::default(), &Patch::Merge(json!({"status": {field: value}})))
            .await;
        assert_refused(&format!("6: write its own status.{field}"), result, "written by the hub");
    }

    // A job the hub splits over both members: 6 chunks of 10 frames, no sampling (verification
    // has its own tests), and a unit timeout of a minute.
    let jobs: Api<RenderJob> = Api::namespaced(hub.clone(), "default");
    let job = jobs.create(&PostParams::default(), &render_job("heist", 0)).await.unwrap();
    let job_uid = job.metadata.uid.clone().unwrap();
    let placed = Instant::now();
    let hub_units: Api<WorkUnit> = Api::namespaced(hub.clone(), MALLORY_NS);
    let mine = eventually("three units placed on mallory", Duration::from_secs(60), || async {
        let units = mallory_units.list(&ListParams::default()).await.ok()?.items;
        (units.len() >= 3).then_some(units)
    })
    .await;
    let name = |i: usize| mine[i].metadata.name.clone().unwrap();
    let (paid, stalled, backwards) = (name(0), name(1), name(2));

    // 1. Set its own pay. Reporting an absurd figure with the finish is accepted by the API
    // (a member reports what it likes), but the hub pays at most what it saw.
    patch_status(&mallory_units, &paid, json!({"phase": "Running"}))
        .await
        .expect("Pending to Running is allowed");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reported = 3_600_000_000i64;
    patch_status(
        &mallory_units,
        &paid,
        json!({"phase": "Succeeded", "gpuSeconds": reported, "completionTime": "1970-01-01T00:00:00Z"}),
    )
    .await
    .expect("Running to Succeeded is allowed");
    let metered = eventually("the hub meters mallory's unit", Duration::from_secs(30), || async {
        let unit = hub_units.get(&paid).await.ok()?;
        billing_marks::metered_gpu_seconds(&unit).map(|m| (m, unit))
    })
    .await;
    let (metered_seconds, paid_unit) = metered;
    let out_for = placed.elapsed().as_secs() as i64 + 30 + 5;
    eprintln!(
        "1: mallory reported {reported} GPU-seconds; the hub metered {metered_seconds} (bound {out_for})"
    );
    assert!(
        metered_seconds <= out_for,
        "metered {metered_seconds} s, more than the hub saw the unit out ({out_for} s)"
    );
    assert!(
        annotation(&paid_unit, RUNNING_OBSERVED_AT).is_some()
            && annotation(&paid_unit, FINISHED_OBSERVED_AT).is_some()
    );
    // ...and once finished, nothing it reported can change.
    let result = patch_status(&mallory_units, &paid, json!({"gpuSeconds": reported * 2})).await;
    assert_refused("1: raise gpuSeconds of a finished unit", result, "final");

    // 7. Overflow sums: figures past the schema's bounds are refused outright.
    let result = patch_status(&mallory_units, &stalled, json!({"gpuSeconds": i64::MAX})).await;
    assert_refused("7: report i64::MAX GPU-seconds", result, "gpuSeconds");

    // 2 (first half). Lost is the hub's word, and phases only move forward.
    let result = patch_status(&mallory_units, &stalled, json!({"phase": "Lost"})).await;
    assert_refused("2: mark its own unit Lost", result, "Lost is the hub");
    patch_status(&mallory_units, &backwards, json!({"phase": "Running"})).await.unwrap();
    let result = patch_status(&mallory_units, &backwards, json!({"phase": "Pending"})).await;
    assert_refused("2: move a unit back to Pending", result, "only move forward");

    // 8. Overload the hub: every member-written field is bounded, ConfigMaps too.
    let result = patch_status(&mallory_units, &stalled, json!({"message": "x".repeat(100_000)})).await;
    assert_refused("8: a 100 kB status message", result, "message");
    let outputs: Vec<_> =
        (0..5000).map(|i| json!({"url": format!("file:///x/{i}"), "sha256": "00"})).collect();
    let result = patch_status(&mallory_units, &stalled, json!({"outputs": outputs})).await;
    assert_refused("8: 5000 outputs", result, "outputs");
    let result = patch_status(&mallory_units, &stalled, json!({"exitCodes": [9_999_999_999i64]})).await;
    assert_refused("8: an exit code no i32 holds", result, "exitCodes");
    // Its advertised work policy is its own to write, within bounds.
    for (what, policy, says) in [
        ("1000 image patterns", json!({"images": vec!["*"; 1000]}), "images"),
        ("a 10 kB image pattern", json!({"images": ["x".repeat(10_000)]}), "images"),
        ("a memory cap that is no quantity", json!({"images": ["*"], "maxMemory": "lots"}), "maxMemory"),
    ] {
        let body = json!({"status": {"workPolicy": policy}});
        let result =
            mallory_cluster.patch_status(MALLORY, &PatchParams::default(), &Patch::Merge(body)).await;
        assert_refused(&format!("8: a work policy with {what}"), result, says);
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(mallory.clone(), MALLORY_NS);
    let config_map = |name: &str, bytes: usize| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"render.log": "y".repeat(bytes)}}))
            .unwrap()
    };
    let result = config_maps.create(&PostParams::default(), &config_map("junk", 10)).await;
    assert_refused("8: a ConfigMap that is no unit log", result, "<unit>-log");
    let result =
        config_maps.create(&PostParams::default(), &config_map(&format!("{stalled}-log"), 200_000)).await;
    assert_refused("8: a 200 kB log ConfigMap", result, "at most");
    config_maps
        .create(&PostParams::default(), &config_map(&format!("{stalled}-log"), 1000))
        .await
        .expect("a unit log tail within bounds is accepted");

    // 5. Hold work hostage: the unit mallory never runs is Lost once out past the job's bound
    // (checked every few seconds by the job's controller), and placed again elsewhere.
    let lost =
        eventually("the stalled unit is Lost", Duration::from_secs(UNIT_TIMEOUT_SECONDS + 40), || async {
            let unit = hub_units.get(&stalled).await.ok()?;
            (phase_of(&unit) == Some(WorkUnitPhase::Lost)).then_some(unit)
        })
        .await;
    let created = lost.metadata.creation_timestamp.clone().unwrap().0;
    let out = k8s_openapi::jiff::Timestamp::now().duration_since(created).as_secs();
    eprintln!("5: the stalled unit was Lost {out} s after it was placed (bound {UNIT_TIMEOUT_SECONDS} s)");
    assert!(out >= UNIT_TIMEOUT_SECONDS as i64, "Lost before its bound: {out} s");
    assert!(
        out <= UNIT_TIMEOUT_SECONDS as i64 + 15,
        "Lost {out} s after placement, bound {UNIT_TIMEOUT_SECONDS} s"
    );
    let condition = lost.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(condition.reason, "TimedOut", "{condition:?}");

    // 2 (second half). Revive the Lost unit with an early completion time: refused.
    let result = patch_status(
        &mallory_units,
        &stalled,
        json!({"phase": "Succeeded", "gpuSeconds": 100, "completionTime": "1970-01-01T00:00:00Z"}),
    )
    .await;
    assert_refused("2: revive a Lost unit as Succeeded", result, "final");

    // The honest member is paid exactly what it reported (it is within what the hub saw), no
    // chunk is paid twice, and the job's cost is what the hub metered.
    let admin_units: Api<WorkUnit> = Api::all(hub.clone());
    let job_done = eventually("the job finishes on the honest member", Duration::from_secs(150), || async {
        let job = jobs.get("heist").await.ok()?;
        let done = job.status.as_ref()?.frames.as_ref()?.done == 60;
        done.then_some(job)
    })
    .await;
    let units = admin_units.list(&ListParams::default()).await.unwrap().items;
    let units: Vec<&WorkUnit> = units.iter().filter(|u| u.spec.job_ref.uid == job_uid).collect();
    let payable: Vec<&&WorkUnit> = units
        .iter()
        .filter(|u| {
            matches!(billing_marks::billing_state(u), Some(BillingState::Accrued | BillingState::Held))
        })
        .collect();
    let mut chunks = std::collections::BTreeSet::new();
    for unit in &payable {
        let chunk = unit.metadata.labels.as_ref().unwrap()["pictor.network/chunk"].clone();
        assert!(chunks.insert(chunk.clone()), "chunk {chunk} paid twice");
        if unit.metadata.namespace.as_deref() == Some(HONEST_NS) {
            let reported = unit.status.as_ref().unwrap().gpu_seconds;
            assert_eq!(
                billing_marks::metered_gpu_seconds(unit),
                Some(reported),
                "honest report paid as reported"
            );
        }
    }
    assert_eq!(chunks.len(), 6, "every chunk paid once");
    let metered_cost: i64 = payable.iter().map(|u| billing_marks::amount_octas(u)).sum();
    let cost = eventually("the job's cost settles", Duration::from_secs(20), || async {
        let cost = jobs.get("heist").await.ok()?.status?.cost_octas;
        (cost == metered_cost).then_some(cost)
    })
    .await;
    assert!(job_done.status.is_some());
    eprintln!("the job cost {cost} octas, exactly what the hub metered over {} paid units", payable.len());

    // 3 and 4. Verification: every chunk of this job is checked on the other member. Mallory
    // "renders" its chunks without rendering and, as the verifier of the honest member's
    // chunks, reports them all as not reproduced. The hub judges both itself: mallory's word as
    // a verifier counts for nothing, its own renders fail, and it is cordoned.
    let audit_uid =
        jobs.create(&PostParams::default(), &render_job("audit", 100)).await.unwrap().metadata.uid.unwrap();
    let forged = pictor_crds::contract::VerificationReport {
        frame: 1,
        psnr_db: 3.0,
        passed: false,
        sha256: "00".repeat(32),
        rerendered_sha256: "11".repeat(32),
        mismatch: Some("nothing alike".into()),
        device: "CPU".into(),
    };
    let cheating = tokio::spawn({
        let (units, audit_uid, forged) = (mallory_units.clone(), audit_uid.clone(), forged.to_message());
        async move {
            loop {
                let selector = format!("pictor.network/job-uid={audit_uid}");
                let listed = units.list(&ListParams::default().labels(&selector)).await.map(|l| l.items);
                for unit in listed.unwrap_or_default() {
                    let name = unit.metadata.name.clone().unwrap();
                    let verifies = unit
                        .metadata
                        .labels
                        .as_ref()
                        .is_some_and(|l| l.contains_key("pictor.network/verifies"));
                    let status = match phase_of(&unit) {
                        None | Some(WorkUnitPhase::Pending) => json!({"phase": "Running"}),
                        Some(WorkUnitPhase::Running) if verifies => {
                            json!({"phase": "Succeeded", "gpuSeconds": 2, "message": forged})
                        }
                        Some(WorkUnitPhase::Running) => json!({"phase": "Succeeded", "gpuSeconds": 2}),
                        _ => continue,
                    };
                    let _ = patch_status(&units, &name, status).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let clusters: Api<GpuCluster> = Api::all(hub.clone());
    let cordoned = eventually("mallory cordoned for its mismatches", Duration::from_secs(120), || async {
        let cluster = clusters.get(MALLORY).await.ok()?;
        cluster.spec.cordoned.then_some(cluster)
    })
    .await;
    let mismatches =
        cordoned.status.as_ref().and_then(|s| s.reputation.as_ref()).map_or(0, |r| r.verification_mismatches);
    eprintln!("4: mallory cordoned at {mismatches} verification mismatches");
    assert!(mismatches >= pictor_operator::member_controller::CORDON_AFTER_MISMATCHES);
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(hub.clone());
    eventually("the cordon's Event", Duration::from_secs(20), || async {
        let listed = events.list(&ListParams::default()).await.ok()?.items;
        listed.iter().any(|e| e.reason.as_deref() == Some("CordonedForMismatches")).then_some(())
    })
    .await;
    eventually("the audit job finishes", Duration::from_secs(150), || async {
        let frames = jobs.get("audit").await.ok()?.status?.frames?;
        (frames.done == 60).then_some(())
    })
    .await;
    cheating.abort();
    let units = admin_units
        .list(&ListParams::default().labels(&format!("pictor.network/job-uid={audit_uid}")))
        .await
        .unwrap()
        .items;
    let judgement = |u: &WorkUnit| {
        annotation(u, pictor_crds::contract::annotations::JUDGEMENT)
            .and_then(|a| pictor_crds::contract::Judgement::from_annotation(&a))
    };
    let mallory_checks: Vec<&WorkUnit> = units
        .iter()
        .filter(|u| u.metadata.namespace.as_deref() == Some(MALLORY_NS))
        .filter(|u| u.metadata.labels.as_ref().is_some_and(|l| l.contains_key("pictor.network/verifies")))
        .collect();
    assert!(!mallory_checks.is_empty(), "mallory verified some of the honest member's chunks");
    for check in &mallory_checks {
        let judged = judgement(check).expect("the hub judged mallory's check");
        assert_eq!(
            judged.finding,
            pictor_crds::contract::Finding::Reproduced,
            "mallory's verdict is not the hub's: {judged:?}"
        );
    }
    for unit in units.iter().filter(|u| u.metadata.namespace.as_deref() == Some(MALLORY_NS)) {
        let is_check =
            unit.metadata.labels.as_ref().is_some_and(|l| l.contains_key("pictor.network/verifies"));
        if !is_check {
            assert_ne!(
                billing_marks::billing_state(unit),
                Some(BillingState::Accrued),
                "a caught member is paid nothing for the job: {:?}",
                unit.metadata.name
            );
        }
    }
    let honest_paid = units
        .iter()
        .filter(|u| u.metadata.namespace.as_deref() == Some(HONEST_NS))
        .filter(|u| billing_marks::billing_state(u) == Some(BillingState::Accrued))
        .count();
    assert!(honest_paid >= 6, "every chunk paid to the honest member once it rendered it: {honest_paid}");
    // And mallory cannot write the hub's judgement: its token may not touch unit metadata.
    let forged_judgement =
        json!({"metadata": {"annotations": {pictor_crds::contract::annotations::JUDGEMENT: "{}"}}});
    let result = mallory_units
        .patch(
            &mallory_checks[0].metadata.name.clone().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(forged_judgement),
        )
        .await;
    let (code, _) = refused("4: write the hub's judgement", result);
    assert_eq!(code, 403);

    // What anyone was paid, on the chain: every accrued unit of both jobs exactly once, at what
    // the hub metered; mallory may not even propose a payment.
    let result = Api::<Settlement>::namespaced(mallory.clone(), billing::NAMESPACE)
        .create(&PostParams::default(), &serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "Settlement",
            "metadata": {"name": "pay-mallory"},
            "spec": {"provider": MALLORY, "payoutAddress": mallory_payout, "amountOctas": 1_000_000_000i64,
                     "amount": "10 APT", "unitCount": 1,
                     "units": [{"namespace": MALLORY_NS, "name": paid.clone(), "uid": "x", "amountOctas": 1_000_000_000i64}]}
        })).unwrap())
        .await;
    let (code, _) = refused("1: propose its own Settlement", result);
    assert_eq!(code, 403);
    let accrued = || async {
        let units = admin_units
            .list(
                &ListParams::default().labels(&format!("{}=accrued", pictor_crds::contract::labels::BILLING)),
            )
            .await
            .ok()?
            .items;
        Some(units)
    };
    let settled = eventually("every accrued unit paid", Duration::from_secs(120), || async {
        let units = accrued().await?;
        let settlements = billing::settlements(&hub).await.ok()?;
        let (_, uids) = billing::confirmed(&settlements);
        let all_paid = units.iter().all(|u| uids.contains(u.metadata.uid.as_ref().unwrap()));
        (all_paid && billing::all_confirmed(&settlements)).then_some((units, settlements))
    })
    .await;
    let (units, settlements) = settled;
    let mut metered: std::collections::BTreeMap<String, u64> = Default::default();
    for unit in &units {
        let payout = if unit.metadata.namespace.as_deref() == Some(MALLORY_NS) {
            &mallory_payout
        } else {
            &honest_payout
        };
        *metered.entry(payout.clone()).or_default() += billing_marks::amount_octas(unit) as u64;
    }
    let (paid, uids) = billing::confirmed(&settlements);
    assert_eq!(paid, metered, "each provider paid exactly what the hub metered");
    assert_eq!(
        uids.len(),
        uids.iter().collect::<std::collections::BTreeSet<_>>().len(),
        "nothing paid twice"
    );
    for (address, octas) in &metered {
        assert_eq!(node.balance(address.parse().unwrap()), *octas, "balance of {address} on the chain");
    }
    eprintln!(
        "paid on the chain: {paid:?} in {} settlements, exactly what the hub metered",
        settlements.len()
    );

    // 5 (second half). A Lease renewed into the future counts as the hub's now: once mallory
    // stops renewing, it is NotReady within the grace period plus a heartbeat.
    renewing.abort();
    let future = "2099-01-01T00:00:00.000000Z";
    mallory_leases
        .patch("pictor-agent", &PatchParams::default(), &Patch::Merge(json!({"spec": {"renewTime": future}})))
        .await
        .unwrap();
    let stopped = Instant::now();
    eventually(
        "mallory NotReady despite a Lease renewed in 2099",
        Duration::from_secs(GRACE_SECONDS * 3),
        || async {
            let cluster = clusters.get(MALLORY).await.ok()?;
            let ready = cluster.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
            (ready.status == "False").then_some(())
        },
    )
    .await;
    let took = stopped.elapsed();
    eprintln!("5: mallory NotReady {took:?} after its last (future-dated) renewal");
    assert!(took <= Duration::from_secs(GRACE_SECONDS + 1) + Duration::from_millis(500), "took {took:?}");
}
