//! The cluster as pictor-scheduler sees it: nodes with what bound and assumed pods hold, and
//! the pods waiting for it. Plain data, updated from watch events one at a time; decisions
//! read it and never call the API server.

use crate::resources::Resources;
use crate::shared_gpus::{Placement, SharedClaim, SharedGpus};
use k8s_openapi::api::core::v1::{Node, NodeSelector, Pod, Toleration};
use pictor_crds::contract;
use std::collections::{BTreeMap, HashMap};

/// `namespace/name`.
pub type PodKey = String;

/// A taint, as the scheduler needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value (may be empty).
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// A node, as the filters and scores need it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Labels (GPU labels included).
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// `status.allocatable`.
    pub allocatable: Resources,
    /// What bound and assumed pods hold.
    pub used: Resources,
    /// The memory of each GPU, where they are shared by time-slicing.
    pub shared: Option<SharedGpus>,
}

impl NodeInfo {
    /// What is left for new pods.
    pub fn free(&self) -> Resources {
        self.allocatable.minus(&self.used)
    }

    /// The plain data of a Node object.
    pub fn from_node(node: &Node) -> Option<Self> {
        let name = node.metadata.name.clone()?;
        let spec = node.spec.clone().unwrap_or_default();
        let allocatable = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
            .map(Resources::from_quantities)
            .unwrap_or_default();
        let taints = spec
            .taints
            .unwrap_or_default()
            .into_iter()
            .map(|t| Taint { key: t.key, value: t.value.unwrap_or_default(), effect: t.effect })
            .collect();
        let labels = node.metadata.labels.clone().unwrap_or_default();
        Some(Self {
            name,
            shared: SharedGpus::from_labels(&labels),
            labels,
            taints,
            unschedulable: spec.unschedulable.unwrap_or(false),
            allocatable,
            used: Resources::default(),
        })
    }
}

/// Membership of a gang.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GangRef {
    /// `namespace/gang-name`.
    pub key: String,
    /// Number of pods the gang needs.
    pub size: usize,
}

/// A pod, as the scheduler needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodInfo {
    /// `namespace/name`.
    pub key: PodKey,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (bindings carry it so a re-created pod of the same name is never bound by mistake).
    pub uid: String,
    /// What the pod asks for (containers, init containers, overhead), pods = 1.
    pub requests: Resources,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_affinity: Option<NodeSelector>,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
    /// Accepted GPU products, empty for any.
    pub gpu_models: Vec<String>,
    /// Required GPU vendor.
    pub gpu_vendor: Option<String>,
    /// Least memory per GPU.
    pub gpu_min_memory_mib: Option<i64>,
    /// Memory of one shared GPU it needs (a fractional request), MiB.
    pub gpu_memory_mib: Option<i64>,
    /// Gang membership.
    pub gang: Option<GangRef>,
    /// `spec.nodeName` (bound).
    pub node_name: Option<String>,
    /// Whether this scheduler is responsible for the pod.
    pub ours: bool,
    /// Finished (Succeeded or Failed): holds nothing, needs nothing.
    pub done: bool,
    /// Being deleted: needs no node, but keeps holding its room until it is gone (its
    /// containers may still be stopping).
    pub deleting: bool,
}

fn container_requests(c: &k8s_openapi::api::core::v1::Container) -> Resources {
    let Some(res) = c.resources.as_ref() else { return Resources::default() };
    let requests = res.requests.clone().unwrap_or_default();
    let mut merged = res.limits.clone().unwrap_or_default();
    // A limit without a request means request = limit (how the API server defaults it).
    merged.extend(requests);
    Resources::from_quantities(&merged)
}

impl PodInfo {
    /// The plain data of a Pod object; `scheduler_name` decides [`PodInfo::ours`].
    pub fn from_pod(pod: &Pod, scheduler_name: &str) -> Option<Self> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone()?;
        let spec = pod.spec.as_ref()?;
        let mut requests =
            spec.containers.iter().map(container_requests).fold(Resources::default(), |a, b| a.plus(&b));
        for init in spec.init_containers.iter().flatten() {
            requests = requests.max(&container_requests(init));
        }
        if let Some(overhead) = &spec.overhead {
            requests = requests.plus(&Resources::from_quantities(overhead));
        }
        requests.pods = 1;
        let labels = pod.metadata.labels.as_ref();
        let annotations = pod.metadata.annotations.as_ref();
        let annotation = |k: &str| annotations.and_then(|a| a.get(k)).map(|v| v.trim().to_string());
        let gang = labels.and_then(|l| l.get(contract::labels::GANG)).map(|g| GangRef {
            key: format!("{namespace}/{g}"),
            size: annotation(contract::annotations::GANG_SIZE)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1)
                .max(1),
        });
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        Some(Self {
            key: format!("{namespace}/{name}"),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            requests,
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_affinity: spec
                .affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|n| n.required_during_scheduling_ignored_during_execution.clone()),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            gpu_models: annotation(contract::annotations::GPU_MODELS)
                .map(|m| m.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
            gpu_vendor: annotation(contract::annotations::GPU_VENDOR).filter(|v| !v.is_empty() && v != "any"),
            gpu_min_memory_mib: annotation(contract::annotations::GPU_MIN_MEMORY_MIB)
                .and_then(|m| m.parse().ok()),
            gpu_memory_mib: annotation(contract::annotations::GPU_MEMORY_MIB)
                .and_then(|m| m.parse().ok())
                .filter(|m| *m > 0),
            gang,
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            ours: spec.scheduler_name.as_deref() == Some(scheduler_name),
            done: matches!(phase, Some("Succeeded" | "Failed")),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            namespace,
            name,
        })
    }

    /// Waiting for this scheduler to place it.
    pub fn is_pending(&self) -> bool {
        self.ours && self.node_name.is_none() && !self.done && !self.deleting
    }
}

/// What the cluster holds: nodes in a dense vector (decisions scan it), pods by key.
#[derive(Debug, Default)]
pub struct ClusterView {
    nodes: Vec<NodeInfo>,
    node_index: HashMap<String, usize>,
    pods: HashMap<PodKey, PodEntry>,
    /// Bumped on every change that can make an unschedulable pod schedulable.
    generation: u64,
}

/// A pod and where its resources are counted.
#[derive(Debug)]
struct PodEntry {
    pod: PodInfo,
    /// Node whose `used` includes this pod (bound or assumed).
    counted_on: Option<String>,
    /// Placed by this scheduler, binding not yet seen through the watch.
    assumed: bool,
    /// Where its GPU memory is counted on a shared node.
    shared: Placement,
}

impl ClusterView {
    /// Nodes, in a stable order.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.node_index.get(name).map(|i| &self.nodes[*i])
    }

    /// Index of a node in [`ClusterView::nodes`].
    pub fn node_position(&self, name: &str) -> Option<usize> {
        self.node_index.get(name).copied()
    }

    /// A pod by key.
    pub fn pod(&self, key: &str) -> Option<&PodInfo> {
        self.pods.get(key).map(|e| &e.pod)
    }

    /// Pods waiting for this scheduler, excluding those assumed.
    pub fn pending_pods(&self) -> impl Iterator<Item = &PodInfo> {
        self.pods.values().filter(|e| !e.assumed && e.pod.is_pending()).map(|e| &e.pod)
    }

    /// Whether the pod is placed by this scheduler and its binding not yet observed.
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|e| e.assumed)
    }

    /// Changes that may free room or add nodes bump this.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Adds or replaces a node, keeping what its pods hold.
    pub fn apply_node(&mut self, mut node: NodeInfo) {
        self.generation += 1;
        match self.node_index.get(&node.name) {
            Some(&i) => {
                node.used = self.nodes[i].used;
                let same_gpus = match (&node.shared, &self.nodes[i].shared) {
                    (Some(new), Some(old)) => new.same_shape(old),
                    (None, None) => true,
                    _ => false,
                };
                if same_gpus {
                    node.shared = self.nodes[i].shared.clone();
                }
                self.nodes[i] = node;
                if !same_gpus {
                    self.recount_shared(i);
                }
            }
            None => {
                // Pods may have been seen bound to this node before the node itself.
                node.used = self
                    .pods
                    .values()
                    .filter(|e| e.counted_on.as_deref() == Some(node.name.as_str()))
                    .fold(Resources::default(), |a, e| a.plus(&e.pod.requests));
                self.node_index.insert(node.name.clone(), self.nodes.len());
                self.nodes.push(node);
                self.recount_shared(self.nodes.len() - 1);
            }
        }
    }

    /// Counts afresh the GPU memory of the pods on a node whose shared GPUs are new or changed.
    fn recount_shared(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(shared) = node.shared.as_mut() {
            shared.used_mib.iter_mut().for_each(|u| *u = 0);
        }
        for entry in self.pods.values_mut().filter(|e| e.counted_on.as_deref() == Some(node.name.as_str())) {
            entry.shared = match (node.shared.as_mut(), SharedClaim::of(&entry.pod)) {
                (Some(shared), Some(claim)) => shared.take(claim),
                _ => Vec::new(),
            };
        }
    }

    /// Forgets a node; its pods stay counted nowhere until they are gone.
    pub fn delete_node(&mut self, name: &str) {
        self.generation += 1;
        if let Some(i) = self.node_index.remove(name) {
            self.nodes.swap_remove(i);
            if let Some(moved) = self.nodes.get(i) {
                self.node_index.insert(moved.name.clone(), i);
            }
        }
    }

    fn uncount(&mut self, key: &str) {
        if let Some(entry) = self.pods.get_mut(key)
            && let Some(node) = entry.counted_on.take()
            && let Some(&i) = self.node_index.get(&node)
        {
            let requests = entry.pod.requests;
            self.nodes[i].used = self.nodes[i].used.minus(&requests);
            if let Some(shared) = self.nodes[i].shared.as_mut() {
                shared.give_back(&entry.shared);
            }
            entry.shared.clear();
        }
    }

    fn count(&mut self, key: &str, node: &str) {
        if let Some(entry) = self.pods.get_mut(key) {
            entry.counted_on = Some(node.to_string());
            if let Some(&i) = self.node_index.get(node) {
                self.nodes[i].used = self.nodes[i].used.plus(&entry.pod.requests);
                if let Some(shared) = self.nodes[i].shared.as_mut()
                    && let Some(claim) = SharedClaim::of(&entry.pod)
                {
                    entry.shared = shared.take(claim);
                }
            }
        }
    }

    /// Adds or replaces a pod as the watch reports it. Returns whether the pod is new.
    pub fn apply_pod(&mut self, pod: PodInfo) -> bool {
        let key = pod.key.clone();
        let (was_assumed, assumed_node, is_new) = match self.pods.get(&key) {
            Some(e) => (e.assumed, e.counted_on.clone(), false),
            None => (false, None, true),
        };
        // An event from before our binding (say, our own status patch) must not undo the
        // assumption; the binding's own event, or a failed bind, settles it.
        let keep_assumption = was_assumed && pod.node_name.is_none() && !pod.done && !pod.deleting;
        self.uncount(&key);
        let counted_on = if pod.done {
            None
        } else if keep_assumption {
            assumed_node
        } else {
            pod.node_name.clone()
        };
        if pod.done || pod.node_name.is_some() {
            // Finished pods and bindings (ours confirmed, or anyone's) free or take room.
            self.generation += 1;
        }
        self.pods.insert(
            key.clone(),
            PodEntry { pod, counted_on: None, assumed: keep_assumption, shared: Vec::new() },
        );
        if let Some(node) = counted_on {
            self.count(&key, &node);
        }
        is_new
    }

    /// Forgets a deleted pod, freeing what it held.
    pub fn delete_pod(&mut self, key: &str) -> Option<PodInfo> {
        self.uncount(key);
        self.generation += 1;
        self.pods.remove(key).map(|e| e.pod)
    }

    /// Counts a pod on a node before the binding is confirmed, so the next decision sees it.
    pub fn assume(&mut self, key: &str, node: &str) {
        self.uncount(key);
        if let Some(e) = self.pods.get_mut(key) {
            e.assumed = true;
        }
        self.count(key, node);
    }

    /// Undoes [`ClusterView::assume`] after a failed binding.
    pub fn forget_assumed(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|e| e.assumed) {
            self.uncount(key);
            self.generation += 1;
            if let Some(e) = self.pods.get_mut(key) {
                e.assumed = false;
            }
        }
    }

    /// Pods of a gang that wait for this scheduler (not bound, not assumed), by name.
    pub fn pending_gang_members(&self, gang_key: &str) -> Vec<&PodInfo> {
        let mut members: Vec<&PodInfo> = self
            .pods
            .values()
            .filter(|e| !e.assumed && e.pod.is_pending())
            .map(|e| &e.pod)
            .filter(|p| p.gang.as_ref().is_some_and(|g| g.key == gang_key))
            .collect();
        members.sort_by(|a, b| a.key.cmp(&b.key));
        members
    }

    /// Members of a gang already bound or assumed (a restart may find a gang half bound).
    pub fn placed_gang_members(&self, gang_key: &str) -> usize {
        self.pods
            .values()
            .filter(|e| !e.pod.done && (e.assumed || e.pod.node_name.is_some()))
            .filter(|e| e.pod.gang.as_ref().is_some_and(|g| g.key == gang_key))
            .count()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::resources::GpuCounts;
    use pictor_crds::contract::Vendor;

    pub(crate) fn node(name: &str, gpus: i64) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            allocatable: Resources {
                cpu_milli: 64_000,
                memory: 256 << 30,
                gpus: GpuCounts::only(Vendor::Nvidia, gpus),
                pods: 110,
            },
            ..Default::default()
        }
    }

    pub(crate) fn pod(name: &str, gpus: i64) -> PodInfo {
        PodInfo {
            key: format!("default/{name}"),
            namespace: "default".into(),
            name: name.into(),
            requests: Resources {
                cpu_milli: 1000,
                gpus: GpuCounts::only(Vendor::Nvidia, gpus),
                pods: 1,
                ..Default::default()
            },
            ours: true,
            ..Default::default()
        }
    }

    #[test]
    fn bound_pods_hold_resources_until_deleted_or_finished() {
        let mut view = ClusterView::default();
        view.apply_node(node("n1", 8));
        view.apply_pod(PodInfo { node_name: Some("n1".into()), ..pod("a", 3) });
        assert_eq!(view.node("n1").unwrap().free().gpus[Vendor::Nvidia], 5);
        view.apply_pod(PodInfo { node_name: Some("n1".into()), done: true, ..pod("a", 3) });
        assert_eq!(view.node("n1").unwrap().free().gpus[Vendor::Nvidia], 8);
        view.apply_pod(PodInfo { node_name: Some("n1".into()), ..pod("b", 2) });
        view.apply_pod(PodInfo { node_name: Some("n1".into()), deleting: true, ..pod("b", 2) });
        assert_eq!(
            view.node("n1").unwrap().free().gpus[Vendor::Nvidia],
            6,
            "a terminating pod still holds its GPUs"
        );
        view.delete_pod("default/b");
        assert_eq!(view.node("n1").unwrap().used, Resources::default());
    }

    #[test]
    fn an_assumption_survives_stale_events_and_a_failed_bind_undoes_it() {
        let mut view = ClusterView::default();
        view.apply_node(node("n1", 8));
        view.apply_pod(pod("a", 2));
        view.assume("default/a", "n1");
        assert_eq!(view.node("n1").unwrap().used.gpus[Vendor::Nvidia], 2);
        view.apply_pod(pod("a", 2));
        assert!(view.is_assumed("default/a"));
        assert_eq!(view.pending_pods().count(), 0);
        view.forget_assumed("default/a");
        assert_eq!(view.node("n1").unwrap().used.gpus[Vendor::Nvidia], 0);
        assert_eq!(view.pending_pods().count(), 1);
        view.assume("default/a", "n1");
        view.apply_pod(PodInfo { node_name: Some("n1".into()), ..pod("a", 2) });
        assert!(!view.is_assumed("default/a"));
        assert_eq!(view.node("n1").unwrap().used.gpus[Vendor::Nvidia], 2);
    }

    #[test]
    fn shared_gpu_memory_is_counted_per_gpu_and_follows_the_node() {
        let shared = |gpus: usize| NodeInfo {
            shared: Some(SharedGpus { memory_mib: 80_000, used_mib: vec![0; gpus] }),
            ..node("s", gpus as i64 * 4)
        };
        let used = |view: &ClusterView| view.node("s").unwrap().shared.as_ref().unwrap().used_mib.clone();
        let mut view = ClusterView::default();
        // A fractional pod bound before its node is seen is counted when the node arrives.
        view.apply_pod(PodInfo { node_name: Some("s".into()), gpu_memory_mib: Some(30_000), ..pod("a", 1) });
        view.apply_node(shared(2));
        assert_eq!(used(&view), [30_000, 0]);
        view.apply_pod(pod("b", 1));
        view.assume("default/b", "s");
        assert_eq!(used(&view), [30_000, 80_000], "a whole-GPU pod takes an untouched GPU whole");
        view.forget_assumed("default/b");
        assert_eq!(used(&view), [30_000, 0]);
        // The node is seen again unchanged: the count stays; with a third GPU it is counted afresh.
        view.apply_node(shared(2));
        assert_eq!(used(&view), [30_000, 0]);
        view.apply_node(shared(3));
        assert_eq!(used(&view), [30_000, 0, 0]);
        view.delete_pod("default/a");
        assert_eq!(used(&view), [0, 0, 0]);
    }

    #[test]
    fn pods_seen_before_their_node_are_counted_when_it_arrives() {
        let mut view = ClusterView::default();
        view.apply_pod(PodInfo { node_name: Some("late".into()), ..pod("a", 1) });
        view.apply_node(node("late", 8));
        assert_eq!(view.node("late").unwrap().used.gpus[Vendor::Nvidia], 1);
        view.apply_node(node("other", 8));
        view.delete_node("late");
        assert!(view.node("late").is_none());
        assert_eq!(view.node("other").unwrap().name, "other");
    }
}
