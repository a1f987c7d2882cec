//! The extension points of a scheduling decision, after kube-scheduler's framework
//! (`pkg/scheduler/framework/interface.go`): Filter and Score judge one pod on one node over
//! plain data; Reserve holds a node's room in the view before the binding; Permit lets a pod
//! go, or makes it wait (a gang gathering). Each plugin is small and tested alone.

use crate::resources::{ResourceName, Resources};
use crate::view::{ClusterView, NodeInfo, PodInfo};
use std::fmt;
use std::time::Duration;

/// Why a node cannot take a pod; counted per reason in the Unschedulable message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not enough of a resource left.
    Insufficient(ResourceName),
    /// `spec.unschedulable` (cordoned).
    NodeUnschedulable,
    /// `nodeSelector` or required node affinity do not match.
    NodeAffinity,
    /// A NoSchedule or NoExecute taint the pod does not tolerate.
    UntoleratedTaint,
    /// GPU vendor, product or memory does not match the pod's GPU annotations.
    GpuModel,
    /// The gang as a whole does not fit (some members might).
    GangDoesNotFit,
    /// A fractional GPU request on a node whose GPUs are not shared.
    GpuNotShared,
    /// No shared GPU of the node has the memory the pod asks for free.
    SharedGpuMemory,
    /// A whole-GPU request on a shared node without that many GPUs nobody uses.
    NoWholeGpu,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Insufficient(r) => write!(f, "Insufficient {r}"),
            Self::NodeUnschedulable => f.write_str("node(s) were unschedulable"),
            Self::NodeAffinity => f.write_str("node(s) didn't match Pod's node affinity/selector"),
            Self::UntoleratedTaint => f.write_str("node(s) had untolerated taint"),
            Self::GpuModel => f.write_str("node(s) didn't have the requested GPU vendor, model or memory"),
            Self::GangDoesNotFit => f.write_str("node(s) left no room for the whole gang"),
            Self::GpuNotShared => f.write_str("node(s) didn't share their GPUs"),
            Self::SharedGpuMemory => f.write_str("node(s) had no shared GPU with the requested memory free"),
            Self::NoWholeGpu => f.write_str("node(s) had too few shared GPUs left whole"),
        }
    }
}

/// Decides whether a node can take a pod.
pub trait FilterPlugin: Send + Sync {
    /// Name for logs and metrics.
    fn name(&self) -> &'static str;
    /// `Ok` when `node` (with `free` left after what this decision already planned) fits.
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, free: &Resources) -> Result<(), Reason>;
}

/// What a score may know beyond the pod and the node.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScoreContext<'a> {
    /// Nodes (positions in the view) already chosen for other members of the pod's gang.
    pub gang_nodes: &'a [usize],
    /// Position of the node being scored.
    pub node_position: usize,
}

/// Ranks feasible nodes: 0 to 100, higher is better, times the plugin's weight.
pub trait ScorePlugin: Send + Sync {
    /// Name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Relative weight of this plugin.
    fn weight(&self) -> i64;
    /// 0..=100 for placing `pod` on `node` that has `free` left before it.
    fn score(&self, pod: &PodInfo, node: &NodeInfo, free: &Resources, cx: &ScoreContext<'_>) -> i64;
}

/// Holds a node's room for a pod between the decision and the binding.
pub trait ReservePlugin: Send + Sync {
    /// Name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Takes the room.
    fn reserve(&self, view: &mut ClusterView, pod: &PodInfo, node: &str);
    /// Gives it back (the binding failed, or the gang gave up).
    fn unreserve(&self, view: &mut ClusterView, pod: &PodInfo);
}

/// Whether a pod with a chosen node may be bound now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permit {
    /// Bind now.
    Allow,
    /// Hold the reservation for at most this long, then give up.
    Wait(Duration),
}

/// Lets a placed pod go to binding, or holds it.
pub trait PermitPlugin: Send + Sync {
    /// Name for logs and metrics.
    fn name(&self) -> &'static str;
    /// `gathered`: members of the pod's gang present (pending, assumed or bound).
    fn permit(&self, pod: &PodInfo, gathered: usize) -> Permit;
}

/// The plugins of one scheduler profile, in the order they run.
pub struct Profile {
    /// Filters, cheapest and most selective first: the first failure is the reason counted.
    pub filters: Vec<Box<dyn FilterPlugin>>,
    /// Scores, summed with their weights.
    pub scores: Vec<Box<dyn ScorePlugin>>,
    /// Reserve plugins.
    pub reserve: Vec<Box<dyn ReservePlugin>>,
    /// Permit plugins.
    pub permit: Vec<Box<dyn PermitPlugin>>,
}

impl Profile {
    /// pictor-scheduler's default profile; `gang_wait` bounds how long a gathering gang holds
    /// its reservation.
    pub fn pictor(gang_wait: Duration) -> Self {
        use crate::plugins::*;
        Self {
            filters: vec![
                Box::new(NodeUnschedulable),
                Box::new(NodeAffinity),
                Box::new(TaintToleration),
                Box::new(GpuModelFit),
                Box::new(ResourcesFit),
                Box::new(SharedGpuFit),
            ],
            scores: vec![
                Box::new(GpuBinPacking),
                Box::new(SharedGpuPacking),
                Box::new(CpuSpread),
                Box::new(GangTopology),
            ],
            reserve: vec![Box::new(ViewReservation)],
            permit: vec![Box::new(GangPermit { wait: gang_wait })],
        }
    }

    /// The first filter that rejects the node, if any.
    pub fn filter(&self, pod: &PodInfo, node: &NodeInfo, free: &Resources) -> Result<(), Reason> {
        self.filters.iter().try_for_each(|f| f.filter(pod, node, free))
    }

    /// Weighted sum of every score.
    pub fn score(&self, pod: &PodInfo, node: &NodeInfo, free: &Resources, cx: &ScoreContext<'_>) -> i64 {
        self.scores.iter().map(|s| s.weight() * s.score(pod, node, free, cx).clamp(0, 100)).sum()
    }

    /// Runs every Reserve plugin.
    pub fn reserve(&self, view: &mut ClusterView, pod: &PodInfo, node: &str) {
        self.reserve.iter().for_each(|r| r.reserve(view, pod, node));
    }

    /// Runs every Reserve plugin's undo, in reverse.
    pub fn unreserve(&self, view: &mut ClusterView, pod: &PodInfo) {
        self.reserve.iter().rev().for_each(|r| r.unreserve(view, pod));
    }

    /// The strictest permit: any Wait wins over Allow.
    pub fn permit(&self, pod: &PodInfo, gathered: usize) -> Permit {
        self.permit
            .iter()
            .map(|p| p.permit(pod, gathered))
            .find(|p| *p != Permit::Allow)
            .unwrap_or(Permit::Allow)
    }
}
