//! `pictor-local`: the local Pictor network on this machine — a hub and two members with fake
//! GPU nodes on a real control plane — for the demo and for development.

use clap::{Parser, Subcommand};
use pictor_e2e::{Cluster, ControlPlane, ControlPlaneOptions, fake_nodes, network};

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
    /// Starts the hub and two members, installs the CRDs, applies examples/ and shows
    /// `kubectl get pictor`.
    Demo {
        /// Keep the network running until Ctrl-C, printing how to reach each cluster.
        #[arg(long)]
        hold: bool,
    },
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

    // The hub's operator, then each member joins with `pictor member add` and runs its agent with
    // nothing but the kubeconfig that command printed.
    let mut processes = vec![network::start_operator(&plane, 30, Some(5), &[])?];
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
    show(
        "submit the examples",
        &plane.hub,
        &["apply", "--server-side", "-f", &examples.display().to_string()],
    )?;
    show("everything Pictor on the hub", &plane.hub, &["get", "pictor", "-A"])?;
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
    show("members, Ready with the GPUs their agents reported", &plane.hub, &["get", "gpuclusters"])?;

    // The jobs run: chunks and the training gang are placed on the members, their pods "run" on
    // kwok's fake GPUs for a few seconds each, and the status follows.
    let limit = std::time::Instant::now() + std::time::Duration::from_secs(240);
    loop {
        show("progress", &plane.hub, &["get", "renderjobs,trainingjobs", "-n", "default"])?;
        let out = plane
            .hub
            .kubectl()
            .args(["get", "rj,tj", "-n", "default", "-o", "jsonpath={.items[*].status.phase}"])
            .output()?;
        let phases = String::from_utf8_lossy(&out.stdout).to_string();
        let finished =
            phases.split_whitespace().filter(|p| matches!(*p, "Succeeded" | "Failed" | "Cancelled")).count();
        if finished == 2 || std::time::Instant::now() > limit {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
    show("where the work ran", &plane.hub, &["get", "workunits", "-A"])?;
    println!(
        "\nOutputs: the RenderJob writes its frames under file:///var/lib/pictor/renders/classroom/ (on kwok no pod really renders)."
    );
    println!("Settlement on Aptos is not built yet: the cost above is what the providers are owed.");

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
