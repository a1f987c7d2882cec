//! Billing against what real Aptos networks do, one test-node mode after another, on one hub:
//! a public endpoint (a load balancer with a lagging backend, APT a fungible asset, default
//! account resources, addresses written without leading zeros, metered gas) that rate-limits
//! (429), whose mempool fills up (507), where a payout that fits the balance but not its gas
//! fails the epilogue (PROLOGUE_ECANT_PAY_GAS_DEPOSIT), and that is reset to a new chain id
//! (a devnet reset). Each shows as the right condition reason and Event, and every provider is
//! paid exactly once.

use aptos_sdk::AccountAddress;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use pictor_aptos_test_node::{Lag, Realism};
use pictor_crds::v1alpha1::{Settlement, SettlementPhase};
use pictor_e2e::billing::{self, LOCAL_TREASURY_KEY};
use pictor_e2e::network::{self, eventually};
use pictor_e2e::{ControlPlane, ControlPlaneOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PRICE: i64 = 36_000_000; // octas per GPU-hour: 10,000 octas per GPU-second
const GPU_SECONDS: i64 = 50; // 500,000 octas per unit
const UNIT_OCTAS: u64 = (GPU_SECONDS * PRICE / 3600) as u64;
/// Billing's default gas settings: the most a payout's gas may cost. The prologue checks the
/// treasury holds that much, so the epilogue can fail only on a payout above it.
const MAX_FEE: u64 = 2_000 * 100;
const _: () = assert!(UNIT_OCTAS + 500 >= MAX_FEE, "a unit must be worth more than the most gas");

fn phase(s: &Settlement) -> SettlementPhase {
    s.status.as_ref().and_then(|st| st.phase).unwrap_or_default()
}

fn ready(s: &Settlement) -> Option<(String, String)> {
    let c = s.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.reason.clone(), c.message.clone()))
}

async fn event_with_reason(hub: &kube::Client, reason: &str) -> String {
    let events: Api<Event> = Api::all(hub.clone());
    eventually(&format!("an Event with reason {reason}"), Duration::from_secs(60), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some(reason)).and_then(|e| e.message)
    })
    .await
}

/// The settlement covering the unit with `uid`, once `accept` says yes.
async fn settlement_of(
    hub: &kube::Client,
    uid: &str,
    what: &str,
    accept: impl Fn(&Settlement) -> bool,
) -> Settlement {
    eventually(what, Duration::from_secs(60), || async {
        let all = billing::settlements(hub).await.ok()?;
        all.into_iter().filter(|s| s.spec.units.iter().any(|u| u.uid == uid)).find(|s| accept(s))
    })
    .await
}

async fn one_unit(hub: &kube::Client, member: &str, prefix: &str) -> String {
    let units = billing::accrued_units_named(hub, member, prefix, 1, GPU_SECONDS, PRICE).await.unwrap();
    units[0].metadata.uid.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_holds_on_networks_that_behave_like_devnet_and_testnet() {
    let started = Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 0, kube_scheduler: false }).await.unwrap();
    plane.install_crds().await.unwrap();
    let hub = plane.hub.client().await.unwrap();
    let treasury = billing::treasury_address(LOCAL_TREASURY_KEY);
    let realism = Realism::current_network(Lag { blocks: 20 });
    let node = billing::local_chain_like(&hub, 1_000_000_000, realism).await.unwrap();

    // A payout address with leading zeros, which the node writes without them.
    let zeros = format!("0x{:0>64}", "beef01");
    let plain = billing::payout_address(2);
    for (provider, address) in [("zeros", zeros.as_str()), ("plain", plain.as_str())] {
        let kubeconfig = plane.run_dir().join(format!("{provider}.kubeconfig"));
        network::member_add(&plane.hub, provider, address, &["NVIDIA-H100-80GB-HBM3=36000000"], &kubeconfig)
            .unwrap();
        billing::accrued_units(&hub, provider, 2, GPU_SECONDS, PRICE).await.unwrap();
    }
    let mut owed: BTreeMap<AccountAddress, u64> = BTreeMap::new();
    for address in [&zeros, &plain] {
        owed.insert(address.parse().unwrap(), 2 * UNIT_OCTAS);
    }

    // 1. A gateway that rate-limits: one request in five is answered 429. Billing waits what
    // the gateway asks and pays.
    node.rate_limit(5);
    let mut flags = billing::settle_at_once();
    flags.push("--transaction-ttl-seconds=10".into());
    let mut process = billing::start_billing(&plane, "billing", &node.url(), &flags).unwrap();
    eventually("both providers paid through the rate limit", Duration::from_secs(90), || async {
        owed.iter().all(|(a, octas)| node.balance(*a) == *octas).then_some(())
    })
    .await;
    let limited = node.rate_limited();
    assert!(limited > 0, "the gateway limited nothing");
    // A limit that persists (every request refused) is a condition and an Event that say
    // rate-limited, not refused; once it lifts, the payout goes through.
    node.rate_limit(1);
    let limited_uid = one_unit(&hub, "zeros", "limited").await;
    let message = event_with_reason(&hub, "NodeRateLimited").await;
    eprintln!("429: {limited} answered 429 while paying; then every request; Event: {message}");
    assert!(message.contains("429") && message.contains("backoff"), "{message}");
    node.rate_limit(0);
    settlement_of(&hub, &limited_uid, "the payout held by the rate limit Confirmed", |s| {
        phase(s) == SettlementPhase::Confirmed
    })
    .await;
    *owed.get_mut(&zeros.parse().unwrap()).unwrap() += UNIT_OCTAS;

    // 2. A full mempool: submissions answered 507. The recorded transaction waits and is
    // submitted again once there is room.
    node.set_mempool_full(true);
    let full_uid = one_unit(&hub, "plain", "full").await;
    let message = event_with_reason(&hub, "NodeBusy").await;
    eprintln!("507: Event: {message}");
    assert!(message.contains("507") && message.contains("submitted again"), "{message}");
    node.set_mempool_full(false);
    settlement_of(&hub, &full_uid, "the payout held by the full mempool Confirmed", |s| {
        phase(s) == SettlementPhase::Confirmed
    })
    .await;
    *owed.get_mut(&plain.parse().unwrap()).unwrap() += UNIT_OCTAS;
    assert!(node.mempool_full_answers() > 0);

    // 3. APT as a fungible asset: a payout that fits the balance but leaves less than its gas
    // fails the epilogue. The treasury is spent elsewhere between signing and commit.
    node.pause_blocks();
    let gas_uid = one_unit(&hub, "zeros", "gas").await;
    settlement_of(&hub, &gas_uid, "the payout signed", |s| phase(s) == SettlementPhase::Submitted).await;
    node.set_balance(treasury, UNIT_OCTAS + 500);
    node.resume_blocks();
    let message = event_with_reason(&hub, "TreasuryInsufficientFunds").await;
    eprintln!("gas: Event: {message}");
    let failed = node.committed().into_iter().find(|t| !t.success).expect("a failed payout on chain");
    assert!(failed.vm_status.contains("PROLOGUE_ECANT_PAY_GAS_DEPOSIT"), "{}", failed.vm_status);
    let waiting = settlement_of(&hub, &gas_uid, "the payout waiting for funds", |s| {
        ready(s).is_some_and(|(r, m)| r == "TreasuryInsufficientFunds" && m.contains("fund the treasury"))
    })
    .await;
    assert!(
        waiting.status.unwrap().failed_transactions.contains(&failed.hash),
        "the failed payout is recorded"
    );
    node.fund(treasury, 1_000_000_000);
    settlement_of(&hub, &gas_uid, "the payout Confirmed once funded", |s| {
        phase(s) == SettlementPhase::Confirmed
    })
    .await;
    *owed.get_mut(&zeros.parse().unwrap()).unwrap() += UNIT_OCTAS;

    // Paid exactly once so far, on the chain (both backends) and on the hub.
    let settlements = billing::settlements(&hub).await.unwrap();
    let (paid, uids) = billing::confirmed(&settlements);
    let paid: BTreeMap<AccountAddress, u64> =
        paid.into_iter().map(|(a, o)| (a.parse().unwrap(), o)).collect();
    assert_eq!(paid, owed, "the hub's record");
    assert_eq!(
        uids.len(),
        uids.iter().collect::<std::collections::BTreeSet<_>>().len(),
        "no unit paid twice"
    );
    let primary_version = node.ledger_version();
    eventually("the lagging backend caught up", Duration::from_secs(30), || async {
        (node.replica_version() >= Some(primary_version)).then_some(())
    })
    .await;
    for (address, octas) in &owed {
        assert_eq!(node.balance(*address), *octas, "balance of {address}");
        assert_eq!(
            node.replica_view(*address).unwrap().1,
            *octas,
            "balance of {address} on the lagging backend"
        );
    }
    let transfers: u64 =
        node.committed().iter().filter(|t| t.success).flat_map(|t| t.transfers.clone()).map(|(_, o)| o).sum();
    assert_eq!(transfers, owed.values().sum::<u64>(), "every successful transfer is a confirmed settlement");

    // 4. A devnet reset while a payout is in flight: the node now serves chain id 37, empty.
    // Whether the old transaction paid on the old chain cannot be known: billing holds the
    // settlement with a condition until the operator names the new chain.
    node.pause_blocks();
    let reset_uid = one_unit(&hub, "plain", "reset").await;
    settlement_of(&hub, &reset_uid, "the payout signed before the reset", |s| {
        phase(s) == SettlementPhase::Submitted
    })
    .await;
    node.reset_chain(37);
    node.fund(treasury, 1_000_000_000);
    node.resume_blocks();
    let held = settlement_of(&hub, &reset_uid, "the payout held on the changed chain", |s| {
        ready(s).is_some_and(|(r, _)| r == "ChainChanged")
    })
    .await;
    let (_, message) = ready(&held).unwrap();
    eprintln!("reset: {message}");
    assert!(message.contains("--chain-id=37"), "{message}");
    event_with_reason(&hub, "ChainChanged").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(node.committed().is_empty(), "nothing is paid on the new chain before the operator says so");

    drop(process);
    let mut with_chain = flags.clone();
    with_chain.push("--chain-id=37".into());
    process = billing::start_billing(&plane, "billing-chain-37", &node.url(), &with_chain).unwrap();
    settlement_of(&hub, &reset_uid, "the payout Confirmed on the new chain", |s| {
        phase(s) == SettlementPhase::Confirmed
    })
    .await;
    let message = event_with_reason(&hub, "ChainReset").await;
    eprintln!("reset acknowledged: {message}");
    let on_new_chain: Vec<_> = node.committed().into_iter().filter(|t| t.success).collect();
    assert_eq!(on_new_chain.len(), 1, "one payout on the new chain: {on_new_chain:#?}");
    assert_eq!(node.balance(plain.parse().unwrap()), UNIT_OCTAS);
    let settlements = billing::settlements(&hub).await.unwrap();
    let (_, uids) = billing::confirmed(&settlements);
    assert_eq!(
        uids.len(),
        uids.iter().collect::<std::collections::BTreeSet<_>>().len(),
        "no unit paid twice"
    );
    assert_eq!(uids.len(), 8, "every unit paid");
    let events: Api<Event> = Api::all(hub.clone());
    let refused: Vec<_> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("NodeRefused"))
        .filter_map(|e| e.message)
        .collect();
    assert!(refused.is_empty(), "nothing here is a refusal: {refused:?}");
    assert!(settlements.iter().all(|s| phase(s) == SettlementPhase::Confirmed), "all settled");
    drop(process);
    eprintln!("billing networks e2e wall time {:?}", started.elapsed());
}
