//! The life of one Settlement, as pure decisions: what to do next given its status and what the
//! chain says of its transaction.
//!
//! Exactly once: a transaction is signed only for a Pending settlement, and recorded (sequence
//! number, hash, the signed bytes) with a compare-and-swap on the Settlement before it is ever
//! submitted. A Submitted settlement is only confirmed, submitted again byte for byte, or, once
//! the chain's clock has passed its expiry with the hash still unknown (so it can never
//! execute), signed anew.
//!
//! "Can never execute" is proven from one consistent view of the chain, never from two answers
//! put together: behind a load balancer a lagging backend answers 404 for a committed
//! transaction while a fresher one shows a clock past its expiry. One answer of the treasury
//! account gives its sequence number, the ledger version and that version's timestamp: a
//! sequence number still at or below the recorded one at a version whose clock is past the
//! expiry means the transaction did not execute by then and no later block can execute it.
//! A sequence number past the recorded one means some transaction used it: the account's
//! transaction with that number says whether it was ours.

use pictor_crds::v1alpha1::{CONDITION_READY, Settlement, SettlementPhase};

/// Reason of a Settlement the chain refused because of where it pays.
pub const PAYOUT_REJECTED: &str = "PayoutAddressRejected";
/// Reason when the treasury cannot cover a payment and its gas.
pub const TREASURY_EMPTY: &str = "TreasuryInsufficientFunds";
/// Reason when the node cannot be reached.
pub const NODE_UNREACHABLE: &str = "NodeUnreachable";
/// Reason of a transaction that failed for another reason.
pub const TRANSACTION_FAILED: &str = "TransactionFailed";

/// Reason when the node serves another chain than the recorded transaction was signed for.
pub const CHAIN_CHANGED: &str = "ChainChanged";

/// What one backend of the node knows of a transaction, by hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// This backend has not seen it: it never reached the chain, it expired unexecuted, or the
    /// backend lags behind the one that committed it. Not a proof of anything.
    NotFound,
    /// In the mempool.
    Pending,
    /// Committed at `version`; `success` false when it aborted (the sequence number is used).
    Committed { version: u64, success: bool, vm_status: String },
}

/// The treasury account as one answer of the node shows it: the three fields come from the
/// same ledger version, whichever backend of a load-balanced endpoint served it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreasuryView {
    /// `X-Aptos-Ledger-Version` of the answer.
    pub ledger_version: u64,
    /// The ledger's timestamp at that version, in seconds (`X-Aptos-Ledger-TimestampUsec`).
    pub timestamp_seconds: u64,
    /// `X-Aptos-Chain-Id` of the answer.
    pub chain_id: u8,
    /// The treasury's next sequence number at that version.
    pub sequence_number: u64,
}

/// The transaction the treasury sent with a given sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentAt {
    /// Its hash.
    pub hash: String,
    /// Its state.
    pub lookup: Lookup,
}

/// What the chain says of a recorded transaction that a lookup by hash did not find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The treasury, in one view.
    pub view: TreasuryView,
    /// When the view's sequence number is past the recorded one: the transaction that used the
    /// recorded number, if the backend asked knows it.
    pub sent_at: Option<SentAt>,
}

/// The recorded transaction of a Submitted settlement, as signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signed {
    /// Its sequence number.
    pub sequence_number: u64,
    /// Chain-clock second from which it can no longer execute.
    pub expires_at_seconds: u64,
    /// The chain it was signed for.
    pub chain_id: u8,
}

/// Whether the evidence must include the transaction that used the recorded sequence number.
pub fn needs_sent_at(view: &TreasuryView, signed: &Signed) -> bool {
    view.sequence_number > signed.sequence_number
}

/// The next step of a Settlement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Sign a transaction, record it, submit it.
    Sign,
    /// Submit the recorded transaction again (the node may never have received it).
    Resubmit,
    /// In the mempool, or known to a fresher backend only: look again soon.
    Wait,
    /// Not found by hash: read the treasury in one view (and what used its sequence number)
    /// before deciding.
    Prove,
    /// Committed with success: record the version.
    Confirm { version: u64 },
    /// It can never commit, or committed without paying for a reason that can clear: back
    /// to Pending, to be signed anew.
    SignAgain { reason: &'static str, message: String },
    /// Committed without paying for a reason retrying does not fix.
    Fail { reason: &'static str, message: String },
    /// Nothing is decided until an operator acts: a condition says what to do.
    Hold { reason: &'static str, message: String },
    /// Nothing to do.
    Done,
}

/// Why a committed transaction did not pay, from its VM status. APT is a fungible asset on
/// current networks: an overdraft aborts in `0x1::fungible_asset` (EINSUFFICIENT_BALANCE);
/// a transfer that leaves too little for its gas fails the epilogue with
/// PROLOGUE_ECANT_PAY_GAS_DEPOSIT. Networks with the coin standard abort in `0x1::coin`.
pub fn classify_abort(vm_status: &str) -> &'static str {
    let status = vm_status.to_ascii_uppercase();
    if status.contains("INSUFFICIENT_BALANCE") || status.contains("ECANT_PAY_GAS_DEPOSIT") {
        TREASURY_EMPTY
    } else if status.contains("0X1::ACCOUNT") || status.contains("RESERVED_ADDRESS") {
        PAYOUT_REJECTED
    } else {
        TRANSACTION_FAILED
    }
}

/// Why billing will not pay to `address` at all, before anything is signed; the parsed
/// address otherwise. Special addresses (0x0–0xf, AIP-40) belong to the framework: with
/// default account resources on (current networks) a transfer there commits with success and
/// the APT is gone for good. Paying the treasury itself moves nothing and burns gas.
pub fn payout_address(
    address: &str,
    treasury: &aptos_sdk::AccountAddress,
) -> Result<aptos_sdk::AccountAddress, String> {
    let parsed = address.trim().parse::<aptos_sdk::AccountAddress>().map_err(|_| {
        format!("{address} is not an Aptos account address; the provider must set a valid spec.payoutAddress (0x and up to 64 hex digits)")
    })?;
    if parsed.is_special() {
        return Err(format!(
            "{address} is a reserved address of the Aptos framework (0x0 to 0xf): a transfer there is lost; the provider must set its own account as spec.payoutAddress"
        ));
    }
    if parsed == *treasury {
        return Err(format!(
            "{address} is the treasury's own account: paying it moves nothing; the provider must set its own account as spec.payoutAddress"
        ));
    }
    Ok(parsed)
}

/// The other settlement whose transaction is exactly `hash`, if any. Two payouts of the same
/// amount to the same provider, signed with the same sequence number in the same second, are
/// the same bytes and the same hash: one commit would confirm both, and the provider be paid
/// once for two. That happens when a lagging backend hands out a used sequence number; the
/// number must be read again instead.
pub fn hash_in_use<'a>(hash: &str, own: &str, settlements: &'a [Settlement]) -> Option<&'a str> {
    settlements.iter().find_map(|other| {
        let name = other.metadata.name.as_deref().unwrap_or_default();
        let status = other.status.as_ref()?;
        let recorded = status.transaction_hash.iter().chain(status.failed_transactions.iter());
        let mut hashes = recorded.filter(|h| same_hash(h, hash));
        (name != own && hashes.next().is_some()).then_some(name)
    })
}

/// Whether a node may be used: with `--chain-id` set, only one serving that chain.
pub fn check_chain(expected: Option<u8>, node: u8, url: &str) -> Result<(), String> {
    match expected {
        Some(expected) if expected != node => Err(format!(
            "the node {url} serves chain id {node}, but billing pays on chain id {expected} (--chain-id): point --aptos-node-url at that network, or, if the network was reset (devnet), set --chain-id={node}"
        )),
        _ => Ok(()),
    }
}

fn same_hash(a: &str, b: &str) -> bool {
    let strip = |h: &str| h.trim().trim_start_matches("0x").to_ascii_lowercase();
    strip(a) == strip(b)
}

/// The next step of a settlement after looking its transaction up by hash (`lookup` is
/// `None` when it has none). A `NotFound` decides nothing alone: a lagging backend answers
/// it for a committed transaction. `evidence` is what [`Step::Prove`] asked for; `signed` what
/// the settlement recorded; `expected_chain` the `--chain-id` setting.
pub fn next_step(
    settlement: &Settlement,
    lookup: Option<&Lookup>,
    evidence: Option<&Evidence>,
    signed: Option<&Signed>,
    expected_chain: Option<u8>,
) -> Step {
    let status = settlement.status.clone().unwrap_or_default();
    let hash = status.transaction_hash.clone().unwrap_or_default();
    match (status.phase.unwrap_or_default(), lookup) {
        (SettlementPhase::Confirmed | SettlementPhase::Failed, _) => Step::Done,
        (SettlementPhase::Pending, _) | (SettlementPhase::Submitted, None) => Step::Sign,
        (SettlementPhase::Submitted, Some(Lookup::Pending)) => Step::Wait,
        (SettlementPhase::Submitted, Some(Lookup::Committed { version, success, vm_status })) => {
            committed(settlement, &hash, *version, *success, vm_status)
        }
        (SettlementPhase::Submitted, Some(Lookup::NotFound)) => {
            let (Some(evidence), Some(signed)) = (evidence, signed) else {
                return Step::Prove;
            };
            not_found(settlement, &hash, evidence, signed, expected_chain)
        }
    }
}

fn committed(settlement: &Settlement, hash: &str, version: u64, success: bool, vm_status: &str) -> Step {
    if success {
        return Step::Confirm { version };
    }
    match classify_abort(vm_status) {
        TREASURY_EMPTY => Step::SignAgain {
            reason: TREASURY_EMPTY,
            message: format!(
                "transaction {hash} committed without paying: {vm_status}; fund the treasury account and it is signed again"
            ),
        },
        PAYOUT_REJECTED => Step::Fail {
            reason: PAYOUT_REJECTED,
            message: format!(
                "the chain refused payment to {} ({vm_status}); the provider must set a valid spec.payoutAddress, and its units are settled again",
                settlement.spec.payout_address
            ),
        },
        _ => Step::Fail {
            reason: TRANSACTION_FAILED,
            message: format!(
                "transaction {hash} committed without paying: {vm_status}; its units are settled again"
            ),
        },
    }
}

fn not_found(
    settlement: &Settlement,
    hash: &str,
    evidence: &Evidence,
    signed: &Signed,
    expected_chain: Option<u8>,
) -> Step {
    let view = &evidence.view;
    if view.chain_id != signed.chain_id {
        if expected_chain == Some(view.chain_id) {
            return Step::SignAgain {
                reason: "ChainReset",
                message: format!(
                    "transaction {hash} was signed for chain id {}, and billing now pays on chain id {} (--chain-id), where it can never commit; signed again for chain id {}",
                    signed.chain_id, view.chain_id, view.chain_id
                ),
            };
        }
        return Step::Hold {
            reason: CHAIN_CHANGED,
            message: format!(
                "transaction {hash} was signed for chain id {}, but the node serves chain id {}: whether it paid on chain {} cannot be read here. If the network was reset (devnet), set --chain-id={} to pay this settlement again on the new chain; otherwise point --aptos-node-url back at chain {}",
                signed.chain_id, view.chain_id, signed.chain_id, view.chain_id, signed.chain_id
            ),
        };
    }
    if needs_sent_at(view, signed) {
        return match &evidence.sent_at {
            Some(sent) if same_hash(&sent.hash, hash) => match &sent.lookup {
                Lookup::Committed { version, success, vm_status } => {
                    committed(settlement, hash, *version, *success, vm_status)
                }
                _ => Step::Wait,
            },
            Some(sent) => Step::SignAgain {
                reason: "SequenceNumberUsed",
                message: format!(
                    "sequence number {} of the treasury was used by transaction {} (ledger version {}), so transaction {hash} can never commit; signed again",
                    signed.sequence_number, sent.hash, view.ledger_version
                ),
            },
            // The backend that answered knows the sequence number is used but not (yet) by
            // what: look again.
            None => Step::Wait,
        };
    }
    if view.timestamp_seconds > signed.expires_at_seconds {
        return Step::SignAgain {
            reason: "TransactionExpired",
            message: format!(
                "transaction {hash} can never commit: at ledger version {} (chain time {}) the treasury's next sequence number is {} and the transaction, number {}, expired at {}; signed again",
                view.ledger_version,
                view.timestamp_seconds,
                view.sequence_number,
                signed.sequence_number,
                signed.expires_at_seconds
            ),
        };
    }
    Step::Resubmit
}

/// The reason of a settlement's Ready condition.
pub fn failure_reason(settlement: &Settlement) -> Option<&str> {
    settlement
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY)
        .map(|c| c.reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pictor_crds::v1alpha1::{SettlementSpec, SettlementStatus};

    fn settlement(phase: SettlementPhase, expires: Option<i64>) -> Settlement {
        let mut s = Settlement::new(
            "a-1",
            SettlementSpec {
                provider: "a".into(),
                payout_address: "0xa11ce".into(),
                amount_octas: 5,
                amount: "0.00000005 APT".into(),
                unit_count: 0,
                units: vec![],
            },
        );
        s.status = Some(SettlementStatus {
            phase: Some(phase),
            transaction_hash: Some("0xabc".into()),
            expires_at_seconds: expires,
            ..Default::default()
        });
        s
    }

    const SIGNED: Signed = Signed { sequence_number: 7, expires_at_seconds: 1000, chain_id: 4 };

    fn view(sequence_number: u64, timestamp_seconds: u64) -> TreasuryView {
        TreasuryView { ledger_version: 50, timestamp_seconds, chain_id: 4, sequence_number }
    }

    fn decide(s: &Settlement, lookup: &Lookup, evidence: Option<Evidence>) -> Step {
        next_step(s, Some(lookup), evidence.as_ref(), Some(&SIGNED), None)
    }

    #[test]
    fn a_recorded_transaction_is_never_signed_again_before_one_view_proves_it_can_never_commit() {
        let s = settlement(SettlementPhase::Submitted, Some(1000));
        // A 404 alone decides nothing: a lagging backend answers it for committed transactions.
        assert_eq!(decide(&s, &Lookup::NotFound, None), Step::Prove);
        let unused = |seq, time| Some(Evidence { view: view(seq, time), sent_at: None });
        assert_eq!(decide(&s, &Lookup::NotFound, unused(7, 999)), Step::Resubmit);
        assert_eq!(decide(&s, &Lookup::NotFound, unused(7, 1000)), Step::Resubmit, "expiry is inclusive");
        assert!(matches!(
            decide(&s, &Lookup::NotFound, unused(7, 1001)),
            Step::SignAgain { reason: "TransactionExpired", .. }
        ));
        // A lagging view below the recorded number, past the expiry, is still a proof.
        assert!(matches!(decide(&s, &Lookup::NotFound, unused(5, 1001)), Step::SignAgain { .. }));
        // The number is used, but the backend does not say by what: wait, even long past expiry.
        assert_eq!(decide(&s, &Lookup::NotFound, unused(8, 5000)), Step::Wait);
        assert_eq!(decide(&s, &Lookup::Pending, None), Step::Wait);
        let committed =
            Lookup::Committed { version: 7, success: true, vm_status: "Executed successfully".into() };
        assert_eq!(decide(&s, &committed, None), Step::Confirm { version: 7 });
        assert_eq!(
            next_step(&settlement(SettlementPhase::Pending, None), None, None, None, None),
            Step::Sign
        );
        assert_eq!(
            next_step(&settlement(SettlementPhase::Confirmed, None), None, None, None, None),
            Step::Done
        );
    }

    #[test]
    fn a_used_sequence_number_tells_which_transaction_used_it() {
        let s = settlement(SettlementPhase::Submitted, Some(1000));
        let ours =
            Lookup::Committed { version: 40, success: true, vm_status: "Executed successfully".into() };
        let evidence = |hash: &str| {
            Some(Evidence {
                view: view(8, 10),
                sent_at: Some(SentAt { hash: hash.into(), lookup: ours.clone() }),
            })
        };
        // Ours (hash spelt differently): paid, found through the account's transactions.
        assert_eq!(decide(&s, &Lookup::NotFound, evidence("0xABC")), Step::Confirm { version: 40 });
        // Another transaction used it: ours can never commit, before its expiry too.
        assert!(matches!(
            decide(&s, &Lookup::NotFound, evidence("0xdef")),
            Step::SignAgain { reason: "SequenceNumberUsed", .. }
        ));
    }

    #[test]
    fn a_transaction_for_another_chain_waits_for_the_operator() {
        let s = settlement(SettlementPhase::Submitted, Some(1000));
        let reset = Some(Evidence { view: TreasuryView { chain_id: 9, ..view(0, 5000) }, sent_at: None });
        let held = next_step(&s, Some(&Lookup::NotFound), reset.as_ref(), Some(&SIGNED), None);
        let Step::Hold { reason: CHAIN_CHANGED, message } = held else { panic!("{held:?}") };
        assert!(message.contains("--chain-id=9"), "{message}");
        let acknowledged = next_step(&s, Some(&Lookup::NotFound), reset.as_ref(), Some(&SIGNED), Some(9));
        assert!(matches!(acknowledged, Step::SignAgain { reason: "ChainReset", .. }), "{acknowledged:?}");
        assert!(check_chain(Some(4), 9, "http://node/v1").unwrap_err().contains("--chain-id=9"));
        assert!(check_chain(None, 9, "http://node/v1").is_ok());
    }

    #[test]
    fn special_addresses_and_the_treasury_are_refused_before_signing() {
        let treasury = aptos_sdk::AccountAddress::from_hex("0x7ea5").unwrap();
        for reserved in [
            "0x0",
            "0x1",
            "0x3",
            "0xa",
            "0xf",
            "0x000000000000000000000000000000000000000000000000000000000000000f",
        ] {
            let refused = payout_address(reserved, &treasury).unwrap_err();
            assert!(refused.contains("reserved") && refused.contains("spec.payoutAddress"), "{refused}");
        }
        assert!(payout_address("0x10", &treasury).is_ok());
        assert!(payout_address("0x7ea5", &treasury).unwrap_err().contains("treasury"));
        assert!(payout_address("0xnope", &treasury).unwrap_err().contains("not an Aptos account address"));
        // Leading zeros stripped or not, it is one account.
        assert_eq!(payout_address("0x00beef", &treasury), payout_address("0xbeef", &treasury));
    }

    #[test]
    fn a_transaction_another_settlement_recorded_is_never_recorded_again() {
        let mut paid = settlement(SettlementPhase::Confirmed, Some(1000));
        paid.metadata.name = Some("a-0".into());
        let mut failed = settlement(SettlementPhase::Pending, None);
        failed.metadata.name = Some("a-2".into());
        failed.status.as_mut().unwrap().transaction_hash = None;
        failed.status.as_mut().unwrap().failed_transactions = vec!["0xdead".into()];
        let all = vec![paid, failed];
        assert_eq!(hash_in_use("0xABC", "a-1", &all), Some("a-0"));
        assert_eq!(hash_in_use("0xdead", "a-1", &all), Some("a-2"));
        assert_eq!(hash_in_use("0xabc", "a-0", &all), None, "its own record");
        assert_eq!(hash_in_use("0xbeef", "a-1", &all), None);
    }

    #[test]
    fn aborts_are_told_apart_by_whether_retrying_can_help() {
        let s = settlement(SettlementPhase::Submitted, Some(1000));
        let abort = |vm: &str| Lookup::Committed { version: 1, success: false, vm_status: vm.into() };
        let decide = |l: &Lookup| next_step(&s, Some(l), None, Some(&SIGNED), None);
        let empty = abort("Move abort in 0x1::coin: EINSUFFICIENT_BALANCE(0x10006): Not enough coins");
        assert!(matches!(decide(&empty), Step::SignAgain { reason: TREASURY_EMPTY, .. }));
        let fa = abort(
            "Move abort in 0x1::fungible_asset: EINSUFFICIENT_BALANCE(0x10004): Insufficient balance in the store",
        );
        assert!(matches!(decide(&fa), Step::SignAgain { reason: TREASURY_EMPTY, .. }));
        let gas = abort("Move abort in 0x1::transaction_validation: PROLOGUE_ECANT_PAY_GAS_DEPOSIT(0x203ed)");
        assert!(matches!(decide(&gas), Step::SignAgain { reason: TREASURY_EMPTY, .. }));
        let reserved = abort("Move abort in 0x1::account: ECANNOT_RESERVED_ADDRESS(0x10005)");
        assert!(matches!(decide(&reserved), Step::Fail { reason: PAYOUT_REJECTED, .. }));
        let other = abort("LINKER_ERROR");
        assert!(matches!(decide(&other), Step::Fail { reason: TRANSACTION_FAILED, .. }));
    }
}
