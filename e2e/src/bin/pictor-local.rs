//! `pictor-local`: the local Pictor network on this machine — a hub and two members with fake
//! GPU nodes on a real control plane — for the demo and for development.

use clap::{Parser, Subcommand};
use pictor_e2e::{Cluster, ControlPlane, ControlPlaneOptions, ManagedProcess, fake_nodes, workspace_binary};
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
    // Until pictor-scheduler runs in the members, kube-scheduler binds their pods.
    let plane = ControlPlane::start(ControlPlaneOptions { members: 2, kube_scheduler: true }).await?;
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
    let hub_kubeconfig = plane.hub.kubeconfig.display().to_string();
    let operator = workspace_binary("pictor-operator", "pictor-operator");
    let mut processes = vec![ManagedProcess::spawn(
        "hub-pictor-operator",
        &operator,
        &[format!("--kubeconfig={hub_kubeconfig}")],
        plane.run_dir(),
    )?];
    let pictor = workspace_binary("pictor-operator", "pictor");
    let agent = workspace_binary("pictor-operator", "pictor-agent");
    for (member, payout) in plane.members.iter().zip(["0xa11ce", "0xb0b"]) {
        let agent_kubeconfig = plane.run_dir().join(format!("{}-agent-hub.kubeconfig", member.name));
        println!(
            "\n$ pictor member add {} --tier community --payout {payout} --region local -o {}",
            member.name,
            agent_kubeconfig.display()
        );
        let status = std::process::Command::new(&pictor)
            .args([
                "member",
                "add",
                &member.name,
                "--tier",
                "community",
                "--payout",
                payout,
                "--region",
                "local",
            ])
            .args([
                "--price",
                "NVIDIA-H100-80GB-HBM3=90000000",
                "--default-price",
                "40000000",
                "--kubeconfig",
                &hub_kubeconfig,
                "-o",
            ])
            .arg(&agent_kubeconfig)
            .status()?;
        anyhow::ensure!(status.success(), "pictor member add {} failed", member.name);
        let args = vec![
            format!("--member={}", member.name),
            format!("--hub-kubeconfig={}", agent_kubeconfig.display()),
            format!("--kubeconfig={}", member.kubeconfig.display()),
            "--scheduler-name=default-scheduler".to_string(),
        ];
        processes.push(ManagedProcess::spawn(
            &format!("{}-agent", member.name),
            &agent,
            &args,
            plane.run_dir(),
        )?);
    }
    wait_for_members(&plane).await?;

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
    println!(
        "\nThe job controllers that split jobs into WorkUnits are not built yet, so the jobs stay as submitted."
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

/// Waits until every member's GpuCluster is Ready with an inventory.
async fn wait_for_members(plane: &ControlPlane) -> anyhow::Result<()> {
    use kube::api::Api;
    use pictor_crds::v1alpha1::GpuCluster;
    let clusters: Api<GpuCluster> = Api::all(plane.hub.client().await?);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    for member in &plane.members {
        loop {
            let cluster = clusters.get_opt(&member.name).await?;
            let status = cluster.and_then(|c| c.status);
            let ready = status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready && status.is_some_and(|s| s.inventory.is_some()) {
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "member {} did not become Ready; logs in {}",
                member.name,
                plane.run_dir().display()
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    Ok(())
}
