//! A Settlement is a claim, checked against the hub's own record before anything is signed for
//! it: billing makes Settlements, but whoever else could write one (a stolen credential, a
//! mistaken operator, a bug) must not be paid for it (DESIGN.md, "Trust: members are
//! untrusted"). A Pending Settlement is paid only if it pays the provider's current address,
//! and every unit it lists is an accrued unit of that provider, past its dispute window, listed
//! once, at exactly what the hub metered, in no other live Settlement, and the units add up
//! exactly to what it pays.

use crate::ledger::{MAX_SETTLEMENT_OCTAS, total_octas};
use k8s_openapi::jiff::Timestamp;
use pictor_crds::contract::{BillingState, billing_marks, member_namespace};
use pictor_crds::v1alpha1::{GpuCluster, Settlement, SettlementPhase, WorkUnit};
use std::collections::{HashMap, HashSet};

/// Reason of a Settlement refused because it does not match the hub's record.
pub const DOES_NOT_MATCH_LEDGER: &str = "DoesNotMatchLedger";

/// How a Settlement differs from the hub's record. `unit` is `namespace/name` as listed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// No GpuCluster of that name: nobody to pay.
    #[error("provider {provider} has no GpuCluster")]
    ProviderUnknown { provider: String },
    /// It pays another address than the provider's.
    #[error("it pays {listed}, but GpuCluster {provider} has spec.payoutAddress {current}")]
    PayoutAddress { provider: String, listed: String, current: String },
    /// A unit listed twice would be paid twice.
    #[error("unit {unit} is listed twice")]
    ListedTwice { unit: String },
    /// No unit of that name is marked for billing.
    #[error("unit {unit} is not a WorkUnit the hub marked for billing")]
    UnknownUnit { unit: String },
    /// The unit of that name is another one (deleted and made again).
    #[error("unit {unit} has UID {actual}, not {listed}")]
    UidDiffers { unit: String, listed: String, actual: String },
    /// The unit is another member's work.
    #[error("unit {unit} is not in {expected}, the namespace of provider {provider}")]
    OtherProvider { unit: String, provider: String, expected: String },
    /// Held (disputed) or forfeited: not owed now.
    #[error("unit {unit} is {state}, not accrued")]
    NotAccrued { unit: String, state: &'static str },
    /// The hub has not decided what the unit is owed.
    #[error("unit {unit} has no GPU-seconds metered by the hub")]
    NotMetered { unit: String },
    /// Its dispute window is still open (or it has none).
    #[error("unit {unit} is payable only after {after}")]
    NotYetPayable { unit: String, after: String },
    /// It is listed at another amount than the hub metered.
    #[error("unit {unit} is listed at {listed} octas, but the hub metered {owed}")]
    AmountDiffers { unit: String, listed: i64, owed: i64 },
    /// Another settlement not Failed pays for it already.
    #[error("unit {unit} is in settlement {other} too")]
    InAnotherSettlement { unit: String, other: String },
    /// The units' amounts add up past what one Settlement can hold.
    #[error("its units' amounts add up past {MAX_SETTLEMENT_OCTAS} octas, more than one settlement can hold")]
    TotalOverflows,
    /// `spec.amountOctas` is not what its units add up to.
    #[error("spec.amountOctas is {listed}, but its units add up to {sum}")]
    TotalDiffers { listed: i64, sum: i64 },
}

fn phase(s: &Settlement) -> SettlementPhase {
    s.status.as_ref().and_then(|st| st.phase).unwrap_or_default()
}

/// Checks `settlement` against the hub's record: `units`, billing's store of the WorkUnits
/// marked for billing; `settlements`, every Settlement; `members`, the GpuClusters.
pub fn check(
    settlement: &Settlement,
    units: &[&WorkUnit],
    settlements: &[Settlement],
    members: &[&GpuCluster],
    now: Timestamp,
) -> Result<(), Mismatch> {
    let spec = &settlement.spec;
    let provider = spec.provider.as_str();
    let member = members
        .iter()
        .find(|m| m.metadata.name.as_deref() == Some(provider))
        .ok_or_else(|| Mismatch::ProviderUnknown { provider: provider.to_string() })?;
    if member.spec.payout_address != spec.payout_address {
        return Err(Mismatch::PayoutAddress {
            provider: provider.to_string(),
            listed: spec.payout_address.clone(),
            current: member.spec.payout_address.clone(),
        });
    }
    let by_name: HashMap<(&str, &str), &WorkUnit> = units
        .iter()
        .map(|u| {
            let key =
                (u.metadata.namespace.as_deref().unwrap_or(""), u.metadata.name.as_deref().unwrap_or(""));
            (key, *u)
        })
        .collect();
    let own = settlement.metadata.name.as_deref().unwrap_or_default();
    let elsewhere: HashMap<&str, &str> = settlements
        .iter()
        .filter(|s| s.metadata.name.as_deref() != Some(own) && phase(s) != SettlementPhase::Failed)
        .flat_map(|s| {
            let name = s.metadata.name.as_deref().unwrap_or_default();
            s.spec.units.iter().map(move |u| (u.uid.as_str(), name))
        })
        .collect();
    let expected = member_namespace(provider);
    let mut seen: HashSet<&str> = HashSet::new();
    for listed in &spec.units {
        let unit = format!("{}/{}", listed.namespace, listed.name);
        if !seen.insert(listed.uid.as_str()) {
            return Err(Mismatch::ListedTwice { unit });
        }
        if listed.namespace != expected {
            return Err(Mismatch::OtherProvider { unit, provider: provider.to_string(), expected });
        }
        let Some(recorded) = by_name.get(&(listed.namespace.as_str(), listed.name.as_str())) else {
            return Err(Mismatch::UnknownUnit { unit });
        };
        let actual = recorded.metadata.uid.as_deref().unwrap_or_default();
        if actual != listed.uid {
            return Err(Mismatch::UidDiffers {
                unit,
                listed: listed.uid.clone(),
                actual: actual.to_string(),
            });
        }
        match billing_marks::billing_state(recorded) {
            Some(BillingState::Accrued) => {}
            other => {
                let state = other.map_or("not marked for billing", BillingState::as_str);
                return Err(Mismatch::NotAccrued { unit, state });
            }
        }
        if billing_marks::metered_gpu_seconds(recorded).is_none() {
            return Err(Mismatch::NotMetered { unit });
        }
        match billing_marks::payable_after(recorded) {
            Some(after) if after <= now => {}
            after => {
                let after = after.map_or_else(|| "an unknown time".to_string(), |t| t.to_string());
                return Err(Mismatch::NotYetPayable { unit, after });
            }
        }
        let owed = billing_marks::amount_octas(recorded);
        if listed.amount_octas != owed {
            return Err(Mismatch::AmountDiffers { unit, listed: listed.amount_octas, owed });
        }
        if let Some(other) = elsewhere.get(listed.uid.as_str()) {
            return Err(Mismatch::InAnotherSettlement { unit, other: other.to_string() });
        }
    }
    let sum = total_octas(spec.units.iter().map(|u| u.amount_octas)).ok_or(Mismatch::TotalOverflows)?;
    if sum != spec.amount_octas {
        return Err(Mismatch::TotalDiffers { listed: spec.amount_octas, sum });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
