//! The REST API (v1) subset that aptos-sdk 0.8's client uses for APT transfers, in the JSON
//! shapes and headers of a real fullnode, plus test-only admin endpoints under `/pictor-test/`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aptos_sdk::transaction::{
    AccountAuthenticator, EntryFunction, SignedTransaction, TransactionAuthenticator, TransactionPayload,
};
use aptos_sdk::{AccountAddress, HashValue};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::execution::{self, GAS_UNIT_PRICE};
use crate::ledger::{Accepted, Committed, Ledger, Lookup, Refusal};

pub type SharedLedger = Arc<Mutex<Ledger>>;

/// The content type of a BCS `SignedTransaction` body.
pub const SIGNED_TRANSACTION_BCS: &str = "application/x.aptos.signed_transaction+bcs";

pub fn router(ledger: SharedLedger) -> Router {
    Router::new()
        .route("/v1", get(ledger_info))
        .route("/v1/", get(ledger_info))
        .route("/v1/accounts/{address}", get(account))
        .route("/v1/estimate_gas_price", get(estimate_gas_price))
        .route("/v1/transactions", post(submit))
        .route("/v1/transactions/simulate", post(simulate))
        .route("/v1/transactions/by_hash/{hash}", get(by_hash))
        .route("/v1/transactions/by_version/{version}", get(by_version))
        .route("/v1/view", post(view))
        .route("/pictor-test/fund", post(admin_fund))
        .route("/pictor-test/transactions", get(admin_transactions))
        .route("/pictor-test/advance_clock", post(admin_advance_clock))
        .fallback(not_found)
        .layer(axum::middleware::map_response_with_state(ledger.clone(), ledger_headers))
        .with_state(ledger)
}

fn lock(ledger: &SharedLedger) -> MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every answer of a real node carries the ledger's state in these headers. aptos-sdk 0.8 reads
/// other names for two of them (`x-aptos-ledger-timestamp`, `x-aptos-oldest-ledger-version`),
/// so its `AptosResponse::ledger_timestamp` stays `None` against a real node, and here too.
async fn ledger_headers(State(ledger): State<SharedLedger>, mut response: Response) -> Response {
    let (chain_id, version, timestamp, epoch, height) = {
        let ledger = lock(&ledger);
        (
            ledger.chain_id,
            ledger.ledger_version(),
            ledger.ledger_timestamp_usecs,
            ledger.epoch,
            ledger.block_height,
        )
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-aptos-chain-id", u64::from(chain_id)),
        ("x-aptos-ledger-version", version),
        ("x-aptos-ledger-oldest-version", 0),
        ("x-aptos-ledger-timestampusec", timestamp),
        ("x-aptos-epoch", epoch),
        ("x-aptos-block-height", height),
        ("x-aptos-oldest-block-height", 0),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    response
}

/// An answer in the Aptos error shape: `message`, `error_code`, `vm_error_code`.
struct ApiError {
    status: StatusCode,
    message: String,
    error_code: &'static str,
    vm_error_code: Option<u64>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "message": self.message,
            "error_code": self.error_code,
            "vm_error_code": self.vm_error_code,
        });
        (self.status, Json(body)).into_response()
    }
}

fn error(
    status: StatusCode,
    message: impl Into<String>,
    error_code: &'static str,
    vm_error_code: Option<u64>,
) -> ApiError {
    ApiError { status, message: message.into(), error_code, vm_error_code }
}

fn invalid_input(message: impl Into<String>) -> ApiError {
    error(StatusCode::BAD_REQUEST, message, "invalid_input", None)
}

async fn not_found() -> ApiError {
    error(StatusCode::NOT_FOUND, "Not Found", "web_framework_error", None)
}

fn parse_address(text: &str) -> Result<AccountAddress, ApiError> {
    AccountAddress::from_hex(text).map_err(|e| {
        invalid_input(format!("failed to parse path : failed to parse \"address({text})\": {e}"))
    })
}

/// `GET /v1`: chain id, versions, the last block's timestamp in microseconds.
async fn ledger_info(State(ledger): State<SharedLedger>) -> Json<Value> {
    let ledger = lock(&ledger);
    Json(json!({
        "chain_id": ledger.chain_id,
        "epoch": ledger.epoch.to_string(),
        "ledger_version": ledger.ledger_version().to_string(),
        "oldest_ledger_version": "0",
        "ledger_timestamp": ledger.ledger_timestamp_usecs.to_string(),
        "node_role": "full_node",
        "oldest_block_height": "0",
        "block_height": ledger.block_height.to_string(),
        "git_hash": "pictor-aptos-test-node",
    }))
}

async fn account(
    State(ledger): State<SharedLedger>,
    Path(address): Path<String>,
) -> Result<Response, ApiError> {
    let address = parse_address(&address)?;
    let ledger = lock(&ledger);
    match ledger.account(&address) {
        Some(account) => Ok(Json(json!({
            "sequence_number": account.sequence_number.to_string(),
            "authentication_key": format!("0x{}", hex::encode(account.authentication_key)),
        }))
        .into_response()),
        None => Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "Account not found by Address({}) and Ledger version({})",
                address.to_long_string(),
                ledger.ledger_version()
            ),
            "account_not_found",
            None,
        )),
    }
}

async fn estimate_gas_price() -> Json<Value> {
    Json(json!({
        "deprioritized_gas_estimate": GAS_UNIT_PRICE,
        "gas_estimate": GAS_UNIT_PRICE,
        "prioritized_gas_estimate": GAS_UNIT_PRICE * 3 / 2,
    }))
}

fn signed_transaction(headers: &HeaderMap, body: &[u8]) -> Result<SignedTransaction, ApiError> {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type != SIGNED_TRANSACTION_BCS {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the test node takes {SIGNED_TRANSACTION_BCS} bodies only, not {content_type:?}"),
            "web_framework_error",
            None,
        ));
    }
    crate::wire::signed_transaction(body)
        .map_err(|e| invalid_input(format!("Failed to deserialize input into SignedTransaction: {e}")))
}

fn refusal(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Validation(status) => {
            error(StatusCode::BAD_REQUEST, status.message(), "vm_error", Some(status.code()))
        }
        Refusal::InvalidUpdate => error(
            StatusCode::BAD_REQUEST,
            "Transaction already in mempool with a different payload",
            "invalid_transaction_update",
            None,
        ),
        Refusal::Unsupported(message) => invalid_input(message),
    }
}

/// `POST /v1/transactions`: 202 with the pending transaction, or a validation error.
async fn submit(
    State(ledger): State<SharedLedger>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let txn = signed_transaction(&headers, &body)?;
    let outcome = lock(&ledger).submit(txn.clone());
    let (accepted, hash) = outcome.map_err(refusal)?;
    if accepted == Accepted::New {
        tracing::debug!(%hash, sender = %txn.sender(), "transaction accepted");
    }
    Ok((StatusCode::ACCEPTED, Json(pending_json(&txn, &hash, false))).into_response())
}

/// `POST /v1/transactions/simulate`: a one-element list with the transaction as it would commit.
async fn simulate(
    State(ledger): State<SharedLedger>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let txn = signed_transaction(&headers, &body)?;
    let committed = lock(&ledger).simulate(txn).map_err(refusal)?;
    Ok(Json(json!([committed_json(&committed)])))
}

async fn by_hash(
    State(ledger): State<SharedLedger>,
    Path(hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let parsed = HashValue::from_hex(&hash)
        .map_err(|_| invalid_input(format!("failed to parse path : failed to parse \"hash({hash})\"")))?;
    let ledger = lock(&ledger);
    match ledger.lookup(&parsed) {
        Some(Lookup::Pending(txn, hash)) => Ok(Json(pending_json(txn, &hash, true))),
        Some(Lookup::Committed(committed)) => Ok(Json(committed_json(committed))),
        None => Err(error(
            StatusCode::NOT_FOUND,
            format!("Transaction not found by Transaction hash({hash})"),
            "transaction_not_found",
            None,
        )),
    }
}

async fn by_version(
    State(ledger): State<SharedLedger>,
    Path(version): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let ledger = lock(&ledger);
    match ledger.by_version(version) {
        Some(committed) => Ok(Json(committed_json(committed))),
        None => Err(error(
            StatusCode::NOT_FOUND,
            format!("Transaction not found by Ledger version({version})"),
            "transaction_not_found",
            None,
        )),
    }
}

#[derive(Deserialize)]
struct ViewRequest {
    function: String,
    #[serde(default)]
    type_arguments: Vec<String>,
    #[serde(default)]
    arguments: Vec<Value>,
}

/// `POST /v1/view` for the balance and sequence-number view functions.
async fn view(
    State(ledger): State<SharedLedger>,
    Json(request): Json<ViewRequest>,
) -> Result<Json<Value>, ApiError> {
    let address_arg = |index: usize| -> Result<AccountAddress, ApiError> {
        let text = request
            .arguments
            .get(index)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_input("Invalid arguments: expected an address string"))?;
        parse_address(text)
    };
    let types: Vec<&str> = request.type_arguments.iter().map(String::as_str).collect();
    let ledger = lock(&ledger);
    let value = match (request.function.as_str(), types.as_slice()) {
        ("0x1::coin::balance", ["0x1::aptos_coin::AptosCoin"])
        | ("0x1::primary_fungible_store::balance", ["0x1::fungible_asset::Metadata"]) => {
            ledger.balance(&address_arg(0)?).to_string()
        }
        ("0x1::account::get_sequence_number", []) => {
            ledger.account(&address_arg(0)?).map_or(0, |a| a.sequence_number).to_string()
        }
        _ => {
            return Err(invalid_input(format!(
                "the test node has no view function {}<{}>",
                request.function,
                request.type_arguments.join(", ")
            )));
        }
    };
    Ok(Json(json!([value])))
}

fn payload_json(entry: &EntryFunction) -> Value {
    json!({
        "function": execution::function_id(entry),
        "type_arguments": entry.type_args.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "arguments": execution::arguments_json(entry),
        "type": "entry_function_payload",
    })
}

fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn account_signature_json(authenticator: &AccountAuthenticator) -> Value {
    match authenticator {
        AccountAuthenticator::Ed25519 { public_key, signature } => json!({
            "public_key": hex0x(&public_key.0),
            "signature": hex0x(&signature.0),
            "type": "ed25519_signature",
        }),
        AccountAuthenticator::MultiEd25519 { public_key, signature } => json!({
            "public_key": hex0x(public_key),
            "signature": hex0x(signature),
            "type": "multi_ed25519_signature",
        }),
        AccountAuthenticator::SingleKey { public_key, signature } => json!({
            "public_key": hex0x(public_key),
            "signature": hex0x(signature),
            "type": "single_key_signature",
        }),
        AccountAuthenticator::MultiKey { public_key, signature } => json!({
            "public_key": hex0x(public_key),
            "signature": hex0x(signature),
            "type": "multi_key_signature",
        }),
        AccountAuthenticator::NoAccountAuthenticator => json!({ "type": "no_account_signature" }),
    }
}

fn signature_json(authenticator: &TransactionAuthenticator) -> Value {
    match authenticator {
        TransactionAuthenticator::Ed25519 { public_key, signature } => {
            account_signature_json(&AccountAuthenticator::Ed25519 {
                public_key: public_key.clone(),
                signature: signature.clone(),
            })
        }
        TransactionAuthenticator::MultiEd25519 { public_key, signature } => {
            account_signature_json(&AccountAuthenticator::MultiEd25519 {
                public_key: public_key.clone(),
                signature: signature.clone(),
            })
        }
        TransactionAuthenticator::SingleSender { sender } => {
            let mut value = account_signature_json(sender);
            value["type"] = json!("single_sender");
            value
        }
        TransactionAuthenticator::MultiAgent { .. } => json!({ "type": "multi_agent_signature" }),
        TransactionAuthenticator::FeePayer { .. } => json!({ "type": "fee_payer_signature" }),
    }
}

/// The fields a user transaction has whether pending or committed.
fn user_transaction_fields(txn: &SignedTransaction, hash: &HashValue) -> serde_json::Map<String, Value> {
    let raw = &txn.raw_txn;
    let payload = match &raw.payload {
        TransactionPayload::EntryFunction(entry) => payload_json(entry),
        _ => json!({ "type": "unsupported_payload" }),
    };
    let value = json!({
        "hash": hash.to_hex(),
        "sender": raw.sender.to_string(),
        "sequence_number": raw.sequence_number.to_string(),
        "max_gas_amount": raw.max_gas_amount.to_string(),
        "gas_unit_price": raw.gas_unit_price.to_string(),
        "expiration_timestamp_secs": raw.expiration_timestamp_secs.to_string(),
        "payload": payload,
        "signature": signature_json(&txn.authenticator),
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// A pending transaction: the submission answer, or by hash with `"type": "pending_transaction"`.
fn pending_json(txn: &SignedTransaction, hash: &HashValue, typed: bool) -> Value {
    let mut fields = user_transaction_fields(txn, hash);
    if typed {
        fields.insert("type".into(), json!("pending_transaction"));
    }
    Value::Object(fields)
}

/// The primary fungible store of `owner` for APT (metadata at 0xa): the object address
/// `sha3_256(owner | 0xa | 0xFC)` where APT moves on a current chain.
fn primary_apt_store(owner: &AccountAddress) -> AccountAddress {
    let mut seed = Vec::with_capacity(65);
    seed.extend_from_slice(owner.as_bytes());
    seed.extend_from_slice(AccountAddress::A.as_bytes());
    seed.push(0xFC);
    AccountAddress::new(aptos_sdk::crypto::sha3_256(&seed))
}

fn module_event(type_: &str, data: Value) -> Value {
    json!({
        "guid": { "creation_number": "0", "account_address": "0x0" },
        "sequence_number": "0",
        "type": type_,
        "data": data,
    })
}

/// A committed `user_transaction` as `/transactions/by_hash` and `/by_version` show it, with
/// the fungible-asset events of each transfer and the fee statement.
fn committed_json(committed: &Committed) -> Value {
    let summary = &committed.summary;
    let mut events = Vec::new();
    for (to, amount) in &summary.transfers {
        events.push(module_event(
            "0x1::fungible_asset::Withdraw",
            json!({ "store": primary_apt_store(&summary.sender).to_string(), "amount": amount.to_string() }),
        ));
        events.push(module_event(
            "0x1::fungible_asset::Deposit",
            json!({ "store": primary_apt_store(to).to_string(), "amount": amount.to_string() }),
        ));
    }
    events.push(module_event(
        "0x1::transaction_fee::FeeStatement",
        json!({
            "total_charge_gas_units": summary.gas_used.to_string(),
            "execution_gas_units": (summary.gas_used / 2).to_string(),
            "io_gas_units": (summary.gas_used - summary.gas_used / 2).to_string(),
            "storage_fee_octas": "0",
            "storage_fee_refund_octas": "0",
        }),
    ));
    let zero = HashValue::ZERO.to_hex();
    let mut fields = user_transaction_fields(&committed.transaction, &committed.hash);
    for (key, value) in [
        ("version", json!(summary.version.to_string())),
        ("state_change_hash", json!(zero)),
        ("event_root_hash", json!(zero)),
        ("state_checkpoint_hash", Value::Null),
        ("gas_used", json!(summary.gas_used.to_string())),
        ("success", json!(summary.success)),
        ("vm_status", json!(summary.vm_status)),
        ("accumulator_root_hash", json!(zero)),
        ("changes", json!([])),
        ("events", Value::Array(events)),
        ("timestamp", json!(summary.timestamp_usecs.to_string())),
        ("type", json!("user_transaction")),
    ] {
        fields.insert(key.into(), value);
    }
    Value::Object(fields)
}

#[derive(Deserialize)]
struct FundRequest {
    address: String,
    octas: u64,
}

/// `POST /pictor-test/fund {"address": "0x…", "octas": 100000000}`: mints APT.
async fn admin_fund(
    State(ledger): State<SharedLedger>,
    Json(request): Json<FundRequest>,
) -> Result<Json<Value>, ApiError> {
    let address = parse_address(&request.address)?;
    let balance = lock(&ledger).fund(address, request.octas);
    Ok(Json(json!({ "address": address.to_string(), "balance": balance.to_string() })))
}

/// `GET /pictor-test/transactions`: the committed transactions, oldest first.
async fn admin_transactions(State(ledger): State<SharedLedger>) -> Json<Value> {
    let ledger = lock(&ledger);
    let list: Vec<_> = ledger.committed().map(|c| c.summary.clone()).collect();
    Json(serde_json::to_value(list).unwrap_or_default())
}

#[derive(Deserialize)]
struct AdvanceClock {
    secs: u64,
}

/// `POST /pictor-test/advance_clock {"secs": 700}`: the chain clock runs that much ahead.
async fn admin_advance_clock(
    State(ledger): State<SharedLedger>,
    Json(request): Json<AdvanceClock>,
) -> Json<Value> {
    let mut ledger = lock(&ledger);
    ledger.advance_clock(Duration::from_secs(request.secs));
    Json(json!({ "ledger_timestamp": ledger.ledger_timestamp_usecs.to_string() }))
}
