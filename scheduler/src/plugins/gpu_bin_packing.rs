//! Score: GPU pods go where GPUs are already in use (and to the smallest node that fits), so
//! whole 8-GPU nodes stay free for training gangs.

use crate::framework::{ScoreContext, ScorePlugin};
use crate::resources::Resources;
use crate::view::{NodeInfo, PodInfo};

/// Prefers the node that is fullest in GPUs after the pod lands.
pub struct GpuBinPacking;

impl ScorePlugin for GpuBinPacking {
    fn name(&self) -> &'static str {
        "GpuBinPacking"
    }

    fn weight(&self) -> i64 {
        10
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, free: &Resources, _cx: &ScoreContext<'_>) -> i64 {
        let want = pod.requests.total_gpus();
        let total = node.allocatable.total_gpus();
        if want == 0 || total == 0 {
            return 0;
        }
        let used_after = total - free.total_gpus() + want;
        used_after * 100 / total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::tests::{node, pod};
    use pictor_crds::contract::Vendor;

    fn score(p: &PodInfo, n: &NodeInfo) -> i64 {
        GpuBinPacking.score(p, n, &n.free(), &ScoreContext::default())
    }

    #[test]
    fn partly_used_and_small_nodes_beat_empty_big_ones() {
        let empty8 = node("empty8", 8);
        let mut half8 = node("half8", 8);
        half8.used.gpus[Vendor::Nvidia] = 4;
        let single = node("single", 1);
        let p = pod("p", 1);
        assert!(score(&p, &half8) > score(&p, &empty8));
        assert_eq!(score(&p, &single), 100);
        assert_eq!(score(&pod("cpu", 0), &half8), 0);
    }
}
