//! How the job controllers hand verified work to billing: a unit the job accepts as paid work
//! gets the label `pictor.network/billing=accrued`, the time from which it may be settled (the
//! end of the dispute window, hub clock) and a finalizer, so deleting a job never loses what its
//! providers are owed. These are the writes; billing reads the marks through
//! `pictor_crds::contract::billing_marks`, and what counts as verified stays with the job
//! controllers.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use pictor_crds::contract::annotations::{DISPUTE_CLEARED, PAYABLE_AFTER};
use pictor_crds::contract::billing_marks::{BillingState, billing_state, payable_after};
use pictor_crds::contract::finalizers::SETTLEMENT as FINALIZER;
use pictor_crds::contract::labels::BILLING;
use pictor_crds::v1alpha1::WorkUnit;
use std::collections::BTreeMap;
use std::time::Duration;

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

    /// Sets an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }
}

/// One mark per unit: the marks a reconcile decided for the same unit, merged in order (a later
/// value wins), so each unit is written once.
pub fn merge(marks: Vec<UnitMark>) -> Vec<UnitMark> {
    let mut merged: Vec<UnitMark> = Vec::with_capacity(marks.len());
    let mut at: std::collections::HashMap<(String, String), usize> = std::collections::HashMap::new();
    for mark in marks {
        match at.get(&(mark.namespace.clone(), mark.name.clone())) {
            Some(&i) => {
                let into = &mut merged[i];
                into.labels.extend(mark.labels);
                into.annotations.extend(mark.annotations);
                if mark.finalizers.is_some() {
                    into.finalizers = mark.finalizers;
                }
            }
            None => {
                at.insert((mark.namespace.clone(), mark.name.clone()), merged.len());
                merged.push(mark);
            }
        }
    }
    merged
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

/// Releases a disputed unit that passed its re-verification: payable at once.
pub fn release(unit: &WorkUnit, now: Timestamp) -> UnitMark {
    let mut mark = UnitMark::of(unit).label(BILLING, BillingState::Accrued.as_str());
    mark.annotations.insert(PAYABLE_AFTER.into(), now.to_string());
    mark.annotations.insert(DISPUTE_CLEARED.into(), now.to_string());
    mark
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
        let accrued = unit(json!({BILLING: "accrued"}), json!({PAYABLE_AFTER: "2026-11-25T12:10:00Z"}));
        assert_eq!(accrue(&accrued, now, Duration::from_secs(600)), None, "accrued once");
        assert!(disputable(&accrued, now));
        assert!(!disputable(&accrued, "2026-11-25T12:10:00Z".parse().unwrap()), "the window has closed");
    }

    #[test]
    fn marks_of_one_unit_merge_into_one_write() {
        let u = unit(json!({}), json!({}));
        let merged = merge(vec![
            UnitMark::of(&u).annotation("a", "1"),
            UnitMark::of(&u).label(BILLING, "accrued").annotation("a", "2"),
        ]);
        assert_eq!(merged.len(), 1);
        assert_eq!(
            (merged[0].annotations["a"].as_str(), merged[0].labels[BILLING].as_str()),
            ("2", "accrued")
        );
    }
}
