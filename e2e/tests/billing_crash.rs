//! Exactly-once settlement under crashes: pictor-billing is stopped dead at every step of a
//! payout (after signing, after recording, after submitting, before confirming), over and over
//! across many Settlements, and restarted each time. In the end every provider's balance on the
//! Aptos test node is exactly what it was owed, each Settlement's transaction executed once, and
//! no unit is in two paid Settlements.
//!
//! The node behaves like a public endpoint today: a load balancer over a fresh backend and one
//! [`LAG_BLOCKS`] blocks behind, each answer drawn from either, with APT a fungible asset,
//! default account resources, short addresses and metered gas. Payouts expire after
//! [`TTL_SECONDS`], less than the lag: a lagging backend answers 404 for a transaction the fresh
//! one committed, while the fresh one's clock is past its expiry — the double payment billing
//! must not make. Both backends' ledgers are checked in the end.

use kube::api::{Api, DeleteParams, ListParams};
use pictor_aptos_test_node::{Lag, Realism};
use pictor_crds::v1alpha1::{GpuCluster, WorkUnit};
use pictor_e2e::billing;
use pictor_e2e::network::{self, eventually};
use pictor_e2e::{ControlPlane, ControlPlaneOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const PROVIDERS: [(&str, usize); 3] = [("p1", 7), ("p2", 5), ("p3", 4)];
const GPU_SECONDS: i64 = 36;
/// Blocks the lagging backend is behind (50 ms each): 3 s.
const LAG_BLOCKS: usize = 60;
/// Seconds a payout stays valid: less than the lag.
const TTL_SECONDS: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_at_every_step_pay_every_provider_exactly_once() {
    let started = Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 0, kube_scheduler: false }).await.unwrap();
    plane.install_crds().await.unwrap();
    let hub = plane.hub.client().await.unwrap();
    let realism = Realism::current_network(Lag { blocks: LAG_BLOCKS });
    let node = billing::local_chain_like(&hub, 1_000_000_000_000, realism).await.unwrap();

    let mut owed: BTreeMap<String, u64> = BTreeMap::new();
    let mut all_uids = BTreeSet::new();
    for (i, (provider, count)) in PROVIDERS.iter().enumerate() {
        let address = billing::payout_address(i as u64 + 1);
        let kubeconfig = plane.run_dir().join(format!("{provider}.kubeconfig"));
        network::member_add(&plane.hub, provider, &address, &["NVIDIA-H100-80GB-HBM3=100000"], &kubeconfig)
            .unwrap();
        // Prices differ per provider so a payment to the wrong one cannot go unnoticed.
        let price = 100_000 * (i as i64 + 1);
        for unit in billing::accrued_units(&hub, provider, *count, GPU_SECONDS, price).await.unwrap() {
            *owed.entry(address.clone()).or_default() += (GPU_SECONDS * price / 3600) as u64;
            all_uids.insert(unit.metadata.uid.unwrap());
        }
    }
    // One unit per settlement: many settlements, so the crashes land all over their lives.
    let expected_settlements: usize = PROVIDERS.iter().map(|(_, n)| n).sum();

    // Stop dead at each step, at its first, second and third occurrence, then once more at each.
    let mut flags = billing::settle_at_once();
    flags.push("--max-units-per-settlement=1".into());
    flags.push(format!("--transaction-ttl-seconds={TTL_SECONDS}"));
    let mut crashes: BTreeMap<&str, usize> = BTreeMap::new();
    let rounds: Vec<String> = [1, 2, 3, 1]
        .iter()
        .flat_map(|n| ["signed", "recorded", "submitted", "confirming"].map(|step| format!("{step}:{n}")))
        .collect();
    for (i, crash_at) in rounds.iter().enumerate() {
        let mut args = flags.clone();
        args.push(format!("--crash-at={crash_at}"));
        let mut process =
            billing::start_billing(&plane, &format!("billing-{i:02}"), &node.url(), &args).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let exit = loop {
            if let Some(status) = process.exited() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        match exit {
            Some(status) if status.code() == Some(86) => {
                *crashes.entry(crash_at.split(':').next().unwrap()).or_default() += 1;
            }
            Some(status) => {
                panic!("billing exited with {status} at round {crash_at}: {}", process.log_tail(30))
            }
            // Nothing left to pay reaches that step any more.
            None => {}
        }
    }
    eprintln!("crashes by step over {} rounds: {crashes:?}", rounds.len());
    for step in ["signed", "recorded", "submitted", "confirming"] {
        assert!(crashes.get(step).copied().unwrap_or(0) >= 2, "step {step} crashed too rarely: {crashes:?}");
    }
    let crashes: usize = crashes.values().sum();

    let _billing = billing::start_billing(&plane, "billing-final", &node.url(), &flags).unwrap();
    let settlements = eventually("every settlement confirmed", Duration::from_secs(180), || async {
        let all = billing::settlements(&hub).await.ok()?;
        (all.len() == expected_settlements && billing::all_confirmed(&all)).then_some(all)
    })
    .await;

    // The hub's record: each unit in exactly one paid Settlement, each provider paid its due.
    let (paid, uids) = billing::confirmed(&settlements);
    assert_eq!(paid, owed, "paid per payout address");
    assert_eq!(uids.len(), all_uids.len(), "no unit paid twice");
    assert_eq!(uids.into_iter().collect::<BTreeSet<_>>(), all_uids, "no verified unit left unpaid");

    // The chain's record, on both backends once the lagging one has caught up: balances, and
    // one successful transfer per Settlement.
    let hashes: BTreeSet<String> =
        settlements.iter().filter_map(|s| s.status.clone()?.transaction_hash).collect();
    // Two settlements that recorded the same bytes would be confirmed by one transfer.
    assert_eq!(hashes.len(), settlements.len(), "each settlement has a transaction of its own");
    let fresh = node.committed();
    let fresh_version = node.ledger_version();
    eventually("the lagging backend caught up", Duration::from_secs(30), || async {
        (node.replica_version() >= Some(fresh_version)).then_some(())
    })
    .await;
    let treasury = billing::treasury_address(billing::LOCAL_TREASURY_KEY);
    let (lagging, _) = node.replica_view(treasury).expect("a lagging backend");
    let record: Vec<String> = settlements
        .iter()
        .map(|s| {
            let st = s.status.clone().unwrap_or_default();
            format!(
                "{} {} seq {:?} hash {:?} version {:?} failed {:?}",
                s.spec.payout_address,
                s.spec.amount_octas,
                st.sequence_number,
                st.transaction_hash,
                st.ledger_version,
                st.failed_transactions
            )
        })
        .collect();
    for (view, committed) in [("fresh", &fresh), ("lagging", &lagging)] {
        let mut paid_on_chain: BTreeMap<String, u64> = BTreeMap::new();
        for t in committed.iter().filter(|t| t.success) {
            for (to, octas) in &t.transfers {
                *paid_on_chain.entry(to.to_string()).or_default() += octas;
            }
        }
        for (address, octas) in &owed {
            let parsed: aptos_sdk::AccountAddress = address.parse().unwrap();
            let balance = match view {
                "fresh" => node.balance(parsed),
                _ => node.replica_view(parsed).unwrap().1,
            };
            assert_eq!(
                balance, *octas,
                "balance of {address} on the {view} backend: {record:#?} {committed:#?}"
            );
            assert_eq!(paid_on_chain.get(&parsed.to_string()), Some(octas), "paid to {address} ({view})");
        }
        let succeeded: Vec<_> = committed.iter().filter(|t| t.success).collect();
        let double_payments = succeeded.len().saturating_sub(hashes.len())
            + succeeded.iter().filter(|t| !hashes.contains(&t.hash)).count();
        eprintln!(
            "{view} backend: {} settlements, {} successful transfers, {} transactions committed, {double_payments} double payments",
            settlements.len(),
            succeeded.len(),
            committed.len()
        );
        assert_eq!(double_payments, 0, "double payments on the {view} backend: {committed:#?}");
        assert_eq!(succeeded.len(), expected_settlements, "one transfer per settlement: {committed:#?}");
        assert_eq!(succeeded.iter().map(|t| t.hash.clone()).collect::<BTreeSet<_>>(), hashes);
    }
    let signed_again = settlements
        .iter()
        .filter(|s| s.status.as_ref().is_some_and(|st| !st.failed_transactions.is_empty()))
        .count();
    eprintln!(
        "{} settlements paid exactly once after {crashes} crashes; {} transactions committed in all; {signed_again} settlements with failed transactions",
        settlements.len(),
        fresh.len()
    );

    // Earnings in each provider's GpuCluster status, and paid units may now be deleted.
    let clusters: Api<GpuCluster> = Api::all(hub.clone());
    for (i, (provider, _)) in PROVIDERS.iter().enumerate() {
        let address = billing::payout_address(i as u64 + 1);
        eventually(&format!("earnings of {provider}"), Duration::from_secs(30), || async {
            let e = clusters.get(provider).await.ok()?.status?.earnings?;
            (e.paid_octas as u64 == owed[&address] && e.pending_octas == 0).then_some(())
        })
        .await;
    }
    // A provider that has been paid everything may leave; its units go with its namespace.
    let removed = network::member_remove(&plane.hub, "p1", &[]).unwrap();
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(hub.clone());
    eventually("p1's namespace gone", Duration::from_secs(60), || async {
        namespaces.get_opt("pictor-member-p1").await.ok()?.is_none().then_some(())
    })
    .await;
    let units: Api<WorkUnit> = Api::all(hub.clone());
    for unit in units.list(&ListParams::default()).await.unwrap() {
        Api::<WorkUnit>::namespaced(hub.clone(), unit.metadata.namespace.as_deref().unwrap())
            .delete(unit.metadata.name.as_deref().unwrap(), &DeleteParams::default())
            .await
            .unwrap();
    }
    eventually("paid units released by billing and gone", Duration::from_secs(30), || async {
        units.list(&ListParams::default()).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    eprintln!("billing crash e2e wall time {:?}", started.elapsed());
}
