//! `pictor-agent`: the member agent, run in each member cluster by the pictor-provider chart.

use clap::Parser;
use pictor_agent::{self as agent, AgentConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Connects a member cluster to the Pictor hub: heartbeat, inventory, WorkUnits as pods")]
struct Args {
    /// Member name, as `pictor member add` admitted it.
    #[arg(long, env = "PICTOR_MEMBER")]
    member: String,
    /// kubeconfig that `pictor member add` printed (the agent's only credentials on the hub).
    #[arg(long, env = "PICTOR_HUB_KUBECONFIG")]
    hub_kubeconfig: PathBuf,
    /// kubeconfig of the member cluster (default: in-cluster or KUBECONFIG).
    #[arg(long, env = "PICTOR_MEMBER_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the member cluster where unit pods run.
    #[arg(long, env = "PICTOR_WORK_NAMESPACE", default_value = "pictor-work")]
    namespace: String,
    /// Scheduler that binds unit pods.
    #[arg(long, env = "PICTOR_SCHEDULER_NAME", default_value = "pictor-scheduler")]
    scheduler_name: String,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 2)]
    heartbeat_seconds: u64,
    #[command(flatten)]
    metrics: pictor_telemetry::MetricsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let metrics = std::sync::Arc::new(agent::metrics::AgentMetrics::new());
    pictor_telemetry::start("info", &args.metrics, metrics.registry(), None).await?;
    let hub = pictor_telemetry::cluster::client(Some(&args.hub_kubeconfig)).await?;
    let member = pictor_telemetry::cluster::client(args.kubeconfig.as_deref()).await?;
    let heartbeat = Duration::from_secs(args.heartbeat_seconds.max(1));
    let identity = format!("{}-{}", args.member, std::process::id());
    let config = AgentConfig {
        member: args.member,
        namespace: args.namespace,
        scheduler_name: args.scheduler_name,
        heartbeat_interval: heartbeat,
        lease_duration: heartbeat * 5,
        identity,
    };
    tokio::select! {
        result = agent::run(hub, member, config, metrics) => result?,
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    Ok(())
}
