//! Stage 2, dispute: a chunk its submitter names in the job's dispute annotation is held,
//! verified again on yet another member, and then paid or forfeited. A dispute is decided once:
//! a chunk whose disputed output was forfeited is rendered again and not disputed anew; an
//! output that passed its re-verification stays paid; an output already payable is refused.

use super::Chunk;
use super::verify::{self, Verification};
use crate::accrual::{self, UnitMark};
use crate::placement::NoMemberFits;
use k8s_openapi::jiff::Timestamp;
use pictor_crds::contract::labels::{BILLING, VERDICT};
use pictor_crds::contract::{BillingState, MISMATCH, billing_marks};
use pictor_crds::v1alpha1::WorkUnit;

/// Where the dispute of one chunk stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DisputeState {
    /// Being verified again.
    Open,
    /// Verified again, or no member could: paid.
    Cleared,
    /// The re-verification disagreed: not paid, rendered again.
    Upheld,
    /// Disputed after its window closed: payable already.
    TooLate,
}

/// How an accepted output stands towards the job's dispute annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Standing {
    /// Not disputed, never held: the sample decides.
    Undisputed,
    /// Disputed and decided before (or refused): the sample decides from here on.
    Decided(DisputeState),
    /// Disputed and not decided yet; `held` once its payment is held.
    UnderReview { held: bool },
}

/// How `accepted` stands: `named` when the annotation names its frames, `failures` the chunk's
/// earlier attempts (a forfeited one means the dispute was upheld before).
pub(super) fn standing(accepted: &WorkUnit, named: bool, failures: &[&WorkUnit], now: Timestamp) -> Standing {
    let held = billing_marks::billing_state(accepted) == Some(BillingState::Held);
    let upheld_before =
        failures.iter().any(|u| billing_marks::billing_state(u) == Some(BillingState::Forfeited));
    match (named, held) {
        (_, true) => Standing::UnderReview { held: true },
        (false, false) => Standing::Undisputed,
        (true, false) if upheld_before => Standing::Decided(DisputeState::Upheld),
        (true, false) if billing_marks::dispute_cleared(accepted) => Standing::Decided(DisputeState::Cleared),
        (true, false) if !accrual::disputable(accepted, now) => Standing::Decided(DisputeState::TooLate),
        (true, false) => Standing::UnderReview { held: false },
    }
}

/// One reconcile's review of a disputed output.
#[derive(Debug)]
pub(super) struct DisputeReview<'a> {
    pub state: DisputeState,
    /// Marks on the disputed unit (hold, release, or forfeit) and on verifiers penalised.
    pub marks: Vec<UnitMark>,
    /// A re-verification unit to create.
    pub check: Option<WorkUnit>,
    /// The re-verifications that are paid work.
    pub paid_checks: Vec<&'a WorkUnit>,
}

/// Reviews a disputed output from its dispute checks, whatever its sample said: holds its
/// payment, then releases it when a check reproduces it (or none can be had) and forfeits it
/// when one does not (a disagreement between verifiers is settled by a tie-break, as for the
/// sample); `place_check(tie_break)` asks for another check.
pub(super) fn review_dispute<'a>(
    accepted: &WorkUnit,
    held: bool,
    checks: &[&'a WorkUnit],
    place_check: impl FnOnce(bool) -> Result<WorkUnit, NoMemberFits>,
    now: Timestamp,
) -> DisputeReview<'a> {
    let mut marks = if held { vec![] } else { vec![accrual::hold(accepted)] };
    let verification = verify::outcome(checks);
    let mut paid_checks = verify::paid_checks(checks, &verification);
    marks.extend(verify::penalties(checks, &verification));
    let forfeit = |marks: &mut Vec<UnitMark>| {
        marks.push(
            UnitMark::of(accepted).label(VERDICT, MISMATCH).label(BILLING, BillingState::Forfeited.as_str()),
        );
        (DisputeState::Upheld, None)
    };
    let (state, check) = match verification {
        Verification::Passed { .. } | Verification::GaveUp => {
            marks.push(accrual::release(accepted, now));
            (DisputeState::Cleared, None)
        }
        Verification::Mismatch => forfeit(&mut marks),
        Verification::Running => (DisputeState::Open, None),
        Verification::NeedsTieBreak => match place_check(true) {
            Ok(unit) => (DisputeState::Open, Some(unit)),
            Err(e) if e.busy => (DisputeState::Open, None),
            // No third member: the disagreement stands against the output, and the verifier
            // that found it is paid.
            Err(_) => {
                paid_checks = verify::paid_checks(checks, &Verification::Mismatch);
                forfeit(&mut marks)
            }
        },
        Verification::Needed => match place_check(false) {
            Ok(unit) => (DisputeState::Open, Some(unit)),
            Err(e) if e.busy => (DisputeState::Open, None),
            // No other member can judge it: the dispute cannot be decided, and the provider is
            // paid as first accepted.
            Err(_) => {
                marks.push(accrual::release(accepted, now));
                (DisputeState::Open, None)
            }
        },
    };
    DisputeReview { state, marks, check, paid_checks }
}

/// Disputed chunks by where their dispute stands, by frames.
#[derive(Debug, Default)]
pub(super) struct DisputeTally {
    open: Vec<String>,
    cleared: Vec<String>,
    upheld: Vec<String>,
    too_late: Vec<String>,
}

impl DisputeTally {
    /// Counts the chunk of `frames` as `state`.
    pub fn record(&mut self, state: DisputeState, frames: &str) {
        let list = match state {
            DisputeState::Open => &mut self.open,
            DisputeState::Cleared => &mut self.cleared,
            DisputeState::Upheld => &mut self.upheld,
            DisputeState::TooLate => &mut self.too_late,
        };
        list.push(frames.to_string());
    }

    /// Disputes still being verified.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// The job's `Dispute` condition (status, reason, message), while its annotation names
    /// chunks (`disputed`).
    pub fn condition(&self, disputed: &[String], chunks: &[Chunk]) -> Option<(bool, &'static str, String)> {
        if disputed.is_empty() {
            return None;
        }
        let unknown: Vec<String> =
            disputed.iter().filter(|f| !chunks.iter().any(|c| c.frames_label() == **f)).cloned().collect();
        let mut parts = Vec::new();
        let list = |v: &[String]| v.join(", ");
        if !self.open.is_empty() {
            parts.push(format!("verifying again: {}", list(&self.open)));
        }
        if !self.upheld.is_empty() {
            parts.push(format!("output rejected, not paid, rendered again: {}", list(&self.upheld)));
        }
        if !self.cleared.is_empty() {
            parts.push(format!("verified again, paid: {}", list(&self.cleared)));
        }
        if !self.too_late.is_empty() {
            parts.push(format!("dispute window closed, already payable: {}", list(&self.too_late)));
        }
        if !unknown.is_empty() {
            parts.push(format!(
                "no chunk has frames {} (name a chunk by its frames as `kubectl get workunits -o wide` shows them, e.g. 1-10)",
                list(&unknown)
            ));
        }
        let reason = if !self.open.is_empty() {
            "Reverifying"
        } else if !self.too_late.is_empty() || !unknown.is_empty() {
            "DisputeRefused"
        } else {
            "Decided"
        };
        Some((!self.open.is_empty(), reason, parts.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render_job::plan::fixtures::{now, unit, verify_unit, with_labels};
    use pictor_crds::contract::annotations::{DISPUTE_CLEARED, PAYABLE_AFTER};

    fn billed(state: &str, payable_after: &str) -> WorkUnit {
        with_labels(
            unit(0, 1, "a", Some("Succeeded"), 10),
            &[(BILLING, state)],
            &[(PAYABLE_AFTER, payable_after)],
        )
    }

    #[test]
    fn a_named_output_inside_its_window_goes_under_review_and_one_already_payable_is_too_late() {
        let inside = billed("accrued", "2026-11-25T12:05:00Z");
        assert_eq!(standing(&inside, false, &[], now()), Standing::Undisputed);
        assert_eq!(standing(&inside, true, &[], now()), Standing::UnderReview { held: false });
        let held = billed("held", "2026-11-25T12:05:00Z");
        assert_eq!(standing(&held, false, &[], now()), Standing::UnderReview { held: true });
        let payable = billed("accrued", "2026-11-25T11:00:00Z");
        assert_eq!(standing(&payable, true, &[], now()), Standing::Decided(DisputeState::TooLate));
    }

    #[test]
    fn a_dispute_is_decided_once() {
        let cleared = with_labels(billed("accrued", "2026-11-25T12:05:00Z"), &[], &[(DISPUTE_CLEARED, "x")]);
        assert_eq!(standing(&cleared, true, &[], now()), Standing::Decided(DisputeState::Cleared));
        let forfeited = with_labels(unit(0, 1, "a", Some("Succeeded"), 10), &[(BILLING, "forfeited")], &[]);
        let again = unit(0, 2, "b", Some("Succeeded"), 10);
        assert_eq!(standing(&again, true, &[&forfeited], now()), Standing::Decided(DisputeState::Upheld));
    }

    #[test]
    fn a_review_holds_then_releases_or_forfeits() {
        let accepted = billed("accrued", "2026-11-25T12:05:00Z");
        let check = verify_unit("shot-00000-1", "b", 1, "Pending", None);
        let opened = review_dispute(&accepted, false, &[], |_| Ok(check.clone()), now());
        assert_eq!((opened.state, opened.check.is_some()), (DisputeState::Open, true));
        assert_eq!(opened.marks[0].labels[BILLING], "held");

        let pass = verify_unit("shot-00000-1", "b", 1, "Succeeded", Some(true));
        let cleared = review_dispute(&accepted, true, &[&pass], |_| unreachable!(), now());
        assert_eq!(cleared.state, DisputeState::Cleared);
        assert!(cleared.marks[0].annotations.contains_key(DISPUTE_CLEARED));

        let fail = verify_unit("shot-00000-1", "b", 1, "Succeeded", Some(false));
        let nobody = || NoMemberFits { message: "no third member".into(), busy: false };
        let upheld = review_dispute(
            &accepted,
            true,
            &[&fail],
            |tie_break| {
                assert!(tie_break);
                Err(nobody())
            },
            now(),
        );
        assert_eq!(upheld.state, DisputeState::Upheld);
        assert_eq!(
            (upheld.marks[0].labels[BILLING].as_str(), upheld.marks[0].labels[VERDICT].as_str()),
            ("forfeited", MISMATCH)
        );

        let nobody = NoMemberFits { message: "no Ready member".into(), busy: false };
        let undecidable = review_dispute(&accepted, true, &[], |_| Err(nobody), now());
        assert_eq!(undecidable.marks[0].labels[BILLING], "accrued", "paid as first accepted");
    }

    #[test]
    fn the_condition_says_what_became_of_each_named_chunk() {
        let chunks =
            super::super::chunks(&pictor_crds::v1alpha1::FrameRange { start: 1, end: 20, step: 1 }, 10);
        let mut tally = DisputeTally::default();
        assert_eq!(tally.condition(&[], &chunks), None);
        tally.record(DisputeState::Cleared, "1-10");
        tally.record(DisputeState::Upheld, "11-20");
        let (open, reason, message) = tally.condition(&["1-10".into(), "11-20".into()], &chunks).unwrap();
        assert_eq!((open, reason), (false, "Decided"));
        assert!(message.contains("paid: 1-10") && message.contains("rendered again: 11-20"), "{message}");
        tally.record(DisputeState::Open, "1-10");
        assert_eq!(tally.condition(&["5-7".into()], &chunks).unwrap().1, "Reverifying");
    }
}
