//! The test node driven by aptos-sdk 0.8's own client, the way the billing controller drives a
//! real fullnode: every request and every JSON answer here goes through the SDK.

use std::time::Duration;

use aptos_sdk::account::{Ed25519Account, Ed25519SingleKeyAccount};
use aptos_sdk::api::response::LedgerInfo;
use aptos_sdk::transaction::builder::sign_transaction;
use aptos_sdk::transaction::{
    EntryFunction, RawTransaction, SignedTransaction, TransactionBuilder, TransactionPayload,
};
use aptos_sdk::types::TypeTag;
use aptos_sdk::{AccountAddress, Aptos, AptosConfig, AptosError, ChainId, HashValue, aptos_bcs};
use pictor_aptos_test_node::{GAS_UNIT_PRICE, GAS_USED, TestNode, TestNodeConfig};

const APT: u64 = 100_000_000;
const FEE: u64 = GAS_USED * GAS_UNIT_PRICE;

async fn start(funded: &[&Ed25519Account], block_interval: Duration) -> (TestNode, Aptos) {
    let node = TestNode::start(TestNodeConfig {
        block_interval,
        genesis: funded.iter().map(|a| (a.address(), 10 * APT)).collect(),
        ..TestNodeConfig::default()
    })
    .await
    .expect("test node starts");
    let aptos = Aptos::new(AptosConfig::custom(&node.url()).unwrap()).unwrap();
    (node, aptos)
}

/// A transfer with everything explicit, as the controller builds one to store and resubmit.
async fn transfer(
    aptos: &Aptos,
    from: &Ed25519Account,
    sequence_number: u64,
    to: AccountAddress,
    amount: u64,
) -> SignedTransaction {
    let info: LedgerInfo = aptos.ledger_info().await.unwrap();
    let chain_now_secs = info.ledger_timestamp.parse::<u64>().unwrap() / 1_000_000;
    let raw: RawTransaction = TransactionBuilder::new()
        .sender(from.address())
        .sequence_number(sequence_number)
        .payload(EntryFunction::apt_transfer(to, amount).unwrap().into())
        .max_gas_amount(2_000)
        .gas_unit_price(GAS_UNIT_PRICE)
        .expiration_timestamp_secs(chain_now_secs + 60)
        .chain_id(ChainId::new(info.chain_id))
        .build()
        .unwrap();
    sign_transaction(&raw, from).unwrap()
}

fn api_error(result: Result<impl std::fmt::Debug, AptosError>) -> (u16, String, Option<String>, Option<u64>) {
    match result {
        Err(AptosError::Api { status_code, message, error_code, vm_error_code }) => {
            (status_code, message, error_code, vm_error_code)
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn expect_refusal(result: Result<impl std::fmt::Debug, AptosError>, name: &str, code: u64) {
    let (status, message, error_code, vm_error_code) = api_error(result);
    assert_eq!(status, 400, "{message}");
    assert_eq!(message, format!("Invalid transaction: Type: Validation Code: {name}"));
    assert_eq!(error_code.as_deref(), Some("vm_error"));
    assert_eq!(vm_error_code, Some(code));
}

#[tokio::test]
async fn a_transfer_moves_exactly_the_amount_and_charges_the_fixed_gas() {
    let payer = Ed25519Account::generate();
    let provider = Ed25519Account::generate().address();
    let (node, aptos) = start(&[&payer], Duration::from_millis(50)).await;

    let done = aptos
        .sign_submit_and_wait(
            &payer,
            EntryFunction::apt_transfer(provider, 1_234_567).unwrap().into(),
            Some(Duration::from_secs(10)),
        )
        .await
        .expect("the transfer commits");
    assert_eq!(done.data["success"], true);
    assert_eq!(done.data["vm_status"], "Executed successfully");
    assert_eq!(done.data["type"], "user_transaction");
    assert_eq!(done.data["gas_used"], GAS_USED.to_string());
    assert_eq!(done.data["payload"]["function"], "0x1::aptos_account::transfer");
    assert_eq!(done.data["payload"]["arguments"][0], provider.to_string());
    assert_eq!(done.data["payload"]["arguments"][1], "1234567");

    assert_eq!(aptos.get_balance(provider).await.unwrap(), 1_234_567);
    assert_eq!(aptos.get_balance(payer.address()).await.unwrap(), 10 * APT - 1_234_567 - FEE);
    assert_eq!(aptos.get_sequence_number(payer.address()).await.unwrap(), 1);
    assert_eq!(aptos.get_sequence_number(provider).await.unwrap(), 0, "the recipient exists now");

    let committed = node.committed();
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].transfers, vec![(provider, 1_234_567)]);
    assert_eq!(committed[0].hash, done.data["hash"].as_str().unwrap());
    assert_eq!(committed[0].version.to_string(), done.data["version"].as_str().unwrap());
}

#[tokio::test]
async fn a_single_key_account_signs_and_pays_too() {
    let payer = Ed25519SingleKeyAccount::generate();
    let provider = Ed25519Account::generate().address();
    let node = TestNode::start(TestNodeConfig {
        genesis: vec![(payer.address(), 10 * APT)],
        ..TestNodeConfig::default()
    })
    .await
    .unwrap();
    let aptos = Aptos::new(AptosConfig::custom(&node.url()).unwrap()).unwrap();
    aptos
        .sign_submit_and_wait(
            &payer,
            EntryFunction::apt_transfer(provider, 77).unwrap().into(),
            Some(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert_eq!(node.balance(provider), 77);
    assert_eq!(node.balance(payer.address()), 10 * APT - 77 - FEE);
}

#[tokio::test]
async fn by_hash_goes_from_not_found_to_pending_to_committed_under_the_sdk_hash() {
    let payer = Ed25519Account::generate();
    let provider = Ed25519Account::generate().address();
    let (node, aptos) = start(&[&payer], Duration::from_millis(50)).await;

    let signed = transfer(&aptos, &payer, 0, provider, 500).await;
    let hash: HashValue = signed.hash().unwrap();
    // The bytes to store; the same bytes go out again on resubmission.
    let stored: Vec<u8> = signed.to_bcs().unwrap();

    let (status, _, error_code, _) = api_error(aptos.fullnode().get_transaction_by_hash(&hash).await);
    assert_eq!((status, error_code.as_deref()), (404, Some("transaction_not_found")));

    // A stalled chain keeps the transaction observably pending.
    node.pause_blocks();
    let again: SignedTransaction = aptos_bcs::from_bytes(&stored).unwrap();
    let pending = aptos.submit_transaction(&again).await.unwrap();
    assert_eq!(pending.data.hash, hash);
    assert_eq!(pending.data.sequence_number().unwrap(), 0);

    let seen = aptos.fullnode().get_transaction_by_hash(&hash).await.unwrap();
    assert_eq!(seen.data["type"], "pending_transaction");
    assert!(seen.data.get("version").is_none());
    node.resume_blocks();

    let done = aptos.fullnode().wait_for_transaction(&hash, Some(Duration::from_secs(10))).await.unwrap();
    assert_eq!(done.data["hash"], hash.to_hex());
    assert_eq!(done.data["success"], true);
    let version: u64 = done.data["version"].as_str().unwrap().parse().unwrap();
    assert_eq!(version, 1);
    assert_eq!(node.committed()[0].hash, hash.to_hex());
    let by_version = aptos.fullnode().get_transaction_by_version(version).await.unwrap();
    assert_eq!(by_version.data["hash"], hash.to_hex());
}

#[tokio::test]
async fn refusals_carry_the_validators_status_codes() {
    let payer = Ed25519Account::generate();
    let stranger = Ed25519Account::generate();
    let provider = Ed25519Account::generate().address();
    let (node, aptos) = start(&[&payer], Duration::from_millis(50)).await;

    // A signature that does not cover the transaction.
    let mut tampered = transfer(&aptos, &payer, 0, provider, 500).await;
    tampered.raw_txn.max_gas_amount += 1;
    expect_refusal(aptos.submit_transaction(&tampered).await, "INVALID_SIGNATURE", 1);

    // A valid signature by a key that is not the account's.
    let raw = transfer(&aptos, &payer, 0, provider, 500).await.raw_txn;
    let foreign = sign_transaction(&raw, &stranger).unwrap();
    expect_refusal(aptos.submit_transaction(&foreign).await, "INVALID_AUTH_KEY", 2);

    // Signed for another chain.
    let mut raw = transfer(&aptos, &payer, 0, provider, 500).await.raw_txn;
    raw.chain_id = ChainId::new(2);
    let other_chain = sign_transaction(&raw, &payer).unwrap();
    expect_refusal(aptos.submit_transaction(&other_chain).await, "BAD_CHAIN_ID", 23);

    // Expired by the chain's clock, not the client's.
    let late = transfer(&aptos, &payer, 0, provider, 500).await;
    node.advance_clock(Duration::from_secs(120));
    expect_refusal(aptos.submit_transaction(&late).await, "TRANSACTION_EXPIRED", 6);

    // The fee at max_gas_amount × gas_unit_price is not affordable.
    let poor = Ed25519Account::generate();
    node.fund(poor.address(), 1_000);
    let unaffordable = transfer(&aptos, &poor, 0, provider, 10).await;
    expect_refusal(
        aptos.submit_transaction(&unaffordable).await,
        "INSUFFICIENT_BALANCE_FOR_TRANSACTION_FEE",
        5,
    );

    // Sequence number 0 is used up once a transaction with it committed.
    let first = transfer(&aptos, &payer, 0, provider, 500).await;
    aptos.fullnode().submit_and_wait(&first, Some(Duration::from_secs(10))).await.unwrap();
    let reuse = transfer(&aptos, &payer, 0, provider, 700).await;
    expect_refusal(aptos.submit_transaction(&reuse).await, "SEQUENCE_NUMBER_TOO_OLD", 3);

    assert_eq!(node.committed().len(), 1, "nothing refused was executed");
    assert_eq!(node.balance(provider), 500);
}

#[tokio::test]
async fn a_future_sequence_number_waits_until_the_gap_fills() {
    let payer = Ed25519Account::generate();
    let provider = Ed25519Account::generate().address();
    let (node, aptos) = start(&[&payer], Duration::from_millis(20)).await;

    let second = transfer(&aptos, &payer, 1, provider, 2).await;
    let first = transfer(&aptos, &payer, 0, provider, 1).await;
    aptos.submit_transaction(&second).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = aptos.fullnode().get_transaction_by_hash(&second.hash().unwrap()).await.unwrap();
    assert_eq!(waiting.data["type"], "pending_transaction");
    assert_eq!(node.sequence_number(payer.address()), 0);
    assert!(node.committed().is_empty());

    aptos.submit_transaction(&first).await.unwrap();
    let done = aptos
        .fullnode()
        .wait_for_transaction(&second.hash().unwrap(), Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(done.data["sequence_number"], "1");
    let committed = node.committed();
    let order: Vec<u64> = committed.iter().map(|c| c.sequence_number).collect();
    assert_eq!(order, vec![0, 1]);
    assert_eq!(node.balance(provider), 3);
}

#[tokio::test]
async fn a_waiting_transaction_that_expires_is_dropped() {
    let payer = Ed25519Account::generate();
    let provider = Ed25519Account::generate().address();
    let (node, aptos) = start(&[&payer], Duration::from_millis(20)).await;

    let stuck = transfer(&aptos, &payer, 1, provider, 2).await;
    aptos.submit_transaction(&stuck).await.unwrap();
    node.advance_clock(Duration::from_secs(120));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, ..) = api_error(aptos.fullnode().get_transaction_by_hash(&stuck.hash().unwrap()).await);
    assert_eq!(status, 404);
    assert!(node.committed().is_empty());
}

#[tokio::test]
async fn resubmitting_the_same_transaction_never_executes_it_twice() {
    let payer = Ed25519Account::generate();
    let provider = Ed25519Account::generate().address();
    let (node, aptos) = start(&[&payer], Duration::from_millis(50)).await;

    let signed = transfer(&aptos, &payer, 0, provider, 1_000).await;
    node.pause_blocks();
    let a = aptos.submit_transaction(&signed).await.unwrap();
    let b = aptos.submit_transaction(&signed).await.unwrap();
    assert_eq!(a.data.hash, b.data.hash);
    node.resume_blocks();

    aptos.fullnode().wait_for_transaction(&a.data.hash, Some(Duration::from_secs(10))).await.unwrap();
    expect_refusal(aptos.submit_transaction(&signed).await, "SEQUENCE_NUMBER_TOO_OLD", 3);
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(node.committed().len(), 1);
    assert_eq!(node.balance(provider), 1_000);
    assert_eq!(node.balance(payer.address()), 10 * APT - 1_000 - FEE);

    // A different transaction with a waiting one's sequence number is refused, not swapped in.
    let next = transfer(&aptos, &payer, 1, provider, 1).await;
    node.pause_blocks();
    aptos.submit_transaction(&next).await.unwrap();
    let rival = transfer(&aptos, &payer, 1, provider, 2).await;
    let (status, _, error_code, _) = api_error(aptos.submit_transaction(&rival).await);
    assert_eq!((status, error_code.as_deref()), (400, Some("invalid_transaction_update")));
}

#[tokio::test]
async fn failed_executions_commit_with_the_vm_status_and_pay_gas() {
    let payer = Ed25519Account::generate();
    let (node, aptos) = start(&[&payer], Duration::from_millis(50)).await;
    let provider = Ed25519Account::generate().address();

    let too_much = transfer(&aptos, &payer, 0, provider, 10 * APT).await;
    let err = aptos.fullnode().submit_and_wait(&too_much, Some(Duration::from_secs(10))).await.unwrap_err();
    let AptosError::ExecutionFailed { vm_status } = err else {
        panic!("expected an execution failure, got {err:?}");
    };
    assert_eq!(
        vm_status,
        "Move abort in 0x1::coin: EINSUFFICIENT_BALANCE(0x10006): Not enough coins to complete transaction"
    );

    let reserved = transfer(&aptos, &payer, 1, AccountAddress::ONE, 5).await;
    let err = aptos.fullnode().submit_and_wait(&reserved, Some(Duration::from_secs(10))).await.unwrap_err();
    assert!(
        matches!(&err, AptosError::ExecutionFailed { vm_status } if vm_status.starts_with("Move abort in 0x1::account: ECANNOT_RESERVED_ADDRESS(0x10005)")),
        "{err:?}"
    );

    let unknown = aptos
        .sign_submit_and_wait(
            &payer,
            EntryFunction::from_function_id("0x1::aptos_account::transfer_all", vec![], vec![])
                .unwrap()
                .into(),
            Some(Duration::from_secs(10)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, AptosError::ExecutionFailed { vm_status } if vm_status == "FUNCTION_RESOLUTION_FAILURE"),
        "{unknown:?}"
    );

    let committed = node.committed();
    assert_eq!(committed.len(), 3);
    assert!(committed.iter().all(|c| !c.success && c.transfers.is_empty()));
    assert_eq!(node.balance(provider), 0);
    assert_eq!(node.balance(payer.address()), 10 * APT - 3 * FEE);
    assert_eq!(node.sequence_number(payer.address()), 3);
    let failed = aptos.fullnode().get_transaction_by_hash(&too_much.hash().unwrap()).await.unwrap();
    assert_eq!(failed.data["success"], false);
    assert_eq!(failed.data["gas_used"], GAS_USED.to_string());
}

#[tokio::test]
async fn batch_transfer_and_coin_transfer_move_apt() {
    let payer = Ed25519Account::generate();
    let (a, b) = (Ed25519Account::generate().address(), Ed25519Account::generate().address());
    let (node, aptos) = start(&[&payer], Duration::from_millis(50)).await;

    let batch = EntryFunction::from_function_id(
        "0x1::aptos_account::batch_transfer",
        vec![],
        vec![aptos_bcs::to_bytes(&vec![a, b]).unwrap(), aptos_bcs::to_bytes(&vec![100u64, 200]).unwrap()],
    )
    .unwrap();
    aptos.sign_submit_and_wait(&payer, batch.into(), Some(Duration::from_secs(10))).await.unwrap();
    let coin = EntryFunction::coin_transfer(TypeTag::aptos_coin(), a, 5).unwrap();
    aptos.sign_submit_and_wait(&payer, coin.into(), Some(Duration::from_secs(10))).await.unwrap();

    assert_eq!((node.balance(a), node.balance(b)), (105, 200));
    let committed = node.committed();
    assert_eq!(committed[0].transfers, vec![(a, 100), (b, 200)]);
    assert_eq!(committed[1].function, "0x1::coin::transfer");
}

#[tokio::test]
async fn simulation_answers_like_a_commit_without_committing() {
    let payer = Ed25519Account::generate();
    let (node, aptos) = start(&[&payer], Duration::from_millis(50)).await;
    let payload: TransactionPayload =
        EntryFunction::apt_transfer(AccountAddress::from_hex("0xb0b").unwrap(), 9).unwrap().into();

    let simulated = aptos.simulate(&payer, payload.clone()).await.unwrap();
    assert!(simulated.success(), "{}", simulated.vm_status());
    assert_eq!(simulated.gas_used(), GAS_USED);
    assert!(aptos.estimate_gas(&payer, payload).await.unwrap() >= GAS_USED);

    // A signed transaction can be simulated too: the SDK zeroes its signature before sending.
    let signed = transfer(&aptos, &payer, 0, AccountAddress::from_hex("0xb0b").unwrap(), 9).await;
    let sent_as_is = aptos.simulate_signed(&signed).await;
    assert!(sent_as_is.unwrap().success());
    assert!(node.committed().is_empty());
    assert_eq!(node.balance(payer.address()), 10 * APT);
}

#[tokio::test]
async fn ledger_info_and_headers_come_from_the_chain_clock() {
    let (node, aptos) = start(&[], Duration::from_millis(50)).await;
    let response = aptos.fullnode().get_ledger_info().await.unwrap();
    assert_eq!(response.data.chain_id, 4);
    assert_eq!(response.ledger_version, Some(0));
    assert_eq!(response.epoch, Some(1));
    // The node sends X-Aptos-Ledger-TimestampUsec like a real one; the SDK looks for another
    // name, so the timestamp is read from the body.
    assert_eq!(response.ledger_timestamp, None);
    let body_usecs: u64 = response.data.ledger_timestamp.parse().unwrap();
    let system_usecs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    assert!(system_usecs.abs_diff(body_usecs) < 5_000_000);

    node.advance_clock(Duration::from_secs(3600));
    let ahead: u64 = aptos.ledger_info().await.unwrap().ledger_timestamp.parse().unwrap();
    assert!(ahead >= body_usecs + 3_600_000_000);

    let (status, _, error_code, _) =
        api_error(aptos.fullnode().get_account(Ed25519Account::generate().address()).await);
    assert_eq!((status, error_code.as_deref()), (404, Some("account_not_found")));
    assert!(!aptos.account_exists(AccountAddress::from_hex("0xabc").unwrap()).await.unwrap());
}

#[tokio::test]
async fn an_account_address_comes_from_its_private_key_hex() {
    let key_hex = "0x9bf49a6a0755f953811fce125f2683d50429c3bb49e074147e0089a52eae155f";
    let account = Ed25519Account::from_private_key_hex(key_hex).unwrap();
    // Ed25519 address = sha3_256(public key | 0x00), the authentication key of a fresh account.
    let mut material = account.public_key().to_bytes().to_vec();
    material.push(0);
    assert_eq!(account.address().to_bytes(), aptos_sdk::crypto::sha3_256(&material));
    assert_eq!(account.address(), account.public_key().to_address());
}

#[tokio::test]
async fn offline_refuses_connections_and_online_resumes_with_the_state_kept() {
    let payer = Ed25519Account::generate();
    let provider = Ed25519Account::generate().address();
    let (node, aptos) = start(&[&payer], Duration::from_millis(50)).await;
    let signed = transfer(&aptos, &payer, 0, provider, 42).await;
    aptos.fullnode().submit_and_wait(&signed, Some(Duration::from_secs(10))).await.unwrap();

    node.go_offline().await;
    let no_retries = Aptos::new(AptosConfig::custom(&node.url()).unwrap().without_retry()).unwrap();
    let err = no_retries.ledger_info().await.unwrap_err();
    assert!(
        matches!(&err, AptosError::Http(e) if e.is_connect()),
        "expected a connection error, got {err:?}"
    );
    // The client that retries gives up the same way.
    let err = aptos.get_balance(provider).await.unwrap_err();
    assert!(matches!(&err, AptosError::Http(_)), "{err:?}");

    node.go_online().await.unwrap();
    assert_eq!(aptos.get_balance(provider).await.unwrap(), 42);
    assert_eq!(aptos.get_sequence_number(payer.address()).await.unwrap(), 1);
    let next = transfer(&aptos, &payer, 1, provider, 8).await;
    aptos.fullnode().submit_and_wait(&next, Some(Duration::from_secs(10))).await.unwrap();
    assert_eq!(node.balance(provider), 50);
}

/// The calls the billing controller builds on, in the order it makes them; the report that
/// accompanies this crate quotes this test.
#[tokio::test]
async fn recipes_for_the_billing_controller() -> Result<(), Box<dyn std::error::Error>> {
    // An account from a private key in hex (what a Secret holds); its address is derived.
    let key_hex = "0x9bf49a6a0755f953811fce125f2683d50429c3bb49e074147e0089a52eae155f";
    let payer = Ed25519Account::from_private_key_hex(key_hex)?;
    let payer_address: AccountAddress = payer.address();
    let provider = AccountAddress::from_hex("0x7e57")?;

    let node = TestNode::start(TestNodeConfig {
        genesis: vec![(payer_address, 10 * APT)],
        ..TestNodeConfig::default()
    })
    .await?;
    let aptos = Aptos::new(AptosConfig::custom(&node.url())?)?;

    // The chain's clock and id, from the body of GET /v1 (not from the response headers).
    let info = aptos.ledger_info().await?;
    let chain_now_secs = info.ledger_timestamp.parse::<u64>()? / 1_000_000;
    let chain_id = ChainId::new(info.chain_id);

    // A transaction with an explicit sequence number and expiration, signed.
    let sequence_number = aptos.get_sequence_number(payer_address).await?;
    let raw = TransactionBuilder::new()
        .sender(payer_address)
        .sequence_number(sequence_number)
        .payload(EntryFunction::apt_transfer(provider, 25_000)?.into())
        .max_gas_amount(2_000)
        .gas_unit_price(aptos.fullnode().estimate_gas_price().await?.data.recommended())
        .expiration_timestamp_secs(chain_now_secs + 120)
        .chain_id(chain_id)
        .build()?;
    let signed = sign_transaction(&raw, &payer)?;

    // Its hash before submitting, and its BCS bytes to store.
    let hash: HashValue = signed.hash()?;
    let bytes: Vec<u8> = signed.to_bcs()?;

    // Later, maybe after a restart: the same bytes, submitted again (idempotent while pending).
    let again: SignedTransaction = aptos_bcs::from_bytes(&bytes)?;
    assert_eq!(again.hash()?, hash);
    let pending = aptos.submit_transaction(&again).await?;
    assert_eq!(pending.data.hash, hash);

    // Looking it up: 404 (AptosError::Api { status_code: 404, .. }) until the node knows it,
    // no "version" while pending, then success / vm_status / version once committed.
    let done = loop {
        match aptos.fullnode().get_transaction_by_hash(&hash).await {
            Ok(found) if found.data.get("version").is_some() => break found.data,
            Ok(_) => {}
            Err(AptosError::Api { status_code: 404, .. }) => {}
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let success = done["success"].as_bool() == Some(true);
    let vm_status = done["vm_status"].as_str().unwrap_or_default();
    let version: u64 = done["version"].as_str().unwrap_or_default().parse()?;
    assert!(success, "{vm_status}");
    assert_eq!(version, 1);

    // Balances in octas.
    assert_eq!(aptos.get_balance(provider).await?, 25_000);
    assert_eq!(aptos.get_balance(payer_address).await?, 10 * APT - 25_000 - FEE);
    Ok(())
}
