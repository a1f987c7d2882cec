//! Metering the hub can defend: what a unit is paid is decided by the hub from what it observed
//! itself, and frozen in metadata a member cannot write (DESIGN.md, "Trust").
//!
//! The hub records, from its own watch and on its own clock, when it first saw a unit Running
//! ([`RUNNING_OBSERVED_AT`]) and when it first saw it finished ([`FINISHED_OBSERVED_AT`]); a unit
//! it never saw Running counts from its creation (the API server's clock). When a job makes a
//! unit payable (accrued, or held by a dispute), the unit is metered once
//! ([`METERED_GPU_SECONDS`]): the GPU-seconds its member reported, never more than its GPUs held
//! over the observed time plus [`TOLERANCE`], and never past what is left of the job's budget.
//! Billing pays that figure and nothing else.

use crate::accrual::UnitMark;
use k8s_openapi::jiff::Timestamp;
use pictor_crds::contract::annotations::{FINISHED_OBSERVED_AT, METERED_GPU_SECONDS, RUNNING_OBSERVED_AT};
use pictor_crds::contract::labels::BILLING;
use pictor_crds::contract::{BillingState, billing_marks, cost_octas};
use pictor_crds::v1alpha1::{WorkUnit, WorkUnitPhase};
use std::collections::HashMap;
use std::time::Duration;

/// Time the hub adds to what it observed, per GPU: its watch sees a unit start and finish a
/// moment after the member's pods do, and an honest report must never be cut by that lag.
pub const TOLERANCE: Duration = Duration::from_secs(30);

fn annotation<'a>(unit: &'a WorkUnit, key: &str) -> Option<&'a str> {
    unit.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

fn observed(unit: &WorkUnit, key: &str) -> Option<Timestamp> {
    annotation(unit, key)?.parse().ok()
}

fn phase(unit: &WorkUnit) -> Option<WorkUnitPhase> {
    unit.status.as_ref().and_then(|s| s.phase)
}

/// GPUs a unit holds: every pod's, summed.
pub fn gpus(unit: &WorkUnit) -> i64 {
    unit.spec.pods.iter().fold(0i64, |sum, p| sum.saturating_add(p.gpus.max(0)))
}

/// Marks of what the hub sees of `units` for the first time at `now`: a unit Running, a unit
/// finished (Succeeded or Failed; a Lost unit is never paid).
pub fn observations(units: &[&WorkUnit], now: Timestamp) -> Vec<UnitMark> {
    let at = now.to_string();
    units
        .iter()
        .filter_map(|unit| {
            let key = match phase(unit) {
                Some(WorkUnitPhase::Running) => RUNNING_OBSERVED_AT,
                Some(WorkUnitPhase::Succeeded | WorkUnitPhase::Failed) => FINISHED_OBSERVED_AT,
                _ => return None,
            };
            annotation(unit, key).is_none().then(|| UnitMark::of(unit).annotation(key, &at))
        })
        .collect()
}

/// The most GPU-seconds the hub will pay for `unit`: its GPUs over the time from when the hub
/// saw it start (or its creation) to when it saw it finish (or `now`), plus [`TOLERANCE`] each.
pub fn hub_bound(unit: &WorkUnit, now: Timestamp) -> i64 {
    let created = unit.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let start = observed(unit, RUNNING_OBSERVED_AT).or(created).unwrap_or(now);
    let end = observed(unit, FINISHED_OBSERVED_AT).unwrap_or(now);
    let seconds = end.duration_since(start).as_secs().max(0).saturating_add(TOLERANCE.as_secs() as i64);
    gpus(unit).saturating_mul(seconds)
}

/// The GPU-seconds the hub pays for `unit` before the budget: what it reported, within the hub's
/// bound.
pub fn payable_gpu_seconds(unit: &WorkUnit, now: Timestamp) -> i64 {
    let reported = unit.status.as_ref().map_or(0, |s| s.gpu_seconds).max(0);
    reported.min(hub_bound(unit, now))
}

/// What a unit costs its job, in octas: what the hub metered, or, not metered yet, what it would
/// pay now before the budget cap. Sums saturate: a job's cost never wraps.
pub fn cost_octas_of(units: &[&WorkUnit], now: Timestamp) -> i64 {
    units.iter().fold(0i64, |sum, unit| {
        let octas = match billing_marks::metered_gpu_seconds(unit) {
            Some(_) => billing_marks::amount_octas(unit),
            None => cost_octas(payable_gpu_seconds(unit, now), unit.spec.agreed_price_per_gpu_hour),
        };
        sum.saturating_add(octas)
    })
}

/// Whether a mark makes its unit payable: accrued, or held by a dispute (paid if it is cleared).
fn makes_payable(mark: &UnitMark) -> bool {
    mark.labels
        .get(BILLING)
        .is_some_and(|v| v == BillingState::Accrued.as_str() || v == BillingState::Held.as_str())
}

/// Meters every unit a plan's `marks` make payable and the hub has not metered yet, in mark
/// order, within `budget` octas for the whole job (`None`: no cap). What the job's units already
/// metered and payable count against the budget first.
pub fn meter(marks: &mut [UnitMark], units: &[&WorkUnit], budget: Option<i64>, now: Timestamp) {
    let by_name: HashMap<(&str, &str), &WorkUnit> = units
        .iter()
        .map(|u| {
            ((u.metadata.namespace.as_deref().unwrap_or(""), u.metadata.name.as_deref().unwrap_or("")), *u)
        })
        .collect();
    let mut spent = units
        .iter()
        .filter(|u| {
            matches!(billing_marks::billing_state(u), Some(BillingState::Accrued | BillingState::Held))
        })
        .fold(0i64, |sum, u| sum.saturating_add(billing_marks::amount_octas(u)));
    for mark in marks.iter_mut().filter(|m| makes_payable(m)) {
        let Some(unit) = by_name.get(&(mark.namespace.as_str(), mark.name.as_str())) else { continue };
        if billing_marks::metered_gpu_seconds(unit).is_some()
            || mark.annotations.contains_key(METERED_GPU_SECONDS)
        {
            continue;
        }
        let price = unit.spec.agreed_price_per_gpu_hour.max(0);
        let mut seconds = payable_gpu_seconds(unit, now);
        if let Some(budget) = budget {
            let left = i128::from(budget.saturating_sub(spent).max(0));
            // The most seconds whose cost, rounded down to whole octas, stays within what is left.
            if price > 0 {
                let affordable = ((left + 1) * 3600 - 1) / i128::from(price);
                seconds = seconds.min(i64::try_from(affordable).unwrap_or(i64::MAX));
            }
        }
        spent = spent.saturating_add(cost_octas(seconds, price));
        mark.annotations.insert(METERED_GPU_SECONDS.into(), seconds.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unit(name: &str, phase: &str, reported: i64, annotations: serde_json::Value) -> WorkUnit {
        serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
            "metadata": {"name": name, "namespace": "pictor-member-a", "annotations": annotations,
                         "creationTimestamp": "2026-11-25T12:00:00Z"},
            "spec": {"jobRef": {"kind": "RenderJob", "namespace": "d", "name": "j", "uid": "x"},
                     "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": 2}],
                     "agreedPricePerGpuHour": 3600},
            "status": {"phase": phase, "gpuSeconds": reported}
        }))
        .unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_hub_records_when_it_first_saw_a_unit_run_and_finish() {
        let running = unit("r", "Running", 0, json!({}));
        let seen = unit("s", "Running", 0, json!({RUNNING_OBSERVED_AT: "2026-11-25T12:00:05Z"}));
        let done = unit("d", "Succeeded", 10, json!({}));
        let lost = unit("l", "Lost", 10, json!({}));
        let marks = observations(&[&running, &seen, &done, &lost], at("2026-11-25T12:01:00Z"));
        assert_eq!(marks.len(), 2);
        assert_eq!(marks[0].annotations[RUNNING_OBSERVED_AT], "2026-11-25T12:01:00Z");
        assert_eq!(
            (marks[1].name.as_str(), marks[1].annotations.contains_key(FINISHED_OBSERVED_AT)),
            ("d", true)
        );
    }

    #[test]
    fn a_member_is_paid_its_report_but_never_more_than_the_hub_observed() {
        let observed = json!({RUNNING_OBSERVED_AT: "2026-11-25T12:00:10Z", FINISHED_OBSERVED_AT: "2026-11-25T12:01:10Z"});
        let honest = unit("h", "Succeeded", 110, observed.clone());
        assert_eq!(hub_bound(&honest, at("2026-11-25T13:00:00Z")), 2 * (60 + 30));
        assert_eq!(payable_gpu_seconds(&honest, at("2026-11-25T13:00:00Z")), 110);
        let greedy = unit("g", "Succeeded", 3_600_000_000, observed);
        assert_eq!(payable_gpu_seconds(&greedy, at("2026-11-25T13:00:00Z")), 180, "cut to what the hub saw");
        let unseen = unit("u", "Succeeded", 3_600_000_000, json!({}));
        assert_eq!(
            payable_gpu_seconds(&unseen, at("2026-11-25T12:00:20Z")),
            2 * (20 + 30),
            "from creation to now"
        );
        let negative = unit("n", "Succeeded", -50, json!({}));
        assert_eq!(payable_gpu_seconds(&negative, at("2026-11-25T12:00:20Z")), 0);
    }

    #[test]
    fn payable_marks_are_metered_once_and_within_the_budget() {
        let now = at("2026-11-25T12:10:00Z");
        let a = unit("a", "Succeeded", 600, json!({}));
        let b = unit("b", "Succeeded", 600, json!({}));
        let metered = unit("m", "Succeeded", 600, json!({METERED_GPU_SECONDS: "400"}));
        let mut paid_before = unit("p", "Succeeded", 600, json!({METERED_GPU_SECONDS: "100"}));
        paid_before.metadata.labels = Some([(BILLING.to_string(), "accrued".to_string())].into());
        let units = [&a, &b, &metered, &paid_before];
        let accrue = |u: &WorkUnit| UnitMark::of(u).label(BILLING, "accrued");
        let mut marks = vec![accrue(&a), UnitMark::of(&b).label(BILLING, "held"), accrue(&metered)];
        // 600 octas of budget at 3600 octas per GPU-hour: 100 already spent, 500 seconds left.
        meter(&mut marks, &units, Some(600), now);
        assert_eq!(marks[0].annotations[METERED_GPU_SECONDS], "500");
        assert_eq!(marks[1].annotations[METERED_GPU_SECONDS], "0", "the budget is spent");
        assert!(!marks[2].annotations.contains_key(METERED_GPU_SECONDS), "metered once");

        let mut uncapped = vec![accrue(&a)];
        meter(&mut uncapped, &units, None, now);
        assert_eq!(uncapped[0].annotations[METERED_GPU_SECONDS], "600");
    }
}
