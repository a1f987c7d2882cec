//! Billing end to end on the real local control plane and the Aptos test node: a RenderJob runs
//! on two members, its verified units accrue, the submitter disputes two chunks inside the
//! dispute window (one re-verifies, one does not), and pictor-billing pays each provider. In the
//! end each provider's balance on the chain has grown by exactly what its accrued units are
//! worth, the job's cost is the sum of its units, the rejected chunk was never paid, and no
//! unit was paid before its window closed.

use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use pictor_crds::contract::{annotations, billing_marks, labels};
use pictor_crds::v1alpha1::{GpuCluster, RenderJob, RenderJobPhase, WorkUnit, WorkUnitPhase};
use pictor_e2e::billing;
use pictor_e2e::network::{self, eventually};
use pictor_e2e::{ControlPlane, ControlPlaneOptions, fake_nodes};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const DISPUTE_WINDOW_SECONDS: u64 = 25;

fn label<'a>(u: &'a WorkUnit, key: &str) -> Option<&'a str> {
    u.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn member_of(u: &WorkUnit) -> &str {
    u.metadata.namespace.as_deref().and_then(|n| n.strip_prefix("pictor-member-")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_job_pays_each_provider_exactly_its_metered_amount() {
    let started = Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 2, kube_scheduler: false }).await.unwrap();
    plane.install_crds().await.unwrap();
    let model = |s| fake_nodes::model(s).unwrap();
    for member in &plane.members {
        plane.add_nodes(member, fake_nodes::fleet(&member.name, &[(model("rtx4090"), 3)])).await.unwrap();
    }
    let hub = plane.hub.client().await.unwrap();
    let node = billing::local_chain(&hub, 100_000_000_000).await.unwrap();
    let _operator = network::start_operator(
        &plane,
        6,
        Some(4),
        &["--fake-mismatch-member=member-a", &format!("--dispute-window-seconds={DISPUTE_WINDOW_SECONDS}")],
    )
    .unwrap();
    let _billing =
        billing::start_billing(&plane, "billing", &node.url(), &billing::settle_at_once()).unwrap();
    let _schedulers: Vec<_> =
        plane.members.iter().map(|m| network::start_scheduler(&plane, m).unwrap()).collect();
    let mut payout: BTreeMap<String, String> = BTreeMap::new();
    let mut agents = Vec::new();
    for (i, member) in plane.members.iter().enumerate() {
        let kubeconfig = network::agent_kubeconfig_path(&plane, member);
        let address = billing::payout_address(i as u64 + 1);
        network::member_add(
            &plane.hub,
            &member.name,
            &address,
            &["NVIDIA-GeForce-RTX-4090=40000000"],
            &kubeconfig,
        )
        .unwrap();
        payout.insert(member.name.clone(), address);
        agents.push(network::start_agent(&plane, member, &kubeconfig, "pictor-scheduler").unwrap());
    }
    network::wait_for_members(&plane, Duration::from_secs(90)).await.unwrap();

    let jobs: Api<RenderJob> = Api::namespaced(hub.clone(), "default");
    let job: RenderJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": "paid-shot", "namespace": "default"},
        "spec": {"scene": "s3://scenes/classroom.blend", "frames": {"start": 1, "end": 60}, "chunkSize": 10,
                 "output": {"location": "s3://renders/paid-shot/"}, "gpu": {}, "budget": {},
                 "verificationPercent": 0, "retriesPerChunk": 3}
    }))
    .unwrap();
    let job = jobs.create(&PostParams::default(), &job).await.unwrap();
    let uid = job.metadata.uid.clone().unwrap();
    let units_api: Api<WorkUnit> = Api::all(hub.clone());
    let of_job = ListParams::default().labels(&format!("pictor.network/job-uid={uid}"));
    eventually("paid-shot Succeeded", Duration::from_secs(240), || async {
        (jobs.get("paid-shot").await.ok()?.status?.phase == Some(RenderJobPhase::Succeeded)).then_some(())
    })
    .await;
    eprintln!("job rendered in {:?}", started.elapsed());

    // Inside the window, dispute one chunk of each member.
    let units = units_api.list(&of_job).await.unwrap().items;
    let chunk_of = |member: &str| {
        units
            .iter()
            .find(|u| member_of(u) == member && label(u, labels::BILLING) == Some("accrued"))
            .unwrap_or_else(|| panic!("an accrued chunk on {member}"))
            .clone()
    };
    let (disputed_a, disputed_b) = (chunk_of("member-a"), chunk_of("member-b"));
    let dispute = format!("{},{}", disputed_a.spec.frames, disputed_b.spec.frames);
    jobs.patch(
        "paid-shot",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"annotations": {annotations::DISPUTE: dispute}}})),
    )
    .await
    .unwrap();
    eprintln!("disputed frames {dispute} at {:?}", started.elapsed());

    // Member A's output does not reproduce (the operator's fake-verification switch): rejected,
    // never paid, rendered again. Member B's does: paid.
    let (rejected, cleared) = eventually("both disputes decided", Duration::from_secs(240), || async {
        let job = jobs.get("paid-shot").await.ok()?;
        let status = job.status?;
        let decided = status.conditions.iter().any(|c| c.type_ == "Dispute" && c.reason == "Decided");
        (decided && status.phase == Some(RenderJobPhase::Succeeded)).then_some(())?;
        let a = Api::<WorkUnit>::namespaced(hub.clone(), disputed_a.metadata.namespace.as_deref()?)
            .get(disputed_a.metadata.name.as_deref()?)
            .await
            .ok()?;
        let b = Api::<WorkUnit>::namespaced(hub.clone(), disputed_b.metadata.namespace.as_deref()?)
            .get(disputed_b.metadata.name.as_deref()?)
            .await
            .ok()?;
        Some((a, b))
    })
    .await;
    assert_eq!(label(&rejected, labels::BILLING), Some("forfeited"));
    assert_eq!(label(&rejected, "pictor.network/verdict"), Some("mismatch"));
    assert_eq!(label(&cleared, labels::BILLING), Some("accrued"));

    // Everything owed is paid.
    let (settlements, units) =
        eventually("every accrued unit in a confirmed settlement", Duration::from_secs(180), || async {
            let units = units_api.list(&of_job).await.ok()?.items;
            let settlements = billing::settlements(&hub).await.ok()?;
            let (_, paid_uids) = billing::confirmed(&settlements);
            let paid: BTreeSet<&String> = paid_uids.iter().collect();
            let accrued: Vec<&WorkUnit> =
                units.iter().filter(|u| label(u, labels::BILLING) == Some("accrued")).collect();
            let all_paid =
                accrued.iter().all(|u| u.metadata.uid.as_ref().is_some_and(|id| paid.contains(id)));
            (all_paid && billing::all_confirmed(&settlements)).then_some((settlements, units))
        })
        .await;

    let accrued: Vec<&WorkUnit> =
        units.iter().filter(|u| label(u, labels::BILLING) == Some("accrued")).collect();
    let mut metered: BTreeMap<String, u64> = BTreeMap::new();
    for u in &accrued {
        assert_eq!(u.status.as_ref().and_then(|s| s.phase), Some(WorkUnitPhase::Succeeded));
        *metered.entry(payout[member_of(u)].clone()).or_default() += billing_marks::amount_octas(u) as u64;
    }
    let (paid, paid_uids) = billing::confirmed(&settlements);
    assert_eq!(paid, metered, "each provider paid exactly its metered amount");
    assert_eq!(paid_uids.len(), paid_uids.iter().collect::<BTreeSet<_>>().len(), "no unit paid twice");
    assert!(!paid_uids.contains(rejected.metadata.uid.as_ref().unwrap()), "the rejected chunk is never paid");
    for (address, octas) in &metered {
        assert_eq!(node.balance(address.parse().unwrap()), *octas, "balance of {address} on the chain");
    }
    let job = jobs.get("paid-shot").await.unwrap();
    let cost = job.status.unwrap().cost_octas;
    assert_eq!(cost as u64, metered.values().sum::<u64>(), "the job's cost is the sum of its paid units");

    // No unit was settled before its dispute window closed (creation times are whole seconds).
    let payable_after: BTreeMap<&str, k8s_openapi::jiff::Timestamp> = accrued
        .iter()
        .map(|u| (u.metadata.uid.as_deref().unwrap(), billing_marks::payable_after(u).unwrap()))
        .collect();
    for s in &settlements {
        let made = s.metadata.creation_timestamp.clone().unwrap().0;
        for unit in &s.spec.units {
            if let Some(after) = payable_after.get(unit.uid.as_str()) {
                assert!(
                    made.as_second() >= after.as_second(),
                    "{} settled at {made}, payable after {after}",
                    unit.name
                );
            }
        }
    }
    let clusters: Api<GpuCluster> = Api::all(hub.clone());
    for (member, address) in &payout {
        eventually(&format!("earnings of {member}"), Duration::from_secs(60), || async {
            let e = clusters.get(member).await.ok()?.status?.earnings?;
            (e.paid_octas as u64 == metered[address] && e.pending_octas == 0).then_some(())
        })
        .await;
    }
    eprintln!(
        "paid {} to member-a and {} to member-b in {} settlements; job cost {cost} octas; billing e2e wall time {:?}",
        metered[&payout["member-a"]],
        metered[&payout["member-b"]],
        settlements.len(),
        started.elapsed()
    );
}
