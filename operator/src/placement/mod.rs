//! Placement: which member runs a piece of work, at which price. A pure function over the
//! members' advertised inventories and the job's needs; the controllers call it and apply the
//! answer.
//!
//! Built like pictor-scheduler's plugins, at two extension points:
//!
//! - [`filters`]: whether a member ([`filters::MEMBER_FILTERS`]: Ready, not cordoned, not
//!   excluded or blocklisted, tier, its provider's image allowlist and caps per pod), then each of its GPU pools ([`filters::OFFER_FILTERS`]:
//!   vendor, model and memory; priced; price within budget; free GPUs less what is claimed), can
//!   take the work. A refusal names its reason, and the job's condition counts them.
//! - [`scores`]: among the pools that pass, the lowest price (the submitter's interest), then the
//!   better record, then the most free GPUs (spreading load), then the names (so the same inputs
//!   always give the same answer).
//!
//! Fairness between submitting namespaces belongs in [`scores`] (a score that prefers the
//! namespace with the smaller share of the network's GPUs, from what [`Need`] would carry), and
//! a job's deadline in [`filters`] (members that cannot finish in time) or [`scores`] (the
//! fastest GPUs first when time is short).

pub mod filters;
pub mod scores;

use filters::{MEMBER_FILTERS, OFFER_FILTERS, Refusal};
use pictor_crds::contract::format_apt;
use pictor_crds::v1alpha1::{Budget, GpuCluster, GpuPool, GpuRequirements, GpuVendor, PodResources, Tier};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

/// What one unit of work needs.
#[derive(Clone, Debug)]
pub struct Need<'a> {
    /// GPU kind and count per pod.
    pub gpu: &'a GpuRequirements,
    /// Pods that must land in one member together (1 for a render chunk).
    pub pods: i64,
    /// Price limit.
    pub budget: &'a Budget,
    /// Accepted provider tier.
    pub tier: Tier,
    /// Members this work must not go to (failed it before, blocklisted for the job).
    pub excluded: &'a [String],
    /// The image its pods run, which the member's policy must allow.
    pub image: &'a str,
    /// CPU, memory and scratch disk of each pod, within the member's caps.
    pub resources: &'a PodResources,
}

/// Where a unit goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Member name.
    pub member: String,
    /// Vendor of the GPUs chosen.
    pub vendor: GpuVendor,
    /// GPU product chosen.
    pub model: String,
    /// Agreed price per GPU-hour, in octas.
    pub price_per_gpu_hour: i64,
}

/// GPUs already promised per member and model by units not yet running (the inventory does not
/// show them yet).
pub type Claims = HashMap<(String, String), i64>;

/// Why nothing fits, in words a submitter can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NoMemberFits {
    /// What the job's condition says.
    pub message: String,
    /// Some member would fit once GPUs free up: waiting helps.
    pub busy: bool,
}

/// One GPU pool of a member, as the pool filters and the scores see it.
#[derive(Clone, Copy, Debug)]
pub struct Offer<'a> {
    /// The member.
    pub member: &'a GpuCluster,
    /// The member's name.
    pub name: &'a str,
    /// The pool.
    pub pool: &'a GpuPool,
    /// The member's price per GPU-hour for the pool's model (or its default), in octas.
    pub price: Option<i64>,
    /// GPUs free in the pool less those already claimed.
    pub free: i64,
}

/// Every pool a member offers.
fn offers<'a>(member: &'a GpuCluster, claims: &Claims) -> impl Iterator<Item = Offer<'a>> {
    let name = member.metadata.name.as_deref().unwrap_or_default();
    let spec = &member.spec;
    let pools =
        member.status.as_ref().and_then(|s| s.inventory.as_ref()).map(|i| i.pools.as_slice()).unwrap_or(&[]);
    pools.iter().map(move |pool| Offer {
        member,
        name,
        pool,
        price: spec.price_per_gpu_hour.get(&pool.model).copied().or(spec.default_price_per_gpu_hour),
        free: pool.free - claims.get(&(name.to_string(), pool.model.clone())).copied().unwrap_or(0),
    })
}

/// Describes the need, for the condition a job shows when nothing fits.
fn describe(need: &Need<'_>) -> String {
    let vendor = match need.gpu.vendor {
        GpuVendor::Any => "GPUs".to_string(),
        GpuVendor::Only(vendor) => format!("{vendor} GPUs"),
    };
    let mut text = format!("no Ready member offers {vendor}");
    if !need.gpu.models.is_empty() {
        text += &format!(" of model {}", need.gpu.models.join(" or "));
    }
    if let Some(gib) = need.gpu.min_memory_gib {
        text += &format!(" with ≥ {gib} GiB");
    }
    let gpus = need.gpu.count * need.pods;
    if need.pods > 1 {
        text += &format!(", {} pods × {} GPUs in one member", need.pods, need.gpu.count);
    } else if gpus > 1 {
        text += &format!(", {gpus} GPUs on one node");
    }
    if let Some(max) = need.budget.max_price_per_gpu_hour {
        text += &format!(" under {}/GPU-hour", format_apt(max.max(0) as u64));
    }
    if need.tier != Tier::Any {
        text += &format!(" in the {:?} tier", need.tier).to_lowercase().replace("  ", " ");
    }
    text
}

/// Picks the member for one unit of work, or says why none fits.
pub fn place(need: &Need<'_>, members: &[&GpuCluster], claims: &Claims) -> Result<Placement, NoMemberFits> {
    let mut best: Option<Offer<'_>> = None;
    let mut refusals: BTreeMap<Refusal, usize> = BTreeMap::new();
    for member in members {
        if let Err(refusal) = MEMBER_FILTERS.iter().try_for_each(|filter| filter(need, member)) {
            *refusals.entry(refusal).or_default() += 1;
            continue;
        }
        let mut fitted = false;
        // A member none of whose pools fits is counted once, for the last pool of the GPUs asked
        // for: pools of other GPUs say nothing about why.
        let mut refused = Refusal::NoMatchingGpus;
        for offer in offers(member, claims) {
            match OFFER_FILTERS.iter().try_for_each(|filter| filter(need, &offer)) {
                Ok(()) => {
                    fitted = true;
                    if best.as_ref().is_none_or(|b| scores::preference(&offer, b) == Ordering::Less) {
                        best = Some(offer);
                    }
                }
                Err(Refusal::NoMatchingGpus) => {}
                Err(refusal) => refused = refusal,
            }
        }
        if !fitted {
            *refusals.entry(refused).or_default() += 1;
        }
    }
    match best {
        Some(offer) => Ok(Placement {
            member: offer.name.to_string(),
            vendor: offer.pool.vendor,
            model: offer.pool.model.clone(),
            price_per_gpu_hour: offer.price.unwrap_or_default(),
        }),
        None => Err(no_member_fits(need, members.len(), &refusals)),
    }
}

/// Why nothing fits: the need, and how many members each filter refused.
fn no_member_fits(need: &Need<'_>, members: usize, refusals: &BTreeMap<Refusal, usize>) -> NoMemberFits {
    let mut reasons: Vec<String> = refusals.iter().map(|(why, n)| format!("{n} {why}")).collect();
    reasons.sort();
    let detail = if members == 0 { "no members have joined".to_string() } else { reasons.join(", ") };
    let busy = refusals.keys().any(|r| r.is_busy());
    NoMemberFits { message: format!("{} ({members} members: {detail})", describe(need)), busy }
}

#[cfg(test)]
mod tests;
