//! The Aptos node, through aptos-sdk's fullnode client: the ledger's clock, the treasury's
//! sequence number and balance, submitting a signed transaction and looking one up by hash.
//! Any node speaking the Aptos REST API works: devnet, testnet, a localnet, or the e2e test
//! node.

use super::settle::Lookup;
use aptos_sdk::api::FullnodeClient;
use aptos_sdk::retry::RetryConfig;
use aptos_sdk::transaction::SignedTransaction;
use aptos_sdk::{AccountAddress, AptosConfig, AptosError, HashValue};
use std::time::Duration;

/// What went wrong talking to the node.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The node could not be reached or did not answer in time.
    #[error("Aptos node {url} unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// The node refused a request (4xx): `code` is its error code, e.g. `SEQUENCE_NUMBER_TOO_OLD`.
    #[error("Aptos node refused {what}: {message}")]
    Refused { what: &'static str, code: String, message: String },
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
    url: String,
}

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
        Ok(AptosChain { client, url: url.to_string() })
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, what: &'static str, e: AptosError) -> ChainError {
        match e {
            AptosError::Http(e) => ChainError::Unreachable { url: self.url.clone(), message: e.to_string() },
            AptosError::Api { status_code, message, error_code, vm_error_code } if status_code < 500 => {
                ChainError::Refused {
                    what,
                    code: error_code
                        .or_else(|| vm_error_code.map(|c| c.to_string()))
                        .unwrap_or_else(|| status_code.to_string()),
                    message,
                }
            }
            AptosError::Api { status_code, message, .. } => ChainError::Unreachable {
                url: self.url.clone(),
                message: format!("HTTP {status_code}: {message}"),
            },
            other => ChainError::Unexpected { what, message: other.to_string() },
        }
    }

    /// Chain id and clock.
    pub async fn ledger(&self) -> Result<LedgerView, ChainError> {
        let info = self.client.get_ledger_info().await.map_err(|e| self.error("ledger info", e))?.data;
        let micros: u64 = info.ledger_timestamp.parse().map_err(|_| ChainError::Unexpected {
            what: "ledger info",
            message: info.ledger_timestamp.clone(),
        })?;
        Ok(LedgerView { chain_id: info.chain_id, now_seconds: micros / 1_000_000 })
    }

    /// An account's next sequence number (0 for an account the chain does not know yet).
    pub async fn sequence_number(&self, address: AccountAddress) -> Result<u64, ChainError> {
        match self.client.get_sequence_number(address).await {
            Ok(n) => Ok(n),
            Err(AptosError::Api { status_code: 404, .. } | AptosError::AccountNotFound(_)) => Ok(0),
            Err(e) => Err(self.error("the account", e)),
        }
    }

    /// An account's APT balance in octas.
    pub async fn balance(&self, address: AccountAddress) -> Result<u64, ChainError> {
        match self.client.get_account_balance(address).await {
            Ok(n) => Ok(n),
            Err(AptosError::Api { status_code: 404, .. } | AptosError::AccountNotFound(_)) => Ok(0),
            Err(e) => Err(self.error("the balance", e)),
        }
    }

    /// Submits a signed transaction. A node that already executed it refuses it as
    /// `SEQUENCE_NUMBER_TOO_OLD`; the caller looks it up by hash either way.
    pub async fn submit(&self, transaction: &SignedTransaction) -> Result<(), ChainError> {
        self.client
            .submit_transaction(transaction)
            .await
            .map(|_| ())
            .map_err(|e| self.error("the transaction", e))
    }

    /// Where a transaction stands, by hash.
    pub async fn lookup(&self, hash: &str) -> Result<Lookup, ChainError> {
        let hash = HashValue::from_hex(hash)
            .map_err(|e| ChainError::Unexpected { what: "a transaction hash", message: e.to_string() })?;
        let found = match self.client.get_transaction_by_hash(&hash).await {
            Ok(found) => found.data,
            Err(AptosError::Api { status_code: 404, .. } | AptosError::NotFound(_)) => {
                return Ok(Lookup::NotFound);
            }
            Err(e) => return Err(self.error("a transaction lookup", e)),
        };
        if found.get("type").and_then(|t| t.as_str()) == Some("pending_transaction") {
            return Ok(Lookup::Pending);
        }
        let version = found.get("version").and_then(|v| v.as_str()).and_then(|v| v.parse().ok());
        let Some(version) = version else {
            return Ok(Lookup::Pending);
        };
        Ok(Lookup::Committed {
            version,
            success: found.get("success").and_then(|s| s.as_bool()).unwrap_or(false),
            vm_status: found.get("vm_status").and_then(|s| s.as_str()).unwrap_or_default().to_string(),
        })
    }
}
