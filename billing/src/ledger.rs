//! What each provider is owed, as a pure function of the accrued WorkUnits and the Settlements:
//! which units are still to be paid, which new Settlements to make of them, what each
//! provider has earned, and which deleted units may finally go.
//!
//! A unit belongs to at most one live Settlement (one not Failed): that is what makes a double
//! payment by the controller impossible, together with the signed transaction it records.
//!
//! A unit is paid what the hub metered for it (`pictor.network/metered-gpu-seconds`), never the
//! GPU-seconds its member reported; one the hub has not metered is not payable, and is reported.
//! Sums of octas are checked: a Settlement's total must fit the API server's 64-bit CEL sum.

use super::settle::{PAYOUT_REJECTED, failure_reason};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::ObjectMeta;
use pictor_crds::contract::annotations::{GPU_MODEL as GPU_MODEL_ANNOTATION, METERED_GPU_SECONDS};
use pictor_crds::contract::{BillingState, billing_marks, finalizers, format_apt, labels};
use pictor_crds::v1alpha1::{
    Earnings, GpuCluster, SettledUnit, Settlement, SettlementPhase, SettlementSpec, WorkRecord, WorkUnit,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// When to turn payable units into a Settlement.
#[derive(Clone, Debug)]
pub struct BatchPolicy {
    /// Settle a provider once this much is payable...
    pub min_octas: i64,
    /// ...or once its oldest payable unit has waited this long.
    pub max_wait: Duration,
    /// Units in one Settlement at most.
    pub max_units: usize,
    /// Time added to a unit's payable-after before it is settled, so a dispute recorded just
    /// before the window closed is seen before the unit is paid.
    pub margin: Duration,
}

/// A unit owed to its provider and not in any live Settlement.
#[derive(Clone, Debug, PartialEq)]
pub struct Owed {
    /// The unit as a Settlement records it.
    pub unit: SettledUnit,
    /// From when it may be settled.
    pub payable_after: Timestamp,
}

/// A provider's account.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProviderLedger {
    /// Accrued units in no live Settlement, oldest payable first.
    pub owed: Vec<Owed>,
    /// What the provider has earned: pending (accrued, held or in flight) and paid. Sums
    /// saturate: this is a report, and what is paid is summed exactly per Settlement.
    pub earnings: Earnings,
    /// Accrued or held units (`namespace/name`) the hub has not metered: nothing is known to be
    /// owed for them, so they are not paid until it meters them.
    pub unmetered: Vec<String>,
}

/// Reason a provider's units wait for the hub to meter them.
pub const UNITS_NOT_METERED: &str = "UnitsNotMetered";

/// The largest total of one Settlement: the API server checks `spec.amountOctas` against the
/// sum of its units with CEL's 64-bit integers, which fail on overflow, so a Settlement whose
/// units sum past this could never be created. Checked additions on i64 stop exactly here.
pub const MAX_SETTLEMENT_OCTAS: i64 = i64::MAX;

/// The exact sum of `amounts`, or `None` past [`MAX_SETTLEMENT_OCTAS`] (or below zero).
pub fn total_octas(amounts: impl IntoIterator<Item = i64>) -> Option<i64> {
    amounts.into_iter().try_fold(0i64, |sum, octas| sum.checked_add(octas)).filter(|sum| *sum >= 0)
}

/// Every provider's account, and the units each live Settlement covers.
#[derive(Debug, Default)]
pub struct Ledger {
    /// By provider (member name).
    pub providers: BTreeMap<String, ProviderLedger>,
    /// UIDs of the units in Confirmed Settlements.
    pub paid: HashSet<String>,
}

fn phase(s: &Settlement) -> SettlementPhase {
    s.status.as_ref().and_then(|st| st.phase).unwrap_or_default()
}

/// The record of a unit's work, kept with its payment: its GPU-seconds are what the hub
/// metered (`metered_gpu_seconds`), not what the member reported.
pub fn work_record(unit: &WorkUnit, metered_gpu_seconds: i64) -> WorkRecord {
    let status = unit.status.as_ref();
    let mut digest = Sha256::new();
    let outputs = status.map(|s| s.outputs.as_slice()).unwrap_or_default();
    for output in outputs {
        digest.update(output.sha256.as_bytes());
        digest.update(b"\n");
    }
    let job = &unit.spec.job_ref;
    WorkRecord {
        job_kind: format!("{:?}", job.kind),
        job: format!("{}/{}", job.namespace, job.name),
        outputs_digest: if outputs.is_empty() { String::new() } else { hex::encode(digest.finalize()) },
        gpu_vendor: unit.spec.pods.first().map(|p| p.gpu_vendor.as_str().to_string()).unwrap_or_default(),
        gpu_model: unit
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(GPU_MODEL_ANNOTATION))
            .cloned()
            .unwrap_or_default(),
        gpu_seconds: metered_gpu_seconds,
        price_per_gpu_hour: unit.spec.agreed_price_per_gpu_hour,
    }
}

/// Builds every provider's ledger.
pub fn ledger(units: &[&WorkUnit], settlements: &[&Settlement]) -> Ledger {
    let mut out = Ledger::default();
    let mut covered: HashSet<&str> = HashSet::new();
    for s in settlements {
        let account = out.providers.entry(s.spec.provider.clone()).or_default();
        match phase(s) {
            SettlementPhase::Failed => continue,
            SettlementPhase::Confirmed => {
                account.earnings.paid_octas = account.earnings.paid_octas.saturating_add(s.spec.amount_octas);
                out.paid.extend(s.spec.units.iter().map(|u| u.uid.clone()));
            }
            SettlementPhase::Pending | SettlementPhase::Submitted => {
                account.earnings.pending_octas =
                    account.earnings.pending_octas.saturating_add(s.spec.amount_octas);
            }
        }
        covered.extend(s.spec.units.iter().map(|u| u.uid.as_str()));
    }
    for unit in units {
        let Some(provider) = unit.member() else {
            continue;
        };
        let uid = unit.metadata.uid.as_deref().unwrap_or_default();
        let state = billing_marks::billing_state(unit);
        if covered.contains(uid) || !matches!(state, Some(BillingState::Accrued | BillingState::Held)) {
            continue;
        }
        let account = out.providers.entry(provider.to_string()).or_default();
        let Some(metered) = billing_marks::metered_gpu_seconds(unit) else {
            let namespace = unit.metadata.namespace.as_deref().unwrap_or_default();
            account.unmetered.push(format!("{namespace}/{}", unit.name_any()));
            continue;
        };
        let amount = billing_marks::amount_octas(unit);
        account.earnings.pending_octas = account.earnings.pending_octas.saturating_add(amount);
        let payable_after = billing_marks::payable_after(unit);
        if let (Some(BillingState::Accrued), Some(payable_after)) = (state, payable_after) {
            account.owed.push(Owed {
                unit: SettledUnit {
                    namespace: unit.metadata.namespace.clone().unwrap_or_default(),
                    name: unit.metadata.name.clone().unwrap_or_default(),
                    uid: uid.to_string(),
                    amount_octas: amount,
                    work: Some(work_record(unit, metered)),
                },
                payable_after,
            });
        }
    }
    for account in out.providers.values_mut() {
        account.owed.sort_by(|a, b| (a.payable_after, &a.unit.name).cmp(&(b.payable_after, &b.unit.name)));
    }
    out
}

/// Why a provider is not being settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withheld {
    /// The provider.
    pub provider: String,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What to do about it.
    pub message: String,
}

/// New Settlements to create, and providers whose payment waits on them.
#[derive(Debug, Default)]
pub struct Batches {
    /// Settlements to create, in the namespace given.
    pub create: Vec<Settlement>,
    /// Providers that are owed but cannot be paid as they are.
    pub withheld: Vec<Withheld>,
}

/// Turns payable units into Settlements, by amount or by waiting time.
pub fn batches(
    ledger: &Ledger,
    members: &[&GpuCluster],
    settlements: &[&Settlement],
    policy: &BatchPolicy,
    namespace: &str,
    now: Timestamp,
) -> Batches {
    let mut out = Batches::default();
    let members: HashMap<&str, &GpuCluster> =
        members.iter().map(|m| (m.metadata.name.as_deref().unwrap_or_default(), *m)).collect();
    let margin = SignedDuration::try_from(policy.margin).unwrap_or(SignedDuration::ZERO);
    let max_wait = SignedDuration::try_from(policy.max_wait).unwrap_or(SignedDuration::MAX);
    for (provider, account) in &ledger.providers {
        if let Some(unmetered) = unmetered(provider, &account.unmetered) {
            out.withheld.push(unmetered);
        }
        let payable: Vec<&Owed> = account
            .owed
            .iter()
            .filter(|o| o.payable_after.saturating_add(margin).is_ok_and(|t| t <= now))
            .collect();
        // Only decides whether to settle now: past i64::MAX it is more than enough either way.
        let amount = payable.iter().fold(0i64, |sum, o| sum.saturating_add(o.unit.amount_octas));
        if payable.is_empty() || amount < 1 {
            continue;
        }
        let Some(member) = members.get(provider.as_str()) else {
            out.withheld.push(Withheld {
                provider: provider.clone(),
                reason: "ProviderUnknown",
                message: format!(
                    "{} is owed for {} units but has no GpuCluster, so no payout address; re-admit it with `pictor member add`",
                    format_apt(amount as u64),
                    payable.len()
                ),
            });
            continue;
        };
        let address = member.spec.payout_address.as_str();
        if let Some(rejected) = settlements.iter().find(|s| {
            s.spec.provider == *provider
                && s.spec.payout_address == address
                && phase(s) == SettlementPhase::Failed
                && failure_reason(s) == Some(PAYOUT_REJECTED)
        }) {
            out.withheld.push(Withheld {
                provider: provider.clone(),
                reason: PAYOUT_REJECTED,
                message: format!(
                    "the chain refused payment to {address} (settlement {}); set a valid spec.payoutAddress on GpuCluster {provider} and payment resumes",
                    rejected.metadata.name.as_deref().unwrap_or_default()
                ),
            });
            continue;
        }
        let oldest_waited = payable[0].payable_after.saturating_add(max_wait).is_ok_and(|t| t <= now);
        if amount < policy.min_octas && !oldest_waited {
            continue;
        }
        // Failed settlements of the provider so far: a batch made again of the same units after
        // one failed must not take the failed one's name.
        let failed = settlements
            .iter()
            .filter(|s| s.spec.provider == *provider && phase(s) == SettlementPhase::Failed)
            .count();
        for (units, amount) in split(&payable, policy.max_units) {
            if amount < 1 {
                continue;
            }
            out.create.push(settlement(provider, address, units, amount, failed, namespace));
        }
    }
    out
}

/// How many of a provider's units wait for the hub to meter them, as a report.
fn unmetered(provider: &str, units: &[String]) -> Option<Withheld> {
    const NAMED: usize = 5;
    let first = units.iter().take(NAMED).cloned().collect::<Vec<_>>().join(", ");
    let more = units.len().saturating_sub(NAMED);
    (!units.is_empty()).then(|| Withheld {
        provider: provider.to_string(),
        reason: UNITS_NOT_METERED,
        message: format!(
            "{} accrued or held units of {provider} carry no {METERED_GPU_SECONDS} written by the hub, so what they are owed is unknown and they are not paid until the hub meters them: {first}{}",
            units.len(),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        ),
    })
}

/// Payable units in batches of at most `max_units`, each with its exact total, never past
/// [`MAX_SETTLEMENT_OCTAS`]: a unit that would take a batch past it starts the next one.
fn split(payable: &[&Owed], max_units: usize) -> Vec<(Vec<SettledUnit>, i64)> {
    let max_units = max_units.max(1);
    let mut out: Vec<(Vec<SettledUnit>, i64)> = Vec::new();
    for owed in payable {
        let octas = owed.unit.amount_octas.max(0);
        let fits = out.last().and_then(|(units, total)| {
            // Amounts are never negative, so every partial sum CEL makes fits too.
            let sum = total.checked_add(octas)?;
            (units.len() < max_units).then_some(sum)
        });
        match (fits, out.last_mut()) {
            (Some(sum), Some((units, total))) => {
                units.push(owed.unit.clone());
                *total = sum;
            }
            _ => out.push((vec![owed.unit.clone()], octas)),
        }
    }
    out
}

/// A Settlement named after its provider and a digest of its units' UIDs, its address and the
/// provider's failed settlements, so the same batch made twice is one object.
fn settlement(
    provider: &str,
    address: &str,
    units: Vec<SettledUnit>,
    amount: i64,
    failed_before: usize,
    namespace: &str,
) -> Settlement {
    let mut digest = Sha256::new();
    digest.update(format!("{address}\n{failed_before}\n").as_bytes());
    for unit in &units {
        digest.update(unit.uid.as_bytes());
        digest.update(b"\n");
    }
    let stem: String = provider.chars().take(240).collect();
    let name = format!("{stem}-{}", &hex::encode(digest.finalize())[..12]);
    let mut s = Settlement::new(
        &name,
        SettlementSpec {
            provider: provider.to_string(),
            payout_address: address.to_string(),
            amount_octas: amount,
            amount: format_apt(amount as u64),
            unit_count: units.len() as i64,
            units,
        },
    );
    s.metadata = ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: Some(BTreeMap::from([(labels::MEMBER.to_string(), provider.to_string())])),
        ..Default::default()
    };
    s
}

/// Units being deleted whose finalizer may go: paid, forfeited, or metered at nothing.
pub fn releasable<'a>(units: &[&'a WorkUnit], ledger: &Ledger) -> Vec<&'a WorkUnit> {
    units
        .iter()
        .copied()
        .filter(|u| u.metadata.deletion_timestamp.is_some())
        .filter(|u| {
            u.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|f| f == finalizers::SETTLEMENT))
        })
        .filter(|u| {
            let uid = u.metadata.uid.as_deref().unwrap_or_default();
            // Unmetered, a unit's debt is unknown, not zero: it stays until the hub meters it.
            let owed_nothing =
                billing_marks::metered_gpu_seconds(u).is_some() && billing_marks::amount_octas(u) == 0;
            ledger.paid.contains(uid)
                || owed_nothing
                || !matches!(
                    billing_marks::billing_state(u),
                    Some(BillingState::Accrued | BillingState::Held)
                )
        })
        .collect()
}

#[cfg(test)]
mod tests;
