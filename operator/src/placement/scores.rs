//! Scores: which of the offers that passed every filter wins. Each score is a small function
//! of one offer, higher is better. Unlike kube-scheduler's weighted sum, scores rank in the
//! order listed, each only breaking the ties of those before it: the price is the submitter's
//! interest, and no record or spread of load is worth paying more for. The member's and the
//! model's names break the last ties, so the same inputs always give the same answer.

use super::Offer;
use pictor_crds::v1alpha1::GpuCluster;
use std::cmp::{Ordering, Reverse};

/// Ranks an offer; higher is better.
pub type Score = fn(&Offer<'_>) -> i64;

/// The scores, most important first.
pub const SCORES: &[Score] = &[cheapest, reputation, most_free_gpus];

/// The lower the price per GPU-hour, the better.
pub fn cheapest(offer: &Offer<'_>) -> i64 {
    offer.price.map_or(i64::MIN, |p| -p)
}

/// The member's record, 0 to 1000: the share of its units that succeeded, less 100 per
/// verification mismatch (up to ten); 500 for a member with no record yet.
pub fn reputation(offer: &Offer<'_>) -> i64 {
    reputation_of(offer.member)
}

fn reputation_of(member: &GpuCluster) -> i64 {
    let Some(r) = member.status.as_ref().and_then(|s| s.reputation.as_ref()) else { return 500 };
    let total = r.units_succeeded + r.units_failed + r.verification_mismatches;
    if total == 0 { 500 } else { 1000 * r.units_succeeded / total - 100 * r.verification_mismatches.min(10) }
}

/// The more GPUs the pool has free, the better: load spreads over the members.
pub fn most_free_gpus(offer: &Offer<'_>) -> i64 {
    offer.free
}

/// How `a` compares with `b`: `Less` when `a` is preferred. Scores first, in order, then the
/// member's name and the model.
pub fn preference(a: &Offer<'_>, b: &Offer<'_>) -> Ordering {
    let key = |o: &Offer<'_>| {
        let scores: Vec<Reverse<i64>> = SCORES.iter().map(|score| Reverse(score(o))).collect();
        (scores, o.name.to_string(), o.pool.model.clone())
    };
    key(a).cmp(&key(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pictor_crds::contract::Vendor;
    use pictor_crds::v1alpha1::GpuPool;
    use serde_json::json;

    fn member(reputation: Option<(i64, i64, i64)>) -> GpuCluster {
        let mut m = json!({"apiVersion": "pictor.network/v1alpha1", "kind": "GpuCluster", "metadata": {"name": "m"},
            "spec": {"tier": "community", "payoutAddress": "0x1"}, "status": {}});
        if let Some((ok, failed, mismatched)) = reputation {
            m["status"]["reputation"] =
                json!({"unitsSucceeded": ok, "unitsFailed": failed, "verificationMismatches": mismatched});
        }
        serde_json::from_value(m).unwrap()
    }

    fn pool(model: &str) -> GpuPool {
        GpuPool {
            vendor: Vendor::Nvidia.into(),
            model: model.into(),
            memory_mib: 24564,
            nodes: 1,
            total: 8,
            free: 8,
            largest_free_on_node: 8,
        }
    }

    #[test]
    fn the_cheaper_offer_scores_higher() {
        let (m, p) = (member(None), pool("RTX-4090"));
        let offer = |price| Offer { member: &m, name: "m", pool: &p, price: Some(price), free: 1 };
        assert!(cheapest(&offer(40)) > cheapest(&offer(90)));
    }

    #[test]
    fn reputation_rewards_success_and_punishes_mismatches() {
        let p = pool("RTX-4090");
        let score =
            |m: &GpuCluster| reputation(&Offer { member: m, name: "m", pool: &p, price: Some(1), free: 1 });
        assert_eq!(score(&member(None)), 500, "no record yet");
        assert_eq!(score(&member(Some((0, 0, 0)))), 500);
        assert_eq!(score(&member(Some((9, 1, 0)))), 900);
        assert_eq!(score(&member(Some((8, 1, 1)))), 800 - 100);
    }

    #[test]
    fn more_free_gpus_score_higher() {
        let (m, p) = (member(None), pool("RTX-4090"));
        let offer = |free| Offer { member: &m, name: "m", pool: &p, price: Some(1), free };
        assert!(most_free_gpus(&offer(8)) > most_free_gpus(&offer(2)));
    }

    #[test]
    fn price_outranks_record_which_outranks_free_gpus_and_names_break_ties() {
        let (good, poor) = (member(Some((10, 0, 0))), member(Some((1, 9, 0))));
        let (a, b) = (pool("A"), pool("B"));
        let offer = |member, name, pool, price, free| Offer { member, name, pool, price: Some(price), free };
        let cheap_poor = offer(&poor, "x", &a, 40, 1);
        let dear_good = offer(&good, "y", &a, 90, 8);
        assert_eq!(preference(&cheap_poor, &dear_good), Ordering::Less, "price first");
        let good_few = offer(&good, "x", &a, 40, 1);
        let poor_many = offer(&poor, "y", &a, 40, 8);
        assert_eq!(preference(&good_few, &poor_many), Ordering::Less, "then the record");
        let few = offer(&good, "x", &a, 40, 1);
        let many = offer(&good, "y", &a, 40, 8);
        assert_eq!(preference(&many, &few), Ordering::Less, "then free GPUs");
        let (alpha, beta) = (offer(&good, "alpha", &b, 40, 1), offer(&good, "beta", &a, 40, 1));
        assert_eq!(preference(&alpha, &beta), Ordering::Less, "then the member's name, then the model");
    }
}
