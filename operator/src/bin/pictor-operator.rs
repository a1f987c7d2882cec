//! `pictor-operator`: the hub's controllers.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "The Pictor hub operator")]
struct Args {
    /// kubeconfig of the hub (default: in-cluster or KUBECONFIG).
    #[arg(long, env = "PICTOR_HUB_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Seconds a member may be silent before it is NotReady and its unfinished units Lost.
    #[arg(long, default_value_t = 30)]
    member_grace_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let client = pictor_operator::kubeconfig::client(args.kubeconfig.as_deref()).await?;
    tracing::info!(grace_seconds = args.member_grace_seconds, "member controller started");
    pictor_operator::member_health::run(client, Duration::from_secs(args.member_grace_seconds)).await;
    Ok(())
}
