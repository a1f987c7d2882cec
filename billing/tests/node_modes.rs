//! The chain client against the Aptos test node's modes, each imitating what a real network
//! does: refusals read by `vm_error_code`, 429 and 507 told from refusals, a chain reset, and
//! one consistent view of the treasury behind a load balancer with a lagging backend.

use aptos_sdk::AccountAddress;
use pictor_aptos_test_node::{Lag, Realism, TestNode, TestNodeConfig};
use pictor_billing::chain::{AptosChain, ChainError, LedgerView, Refusal};
use pictor_billing::settle::Lookup;
use pictor_billing::treasury::{Gas, Treasury};
use std::time::Duration;

const KEY: &str = "0x4c0e7b1a5d3f2e9c8b7a6d5c4b3a29180f7e6d5c4b3a291807f6e5d4c3b2a190";
const GAS: Gas = Gas { max_amount: 2_000, unit_price: 100 };

async fn node(realism: Realism) -> (TestNode, AptosChain, Treasury) {
    let treasury = Treasury::from_hex(KEY, "ns", "s").unwrap();
    let config =
        TestNodeConfig { genesis: vec![(treasury.address(), 10_000_000_000)], realism, ..Default::default() };
    let node = TestNode::start(config).await.unwrap();
    let chain = AptosChain::new(&node.url(), Duration::from_secs(5)).unwrap();
    (node, chain, treasury)
}

fn payout(
    node: &TestNode,
    treasury: &Treasury,
    sequence_number: u64,
    ttl: u64,
) -> aptos_sdk::transaction::SignedTransaction {
    let ledger =
        LedgerView { chain_id: node.chain_id(), now_seconds: node.ledger_timestamp_usecs() / 1_000_000 };
    let to = AccountAddress::from_hex("0xbeef01").unwrap();
    treasury.sign_transfer(to, 1_000, sequence_number, ledger, ttl, GAS).unwrap()
}

async fn committed(chain: &AptosChain, hash: &str) -> u64 {
    for _ in 0..200 {
        if let Lookup::Committed { version, .. } = chain.lookup(hash).await.unwrap() {
            return version;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{hash} never committed");
}

fn refusal(e: ChainError) -> Refusal {
    match e {
        ChainError::Refused { refusal, .. } => refusal,
        other => panic!("not a refusal: {other}"),
    }
}

#[tokio::test]
async fn refusals_are_told_apart_by_their_vm_error_code() {
    let (node, chain, treasury) = node(Realism::default()).await;
    let first = payout(&node, &treasury, 0, 60);
    chain.submit(&first).await.unwrap();
    committed(&chain, &first.hash().unwrap().to_hex()).await;
    // The same bytes again: the number is used.
    assert_eq!(refusal(chain.submit(&first).await.unwrap_err()), Refusal::SequenceNumberTooOld);
    // Expired by the node's clock.
    let late = payout(&node, &treasury, 1, 5);
    node.advance_clock(Duration::from_secs(30));
    assert_eq!(refusal(chain.submit(&late).await.unwrap_err()), Refusal::Expired);
    // A devnet reset: the transaction is for a chain that is gone.
    let before = payout(&node, &treasury, 1, 60);
    node.reset_chain(37);
    node.fund(treasury.address(), 10_000_000_000);
    assert_eq!(refusal(chain.submit(&before).await.unwrap_err()), Refusal::BadChainId);
    let view = chain.treasury_view(treasury.address()).await.unwrap();
    assert_eq!((view.chain_id, view.sequence_number), (37, 0));
}

#[tokio::test]
async fn rate_limits_and_a_full_mempool_are_not_refusals() {
    let (node, chain, treasury) = node(Realism::default()).await;
    node.rate_limit(1);
    let limited = chain.ledger().await.unwrap_err();
    assert!(
        matches!(limited, ChainError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(1)),
        "{limited:?}"
    );
    assert!(matches!(chain.treasury_view(treasury.address()).await, Err(ChainError::RateLimited { .. })));
    node.rate_limit(0);
    node.set_mempool_full(true);
    let full = chain.submit(&payout(&node, &treasury, 0, 60)).await.unwrap_err();
    assert!(matches!(full, ChainError::Busy { .. }), "{full:?}");
    assert!(full.to_string().contains("507"), "{full}");
    node.set_mempool_full(false);
    chain.submit(&payout(&node, &treasury, 0, 60)).await.unwrap();
}

#[tokio::test]
async fn behind_a_lagging_backend_each_view_of_the_treasury_is_consistent_in_itself() {
    let (node, chain, treasury) = node(Realism::current_network(Lag { blocks: 20 })).await;
    let mut versions = Vec::new();
    for _ in 0..3 {
        // The freshest of several views, as billing signs from.
        let mut seq = 0;
        for _ in 0..8 {
            seq = seq.max(chain.treasury_view(treasury.address()).await.unwrap().sequence_number);
        }
        let seq = seq.max(versions.len() as u64);
        let signed = payout(&node, &treasury, seq, 60);
        chain.submit(&signed).await.unwrap();
        versions.push(committed(&chain, &signed.hash().unwrap().to_hex()).await);
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let view = chain.treasury_view(treasury.address()).await.unwrap();
        // The treasury's number at a version is how many of its transfers are at or below it.
        let sent = versions.iter().filter(|v| **v <= view.ledger_version).count() as u64;
        assert_eq!(view.sequence_number, sent, "{view:?} against commits at {versions:?}");
        seen.insert(view.ledger_version);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen.len() > 1, "answers came from one backend only: {seen:?}");
    // Once both backends know it, the transaction that used a number is found through what
    // the treasury sent.
    for _ in 0..200 {
        if node.replica_version() >= versions.last().copied() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = chain.sent_at(treasury.address(), 1).await.unwrap().expect("the transaction numbered 1");
    assert!(matches!(sent.lookup, Lookup::Committed { version, .. } if version == versions[1]), "{sent:?}");
    // Default account resources: an address never used is an account with sequence number 0.
    let stranger = Treasury::from_hex(&format!("0x{}", "1".repeat(64)), "ns", "s").unwrap();
    assert_eq!(chain.treasury_view(stranger.address()).await.unwrap().sequence_number, 0);
}
