//! Which live Settlement a pass takes next, and whether one that cannot go on holds up the rest.
//!
//! The treasury has one sequence of sequence numbers, so one payout is in flight at a time: the
//! Submitted settlements are taken first, and while one is not settled nothing else is signed.
//! A Pending settlement that cannot be paid now only because of itself (the treasury cannot
//! cover it) stays Pending, unsigned, and the next one is tried: one provider's payout never
//! blocks another's. What any settlement would meet (the node, the hub, the chain changing
//! under a recorded payout) stops the pass.

use pictor_crds::v1alpha1::{Settlement, SettlementPhase};

/// How far one settlement's failure reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Only this settlement waits (Pending, nothing signed): the others are tried.
    Settlement,
    /// Every settlement would meet it, or a payout may be in flight: the pass stops and is
    /// retried with backoff.
    Pass,
}

fn phase(s: &Settlement) -> SettlementPhase {
    s.status.as_ref().and_then(|st| st.phase).unwrap_or_default()
}

/// The live settlements (neither Confirmed nor Failed) in the order a pass takes them: the
/// Submitted ones, then the Pending ones, each in the order given (oldest first).
pub fn pass_order(settlements: &[Settlement]) -> Vec<&Settlement> {
    let of = |wanted: SettlementPhase| settlements.iter().filter(move |s| phase(s) == wanted);
    of(SettlementPhase::Submitted).chain(of(SettlementPhase::Pending)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BillingError;
    use crate::chain::ChainError;
    use pictor_crds::v1alpha1::{SettlementSpec, SettlementStatus};

    fn settlement(name: &str, phase: SettlementPhase) -> Settlement {
        let mut s = Settlement::new(
            name,
            SettlementSpec {
                provider: name.into(),
                payout_address: "0xa".into(),
                amount_octas: 1,
                amount: "0.00000001 APT".into(),
                unit_count: 0,
                units: vec![],
            },
        );
        s.status = Some(SettlementStatus { phase: Some(phase), ..Default::default() });
        s
    }

    #[test]
    fn a_payout_in_flight_is_taken_before_any_pending_one_is_signed() {
        use SettlementPhase::*;
        let all = [
            settlement("old-pending", Pending),
            settlement("paid", Confirmed),
            settlement("in-flight", Submitted),
            settlement("refused", Failed),
            settlement("new-pending", Pending),
        ];
        let order: Vec<&str> = pass_order(&all).iter().map(|s| s.metadata.name.as_deref().unwrap()).collect();
        assert_eq!(order, ["in-flight", "old-pending", "new-pending"]);
    }

    #[test]
    fn a_treasury_short_of_one_payout_lets_the_others_be_tried_and_the_rest_stops_the_pass() {
        let short = BillingError::TreasuryShort {
            address: "0x7ea5".into(),
            need: "2 APT".into(),
            have: "1 APT".into(),
        };
        assert_eq!(short.reach(), Reach::Settlement);
        let hold = BillingError::Hold { reason: crate::settle::CHAIN_CHANGED, message: String::new() };
        assert_eq!(hold.reach(), Reach::Pass, "nothing more is signed on a chain billing is unsure of");
        let unreachable = BillingError::Chain(ChainError::Unreachable {
            url: "http://node".into(),
            message: String::new(),
        });
        assert_eq!(unreachable.reach(), Reach::Pass);
        assert_eq!(BillingError::WrongChain(String::new()).reach(), Reach::Pass);
    }
}
