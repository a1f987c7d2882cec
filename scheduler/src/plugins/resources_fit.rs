//! Filter: cpu, memory, `nvidia.com/gpu`, `amd.com/gpu` and pod slots against what is left.

use crate::framework::{FilterPlugin, Reason};
use crate::resources::Resources;
use crate::view::{NodeInfo, PodInfo};

/// Rejects nodes without room for the pod's requests.
pub struct ResourcesFit;

impl FilterPlugin for ResourcesFit {
    fn name(&self) -> &'static str {
        "ResourcesFit"
    }

    fn filter(&self, pod: &PodInfo, _node: &NodeInfo, free: &Resources) -> Result<(), Reason> {
        match pod.requests.first_shortfall(free) {
            Some(resource) => Err(Reason::Insufficient(resource)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{GpuCounts, ResourceName};
    use crate::view::tests::{node, pod};
    use pictor_crds::contract::Vendor;

    #[test]
    fn a_pod_fits_only_where_every_request_fits() {
        let mut n = node("n", 8);
        n.used.gpus[Vendor::Nvidia] = 7;
        assert_eq!(ResourcesFit.filter(&pod("one", 1), &n, &n.free()), Ok(()));
        assert_eq!(
            ResourcesFit.filter(&pod("two", 2), &n, &n.free()),
            Err(Reason::Insufficient(ResourceName::Gpu(Vendor::Nvidia)))
        );
        let amd = PodInfo {
            requests: Resources { gpus: GpuCounts::only(Vendor::Amd, 1), pods: 1, ..Default::default() },
            ..pod("amd", 0)
        };
        assert_eq!(
            ResourcesFit.filter(&amd, &n, &n.free()),
            Err(Reason::Insufficient(ResourceName::Gpu(Vendor::Amd)))
        );
        n.used.pods = 110;
        assert_eq!(
            ResourcesFit.filter(&pod("full", 0), &n, &n.free()),
            Err(Reason::Insufficient(ResourceName::Pods))
        );
    }
}
