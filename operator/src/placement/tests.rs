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
        member("amd", "community", true, json!([pool("amd", "MI300X", 196592, 8, 8)]), json!({"MI300X": 70})),
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
    const NO_RESOURCES: &PodResources = &PodResources { cpu: None, memory: None, ephemeral_storage: None };
    Need {
        gpu,
        pods,
        budget,
        tier: Tier::Any,
        excluded,
        image: "pictor/render-worker:1",
        resources: NO_RESOURCES,
    }
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
        err.message.starts_with("no Ready member offers amd GPUs with ≥ 64 GiB under 0.0000005 APT/GPU-hour"),
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

#[test]
fn the_refusal_counts_each_members_reason() {
    let fleet = fleet();
    let members: Vec<_> = fleet.iter().collect();
    let amd = gpu(GpuVendor::Only(pictor_crds::contract::Vendor::Amd), 1, Some(64));
    let tight = Budget { max_price_per_gpu_hour: Some(50), max_total: None };
    let err = place(&need(&amd, 1, &tight, &[]), &members, &Claims::new()).unwrap_err();
    assert!(err.message.ends_with("(4 members: 1 not Ready, 1 too expensive, 2 no matching GPUs)"), "{err}");
    let claims = Claims::from([(("amd".to_string(), "MI300X".to_string()), 8)]);
    let err = place(&need(&amd, 1, &Budget::default(), &[]), &members, &claims).unwrap_err();
    assert!(err.busy && err.message.contains("1 not enough free GPUs"), "{err}");
}
