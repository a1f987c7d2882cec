use super::*;
use crate::fixtures::{at, member, unit};

fn policy() -> BatchPolicy {
    BatchPolicy {
        min_octas: 100,
        max_wait: Duration::from_secs(600),
        max_units: 2,
        margin: Duration::from_secs(30),
    }
}

fn with_phase(mut s: Settlement, phase: SettlementPhase, reason: Option<&str>) -> Settlement {
    let mut status = pictor_crds::v1alpha1::SettlementStatus { phase: Some(phase), ..Default::default() };
    if let Some(reason) = reason {
        status.conditions.push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: pictor_crds::v1alpha1::Time(at("2026-11-25T12:00:00Z")),
        });
    }
    s.status = Some(status);
    s
}

const NOW: &str = "2026-11-25T12:00:00Z";

#[test]
fn units_past_their_window_are_settled_per_provider_in_batches_that_name_themselves() {
    let units = [
        unit("a", "u1", 60, "2026-11-25T11:00:00Z"),
        unit("a", "u2", 50, "2026-11-25T11:01:00Z"),
        unit("a", "u3", 40, "2026-11-25T11:02:00Z"),
        unit("a", "u4", 40, "2026-11-25T11:59:50Z"), // inside the margin: not yet
        unit("b", "u5", 10, "2026-11-25T11:00:00Z"),
    ];
    let refs: Vec<&WorkUnit> = units.iter().collect();
    let l = ledger(&refs, &[]);
    assert_eq!(l.providers["a"].earnings, Earnings { pending_octas: 190, paid_octas: 0 });
    let members = [member("a", "0xa"), member("b", "0xb")];
    let m: Vec<&GpuCluster> = members.iter().collect();
    let b = batches(&l, &m, &[], &policy(), "pictor-system", at(NOW));
    // a: 150 payable ≥ 100, in batches of 2; b: 10 < 100 but waited 1 h > 10 min.
    let summary: Vec<(String, i64, Vec<String>)> = b
        .create
        .iter()
        .map(|s| {
            (
                s.spec.provider.clone(),
                s.spec.amount_octas,
                s.spec.units.iter().map(|u| u.name.clone()).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a".into(), 110, vec!["u1".into(), "u2".into()]),
            ("a".into(), 40, vec!["u3".into()]),
            ("b".into(), 10, vec!["u5".into()]),
        ]
    );
    let again = batches(&l, &m, &[], &policy(), "pictor-system", at(NOW));
    assert_eq!(again.create[0].metadata.name, b.create[0].metadata.name, "the same units, the same name");
    assert!(b.create[0].metadata.name.as_deref().unwrap().starts_with("a-"));
    let record = b.create[0].spec.units[0].work.clone().unwrap();
    assert_eq!(
        (record.job.as_str(), record.gpu_vendor.as_str(), record.gpu_model.as_str()),
        ("art/shot", "nvidia", "NVIDIA-H100")
    );
    assert_eq!(record.outputs_digest.len(), 64);
    assert_eq!(
        b.create[0].spec.amount_octas,
        b.create[0].spec.units.iter().map(|u| u.amount_octas).sum::<i64>()
    );
}

#[test]
fn a_unit_in_a_live_settlement_is_never_batched_again_and_a_failed_one_is_owed_again() {
    let units = [unit("a", "u1", 200, "2026-11-25T11:00:00Z")];
    let refs: Vec<&WorkUnit> = units.iter().collect();
    let members = [member("a", "0xa")];
    let m: Vec<&GpuCluster> = members.iter().collect();
    let first = batches(&ledger(&refs, &[]), &m, &[], &policy(), "ns", at(NOW)).create.remove(0);

    for (phase, pending, paid) in [
        (SettlementPhase::Pending, 200, 0),
        (SettlementPhase::Submitted, 200, 0),
        (SettlementPhase::Confirmed, 0, 200),
    ] {
        let s = with_phase(first.clone(), phase, None);
        let l = ledger(&refs, &[&s]);
        assert!(l.providers["a"].owed.is_empty(), "{phase:?}");
        assert_eq!(
            l.providers["a"].earnings,
            Earnings { pending_octas: pending, paid_octas: paid },
            "{phase:?}"
        );
        assert!(batches(&l, &m, &[&s], &policy(), "ns", at(NOW)).create.is_empty(), "{phase:?}");
    }
    let failed = with_phase(first.clone(), SettlementPhase::Failed, Some("TransactionFailed"));
    let l = ledger(&refs, &[&failed]);
    assert_eq!(l.providers["a"].owed.len(), 1, "a failed settlement paid nothing: its units are owed again");
}

#[test]
fn a_rejected_payout_address_withholds_the_provider_until_it_changes() {
    let units = [unit("a", "u1", 200, "2026-11-25T11:00:00Z")];
    let refs: Vec<&WorkUnit> = units.iter().collect();
    let members = [member("a", "0x1")];
    let m: Vec<&GpuCluster> = members.iter().collect();
    let first = batches(&ledger(&refs, &[]), &m, &[], &policy(), "ns", at(NOW)).create.remove(0);
    let rejected = with_phase(first, SettlementPhase::Failed, Some(PAYOUT_REJECTED));
    let l = ledger(&refs, &[&rejected]);
    let b = batches(&l, &m, &[&rejected], &policy(), "ns", at(NOW));
    assert!(b.create.is_empty());
    assert_eq!(b.withheld[0].reason, PAYOUT_REJECTED);
    assert!(b.withheld[0].message.contains("spec.payoutAddress"), "{}", b.withheld[0].message);

    let fixed = [member("a", "0xa11ce")];
    let f: Vec<&GpuCluster> = fixed.iter().collect();
    let b = batches(&l, &f, &[&rejected], &policy(), "ns", at(NOW));
    assert_eq!(b.create.len(), 1);
    assert_eq!(b.create[0].spec.payout_address, "0xa11ce");
    assert_ne!(b.create[0].metadata.name, rejected.metadata.name, "a new settlement, not the failed one");
}

#[test]
fn held_units_count_as_pending_but_are_not_paid_and_deleted_units_go_once_paid() {
    let mut held = unit("a", "u1", 200, "2026-11-25T11:00:00Z");
    held.metadata.labels.as_mut().unwrap().insert("pictor.network/billing".into(), "held".into());
    let paid = unit("a", "u2", 100, "2026-11-25T11:00:00Z");
    let refs: Vec<&WorkUnit> = vec![&held, &paid];
    let members = [member("a", "0xa")];
    let m: Vec<&GpuCluster> = members.iter().collect();
    let l = ledger(&refs, &[]);
    assert_eq!(l.providers["a"].earnings.pending_octas, 300);
    let s = batches(&l, &m, &[], &policy(), "ns", at(NOW)).create.remove(0);
    assert_eq!(s.spec.units.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["u2"], "held units wait");

    let confirmed = with_phase(s, SettlementPhase::Confirmed, None);
    let mut deleted_paid = paid.clone();
    deleted_paid.metadata.deletion_timestamp = Some(pictor_crds::v1alpha1::Time(at(NOW)));
    let mut deleted_held = held.clone();
    deleted_held.metadata.deletion_timestamp = Some(pictor_crds::v1alpha1::Time(at(NOW)));
    let refs: Vec<&WorkUnit> = vec![&deleted_held, &deleted_paid];
    let l = ledger(&refs, &[&confirmed]);
    let released: Vec<&str> =
        releasable(&refs, &l).iter().map(|u| u.metadata.name.as_deref().unwrap()).collect();
    assert_eq!(released, ["u2"], "an unpaid unit keeps its finalizer");
}

#[test]
fn the_hubs_metered_figure_is_paid_and_recorded_never_the_members_report() {
    let mut u = unit("a", "u1", 200, "2026-11-25T11:00:00Z");
    u.status.as_mut().unwrap().gpu_seconds = 3_600_000;
    let members = [member("a", "0xa")];
    let m: Vec<&GpuCluster> = members.iter().collect();
    let s = batches(&ledger(&[&u], &[]), &m, &[], &policy(), "ns", at(NOW)).create.remove(0);
    assert_eq!(s.spec.amount_octas, 200);
    assert_eq!(s.spec.units[0].work.as_ref().unwrap().gpu_seconds, 200, "the record is the metered figure");
}

#[test]
fn units_the_hub_has_not_metered_are_reported_and_never_paid_nor_released() {
    let mut unmetered = unit("a", "u1", 200, "2026-11-25T11:00:00Z");
    unmetered.metadata.annotations.as_mut().unwrap().remove("pictor.network/metered-gpu-seconds");
    let metered = unit("a", "u2", 150, "2026-11-25T11:00:00Z");
    let refs: Vec<&WorkUnit> = vec![&unmetered, &metered];
    let members = [member("a", "0xa")];
    let m: Vec<&GpuCluster> = members.iter().collect();
    let l = ledger(&refs, &[]);
    assert_eq!(l.providers["a"].unmetered, ["pictor-member-a/u1"]);
    assert_eq!(l.providers["a"].earnings.pending_octas, 150, "nothing is known to be owed for it");
    let b = batches(&l, &m, &[], &policy(), "ns", at(NOW));
    let paid: Vec<&str> =
        b.create.iter().flat_map(|s| s.spec.units.iter().map(|u| u.name.as_str())).collect();
    assert_eq!(paid, ["u2"]);
    assert_eq!(b.withheld.len(), 1);
    assert_eq!(b.withheld[0].reason, UNITS_NOT_METERED);
    assert!(b.withheld[0].message.contains("pictor-member-a/u1"), "{}", b.withheld[0].message);

    unmetered.metadata.deletion_timestamp = Some(pictor_crds::v1alpha1::Time(at(NOW)));
    let refs: Vec<&WorkUnit> = vec![&unmetered];
    assert!(releasable(&refs, &ledger(&refs, &[])).is_empty(), "its debt is unknown, not zero");
}

#[test]
fn a_batch_never_sums_past_what_a_settlement_can_hold() {
    let huge = i64::MAX / 2 + 1;
    let units = [
        unit("a", "u1", huge, "2026-11-25T11:00:00Z"),
        unit("a", "u2", huge, "2026-11-25T11:00:00Z"),
        unit("a", "u3", 5, "2026-11-25T11:00:00Z"),
    ];
    let refs: Vec<&WorkUnit> = units.iter().collect();
    let members = [member("a", "0xa")];
    let m: Vec<&GpuCluster> = members.iter().collect();
    let l = ledger(&refs, &[]);
    assert_eq!(l.providers["a"].earnings.pending_octas, i64::MAX, "a report saturates, never wraps");
    let policy = BatchPolicy { max_units: 10, ..policy() };
    let b = batches(&l, &m, &[], &policy, "ns", at(NOW));
    let made: Vec<(i64, Vec<&str>)> = b
        .create
        .iter()
        .map(|s| (s.spec.amount_octas, s.spec.units.iter().map(|u| u.name.as_str()).collect()))
        .collect();
    assert_eq!(made, [(huge, vec!["u1"]), (huge + 5, vec!["u2", "u3"])]);
    for s in &b.create {
        assert_eq!(total_octas(s.spec.units.iter().map(|u| u.amount_octas)), Some(s.spec.amount_octas));
    }
    assert_eq!(total_octas([i64::MAX, 1]), None);
}
