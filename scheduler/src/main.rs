//! `pictor-scheduler`: binds every Pod with `spec.schedulerName: pictor-scheduler` in the
//! cluster of its kubeconfig (or its ServiceAccount, in-cluster).
#![forbid(unsafe_code)]

use clap::Parser;
use pictor_scheduler::api::KubeWriter;
use pictor_scheduler::scheduling::SchedulerConfig;
use pictor_scheduler::service::{ServiceConfig, run};
use std::net::SocketAddr;
use std::time::Duration;

/// A GPU- and gang-aware Kubernetes scheduler.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The `spec.schedulerName` to serve.
    #[arg(long, default_value = pictor_scheduler::SCHEDULER_NAME)]
    scheduler_name: String,
    /// This replica's identity in the Lease (default: host name and process id).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Run without leader election (one replica only).
    #[arg(long)]
    no_leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, default_value = "kube-system")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = pictor_scheduler::SCHEDULER_NAME)]
    lease_name: String,
    /// Seconds the Lease is valid without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:10260")]
    http_addr: SocketAddr,
    /// Bindings in flight at once.
    #[arg(long, default_value_t = 64)]
    bind_concurrency: usize,
    /// Seconds a gathering gang holds its reservation before giving it back.
    #[arg(long, default_value_t = 30)]
    gang_wait_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pictor_telemetry::logging::init("info,kube=warn");
    let args = Args::parse();
    let client = kube::Client::try_default().await?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    let identity = args.identity.unwrap_or_else(|| format!("{host}-{}", std::process::id()));
    let config = ServiceConfig {
        scheduler_name: args.scheduler_name,
        identity: identity.clone(),
        leader_election: !args.no_leader_elect,
        lease_namespace: args.lease_namespace,
        lease_name: args.lease_name,
        lease_duration_seconds: args.lease_duration_seconds,
        lease_grace_seconds: (args.lease_duration_seconds / 3).max(1),
        http_addr: Some(args.http_addr),
        bind_concurrency: args.bind_concurrency,
        scheduler: SchedulerConfig {
            gang_wait: Duration::from_secs(args.gang_wait_seconds),
            ..Default::default()
        },
        ..Default::default()
    };
    let writer = KubeWriter::new(client.clone(), &identity);
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM can be handled");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    tracing::info!(%identity, "pictor-scheduler starting");
    run(client, writer, config, shutdown).await?;
    Ok(())
}
