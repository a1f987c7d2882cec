//! `pictor-local`: the local Pictor network on this machine — a hub and two members with fake
//! GPU nodes on a real control plane — for the demo and for development.

use clap::{Parser, Subcommand};
use pictor_e2e::{Cluster, ControlPlane, ControlPlaneOptions, fake_nodes};
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
    println!(
        "\nNo controller runs yet, so the jobs stay as submitted: the operator, agents and scheduler come next."
    );

    if hold {
        println!("\nThe network runs until Ctrl-C. Reach it with:");
        for cluster in std::iter::once(&plane.hub).chain(&plane.members) {
            println!("  export KUBECONFIG={}    # {}", cluster.kubeconfig.display(), cluster.name);
        }
        println!("  kubectl is at {}", plane.binaries.path("kubectl").display());
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}
