//! `pictor-local`: the local Pictor network on this machine — a hub and two members with fake
//! GPU nodes on a real control plane, and where the machine can run them (root, containerd,
//! runc), two more members with a real node each that render a short animation with Blender —
//! for the demo and for development. The demo exits non-zero, saying why, when its end is wrong:
//! a job not Succeeded, a provider not paid exactly what the hub metered.

use clap::{Parser, Subcommand};
use pictor_crds::contract::{BillingState, labels};
use pictor_e2e::billing::{self, LOCAL_TREASURY_KEY};
use pictor_e2e::real_node::{RENDER_WORKER_IMAGE, RealNodeSpec, RealNodes};
use pictor_e2e::s3::render_store;
use pictor_e2e::{Cluster, ControlPlane, ControlPlaneOptions, fake_nodes, network, workspace_binary};
use std::collections::BTreeMap;
use std::time::Duration;

/// Prices of the real-node members: above what examples/renderjob.yaml pays per GPU-hour, so
/// the kwok jobs stay on the kwok members and only the real animation runs here.
const REAL_PRICES: [&str; 1] = ["NVIDIA-GeForce-RTX-4090=100000000"];
/// The product the real nodes' (fake-catalogue) GPUs are labelled with; no kwok node has it.
const REAL_MODEL: &str = "NVIDIA-GeForce-RTX-4090";
/// The animation the real nodes render.
const ANIMATION: &str = "anim";
const SCENE: &str = "s3://renders/scenes/anim.blend";

/// Prices of the demo's members, in octas per GPU-hour.
const PRICES: [&str; 4] = [
    "NVIDIA-H100-80GB-HBM3=90000000",
    "NVIDIA-GeForce-RTX-4090=40000000",
    "AMD-Instinct-MI300X=70000000",
    "AMD-Radeon-RX-7900-XTX=30000000",
];
use std::path::Path;

#[derive(Parser)]
#[command(about = "Runs the local Pictor network: a hub and members with fake GPU nodes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Starts the hub and two members and the Aptos test node, installs the CRDs, submits
    /// examples/, follows the jobs with `pictor watch`, and ends with their cost and each
    /// provider's settlement.
    Demo {
        /// Keep the network running until Ctrl-C, printing how to reach each cluster.
        #[arg(long)]
        hold: bool,
        /// Play every pod on kwok, even where this machine could run real nodes.
        #[arg(long)]
        no_real_nodes: bool,
    },
}

/// Runs the `pictor` CLI against the hub, its output going straight to the terminal.
fn pictor(hub: &Cluster, args: &[&str]) -> anyhow::Result<()> {
    println!("\n$ pictor {}", args.join(" "));
    let status = std::process::Command::new(workspace_binary("pictor-cli", "pictor"))
        .args(args)
        .env("PICTOR_HUB_KUBECONFIG", &hub.kubeconfig)
        .status()?;
    anyhow::ensure!(status.success(), "pictor {} failed", args.join(" "));
    Ok(())
}

fn show(title: &str, cluster: &Cluster, args: &[&str]) -> anyhow::Result<()> {
    println!("\n$ kubectl {}    # {title}", args.join(" "));
    let out = cluster.kubectl().args(args).output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        anyhow::bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client::client::builder=off".into()),
        )
        .init();
    let Command::Demo { hold, no_real_nodes } = Cli::parse().command;
    let real = match RealNodes::unavailable() {
        _ if no_real_nodes => None,
        Some(reason) => {
            println!("real nodes: not on this machine ({reason}); every pod is played by kwok");
            None
        }
        None => Some(()),
    };

    let started = std::time::Instant::now();
    let members = if real.is_some() { 4 } else { 2 };
    let plane = ControlPlane::start(ControlPlaneOptions { members, kube_scheduler: false }).await?;
    plane.install_crds().await?;
    let model = |short| fake_nodes::model(short).expect("a catalogue model");
    let fleets = [vec![(model("h100"), 4)], vec![(model("mi300x"), 1), (model("rx7900xtx"), 2)]];
    for (member, fleet) in plane.members.iter().zip(&fleets) {
        plane.add_nodes(member, fake_nodes::fleet(&member.name, fleet)).await?;
    }
    println!("local network up in {:.1?}: hub and {} members", started.elapsed(), plane.members.len());
    // Members c and d: a real node each (kubelet, containerd, runc; the device plugin serving two
    // fake RTX 4090s as device files), so the animation renders on one and is verified on the other.
    let real_nodes = match real {
        Some(()) => {
            let specs = plane.members[2..]
                .iter()
                .map(|m| RealNodeSpec {
                    cluster: m.clone(),
                    name: format!("{}-real", m.name),
                    gpu_model: "rtx4090".into(),
                    gpus: 2,
                })
                .collect();
            let nodes = RealNodes::start(&plane, specs).await?;
            println!(
                "real nodes Ready: {}",
                nodes.nodes().iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
            );
            Some(nodes)
        }
        None => None,
    };
    let storage = match &real_nodes {
        Some(nodes) => {
            let s3 = render_store(&plane, nodes.nodes()[0].ip.into(), SCENE, (160, 90, 8), "render-store")
                .await
                .map_err(anyhow::Error::msg)?;
            println!("S3 test server at {} holds {SCENE} (made by scripts/make-scene.py)", s3.endpoint);
            Some(s3)
        }
        None => None,
    };

    // The chain: a local Aptos test node (a test double of a fullnode's REST API; no network
    // here), the hub's treasury funded at genesis, its key in a Secret on the hub.
    let treasury = billing::treasury_address(LOCAL_TREASURY_KEY);
    let hub_client = plane.hub.client().await?;
    let node = billing::local_chain(&hub_client, 1_000 * 100_000_000).await?;
    println!(
        "Aptos test node at {} (chain id {}); treasury {treasury} holds 1000 APT",
        node.url(),
        node.chain_id()
    );

    // The hub's operator and billing, then each member joins with `pictor member add` and runs its
    // agent with nothing but the kubeconfig that command printed. Disputes are open for 10 s
    // here (an hour by default), so the demo sees its providers paid.
    let mut processes = vec![
        network::start_operator(&plane, 30, Some(5), &["--dispute-window-seconds=10"])?,
        billing::start_billing(&plane, "hub-pictor-billing", &node.url(), &billing::settle_at_once())?,
    ];
    for member in &plane.members {
        processes.push(network::start_scheduler(&plane, member)?);
    }
    // A community member with NVIDIA GPUs and a partner farm with AMD GPUs; with real nodes, two
    // more community members whose agents tell their pods where the storage is.
    let roles =
        [("community", "0xa11ce"), ("partner", "0xb0b"), ("community", "0xc4201"), ("community", "0xd0d0")];
    for (index, (member, (tier, payout))) in plane.members.iter().zip(roles).enumerate() {
        let agent_kubeconfig = network::agent_kubeconfig_path(&plane, member);
        println!(
            "$ pictor member add {} --tier {tier} --payout {payout} --region local -o {}",
            member.name,
            agent_kubeconfig.display()
        );
        let prices: &[&str] = if index < 2 { &PRICES } else { &REAL_PRICES };
        network::member_add_with_tier(&plane.hub, &member.name, tier, payout, prices, &agent_kubeconfig)?;
        let work_env: Vec<String> = match (&storage, index >= 2) {
            (Some(s3), true) => s3.work_env_flags(),
            _ => vec![],
        };
        processes.push(network::start_agent_with(
            &plane,
            member,
            &agent_kubeconfig,
            "pictor-scheduler",
            &work_env,
        )?);
    }
    network::wait_for_members(&plane, std::time::Duration::from_secs(120))
        .await
        .map_err(anyhow::Error::msg)?;

    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for example in ["renderjob.yaml", "trainingjob.yaml"] {
        pictor(&plane.hub, &["submit", "-f", &examples.join(example).display().to_string()])?;
    }
    if storage.is_some() {
        let animation = plane.run_dir().join("anim.yaml");
        std::fs::write(&animation, animation_job())?;
        pictor(&plane.hub, &["submit", "-f", &animation.display().to_string()])?;
    }
    for member in &plane.members {
        show(
            &format!("GPU nodes of {}", member.name),
            member,
            &[
                "get",
                "nodes",
                "-o",
                r"custom-columns=NODE:.metadata.name,PRODUCT:.metadata.labels.pictor\.network/gpu\.product,NVIDIA:.status.allocatable.nvidia\.com/gpu,AMD:.status.allocatable.amd\.com/gpu",
            ],
        )?;
    }
    pictor(&plane.hub, &["members"])?;

    // The jobs run: chunks and the training gang are placed on the members, their pods "run" on
    // kwok's fake GPUs for a few seconds each; `pictor watch` follows them until both finish.
    let mut watched = vec!["watch", "-n", "default", "classroom", "llama-finetune"];
    if storage.is_some() {
        watched.push(ANIMATION);
    }
    pictor(&plane.hub, &watched)?;
    show("where the work ran", &plane.hub, &["get", "workunits", "-A"])?;

    // Billing pays each provider once the units' dispute window has closed.
    let paid = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let settlements = billing::settlements(&hub_client).await.unwrap_or_default();
            if billing::all_confirmed(&settlements)
                && unpaid_units(&hub_client, &settlements).await == Some(0)
            {
                return settlements;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
    show("the jobs, their cost", &plane.hub, &["get", "renderjobs,trainingjobs", "-n", "default"])?;
    let job_cost = |kind: &str, name: &str| -> anyhow::Result<u64> {
        let out = plane
            .hub
            .kubectl()
            .args(["get", kind, name, "-n", "default", "-o", "jsonpath={.status.costOctas}"])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0))
    };
    let mut jobs = vec![("renderjob", "classroom"), ("trainingjob", "llama-finetune")];
    if storage.is_some() {
        jobs.push(("renderjob", ANIMATION));
    }
    let mut failures = vec![];
    let mut total_cost = 0;
    for (kind, name) in &jobs {
        let out = plane
            .hub
            .kubectl()
            .args(["get", kind, name, "-n", "default", "-o", "jsonpath={.status.phase}"])
            .output()?;
        let phase = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if phase != "Succeeded" {
            failures.push(format!("{kind} {name} ended {phase:?}, not Succeeded"));
        }
        total_cost += job_cost(kind, name)?;
    }
    println!(
        "\nOutputs: classroom writes its frames under file:///var/lib/pictor/renders/classroom/ (played by kwok: no pod really renders it)."
    );
    // Kept after the network stops (its run folder does not survive it).
    let sheet = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/demo/anim-contact-sheet.png");
    std::fs::create_dir_all(sheet.parent().expect("a folder"))?;
    let _ = std::fs::remove_file(&sheet);
    if let Some(s3) = &storage {
        // The submitter's view of the real frames: `pictor preview` reads them with the
        // submitter's storage settings (here, the environment) and draws a contact sheet.
        println!("\n$ pictor preview {ANIMATION} -n default -o {}", sheet.display());
        let status = std::process::Command::new(workspace_binary("pictor-cli", "pictor"))
            .args(["preview", ANIMATION, "-n", "default", "-o"])
            .arg(&sheet)
            .env("PICTOR_HUB_KUBECONFIG", &plane.hub.kubeconfig)
            .envs(s3.environment())
            .status()?;
        if !status.success() || !sheet.exists() {
            failures.push(format!("pictor preview {ANIMATION} drew no contact sheet"));
        }
    }
    show(
        "settlements on Aptos",
        &plane.hub,
        &["get", "settlements", "-n", billing::NAMESPACE, "-o", "wide"],
    )?;
    pictor(&plane.hub, &["earnings"])?;
    match paid {
        Ok(settlements) => {
            let (by_address, _) = billing::confirmed(&settlements);
            println!("\nBalances on the Aptos test node:");
            let settled: u64 = by_address.values().sum();
            for (address, &octas) in &by_address {
                let balance = node.balance(address.parse()?);
                println!(
                    "  {address}: {} (settled {})",
                    pictor_crds::contract::format_apt(balance),
                    pictor_crds::contract::format_apt(octas)
                );
            }
            println!(
                "  the jobs cost {} in all; the providers were paid {}{}",
                pictor_crds::contract::format_apt(total_cost),
                pictor_crds::contract::format_apt(settled),
                if total_cost == settled { ", exactly" } else { " (they differ!)" }
            );
            failures.extend(payment_failures(total_cost, &by_address, &earned_by_payout(&hub_client).await?));
        }
        Err(_) => {
            failures.push("not every provider was paid within 2 minutes: see the settlements above".into())
        }
    }
    println!(
        "Settled on a local Aptos test node; point pictor-billing's --aptos-node-url at devnet or testnet for a real chain."
    );

    if hold {
        println!("\nThe network runs until Ctrl-C. Reach it with:");
        for cluster in std::iter::once(&plane.hub).chain(&plane.members) {
            println!("  export KUBECONFIG={}    # {}", cluster.kubeconfig.display(), cluster.name);
        }
        println!("  kubectl is at {}", plane.binaries.path("kubectl").display());
        tokio::signal::ctrl_c().await?;
    }
    drop(processes);
    drop(storage);
    if let Some(nodes) = real_nodes {
        let left = nodes.stop();
        failures.extend(left.into_iter().map(|l| format!("real nodes: could not undo {l}")));
    }
    if !failures.is_empty() {
        anyhow::bail!("the demo ended wrong:\n  {}", failures.join("\n  "));
    }
    if sheet.exists() {
        println!("\nContact sheet of the real frames: {}", sheet.display());
    }
    Ok(())
}

/// The animation's RenderJob: eight frames in chunks of two on the real nodes' GPUs, every chunk
/// re-rendered on the other member and judged from storage.
fn animation_job() -> String {
    let real_run = pictor_crds::contract::annotations::REAL_RUN;
    format!(
        r#"apiVersion: pictor.network/v1alpha1
kind: RenderJob
metadata:
  name: {ANIMATION}
  namespace: default
  annotations:
    {real_run}: "true"
spec:
  scene: {SCENE}
  renderer:
    image: {RENDER_WORKER_IMAGE}
  frames:
    start: 1
    end: 8
  chunkSize: 2
  output:
    location: s3://renders/{ANIMATION}/
  credentialsSecret: render-store
  gpu:
    vendor: nvidia
    models: [{REAL_MODEL}]
  budget:
    maxPricePerGpuHour: 100000000
  verificationPercent: 100
  unitTimeoutSeconds: 600
"#
    )
}

/// What each payout address earned: the hub's metered amounts of its members' accrued units.
async fn earned_by_payout(hub: &kube::Client) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let clusters: kube::Api<pictor_crds::v1alpha1::GpuCluster> = kube::Api::all(hub.clone());
    let units: kube::Api<pictor_crds::v1alpha1::WorkUnit> = kube::Api::all(hub.clone());
    let mut earned = std::collections::BTreeMap::new();
    let units = units.list(&kube::api::ListParams::default()).await?.items;
    for cluster in clusters.list(&kube::api::ListParams::default()).await?.items {
        let namespace = pictor_crds::contract::members::member_namespace(
            cluster.metadata.name.as_deref().unwrap_or_default(),
        );
        let amount: i64 = units
            .iter()
            .filter(|u| u.metadata.namespace.as_deref() == Some(namespace.as_str()))
            .filter(|u| pictor_crds::contract::billing_marks::billing_state(u).is_some())
            .map(pictor_crds::contract::billing_marks::amount_octas)
            .sum();
        if amount > 0 {
            *earned.entry(cluster.spec.payout_address.clone()).or_default() += amount as u64;
        }
    }
    Ok(earned)
}

/// What is wrong with the payments: the providers paid other than the jobs' cost in all, or
/// any payout address paid other than what its members' metered units earned.
fn payment_failures(
    total_cost: u64,
    paid: &BTreeMap<String, u64>,
    earned: &BTreeMap<String, u64>,
) -> Vec<String> {
    let settled: u64 = paid.values().sum();
    let mut failures = vec![];
    if total_cost != settled {
        failures.push(format!("the jobs cost {total_cost} octas but the providers were paid {settled}"));
    }
    let addresses: std::collections::BTreeSet<&String> = paid.keys().chain(earned.keys()).collect();
    for address in addresses {
        let (paid, earned) =
            (paid.get(address).copied().unwrap_or(0), earned.get(address).copied().unwrap_or(0));
        if paid != earned {
            failures.push(format!("provider {address} earned {earned} octas but was paid {paid}"));
        }
    }
    failures
}

/// Units accrued to a provider and in no confirmed Settlement yet.
async fn unpaid_units(
    hub: &kube::Client,
    settlements: &[pictor_crds::v1alpha1::Settlement],
) -> Option<usize> {
    let units: kube::Api<pictor_crds::v1alpha1::WorkUnit> = kube::Api::all(hub.clone());
    let accrued = units
        .list(&kube::api::ListParams::default().labels(&format!(
            "{}={}",
            labels::BILLING,
            BillingState::Accrued.as_str()
        )))
        .await
        .ok()?;
    let (_, paid) = billing::confirmed(settlements);
    Some(accrued.items.iter().filter(|u| u.metadata.uid.as_ref().is_none_or(|id| !paid.contains(id))).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn octas(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(a, o)| (a.to_string(), *o)).collect()
    }

    #[test]
    fn the_demo_fails_when_a_provider_is_paid_other_than_it_earned() {
        let earned = octas(&[("0xa11ce", 300), ("0xb0b", 100)]);
        assert!(payment_failures(400, &earned, &earned).is_empty());
        let swapped = octas(&[("0xa11ce", 100), ("0xb0b", 300)]);
        let failures = payment_failures(400, &swapped, &earned);
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].contains("0xa11ce earned 300 octas but was paid 100"), "{failures:?}");
        let unpaid = octas(&[("0xa11ce", 300)]);
        let failures = payment_failures(400, &unpaid, &earned);
        assert!(
            failures.iter().any(|f| f.contains("cost 400 octas but the providers were paid 300")),
            "{failures:?}"
        );
        assert!(failures.iter().any(|f| f.contains("0xb0b earned 100 octas but was paid 0")), "{failures:?}");
        let stranger = octas(&[("0xa11ce", 300), ("0xb0b", 100), ("0xe7e", 5)]);
        assert!(payment_failures(405, &stranger, &earned).iter().any(|f| f.contains("0xe7e earned 0")));
    }
}
