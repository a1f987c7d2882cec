//! The REST API (v1) subset that aptos-sdk 0.8's client uses for APT transfers, in the JSON
//! shapes and headers of a real fullnode, plus test-only admin endpoints under `/pictor-test/`.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

use crate::Lag;
use crate::execution::{self, GAS_UNIT_PRICE};
use crate::ledger::{Accepted, Committed, Ledger, Lookup, Refusal};

pub type SharedLedger = Arc<Mutex<Ledger>>;

/// What the listener serves: the fresh ledger, and, with a lagging replica, the snapshots the
/// lagging backend serves from; plus the switches tests flip at run time.
pub struct Node {
    primary: SharedLedger,
    lag: Option<Lag>,
    /// Snapshots after each block, oldest first; the lagging backend serves the oldest.
    snapshots: Mutex<VecDeque<Arc<Ledger>>>,
    switches: Mutex<Switches>,
}

/// Behaviours tests switch on and off while the node runs.
#[derive(Debug, Default)]
pub struct Switches {
    /// Every n-th request is answered 429 (0: never).
    pub rate_limit_every: u32,
    /// Submissions are answered 507.
    pub mempool_full: bool,
    pub requests: u64,
    pub rate_limited: u64,
    pub mempool_full_answers: u64,
    /// State of the draw between backends (xorshift).
    draw: u64,
}

/// The backend answering one request.
pub enum View<'a> {
    Fresh(MutexGuard<'a, Ledger>),
    Lagging(Arc<Ledger>),
}

impl Deref for View<'_> {
    type Target = Ledger;
    fn deref(&self) -> &Ledger {
        match self {
            View::Fresh(guard) => guard,
            View::Lagging(snapshot) => snapshot,
        }
    }
}

impl Node {
    pub fn new(primary: SharedLedger, lag: Option<Lag>) -> Self {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        Node {
            primary,
            lag,
            snapshots: Mutex::new(VecDeque::new()),
            switches: Mutex::new(Switches { draw: seed | 1, ..Switches::default() }),
        }
    }

    pub fn switches(&self) -> MutexGuard<'_, Switches> {
        self.switches.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn primary(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.primary)
    }

    /// The lagging backend's ledger, with a lagging replica.
    pub fn replica(&self) -> Option<Arc<Ledger>> {
        self.lag?;
        let snapshots = self.snapshots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        snapshots.front().cloned()
    }

    /// After a reset the lagging backend starts over from the new chain.
    pub fn forget_replica(&self) {
        self.snapshots.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }

    /// Produces a block on the fresh ledger and moves the lagging backend one block on.
    pub fn produce_block(&self) {
        let snapshot = {
            let mut primary = self.primary();
            primary.produce_block();
            self.lag.map(|_| Arc::new(primary.clone()))
        };
        if let (Some(lag), Some(snapshot)) = (self.lag, snapshot) {
            let mut snapshots = self.snapshots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            snapshots.push_back(snapshot);
            while snapshots.len() > lag.blocks.max(1) {
                snapshots.pop_front();
            }
        }
    }

    /// The backend that answers this request: the lagging one half of the time, at random.
    fn view(&self) -> View<'_> {
        if let Some(replica) = self.replica() {
            let mut switches = self.switches();
            let mut x = switches.draw;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            switches.draw = x;
            if x & 1 == 1 {
                return View::Lagging(replica);
            }
        }
        View::Fresh(self.primary())
    }
}

/// The content type of a BCS `SignedTransaction` body.
pub const SIGNED_TRANSACTION_BCS: &str = "application/x.aptos.signed_transaction+bcs";

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1", get(ledger_info))
        .route("/v1/", get(ledger_info))
        .route("/v1/accounts/{address}", get(account))
        .route("/v1/accounts/{address}/transactions", get(account_transactions))
        .route("/v1/estimate_gas_price", get(estimate_gas_price))
        .route("/v1/transactions", post(submit))
        .route("/v1/transactions/simulate", post(simulate))
        .route("/v1/transactions/by_hash/{hash}", get(by_hash))
        .route("/v1/transactions/by_version/{version}", get(by_version))
        .route("/v1/view", post(view))
        .route("/pictor-test/fund", post(admin_fund))
        .route("/pictor-test/transactions", get(admin_transactions))
        .route("/pictor-test/advance_clock", post(admin_advance_clock))
        .route("/pictor-test/reset_chain", post(admin_reset_chain))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(node.clone(), gateway))
        .with_state(node)
}

/// A public endpoint's gateway: past its rate limit it answers 429 itself, with
/// `Retry-After`, before any node sees the request.
async fn gateway(
    State(node): State<Arc<Node>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limited = {
        let mut switches = node.switches();
        switches.requests += 1;
        let every = u64::from(switches.rate_limit_every);
        let limited = request.uri().path().starts_with("/v1") && every > 0 && switches.requests % every == 0;
        if limited {
            switches.rate_limited += 1;
        }
        limited
    };
    if limited {
        let mut response =
            (StatusCode::TOO_MANY_REQUESTS, Json(json!({"message": "Too Many Requests"}))).into_response();
        response.headers_mut().insert("retry-after", HeaderValue::from(1u32));
        return response;
    }
    next.run(request).await
}

fn lock(ledger: &SharedLedger) -> MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every answer of a real node carries the ledger's state in these headers. aptos-sdk 0.8 reads
/// other names for two of them (`x-aptos-ledger-timestamp`, `x-aptos-oldest-ledger-version`),
/// so its `AptosResponse::ledger_timestamp` stays `None` against a real node, and here too.
/// The headers are those of the backend that answered: behind a load balancer, two answers
/// in a row can carry different versions.
fn stamp(ledger: &Ledger, answer: impl IntoResponse) -> Response {
    let mut response = answer.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-aptos-chain-id", u64::from(ledger.chain_id)),
        ("x-aptos-ledger-version", ledger.ledger_version()),
        ("x-aptos-ledger-oldest-version", 0),
        ("x-aptos-ledger-timestampusec", ledger.ledger_timestamp_usecs),
        ("x-aptos-epoch", ledger.epoch),
        ("x-aptos-block-height", ledger.block_height),
        ("x-aptos-oldest-block-height", 0),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    response
}

/// An answer of the backend `view`, with its headers.
fn answer<T: IntoResponse>(view: &Ledger, result: Result<T, ApiError>) -> Response {
    match result {
        Ok(ok) => stamp(view, ok),
        Err(e) => stamp(view, e),
    }
}

/// An address as the answers write it: the long form, or without leading zeros as real
/// nodes write them.
fn address_text(ledger: &Ledger, address: &AccountAddress) -> String {
    if ledger.realism.short_addresses { address.to_short_string() } else { address.to_string() }
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
async fn ledger_info(State(node): State<Arc<Node>>) -> Response {
    let ledger = node.view();
    let body = Json(json!({
        "chain_id": ledger.chain_id,
        "epoch": ledger.epoch.to_string(),
        "ledger_version": ledger.ledger_version().to_string(),
        "oldest_ledger_version": "0",
        "ledger_timestamp": ledger.ledger_timestamp_usecs.to_string(),
        "node_role": "full_node",
        "oldest_block_height": "0",
        "block_height": ledger.block_height.to_string(),
        "git_hash": "pictor-aptos-test-node",
    }));
    stamp(&ledger, body)
}

fn account_not_found(ledger: &Ledger, address: &AccountAddress) -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "Account not found by Address({}) and Ledger version({})",
            address.to_long_string(),
            ledger.ledger_version()
        ),
        "account_not_found",
        None,
    )
}

async fn account(State(node): State<Arc<Node>>, Path(address): Path<String>) -> Response {
    let ledger = node.view();
    let result = parse_address(&address).and_then(|address| match ledger.account_or_default(&address) {
        Some(account) => Ok(Json(json!({
            "sequence_number": account.sequence_number.to_string(),
            "authentication_key": format!("0x{}", hex::encode(account.authentication_key)),
        }))),
        None => Err(account_not_found(&ledger, &address)),
    });
    answer(&ledger, result)
}

#[derive(Deserialize)]
struct Page {
    start: Option<u64>,
    limit: Option<u16>,
}

/// `GET /v1/accounts/{address}/transactions?start=SEQ&limit=N`: what the account sent, from
/// sequence number `start`.
async fn account_transactions(
    State(node): State<Arc<Node>>,
    Path(address): Path<String>,
    axum::extract::Query(page): axum::extract::Query<Page>,
) -> Response {
    let ledger = node.view();
    let result = parse_address(&address).and_then(|address| {
        if ledger.account_or_default(&address).is_none() {
            return Err(account_not_found(&ledger, &address));
        }
        let limit = usize::from(page.limit.unwrap_or(25).clamp(1, 100));
        let sent = ledger.sent_by(&address, page.start.unwrap_or(0), limit);
        Ok(Json(Value::Array(sent.into_iter().map(|c| committed_json(&ledger, c)).collect())))
    });
    answer(&ledger, result)
}

async fn estimate_gas_price(State(node): State<Arc<Node>>) -> Response {
    let ledger = node.view();
    let body = Json(json!({
        "deprioritized_gas_estimate": GAS_UNIT_PRICE,
        "gas_estimate": GAS_UNIT_PRICE,
        "prioritized_gas_estimate": GAS_UNIT_PRICE * 3 / 2,
    }));
    stamp(&ledger, body)
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

/// `POST /v1/transactions`: 202 with the pending transaction, or a validation error. The
/// backend that answers validates against its own state; a lagging one forwards what it
/// accepts to the fresh one.
async fn submit(State(node): State<Arc<Node>>, headers: HeaderMap, body: Bytes) -> Response {
    let txn = match signed_transaction(&headers, &body) {
        Ok(txn) => txn,
        Err(e) => return stamp(&node.view(), e),
    };
    if node.switches().mempool_full {
        node.switches().mempool_full_answers += 1;
        let full = error(
            StatusCode::INSUFFICIENT_STORAGE,
            "Mempool is full. Mempool size: 2000000, Capacity: 2000000",
            "mempool_is_full",
            None,
        );
        return stamp(&node.view(), full);
    }
    let view = node.view();
    let outcome = match view {
        View::Fresh(mut ledger) => {
            let outcome = ledger.submit(txn.clone());
            let answer = outcome.map(|(accepted, hash)| {
                if accepted == Accepted::New {
                    tracing::debug!(%hash, sender = %txn.sender(), "transaction accepted");
                }
                (StatusCode::ACCEPTED, Json(pending_json(&ledger, &txn, &hash, false)))
            });
            return answer_refusal(&ledger, answer);
        }
        View::Lagging(snapshot) => {
            let checked = snapshot.check_submission(&txn);
            if let Ok(hash) = checked {
                node.primary().forward(txn.clone(), hash);
            }
            (snapshot, checked)
        }
    };
    let (snapshot, checked) = outcome;
    let answer =
        checked.map(|hash| (StatusCode::ACCEPTED, Json(pending_json(&snapshot, &txn, &hash, false))));
    answer_refusal(&snapshot, answer)
}

fn answer_refusal<T: IntoResponse>(ledger: &Ledger, result: Result<T, Refusal>) -> Response {
    answer(ledger, result.map_err(refusal))
}

/// `POST /v1/transactions/simulate`: a one-element list with the transaction as it would commit.
async fn simulate(State(node): State<Arc<Node>>, headers: HeaderMap, body: Bytes) -> Response {
    let ledger = node.view();
    let result = signed_transaction(&headers, &body).and_then(|txn| {
        let committed = ledger.simulate(txn).map_err(refusal)?;
        Ok(Json(json!([committed_json(&ledger, &committed)])))
    });
    answer(&ledger, result)
}

async fn by_hash(State(node): State<Arc<Node>>, Path(hash): Path<String>) -> Response {
    let ledger = node.view();
    let result = HashValue::from_hex(&hash)
        .map_err(|_| invalid_input(format!("failed to parse path : failed to parse \"hash({hash})\"")))
        .and_then(|parsed| match ledger.lookup(&parsed) {
            Some(Lookup::Pending(txn, hash)) => Ok(Json(pending_json(&ledger, txn, &hash, true))),
            Some(Lookup::Committed(committed)) => Ok(Json(committed_json(&ledger, committed))),
            None => Err(error(
                StatusCode::NOT_FOUND,
                format!("Transaction not found by Transaction hash({hash})"),
                "transaction_not_found",
                None,
            )),
        });
    answer(&ledger, result)
}

async fn by_version(State(node): State<Arc<Node>>, Path(version): Path<u64>) -> Response {
    let ledger = node.view();
    let result = match ledger.by_version(version) {
        Some(committed) => Ok(Json(committed_json(&ledger, committed))),
        None => Err(error(
            StatusCode::NOT_FOUND,
            format!("Transaction not found by Ledger version({version})"),
            "transaction_not_found",
            None,
        )),
    };
    answer(&ledger, result)
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
async fn view(State(node): State<Arc<Node>>, Json(request): Json<ViewRequest>) -> Response {
    let ledger = node.view();
    let result = view_value(&ledger, &request).map(|value| Json(json!([value])));
    answer(&ledger, result)
}

fn view_value(ledger: &Ledger, request: &ViewRequest) -> Result<String, ApiError> {
    let address_arg = |index: usize| -> Result<AccountAddress, ApiError> {
        let text = request
            .arguments
            .get(index)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_input("Invalid arguments: expected an address string"))?;
        parse_address(text)
    };
    let types: Vec<&str> = request.type_arguments.iter().map(String::as_str).collect();
    match (request.function.as_str(), types.as_slice()) {
        ("0x1::coin::balance", ["0x1::aptos_coin::AptosCoin"])
        | ("0x1::primary_fungible_store::balance", ["0x1::fungible_asset::Metadata"]) => {
            Ok(ledger.balance(&address_arg(0)?).to_string())
        }
        ("0x1::account::get_sequence_number", []) => {
            Ok(ledger.account(&address_arg(0)?).map_or(0, |a| a.sequence_number).to_string())
        }
        _ => Err(invalid_input(format!(
            "the test node has no view function {}<{}>",
            request.function,
            request.type_arguments.join(", ")
        ))),
    }
}

fn payload_json(ledger: &Ledger, entry: &EntryFunction) -> Value {
    json!({
        "function": execution::function_id(entry),
        "type_arguments": entry.type_args.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "arguments": execution::arguments_json(entry, ledger.realism.short_addresses),
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
fn user_transaction_fields(
    ledger: &Ledger,
    txn: &SignedTransaction,
    hash: &HashValue,
) -> serde_json::Map<String, Value> {
    let raw = &txn.raw_txn;
    let payload = match &raw.payload {
        TransactionPayload::EntryFunction(entry) => payload_json(ledger, entry),
        _ => json!({ "type": "unsupported_payload" }),
    };
    let value = json!({
        "hash": hash.to_hex(),
        "sender": address_text(ledger, &raw.sender),
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
fn pending_json(ledger: &Ledger, txn: &SignedTransaction, hash: &HashValue, typed: bool) -> Value {
    let mut fields = user_transaction_fields(ledger, txn, hash);
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
fn committed_json(ledger: &Ledger, committed: &Committed) -> Value {
    let summary = &committed.summary;
    let mut events = Vec::new();
    for (to, amount) in &summary.transfers {
        events.push(module_event(
            "0x1::fungible_asset::Withdraw",
            json!({ "store": address_text(ledger, &primary_apt_store(&summary.sender)), "amount": amount.to_string() }),
        ));
        events.push(module_event(
            "0x1::fungible_asset::Deposit",
            json!({ "store": address_text(ledger, &primary_apt_store(to)), "amount": amount.to_string() }),
        ));
    }
    events.push(module_event(
        "0x1::transaction_fee::FeeStatement",
        json!({
            "total_charge_gas_units": summary.gas_used.to_string(),
            "execution_gas_units": (summary.gas_used / 2).to_string(),
            "io_gas_units": (summary.gas_used - summary.gas_used / 2).to_string(),
            "storage_fee_octas": summary.storage_fee_octas.to_string(),
            "storage_fee_refund_octas": "0",
        }),
    ));
    let zero = HashValue::ZERO.to_hex();
    let mut fields = user_transaction_fields(ledger, &committed.transaction, &committed.hash);
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
    State(node): State<Arc<Node>>,
    Json(request): Json<FundRequest>,
) -> Result<Json<Value>, ApiError> {
    let address = parse_address(&request.address)?;
    let balance = node.primary().fund(address, request.octas);
    Ok(Json(json!({ "address": address.to_string(), "balance": balance.to_string() })))
}

/// `GET /pictor-test/transactions`: the committed transactions, oldest first.
async fn admin_transactions(State(node): State<Arc<Node>>) -> Json<Value> {
    let ledger = node.primary();
    let list: Vec<_> = ledger.committed().map(|c| c.summary.clone()).collect();
    Json(serde_json::to_value(list).unwrap_or_default())
}

#[derive(Deserialize)]
struct AdvanceClock {
    secs: u64,
}

/// `POST /pictor-test/advance_clock {"secs": 700}`: the chain clock runs that much ahead.
async fn admin_advance_clock(
    State(node): State<Arc<Node>>,
    Json(request): Json<AdvanceClock>,
) -> Json<Value> {
    let mut ledger = node.primary();
    ledger.advance_clock(Duration::from_secs(request.secs));
    Json(json!({ "ledger_timestamp": ledger.ledger_timestamp_usecs.to_string() }))
}

#[derive(Deserialize)]
struct ResetChain {
    chain_id: u8,
}

/// `POST /pictor-test/reset_chain {"chain_id": 37}`: a devnet reset, a new empty chain.
async fn admin_reset_chain(State(node): State<Arc<Node>>, Json(request): Json<ResetChain>) -> Json<Value> {
    {
        let mut ledger = node.primary();
        let realism = ledger.realism.clone();
        *ledger = Ledger::with_realism(request.chain_id, &[], realism);
    }
    node.forget_replica();
    Json(json!({ "chain_id": request.chain_id }))
}
