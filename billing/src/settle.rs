//! The life of one Settlement, as pure decisions: what to do next given its status and what the
//! chain says of its transaction.
//!
//! Exactly once: a transaction is signed only for a Pending settlement, and recorded (sequence
//! number, hash, the signed bytes) with a compare-and-swap on the Settlement before it is ever
//! submitted. A Submitted settlement is only confirmed, submitted again byte for byte, or, once
//! the chain's clock has passed its expiry with the hash still unknown (so it can never
//! execute), signed anew.

use pictor_crds::v1alpha1::{CONDITION_READY, Settlement, SettlementPhase};

/// Reason of a Settlement the chain refused because of where it pays.
pub const PAYOUT_REJECTED: &str = "PayoutAddressRejected";
/// Reason when the treasury cannot cover a payment and its gas.
pub const TREASURY_EMPTY: &str = "TreasuryInsufficientFunds";
/// Reason when the node cannot be reached.
pub const NODE_UNREACHABLE: &str = "NodeUnreachable";
/// Reason of a transaction that failed for another reason.
pub const TRANSACTION_FAILED: &str = "TransactionFailed";

/// What the chain knows of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The node has never seen it (or forgot it, unexecuted).
    NotFound,
    /// In the mempool.
    Pending,
    /// Committed at `version`; `success` false when it aborted (the sequence number is used).
    Committed { version: u64, success: bool, vm_status: String },
}

/// The next step of a Settlement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Sign a transaction, record it, submit it.
    Sign,
    /// Submit the recorded transaction again (the node may never have received it).
    Resubmit,
    /// The transaction is in the mempool: look again soon.
    Wait,
    /// Committed with success: record the version.
    Confirm { version: u64 },
    /// It expired unexecuted, or committed without paying for a reason that can clear: back
    /// to Pending, to be signed anew.
    SignAgain { reason: &'static str, message: String },
    /// Committed without paying for a reason retrying does not fix.
    Fail { reason: &'static str, message: String },
    /// Nothing to do.
    Done,
}

/// Why a committed transaction did not pay, from its VM status.
pub fn classify_abort(vm_status: &str) -> &'static str {
    let status = vm_status.to_ascii_uppercase();
    if status.contains("INSUFFICIENT_BALANCE") {
        TREASURY_EMPTY
    } else if status.contains("0X1::ACCOUNT") || status.contains("RESERVED_ADDRESS") {
        PAYOUT_REJECTED
    } else {
        TRANSACTION_FAILED
    }
}

/// The next step of a settlement after looking its transaction up (`lookup` is `None` when
/// it has none), with the chain's clock in seconds.
pub fn next_step(settlement: &Settlement, lookup: Option<&Lookup>, chain_now_seconds: u64) -> Step {
    let status = settlement.status.clone().unwrap_or_default();
    match (status.phase.unwrap_or_default(), lookup) {
        (SettlementPhase::Confirmed | SettlementPhase::Failed, _) => Step::Done,
        (SettlementPhase::Pending, _) | (SettlementPhase::Submitted, None) => Step::Sign,
        (SettlementPhase::Submitted, Some(Lookup::Pending)) => Step::Wait,
        (SettlementPhase::Submitted, Some(Lookup::Committed { version, success: true, .. })) => {
            Step::Confirm { version: *version }
        }
        (SettlementPhase::Submitted, Some(Lookup::Committed { vm_status, .. })) => {
            let hash = status.transaction_hash.unwrap_or_default();
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
        (SettlementPhase::Submitted, Some(Lookup::NotFound)) => match status.expires_at_seconds {
            Some(expiry) if chain_now_seconds > expiry.max(0) as u64 => Step::SignAgain {
                reason: "TransactionExpired",
                message: format!(
                    "transaction {} expired unexecuted at {expiry} (chain time {chain_now_seconds}); signed again",
                    status.transaction_hash.unwrap_or_default()
                ),
            },
            _ => Step::Resubmit,
        },
    }
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

    #[test]
    fn a_recorded_transaction_is_never_signed_again_before_it_has_expired() {
        let s = settlement(SettlementPhase::Submitted, Some(1000));
        assert_eq!(next_step(&s, Some(&Lookup::NotFound), 999), Step::Resubmit);
        assert_eq!(next_step(&s, Some(&Lookup::NotFound), 1000), Step::Resubmit, "expiry is inclusive");
        assert!(matches!(next_step(&s, Some(&Lookup::NotFound), 1001), Step::SignAgain { .. }));
        assert_eq!(next_step(&s, Some(&Lookup::Pending), 5000), Step::Wait);
        let committed =
            Lookup::Committed { version: 7, success: true, vm_status: "Executed successfully".into() };
        assert_eq!(next_step(&s, Some(&committed), 5000), Step::Confirm { version: 7 });
        assert_eq!(next_step(&settlement(SettlementPhase::Pending, None), None, 0), Step::Sign);
        assert_eq!(next_step(&settlement(SettlementPhase::Confirmed, None), None, 0), Step::Done);
    }

    #[test]
    fn aborts_are_told_apart_by_whether_retrying_can_help() {
        let s = settlement(SettlementPhase::Submitted, Some(1000));
        let abort = |vm: &str| Lookup::Committed { version: 1, success: false, vm_status: vm.into() };
        let empty = abort("Move abort in 0x1::coin: EINSUFFICIENT_BALANCE(0x10006): Not enough coins");
        assert!(matches!(next_step(&s, Some(&empty), 0), Step::SignAgain { reason: TREASURY_EMPTY, .. }));
        let reserved = abort("Move abort in 0x1::account: ECANNOT_RESERVED_ADDRESS(0x10005)");
        assert!(matches!(next_step(&s, Some(&reserved), 0), Step::Fail { reason: PAYOUT_REJECTED, .. }));
        let other = abort("LINKER_ERROR");
        assert!(matches!(next_step(&s, Some(&other), 0), Step::Fail { reason: TRANSACTION_FAILED, .. }));
    }
}
