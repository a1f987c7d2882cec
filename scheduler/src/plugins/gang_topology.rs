//! Score: the members of one gang go to nodes already chosen for the gang, so its GPUs sit on
//! as few nodes as possible (NVLink / xGMI inside a node beats the network between nodes).

use crate::framework::{ScoreContext, ScorePlugin};
use crate::resources::Resources;
use crate::view::{NodeInfo, PodInfo};

/// Prefers nodes that already hold a member of the same gang.
pub struct GangTopology;

impl ScorePlugin for GangTopology {
    fn name(&self) -> &'static str {
        "GangTopology"
    }

    fn weight(&self) -> i64 {
        20
    }

    fn score(&self, pod: &PodInfo, _node: &NodeInfo, _free: &Resources, cx: &ScoreContext<'_>) -> i64 {
        if pod.gang.is_some() && cx.gang_nodes.contains(&cx.node_position) { 100 } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::GangRef;
    use crate::view::tests::{node, pod};

    #[test]
    fn gang_members_prefer_nodes_their_gang_already_uses() {
        let n = node("n", 8);
        let member = PodInfo { gang: Some(GangRef { key: "default/g".into(), size: 2 }), ..pod("m", 2) };
        let on = ScoreContext { gang_nodes: &[3], node_position: 3 };
        let off = ScoreContext { gang_nodes: &[3], node_position: 4 };
        assert_eq!(GangTopology.score(&member, &n, &n.free(), &on), 100);
        assert_eq!(GangTopology.score(&member, &n, &n.free(), &off), 0);
        assert_eq!(GangTopology.score(&pod("solo", 2), &n, &n.free(), &on), 0);
    }
}
