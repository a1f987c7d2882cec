//! `pictor-aptos-test-node`: the Aptos fullnode test double as a process, for shell demos.

use std::net::SocketAddr;
use std::time::Duration;

use aptos_sdk::AccountAddress;
use clap::Parser;
use pictor_aptos_test_node::{Lag, Realism, TestNode, TestNodeConfig};

/// A test double of an Aptos fullnode's REST API (no Move VM, no consensus, fixed gas).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Chain id (4 is a localnet's).
    #[arg(long, default_value_t = 4)]
    chain_id: u8,
    /// Fund an account at genesis: 0xADDRESS=OCTAS (1 APT = 100000000 octas). Repeatable.
    #[arg(long = "fund", value_parser = parse_funding)]
    fund: Vec<(AccountAddress, u64)>,
    /// Milliseconds between blocks.
    #[arg(long, default_value_t = 50)]
    block_interval_ms: u64,
    /// Behave like a current public network: APT a fungible asset, default account resources,
    /// short addresses, metered gas, and a backend lagging --lag-blocks behind (0: none).
    #[arg(long)]
    like_current_network: bool,
    /// With --like-current-network: blocks the lagging backend is behind.
    #[arg(long, default_value_t = 40)]
    lag_blocks: usize,
}

fn parse_funding(text: &str) -> Result<(AccountAddress, u64), String> {
    let (address, octas) =
        text.split_once('=').ok_or_else(|| format!("expected 0xADDRESS=OCTAS, got {text:?}"))?;
    let address = AccountAddress::from_hex(address).map_err(|e| e.to_string())?;
    let octas = octas.parse().map_err(|e| format!("octas {octas:?}: {e}"))?;
    Ok((address, octas))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let realism = if args.like_current_network {
        let mut realism = Realism::current_network(Lag { blocks: args.lag_blocks });
        if args.lag_blocks == 0 {
            realism.lagging_replica = None;
        }
        realism
    } else {
        Realism::default()
    };
    let config = TestNodeConfig {
        realism,
        chain_id: args.chain_id,
        block_interval: Duration::from_millis(args.block_interval_ms),
        genesis: args.fund,
    };
    let node = TestNode::start_on(config, args.listen).await?;
    tracing::info!(
        url = %node.url(),
        chain_id = node.chain_id(),
        admin = %format!("http://{}/pictor-test/", node.addr()),
        "Aptos test node listening"
    );
    tokio::signal::ctrl_c().await?;
    tracing::info!("stopping");
    Ok(())
}
