//! Which GPUs to hand a container that asks for several: the ones that talk fastest to each
//! other. A direct NVLink / xGMI link beats a shared PCIe root, which beats a shared NUMA node.
//! Pure: the kubelet's GetPreferredAllocation is a thin call into [`preferred_allocation`].

use crate::inventory::Gpu;
use std::collections::BTreeMap;

/// How close two GPUs are. A link outweighs both of the others together, so a linked pair on
/// two NUMA nodes is preferred to an unlinked pair on one.
fn closeness(a: &Gpu, b: &Gpu) -> u32 {
    let linked = a.peers.contains(&b.id) || b.peers.contains(&a.id);
    let same_root = a.pci_root.is_some() && a.pci_root == b.pci_root;
    let same_numa = a.numa_node.is_some() && a.numa_node == b.numa_node;
    4 * u32::from(linked) + 2 * u32::from(same_root) + u32::from(same_numa)
}

/// `size` device IDs out of `available`, all of `must_include` among them, chosen so the group
/// is as close as possible. IDs the inventory does not know count as close to nothing. Ties go
/// to the lower ID, so the answer is the same every time it is asked.
pub fn preferred_allocation(
    gpus: &[Gpu],
    available: &[String],
    must_include: &[String],
    size: usize,
) -> Vec<String> {
    let by_id: BTreeMap<&str, &Gpu> = gpus.iter().map(|g| (g.id.as_str(), g)).collect();
    let score = |a: &str, b: &str| match (by_id.get(a), by_id.get(b)) {
        (Some(a), Some(b)) => closeness(a, b),
        _ => 0,
    };
    let mut must: Vec<&str> = Vec::new();
    for id in must_include {
        if !must.contains(&id.as_str()) {
            must.push(id);
        }
    }
    let mut candidates: Vec<&str> =
        available.iter().map(String::as_str).filter(|id| !must.contains(id)).collect();
    candidates.sort_unstable();
    candidates.dedup();

    // Adds, one at a time, the candidate closest to those already chosen.
    let grow = |mut chosen: Vec<String>| {
        let mut left: Vec<&str> =
            candidates.iter().copied().filter(|c| !chosen.iter().any(|k| k == c)).collect();
        while chosen.len() < size && !left.is_empty() {
            let (best, _) = left
                .iter()
                .enumerate()
                .map(|(i, c)| (i, chosen.iter().map(|k| score(c, k)).sum::<u32>()))
                .fold((0, None), |(bi, bs), (i, s)| match bs {
                    Some(b) if b >= s => (bi, Some(b)),
                    _ => (i, Some(s)),
                });
            chosen.push(left.remove(best).to_string());
        }
        chosen
    };
    let total = |set: &[String]| -> u32 {
        set.iter()
            .enumerate()
            .flat_map(|(i, a)| set[i + 1..].iter().map(move |b| (a, b)))
            .map(|(a, b)| score(a, b))
            .sum()
    };

    let chosen = if !must.is_empty() || size == 0 {
        grow(must.iter().map(|m| m.to_string()).collect())
    } else {
        // No anchor: try every GPU as the seed and keep the closest group.
        let mut best: Option<(u32, Vec<String>)> = None;
        for seed in &candidates {
            let group = grow(vec![seed.to_string()]);
            let s = total(&group);
            if best.as_ref().is_none_or(|(b, _)| s > *b) {
                best = Some((s, group));
            }
        }
        best.map(|(_, g)| g).unwrap_or_default()
    };
    let mut ids = chosen;
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeBackend;
    use crate::inventory::Health;

    fn ids(gpus: &[Gpu], idx: &[usize]) -> Vec<String> {
        let mut v: Vec<String> = idx.iter().map(|&i| gpus[i].id.clone()).collect();
        v.sort();
        v
    }

    fn all(gpus: &[Gpu]) -> Vec<String> {
        gpus.iter().map(|g| g.id.clone()).collect()
    }

    /// A GPU with only the topology that matters here.
    fn gpu(id: &str, numa: i64, root: &str, peers: &[&str]) -> Gpu {
        Gpu {
            id: id.into(),
            name: "GPU".into(),
            memory_mib: 1,
            pci_bus_id: String::new(),
            pci_root: Some(root.into()),
            numa_node: Some(numa),
            peers: peers.iter().map(|p| p.to_string()).collect(),
            device_nodes: vec![],
            compute: String::new(),
            health: Health::Healthy,
            mig_enabled: false,
            mig_devices: vec![],
        }
    }

    #[test]
    fn four_of_eight_is_one_linked_half() {
        let gpus = FakeBackend::preset("h100", 8).unwrap().gpus;
        let got = preferred_allocation(&gpus, &all(&gpus), &[], 4);
        assert_eq!(got, ids(&gpus, &[0, 1, 2, 3]));
    }

    #[test]
    fn must_include_pulls_in_its_own_half() {
        let gpus = FakeBackend::preset("mi300x", 8).unwrap().gpus;
        let got = preferred_allocation(&gpus, &all(&gpus), &[gpus[5].id.clone()], 2);
        assert_eq!(got.len(), 2);
        assert!(got.contains(&gpus[5].id));
        let other = got.iter().find(|id| **id != gpus[5].id).unwrap();
        let index = gpus.iter().position(|g| &g.id == other).unwrap();
        assert!((4..8).contains(&index), "picked GPU {index}, not a peer of GPU 5");
    }

    #[test]
    fn a_half_that_is_partly_taken_loses_to_a_whole_one() {
        let gpus = FakeBackend::preset("h100", 8).unwrap().gpus;
        let available = ids(&gpus, &[0, 1, 4, 5, 6, 7]);
        assert_eq!(preferred_allocation(&gpus, &available, &[], 4), ids(&gpus, &[4, 5, 6, 7]));
    }

    #[test]
    fn without_links_the_same_numa_node_wins() {
        let gpus = vec![gpu("a", 0, "r0", &[]), gpu("b", 1, "r1", &[]), gpu("c", 0, "r2", &[])];
        assert_eq!(preferred_allocation(&gpus, &all(&gpus), &["a".into()], 2), ["a", "c"]);
    }

    #[test]
    fn a_link_beats_a_shared_root_and_numa_node() {
        let gpus = vec![gpu("a", 0, "r0", &["c"]), gpu("b", 0, "r0", &[]), gpu("c", 1, "r1", &["a"])];
        assert_eq!(preferred_allocation(&gpus, &all(&gpus), &["a".into()], 2), ["a", "c"]);
    }

    #[test]
    fn asking_for_more_than_is_available_gives_all_of_it() {
        let gpus = FakeBackend::preset("h100", 2).unwrap().gpus;
        assert_eq!(preferred_allocation(&gpus, &all(&gpus), &[], 5), ids(&gpus, &[0, 1]));
        assert!(preferred_allocation(&gpus, &all(&gpus), &[], 0).is_empty());
    }

    #[test]
    fn unknown_ids_are_still_handed_out_last() {
        let gpus = vec![gpu("a", 0, "r0", &["b"]), gpu("b", 0, "r0", &["a"])];
        let available = vec!["a".to_string(), "b".to_string(), "zz".to_string()];
        assert_eq!(preferred_allocation(&gpus, &available, &["zz".into()], 2).len(), 2);
        assert_eq!(preferred_allocation(&gpus, &available, &[], 2), ["a", "b"]);
    }
}
