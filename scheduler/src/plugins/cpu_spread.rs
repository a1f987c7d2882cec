//! Score: plain CPU pods spread to the least allocated node (as kube-scheduler's
//! LeastAllocated does), which keeps any one node from filling with them.

use crate::framework::{ScoreContext, ScorePlugin};
use crate::resources::Resources;
use crate::view::{NodeInfo, PodInfo};

/// Prefers the node with the largest share of CPU and memory left, for pods without GPUs.
pub struct CpuSpread;

fn share_left(free: i64, want: i64, total: i64) -> i64 {
    if total <= 0 { 0 } else { ((free - want).max(0) * 100) / total }
}

impl ScorePlugin for CpuSpread {
    fn name(&self) -> &'static str {
        "CpuSpread"
    }

    fn weight(&self) -> i64 {
        1
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, free: &Resources, _cx: &ScoreContext<'_>) -> i64 {
        if pod.requests.total_gpus() > 0 {
            return 0;
        }
        let a = &node.allocatable;
        let cpu = share_left(free.cpu_milli, pod.requests.cpu_milli, a.cpu_milli);
        let memory = share_left(free.memory, pod.requests.memory, a.memory);
        (cpu + memory) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::tests::{node, pod};

    #[test]
    fn cpu_pods_prefer_the_emptier_node_and_gpu_pods_are_left_to_bin_packing() {
        let idle = node("idle", 8);
        let mut busy = node("busy", 8);
        busy.used.cpu_milli = 32_000;
        let cx = ScoreContext::default();
        let p = pod("cpu", 0);
        assert!(
            CpuSpread.score(&p, &idle, &idle.free(), &cx) > CpuSpread.score(&p, &busy, &busy.free(), &cx)
        );
        assert_eq!(CpuSpread.score(&pod("gpu", 1), &idle, &idle.free(), &cx), 0);
    }
}
