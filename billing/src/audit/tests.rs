use super::*;
use crate::fixtures::{at, member};
use crate::ledger::{BatchPolicy, batches, ledger};
use pictor_crds::v1alpha1::SettlementStatus;
use std::time::Duration;

const NOW: &str = "2026-11-25T12:00:00Z";
const METERED: &str = "pictor.network/metered-gpu-seconds";
const PAYABLE_AFTER: &str = "pictor.network/payable-after";

/// An accrued unit of `member` metered at `octas` (one octa a GPU-second), payable an hour
/// before [`NOW`].
fn unit(member: &str, name: &str, octas: i64) -> WorkUnit {
    crate::fixtures::unit(member, name, octas, "2026-11-25T11:00:00Z")
}

/// The hub's record: two units of `a`, one of `b`, both members.
struct Record {
    units: Vec<WorkUnit>,
    members: Vec<GpuCluster>,
}

impl Record {
    fn new() -> Self {
        Record {
            units: vec![unit("a", "u1", 100), unit("a", "u2", 50), unit("b", "u3", 70)],
            members: vec![member("a", "0xa"), member("b", "0xb")],
        }
    }

    /// The Settlement billing makes for `a`'s units.
    fn honest(&self) -> Settlement {
        let units: Vec<&WorkUnit> = self.units.iter().collect();
        let members: Vec<&GpuCluster> = self.members.iter().collect();
        let policy =
            BatchPolicy { min_octas: 1, max_wait: Duration::ZERO, max_units: 10, margin: Duration::ZERO };
        let made = batches(&ledger(&units, &[]), &members, &[], &policy, "ns", at(NOW)).create;
        made.into_iter().find(|s| s.spec.provider == "a").unwrap()
    }

    fn check(&self, s: &Settlement, others: &[Settlement]) -> Result<(), Mismatch> {
        let units: Vec<&WorkUnit> = self.units.iter().collect();
        let members: Vec<&GpuCluster> = self.members.iter().collect();
        check(s, &units, others, &members, at(NOW))
    }

    fn unit_mut(&mut self, name: &str) -> &mut WorkUnit {
        self.units.iter_mut().find(|u| u.metadata.name.as_deref() == Some(name)).unwrap()
    }

    /// Sets the billing label of unit `name`.
    fn mark(&mut self, name: &str, state: &str) {
        let labels = self.unit_mut(name).metadata.labels.get_or_insert_default();
        labels.insert("pictor.network/billing".into(), state.into());
    }

    /// Sets (or with `None` removes) an annotation of unit `name`.
    fn annotate(&mut self, name: &str, key: &str, value: Option<&str>) {
        let annotations = self.unit_mut(name).metadata.annotations.get_or_insert_default();
        match value {
            Some(value) => annotations.insert(key.into(), value.into()),
            None => annotations.remove(key),
        };
    }
}

fn with_phase(mut s: Settlement, name: &str, phase: SettlementPhase) -> Settlement {
    s.metadata.name = Some(name.into());
    s.status = Some(SettlementStatus { phase: Some(phase), ..Default::default() });
    s
}

#[test]
fn what_billing_makes_of_the_hubs_record_matches_it() {
    let record = Record::new();
    let honest = record.honest();
    assert_eq!(honest.spec.amount_octas, 150);
    assert_eq!(record.check(&honest, std::slice::from_ref(&honest)), Ok(()), "itself is no other settlement");
    let failed_before = with_phase(honest.clone(), "a-old", SettlementPhase::Failed);
    assert_eq!(record.check(&honest, &[failed_before]), Ok(()), "a Failed settlement paid nothing");
}

#[test]
fn a_wrong_amount_or_total_is_refused() {
    let record = Record::new();
    let mut inflated = record.honest();
    inflated.spec.units[0].amount_octas = 10_000;
    inflated.spec.amount_octas = 10_050;
    assert_eq!(
        record.check(&inflated, &[]),
        Err(Mismatch::AmountDiffers { unit: "pictor-member-a/u1".into(), listed: 10_000, owed: 100 })
    );
    let mut total = record.honest();
    total.spec.amount_octas = 151;
    assert_eq!(record.check(&total, &[]), Err(Mismatch::TotalDiffers { listed: 151, sum: 150 }));
}

#[test]
fn amounts_that_overflow_a_64_bit_total_are_refused_not_wrapped() {
    let mut record = Record::new();
    let huge = i64::MAX / 2 + 1;
    for name in ["u1", "u2"] {
        record.annotate(name, METERED, Some(&huge.to_string()));
    }
    let mut s = record.honest();
    assert_eq!(s.spec.units.len(), 1, "billing never batches past i64::MAX");
    let second = s.spec.units[0].clone();
    s.spec.units.push(pictor_crds::v1alpha1::SettledUnit {
        name: "u2".into(),
        uid: "uid-u2".into(),
        amount_octas: huge,
        ..second
    });
    assert_eq!(record.check(&s, &[]), Err(Mismatch::TotalOverflows));
}

#[test]
fn units_that_are_not_owed_now_are_refused() {
    let mut record = Record::new();
    let s = record.honest();
    record.mark("u2", "held");
    assert_eq!(
        record.check(&s, &[]),
        Err(Mismatch::NotAccrued { unit: "pictor-member-a/u2".into(), state: "held" })
    );
    record.mark("u2", "forfeited");
    assert!(matches!(record.check(&s, &[]), Err(Mismatch::NotAccrued { state: "forfeited", .. })));

    let mut record = Record::new();
    record.annotate("u1", METERED, None);
    assert_eq!(record.check(&s, &[]), Err(Mismatch::NotMetered { unit: "pictor-member-a/u1".into() }));

    let mut record = Record::new();
    let later = "2026-11-25T12:30:00Z";
    record.annotate("u1", PAYABLE_AFTER, Some(later));
    assert_eq!(
        record.check(&s, &[]),
        Err(Mismatch::NotYetPayable { unit: "pictor-member-a/u1".into(), after: later.into() })
    );
    record.annotate("u1", PAYABLE_AFTER, None);
    assert!(matches!(record.check(&s, &[]), Err(Mismatch::NotYetPayable { .. })), "no window, not payable");
}

#[test]
fn units_that_are_not_the_ones_recorded_are_refused() {
    let record = Record::new();
    let mut unknown = record.honest();
    unknown.spec.units[0].name = "made-up".into();
    assert_eq!(
        record.check(&unknown, &[]),
        Err(Mismatch::UnknownUnit { unit: "pictor-member-a/made-up".into() })
    );
    let mut other_uid = record.honest();
    other_uid.spec.units[0].uid = "uid-of-an-older-u1".into();
    assert!(matches!(record.check(&other_uid, &[]), Err(Mismatch::UidDiffers { .. })));
    let mut twice = record.honest();
    let again = twice.spec.units[0].clone();
    twice.spec.units.push(again);
    twice.spec.amount_octas = 250;
    assert_eq!(record.check(&twice, &[]), Err(Mismatch::ListedTwice { unit: "pictor-member-a/u1".into() }));
}

#[test]
fn another_members_unit_is_refused() {
    let record = Record::new();
    let mut s = record.honest();
    s.spec.units.push(pictor_crds::v1alpha1::SettledUnit {
        namespace: "pictor-member-b".into(),
        name: "u3".into(),
        uid: "uid-u3".into(),
        amount_octas: 70,
        work: None,
    });
    s.spec.amount_octas = 220;
    assert_eq!(
        record.check(&s, &[]),
        Err(Mismatch::OtherProvider {
            unit: "pictor-member-b/u3".into(),
            provider: "a".into(),
            expected: "pictor-member-a".into()
        })
    );
}

#[test]
fn a_unit_another_live_settlement_pays_is_refused() {
    let record = Record::new();
    let s = record.honest();
    for phase in [SettlementPhase::Pending, SettlementPhase::Submitted, SettlementPhase::Confirmed] {
        let other = with_phase(s.clone(), "a-other", phase);
        assert_eq!(
            record.check(&s, &[other]),
            Err(Mismatch::InAnotherSettlement { unit: "pictor-member-a/u1".into(), other: "a-other".into() }),
            "{phase:?}"
        );
    }
}

#[test]
fn another_address_or_an_unknown_provider_is_refused() {
    let mut record = Record::new();
    let mut elsewhere = record.honest();
    elsewhere.spec.payout_address = "0xbad".into();
    assert_eq!(
        record.check(&elsewhere, &[]),
        Err(Mismatch::PayoutAddress { provider: "a".into(), listed: "0xbad".into(), current: "0xa".into() })
    );
    let s = record.honest();
    record.members.retain(|m| m.metadata.name.as_deref() != Some("a"));
    assert_eq!(record.check(&s, &[]), Err(Mismatch::ProviderUnknown { provider: "a".into() }));
}
