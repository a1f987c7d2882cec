//! Filter: a pod asking `pictor.network/gpu-memory-mib` fits only on a node whose GPUs are
//! shared and where one of them has that much memory free; a pod asking whole GPUs on a shared
//! node needs that many GPUs nobody uses. The replica itself is `nvidia.com/gpu`, which
//! [`super::ResourcesFit`] counts.

use crate::framework::{FilterPlugin, Reason};
use crate::resources::Resources;
use crate::shared_gpus::SharedClaim;
use crate::view::{NodeInfo, PodInfo};

/// Keeps pods on shared GPUs within those GPUs' memory.
pub struct SharedGpuFit;

impl FilterPlugin for SharedGpuFit {
    fn name(&self) -> &'static str {
        "SharedGpuFit"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _free: &Resources) -> Result<(), Reason> {
        let Some(claim) = SharedClaim::of(pod) else { return Ok(()) };
        match (&node.shared, claim) {
            (None, SharedClaim::Memory(_)) => Err(Reason::GpuNotShared),
            (None, SharedClaim::Whole(_)) => Ok(()),
            (Some(shared), claim) if shared.fits(claim) => Ok(()),
            (Some(_), SharedClaim::Memory(_)) => Err(Reason::SharedGpuMemory),
            (Some(_), SharedClaim::Whole(_)) => Err(Reason::NoWholeGpu),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::shared_gpus::SharedGpus;
    use crate::view::tests::{node, pod};

    pub(crate) fn shared_node(name: &str, gpus: usize, memory_mib: i64) -> NodeInfo {
        NodeInfo {
            shared: Some(SharedGpus { memory_mib, used_mib: vec![0; gpus] }),
            ..node(name, gpus as i64 * 4)
        }
    }

    fn fractional(name: &str, mib: i64) -> PodInfo {
        PodInfo { gpu_memory_mib: Some(mib), ..pod(name, 1) }
    }

    #[test]
    fn fractional_pods_need_a_shared_gpu_with_the_memory_free() {
        let check = |p: &PodInfo, n: &NodeInfo| SharedGpuFit.filter(p, n, &n.free());
        let whole_node = node("whole", 8);
        assert_eq!(check(&fractional("f", 1_000), &whole_node), Err(Reason::GpuNotShared));
        assert_eq!(check(&pod("w", 1), &whole_node), Ok(()));
        assert_eq!(check(&pod("cpu", 0), &whole_node), Ok(()));

        let mut shared = shared_node("shared", 1, 24_000);
        assert_eq!(check(&fractional("f", 24_000), &shared), Ok(()));
        assert_eq!(check(&fractional("f", 24_001), &shared), Err(Reason::SharedGpuMemory));
        shared.shared.as_mut().unwrap().used_mib[0] = 1;
        assert_eq!(check(&pod("w", 1), &shared), Err(Reason::NoWholeGpu));
    }
}
