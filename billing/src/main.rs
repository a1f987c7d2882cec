//! `pictor-billing`: pays providers on Aptos for verified work, exactly once.

use clap::Parser;
use kube_lease_manager::LeaseManagerBuilder;
use pictor_billing::chain::AptosChain;
use pictor_billing::crash::CrashPoint;
use pictor_billing::ledger::BatchPolicy;
use pictor_billing::metrics::BillingMetrics;
use pictor_billing::treasury::{Gas, Treasury};
use pictor_billing::{Billing, BillingSettings};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "The Pictor billing controller: settles verified work on Aptos")]
struct Args {
    /// kubeconfig of the hub (default: in-cluster or KUBECONFIG).
    #[arg(long, env = "PICTOR_HUB_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the Settlements and of the treasury Secret.
    #[arg(long, env = "POD_NAMESPACE", default_value = "pictor-system")]
    namespace: String,
    /// REST root of an Aptos node, e.g. https://fullnode.testnet.aptoslabs.com/v1.
    #[arg(long, env = "APTOS_NODE_URL")]
    aptos_node_url: String,
    /// The chain id billing pays on (1 mainnet, 2 testnet, 4 a localnet; devnet's changes at
    /// each reset). Set it on any public network: billing then uses no node serving another
    /// chain, and, after a devnet reset, pays settlements signed for the old chain again only
    /// once this names the new one. Unset: whatever chain the node serves.
    #[arg(long, env = "APTOS_CHAIN_ID")]
    chain_id: Option<u8>,
    /// Secret holding the treasury's Ed25519 private key under `privateKey`.
    #[arg(long, default_value = "pictor-treasury")]
    treasury_secret: String,
    /// Settle a provider once this many octas are payable (1 APT = 100000000 octas)...
    #[arg(long, default_value_t = 100_000_000)]
    settle_min_octas: i64,
    /// ...or once its oldest payable unit has waited this many seconds.
    #[arg(long, default_value_t = 3600)]
    settle_max_wait_seconds: u64,
    /// Units in one Settlement at most.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=1000))]
    max_units_per_settlement: u64,
    /// Seconds past a unit's dispute window before it is paid, so a late dispute is seen first.
    #[arg(long, default_value_t = 30)]
    dispute_margin_seconds: u64,
    /// Seconds a signed payout stays valid on chain.
    #[arg(long, default_value_t = 120)]
    transaction_ttl_seconds: u64,
    /// Most gas units a payout may use.
    #[arg(long, default_value_t = 2_000)]
    max_gas_amount: u64,
    /// Octas per gas unit.
    #[arg(long, default_value_t = 100)]
    gas_unit_price: u64,
    /// Seconds to wait for the node on each request.
    #[arg(long, default_value_t = 10)]
    node_timeout_seconds: u64,
    /// Crash tests only: exit at the n-th time a step is reached (STEP[:N], STEP one of
    /// signed, recorded, submitted, confirming).
    #[arg(long, hide = true, value_parser = CrashPoint::parse)]
    crash_at: Option<CrashPoint>,
    /// Name of the Lease (in --namespace) that makes one pictor-billing the only one paying.
    #[arg(long, default_value = "pictor-billing")]
    lease_name: String,
    /// Seconds the Lease holds without renewal; a new replica takes over after that.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..))]
    lease_duration_seconds: u64,
    #[command(flatten)]
    metrics: pictor_telemetry::MetricsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let metrics = std::sync::Arc::new(BillingMetrics::new());
    let waiting_for = Some("the treasury key and the watches are not loaded yet");
    let readiness = pictor_telemetry::start("info", &args.metrics, metrics.registry(), waiting_for).await?;
    let client = pictor_telemetry::cluster::client(args.kubeconfig.as_deref()).await?;
    let chain = AptosChain::new(&args.aptos_node_url, Duration::from_secs(args.node_timeout_seconds))?;
    let treasury = Treasury::from_secret(&client, &args.namespace, &args.treasury_secret).await?;
    let settings = BillingSettings {
        namespace: args.namespace,
        batch: BatchPolicy {
            min_octas: args.settle_min_octas,
            max_wait: Duration::from_secs(args.settle_max_wait_seconds),
            max_units: args.max_units_per_settlement as usize,
            margin: Duration::from_secs(args.dispute_margin_seconds),
        },
        transaction_ttl_seconds: args.transaction_ttl_seconds,
        gas: Gas { max_amount: args.max_gas_amount, unit_price: args.gas_unit_price },
        chain_id: args.chain_id,
        crash: args.crash_at,
    };
    // Two controllers with different views could batch the same unit twice: only the holder of
    // the Lease pays, and one that loses it exits at once.
    let lease = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&settings.namespace)
        .with_identity(pictor_billing::instance())
        .with_duration(args.lease_duration_seconds)
        .with_grace((args.lease_duration_seconds / 3).max(1))
        .with_field_manager(pictor_billing::FIELD_MANAGER)
        .build()
        .await?;
    let (mut leading, _renewing) = lease.watch().await;
    if !*leading.borrow_and_update() {
        tracing::info!(lease = %args.lease_name, "waiting for the billing lease");
    }
    while !*leading.borrow_and_update() {
        leading.changed().await?;
    }
    tracing::info!(lease = %args.lease_name, "holding the billing lease: billing starts");
    let billing = Billing::start(client, chain, treasury, settings, metrics).await;
    readiness.set(true);
    tokio::select! {
        () = billing.run() => Ok(()),
        () = async {
            while leading.changed().await.is_ok() && *leading.borrow() {}
        } => anyhow::bail!("lost the billing lease: exiting, so that only one controller pays"),
    }
}
