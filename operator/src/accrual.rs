//! How the job controllers hand verified work to billing: a unit the job accepts as paid work
//! gets the label `pictor.network/billing=accrued`, the time from which it may be settled (the
//! end of the dispute window, hub clock) and a finalizer, so deleting a job never loses what its
//! providers are owed. Billing reads only these marks; what counts as verified stays with the
//! job controllers.

use crate::placement::cost_octas;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use pictor_crds::v1alpha1::WorkUnit;
use std::collections::BTreeMap;
use std::time::Duration;

/// Label on a WorkUnit its job controller judged: see [`BillingState`].
pub const BILLING: &str = "pictor.network/billing";
/// Annotation on an accrued unit: when it may be settled (RFC 3339, hub clock). Until then the
/// submitter may dispute it.
pub const PAYABLE_AFTER: &str = "pictor.network/payable-after";
/// Finalizer on accrued units: billing removes it once the unit is paid or forfeited.
pub const FINALIZER: &str = "pictor.network/settlement";
/// Annotation on a job: chunks the submitter disputes, by their frames as the units show them
/// (`kubectl get workunits -o wide`), comma-separated, e.g. `11-20,31-40`.
pub const DISPUTE: &str = "pictor.network/dispute";

/// Where a unit stands with billing.
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
        match value {
            "accrued" => Some(BillingState::Accrued),
            "held" => Some(BillingState::Held),
            "forfeited" => Some(BillingState::Forfeited),
            _ => None,
        }
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

/// What a unit is owed: its GPU-seconds at the agreed price (rounded down to whole octas).
pub fn amount_octas(unit: &WorkUnit) -> i64 {
    cost_octas(unit.status.as_ref().map_or(0, |s| s.gpu_seconds), unit.spec.agreed_price_per_gpu_hour)
}

/// A change to a unit's labels, annotations and finalizers, written by a job controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitMark {
    /// Namespace of the unit.
    pub namespace: String,
    /// Name of the unit.
    pub name: String,
    /// Labels to set.
    pub labels: BTreeMap<String, String>,
    /// Annotations to set.
    pub annotations: BTreeMap<String, String>,
    /// The unit's whole finalizer list, when it changes.
    pub finalizers: Option<Vec<String>>,
}

impl UnitMark {
    /// A mark that sets nothing yet.
    pub fn of(unit: &WorkUnit) -> Self {
        UnitMark {
            namespace: unit.metadata.namespace.clone().unwrap_or_default(),
            name: unit.metadata.name.clone().unwrap_or_default(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            finalizers: None,
        }
    }

    /// Sets a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

fn with_finalizer(unit: &WorkUnit) -> Option<Vec<String>> {
    let mut finalizers = unit.metadata.finalizers.clone().unwrap_or_default();
    if finalizers.iter().any(|f| f == FINALIZER) {
        return None;
    }
    finalizers.push(FINALIZER.into());
    Some(finalizers)
}

/// Accrues a unit its job accepts as paid work, payable once `window` has passed from `now`;
/// `None` when it was judged before.
pub fn accrue(unit: &WorkUnit, now: Timestamp, window: Duration) -> Option<UnitMark> {
    if billing_state(unit).is_some() {
        return None;
    }
    let after = now.saturating_add(SignedDuration::try_from(window).unwrap_or(SignedDuration::MAX)).ok()?;
    let mut mark = UnitMark::of(unit).label(BILLING, BillingState::Accrued.as_str());
    mark.annotations.insert(PAYABLE_AFTER.into(), after.to_string());
    mark.finalizers = with_finalizer(unit);
    Some(mark)
}

/// Holds a disputed unit's payment (its finalizer is put on too, should it have none yet).
pub fn hold(unit: &WorkUnit) -> UnitMark {
    let mut mark = UnitMark::of(unit).label(BILLING, BillingState::Held.as_str());
    mark.finalizers = with_finalizer(unit);
    mark
}

/// Annotation on a unit whose dispute was decided in its provider's favour.
pub const DISPUTE_CLEARED: &str = "pictor.network/dispute-cleared";

/// Releases a disputed unit that passed its re-verification: payable at once.
pub fn release(unit: &WorkUnit, now: Timestamp) -> UnitMark {
    let mut mark = UnitMark::of(unit).label(BILLING, BillingState::Accrued.as_str());
    mark.annotations.insert(PAYABLE_AFTER.into(), now.to_string());
    mark.annotations.insert(DISPUTE_CLEARED.into(), now.to_string());
    mark
}

/// Whether a unit's dispute was decided in its provider's favour.
pub fn dispute_cleared(unit: &WorkUnit) -> bool {
    unit.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(DISPUTE_CLEARED))
}

/// Whether a unit can still be disputed at `now`: not yet judged, or accrued and inside its
/// window.
pub fn disputable(unit: &WorkUnit, now: Timestamp) -> bool {
    match billing_state(unit) {
        None | Some(BillingState::Held) => true,
        Some(BillingState::Accrued) => payable_after(unit).is_some_and(|after| now < after),
        Some(BillingState::Forfeited) => false,
    }
}

/// Units still owed to their provider (accrued or held, in no paid Settlement), and their octas.
pub fn unpaid(units: &[&WorkUnit], paid_uids: &std::collections::HashSet<String>) -> (usize, i64) {
    units
        .iter()
        .filter(|u| matches!(billing_state(u), Some(BillingState::Accrued | BillingState::Held)))
        .filter(|u| u.metadata.uid.as_ref().is_none_or(|uid| !paid_uids.contains(uid)))
        .fold((0, 0), |(n, octas), u| (n + 1, octas + amount_octas(u)))
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

    fn unit(labels: serde_json::Value, annotations: serde_json::Value) -> WorkUnit {
        serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
            "metadata": {"name": "u", "namespace": "pictor-member-a", "labels": labels, "annotations": annotations},
            "spec": {"jobRef": {"kind": "RenderJob", "namespace": "d", "name": "j", "uid": "x"},
                     "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": 1}],
                     "agreedPricePerGpuHour": 3600},
            "status": {"phase": "Succeeded", "gpuSeconds": 10}
        }))
        .unwrap()
    }

    #[test]
    fn an_accrued_unit_is_payable_after_the_window_and_keeps_a_finalizer() {
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let u = unit(json!({}), json!({}));
        let mark = accrue(&u, now, Duration::from_secs(600)).unwrap();
        assert_eq!(mark.labels[BILLING], "accrued");
        assert_eq!(mark.annotations[PAYABLE_AFTER], "2026-11-25T12:10:00Z");
        assert_eq!(mark.finalizers, Some(vec![FINALIZER.to_string()]));
        assert_eq!(amount_octas(&u), 10);
        let accrued = unit(json!({BILLING: "accrued"}), json!({PAYABLE_AFTER: "2026-11-25T12:10:00Z"}));
        assert_eq!(accrue(&accrued, now, Duration::from_secs(600)), None, "accrued once");
        assert!(disputable(&accrued, now));
        assert!(!disputable(&accrued, "2026-11-25T12:10:00Z".parse().unwrap()), "the window has closed");
    }

    #[test]
    fn units_in_no_paid_settlement_are_still_owed() {
        let mut paid = unit(json!({BILLING: "accrued"}), json!({}));
        paid.metadata.uid = Some("paid".into());
        let mut owed = unit(json!({BILLING: "held"}), json!({}));
        owed.metadata.uid = Some("owed".into());
        let forfeited = unit(json!({BILLING: "forfeited"}), json!({}));
        let never = unit(json!({}), json!({}));
        let uids = std::collections::HashSet::from(["paid".to_string()]);
        assert_eq!(unpaid(&[&paid, &owed, &forfeited, &never], &uids), (1, 10));
    }

    #[test]
    fn disputed_frames_are_read_from_a_comma_or_space_separated_list() {
        let a = BTreeMap::from([(DISPUTE.to_string(), "11-20, 31-40 ,,51-60".to_string())]);
        assert_eq!(disputed_frames(Some(&a)), vec!["11-20", "31-40", "51-60"]);
        assert!(disputed_frames(None).is_empty());
    }
}
