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
//! committed transaction is charged a fixed [`GAS_USED`] gas units × its gas unit price (plus
//! storage with `metered_gas`). Versions count user transactions only (a real chain also writes
//! block metadata transactions; `block_metadata` imitates that). It also answers
//! `/accounts/{a}/transactions?start=SEQ&limit=N`, what an account sent by sequence number.
//!
//! # Modes: what real networks do
//!
//! By default it behaves like an old localnet. [`Realism`] switches on, one by one, what
//! devnet, testnet and mainnet do today ([`Realism::current_network`] turns on all of it):
//! - `fungible_asset`: APT is a fungible asset. An overdraft aborts in `0x1::fungible_asset`
//!   (`EINSUFFICIENT_BALANCE(0x10004)`); a transfer that fits the balance but leaves less than
//!   its gas fails the epilogue with `PROLOGUE_ECANT_PAY_GAS_DEPOSIT`.
//! - `default_accounts`: the default-account-resource feature. Every address is an account
//!   (`GET /accounts/{a}` answers 200 with sequence number 0), and a transfer to 0x1 commits
//!   with `success: true`: the APT is gone.
//! - `short_addresses`: addresses in answers have their leading zeros stripped (`0xbeef` for
//!   `0x00…00beef`), as real nodes write them.
//! - `metered_gas`: the gas charged depends on the transfer: a recipient without a primary
//!   store costs its storage fee ([`NEW_STORE_STORAGE_FEE`] octas) on top of the execution gas.
//! - `block_metadata`: every block writes a block metadata transaction, so the ledger version
//!   advances with time as on a real chain (the test node keeps no such transactions to show).
//! - `lagging_replica`: a public endpoint is a load balancer over several backends, each at its
//!   own ledger version. Here: two views of one ledger, the fresh one and one that shows the
//!   chain as it was [`Lag::blocks`] blocks ago (its clock, accounts, transactions, headers);
//!   each request is answered by either, drawn at random. A submission the lagging backend
//!   accepts is forwarded to the fresh one, which drops it if its sequence number is used.
//!
//! And at run time, as a test needs them: [`TestNode::rate_limit`] (a gateway's 429 with
//! `Retry-After`), [`TestNode::set_mempool_full`] (507 `mempool_is_full` to submissions),
//! [`TestNode::reset_chain`] (a devnet reset: a new chain id and an empty chain).
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

pub use execution::{GAS_UNIT_PRICE, GAS_USED, MAX_GAS_AMOUNT, NEW_STORE_STORAGE_FEE};
pub use ledger::CommittedTransaction;
pub use rest::SIGNED_TRANSACTION_BCS;
pub use validation::ValidationStatus;

use ledger::Ledger;
use rest::Node;

/// What the test chain imitates of real networks (see the crate's documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Realism {
    /// APT as a fungible asset: the framework's abort messages for an overdraft and for gas.
    pub fungible_asset: bool,
    /// Default account resources: every address is an account; nothing refuses 0x0–0xa.
    pub default_accounts: bool,
    /// Addresses in answers without leading zeros.
    pub short_addresses: bool,
    /// Gas charged as metered: storage fees for new primary stores.
    pub metered_gas: bool,
    /// Every block writes a block metadata transaction: the ledger version advances with each
    /// block, not only with user transactions, and user transactions' versions have gaps.
    pub block_metadata: bool,
    /// A lagging backend behind the endpoint's load balancer.
    pub lagging_replica: Option<Lag>,
}

impl Realism {
    /// Everything a current public network does, with a replica `lag` blocks behind.
    pub fn current_network(lag: Lag) -> Self {
        Realism {
            fungible_asset: true,
            default_accounts: true,
            short_addresses: true,
            metered_gas: true,
            block_metadata: true,
            lagging_replica: Some(lag),
        }
    }
}

/// How far the lagging backend is behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lag {
    /// It shows the ledger as it was this many blocks ago (blocks come every `block_interval`).
    pub blocks: usize,
}

/// How the test chain starts.
#[derive(Clone, Debug)]
pub struct TestNodeConfig {
    /// Which behaviours of real networks it imitates.
    pub realism: Realism,
    /// 4 by default, a localnet's chain id.
    pub chain_id: u8,
    /// How often a block commits the mempool's ready transactions.
    pub block_interval: Duration,
    /// Accounts funded at genesis, with octas (1 APT = 10^8 octas).
    pub genesis: Vec<(AccountAddress, u64)>,
}

impl Default for TestNodeConfig {
    fn default() -> Self {
        Self {
            realism: Realism::default(),
            chain_id: 4,
            block_interval: Duration::from_millis(50),
            genesis: Vec::new(),
        }
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
    node: Arc<Node>,
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
        let ledger = Arc::new(Mutex::new(Ledger::with_realism(
            config.chain_id,
            &config.genesis,
            config.realism.clone(),
        )));
        let node = Arc::new(Node::new(ledger.clone(), config.realism.lagging_replica));
        let listener = bind(addr)?;
        let addr = listener.local_addr().map_err(|source| TestNodeError::Bind { addr, source })?;
        let serving = serve(listener, node.clone());
        let blocks = tokio::spawn(produce_blocks(Arc::downgrade(&node), config.block_interval));
        Ok(Self { node, ledger, addr, serving: Mutex::new(Some(serving)), blocks })
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

    /// The lagging backend's view (with a lagging replica): its committed transactions and
    /// the balance of `address` there. `None` without one.
    pub fn replica_view(&self, address: AccountAddress) -> Option<(Vec<CommittedTransaction>, u64)> {
        let replica = self.node.replica()?;
        Some((replica.committed().map(|c| c.summary.clone()).collect(), replica.balance(&address)))
    }

    /// The ledger version of the fresh backend.
    pub fn ledger_version(&self) -> u64 {
        self.ledger().ledger_version()
    }

    /// The lagging backend's ledger version, with a lagging replica.
    pub fn replica_version(&self) -> Option<u64> {
        self.node.replica().map(|r| r.ledger_version())
    }

    /// Sets an account's balance, as if it had spent APT elsewhere (a second signer).
    pub fn set_balance(&self, address: AccountAddress, octas: u64) {
        self.ledger().set_balance(address, octas);
    }

    /// Answers every `every`-th request with 429 and `Retry-After: 1`, as a public endpoint's
    /// gateway does past its rate limit; 0 stops it.
    pub fn rate_limit(&self, every: u32) {
        self.node.switches().rate_limit_every = every;
    }

    /// Requests answered 429 so far.
    pub fn rate_limited(&self) -> u64 {
        self.node.switches().rate_limited
    }

    /// While set, submissions are answered 507 `mempool_is_full`, as by a node whose mempool
    /// is full.
    pub fn set_mempool_full(&self, full: bool) {
        self.node.switches().mempool_full = full;
    }

    /// Submissions answered 507 so far.
    pub fn mempool_full_answers(&self) -> u64 {
        self.node.switches().mempool_full_answers
    }

    /// A devnet reset: a new chain with `chain_id`, no accounts, no transactions (fund the
    /// treasury again, as from a faucet). The old chain is gone.
    pub fn reset_chain(&self, chain_id: u8) {
        let realism = self.ledger().realism.clone();
        *self.ledger() = Ledger::with_realism(chain_id, &[], realism);
        self.node.forget_replica();
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
            *serving = Some(serve(bind(self.addr)?, self.node.clone()));
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

fn serve(listener: TcpListener, node: Arc<Node>) -> Serving {
    let (shutdown, stop) = oneshot::channel::<()>();
    let app = rest::router(node);
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

async fn produce_blocks(node: Weak<Node>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(node) = node.upgrade() else {
            return;
        };
        node.produce_block();
    }
}
