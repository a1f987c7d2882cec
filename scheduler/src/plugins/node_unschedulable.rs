//! Filter: cordoned nodes take only pods that tolerate `node.kubernetes.io/unschedulable`.

use crate::framework::{FilterPlugin, Reason};
use crate::plugins::tolerates;
use crate::resources::Resources;
use crate::view::{NodeInfo, PodInfo, Taint};

/// The taint a cordoned node implies.
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Rejects nodes with `spec.unschedulable`.
pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _free: &Resources) -> Result<(), Reason> {
        // Runs for every node on every decision: the implied taint is built (two allocations)
        // only for a cordoned node.
        if !node.unschedulable {
            return Ok(());
        }
        let implied =
            Taint { key: UNSCHEDULABLE_TAINT.into(), value: String::new(), effect: "NoSchedule".into() };
        if tolerates(&pod.tolerations, &implied) { Ok(()) } else { Err(Reason::NodeUnschedulable) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::tests::{node, pod};
    use k8s_openapi::api::core::v1::Toleration;

    #[test]
    fn cordoned_nodes_refuse_pods_unless_tolerated() {
        let cordoned = NodeInfo { unschedulable: true, ..node("n", 8) };
        let free = cordoned.free();
        assert_eq!(NodeUnschedulable.filter(&pod("p", 1), &cordoned, &free), Err(Reason::NodeUnschedulable));
        assert_eq!(NodeUnschedulable.filter(&pod("p", 1), &node("n", 8), &free), Ok(()));
        let tolerant = PodInfo {
            tolerations: vec![Toleration {
                key: Some(UNSCHEDULABLE_TAINT.into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }],
            ..pod("p", 1)
        };
        assert_eq!(NodeUnschedulable.filter(&tolerant, &cordoned, &free), Ok(()));
    }
}
