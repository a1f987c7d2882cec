//! Filters: whether a member, then one of its GPU pools, can take the work. Each is a small
//! function over plain data that says why not, in the words the job's `NoMemberFits` condition
//! counts. They run in the order listed, cheapest and most telling first: the first refusal is
//! the one counted.

use super::{Need, Offer};
use pictor_crds::contract::work_policy::{image_allowed, over_caps};
use pictor_crds::v1alpha1::{GpuCluster, GpuVendor, Tier, WorkPolicy};
use std::fmt;

/// Why a member or one of its GPU pools cannot take the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// The member's heartbeat is stale.
    NotReady,
    /// The hub admin cordoned the member.
    Cordoned,
    /// The member failed this work before, or is blocklisted for the job.
    Excluded,
    /// The job asks for the other tier.
    OtherTier,
    /// The provider does not run the job's image.
    ImageNotAllowed,
    /// A pod asks for more CPU, memory or scratch disk than the provider allows one pod.
    OverProviderCaps,
    /// No pool of the vendor, model and memory asked for.
    NoMatchingGpus,
    /// The member sets no price for the pool's model.
    NotPriced,
    /// The price is over the job's `budget.maxPricePerGpuHour`.
    TooExpensive,
    /// The pool holds the work once GPUs free up: waiting helps.
    NotEnoughFreeGpus,
    /// The pool can never hold the work (too few GPUs, or too few on one node).
    TooSmall,
}

impl Refusal {
    /// Whether the member would take the work once its GPUs free up.
    pub fn is_busy(self) -> bool {
        self == Refusal::NotEnoughFreeGpus
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NotReady => "not Ready",
            Refusal::Cordoned => "cordoned",
            Refusal::Excluded => "excluded for this job",
            Refusal::OtherTier => "other tier",
            Refusal::ImageNotAllowed => "image not allowed by the provider",
            Refusal::OverProviderCaps => "pod over the provider's CPU, memory or disk limits",
            Refusal::NoMatchingGpus => "no matching GPUs",
            Refusal::NotPriced => "model not priced",
            Refusal::TooExpensive => "too expensive",
            Refusal::NotEnoughFreeGpus => "not enough free GPUs",
            Refusal::TooSmall => "too small",
        })
    }
}

/// Judges a member as a whole.
pub type MemberFilter = fn(&Need<'_>, &GpuCluster) -> Result<(), Refusal>;

/// Judges one GPU pool of a member that passed every [`MemberFilter`].
pub type OfferFilter = fn(&Need<'_>, &Offer<'_>) -> Result<(), Refusal>;

/// The member filters, in the order they run.
pub const MEMBER_FILTERS: &[MemberFilter] =
    &[ready, not_cordoned, not_excluded, in_tier, runs_the_image, within_provider_caps];

/// The pool filters, in the order they run.
pub const OFFER_FILTERS: &[OfferFilter] = &[gpu_kind, priced, within_budget, free_gpus];

/// The member's heartbeat is fresh (its `Ready` condition is True).
pub fn ready(_: &Need<'_>, member: &GpuCluster) -> Result<(), Refusal> {
    let ready = member
        .status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if ready { Ok(()) } else { Err(Refusal::NotReady) }
}

/// The hub admin has not cordoned the member.
pub fn not_cordoned(_: &Need<'_>, member: &GpuCluster) -> Result<(), Refusal> {
    if member.spec.cordoned { Err(Refusal::Cordoned) } else { Ok(()) }
}

/// The work may go to the member: it did not fail it before and is not blocklisted for the job.
pub fn not_excluded(need: &Need<'_>, member: &GpuCluster) -> Result<(), Refusal> {
    let name = member.metadata.name.as_deref().unwrap_or_default();
    if need.excluded.iter().any(|e| e == name) { Err(Refusal::Excluded) } else { Ok(()) }
}

/// The member is of the tier the job accepts.
pub fn in_tier(need: &Need<'_>, member: &GpuCluster) -> Result<(), Refusal> {
    if need.tier == Tier::Any || need.tier == member.spec.tier { Ok(()) } else { Err(Refusal::OtherTier) }
}

/// The member's advertised policy allows the work's image. A member that advertises none (an
/// agent from before policies) is left to refuse for itself.
pub fn runs_the_image(need: &Need<'_>, member: &GpuCluster) -> Result<(), Refusal> {
    match work_policy(member) {
        Some(policy) if !image_allowed(policy, need.image) => Err(Refusal::ImageNotAllowed),
        _ => Ok(()),
    }
}

/// Each pod's CPU, memory and scratch disk are within the member's advertised caps.
pub fn within_provider_caps(need: &Need<'_>, member: &GpuCluster) -> Result<(), Refusal> {
    match work_policy(member) {
        Some(policy) if over_caps(policy, need.resources).is_some() => Err(Refusal::OverProviderCaps),
        _ => Ok(()),
    }
}

fn work_policy(member: &GpuCluster) -> Option<&WorkPolicy> {
    member.status.as_ref()?.work_policy.as_ref()
}

/// The pool's GPUs are of the vendor, a model and the memory the work asks for.
pub fn gpu_kind(need: &Need<'_>, offer: &Offer<'_>) -> Result<(), Refusal> {
    let (gpu, pool) = (need.gpu, offer.pool);
    let vendor_ok = gpu.vendor == GpuVendor::Any || gpu.vendor == pool.vendor;
    let model_ok = gpu.models.is_empty() || gpu.models.contains(&pool.model);
    let memory_ok = gpu.min_memory_gib.is_none_or(|gib| pool.memory_mib >= gib * 1024);
    if vendor_ok && model_ok && memory_ok { Ok(()) } else { Err(Refusal::NoMatchingGpus) }
}

/// The member prices the pool's model (or sets a default price).
pub fn priced(_: &Need<'_>, offer: &Offer<'_>) -> Result<(), Refusal> {
    offer.price.map(|_| ()).ok_or(Refusal::NotPriced)
}

/// The price is within the job's `budget.maxPricePerGpuHour`.
pub fn within_budget(need: &Need<'_>, offer: &Offer<'_>) -> Result<(), Refusal> {
    let over = need.budget.max_price_per_gpu_hour.is_some_and(|max| offer.price.is_some_and(|p| p > max));
    if over { Err(Refusal::TooExpensive) } else { Ok(()) }
}

/// The pool has the work's GPUs free, counting what this reconcile already claimed, with a pod's
/// GPUs on one node. When it has not, whether waiting helps: the pool holds the work once free
/// again only if it has the GPUs at all and its nodes are big enough for a pod.
pub fn free_gpus(need: &Need<'_>, offer: &Offer<'_>) -> Result<(), Refusal> {
    let (pool, per_pod) = (offer.pool, need.gpu.count);
    let all = per_pod * need.pods;
    if offer.free >= all && pool.largest_free_on_node >= per_pod {
        return Ok(());
    }
    let gpu_nodes_hold_a_pod = pool.total / pool.nodes.max(1) >= per_pod;
    if pool.total >= all && gpu_nodes_hold_a_pod {
        Err(Refusal::NotEnoughFreeGpus)
    } else {
        Err(Refusal::TooSmall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pictor_crds::contract::Vendor;
    use pictor_crds::v1alpha1::{Budget, GpuPool, GpuRequirements, PodResources};
    use serde_json::json;

    fn member(ready: &str, cordoned: bool, tier: &str) -> GpuCluster {
        serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "GpuCluster", "metadata": {"name": "m"},
            "spec": {"tier": tier, "payoutAddress": "0x1", "cordoned": cordoned},
            "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "r", "message": "m",
                                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .unwrap()
    }

    fn pool(vendor: Vendor, model: &str, memory_mib: i64, nodes: i64, total: i64, largest: i64) -> GpuPool {
        GpuPool {
            vendor: vendor.into(),
            model: model.into(),
            memory_mib,
            nodes,
            total,
            free: total,
            largest_free_on_node: largest,
        }
    }

    fn gpu(vendor: GpuVendor, models: &[&str], min_memory_gib: Option<i64>, count: i64) -> GpuRequirements {
        GpuRequirements {
            vendor,
            models: models.iter().map(|m| m.to_string()).collect(),
            min_memory_gib,
            count,
        }
    }

    const NO_RESOURCES: &PodResources = &PodResources { cpu: None, memory: None, ephemeral_storage: None };

    fn need<'a>(gpu: &'a GpuRequirements, budget: &'a Budget, excluded: &'a [String]) -> Need<'a> {
        Need {
            gpu,
            pods: 1,
            budget,
            tier: Tier::Any,
            excluded,
            image: "pictor/render-worker:1",
            resources: NO_RESOURCES,
        }
    }

    fn offer<'a>(member: &'a GpuCluster, pool: &'a GpuPool, price: Option<i64>, free: i64) -> Offer<'a> {
        Offer { member, name: "m", pool, price, free }
    }

    #[test]
    fn only_a_ready_uncordoned_member_is_considered() {
        let (g, b) = (gpu(GpuVendor::Any, &[], None, 1), Budget::default());
        let n = need(&g, &b, &[]);
        assert_eq!(ready(&n, &member("True", false, "community")), Ok(()));
        assert_eq!(ready(&n, &member("Unknown", false, "community")), Err(Refusal::NotReady));
        assert_eq!(not_cordoned(&n, &member("True", true, "community")), Err(Refusal::Cordoned));
    }

    #[test]
    fn an_excluded_member_and_one_of_the_other_tier_are_refused() {
        let (g, b) = (gpu(GpuVendor::Any, &[], None, 1), Budget::default());
        let excluded = ["m".to_string()];
        assert_eq!(
            not_excluded(&need(&g, &b, &excluded), &member("True", false, "community")),
            Err(Refusal::Excluded)
        );
        assert_eq!(not_excluded(&need(&g, &b, &[]), &member("True", false, "community")), Ok(()));
        let mut partner = need(&g, &b, &[]);
        partner.tier = Tier::Partner;
        assert_eq!(in_tier(&partner, &member("True", false, "community")), Err(Refusal::OtherTier));
        assert_eq!(in_tier(&partner, &member("True", false, "partner")), Ok(()));
    }

    #[test]
    fn a_member_is_skipped_for_an_image_or_a_pod_size_its_provider_refuses() {
        let (g, b) = (gpu(GpuVendor::Any, &[], None, 1), Budget::default());
        let mut strict = member("True", false, "community");
        strict.status.as_mut().unwrap().work_policy = Some(WorkPolicy {
            images: vec!["docker.io/pictor/*".into()],
            max_memory: Some("8Gi".into()),
            ..Default::default()
        });
        let mut n = need(&g, &b, &[]);
        assert_eq!(runs_the_image(&n, &strict), Ok(()));
        n.image = "ghcr.io/someone/miner:latest";
        assert_eq!(runs_the_image(&n, &strict), Err(Refusal::ImageNotAllowed));
        assert_eq!(runs_the_image(&n, &member("True", false, "community")), Ok(()), "no policy advertised");
        let big = PodResources { memory: Some("9Gi".into()), ..Default::default() };
        n.resources = &big;
        assert_eq!(within_provider_caps(&n, &strict), Err(Refusal::OverProviderCaps));
        let small = PodResources { memory: Some("8Gi".into()), cpu: Some("64".into()), ..Default::default() };
        n.resources = &small;
        assert_eq!(within_provider_caps(&n, &strict), Ok(()), "no CPU cap");
    }

    #[test]
    fn vendor_model_and_memory_must_all_match() {
        let (m, b) = (member("True", false, "community"), Budget::default());
        let h100 = pool(Vendor::Nvidia, "H100", 81559, 1, 8, 8);
        let fits = |g: &GpuRequirements| gpu_kind(&need(g, &b, &[]), &offer(&m, &h100, Some(1), 8));
        assert_eq!(fits(&gpu(GpuVendor::Only(Vendor::Nvidia), &["H100"], Some(79), 1)), Ok(()));
        assert_eq!(fits(&gpu(GpuVendor::Only(Vendor::Amd), &[], None, 1)), Err(Refusal::NoMatchingGpus));
        assert_eq!(fits(&gpu(GpuVendor::Any, &["A100"], None, 1)), Err(Refusal::NoMatchingGpus));
        assert_eq!(fits(&gpu(GpuVendor::Any, &[], Some(96), 1)), Err(Refusal::NoMatchingGpus));
    }

    #[test]
    fn an_unpriced_model_or_one_over_the_budget_is_refused() {
        let (m, g) = (member("True", false, "community"), gpu(GpuVendor::Any, &[], None, 1));
        let p = pool(Vendor::Nvidia, "H100", 81559, 1, 8, 8);
        let tight = Budget { max_price_per_gpu_hour: Some(50), max_total: None };
        assert_eq!(priced(&need(&g, &tight, &[]), &offer(&m, &p, None, 8)), Err(Refusal::NotPriced));
        assert_eq!(
            within_budget(&need(&g, &tight, &[]), &offer(&m, &p, Some(51), 8)),
            Err(Refusal::TooExpensive)
        );
        assert_eq!(within_budget(&need(&g, &tight, &[]), &offer(&m, &p, Some(50), 8)), Ok(()));
    }

    #[test]
    fn free_gpus_count_claims_and_say_whether_waiting_helps() {
        let (m, b) = (member("True", false, "community"), Budget::default());
        let two_nodes_of_four = pool(Vendor::Nvidia, "H100", 81559, 2, 8, 4);
        let g = gpu(GpuVendor::Any, &[], None, 4);
        let n = need(&g, &b, &[]);
        assert_eq!(free_gpus(&n, &offer(&m, &two_nodes_of_four, Some(1), 8)), Ok(()));
        assert_eq!(
            free_gpus(&n, &offer(&m, &two_nodes_of_four, Some(1), 3)),
            Err(Refusal::NotEnoughFreeGpus),
            "claimed GPUs free up"
        );
        let eight = gpu(GpuVendor::Any, &[], None, 8);
        assert_eq!(
            free_gpus(&need(&eight, &b, &[]), &offer(&m, &two_nodes_of_four, Some(1), 8)),
            Err(Refusal::TooSmall),
            "no node holds 8"
        );
        assert!(Refusal::NotEnoughFreeGpus.is_busy() && !Refusal::TooSmall.is_busy());
    }
}
