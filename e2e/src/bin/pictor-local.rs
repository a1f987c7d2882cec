//! `pictor-local`: the local Pictor network on this machine — a hub and two members with fake
//! GPU nodes on a real control plane — for the demo and for development.

use clap::{Parser, Subcommand};
use pictor_crds::contract::{BillingState, labels};
use pictor_e2e::billing::{self, LOCAL_TREASURY_KEY};
use pictor_e2e::{Cluster, ControlPlane, ControlPlaneOptions, fake_nodes, network, workspace_binary};
use std::time::Duration;

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
    let Command::Demo { hold } = Cli::parse().command;

    let started = std::time::Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 2, kube_scheduler: false }).await?;
    plane.install_crds().await?;
    let model = |short| fake_nodes::model(short).expect("a catalogue model");
    let fleets = [
        vec![(model("h100"), 2), (model("rtx4090"), 3)],
        vec![(model("mi300x"), 1), (model("rx7900xtx"), 2)],
    ];
    for (member, fleet) in plane.members.iter().zip(&fleets) {
        plane.add_nodes(member, fake_nodes::fleet(&member.name, fleet)).await?;
    }
    println!("local network up in {:.1?}: hub and {} members", started.elapsed(), plane.members.len());

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
    // A community member with NVIDIA GPUs and a partner farm with AMD GPUs.
    for (member, (tier, payout)) in plane.members.iter().zip([("community", "0xa11ce"), ("partner", "0xb0b")])
    {
        let agent_kubeconfig = network::agent_kubeconfig_path(&plane, member);
        println!(
            "$ pictor member add {} --tier {tier} --payout {payout} --region local -o {}",
            member.name,
            agent_kubeconfig.display()
        );
        network::member_add_with_tier(&plane.hub, &member.name, tier, payout, &PRICES, &agent_kubeconfig)?;
        processes.push(network::start_agent(&plane, member, &agent_kubeconfig, "pictor-scheduler")?);
    }
    network::wait_for_members(&plane, std::time::Duration::from_secs(120))
        .await
        .map_err(anyhow::Error::msg)?;

    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for example in ["renderjob.yaml", "trainingjob.yaml"] {
        pictor(&plane.hub, &["submit", "-f", &examples.join(example).display().to_string()])?;
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
    pictor(&plane.hub, &["watch", "-n", "default", "classroom", "llama-finetune"])?;
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
    let total_cost = job_cost("renderjob", "classroom")? + job_cost("trainingjob", "llama-finetune")?;
    println!(
        "\nOutputs: the RenderJob writes its frames under file:///var/lib/pictor/renders/classroom/ (on kwok no pod really renders)."
    );
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
            for (address, octas) in by_address {
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
        }
        Err(_) => {
            println!("\nNot every provider was paid within 2 minutes: see the settlements' conditions above.")
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
    Ok(())
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
