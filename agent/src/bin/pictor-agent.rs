//! `pictor-agent`: the member agent, run in each member cluster by the pictor-provider chart.

use clap::Parser;
use pictor_agent::confinement::ProviderPolicy;
use pictor_agent::{self as agent, AgentConfig};
use pictor_crds::v1alpha1::{PodResources, WorkPolicy};
use std::path::PathBuf;
use std::time::Duration;

/// The network's render worker, which every member runs unless its provider says otherwise.
const NETWORK_RENDER_IMAGE: &str = "ghcr.io/pictor-network/render-worker";

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
    /// NAME=VALUE set in every work pod after the hub's own variables (which it never replaces):
    /// this member's settings, such as the endpoint its pods reach storage at. Repeat it.
    #[arg(long = "work-env", value_name = "NAME=VALUE", value_parser = parse_env)]
    work_env: Vec<(String, String)>,
    /// An image this member runs: `*`, `registry/path/*`, a repository (any tag), or
    /// `repository@sha256:<digest>` (that content only). Repeat it. Units with other images are
    /// refused, and the hub places no such work here.
    #[arg(long = "allow-image", value_name = "PATTERN", default_value = NETWORK_RENDER_IMAGE)]
    allow_image: Vec<String>,
    /// Most CPU one unit pod may ask for (a quantity: `8`, `500m`). Unset: no cap.
    #[arg(long)]
    max_cpu: Option<String>,
    /// Most memory one unit pod may ask for (`32Gi`). Unset: no cap.
    #[arg(long)]
    max_memory: Option<String>,
    /// Most scratch disk one unit pod may ask for (`100Gi`). Unset: no cap.
    #[arg(long)]
    max_ephemeral_storage: Option<String>,
    /// CPU of a unit pod whose job leaves it out (request and limit).
    #[arg(long, default_value = "1")]
    default_cpu: String,
    /// Memory of a unit pod whose job leaves it out (request and limit).
    #[arg(long, default_value = "4Gi")]
    default_memory: String,
    /// Scratch disk of a unit pod whose job leaves it out (request and limit).
    #[arg(long, default_value = "10Gi")]
    default_ephemeral_storage: String,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 2)]
    heartbeat_seconds: u64,
    #[command(flatten)]
    metrics: pictor_telemetry::MetricsArgs,
}

/// `NAME=VALUE`, with a name a container accepts.
fn parse_env(pair: &str) -> Result<(String, String), String> {
    let (name, value) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not NAME=VALUE"))?;
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "{name:?} is not a variable name: letters, digits and _, not starting with a digit"
        ));
    }
    Ok((name.to_string(), value.to_string()))
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
    let policy = ProviderPolicy::new(
        WorkPolicy {
            images: args.allow_image,
            max_cpu: args.max_cpu,
            max_memory: args.max_memory,
            max_ephemeral_storage: args.max_ephemeral_storage,
        },
        PodResources {
            cpu: Some(args.default_cpu),
            memory: Some(args.default_memory),
            ephemeral_storage: Some(args.default_ephemeral_storage),
        },
    )?;
    let config = AgentConfig {
        member: args.member,
        namespace: args.namespace,
        scheduler_name: args.scheduler_name,
        heartbeat_interval: heartbeat,
        lease_duration: heartbeat * 5,
        identity,
        work_env: args.work_env,
        policy,
    };
    tokio::select! {
        result = agent::run(hub, member, config, metrics) => result?,
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    Ok(())
}
