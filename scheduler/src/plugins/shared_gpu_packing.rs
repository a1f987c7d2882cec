//! Score: a fractional pod goes to the node whose best-fitting shared GPU ends up fullest, so
//! it joins GPUs already in use and GPUs nobody uses stay whole for whole-GPU work.

use crate::framework::{ScoreContext, ScorePlugin};
use crate::resources::Resources;
use crate::shared_gpus::SharedClaim;
use crate::view::{NodeInfo, PodInfo};

/// Prefers the node where the pod fills a shared GPU the most.
pub struct SharedGpuPacking;

impl ScorePlugin for SharedGpuPacking {
    fn name(&self) -> &'static str {
        "SharedGpuPacking"
    }

    fn weight(&self) -> i64 {
        10
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, _free: &Resources, _cx: &ScoreContext<'_>) -> i64 {
        match (&node.shared, SharedClaim::of(pod)) {
            (Some(shared), Some(claim)) => shared.fullness_after(claim).unwrap_or(0),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::shared_gpu_fit::tests::shared_node;
    use crate::view::tests::pod;

    #[test]
    fn a_partly_used_shared_gpu_beats_an_untouched_one() {
        let p = PodInfo { gpu_memory_mib: Some(20_000), ..pod("f", 1) };
        let idle = shared_node("idle", 2, 80_000);
        let mut busy = shared_node("busy", 2, 80_000);
        busy.shared.as_mut().unwrap().used_mib[1] = 40_000;
        let score = |n: &NodeInfo| SharedGpuPacking.score(&p, n, &n.free(), &ScoreContext::default());
        assert!(score(&busy) > score(&idle), "{} vs {}", score(&busy), score(&idle));
        assert_eq!(score(&busy), 75);
        assert_eq!(
            SharedGpuPacking.score(&pod("whole", 1), &busy, &busy.free(), &ScoreContext::default()),
            0
        );
    }
}
