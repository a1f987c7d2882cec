//! The hub's treasury account: its Ed25519 key, read from a Secret, signs every payout. The key
//! never leaves this file: not in logs, Events, status or error messages (errors name the
//! Secret, never its content).

use super::chain::LedgerView;
use aptos_sdk::account::Ed25519Account;
use aptos_sdk::transaction::{
    EntryFunction, SignedTransaction, TransactionBuilder, builder::sign_transaction,
};
use aptos_sdk::{AccountAddress, ChainId};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use std::fmt;

/// Key in the Secret's data holding the private key (hex, 32 bytes; `0x` and the AIP-80
/// prefix `ed25519-priv-` are accepted).
pub const SECRET_KEY: &str = "privateKey";

/// Why the treasury key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TreasuryError {
    /// The Secret could not be read.
    #[error("read Secret {namespace}/{name}: {source}")]
    Read { namespace: String, name: String, source: kube::Error },
    /// The Secret has no such key.
    #[error(
        "Secret {namespace}/{name} has no data key {SECRET_KEY}: create it with `kubectl create secret generic {name} -n {namespace} --from-literal={SECRET_KEY}=0x<64 hex digits>`"
    )]
    Missing { namespace: String, name: String },
    /// The key is not an Ed25519 private key.
    #[error(
        "Secret {namespace}/{name} key {SECRET_KEY} is not an Ed25519 private key: write 64 hex digits, optionally after 0x"
    )]
    Invalid { namespace: String, name: String },
    /// Signing failed.
    #[error("sign the settlement transaction: {0}")]
    Sign(String),
}

/// Gas settings of payout transactions.
#[derive(Clone, Copy, Debug)]
pub struct Gas {
    /// Most gas units a payout may use.
    pub max_amount: u64,
    /// Octas per gas unit.
    pub unit_price: u64,
}

impl Gas {
    /// The most a payout's gas can cost.
    pub fn max_fee(&self) -> u64 {
        self.max_amount.saturating_mul(self.unit_price)
    }
}

/// The signing account.
pub struct Treasury {
    account: Ed25519Account,
}

impl fmt::Debug for Treasury {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Treasury").field("address", &self.address()).finish_non_exhaustive()
    }
}

impl Treasury {
    /// The treasury of a private key in hex.
    pub fn from_hex(key: &str, namespace: &str, name: &str) -> Result<Self, TreasuryError> {
        let key = key.trim();
        let key = key.strip_prefix("ed25519-priv-").unwrap_or(key);
        Ed25519Account::from_private_key_hex(key)
            .map(|account| Treasury { account })
            .map_err(|_| TreasuryError::Invalid { namespace: namespace.into(), name: name.into() })
    }

    /// Reads the key from a Secret.
    pub async fn from_secret(
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<Self, TreasuryError> {
        let secret =
            Api::<Secret>::namespaced(client.clone(), namespace).get(name).await.map_err(|source| {
                TreasuryError::Read { namespace: namespace.into(), name: name.into(), source }
            })?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(SECRET_KEY))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret.string_data.as_ref().and_then(|d| d.get(SECRET_KEY)).map(|s| s.as_bytes().to_vec())
            })
            .ok_or_else(|| TreasuryError::Missing { namespace: namespace.into(), name: name.into() })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| TreasuryError::Invalid { namespace: namespace.into(), name: name.into() })?;
        Self::from_hex(&text, namespace, name)
    }

    /// The treasury's account address.
    pub fn address(&self) -> AccountAddress {
        self.account.address()
    }

    /// Signs a coin transfer of `amount` octas to `to` with sequence number `sequence_number`,
    /// expiring `ttl_seconds` after the chain's clock.
    pub fn sign_transfer(
        &self,
        to: AccountAddress,
        amount: u64,
        sequence_number: u64,
        ledger: LedgerView,
        ttl_seconds: u64,
        gas: Gas,
    ) -> Result<SignedTransaction, TreasuryError> {
        let payload =
            EntryFunction::apt_transfer(to, amount).map_err(|e| TreasuryError::Sign(e.to_string()))?;
        let raw = TransactionBuilder::new()
            .sender(self.address())
            .sequence_number(sequence_number)
            .payload(payload.into())
            .max_gas_amount(gas.max_amount)
            .gas_unit_price(gas.unit_price)
            .expiration_timestamp_secs(ledger.now_seconds + ttl_seconds)
            .chain_id(ChainId::new(ledger.chain_id))
            .build()
            .map_err(|e| TreasuryError::Sign(e.to_string()))?;
        sign_transaction(&raw, &self.account).map_err(|e| TreasuryError::Sign(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0x9bf49a6a0755f953811fce125f2683d50429c3bb49e074147e0089a52eae155f";

    #[test]
    fn the_key_appears_in_no_debug_output_or_error() {
        let treasury = Treasury::from_hex(KEY, "pictor-system", "treasury").unwrap();
        let shown = format!("{treasury:?}");
        assert!(shown.contains("address"), "{shown}");
        assert!(!shown.contains(&KEY[2..]) && !shown.contains(&KEY[2..18]), "{shown}");
        let err = Treasury::from_hex(&KEY[..40], "pictor-system", "treasury").unwrap_err().to_string();
        assert!(!err.contains(&KEY[2..18]), "{err}");
        assert!(err.contains("pictor-system/treasury"), "{err}");
    }

    #[test]
    fn a_signed_transfer_has_a_stable_hash_and_round_trips_through_bcs() {
        let treasury = Treasury::from_hex(KEY, "ns", "s").unwrap();
        let ledger = LedgerView { chain_id: 4, now_seconds: 1_000 };
        let gas = Gas { max_amount: 2_000, unit_price: 100 };
        let to = AccountAddress::from_hex("0xa11ce").unwrap();
        let signed = treasury.sign_transfer(to, 42, 7, ledger, 60, gas).unwrap();
        let again = treasury.sign_transfer(to, 42, 7, ledger, 60, gas).unwrap();
        assert_eq!(signed.hash().unwrap(), again.hash().unwrap(), "Ed25519 signatures are deterministic");
        let bytes = signed.to_bcs().unwrap();
        let decoded: SignedTransaction = aptos_sdk::aptos_bcs::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, signed);
        assert_eq!(decoded.raw_txn.expiration_timestamp_secs, 1_060);
        assert_eq!(decoded.sequence_number(), 7);
    }
}
