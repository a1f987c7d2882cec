//! Decoding a BCS `SignedTransaction` from a request body. aptos-sdk 0.8 serializes single-key
//! authenticators in the chain's format (the `AnyPublicKey` / `AnySignature` inline) but decodes
//! them only in a layout of its own, so `aptos_bcs::from_bytes::<SignedTransaction>` refuses the
//! bytes of an `Ed25519SingleKeyAccount`'s transaction. This reads the chain's format and hands
//! back the SDK's types.

use aptos_sdk::aptos_bcs;
use aptos_sdk::transaction::authenticator::{Ed25519PublicKey, Ed25519Signature};
use aptos_sdk::transaction::{
    AccountAuthenticator, RawTransaction, SignedTransaction, TransactionAuthenticator,
};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

/// The chain's `SignedTransaction`, variant for variant.
#[derive(Deserialize)]
struct WireTransaction {
    raw_txn: RawTransaction,
    authenticator: WireAuthenticator,
}

#[derive(Deserialize)]
enum WireAuthenticator {
    Ed25519 { public_key: Ed25519PublicKey, signature: Ed25519Signature },
    MultiEd25519 { public_key: Vec<u8>, signature: Vec<u8> },
    MultiAgent(Unsupported),
    FeePayer(Unsupported),
    SingleSender { sender: WireAccountAuthenticator },
}

#[derive(Deserialize)]
enum WireAccountAuthenticator {
    Ed25519 { public_key: Ed25519PublicKey, signature: Ed25519Signature },
    MultiEd25519 { public_key: Vec<u8>, signature: Vec<u8> },
    SingleKey { public_key: AnyPublicKey, signature: AnySignature },
    MultiKey(Unsupported),
    NoAccountAuthenticator,
}

/// The chain's `AnyPublicKey`, up to the variants the test node verifies.
#[derive(Serialize, Deserialize)]
enum AnyPublicKey {
    Ed25519(Vec<u8>),
    Secp256k1Ecdsa(Vec<u8>),
    Secp256r1Ecdsa(Vec<u8>),
}

/// The chain's `AnySignature`, up to the variants the test node verifies.
#[derive(Serialize, Deserialize)]
enum AnySignature {
    Ed25519(Vec<u8>),
    Secp256k1Ecdsa(Vec<u8>),
}

/// Stands for authenticators the test node does not take (multi-agent, fee payer, multi-key).
enum Unsupported {}

impl<'de> Deserialize<'de> for Unsupported {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom("the test node takes single-signer transactions only"))
    }
}

/// Decodes a signed transaction as a real node receives it.
pub fn signed_transaction(bytes: &[u8]) -> Result<SignedTransaction, String> {
    let wire: WireTransaction = aptos_bcs::from_bytes(bytes).map_err(|e| e.to_string())?;
    let authenticator = match wire.authenticator {
        WireAuthenticator::Ed25519 { public_key, signature } => {
            TransactionAuthenticator::Ed25519 { public_key, signature }
        }
        WireAuthenticator::MultiEd25519 { public_key, signature } => {
            TransactionAuthenticator::MultiEd25519 { public_key, signature }
        }
        WireAuthenticator::MultiAgent(never) | WireAuthenticator::FeePayer(never) => match never {},
        WireAuthenticator::SingleSender { sender } => {
            TransactionAuthenticator::SingleSender { sender: account_authenticator(sender)? }
        }
    };
    Ok(SignedTransaction::new(wire.raw_txn, authenticator))
}

fn account_authenticator(wire: WireAccountAuthenticator) -> Result<AccountAuthenticator, String> {
    Ok(match wire {
        WireAccountAuthenticator::Ed25519 { public_key, signature } => {
            AccountAuthenticator::Ed25519 { public_key, signature }
        }
        WireAccountAuthenticator::MultiEd25519 { public_key, signature } => {
            AccountAuthenticator::MultiEd25519 { public_key, signature }
        }
        // The SDK holds these as their BCS bytes.
        WireAccountAuthenticator::SingleKey { public_key, signature } => AccountAuthenticator::SingleKey {
            public_key: aptos_bcs::to_bytes(&public_key).map_err(|e| e.to_string())?,
            signature: aptos_bcs::to_bytes(&signature).map_err(|e| e.to_string())?,
        },
        WireAccountAuthenticator::MultiKey(never) => match never {},
        WireAccountAuthenticator::NoAccountAuthenticator => AccountAuthenticator::NoAccountAuthenticator,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aptos_sdk::account::{Ed25519Account, Ed25519SingleKeyAccount};
    use aptos_sdk::transaction::builder::sign_transaction;
    use aptos_sdk::transaction::{EntryFunction, TransactionBuilder};
    use aptos_sdk::{AccountAddress, ChainId};

    fn raw(sender: AccountAddress) -> RawTransaction {
        TransactionBuilder::new()
            .sender(sender)
            .sequence_number(3)
            .payload(EntryFunction::apt_transfer(AccountAddress::ONE, 1).unwrap().into())
            .chain_id(ChainId::new(4))
            .expiration_timestamp_secs(1_000)
            .build()
            .unwrap()
    }

    #[test]
    fn single_key_transactions_decode_where_the_sdk_refuses_them() {
        let account = Ed25519SingleKeyAccount::generate();
        let signed = sign_transaction(&raw(account.address()), &account).unwrap();
        let bytes = signed.to_bcs().unwrap();
        assert!(aptos_bcs::from_bytes::<SignedTransaction>(&bytes).is_err());
        let decoded = signed_transaction(&bytes).unwrap();
        assert_eq!(decoded, signed);
        assert_eq!(decoded.hash().unwrap(), signed.hash().unwrap());
        decoded.verify_signature().unwrap();
    }

    #[test]
    fn ed25519_transactions_decode_as_the_sdk_does() {
        let account = Ed25519Account::generate();
        let signed = sign_transaction(&raw(account.address()), &account).unwrap();
        let bytes = signed.to_bcs().unwrap();
        assert_eq!(signed_transaction(&bytes).unwrap(), signed);
        assert!(signed_transaction(&bytes[..bytes.len() - 1]).is_err());
    }
}
