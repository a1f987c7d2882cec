//! Placement: which member runs a piece of work, at which price. A pure function over the
//! members' advertised inventories and the job's needs; the controllers call it and apply the
//! answer.
//!
//! Order of preference among the members that fit: the lowest price (the submitter's interest),
//! then the better record, then the most free GPUs (spreading load), then the name (so the same
//! inputs always give the same answer).

use pictor_crds::contract::format_apt;
use pictor_crds::v1alpha1::{Budget, GpuCluster, GpuRequirements, GpuVendor, Tier};
use std::collections::HashMap;

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

fn reputation_score(cluster: &GpuCluster) -> i64 {
    let Some(r) = cluster.status.as_ref().and_then(|s| s.reputation.as_ref()) else { return 500 };
    let total = r.units_succeeded + r.units_failed + r.verification_mismatches;
    if total == 0 { 500 } else { 1000 * r.units_succeeded / total - 100 * r.verification_mismatches.min(10) }
}

fn is_ready(cluster: &GpuCluster) -> bool {
    cluster
        .status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
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
    let mut best: Option<(Placement, (i64, i64, i64))> = None;
    let mut refusals: HashMap<&'static str, usize> = HashMap::new();
    for cluster in members {
        let name = cluster.metadata.name.clone().unwrap_or_default();
        let spec = &cluster.spec;
        let reject = if !is_ready(cluster) {
            Some("not Ready")
        } else if spec.cordoned {
            Some("cordoned")
        } else if need.excluded.contains(&name) {
            Some("excluded for this job")
        } else if need.tier != Tier::Any && need.tier != spec.tier {
            Some("other tier")
        } else {
            None
        };
        if let Some(why) = reject {
            *refusals.entry(why).or_default() += 1;
            continue;
        }
        let pools = cluster
            .status
            .as_ref()
            .and_then(|s| s.inventory.as_ref())
            .map(|i| i.pools.as_slice())
            .unwrap_or(&[]);
        let mut fitted = false;
        let mut why = "no matching GPUs";
        for pool in pools {
            let vendor_ok = need.gpu.vendor == GpuVendor::Any || need.gpu.vendor == pool.vendor;
            let model_ok = need.gpu.models.is_empty() || need.gpu.models.contains(&pool.model);
            let memory_ok = need.gpu.min_memory_gib.is_none_or(|gib| pool.memory_mib >= gib * 1024);
            if !(vendor_ok && model_ok && memory_ok) {
                continue;
            }
            let Some(price) =
                spec.price_per_gpu_hour.get(&pool.model).copied().or(spec.default_price_per_gpu_hour)
            else {
                why = "model not priced";
                continue;
            };
            if need.budget.max_price_per_gpu_hour.is_some_and(|max| price > max) {
                why = "too expensive";
                continue;
            }
            let claimed = claims.get(&(name.clone(), pool.model.clone())).copied().unwrap_or(0);
            let free = pool.free - claimed;
            if free < need.gpu.count * need.pods || pool.largest_free_on_node < need.gpu.count {
                // Busy if the member holds it once its GPUs are free again; else it never will.
                let gpu_nodes_hold_a_pod = pool.total / pool.nodes.max(1) >= need.gpu.count;
                why = if pool.total >= need.gpu.count * need.pods && gpu_nodes_hold_a_pod {
                    "not enough free GPUs"
                } else {
                    "too small"
                };
                continue;
            }
            fitted = true;
            let rank = (price, -reputation_score(cluster), -free);
            let candidate = Placement {
                member: name.clone(),
                vendor: pool.vendor,
                model: pool.model.clone(),
                price_per_gpu_hour: price,
            };
            let better = match &best {
                None => true,
                Some((b, r)) => (rank, &candidate.member, &candidate.model) < (*r, &b.member, &b.model),
            };
            if better {
                best = Some((candidate, rank));
            }
        }
        if !fitted {
            *refusals.entry(why).or_default() += 1;
        }
    }
    best.map(|(p, _)| p).ok_or_else(|| {
        let mut reasons: Vec<String> = refusals.iter().map(|(why, n)| format!("{n} {why}")).collect();
        reasons.sort();
        let detail =
            if members.is_empty() { "no members have joined".to_string() } else { reasons.join(", ") };
        let busy = refusals.contains_key("not enough free GPUs");
        NoMemberFits { message: format!("{} ({} members: {detail})", describe(need), members.len()), busy }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(
        name: &str,
        tier: &str,
        ready: bool,
        pools: serde_json::Value,
        prices: serde_json::Value,
    ) -> GpuCluster {
        serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "GpuCluster", "metadata": {"name": name},
            "spec": {"tier": tier, "payoutAddress": "0x1", "pricePerGpuHour": prices},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}, "reason": "r", "message": "m",
                                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                       "inventory": {"nodes": 1, "totalGpus": 8, "freeGpus": 8, "pools": pools}}
        }))
        .unwrap()
    }

    fn pool(vendor: &str, model: &str, memory_mib: i64, free: i64, largest: i64) -> serde_json::Value {
        json!({"vendor": vendor, "model": model, "memoryMib": memory_mib, "nodes": 1, "total": free, "free": free, "largestFreeOnNode": largest})
    }

    fn gpu(vendor: GpuVendor, count: i64, min_gib: Option<i64>) -> GpuRequirements {
        GpuRequirements { vendor, models: vec![], min_memory_gib: min_gib, count }
    }

    fn fleet() -> Vec<GpuCluster> {
        vec![
            member(
                "cheap-nv",
                "community",
                true,
                json!([pool("nvidia", "RTX-4090", 24564, 3, 1)]),
                json!({"RTX-4090": 40}),
            ),
            member(
                "farm-nv",
                "partner",
                true,
                json!([pool("nvidia", "H100", 81559, 32, 8)]),
                json!({"H100": 90}),
            ),
            member(
                "amd",
                "community",
                true,
                json!([pool("amd", "MI300X", 196592, 8, 8)]),
                json!({"MI300X": 70}),
            ),
            member(
                "down",
                "community",
                false,
                json!([pool("nvidia", "RTX-4090", 24564, 8, 8)]),
                json!({"RTX-4090": 1}),
            ),
        ]
    }

    fn need<'a>(gpu: &'a GpuRequirements, pods: i64, budget: &'a Budget, excluded: &'a [String]) -> Need<'a> {
        Need { gpu, pods, budget, tier: Tier::Any, excluded }
    }

    #[test]
    fn the_cheapest_ready_member_that_fits_wins() {
        let fleet = fleet();
        let members: Vec<_> = fleet.iter().collect();
        let g = gpu(GpuVendor::Any, 1, None);
        let p = place(&need(&g, 1, &Budget::default(), &[]), &members, &Claims::new()).unwrap();
        assert_eq!(
            (p.member.as_str(), p.price_per_gpu_hour),
            ("cheap-nv", 40),
            "the NotReady member is never chosen"
        );
    }

    #[test]
    fn vendor_memory_and_claims_narrow_the_choice() {
        let fleet = fleet();
        let members: Vec<_> = fleet.iter().collect();
        let amd = gpu(GpuVendor::Only(pictor_crds::contract::Vendor::Amd), 1, None);
        assert_eq!(
            place(&need(&amd, 1, &Budget::default(), &[]), &members, &Claims::new()).unwrap().member,
            "amd"
        );
        let big = gpu(GpuVendor::Any, 1, Some(64));
        assert_eq!(
            place(&need(&big, 1, &Budget::default(), &[]), &members, &Claims::new()).unwrap().member,
            "amd"
        );
        let claims = Claims::from([(("cheap-nv".to_string(), "RTX-4090".to_string()), 3)]);
        let any = gpu(GpuVendor::Any, 1, None);
        assert_eq!(
            place(&need(&any, 1, &Budget::default(), &[]), &members, &claims).unwrap().member,
            "amd",
            "the 4090s are all promised"
        );
    }

    #[test]
    fn a_gang_lands_whole_in_one_member_that_holds_it() {
        let fleet = fleet();
        let members: Vec<_> = fleet.iter().collect();
        let eight = gpu(GpuVendor::Any, 8, None);
        let p = place(&need(&eight, 4, &Budget::default(), &[]), &members, &Claims::new()).unwrap();
        assert_eq!(p.member, "farm-nv", "only the farm has 4 × 8 free GPUs");
        let err = place(&need(&eight, 5, &Budget::default(), &[]), &members, &Claims::new()).unwrap_err();
        assert!(err.message.contains("5 pods × 8 GPUs in one member"), "{err}");
        assert!(!err.busy, "no member will ever hold it");
    }

    #[test]
    fn budget_tier_and_exclusions_are_respected_and_explained() {
        let fleet = fleet();
        let members: Vec<_> = fleet.iter().collect();
        let amd = gpu(GpuVendor::Only(pictor_crds::contract::Vendor::Amd), 1, Some(64));
        let tight = Budget { max_price_per_gpu_hour: Some(50), max_total: None };
        let err = place(&need(&amd, 1, &tight, &[]), &members, &Claims::new()).unwrap_err();
        assert!(
            err.message
                .starts_with("no Ready member offers amd GPUs with ≥ 64 GiB under 0.0000005 APT/GPU-hour"),
            "{err}"
        );
        assert!(err.message.contains("too expensive") && err.message.contains("1 not Ready"), "{err}");

        let any = gpu(GpuVendor::Any, 1, None);
        let excluded = vec!["cheap-nv".to_string()];
        assert_eq!(
            place(&need(&any, 1, &Budget::default(), &excluded), &members, &Claims::new()).unwrap().member,
            "amd"
        );
        let open = Budget::default();
        let mut partner_only = need(&any, 1, &open, &[]);
        partner_only.tier = Tier::Partner;
        assert_eq!(place(&partner_only, &members, &Claims::new()).unwrap().member, "farm-nv");
    }
}
