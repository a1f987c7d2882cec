//! Where a pod or a whole gang goes: pure functions from the view and the profile to node
//! positions, or to the reasons nothing fits.

use crate::framework::{Profile, Reason, ScoreContext};
use crate::resources::Resources;
use crate::view::{ClusterView, PodInfo};
use std::collections::BTreeMap;

/// Nothing fits; the count of nodes per reason, as kube-scheduler reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unschedulable {
    /// Nodes considered.
    pub nodes: usize,
    /// Nodes rejected per reason (each node counted once, under its first failing filter).
    pub reasons: BTreeMap<Reason, usize>,
    /// Set for gangs: which member could not be placed and how many members the gang has.
    pub gang: Option<(String, usize)>,
}

impl Unschedulable {
    /// `0/5000 nodes are available: 4990 Insufficient nvidia.com/gpu, 10 node(s) had
    /// untolerated taint.` — largest count first, as kube-scheduler orders them.
    pub fn message(&self) -> String {
        let mut reasons: Vec<(&Reason, &usize)> = self.reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let listed: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        let prefix = match &self.gang {
            Some((gang, size)) => format!("gang {gang} ({size} pods) does not fit: "),
            None => String::new(),
        };
        if listed.is_empty() {
            format!("{prefix}0/{} nodes are available.", self.nodes)
        } else {
            format!("{prefix}0/{} nodes are available: {}.", self.nodes, listed.join(", "))
        }
    }
}

/// Room already promised by this decision (a gang's earlier members), per node position.
type Planned = Vec<(usize, Resources)>;

fn free_after_planned(view: &ClusterView, position: usize, planned: &Planned) -> Resources {
    let node = &view.nodes()[position];
    planned.iter().filter(|(p, _)| *p == position).fold(node.free(), |free, (_, r)| free.minus(r))
}

/// The best feasible node for `pod`, or the reasons per node.
fn best_node(
    profile: &Profile,
    view: &ClusterView,
    pod: &PodInfo,
    planned: &Planned,
    gang_nodes: &[usize],
) -> Result<usize, Unschedulable> {
    let mut best: Option<(i64, usize)> = None;
    // A handful of distinct reasons at most, counted for every rejected node: a short list is
    // cheaper than a map, which is built only when nothing fits.
    let mut reasons: Vec<(Reason, usize)> = Vec::new();
    for (position, node) in view.nodes().iter().enumerate() {
        let free = if planned.is_empty() { node.free() } else { free_after_planned(view, position, planned) };
        if let Err(reason) = profile.filter(pod, node, &free) {
            match reasons.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, n)) => *n += 1,
                None => reasons.push((reason, 1)),
            }
            continue;
        }
        let cx = ScoreContext { gang_nodes, node_position: position };
        let score = profile.score(pod, node, &free, &cx);
        // Ties go to the first node in view order, so packing fills one node before the next.
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, position));
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| Unschedulable {
        nodes: view.nodes().len(),
        reasons: reasons.into_iter().collect(),
        gang: None,
    })
}

/// Where one pod goes, as a position in [`ClusterView::nodes`].
pub fn place_pod(profile: &Profile, view: &ClusterView, pod: &PodInfo) -> Result<usize, Unschedulable> {
    best_node(profile, view, pod, &Vec::new(), &[])
}

/// Where every member goes, all or none: members are placed one after another against the
/// room the earlier ones took, biggest first so the hardest fit is tried while most room is
/// left. Returns positions in the order of `members`.
pub fn place_gang(
    profile: &Profile,
    view: &ClusterView,
    members: &[PodInfo],
) -> Result<Vec<usize>, Unschedulable> {
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by_key(|&i| {
        let r = &members[i].requests;
        std::cmp::Reverse((r.total_gpus(), r.cpu_milli, r.memory))
    });
    let mut planned: Planned = Vec::with_capacity(members.len());
    let mut positions = vec![0; members.len()];
    let mut gang_nodes: Vec<usize> = Vec::new();
    for i in order {
        let member = &members[i];
        match best_node(profile, view, member, &planned, &gang_nodes) {
            Ok(position) => {
                planned.push((position, member.requests));
                if !gang_nodes.contains(&position) {
                    gang_nodes.push(position);
                }
                positions[i] = position;
            }
            Err(mut why) => {
                let gang = member.gang.as_ref().map(|g| g.key.clone()).unwrap_or_default();
                why.gang = Some((gang, members.len()));
                return Err(why);
            }
        }
    }
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ResourceName;
    use crate::view::tests::{node, pod};
    use crate::view::{GangRef, NodeInfo, Taint};
    use pictor_crds::contract::Vendor;
    use std::time::Duration;

    fn profile() -> Profile {
        Profile::pictor(Duration::from_secs(30))
    }

    fn member(name: &str, gpus: i64) -> PodInfo {
        PodInfo { gang: Some(GangRef { key: "default/g".into(), size: 4 }), ..pod(name, gpus) }
    }

    #[test]
    fn one_gpu_pods_fill_a_partly_used_node_before_touching_an_empty_one() {
        let mut view = ClusterView::default();
        view.apply_node(node("a", 8));
        view.apply_node(node("b", 8));
        view.apply_pod(PodInfo { node_name: Some("b".into()), ..pod("old", 3) });
        let p = pod("new", 1);
        assert_eq!(view.nodes()[place_pod(&profile(), &view, &p).unwrap()].name, "b");
    }

    #[test]
    fn the_message_counts_nodes_per_reason_largest_first() {
        let mut view = ClusterView::default();
        for i in 0..3 {
            view.apply_node(node(&format!("small-{i}"), 1));
        }
        view.apply_node(NodeInfo {
            taints: vec![Taint { key: "k".into(), value: "v".into(), effect: "NoSchedule".into() }],
            ..node("tainted", 8)
        });
        let why = place_pod(&profile(), &view, &pod("big", 4)).unwrap_err();
        assert_eq!(why.reasons[&Reason::Insufficient(ResourceName::Gpu(Vendor::Nvidia))], 3);
        assert_eq!(
            why.message(),
            "0/4 nodes are available: 3 Insufficient nvidia.com/gpu, 1 node(s) had untolerated taint."
        );
    }

    #[test]
    fn a_gang_is_placed_whole_on_as_few_nodes_as_possible_or_not_at_all() {
        let mut view = ClusterView::default();
        for i in 0..3 {
            view.apply_node(node(&format!("n{i}"), 8));
        }
        let members: Vec<PodInfo> = (0..4).map(|i| member(&format!("m{i}"), 4)).collect();
        let placed = place_gang(&profile(), &view, &members).unwrap();
        let mut nodes: Vec<usize> = placed.clone();
        nodes.sort();
        nodes.dedup();
        assert_eq!(nodes.len(), 2, "4×4 GPUs fit on two 8-GPU nodes: {placed:?}");

        let too_big: Vec<PodInfo> = (0..4).map(|i| member(&format!("m{i}"), 8)).collect();
        let why = place_gang(&profile(), &view, &too_big).unwrap_err();
        assert!(why.message().starts_with("gang default/g (4 pods) does not fit"), "{}", why.message());
    }
}
