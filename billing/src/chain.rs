//! The Aptos node, through aptos-sdk's fullnode client: the ledger's clock, the treasury's
//! sequence number and balance, submitting a signed transaction and looking one up by hash.
//! Any node speaking the Aptos REST API works: devnet, testnet, a localnet, or the e2e test
//! node.
//!
//! What a real node answers, and how billing reads it ([`classify`]):
//! - A refused submission is HTTP 400 with `error_code` `vm_error`: the status is its
//!   `vm_error_code` (the Move VM's `StatusCode` number), its name only in `message`. The
//!   mempool answers some refusals itself with an `error_code` of its own
//!   (`sequence_number_too_old`, `invalid_transaction_update`).
//! - 429 comes from the gateways in front of public endpoints (rate limits), 507 from a full
//!   mempool: both mean "later", not "no".
//! - Public endpoints are several backends behind a load balancer, each at its own ledger
//!   version: two answers in a row may come from different versions. Only one answer is one
//!   consistent view: [`AptosChain::treasury_view`] reads the ledger version, its timestamp and
//!   the treasury's sequence number from the same response.

use super::settle::{Lookup, SentAt, TreasuryView};
use aptos_sdk::api::FullnodeClient;
use aptos_sdk::retry::RetryConfig;
use aptos_sdk::transaction::SignedTransaction;
use aptos_sdk::{AccountAddress, AptosConfig, AptosError, HashValue};
use std::time::Duration;

/// Move VM validation status numbers (`move-core-types` `StatusCode`) a submission can be
/// refused with.
pub mod status {
    pub const INVALID_SIGNATURE: u64 = 1;
    pub const INVALID_AUTH_KEY: u64 = 2;
    pub const SEQUENCE_NUMBER_TOO_OLD: u64 = 3;
    pub const SEQUENCE_NUMBER_TOO_NEW: u64 = 4;
    pub const INSUFFICIENT_BALANCE_FOR_TRANSACTION_FEE: u64 = 5;
    pub const TRANSACTION_EXPIRED: u64 = 6;
    pub const SENDING_ACCOUNT_DOES_NOT_EXIST: u64 = 7;
    pub const MAX_GAS_UNITS_EXCEEDS_MAX_GAS_UNITS_BOUND: u64 = 13;
    pub const MAX_GAS_UNITS_BELOW_MIN_TRANSACTION_GAS_UNITS: u64 = 14;
    pub const GAS_UNIT_PRICE_BELOW_MIN_BOUND: u64 = 15;
    pub const GAS_UNIT_PRICE_ABOVE_MAX_BOUND: u64 = 16;
    pub const BAD_CHAIN_ID: u64 = 23;
}

/// Why a node refused a request, as far as billing acts on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The sequence number is used: the transaction, or another with that number, committed.
    SequenceNumberTooOld,
    /// Ahead of the account's next sequence number.
    SequenceNumberTooNew,
    /// Past its expiry by this node's clock (which may lag): says nothing of whether it
    /// committed.
    Expired,
    /// Signed for another chain: the network was reset (devnet) or the URL points elsewhere.
    BadChainId,
    /// The treasury cannot pay the most gas the transaction may use, or has no account.
    FeeUnaffordable,
    /// The node does not take the treasury key's signature for the account (key rotated?).
    KeyRejected,
    /// `--max-gas-amount` or `--gas-unit-price` outside the network's bounds.
    GasOutOfBounds,
    /// Another transaction with the same sequence number waits in the mempool.
    InvalidUpdate,
    /// Anything else, by the node's own name for it.
    Other(String),
}

/// What an error answer of the node means, from its HTTP status, `error_code`, `vm_error_code`
/// and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 404: no such transaction or account (on this backend, at its version).
    NotFound,
    /// 429 from a gateway.
    RateLimited { retry_after: Option<Duration> },
    /// 507, mempool full, or 503: the node is overloaded; the same request later may pass.
    Busy,
    /// Another 5xx.
    ServerError,
    /// A 4xx refusal.
    Refused(Refusal),
}

/// Reads a node's error answer. The `vm_error_code` decides when present; the status name in
/// `message` only stands in when a proxy dropped the number.
pub fn classify(status: u16, error_code: Option<&str>, vm_error_code: Option<u64>, message: &str) -> Answer {
    match status {
        404 => return Answer::NotFound,
        429 => return Answer::RateLimited { retry_after: None },
        503 | 507 => return Answer::Busy,
        500.. => return Answer::ServerError,
        _ => {}
    }
    match error_code {
        Some("mempool_is_full") => return Answer::Busy,
        Some("sequence_number_too_old") => return Answer::Refused(Refusal::SequenceNumberTooOld),
        Some("invalid_transaction_update") => return Answer::Refused(Refusal::InvalidUpdate),
        _ => {}
    }
    let name = message.rsplit("Code: ").next().filter(|_| message.contains("Code: ")).unwrap_or_default();
    let by_name = |n: &str| name.trim() == n;
    let code = vm_error_code.or_else(|| {
        [
            ("SEQUENCE_NUMBER_TOO_OLD", status::SEQUENCE_NUMBER_TOO_OLD),
            ("SEQUENCE_NUMBER_TOO_NEW", status::SEQUENCE_NUMBER_TOO_NEW),
            ("TRANSACTION_EXPIRED", status::TRANSACTION_EXPIRED),
            ("BAD_CHAIN_ID", status::BAD_CHAIN_ID),
            ("INSUFFICIENT_BALANCE_FOR_TRANSACTION_FEE", status::INSUFFICIENT_BALANCE_FOR_TRANSACTION_FEE),
        ]
        .into_iter()
        .find(|(n, _)| by_name(n))
        .map(|(_, c)| c)
    });
    use status::*;
    Answer::Refused(match code {
        Some(SEQUENCE_NUMBER_TOO_OLD) => Refusal::SequenceNumberTooOld,
        Some(SEQUENCE_NUMBER_TOO_NEW) => Refusal::SequenceNumberTooNew,
        Some(TRANSACTION_EXPIRED) => Refusal::Expired,
        Some(BAD_CHAIN_ID) => Refusal::BadChainId,
        Some(INSUFFICIENT_BALANCE_FOR_TRANSACTION_FEE | SENDING_ACCOUNT_DOES_NOT_EXIST) => {
            Refusal::FeeUnaffordable
        }
        Some(INVALID_SIGNATURE | INVALID_AUTH_KEY) => Refusal::KeyRejected,
        Some(
            MAX_GAS_UNITS_EXCEEDS_MAX_GAS_UNITS_BOUND
            | MAX_GAS_UNITS_BELOW_MIN_TRANSACTION_GAS_UNITS
            | GAS_UNIT_PRICE_BELOW_MIN_BOUND
            | GAS_UNIT_PRICE_ABOVE_MAX_BOUND,
        ) => Refusal::GasOutOfBounds,
        Some(other) => Refusal::Other(if name.is_empty() {
            format!("vm_error_code {other}")
        } else {
            name.trim().to_string()
        }),
        None => Refusal::Other(error_code.unwrap_or("unknown").to_string()),
    })
}

/// What went wrong talking to the node.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The node could not be reached, did not answer in time, or failed (5xx).
    #[error("Aptos node {url} unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// A gateway in front of the node limits the request rate (429): retried with backoff.
    #[error(
        "Aptos node {url} rate-limited billing (HTTP 429{}); retrying with backoff — use an endpoint with an API key or a higher limit if this persists",
        retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default()
    )]
    RateLimited { url: String, retry_after: Option<Duration> },
    /// The node is overloaded (507: its mempool is full): the recorded transaction is
    /// submitted again later.
    #[error("Aptos node {url} is overloaded ({message}); the transaction is submitted again later")]
    Busy { url: String, message: String },
    /// The node refused a request (4xx).
    #[error("Aptos node refused {what}: {message}")]
    Refused { what: &'static str, refusal: Refusal, message: String },
    /// The node answered something this client does not understand.
    #[error("Aptos node answered {what} unexpectedly: {message}")]
    Unexpected { what: &'static str, message: String },
}

/// The ledger as the node sees it now.
#[derive(Clone, Copy, Debug)]
pub struct LedgerView {
    /// Chain id to sign for.
    pub chain_id: u8,
    /// The chain's clock, seconds since the epoch.
    pub now_seconds: u64,
}

/// A connection to one Aptos node.
#[derive(Clone, Debug)]
pub struct AptosChain {
    client: FullnodeClient,
    http: reqwest::Client,
    url: String,
}

/// The ledger headers every answer of a node carries.
const LEDGER_VERSION: &str = "x-aptos-ledger-version";
const LEDGER_TIMESTAMP: &str = "x-aptos-ledger-timestampusec";
const CHAIN_ID: &str = "x-aptos-chain-id";

/// Requests retried after a 429 before the pass gives up and backs off.
const RATE_LIMIT_RETRIES: u32 = 3;

impl AptosChain {
    /// A client of the node at `url` (its REST root, e.g. `http://127.0.0.1:8080/v1`). The
    /// controller retries with its own backoff, so the SDK's retries are off.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, ChainError> {
        let config = AptosConfig::custom(url)
            .map_err(|e| ChainError::Unexpected { what: "the node URL", message: e.to_string() })?
            .with_timeout(timeout)
            .with_retry(RetryConfig::no_retry());
        let client = FullnodeClient::new(config)
            .map_err(|e| ChainError::Unexpected { what: "the HTTP client", message: e.to_string() })?;
        // The SDK drops the headers of the answers billing must read as one view.
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ChainError::Unexpected { what: "the HTTP client", message: e.to_string() })?;
        Ok(AptosChain { client, http, url: url.trim_end_matches('/').to_string() })
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn api_error(&self, what: &'static str, status: u16, message: String, answer: Answer) -> ChainError {
        match answer {
            Answer::NotFound => ChainError::Unexpected { what, message: format!("HTTP 404: {message}") },
            Answer::RateLimited { retry_after } => {
                ChainError::RateLimited { url: self.url.clone(), retry_after }
            }
            Answer::Busy => {
                ChainError::Busy { url: self.url.clone(), message: format!("HTTP {status}: {message}") }
            }
            Answer::ServerError => ChainError::Unreachable {
                url: self.url.clone(),
                message: format!("HTTP {status}: {message}"),
            },
            Answer::Refused(refusal) => ChainError::Refused { what, refusal, message },
        }
    }

    fn error(&self, what: &'static str, e: AptosError) -> ChainError {
        match e {
            AptosError::Http(e) => ChainError::Unreachable { url: self.url.clone(), message: e.to_string() },
            AptosError::RateLimited { retry_after_secs } => ChainError::RateLimited {
                url: self.url.clone(),
                retry_after: retry_after_secs.map(Duration::from_secs),
            },
            AptosError::Api { status_code, message, error_code, vm_error_code } => {
                let answer = classify(status_code, error_code.as_deref(), vm_error_code, &message);
                self.api_error(what, status_code, message, answer)
            }
            other => ChainError::Unexpected { what, message: other.to_string() },
        }
    }

    /// Calls the node, and again after the wait a rate-limiting gateway asks for (429), a few
    /// times: each pass makes a chain of requests, and a limiter that refuses one of them must
    /// not stop the whole pass every time. Only a limit that persists surfaces.
    async fn patiently<T, F, Fut>(&self, mut call: F) -> Result<T, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ChainError>>,
    {
        let mut attempts = 0;
        loop {
            match call().await {
                Err(ChainError::RateLimited { retry_after, .. }) if attempts < RATE_LIMIT_RETRIES => {
                    attempts += 1;
                    let wait = retry_after.unwrap_or(Duration::from_millis(500)).min(Duration::from_secs(5));
                    tracing::debug!(?wait, attempts, "rate-limited by the node's gateway; waiting");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// Chain id and clock.
    pub async fn ledger(&self) -> Result<LedgerView, ChainError> {
        self.patiently(|| self.ledger_once()).await
    }

    /// An account's APT balance in octas.
    pub async fn balance(&self, address: AccountAddress) -> Result<u64, ChainError> {
        self.patiently(|| self.balance_once(address)).await
    }

    /// Submits a signed transaction (the same bytes again are harmless: one hash, one execution).
    pub async fn submit(&self, transaction: &SignedTransaction) -> Result<(), ChainError> {
        self.patiently(|| self.submit_once(transaction)).await
    }

    /// Where a transaction stands, by hash. A 404 only says the backend that answered, at its
    /// version, does not know it: it may be lagging.
    pub async fn lookup(&self, hash: &str) -> Result<Lookup, ChainError> {
        self.patiently(|| self.lookup_once(hash)).await
    }

    /// The treasury's sequence number with the ledger version and timestamp it was read at,
    /// from one answer: whichever backend serves it, the three agree with each other.
    pub async fn treasury_view(&self, treasury: AccountAddress) -> Result<TreasuryView, ChainError> {
        self.patiently(|| self.treasury_view_once(treasury)).await
    }

    /// The transaction `sender` sent with `sequence_number`, if the backend asked knows it.
    /// There is only ever one: its hash says whether a recorded transaction is the one that
    /// used the number.
    pub async fn sent_at(
        &self,
        sender: AccountAddress,
        sequence_number: u64,
    ) -> Result<Option<SentAt>, ChainError> {
        self.patiently(|| self.sent_at_once(sender, sequence_number)).await
    }

    async fn ledger_once(&self) -> Result<LedgerView, ChainError> {
        let info = self.client.get_ledger_info().await.map_err(|e| self.error("ledger info", e))?.data;
        let micros: u64 = info.ledger_timestamp.parse().map_err(|_| ChainError::Unexpected {
            what: "ledger info",
            message: info.ledger_timestamp.clone(),
        })?;
        Ok(LedgerView { chain_id: info.chain_id, now_seconds: micros / 1_000_000 })
    }

    /// An account's APT balance in octas.
    async fn balance_once(&self, address: AccountAddress) -> Result<u64, ChainError> {
        match self.client.get_account_balance(address).await {
            Ok(n) => Ok(n),
            Err(AptosError::Api { status_code: 404, .. } | AptosError::AccountNotFound(_)) => Ok(0),
            Err(e) => Err(self.error("the balance", e)),
        }
    }

    /// Submits a signed transaction.
    async fn submit_once(&self, transaction: &SignedTransaction) -> Result<(), ChainError> {
        self.client
            .submit_transaction(transaction)
            .await
            .map(|_| ())
            .map_err(|e| self.error("the transaction", e))
    }

    /// Where a transaction stands, by hash. A 404 only says this backend, at its version,
    /// does not know it: it may be lagging.
    async fn lookup_once(&self, hash: &str) -> Result<Lookup, ChainError> {
        let hash = HashValue::from_hex(hash)
            .map_err(|e| ChainError::Unexpected { what: "a transaction hash", message: e.to_string() })?;
        let found = match self.client.get_transaction_by_hash(&hash).await {
            Ok(found) => found.data,
            Err(AptosError::Api { status_code: 404, .. } | AptosError::NotFound(_)) => {
                return Ok(Lookup::NotFound);
            }
            Err(e) => return Err(self.error("a transaction lookup", e)),
        };
        Ok(read_transaction(&found))
    }

    /// The treasury's sequence number with the ledger version and timestamp it was read at,
    /// from one answer: whichever backend serves it, the three agree with each other.
    async fn treasury_view_once(&self, treasury: AccountAddress) -> Result<TreasuryView, ChainError> {
        let what = "the treasury account";
        let url = format!("{}/accounts/{}", self.url, treasury.to_long_string());
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ChainError::Unreachable { url: self.url.clone(), message: e.to_string() })?;
        let header = |name: &str| -> Option<u64> {
            response.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
        };
        let (version, timestamp, chain_id) =
            (header(LEDGER_VERSION), header(LEDGER_TIMESTAMP), header(CHAIN_ID));
        let status = response.status().as_u16();
        let retry_after = header("retry-after").map(Duration::from_secs);
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let text = |key: &str| body.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let sequence_number = match status {
            200 => text("sequence_number").and_then(|s| s.parse().ok()).ok_or_else(|| {
                ChainError::Unexpected { what, message: format!("no sequence_number in {body}") }
            })?,
            // Networks without default account resources: an account never used is unknown,
            // its next sequence number 0.
            404 => 0,
            429 => return Err(ChainError::RateLimited { url: self.url.clone(), retry_after }),
            _ => {
                let message = text("message").unwrap_or_else(|| format!("HTTP {status}"));
                let vm = body.get("vm_error_code").and_then(|v| v.as_u64());
                let answer = classify(status, text("error_code").as_deref(), vm, &message);
                return Err(self.api_error(what, status, message, answer));
            }
        };
        let (Some(ledger_version), Some(timestamp_usecs), Some(chain_id)) = (version, timestamp, chain_id)
        else {
            return Err(ChainError::Unexpected {
                what,
                message: format!(
                    "the answer lacks the headers {LEDGER_VERSION}, {LEDGER_TIMESTAMP} and {CHAIN_ID} every Aptos node sends; is {} an Aptos node's REST root (…/v1)?",
                    self.url
                ),
            });
        };
        Ok(TreasuryView {
            ledger_version,
            timestamp_seconds: timestamp_usecs / 1_000_000,
            chain_id: u8::try_from(chain_id).unwrap_or(u8::MAX),
            sequence_number,
        })
    }

    /// The transaction `sender` sent with `sequence_number`, if this backend knows it. There is
    /// only ever one: its hash says whether a recorded transaction is the one that used it.
    async fn sent_at_once(
        &self,
        sender: AccountAddress,
        sequence_number: u64,
    ) -> Result<Option<SentAt>, ChainError> {
        let found = match self.client.get_account_transactions(sender, Some(sequence_number), Some(1)).await {
            Ok(found) => found.data,
            Err(AptosError::Api { status_code: 404, .. } | AptosError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(self.error("the treasury's transactions", e)),
        };
        Ok(found.iter().find_map(|t| {
            let number = t.get("sequence_number")?.as_str()?.parse::<u64>().ok()?;
            (number == sequence_number).then(|| SentAt {
                hash: t.get("hash").and_then(|h| h.as_str()).unwrap_or_default().to_string(),
                lookup: read_transaction(t),
            })
        }))
    }
}

/// A transaction as the REST API shows it.
fn read_transaction(found: &serde_json::Value) -> Lookup {
    if found.get("type").and_then(|t| t.as_str()) == Some("pending_transaction") {
        return Lookup::Pending;
    }
    let version = found.get("version").and_then(|v| v.as_str()).and_then(|v| v.parse().ok());
    let Some(version) = version else {
        return Lookup::Pending;
    };
    Lookup::Committed {
        version,
        success: found.get("success").and_then(|s| s.as_bool()).unwrap_or(false),
        vm_status: found.get("vm_status").and_then(|s| s.as_str()).unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(code: u64, name: &str) -> Answer {
        classify(
            400,
            Some("vm_error"),
            Some(code),
            &format!("Invalid transaction: Type: Validation Code: {name}"),
        )
    }

    #[test]
    fn refusals_are_read_from_the_vm_error_code_not_the_error_code() {
        assert_eq!(vm(3, "SEQUENCE_NUMBER_TOO_OLD"), Answer::Refused(Refusal::SequenceNumberTooOld));
        assert_eq!(vm(4, "SEQUENCE_NUMBER_TOO_NEW"), Answer::Refused(Refusal::SequenceNumberTooNew));
        assert_eq!(
            vm(5, "INSUFFICIENT_BALANCE_FOR_TRANSACTION_FEE"),
            Answer::Refused(Refusal::FeeUnaffordable)
        );
        assert_eq!(vm(6, "TRANSACTION_EXPIRED"), Answer::Refused(Refusal::Expired));
        assert_eq!(vm(23, "BAD_CHAIN_ID"), Answer::Refused(Refusal::BadChainId));
        assert_eq!(vm(2, "INVALID_AUTH_KEY"), Answer::Refused(Refusal::KeyRejected));
        assert_eq!(vm(15, "GAS_UNIT_PRICE_BELOW_MIN_BOUND"), Answer::Refused(Refusal::GasOutOfBounds));
        assert_eq!(
            vm(10, "EXCEEDED_MAX_TRANSACTION_SIZE"),
            Answer::Refused(Refusal::Other("EXCEEDED_MAX_TRANSACTION_SIZE".into()))
        );
        // A proxy that kept the message but not the number.
        let named =
            classify(400, Some("vm_error"), None, "Invalid transaction: Type: Validation Code: BAD_CHAIN_ID");
        assert_eq!(named, Answer::Refused(Refusal::BadChainId));
        // The mempool's own answers.
        let old = classify(400, Some("sequence_number_too_old"), None, "Transaction sequence number too old");
        assert_eq!(old, Answer::Refused(Refusal::SequenceNumberTooOld));
        let update =
            classify(400, Some("invalid_transaction_update"), None, "Transaction already in mempool");
        assert_eq!(update, Answer::Refused(Refusal::InvalidUpdate));
    }

    #[test]
    fn overload_and_rate_limits_are_not_refusals() {
        assert_eq!(classify(429, None, None, ""), Answer::RateLimited { retry_after: None });
        assert_eq!(classify(507, Some("mempool_is_full"), None, "Mempool is full"), Answer::Busy);
        assert_eq!(classify(503, None, None, ""), Answer::Busy);
        assert_eq!(classify(502, None, None, "bad gateway"), Answer::ServerError);
        assert_eq!(classify(404, Some("transaction_not_found"), None, ""), Answer::NotFound);
    }
}
