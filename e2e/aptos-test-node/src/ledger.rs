//! The chain the test node keeps in memory: accounts, a mempool ordered by sender and sequence
//! number, the committed transactions, and a clock that tests can push ahead. Everything here is
//! plain data and synchronous; the REST layer (`rest.rs`) and the block timer (`lib.rs`) lock it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aptos_sdk::transaction::{
    AccountAuthenticator, SignedTransaction, TransactionAuthenticator, TransactionPayload,
};
use aptos_sdk::{AccountAddress, HashValue};
use serde::Serialize;

use crate::Realism;
use crate::execution::{self, GAS_UNIT_PRICE, GAS_USED, MAX_GAS_AMOUNT};
use crate::validation::ValidationStatus;

/// An account as the node's `/accounts/{address}` shows it, plus its APT balance in octas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub sequence_number: u64,
    pub authentication_key: [u8; 32],
    pub balance: u64,
}

impl Account {
    /// A fresh account: its authentication key is its address, as for any account created by a
    /// transfer or derived from an Ed25519 key.
    fn new(address: AccountAddress) -> Self {
        Self { sequence_number: 0, authentication_key: address.to_bytes(), balance: 0 }
    }
}

/// A committed transaction, as tests and the admin endpoint see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CommittedTransaction {
    pub version: u64,
    /// `0x`-prefixed hex, equal to `SignedTransaction::hash()` in the SDK.
    pub hash: String,
    pub sender: AccountAddress,
    pub sequence_number: u64,
    pub success: bool,
    pub vm_status: String,
    /// `0x1::aptos_account::transfer` and the like.
    pub function: String,
    /// Coins moved, recipient and octas; empty when the transaction failed.
    pub transfers: Vec<(AccountAddress, u64)>,
    pub gas_used: u64,
    pub gas_unit_price: u64,
    pub expiration_timestamp_secs: u64,
    /// The block's timestamp in microseconds, as in the REST API's `timestamp`.
    pub timestamp_usecs: u64,
    /// Octas of storage fee in the gas charged (a new primary store), with metered gas.
    pub storage_fee_octas: u64,
}

/// A committed transaction with what the REST API needs to show it.
#[derive(Clone, Debug)]
pub struct Committed {
    pub summary: CommittedTransaction,
    pub transaction: SignedTransaction,
    pub hash: HashValue,
}

/// Where a transaction hash is known.
pub enum Lookup<'a> {
    Pending(&'a SignedTransaction, HashValue),
    Committed(&'a Committed),
}

/// Why a submission is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// What the VM validator says; HTTP 400 with `error_code` `vm_error`.
    Validation(ValidationStatus),
    /// Another transaction from the sender with that sequence number waits in the mempool;
    /// HTTP 400 with `error_code` `invalid_transaction_update`.
    InvalidUpdate,
    /// Something a real node would take but the test node does not run; HTTP 400,
    /// `error_code` `invalid_input`.
    Unsupported(String),
}

/// The outcome of an accepted submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    New,
    /// The same signed transaction was already waiting; nothing changed.
    AlreadyPending,
}

/// The state of the test chain.
#[derive(Clone, Debug)]
pub struct Ledger {
    /// Which behaviours of real networks this chain imitates.
    pub realism: Realism,
    pub chain_id: u8,
    pub epoch: u64,
    pub block_height: u64,
    /// Microseconds since the Unix epoch of the last block.
    pub ledger_timestamp_usecs: u64,
    /// While set, no block is produced: the chain stalls, submissions wait in the mempool.
    pub blocks_paused: bool,
    clock_ahead: Duration,
    /// The latest version: user transactions, and block metadata transactions with
    /// `realism.block_metadata`.
    version: u64,
    accounts: BTreeMap<AccountAddress, Account>,
    mempool: BTreeMap<(AccountAddress, u64), (SignedTransaction, HashValue)>,
    committed: Vec<Committed>,
    committed_by_hash: HashMap<HashValue, usize>,
}

impl Ledger {
    #[cfg(test)]
    pub fn new(chain_id: u8, genesis: &[(AccountAddress, u64)]) -> Self {
        Self::with_realism(chain_id, genesis, Realism::default())
    }

    pub fn with_realism(chain_id: u8, genesis: &[(AccountAddress, u64)], realism: Realism) -> Self {
        let mut ledger = Self {
            realism,
            chain_id,
            epoch: 1,
            block_height: 0,
            ledger_timestamp_usecs: 0,
            blocks_paused: false,
            clock_ahead: Duration::ZERO,
            version: 0,
            accounts: BTreeMap::new(),
            mempool: BTreeMap::new(),
            committed: Vec::new(),
            committed_by_hash: HashMap::new(),
        };
        ledger.ledger_timestamp_usecs = ledger.clock_usecs();
        for (address, octas) in genesis {
            ledger.fund(*address, *octas);
        }
        ledger
    }

    /// The chain's wall clock: the machine's, plus however far tests pushed it.
    pub fn clock_usecs(&self) -> u64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + self.clock_ahead;
        u64::try_from(now.as_micros()).unwrap_or(u64::MAX)
    }

    pub fn advance_clock(&mut self, by: Duration) {
        self.clock_ahead += by;
        self.ledger_timestamp_usecs = self.ledger_timestamp_usecs.max(self.clock_usecs());
    }

    /// The version of the latest committed transaction; genesis is version 0.
    pub fn ledger_version(&self) -> u64 {
        self.version
    }

    pub fn account(&self, address: &AccountAddress) -> Option<&Account> {
        self.accounts.get(address)
    }

    /// An account as `/accounts/{address}` shows it: with default account resources every
    /// address is one, with sequence number 0 until it sends.
    pub fn account_or_default(&self, address: &AccountAddress) -> Option<Account> {
        match self.accounts.get(address) {
            Some(account) => Some(account.clone()),
            None if self.realism.default_accounts => Some(Account::new(*address)),
            None => None,
        }
    }

    /// Sets an account's balance, as if it had spent or received APT elsewhere.
    pub fn set_balance(&mut self, address: AccountAddress, octas: u64) {
        self.accounts.entry(address).or_insert_with(|| Account::new(address)).balance = octas;
    }

    /// The committed transactions `sender` sent, from sequence number `start`, at most `limit`.
    pub fn sent_by(&self, sender: &AccountAddress, start: u64, limit: usize) -> Vec<&Committed> {
        let mut sent: Vec<&Committed> = self
            .committed
            .iter()
            .filter(|c| c.summary.sender == *sender && c.summary.sequence_number >= start)
            .collect();
        sent.sort_by_key(|c| c.summary.sequence_number);
        sent.truncate(limit);
        sent
    }

    pub fn balance(&self, address: &AccountAddress) -> u64 {
        self.accounts.get(address).map_or(0, |a| a.balance)
    }

    /// Mints octas into an account, creating it.
    pub fn fund(&mut self, address: AccountAddress, octas: u64) -> u64 {
        let account = self.accounts.entry(address).or_insert_with(|| Account::new(address));
        account.balance = account.balance.saturating_add(octas);
        account.balance
    }

    pub fn committed(&self) -> impl Iterator<Item = &Committed> {
        self.committed.iter()
    }

    /// The user transaction at `version` (the test node keeps no block metadata transactions).
    pub fn by_version(&self, version: u64) -> Option<&Committed> {
        let index = self.committed.binary_search_by_key(&version, |c| c.summary.version).ok()?;
        self.committed.get(index)
    }

    pub fn lookup(&self, hash: &HashValue) -> Option<Lookup<'_>> {
        if let Some(index) = self.committed_by_hash.get(hash) {
            return Some(Lookup::Committed(&self.committed[*index]));
        }
        self.mempool
            .values()
            .find(|(_, pending)| pending == hash)
            .map(|(txn, hash)| Lookup::Pending(txn, *hash))
    }

    /// Validates a signed transaction as a node's VM validator and mempool do, and queues it.
    pub fn submit(&mut self, txn: SignedTransaction) -> Result<(Accepted, HashValue), Refusal> {
        let hash = self.check_submission(&txn)?;
        let key = (txn.sender(), txn.sequence_number());
        match self.mempool.get(&key) {
            Some((_, pending)) if *pending == hash => Ok((Accepted::AlreadyPending, hash)),
            Some(_) => Err(Refusal::InvalidUpdate),
            None => {
                self.mempool.insert(key, (txn, hash));
                Ok((Accepted::New, hash))
            }
        }
    }

    /// The checks a node makes of a submission against its own state, without queueing it.
    pub fn check_submission(&self, txn: &SignedTransaction) -> Result<HashValue, Refusal> {
        let hash =
            txn.hash().map_err(|e| Refusal::Unsupported(format!("cannot hash the transaction: {e}")))?;
        self.validate(txn, Check::Submit)?;
        Ok(hash)
    }

    /// A transaction another backend accepted against its own, perhaps older, state and
    /// broadcast here: queued when its sequence number is still to come and no other waits
    /// with it; dropped otherwise, after the client was told it was accepted, as upstream
    /// mempools do.
    pub fn forward(&mut self, txn: SignedTransaction, hash: HashValue) {
        let key = (txn.sender(), txn.sequence_number());
        let next = self.accounts.get(&key.0).map_or(0, |a| a.sequence_number);
        if key.1 >= next && !self.mempool.contains_key(&key) {
            self.mempool.insert(key, (txn, hash));
        }
    }

    /// The checks of a real node's VM validator, in its order: signature, gas bounds,
    /// expiration, chain id, authentication key, sequence number, fee.
    fn validate(&self, txn: &SignedTransaction, check: Check) -> Result<(), Refusal> {
        let raw = &txn.raw_txn;
        if raw.sequence_number == u64::MAX {
            return Err(Refusal::Unsupported("the test node does not take orderless transactions".into()));
        }
        if !matches!(raw.payload, TransactionPayload::EntryFunction(_)) {
            return Err(Refusal::Unsupported("the test node runs entry function payloads only".into()));
        }
        let authenticator = sender_authenticator(&txn.authenticator)?;
        // The SDK simulates single-key accounts without any authenticator: no key to compare.
        let authentication_key = match authenticator.derived_address() {
            Ok(key) => Some(key.to_bytes()),
            Err(_) if check == Check::Simulate => None,
            Err(_) => return Err(Refusal::Validation(ValidationStatus::INVALID_SIGNATURE)),
        };
        if check == Check::Submit {
            let message = raw.signing_message().map_err(|e| Refusal::Unsupported(e.to_string()))?;
            authenticator
                .verify(&message)
                .map_err(|_| Refusal::Validation(ValidationStatus::INVALID_SIGNATURE))?;
        }
        if raw.max_gas_amount > MAX_GAS_AMOUNT {
            return Err(Refusal::Validation(ValidationStatus::MAX_GAS_UNITS_EXCEEDS_MAX_GAS_UNITS_BOUND));
        }
        if raw.gas_unit_price < GAS_UNIT_PRICE {
            return Err(Refusal::Validation(ValidationStatus::GAS_UNIT_PRICE_BELOW_MIN_BOUND));
        }
        if self.is_expired(raw.expiration_timestamp_secs) {
            return Err(Refusal::Validation(ValidationStatus::TRANSACTION_EXPIRED));
        }
        if raw.chain_id.id() != self.chain_id {
            return Err(Refusal::Validation(ValidationStatus::BAD_CHAIN_ID));
        }
        let sender = self.accounts.get(&raw.sender).cloned().unwrap_or_else(|| Account::new(raw.sender));
        if authentication_key.is_some_and(|key| key != sender.authentication_key) {
            return Err(Refusal::Validation(ValidationStatus::INVALID_AUTH_KEY));
        }
        if raw.sequence_number < sender.sequence_number {
            return Err(Refusal::Validation(ValidationStatus::SEQUENCE_NUMBER_TOO_OLD));
        }
        if max_fee(txn) > u128::from(sender.balance) {
            return Err(Refusal::Validation(ValidationStatus::INSUFFICIENT_BALANCE_FOR_TRANSACTION_FEE));
        }
        Ok(())
    }

    /// A real node compares the expiration with the latest block's timestamp.
    fn is_expired(&self, expiration_timestamp_secs: u64) -> bool {
        self.ledger_timestamp_usecs / 1_000_000 >= expiration_timestamp_secs
    }

    /// Produces a block: drops what expired, then commits every transaction whose sequence
    /// number is next for its sender, in sender order, until no gap is left to fill.
    pub fn produce_block(&mut self) {
        if self.blocks_paused {
            return;
        }
        self.ledger_timestamp_usecs = self.clock_usecs().max(self.ledger_timestamp_usecs.saturating_add(1));
        self.block_height += 1;
        if self.realism.block_metadata {
            self.version += 1;
        }
        let now_secs = self.ledger_timestamp_usecs / 1_000_000;
        let accounts = &self.accounts;
        self.mempool.retain(|(sender, sequence_number), (txn, _)| {
            let next = accounts.get(sender).map_or(0, |a| a.sequence_number);
            txn.raw_txn.expiration_timestamp_secs > now_secs && *sequence_number >= next
        });
        loop {
            let ready: Vec<(AccountAddress, u64)> = self
                .mempool
                .keys()
                .filter(|(sender, sequence_number)| {
                    *sequence_number == self.accounts.get(sender).map_or(0, |a| a.sequence_number)
                })
                .copied()
                .collect();
            if ready.is_empty() {
                break;
            }
            for key in ready {
                if let Some((txn, hash)) = self.mempool.remove(&key) {
                    // The fee is checked again: earlier transactions in this block spent coins.
                    if self.validate(&txn, Check::Commit).is_ok() {
                        self.commit(txn, hash);
                    }
                }
            }
        }
    }

    /// Runs the transaction against the accounts and appends it to the ledger. A failed
    /// transaction still pays gas and uses up its sequence number, as on a real chain.
    fn commit(&mut self, txn: SignedTransaction, hash: HashValue) {
        let raw = txn.raw_txn.clone();
        let TransactionPayload::EntryFunction(entry) = &raw.payload else {
            return;
        };
        let storage_fee_octas = self.storage_fee(entry);
        let storage_units = storage_fee_octas.div_ceil(raw.gas_unit_price.max(1));
        let needed = GAS_USED + storage_units;
        let gas_used = needed.min(raw.max_gas_amount);
        let fee = gas_used.saturating_mul(raw.gas_unit_price);
        let outcome = if raw.max_gas_amount < needed {
            Err("Out of gas".to_string())
        } else {
            execution::decode_transfers(entry).and_then(|transfers| {
                self.check_transfers(&raw.sender, &transfers, fee)?;
                Ok(transfers)
            })
        };
        if let Ok(transfers) = &outcome {
            for (to, amount) in transfers {
                self.move_coins(raw.sender, *to, *amount);
            }
        }
        let sender = self.accounts.entry(raw.sender).or_insert_with(|| Account::new(raw.sender));
        sender.balance = sender.balance.saturating_sub(fee);
        sender.sequence_number += 1;

        let (success, vm_status, transfers) = match outcome {
            Ok(transfers) => (true, execution::EXECUTED.to_string(), transfers),
            Err(vm_status) => (false, vm_status, Vec::new()),
        };
        let summary = CommittedTransaction {
            version: self.version + 1,
            hash: hash.to_hex(),
            sender: raw.sender,
            sequence_number: raw.sequence_number,
            success,
            vm_status,
            function: execution::function_id(entry),
            transfers,
            gas_used,
            gas_unit_price: raw.gas_unit_price,
            expiration_timestamp_secs: raw.expiration_timestamp_secs,
            timestamp_usecs: self.ledger_timestamp_usecs,
            storage_fee_octas: if success { storage_fee_octas } else { 0 },
        };
        self.version += 1;
        self.committed_by_hash.insert(hash, self.committed.len());
        self.committed.push(Committed { summary, transaction: txn, hash });
    }

    /// With metered gas, the storage fee of the primary stores a transfer creates: a real
    /// chain charges it in octas (as gas units at the transaction's price) for each new slot.
    fn storage_fee(&self, entry: &aptos_sdk::transaction::EntryFunction) -> u64 {
        if !self.realism.metered_gas {
            return 0;
        }
        let transfers = execution::decode_transfers(entry).unwrap_or_default();
        let new_stores = transfers.iter().filter(|(to, _)| !self.accounts.contains_key(to)).count() as u64;
        new_stores * execution::NEW_STORE_STORAGE_FEE
    }

    /// The aborts the framework would raise: a reserved recipient (unless default account
    /// resources make every address an account), or not enough APT for the amounts plus the
    /// fee — as `0x1::coin` words it, or, with APT a fungible asset, `0x1::fungible_asset` for
    /// an overdraft and the epilogue's PROLOGUE_ECANT_PAY_GAS_DEPOSIT when the transfer fits
    /// but leaves too little for its gas.
    fn check_transfers(
        &self,
        sender: &AccountAddress,
        transfers: &[(AccountAddress, u64)],
        fee: u64,
    ) -> Result<(), String> {
        if !self.realism.default_accounts && transfers.iter().any(|(to, _)| execution::is_reserved(to)) {
            return Err(execution::ECANNOT_RESERVED_ADDRESS.to_string());
        }
        let total: u128 = transfers.iter().map(|(_, a)| u128::from(*a)).sum();
        let balance = u128::from(self.balance(sender));
        if self.realism.fungible_asset {
            if total > balance {
                return Err(execution::FA_EINSUFFICIENT_BALANCE.to_string());
            }
            if total + u128::from(fee) > balance {
                return Err(execution::ECANT_PAY_GAS_DEPOSIT.to_string());
            }
        } else if total + u128::from(fee) > balance {
            return Err(execution::EINSUFFICIENT_BALANCE.to_string());
        }
        Ok(())
    }

    fn move_coins(&mut self, from: AccountAddress, to: AccountAddress, amount: u64) {
        if let Some(sender) = self.accounts.get_mut(&from) {
            sender.balance -= amount;
        }
        let recipient = self.accounts.entry(to).or_insert_with(|| Account::new(to));
        recipient.balance += amount;
    }

    /// Runs a transaction on a copy of the chain, for `/transactions/simulate`. The signature
    /// must not verify, as on a real node; the result is the committed transaction it would be.
    pub fn simulate(&self, txn: SignedTransaction) -> Result<Committed, Refusal> {
        if let Ok(authenticator) = sender_authenticator(&txn.authenticator)
            && let Ok(message) = txn.raw_txn.signing_message()
            && authenticator.verify(&message).is_ok()
        {
            return Err(Refusal::Unsupported(
                "Simulated transactions must not have a valid signature".into(),
            ));
        }
        self.validate(&txn, Check::Simulate)?;
        let hash =
            txn.hash().map_err(|e| Refusal::Unsupported(format!("cannot hash the transaction: {e}")))?;
        let mut scratch = Ledger {
            realism: self.realism.clone(),
            chain_id: self.chain_id,
            epoch: self.epoch,
            block_height: self.block_height,
            ledger_timestamp_usecs: self.ledger_timestamp_usecs,
            blocks_paused: true,
            clock_ahead: self.clock_ahead,
            version: self.version,
            accounts: self.accounts.clone(),
            mempool: BTreeMap::new(),
            committed: self.committed.clone(),
            committed_by_hash: HashMap::new(),
        };
        scratch.commit(txn, hash);
        Ok(scratch.committed.pop().expect("commit appends"))
    }
}

/// What `Ledger::validate` is asked for: a submission is checked in full; a transaction taken
/// from the mempool into a block was signed correctly already; a simulation carries no valid
/// signature.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    Submit,
    Commit,
    Simulate,
}

/// The authenticator of the sender alone; the test node takes single-signer transactions.
fn sender_authenticator(authenticator: &TransactionAuthenticator) -> Result<AccountAuthenticator, Refusal> {
    match authenticator {
        TransactionAuthenticator::Ed25519 { public_key, signature } => {
            Ok(AccountAuthenticator::Ed25519 { public_key: public_key.clone(), signature: signature.clone() })
        }
        TransactionAuthenticator::MultiEd25519 { public_key, signature } => {
            Ok(AccountAuthenticator::MultiEd25519 {
                public_key: public_key.clone(),
                signature: signature.clone(),
            })
        }
        TransactionAuthenticator::SingleSender { sender } => Ok(sender.clone()),
        TransactionAuthenticator::MultiAgent { .. } | TransactionAuthenticator::FeePayer { .. } => {
            Err(Refusal::Unsupported("the test node takes single-signer transactions only".into()))
        }
    }
}

fn max_fee(txn: &SignedTransaction) -> u128 {
    u128::from(txn.raw_txn.max_gas_amount) * u128::from(txn.raw_txn.gas_unit_price)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aptos_sdk::ChainId;
    use aptos_sdk::account::Ed25519Account;
    use aptos_sdk::transaction::builder::sign_transaction;
    use aptos_sdk::transaction::{EntryFunction, TransactionBuilder};

    fn signed_transfer(ledger: &Ledger, from: &Ed25519Account, sequence_number: u64) -> SignedTransaction {
        transfer(ledger, from, sequence_number, AccountAddress::from_hex("0xb0b").unwrap(), 7)
    }

    #[test]
    fn simulation_refuses_a_valid_signature_and_changes_nothing() {
        let payer = Ed25519Account::generate();
        let ledger = Ledger::new(4, &[(payer.address(), 1_000_000)]);
        let signed = signed_transfer(&ledger, &payer, 0);
        assert!(matches!(ledger.simulate(signed.clone()), Err(Refusal::Unsupported(_))));
        let zeroed = signed.for_simulate_endpoint();
        let simulated = ledger.simulate(zeroed).unwrap();
        assert!(simulated.summary.success);
        assert_eq!(ledger.balance(&payer.address()), 1_000_000);
        assert_eq!(ledger.committed().count(), 0);
    }

    fn transfer(
        ledger: &Ledger,
        from: &Ed25519Account,
        seq: u64,
        to: AccountAddress,
        amount: u64,
    ) -> SignedTransaction {
        let raw = TransactionBuilder::new()
            .sender(from.address())
            .sequence_number(seq)
            .payload(EntryFunction::apt_transfer(to, amount).unwrap().into())
            .max_gas_amount(1_000)
            .gas_unit_price(GAS_UNIT_PRICE)
            .expiration_timestamp_secs(ledger.ledger_timestamp_usecs / 1_000_000 + 30)
            .chain_id(ChainId::new(ledger.chain_id))
            .build()
            .unwrap();
        sign_transaction(&raw, from).unwrap()
    }

    #[test]
    fn with_apt_a_fungible_asset_an_overdraft_and_a_short_gas_fail_as_the_framework_words_them() {
        let payer = Ed25519Account::generate();
        let to = AccountAddress::from_hex("0xb0b").unwrap();
        let realism = Realism { fungible_asset: true, ..Realism::default() };
        let fee = GAS_USED * GAS_UNIT_PRICE;
        // 150,000 octas cover the most gas (100,000) at validation in both cases.
        let mut ledger = Ledger::with_realism(4, &[(payer.address(), 150_000)], realism);
        ledger.submit(transfer(&ledger, &payer, 0, to, 200_000)).unwrap();
        ledger.produce_block();
        ledger.set_balance(payer.address(), 150_000);
        ledger.submit(transfer(&ledger, &payer, 1, to, 150_000 - fee + 1)).unwrap();
        ledger.produce_block();
        let statuses: Vec<String> = ledger.committed().map(|c| c.summary.vm_status.clone()).collect();
        assert_eq!(statuses.len(), 2, "{statuses:?}");
        assert!(
            statuses[0].starts_with("Move abort in 0x1::fungible_asset: EINSUFFICIENT_BALANCE(0x10004)"),
            "{statuses:?}"
        );
        assert!(statuses[1].contains("PROLOGUE_ECANT_PAY_GAS_DEPOSIT"), "{statuses:?}");
        assert_eq!(
            ledger.balance(&payer.address()),
            150_000 - fee,
            "failed, the fee is charged all the same"
        );
        assert_eq!(ledger.balance(&to), 0);
        // The legacy coin standard words an overdraft its own way.
        let mut coin = Ledger::new(4, &[(payer.address(), 150_000)]);
        coin.submit(transfer(&coin, &payer, 0, to, 200_000)).unwrap();
        coin.produce_block();
        assert!(coin.committed().next().unwrap().summary.vm_status.contains("0x1::coin"));
    }

    #[test]
    fn default_account_resources_make_every_address_an_account_and_a_transfer_to_0x1_commits() {
        let payer = Ed25519Account::generate();
        let realism = Realism { default_accounts: true, ..Realism::default() };
        let mut ledger = Ledger::with_realism(4, &[(payer.address(), 1_000_000)], realism);
        let unknown = AccountAddress::from_hex("0xfeedbeef").unwrap();
        assert_eq!(ledger.account_or_default(&unknown).map(|a| a.sequence_number), Some(0));
        assert_eq!(Ledger::new(4, &[]).account_or_default(&unknown), None);
        ledger.submit(transfer(&ledger, &payer, 0, AccountAddress::ONE, 5)).unwrap();
        ledger.produce_block();
        let committed: Vec<_> = ledger.committed().collect();
        assert!(committed[0].summary.success, "{:?}", committed[0].summary);
        assert_eq!(ledger.balance(&AccountAddress::ONE), 5, "the APT sits at 0x1, lost");
    }

    #[test]
    fn metered_gas_charges_the_storage_of_a_new_store() {
        let payer = Ed25519Account::generate();
        let to = AccountAddress::from_hex("0xb0b").unwrap();
        let realism = Realism { metered_gas: true, ..Realism::default() };
        let mut ledger = Ledger::with_realism(4, &[(payer.address(), 1_000_000)], realism);
        ledger.submit(transfer(&ledger, &payer, 0, to, 5)).unwrap();
        ledger.submit(transfer(&ledger, &payer, 1, to, 5)).unwrap();
        ledger.produce_block();
        let gas: Vec<u64> = ledger.committed().map(|c| c.summary.gas_used).collect();
        let storage_units = execution::NEW_STORE_STORAGE_FEE / GAS_UNIT_PRICE;
        assert_eq!(gas, vec![GAS_USED + storage_units, GAS_USED], "the first transfer creates the store");
    }

    #[test]
    fn a_paused_chain_commits_nothing_until_resumed() {
        let payer = Ed25519Account::generate();
        let mut ledger = Ledger::new(4, &[(payer.address(), 1_000_000)]);
        ledger.blocks_paused = true;
        let signed = signed_transfer(&ledger, &payer, 0);
        assert_eq!(ledger.submit(signed.clone()).unwrap().0, Accepted::New);
        assert_eq!(ledger.submit(signed).unwrap().0, Accepted::AlreadyPending);
        ledger.produce_block();
        assert_eq!(ledger.committed().count(), 0);
        ledger.blocks_paused = false;
        ledger.produce_block();
        assert_eq!(ledger.committed().count(), 1);
        assert_eq!(ledger.balance(&payer.address()), 1_000_000 - 7 - GAS_USED * GAS_UNIT_PRICE);
    }
}
