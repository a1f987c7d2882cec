//! The marks through which the hub's job controllers hand verified work to billing (DESIGN.md,
//! "Billing and settlement on Aptos"): a unit the job accepts as paid work carries the label
//! `pictor.network/billing`, the time it may be settled from and the settlement finalizer. The
//! hub writes these marks (in pictor-operator's `accrual`); billing, the CLI and the tests read
//! them through this module.

use super::annotations::{DISPUTE, DISPUTE_CLEARED, METERED_GPU_SECONDS, PAYABLE_AFTER};
use super::labels::BILLING;
use super::money::cost_octas;
use crate::v1alpha1::WorkUnit;
use k8s_openapi::jiff::Timestamp;
use std::collections::{BTreeMap, HashSet};

/// Where a unit stands with billing: the value of its [`BILLING`] label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BillingState {
    /// Verified work, owed to the unit's provider once the dispute window has passed.
    Accrued,
    /// Disputed by the submitter inside the window: held until verified again.
    Held,
    /// Failed its re-verification: never paid, and counted against the provider.
    Forfeited,
}

impl BillingState {
    /// Value of the [`BILLING`] label.
    pub fn as_str(self) -> &'static str {
        match self {
            BillingState::Accrued => "accrued",
            BillingState::Held => "held",
            BillingState::Forfeited => "forfeited",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [BillingState::Accrued, BillingState::Held, BillingState::Forfeited]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}

/// The unit's billing state, if its job controller judged it yet.
pub fn billing_state(unit: &WorkUnit) -> Option<BillingState> {
    unit.metadata.labels.as_ref()?.get(BILLING).and_then(|v| BillingState::parse(v))
}

/// When an accrued unit may be settled.
pub fn payable_after(unit: &WorkUnit) -> Option<Timestamp> {
    unit.metadata.annotations.as_ref()?.get(PAYABLE_AFTER)?.parse().ok()
}

/// The GPU-seconds the hub froze for payment (its [`METERED_GPU_SECONDS`]), if it metered the
/// unit yet. What the member reports in `status.gpuSeconds` is never paid as such.
pub fn metered_gpu_seconds(unit: &WorkUnit) -> Option<i64> {
    unit.metadata.annotations.as_ref()?.get(METERED_GPU_SECONDS)?.parse().ok().filter(|s: &i64| *s >= 0)
}

/// What a unit is owed: the GPU-seconds the hub metered at the agreed price (rounded down to
/// whole octas); nothing while the hub has not metered it.
pub fn amount_octas(unit: &WorkUnit) -> i64 {
    cost_octas(metered_gpu_seconds(unit).unwrap_or(0), unit.spec.agreed_price_per_gpu_hour)
}

/// Whether a unit's dispute was decided in its provider's favour.
pub fn dispute_cleared(unit: &WorkUnit) -> bool {
    unit.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(DISPUTE_CLEARED))
}

/// Units still owed to their provider (accrued or held, in no paid Settlement), and their octas.
pub fn unpaid(units: &[&WorkUnit], paid_uids: &HashSet<String>) -> (usize, i64) {
    units
        .iter()
        .filter(|u| matches!(billing_state(u), Some(BillingState::Accrued | BillingState::Held)))
        .filter(|u| u.metadata.uid.as_ref().is_none_or(|uid| !paid_uids.contains(uid)))
        .fold((0, 0), |(n, octas), u| (n + 1, octas.saturating_add(amount_octas(u))))
}

/// The frames a job's [`DISPUTE`] annotation names.
pub fn disputed_frames(annotations: Option<&BTreeMap<String, String>>) -> Vec<String> {
    annotations
        .and_then(|a| a.get(DISPUTE))
        .map(|v| v.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unit(labels: serde_json::Value) -> WorkUnit {
        serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
            "metadata": {"name": "u", "namespace": "pictor-member-a", "labels": labels,
                         "annotations": {METERED_GPU_SECONDS: "10"}},
            "spec": {"jobRef": {"kind": "RenderJob", "namespace": "d", "name": "j", "uid": "x"},
                     "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": 1}],
                     "agreedPricePerGpuHour": 3600},
            "status": {"phase": "Succeeded", "gpuSeconds": 10}
        }))
        .unwrap()
    }

    #[test]
    fn units_in_no_paid_settlement_are_still_owed() {
        let mut paid = unit(json!({BILLING: "accrued"}));
        paid.metadata.uid = Some("paid".into());
        let mut owed = unit(json!({BILLING: "held"}));
        owed.metadata.uid = Some("owed".into());
        let forfeited = unit(json!({BILLING: "forfeited"}));
        let never = unit(json!({}));
        let uids = HashSet::from(["paid".to_string()]);
        assert_eq!(unpaid(&[&paid, &owed, &forfeited, &never], &uids), (1, 10));
        assert_eq!(amount_octas(&paid), 10);
    }

    #[test]
    fn only_what_the_hub_metered_is_owed_never_the_members_report() {
        let mut u = unit(json!({BILLING: "accrued"}));
        u.status.as_mut().unwrap().gpu_seconds = 3_600_000_000;
        assert_eq!(amount_octas(&u), 10, "the member's gpuSeconds is not what is paid");
        u.metadata.annotations = None;
        assert_eq!((metered_gpu_seconds(&u), amount_octas(&u)), (None, 0));
        u.metadata.annotations = Some(BTreeMap::from([(METERED_GPU_SECONDS.to_string(), "-5".to_string())]));
        assert_eq!(metered_gpu_seconds(&u), None, "a negative figure is no figure");
    }

    #[test]
    fn disputed_frames_are_read_from_a_comma_or_space_separated_list() {
        let a = BTreeMap::from([(DISPUTE.to_string(), "11-20, 31-40 ,,51-60".to_string())]);
        assert_eq!(disputed_frames(Some(&a)), vec!["11-20", "31-40", "51-60"]);
        assert!(disputed_frames(None).is_empty());
    }
}
