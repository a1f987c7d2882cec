//! Benchmark: how fast pictor-billing pays verified units, in settlements per second and in
//! transactions per 1,000 units, on the real hub API server and the Aptos test node.
//!
//! Baseline, in the same run: the same controller paying one transaction per unit
//! (`--max-units-per-settlement=1`), as a payout-per-task network would. Batched: up to
//! `--batch` units per Settlement. Each pays its own, fresh set of units. Prints both and the
//! ratios.

use clap::Parser;
use pictor_aptos_test_node::TestNode;
use pictor_e2e::billing;
use pictor_e2e::{ControlPlane, ControlPlaneOptions, network};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Providers.
    #[arg(long, default_value_t = 20)]
    providers: usize,
    /// Verified units per provider, batched run.
    #[arg(long, default_value_t = 100)]
    units_per_provider: usize,
    /// Verified units per provider, baseline run (one transaction each, so fewer).
    #[arg(long, default_value_t = 10)]
    baseline_units_per_provider: usize,
    /// Units per Settlement in the batched run.
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

struct Run {
    units: usize,
    settlements: usize,
    seconds: f64,
}

impl Run {
    fn print(&self, what: &str) {
        println!(
            "{what}: {} units paid in {} settlements in {:.2} s: {:.1} settlements/s, {:.1} units/s, {:.1} transactions per 1,000 verified units",
            self.units,
            self.settlements,
            self.seconds,
            self.settlements as f64 / self.seconds,
            self.units as f64 / self.seconds,
            self.settlements as f64 * 1000.0 / self.units as f64
        );
    }
}

async fn pay(
    plane: &ControlPlane,
    hub: &kube::Client,
    node: &TestNode,
    prefix: &str,
    providers: &[String],
    per_provider: usize,
    batch: usize,
) -> Run {
    let mut uids = BTreeSet::new();
    for provider in providers {
        for unit in
            billing::accrued_units_named(hub, provider, prefix, per_provider, 36, 100_000).await.unwrap()
        {
            uids.insert(unit.metadata.uid.unwrap());
        }
    }
    let mut flags = billing::settle_at_once();
    flags.push(format!("--max-units-per-settlement={batch}"));
    let started = Instant::now();
    let mut process =
        billing::start_billing(plane, &format!("billing-{prefix}"), &node.url(), &flags).unwrap();
    let settlements = loop {
        assert!(process.exited().is_none(), "billing exited: {}", process.log_tail(20));
        assert!(started.elapsed() < Duration::from_secs(1800), "not paid in 30 minutes");
        let all = billing::settlements(hub).await.unwrap();
        let mine: Vec<_> =
            all.into_iter().filter(|s| s.spec.units.iter().any(|u| uids.contains(&u.uid))).collect();
        let (_, paid) = billing::confirmed(&mine);
        if paid.len() == uids.len() && billing::all_confirmed(&mine) {
            break mine;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    drop(process);
    // The killed controller's Lease would hold the next run back for its duration: not billing's
    // speed, so it goes.
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(hub.clone(), billing::NAMESPACE);
    let _ = leases.delete("pictor-billing", &Default::default()).await;
    Run { units: uids.len(), settlements: settlements.len(), seconds }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 0, kube_scheduler: false }).await.unwrap();
    plane.install_crds().await.unwrap();
    let hub = plane.hub.client().await.unwrap();
    let node = billing::local_chain(&hub, u64::MAX / 4).await.unwrap();
    let mut providers = Vec::new();
    for i in 0..args.providers {
        let name = format!("provider-{i:03}");
        let kubeconfig = plane.run_dir().join(format!("{name}.kubeconfig"));
        network::member_add(
            &plane.hub,
            &name,
            &billing::payout_address(i as u64 + 1),
            &["NVIDIA-H100-80GB-HBM3=100000"],
            &kubeconfig,
        )
        .unwrap();
        providers.push(name);
    }
    // Build the binary before timing anything.
    pictor_e2e::workspace_binary("pictor-billing", "pictor-billing");

    let baseline = pay(&plane, &hub, &node, "base", &providers, args.baseline_units_per_provider, 1).await;
    baseline.print("baseline, one transaction per unit");
    let batched = pay(&plane, &hub, &node, "batch", &providers, args.units_per_provider, args.batch).await;
    batched.print(&format!("pictor-billing, up to {} units per settlement", args.batch));
    let units_per_second = |r: &Run| r.units as f64 / r.seconds;
    let tx_per_thousand = |r: &Run| r.settlements as f64 * 1000.0 / r.units as f64;
    println!(
        "ratio batched / baseline: units paid per second {:.1}x; transactions per 1,000 units {:.4}x",
        units_per_second(&batched) / units_per_second(&baseline),
        tx_per_thousand(&batched) / tx_per_thousand(&baseline)
    );
    let failed = node.committed().iter().filter(|t| !t.success).count();
    println!("{} transactions committed, {failed} failed", node.committed().len());
}
