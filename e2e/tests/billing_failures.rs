//! What stops a payout, and what happens when it clears: a treasury that cannot cover one
//! provider's payout (the others are paid meanwhile), a payout address billing refuses before
//! signing (the treasury's own; the framework's 0x0–0xf are refused by the API server already),
//! Settlements billing did not make that do not match the hub's record, an Aptos node that
//! cannot be reached. Each shows as a condition with its reason (and an Event); once it clears,
//! the provider is paid, and nothing is paid twice or more than the hub metered.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use pictor_crds::contract::{BillingState, billing_marks, format_apt, labels};
use pictor_crds::v1alpha1::{GpuCluster, SettledUnit, Settlement, SettlementPhase, SettlementSpec, WorkUnit};
use pictor_e2e::billing::{self, LOCAL_TREASURY_KEY};
use pictor_e2e::network::{self, eventually};
use pictor_e2e::{ControlPlane, ControlPlaneOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PRICE: i64 = 360_000; // octas per GPU-hour: 100 octas per GPU-second
const GPU_SECONDS: i64 = 50; // 5,000 octas per unit
const BIG_GPU_SECONDS: i64 = 50_000; // 5,000,000 octas per unit
/// What the treasury starts with: a payout of 10,000 octas and its most gas (200,000) twice,
/// not the big provider's 10,000,000.
const TREASURY_OCTAS: u64 = 500_000;

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

/// A Settlement made by someone else than billing, paying `units` at `octas` each to
/// `provider` at `address`.
fn forged(name: &str, provider: &str, address: &str, units: &[WorkUnit], octas: i64) -> Settlement {
    let listed: Vec<SettledUnit> = units
        .iter()
        .map(|u| SettledUnit {
            namespace: u.metadata.namespace.clone().unwrap(),
            name: u.metadata.name.clone().unwrap(),
            uid: u.metadata.uid.clone().unwrap(),
            amount_octas: octas,
            work: None,
        })
        .collect();
    let amount_octas = octas * listed.len() as i64;
    let mut s = Settlement::new(
        name,
        SettlementSpec {
            provider: provider.into(),
            payout_address: address.into(),
            amount_octas,
            amount: format_apt(amount_octas as u64),
            unit_count: listed.len() as i64,
            units: listed,
        },
    );
    s.metadata.namespace = Some(billing::NAMESPACE.into());
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_treasury_a_forged_settlement_a_refused_address_and_an_unreachable_node_pay_once_cleared() {
    let started = Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 0, kube_scheduler: false }).await.unwrap();
    plane.install_crds().await.unwrap();
    let hub = plane.hub.client().await.unwrap();
    let treasury = billing::treasury_address(LOCAL_TREASURY_KEY);
    let node = billing::local_chain(&hub, TREASURY_OCTAS).await.unwrap();

    let good = billing::payout_address(1);
    let big = billing::payout_address(3);
    let forger = billing::payout_address(4);
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
    let mut units: BTreeMap<&str, Vec<WorkUnit>> = BTreeMap::new();
    for (provider, address, gpu_seconds) in [
        ("good", good.as_str(), GPU_SECONDS),
        ("typo", refused, GPU_SECONDS),
        ("big", big.as_str(), BIG_GPU_SECONDS),
        ("forger", forger.as_str(), GPU_SECONDS),
    ] {
        let kubeconfig = plane.run_dir().join(format!("{provider}.kubeconfig"));
        network::member_add(&plane.hub, provider, address, &["NVIDIA-H100-80GB-HBM3=360000"], &kubeconfig)
            .unwrap();
        units.insert(provider, billing::accrued_units(&hub, provider, 2, gpu_seconds, PRICE).await.unwrap());
    }
    let owed_per_provider = 2 * (GPU_SECONDS * PRICE / 3600) as u64;
    let owed_big = 2 * (BIG_GPU_SECONDS * PRICE / 3600) as u64;

    // Settlements billing did not make, there before it starts: the forger's own units at a
    // hundred times what the hub metered, and a disputed (held) unit at its metered amount.
    let mut disputed = billing::accrued_units_named(&hub, "forger", "disputed", 1, GPU_SECONDS, PRICE)
        .await
        .unwrap()
        .remove(0);
    let unit_api: Api<WorkUnit> = Api::namespaced(hub.clone(), "pictor-member-forger");
    let held = serde_json::json!({"metadata": {"labels": {labels::BILLING: BillingState::Held.as_str()}}});
    disputed = unit_api
        .patch(disputed.metadata.name.as_deref().unwrap(), &PatchParams::default(), &Patch::Merge(&held))
        .await
        .unwrap();
    let metered = billing_marks::amount_octas(&units["forger"][0]);
    let settlement_api: Api<Settlement> = Api::namespaced(hub.clone(), billing::NAMESPACE);
    for forgery in [
        forged("forged-inflated", "forger", &forger, &units["forger"], metered * 100),
        forged("forged-held", "forger", &forger, std::slice::from_ref(&disputed), metered),
    ] {
        settlement_api.create(&PostParams::default(), &forgery).await.unwrap();
    }
    let _billing =
        billing::start_billing(&plane, "billing", &node.url(), &billing::settle_at_once()).unwrap();

    // 1. Neither forgery is ever signed: each is Failed with the check it failed, and an Event.
    for (name, check) in [
        ("forged-inflated", format!("listed at {} octas, but the hub metered {metered}", metered * 100)),
        ("forged-held", "is held, not accrued".to_string()),
    ] {
        let failed = eventually(&format!("{name} Failed"), Duration::from_secs(30), || async {
            let s = settlement_api.get(name).await.ok()?;
            (phase(&s) == SettlementPhase::Failed).then_some(s)
        })
        .await;
        let (reason, message) = ready_reason(&failed).unwrap();
        eprintln!("forged: {name}: {reason}: {message}");
        assert_eq!(reason, "DoesNotMatchLedger");
        assert!(message.contains(&check), "{message}");
        assert!(failed.status.unwrap().transaction_hash.is_none(), "{name} was never signed");
    }
    event_with_reason(&hub, "DoesNotMatchLedger").await;

    // 2. A treasury short of the big provider's payout: a condition that says to fund it, an
    // Event, nothing signed for it; and meanwhile the others are paid, the forger exactly what
    // the hub metered.
    let (name, message) = condition_on_some_settlement(&hub, "TreasuryInsufficientFunds").await;
    eprintln!("short treasury: {name}: {message}");
    assert!(message.contains("fund the treasury"), "{message}");
    assert!(!message.contains(&LOCAL_TREASURY_KEY[2..20]), "the key never shows: {message}");
    event_with_reason(&hub, "TreasuryInsufficientFunds").await;
    eventually(
        "the good provider and the forger paid while the big one waits",
        Duration::from_secs(30),
        || async {
            (node.balance(good.parse().unwrap()) == owed_per_provider
                && node.balance(forger.parse().unwrap()) == owed_per_provider)
                .then_some(())
        },
    )
    .await;
    let waiting = billing::settlements(&hub).await.unwrap();
    let big_settlement = waiting.iter().find(|s| s.spec.provider == "big").unwrap();
    assert_eq!(phase(big_settlement), SettlementPhase::Pending);
    assert!(big_settlement.status.as_ref().unwrap().transaction_hash.is_none(), "nothing signed for it");
    assert_eq!(node.balance(big.parse().unwrap()), 0);
    // A member still owed for verified work is not removed by accident.
    let refused_removal = network::member_remove(&plane.hub, "big", &[]).unwrap();
    let stderr = String::from_utf8_lossy(&refused_removal.stderr);
    assert!(!refused_removal.status.success(), "{stderr}");
    assert!(stderr.contains("still owed") && stderr.contains("--forfeit-earnings"), "{stderr}");

    // Billing refuses the payout to the treasury itself.
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

    // Funded: the big provider is paid.
    node.fund(treasury, 1_000_000_000);
    eventually("the big provider paid once funded", Duration::from_secs(30), || async {
        (node.balance(big.parse().unwrap()) == owed_big).then_some(())
    })
    .await;
    // The refused provider is withheld, not retried: one failed transaction, no more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let typo_settlements =
        billing::settlements(&hub).await.unwrap().into_iter().filter(|s| s.spec.provider == "typo").count();
    assert_eq!(typo_settlements, 1, "no new payout to the same refused address");

    // 3. Unreachable node: new work for the good provider waits with a condition.
    node.go_offline().await;
    let more = billing::accrued_units_named(&hub, "good", "late", 1, GPU_SECONDS, PRICE).await.unwrap();
    assert_eq!(more.len(), 1);
    let (name, message) = condition_on_some_settlement(&hub, "NodeUnreachable").await;
    eprintln!("unreachable node: {name}: {message}");
    assert!(message.contains(&node.url()), "{message}");
    node.go_online().await.unwrap();

    // 4. The provider fixes its address: its units are settled again, to the new address.
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

    // Paid once each, exactly what the hub metered: balances, transfers on chain, and units
    // across Confirmed settlements.
    assert_eq!(node.balance(fixed.parse().unwrap()), owed_per_provider);
    assert_eq!(node.balance(forger.parse().unwrap()), owed_per_provider, "the forger, what the hub metered");
    assert_eq!(node.balance(big.parse().unwrap()), owed_big);
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
    assert_eq!(uids.len(), 9, "every accrued unit paid");
    assert!(!uids.contains(disputed.metadata.uid.as_ref().unwrap()), "the held unit is never paid");
    assert_eq!(paid[&good], owed_per_provider * 3 / 2);
    assert_eq!(paid[&fixed], owed_per_provider);
    assert_eq!(paid[&forger], owed_per_provider);
    assert_eq!(paid[&big], owed_big);
    assert_eq!(
        transfers.values().sum::<u64>(),
        paid.values().sum::<u64>(),
        "chain and hub agree: {transfers:?}"
    );
    let failed_on_chain = node.committed().iter().filter(|t| !t.success).count();
    assert_eq!(failed_on_chain, 0, "no refused payout was ever signed, so nothing failed on chain");
    eprintln!("billing failures e2e wall time {:?}", started.elapsed());
}
