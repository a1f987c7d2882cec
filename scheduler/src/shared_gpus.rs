//! The memory of a time-sliced node's GPUs, GPU by GPU. Time-slicing shares a GPU's compute but
//! not its memory: pods on one GPU must fit in it together. A node labelled
//! `pictor.network/gpu.sharing` has `pictor.network/gpu.count` GPUs of
//! `pictor.network/gpu.memory-mib` each; a pod asking `pictor.network/gpu-memory-mib` takes that
//! much of one GPU (best fit: the fullest GPU it still fits on, so untouched GPUs stay whole),
//! and a pod asking whole GPUs there takes GPUs nobody uses, all of their memory. Pure.

use crate::view::PodInfo;
use pictor_crds::contract::node_labels;
use std::collections::BTreeMap;

/// What a pod takes of a shared node's GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedClaim {
    /// This many MiB of one GPU (and one replica).
    Memory(i64),
    /// This many GPUs, wholly.
    Whole(i64),
}

impl SharedClaim {
    /// What `pod` takes on a shared node; `None` for a pod without GPUs.
    pub fn of(pod: &PodInfo) -> Option<Self> {
        match (pod.gpu_memory_mib, pod.requests.total_gpus()) {
            (Some(mib), _) => Some(SharedClaim::Memory(mib)),
            (None, 0) => None,
            (None, gpus) => Some(SharedClaim::Whole(gpus)),
        }
    }
}

/// Where a claim landed: MiB per GPU index.
pub type Placement = Vec<(usize, i64)>;

/// A shared node's GPUs and the memory used on each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedGpus {
    /// Memory of each GPU, MiB.
    pub memory_mib: i64,
    /// Memory used on each GPU, MiB, by index.
    pub used_mib: Vec<i64>,
}

impl SharedGpus {
    /// The shared GPUs of a node with these labels, or `None` when its GPUs are not shared
    /// (or the labels do not say how many and how big).
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Option<Self> {
        labels.get(node_labels::SHARING)?;
        let number = |key: &str| labels.get(key).and_then(|v| v.parse::<i64>().ok()).filter(|n| *n > 0);
        let count = usize::try_from(number(node_labels::COUNT)?).ok()?;
        Some(SharedGpus { memory_mib: number(node_labels::MEMORY_MIB)?, used_mib: vec![0; count] })
    }

    /// The same GPUs (count and size), usage aside.
    pub fn same_shape(&self, other: &Self) -> bool {
        self.memory_mib == other.memory_mib && self.used_mib.len() == other.used_mib.len()
    }

    fn free(&self, gpu: usize) -> i64 {
        self.memory_mib - self.used_mib[gpu]
    }

    /// The fullest GPU that still has `mib` free (the lowest index among equals).
    pub fn best_fit(&self, mib: i64) -> Option<usize> {
        (0..self.used_mib.len()).filter(|&g| self.free(g) >= mib).min_by_key(|&g| (self.free(g), g))
    }

    /// GPUs nobody uses.
    pub fn untouched(&self) -> usize {
        self.used_mib.iter().filter(|u| **u == 0).count()
    }

    /// Whether the claim fits now.
    pub fn fits(&self, claim: SharedClaim) -> bool {
        match claim {
            SharedClaim::Memory(mib) => self.best_fit(mib).is_some(),
            SharedClaim::Whole(gpus) => i64::try_from(self.untouched()).is_ok_and(|n| n >= gpus),
        }
    }

    /// How full the GPU a memory claim would land on is afterwards, 0..=100; `None` when it
    /// does not fit or is no memory claim.
    pub fn fullness_after(&self, claim: SharedClaim) -> Option<i64> {
        let SharedClaim::Memory(mib) = claim else { return None };
        let gpu = self.best_fit(mib)?;
        Some((self.used_mib[gpu] + mib) * 100 / self.memory_mib.max(1))
    }

    /// Counts the claim and says where. A claim that does not fit (a pod bound by someone else,
    /// or before a restart) is still counted — on the emptiest GPUs — so the memory it really
    /// uses is never handed out again.
    pub fn take(&mut self, claim: SharedClaim) -> Placement {
        let placement: Placement = match claim {
            SharedClaim::Memory(mib) => {
                let gpu = self.best_fit(mib).or_else(|| self.emptiest(1).first().copied());
                gpu.map(|g| vec![(g, mib)]).unwrap_or_default()
            }
            SharedClaim::Whole(gpus) => {
                let n = usize::try_from(gpus).unwrap_or(0);
                self.emptiest(n).into_iter().map(|g| (g, self.memory_mib)).collect()
            }
        };
        for (gpu, mib) in &placement {
            self.used_mib[*gpu] += mib;
        }
        placement
    }

    /// Undoes [`SharedGpus::take`].
    pub fn give_back(&mut self, placement: &Placement) {
        for (gpu, mib) in placement {
            if let Some(used) = self.used_mib.get_mut(*gpu) {
                *used -= mib;
            }
        }
    }

    /// The `n` least used GPUs, emptiest first.
    fn emptiest(&self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.used_mib.len()).collect();
        order.sort_by_key(|&g| (self.used_mib[g], g));
        order.truncate(n);
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpus(count: usize, memory_mib: i64) -> SharedGpus {
        SharedGpus { memory_mib, used_mib: vec![0; count] }
    }

    #[test]
    fn only_a_labelled_shared_node_has_shared_gpus() {
        let mut labels: BTreeMap<String, String> = [
            (node_labels::COUNT.to_string(), "2".to_string()),
            (node_labels::MEMORY_MIB.to_string(), "81559".to_string()),
        ]
        .into();
        assert_eq!(SharedGpus::from_labels(&labels), None, "not shared");
        labels.insert(node_labels::SHARING.into(), "time-slicing".into());
        assert_eq!(SharedGpus::from_labels(&labels), Some(gpus(2, 81_559)));
        labels.insert(node_labels::COUNT.into(), "two".into());
        assert_eq!(SharedGpus::from_labels(&labels), None, "a count that is no number");
    }

    #[test]
    fn memory_claims_fill_the_fullest_gpu_that_fits_first() {
        let mut node = gpus(2, 80_000);
        assert_eq!(node.take(SharedClaim::Memory(30_000)), [(0, 30_000)]);
        assert_eq!(node.take(SharedClaim::Memory(40_000)), [(0, 40_000)], "GPU 0 still fits it");
        assert_eq!(node.take(SharedClaim::Memory(20_000)), [(1, 20_000)], "GPU 0 has only 10,000 left");
        assert_eq!(node.take(SharedClaim::Memory(10_000)), [(0, 10_000)], "exactly fills GPU 0");
        assert_eq!(node.used_mib, [80_000, 20_000]);
        assert!(!node.fits(SharedClaim::Memory(60_001)));
        assert!(node.fits(SharedClaim::Memory(60_000)));
    }

    #[test]
    fn two_pods_share_a_gpu_and_a_third_that_would_overflow_it_does_not_fit() {
        let mut node = gpus(1, 24_564);
        for _ in 0..2 {
            assert!(node.fits(SharedClaim::Memory(12_000)));
            node.take(SharedClaim::Memory(12_000));
        }
        assert!(!node.fits(SharedClaim::Memory(12_000)));
        assert!(node.fits(SharedClaim::Memory(564)));
    }

    #[test]
    fn whole_claims_take_untouched_gpus_and_memory_claims_leave_them_be() {
        let mut node = gpus(3, 80_000);
        node.take(SharedClaim::Memory(1_000));
        assert_eq!(node.untouched(), 2);
        assert!(node.fits(SharedClaim::Whole(2)) && !node.fits(SharedClaim::Whole(3)));
        let whole = node.take(SharedClaim::Whole(2));
        assert_eq!(whole, [(1, 80_000), (2, 80_000)]);
        assert!(!node.fits(SharedClaim::Memory(80_000)), "no GPU has all its memory left");
        node.give_back(&whole);
        assert_eq!(node.used_mib, [1_000, 0, 0]);
    }

    #[test]
    fn a_claim_that_cannot_fit_is_still_counted_on_the_emptiest_gpu() {
        let mut node = gpus(2, 10_000);
        node.take(SharedClaim::Memory(9_000));
        assert_eq!(node.take(SharedClaim::Memory(12_000)), [(1, 12_000)]);
        assert_eq!(node.used_mib, [9_000, 12_000]);
    }

    #[test]
    fn fullness_after_prefers_the_fuller_node() {
        let mut busy = gpus(1, 80_000);
        busy.take(SharedClaim::Memory(40_000));
        let idle = gpus(1, 80_000);
        let claim = SharedClaim::Memory(20_000);
        assert!(busy.fullness_after(claim) > idle.fullness_after(claim));
        assert_eq!(busy.fullness_after(claim), Some(75));
        assert_eq!(busy.fullness_after(SharedClaim::Memory(50_000)), None);
        assert_eq!(idle.fullness_after(SharedClaim::Whole(1)), None);
    }
}
