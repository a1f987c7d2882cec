//! A test double of an Aptos fullnode's REST API (v1), for the billing controller's tests and
//! the demo, where no Aptos network is reachable.
//!
//! It answers the requests aptos-sdk 0.8's client makes to pay in APT — ledger info, accounts,
//! gas estimate, balance views, submitting a BCS `SignedTransaction`, simulating one, looking a
//! transaction up by hash or version — in the JSON shapes and headers of a real node, and it
//! refuses what a real node refuses at submission (bad signature, wrong authentication key,
//! wrong chain id, expired, sequence number too old, fee not affordable) with the same
//! `vm_error` codes. Transactions with a future sequence number wait in a mempool until the
//! gap fills or they expire; a block is produced every `block_interval` and commits what is
//! ready.
//!
//! What it is not: there is no Move VM and no consensus. It executes
//! `0x1::aptos_account::transfer`, `0x1::aptos_account::batch_transfer` and
//! `0x1::coin::transfer<0x1::aptos_coin::AptosCoin>` itself; any other entry function commits
//! with `success: false` and the status a real VM gives a missing function or module. Every
//! committed transaction is charged a fixed [`GAS_USED`] gas units × its gas unit price. Versions
//! count user transactions only (a real chain also writes block metadata transactions).
//!
//! Tests steer it with [`TestNode::fund`], [`TestNode::advance_clock`] (expiry),
//! [`TestNode::pause_blocks`] (a stalled chain: transactions stay pending) and
//! [`TestNode::go_offline`] (connections refused, state kept), and read it back with
//! [`TestNode::committed`], [`TestNode::balance`] and [`TestNode::sequence_number`]. The binary
//! `pictor-aptos-test-node` runs one for shell demos, with admin endpoints under `/pictor-test/`.
//!
//! The controller talks to it through [`TestNode::url`], like to any real endpoint (a
//! localnet, devnet, testnet): `Aptos::new(AptosConfig::custom(&node.url())?)`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use aptos_sdk::account::Ed25519Account;
//! use pictor_aptos_test_node::{TestNode, TestNodeConfig};
//!
//! let payer = Ed25519Account::generate();
//! let node = TestNode::start(TestNodeConfig {
//!     genesis: vec![(payer.address(), 10_0000_0000)],
//!     ..TestNodeConfig::default()
//! })
//! .await?;
//! let aptos = aptos_sdk::Aptos::new(aptos_sdk::AptosConfig::custom(&node.url())?)?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod execution;
mod ledger;
mod rest;
mod validation;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use aptos_sdk::AccountAddress;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use execution::{GAS_UNIT_PRICE, GAS_USED, MAX_GAS_AMOUNT};
pub use ledger::CommittedTransaction;
pub use rest::SIGNED_TRANSACTION_BCS;
pub use validation::ValidationStatus;

use ledger::Ledger;

/// How the test chain starts.
#[derive(Clone, Debug)]
pub struct TestNodeConfig {
    /// 4 by default, a localnet's chain id.
    pub chain_id: u8,
    /// How often a block commits the mempool's ready transactions.
    pub block_interval: Duration,
    /// Accounts funded at genesis, with octas (1 APT = 10^8 octas).
    pub genesis: Vec<(AccountAddress, u64)>,
}

impl Default for TestNodeConfig {
    fn default() -> Self {
        Self { chain_id: 4, block_interval: Duration::from_millis(50), genesis: Vec::new() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TestNodeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// A running test node: an HTTP listener on a fixed address and a block producer, sharing one
/// in-memory chain. Dropping it stops both.
pub struct TestNode {
    ledger: Arc<Mutex<Ledger>>,
    addr: SocketAddr,
    serving: Mutex<Option<Serving>>,
    blocks: JoinHandle<()>,
}

struct Serving {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl TestNode {
    /// Starts a node on a free port of 127.0.0.1.
    pub async fn start(config: TestNodeConfig) -> Result<Self, TestNodeError> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(config: TestNodeConfig, addr: SocketAddr) -> Result<Self, TestNodeError> {
        let ledger = Arc::new(Mutex::new(Ledger::new(config.chain_id, &config.genesis)));
        let listener = bind(addr)?;
        let addr = listener.local_addr().map_err(|source| TestNodeError::Bind { addr, source })?;
        let serving = serve(listener, ledger.clone());
        let blocks = tokio::spawn(produce_blocks(Arc::downgrade(&ledger), config.block_interval));
        Ok(Self { ledger, addr, serving: Mutex::new(Some(serving)), blocks })
    }

    /// The REST base URL, `http://127.0.0.1:PORT/v1`, with the `/v1` a real endpoint's URL has
    /// too: give it as is to `AptosConfig::custom`, which appends `transactions`, `accounts/…`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn chain_id(&self) -> u8 {
        self.ledger().chain_id
    }

    /// Mints octas into an account, creating it if new; returns the new balance.
    pub fn fund(&self, address: AccountAddress, octas: u64) -> u64 {
        self.ledger().fund(address, octas)
    }

    /// The APT balance in octas; 0 for an unknown account.
    pub fn balance(&self, address: AccountAddress) -> u64 {
        self.ledger().balance(&address)
    }

    /// The next sequence number the account must use; 0 for an unknown account.
    pub fn sequence_number(&self, address: AccountAddress) -> u64 {
        self.ledger().account(&address).map_or(0, |a| a.sequence_number)
    }

    /// The committed transactions, oldest first.
    pub fn committed(&self) -> Vec<CommittedTransaction> {
        self.ledger().committed().map(|c| c.summary.clone()).collect()
    }

    /// The last block's timestamp in microseconds, the chain's notion of now.
    pub fn ledger_timestamp_usecs(&self) -> u64 {
        self.ledger().ledger_timestamp_usecs
    }

    /// Runs the chain's clock ahead, to expire transactions.
    pub fn advance_clock(&self, by: Duration) {
        self.ledger().advance_clock(by);
    }

    /// Stops producing blocks: submissions are accepted and stay pending, the ledger's
    /// timestamp stands still, as on a stalled chain.
    pub fn pause_blocks(&self) {
        self.ledger().blocks_paused = true;
    }

    pub fn resume_blocks(&self) {
        self.ledger().blocks_paused = false;
    }

    /// Stops listening: connections to the port are refused from now on, while the chain keeps
    /// producing blocks. Open connections are closed once their request is answered.
    pub async fn go_offline(&self) {
        let serving = self.serving.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(serving) = serving {
            let _ = serving.shutdown.send(());
            let _ = serving.task.await;
        }
    }

    /// Listens again on the same address, with the chain as it is now.
    pub async fn go_online(&self) -> Result<(), TestNodeError> {
        let mut serving = self.serving.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if serving.is_none() {
            *serving = Some(serve(bind(self.addr)?, self.ledger.clone()));
        }
        Ok(())
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.blocks.abort();
        if let Some(serving) = self.serving.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            let _ = serving.shutdown.send(());
        }
    }
}

/// Binds with `SO_REUSEADDR`, so that the port is free again right after going offline.
fn bind(addr: SocketAddr) -> Result<TcpListener, TestNodeError> {
    let listen = || -> io::Result<TcpListener> {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(1024)
    };
    listen().map_err(|source| TestNodeError::Bind { addr, source })
}

fn serve(listener: TcpListener, ledger: Arc<Mutex<Ledger>>) -> Serving {
    let (shutdown, stop) = oneshot::channel::<()>();
    let app = rest::router(ledger);
    let task = tokio::spawn(async move {
        let stopped = async {
            let _ = stop.await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
            tracing::warn!(error = %e, "the test node's listener failed");
        }
    });
    Serving { shutdown, task }
}

async fn produce_blocks(ledger: Weak<Mutex<Ledger>>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(ledger) = ledger.upgrade() else {
            return;
        };
        ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).produce_block();
    }
}
