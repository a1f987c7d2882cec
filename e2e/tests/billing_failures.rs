//! What stops a payout, and what happens when it clears: an empty treasury, a payout address
//! billing refuses before signing (the treasury's own; the framework's 0x0–0xf are refused by
//! the API server already), an Aptos node that cannot be reached. Each shows as a condition with its
//! reason (and an Event); once it clears, the provider is paid, and nothing is paid twice.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use pictor_crds::v1alpha1::{GpuCluster, Settlement, SettlementPhase};
use pictor_e2e::billing::{self, LOCAL_TREASURY_KEY};
use pictor_e2e::network::{self, eventually};
use pictor_e2e::{ControlPlane, ControlPlaneOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PRICE: i64 = 360_000; // octas per GPU-hour: 100 octas per GPU-second
const GPU_SECONDS: i64 = 50; // 5,000 octas per unit

fn ready_reason(s: &Settlement) -> Option<(String, String)> {
    let c = s.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.reason.clone(), c.message.clone()))
}

fn phase(s: &Settlement) -> SettlementPhase {
    s.status.as_ref().and_then(|st| st.phase).unwrap_or_default()
}

async fn condition_on_some_settlement(hub: &kube::Client, reason: &str) -> (String, String) {
    eventually(&format!("a settlement with condition reason {reason}"), Duration::from_secs(30), || async {
        let all = billing::settlements(hub).await.ok()?;
        all.iter().find_map(|s| {
            let (r, message) = ready_reason(s)?;
            (r == reason).then(|| (s.metadata.name.clone().unwrap_or_default(), message))
        })
    })
    .await
}

async fn event_with_reason(hub: &kube::Client, reason: &str) {
    let events: Api<Event> = Api::all(hub.clone());
    eventually(&format!("an Event with reason {reason}"), Duration::from_secs(20), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.iter().any(|e| e.reason.as_deref() == Some(reason)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_treasury_a_refused_address_and_an_unreachable_node_are_conditions_and_pay_once_cleared() {
    let started = Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 0, kube_scheduler: false }).await.unwrap();
    plane.install_crds().await.unwrap();
    let hub = plane.hub.client().await.unwrap();
    let treasury = billing::treasury_address(LOCAL_TREASURY_KEY);
    // The treasury starts empty.
    let node = billing::local_chain(&hub, 0).await.unwrap();

    let good = billing::payout_address(1);
    // 0x1 is the Aptos framework's address: with default account resources a payout there
    // commits and is lost. The API server refuses it with the reason.
    let kubeconfig = plane.run_dir().join("framework.kubeconfig");
    let framework =
        network::member_add(&plane.hub, "framework", "0x1", &["NVIDIA-H100-80GB-HBM3=360000"], &kubeconfig)
            .unwrap_err()
            .to_string();
    assert!(framework.contains("reserved address of the Aptos framework"), "{framework}");
    // A provider that gives the treasury's own account: billing refuses it before signing.
    let treasury_text = treasury.to_string();
    let refused = treasury_text.as_str();
    for (provider, address) in [("good", good.as_str()), ("typo", refused)] {
        let kubeconfig = plane.run_dir().join(format!("{provider}.kubeconfig"));
        network::member_add(&plane.hub, provider, address, &["NVIDIA-H100-80GB-HBM3=360000"], &kubeconfig)
            .unwrap();
        billing::accrued_units(&hub, provider, 2, GPU_SECONDS, PRICE).await.unwrap();
    }
    let owed_per_provider = 2 * (GPU_SECONDS * PRICE / 3600) as u64;
    let _billing =
        billing::start_billing(&plane, "billing", &node.url(), &billing::settle_at_once()).unwrap();

    // 1. Empty treasury: a condition that says to fund it, an Event, and nothing on chain.
    let (name, message) = condition_on_some_settlement(&hub, "TreasuryInsufficientFunds").await;
    eprintln!("empty treasury: {name}: {message}");
    assert!(message.contains("fund the treasury"), "{message}");
    assert!(!message.contains(&LOCAL_TREASURY_KEY[2..20]), "the key never shows: {message}");
    event_with_reason(&hub, "TreasuryInsufficientFunds").await;
    // A member still owed for verified work is not removed by accident.
    let refused_removal = network::member_remove(&plane.hub, "good", &[]).unwrap();
    let stderr = String::from_utf8_lossy(&refused_removal.stderr);
    assert!(!refused_removal.status.success(), "{stderr}");
    assert!(stderr.contains("still owed") && stderr.contains("--forfeit-earnings"), "{stderr}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(node.committed().is_empty(), "nothing is signed while the treasury cannot pay");

    // Funded: the good provider is paid; billing refuses the payout to the treasury itself.
    node.fund(treasury, 1_000_000_000);
    let refused_settlement =
        eventually("the payout to the treasury Failed", Duration::from_secs(30), || async {
            let all = billing::settlements(&hub).await.ok()?;
            all.into_iter().find(|s| s.spec.provider == "typo" && phase(s) == SettlementPhase::Failed)
        })
        .await;
    let (reason, message) = ready_reason(&refused_settlement).unwrap();
    eprintln!("refused address: {reason}: {message}");
    assert_eq!(reason, "PayoutAddressRejected");
    assert!(
        message.contains("spec.payoutAddress") && message.contains("treasury's own account"),
        "{message}"
    );
    event_with_reason(&hub, "PayoutAddressRejected").await;
    eventually("the good provider paid", Duration::from_secs(30), || async {
        (node.balance(good.parse().unwrap()) == owed_per_provider).then_some(())
    })
    .await;
    // The refused provider is withheld, not retried: one failed transaction, no more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let typo_settlements =
        billing::settlements(&hub).await.unwrap().into_iter().filter(|s| s.spec.provider == "typo").count();
    assert_eq!(typo_settlements, 1, "no new payout to the same refused address");

    // 2. Unreachable node: new work for the good provider waits with a condition.
    node.go_offline().await;
    let more = billing::accrued_units_named(&hub, "good", "late", 1, GPU_SECONDS, PRICE).await.unwrap();
    assert_eq!(more.len(), 1);
    let (name, message) = condition_on_some_settlement(&hub, "NodeUnreachable").await;
    eprintln!("unreachable node: {name}: {message}");
    assert!(message.contains(&node.url()), "{message}");
    node.go_online().await.unwrap();

    // 3. The provider fixes its address: its units are settled again, to the new address.
    let fixed = billing::payout_address(2);
    let clusters: Api<GpuCluster> = Api::all(hub.clone());
    clusters
        .patch(
            "typo",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"payoutAddress": fixed}})),
        )
        .await
        .unwrap();
    let settlements = eventually("everything paid", Duration::from_secs(60), || async {
        let all = billing::settlements(&hub).await.ok()?;
        let open =
            all.iter().any(|s| !matches!(phase(s), SettlementPhase::Confirmed | SettlementPhase::Failed));
        let fixed_paid =
            all.iter().any(|s| s.spec.payout_address == fixed && phase(s) == SettlementPhase::Confirmed);
        (!open && fixed_paid && node.balance(good.parse().unwrap()) == owed_per_provider * 3 / 2)
            .then_some(all)
    })
    .await;

    // Paid once each: balances, transfers on chain, and units across Confirmed settlements.
    assert_eq!(node.balance(fixed.parse().unwrap()), owed_per_provider);
    assert!(
        !node.committed().iter().any(|t| t.transfers.iter().any(|(to, _)| *to == treasury)),
        "nothing was sent to the refused address"
    );
    let mut transfers: BTreeMap<String, u64> = BTreeMap::new();
    for t in node.committed().iter().filter(|t| t.success) {
        for (to, octas) in &t.transfers {
            *transfers.entry(to.to_string()).or_default() += octas;
        }
    }
    let (paid, uids) = billing::confirmed(&settlements);
    let unique: std::collections::BTreeSet<_> = uids.iter().collect();
    assert_eq!(unique.len(), uids.len(), "a unit in two paid settlements");
    assert_eq!(uids.len(), 5, "every unit paid");
    assert_eq!(paid[&good], owed_per_provider * 3 / 2);
    assert_eq!(paid[&fixed], owed_per_provider);
    assert_eq!(
        transfers.values().sum::<u64>(),
        paid.values().sum::<u64>(),
        "chain and hub agree: {transfers:?}"
    );
    let failed_on_chain = node.committed().iter().filter(|t| !t.success).count();
    assert_eq!(failed_on_chain, 0, "the refused payout was never signed, so nothing failed on chain");
    eprintln!("billing failures e2e wall time {:?}", started.elapsed());
}
