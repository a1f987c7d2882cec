//! The scheduler's state between watch events: the view, the queue of pods to place, the
//! backoff of failed bindings, the unschedulable pods waiting for a change, and the gangs
//! holding reservations. Inputs go in, actions (bind, report) come out; it performs no I/O,
//! so every branch is tested without a cluster.

use crate::decision::{Unschedulable, place_gang, place_pod};
use crate::framework::{Permit, Profile};
use crate::metrics::Metrics;
use crate::view::{ClusterView, NodeInfo, PodInfo, PodKey};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the watches and the binder report.
#[derive(Clone, Debug)]
pub enum Input {
    /// A node was added or changed.
    NodeApplied(NodeInfo),
    /// A node was deleted.
    NodeDeleted(String),
    /// A pod was added or changed.
    PodApplied(PodInfo),
    /// A pod was deleted.
    PodDeleted(PodKey),
    /// The node watch has listed every node once.
    NodesSynced,
    /// The pod watch has listed every pod once.
    PodsSynced,
    /// The API server accepted a binding.
    BindSucceeded(PodKey),
    /// A binding failed; `pod_gone` when the pod no longer exists.
    BindFailed {
        /// The pod.
        key: PodKey,
        /// The pod was deleted (forget it) rather than conflicting (retry it).
        pod_gone: bool,
    },
}

/// A pod and the node it goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// `namespace/name`.
    pub key: PodKey,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID the binding is made for.
    pub uid: String,
    /// Target node.
    pub node: String,
}

/// A pod that cannot be placed and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnschedulableReport {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Why, like "0/5000 nodes are available: …".
    pub message: String,
}

/// What the I/O edge must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the `pods/binding`.
    Bind(Binding),
    /// Set `PodScheduled=False/Unschedulable` and record an Event.
    ReportUnschedulable(UnschedulableReport),
}

/// Tunables.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// How long a gathering gang holds its reservation.
    pub gang_wait: Duration,
    /// Least time between two retries of the unschedulable pods after cluster changes.
    pub retry_interval: Duration,
    /// First backoff after a failed binding; doubles per failure.
    pub initial_backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            gang_wait: Duration::from_secs(30),
            retry_interval: Duration::from_secs(1),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Room a gathering gang holds: placeholder pods counted in the view.
#[derive(Debug)]
struct GangReservation {
    placeholders: Vec<PodKey>,
    deadline: Instant,
}

/// The scheduler's state machine.
pub struct Scheduler {
    profile: Profile,
    config: SchedulerConfig,
    view: ClusterView,
    active: VecDeque<PodKey>,
    queued: HashSet<PodKey>,
    backoff: BTreeMap<(Instant, u64), PodKey>,
    backoff_seq: u64,
    in_backoff: HashSet<PodKey>,
    attempts: HashMap<PodKey, u32>,
    unschedulable: HashSet<PodKey>,
    reported: HashMap<PodKey, String>,
    gangs: HashMap<String, GangReservation>,
    /// Gangs whose reservation ran out: members gathered then, and the message. They reserve
    /// again only once more members have arrived, so an incomplete gang cannot hold room
    /// forever by reserving anew after each release.
    expired: HashMap<String, (usize, String)>,
    first_seen: HashMap<PodKey, Instant>,
    nodes_synced: bool,
    pods_synced: bool,
    last_retry: Option<Instant>,
    retry_generation: u64,
    metrics: Arc<Metrics>,
}

/// Placeholder keys start with a character no namespace can hold.
const PLACEHOLDER_PREFIX: &str = "#gang-reservation/";

impl Scheduler {
    /// A scheduler with an empty view.
    pub fn new(profile: Profile, config: SchedulerConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            profile,
            config,
            view: ClusterView::default(),
            active: VecDeque::new(),
            queued: HashSet::new(),
            backoff: BTreeMap::new(),
            backoff_seq: 0,
            in_backoff: HashSet::new(),
            attempts: HashMap::new(),
            unschedulable: HashSet::new(),
            reported: HashMap::new(),
            gangs: HashMap::new(),
            expired: HashMap::new(),
            first_seen: HashMap::new(),
            nodes_synced: false,
            pods_synced: false,
            last_retry: None,
            retry_generation: 0,
            metrics,
        }
    }

    /// The view (for tests and the benchmark's checks).
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    fn enqueue(&mut self, key: &str) {
        if !self.queued.contains(key) && !self.in_backoff.contains(key) {
            self.queued.insert(key.to_string());
            self.active.push_back(key.to_string());
        }
    }

    /// Applies one input.
    pub fn apply(&mut self, input: Input, now: Instant) {
        match input {
            Input::NodeApplied(node) => self.view.apply_node(node),
            Input::NodeDeleted(name) => self.view.delete_node(&name),
            Input::NodesSynced => self.nodes_synced = true,
            Input::PodsSynced => self.pods_synced = true,
            Input::PodApplied(pod) => self.apply_pod(pod, now),
            Input::PodDeleted(key) => {
                self.view.delete_pod(&key);
                self.forget(&key);
            }
            Input::BindSucceeded(key) => {
                self.attempts.remove(&key);
                self.observe_latency(&key, now);
            }
            Input::BindFailed { key, pod_gone } => {
                self.metrics.attempt("error");
                if let Some(pod) = self.view.pod(&key).cloned() {
                    self.profile.unreserve(&mut self.view, &pod);
                }
                if pod_gone {
                    self.view.delete_pod(&key);
                    self.forget(&key);
                } else {
                    let n = self.attempts.entry(key.clone()).or_default();
                    *n += 1;
                    let delay = self.config.initial_backoff.saturating_mul(1 << (*n).min(16)) / 2;
                    let at = now + delay.min(self.config.max_backoff);
                    self.backoff_seq += 1;
                    self.backoff.insert((at, self.backoff_seq), key.clone());
                    self.in_backoff.insert(key);
                }
            }
        }
        self.metrics.pending_pods.set(self.first_seen.len() as i64);
    }

    /// Records a binding's latency once, whichever of the call's answer and the watch event
    /// comes first.
    fn observe_latency(&mut self, key: &str, now: Instant) {
        if let Some(seen) = self.first_seen.remove(key) {
            self.metrics.latency.observe(now.saturating_duration_since(seen).as_secs_f64());
        }
    }

    fn forget(&mut self, key: &str) {
        self.queued.remove(key);
        self.unschedulable.remove(key);
        self.reported.remove(key);
        self.attempts.remove(key);
        self.first_seen.remove(key);
        self.in_backoff.remove(key);
    }

    fn apply_pod(&mut self, pod: PodInfo, now: Instant) {
        let key = pod.key.clone();
        let pending = pod.is_pending();
        let gang = pod.gang.clone();
        let was_assumed = self.view.is_assumed(&key);
        let is_new = self.view.apply_pod(pod);
        if !pending {
            // Bound (by us or anyone), finished or deleting: nothing left to do for it.
            if !self.view.is_assumed(&key) {
                if was_assumed {
                    // The watch can show our binding before the binding call returns.
                    self.observe_latency(&key, now);
                }
                self.forget(&key);
            }
            return;
        }
        self.first_seen.entry(key.clone()).or_insert(now);
        if self.view.is_assumed(&key) {
            return;
        }
        if is_new && let Some(g) = gang {
            // A new member may complete its gang: its waiting or refused members try again.
            let members: Vec<PodKey> =
                self.view.pending_gang_members(&g.key).iter().map(|p| p.key.clone()).collect();
            for m in members {
                if self.unschedulable.remove(&m) {
                    self.enqueue(&m);
                }
            }
        }
        if !self.unschedulable.contains(&key) {
            self.enqueue(&key);
        }
    }

    /// The earliest time [`Scheduler::next_actions`] has timed work (a backoff or a gang
    /// deadline), so the caller knows how long it may sleep.
    pub fn next_wake(&self) -> Option<Instant> {
        let backoff = self.backoff.keys().next().map(|(at, _)| *at);
        let gang = self.gangs.values().map(|g| g.deadline).min();
        // Only a change to the view makes a retry worth waking for; without one the loop
        // would spin on a retry time already past.
        let retry_due = !self.unschedulable.is_empty() && self.view.generation() != self.retry_generation;
        let retry =
            retry_due.then(|| self.last_retry.map_or_else(Instant::now, |t| t + self.config.retry_interval));
        [backoff, gang, retry].into_iter().flatten().min()
    }

    /// Whether pods wait in the active queue (the loop should not sleep).
    pub fn has_queued(&self) -> bool {
        !self.active.is_empty()
    }

    /// Whether both watches have listed everything once (deciding earlier would overcommit).
    pub fn synced(&self) -> bool {
        self.nodes_synced && self.pods_synced
    }

    /// Decides for up to `max` queued pods and returns what to do.
    pub fn next_actions(&mut self, now: Instant, max: usize) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.synced() {
            return actions;
        }
        self.expire_gangs(now, &mut actions);
        while let Some(entry) = self.backoff.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.in_backoff.remove(&key);
            self.enqueue(&key);
        }
        let changed = self.view.generation() != self.retry_generation;
        let due = self.last_retry.is_none_or(|t| now.duration_since(t) >= self.config.retry_interval);
        if changed && due && !self.unschedulable.is_empty() {
            self.retry_generation = self.view.generation();
            self.last_retry = Some(now);
            let mut keys: Vec<PodKey> = self.unschedulable.drain().collect();
            keys.sort();
            keys.iter().for_each(|k| self.enqueue(k));
        }
        let mut gangs_seen: HashSet<String> = HashSet::new();
        let mut decided = 0;
        let refused_before = self.unschedulable.len();
        while decided < max {
            let Some(key) = self.active.pop_front() else { break };
            self.queued.remove(&key);
            let Some(pod) = self.view.pod(&key).cloned() else { continue };
            if !pod.is_pending() || self.view.is_assumed(&key) {
                continue;
            }
            decided += 1;
            match &pod.gang {
                Some(g) if gangs_seen.insert(g.key.clone()) => self.schedule_gang(&pod, now, &mut actions),
                Some(_) => {}
                None => match place_pod(&self.profile, &self.view, &pod) {
                    Ok(position) => {
                        let node = self.view.nodes()[position].name.clone();
                        self.bind(&pod, node, &mut actions);
                    }
                    Err(why) => self.refuse(&pod, &why, &mut actions),
                },
            }
        }
        if self.unschedulable.len() > refused_before {
            // Pods refused now saw the view as it is: retrying them helps only after a change.
            self.retry_generation = self.view.generation();
        }
        self.metrics.gangs_waiting.set(self.gangs.len() as i64);
        actions
    }

    fn bind(&mut self, pod: &PodInfo, node: String, actions: &mut Vec<Action>) {
        self.metrics.attempt("scheduled");
        self.profile.reserve(&mut self.view, pod, &node);
        self.unschedulable.remove(&pod.key);
        self.reported.remove(&pod.key);
        actions.push(Action::Bind(Binding {
            key: pod.key.clone(),
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            node,
        }));
    }

    fn refuse_with(&mut self, pod: &PodInfo, message: String, actions: &mut Vec<Action>) {
        self.metrics.attempt("unschedulable");
        self.unschedulable.insert(pod.key.clone());
        if self.reported.get(&pod.key) != Some(&message) {
            self.reported.insert(pod.key.clone(), message.clone());
            actions.push(Action::ReportUnschedulable(UnschedulableReport {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                message,
            }));
        }
    }

    fn refuse(&mut self, pod: &PodInfo, why: &Unschedulable, actions: &mut Vec<Action>) {
        self.refuse_with(pod, why.message(), actions);
    }

    fn release_gang(&mut self, gang: &str) {
        if let Some(reservation) = self.gangs.remove(gang) {
            for key in reservation.placeholders {
                self.view.delete_pod(&key);
            }
        }
    }

    fn expire_gangs(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let expired: Vec<String> =
            self.gangs.iter().filter(|(_, r)| r.deadline <= now).map(|(k, _)| k.clone()).collect();
        for gang in expired {
            self.release_gang(&gang);
            let members: Vec<PodInfo> = self.view.pending_gang_members(&gang).into_iter().cloned().collect();
            let size = members.first().and_then(|m| m.gang.as_ref()).map_or(0, |g| g.size);
            let placed = self.view.placed_gang_members(&gang);
            let message = format!(
                "gang {gang}: {} of {size} pods arrived within {:?}; its reservation was released",
                members.len() + placed,
                self.config.gang_wait
            );
            for m in &members {
                self.refuse_with(m, message.clone(), actions);
            }
            self.expired.insert(gang, (members.len() + placed, message));
        }
    }

    fn schedule_gang(&mut self, pod: &PodInfo, now: Instant, actions: &mut Vec<Action>) {
        let Some(gang) = pod.gang.clone() else { return };
        let pending: Vec<PodInfo> = self.view.pending_gang_members(&gang.key).into_iter().cloned().collect();
        let placed = self.view.placed_gang_members(&gang.key);
        let needed = gang.size.saturating_sub(placed).max(1);
        let gathered = pending.len() + placed;
        if matches!(self.profile.permit(pod, gathered), Permit::Allow) {
            // Every member is here: give back the held room and place the real pods at once.
            self.release_gang(&gang.key);
            self.expired.remove(&gang.key);
            let members: Vec<PodInfo> = pending.into_iter().take(needed).collect();
            match place_gang(&self.profile, &self.view, &members) {
                Ok(positions) => {
                    for (member, position) in members.iter().zip(positions) {
                        let node = self.view.nodes()[position].name.clone();
                        self.bind(member, node, actions);
                    }
                }
                Err(why) => members.iter().for_each(|m| self.refuse(m, &why, actions)),
            }
            return;
        }
        if self.gangs.contains_key(&gang.key) {
            return; // still gathering; the reservation holds
        }
        let Permit::Wait(wait) = self.profile.permit(pod, gathered) else { return };
        if let Some((then, message)) = self.expired.get(&gang.key).cloned()
            && gathered <= then
        {
            pending.iter().for_each(|m| self.refuse_with(m, message.clone(), actions));
            return;
        }
        // Reserve for the whole gang, the missing members shaped like the first one: a gang
        // holds all it needs or nothing, so two gangs can never each hold half.
        let mut members = pending.clone();
        while members.len() < needed {
            members.push(pending[0].clone());
        }
        match place_gang(&self.profile, &self.view, &members) {
            Ok(positions) => {
                let mut placeholders = Vec::with_capacity(members.len());
                for (i, (member, position)) in members.iter().zip(positions).enumerate() {
                    let key = format!("{PLACEHOLDER_PREFIX}{}/{i}", gang.key);
                    let holder = PodInfo {
                        key: key.clone(),
                        requests: member.requests,
                        gpu_memory_mib: member.gpu_memory_mib,
                        node_name: Some(self.view.nodes()[position].name.clone()),
                        ..Default::default()
                    };
                    self.view.apply_pod(holder);
                    placeholders.push(key);
                }
                self.gangs.insert(gang.key.clone(), GangReservation { placeholders, deadline: now + wait });
            }
            Err(why) => pending.iter().for_each(|m| self.refuse(m, &why, actions)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::GangRef;
    use crate::view::tests::{node, pod};
    use pictor_crds::contract::Vendor;

    fn scheduler() -> Scheduler {
        let config = SchedulerConfig { gang_wait: Duration::from_secs(30), ..Default::default() };
        let mut s = Scheduler::new(Profile::pictor(config.gang_wait), config, Arc::new(Metrics::default()));
        let now = Instant::now();
        s.apply(Input::NodesSynced, now);
        s.apply(Input::PodsSynced, now);
        s
    }

    fn member(gang: &str, i: usize, size: usize, gpus: i64) -> PodInfo {
        PodInfo {
            gang: Some(GangRef { key: format!("default/{gang}"), size }),
            ..pod(&format!("{gang}-{i}"), gpus)
        }
    }

    fn bound(actions: &[Action]) -> Vec<(String, String)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Bind(b) => Some((b.name.clone(), b.node.clone())),
                _ => None,
            })
            .collect()
    }

    fn reports(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::ReportUnschedulable(r) => Some(r.message.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn nothing_is_decided_before_both_watches_have_synced() {
        let config = SchedulerConfig::default();
        let mut s = Scheduler::new(Profile::pictor(config.gang_wait), config, Arc::new(Metrics::default()));
        let now = Instant::now();
        s.apply(Input::NodeApplied(node("n", 8)), now);
        s.apply(Input::PodApplied(pod("p", 1)), now);
        s.apply(Input::NodesSynced, now);
        assert!(s.next_actions(now, 100).is_empty());
        s.apply(Input::PodsSynced, now);
        assert_eq!(bound(&s.next_actions(now, 100)), [("p".into(), "n".into())]);
    }

    #[test]
    fn reserved_room_is_not_handed_out_twice() {
        let mut s = scheduler();
        let now = Instant::now();
        s.apply(Input::NodeApplied(node("n", 8)), now);
        for i in 0..3 {
            s.apply(Input::PodApplied(pod(&format!("p{i}"), 4)), now);
        }
        let actions = s.next_actions(now, 100);
        assert_eq!(bound(&actions).len(), 2);
        assert_eq!(reports(&actions), ["0/1 nodes are available: 1 Insufficient nvidia.com/gpu."]);
    }

    #[test]
    fn two_pods_share_a_gpu_within_its_memory_and_a_third_waits_with_the_reason() {
        use crate::shared_gpus::SharedGpus;
        let mut s = scheduler();
        let now = Instant::now();
        // One RTX 4090 (24,564 MiB) time-sliced four ways, and an untouched whole-GPU node.
        let shared = NodeInfo {
            shared: Some(SharedGpus { memory_mib: 24_564, used_mib: vec![0] }),
            ..node("shared", 4)
        };
        s.apply(Input::NodeApplied(shared), now);
        s.apply(Input::NodeApplied(node("whole", 1)), now);
        let fractional = |name: &str| PodInfo { gpu_memory_mib: Some(12_000), ..pod(name, 1) };
        s.apply(Input::PodApplied(fractional("a")), now);
        s.apply(Input::PodApplied(fractional("b")), now);
        let actions = s.next_actions(now, 100);
        assert_eq!(bound(&actions), [("a".into(), "shared".into()), ("b".into(), "shared".into())]);
        s.apply(Input::PodApplied(fractional("c")), now);
        let actions = s.next_actions(now, 100);
        assert!(bound(&actions).is_empty(), "a third 12,000 MiB would overflow the GPU");
        assert_eq!(
            reports(&actions),
            [
                "0/2 nodes are available: 1 node(s) didn't share their GPUs, 1 node(s) had no shared GPU with the requested memory free."
            ]
        );
        // A whole-GPU pod still finds the whole GPU: the fractional ones left it alone.
        s.apply(Input::PodApplied(pod("w", 1)), now);
        assert_eq!(bound(&s.next_actions(now, 100)), [("w".into(), "whole".into())]);
    }

    #[test]
    fn fractional_pods_fill_a_shared_gpu_before_starting_another() {
        use crate::shared_gpus::SharedGpus;
        let mut s = scheduler();
        let now = Instant::now();
        for name in ["s1", "s2"] {
            let shared = NodeInfo {
                shared: Some(SharedGpus { memory_mib: 80_000, used_mib: vec![0, 0] }),
                ..node(name, 8)
            };
            s.apply(Input::NodeApplied(shared), now);
        }
        for (i, mib) in [30_000, 30_000, 20_000].into_iter().enumerate() {
            s.apply(
                Input::PodApplied(PodInfo { gpu_memory_mib: Some(mib), ..pod(&format!("f{i}"), 1) }),
                now,
            );
            let placed = bound(&s.next_actions(now, 100));
            assert_eq!(placed.len(), 1);
        }
        let used: Vec<Vec<i64>> =
            s.view.nodes().iter().map(|n| n.shared.as_ref().unwrap().used_mib.clone()).collect();
        let mut gpus: Vec<i64> = used.concat();
        gpus.sort_unstable();
        assert_eq!(
            gpus,
            [0, 0, 0, 80_000],
            "three pods packed onto one GPU; three GPUs left whole: {used:?}"
        );
    }

    #[test]
    fn latency_is_recorded_once_whether_the_answer_or_the_watch_comes_first() {
        let metrics = Arc::new(Metrics::default());
        let config = SchedulerConfig::default();
        let mut s = Scheduler::new(Profile::pictor(config.gang_wait), config, metrics.clone());
        let now = Instant::now();
        s.apply(Input::NodesSynced, now);
        s.apply(Input::PodsSynced, now);
        s.apply(Input::NodeApplied(node("n", 8)), now);
        s.apply(Input::PodApplied(pod("watch-first", 1)), now);
        s.apply(Input::PodApplied(pod("answer-first", 1)), now);
        assert_eq!(bound(&s.next_actions(now, 10)).len(), 2);
        s.apply(Input::PodApplied(PodInfo { node_name: Some("n".into()), ..pod("watch-first", 1) }), now);
        s.apply(Input::BindSucceeded("default/watch-first".into()), now);
        s.apply(Input::BindSucceeded("default/answer-first".into()), now);
        s.apply(Input::PodApplied(PodInfo { node_name: Some("n".into()), ..pod("answer-first", 1) }), now);
        let text = metrics.render().unwrap();
        assert!(text.contains("pictor_scheduler_scheduling_latency_seconds_count 2"), "{text}");
        assert!(text.contains("pictor_scheduler_pending_pods 0"), "{text}");
    }

    #[test]
    fn a_failed_binding_gives_the_room_back_and_retries_after_a_backoff() {
        let mut s = scheduler();
        let now = Instant::now();
        s.apply(Input::NodeApplied(node("n", 1)), now);
        s.apply(Input::PodApplied(pod("p", 1)), now);
        assert_eq!(bound(&s.next_actions(now, 10)).len(), 1);
        s.apply(Input::BindFailed { key: "default/p".into(), pod_gone: false }, now);
        assert_eq!(s.view().node("n").unwrap().used.gpus[Vendor::Nvidia], 0);
        assert!(s.next_actions(now, 10).is_empty(), "waits for its backoff");
        let later = now + Duration::from_secs(1);
        assert!(s.next_wake().is_some_and(|w| w <= later));
        assert_eq!(bound(&s.next_actions(later, 10)), [("p".into(), "n".into())]);
    }

    #[test]
    fn a_pod_deleted_while_pending_or_binding_is_forgotten() {
        let mut s = scheduler();
        let now = Instant::now();
        s.apply(Input::PodApplied(pod("p", 1)), now);
        assert_eq!(reports(&s.next_actions(now, 10)).len(), 1);
        s.apply(Input::PodDeleted("default/p".into()), now);
        s.apply(Input::NodeApplied(node("n", 8)), now);
        assert!(s.next_actions(now + Duration::from_secs(5), 10).is_empty());
        s.apply(Input::PodApplied(pod("q", 1)), now);
        assert_eq!(bound(&s.next_actions(now, 10)).len(), 1);
        s.apply(Input::BindFailed { key: "default/q".into(), pod_gone: true }, now);
        assert!(s.view().pod("default/q").is_none());
        assert!(s.next_actions(now + Duration::from_secs(20), 10).is_empty());
    }

    #[test]
    fn an_unschedulable_pod_is_reported_once_and_retried_when_the_cluster_changes() {
        let mut s = scheduler();
        let now = Instant::now();
        s.apply(Input::NodeApplied(node("small", 1)), now);
        s.apply(Input::PodApplied(pod("big", 8)), now);
        assert_eq!(reports(&s.next_actions(now, 10)).len(), 1);
        let later = now + Duration::from_secs(2);
        assert!(s.next_actions(later, 10).is_empty(), "no change, no retry, no second report");
        s.apply(Input::NodeApplied(node("big-node", 8)), later);
        assert_eq!(bound(&s.next_actions(later, 10)), [("big".into(), "big-node".into())]);
    }

    #[test]
    fn an_unschedulable_pod_does_not_wake_the_loop_until_the_view_changes() {
        let mut s = scheduler();
        let now = Instant::now();
        s.apply(Input::NodeApplied(node("small", 1)), now);
        s.apply(Input::PodApplied(pod("big", 8)), now);
        s.next_actions(now, 10);
        assert_eq!(s.next_wake(), None, "nothing timed is pending, so the loop may sleep");
        s.apply(Input::NodeApplied(node("other", 1)), now);
        assert!(s.next_wake().is_some());
    }

    #[test]
    fn a_gang_binds_only_when_complete_and_holds_its_room_meanwhile() {
        let mut s = scheduler();
        let now = Instant::now();
        for i in 0..4 {
            s.apply(Input::NodeApplied(node(&format!("n{i}"), 8)), now);
        }
        for i in 0..3 {
            s.apply(Input::PodApplied(member("g", i, 4, 8)), now);
        }
        assert!(s.next_actions(now, 100).is_empty(), "3 of 4 members: nothing binds");
        // The held room keeps a solo pod off the gang's nodes.
        s.apply(Input::PodApplied(pod("solo", 1)), now);
        let solo = s.next_actions(now, 100);
        assert_eq!(reports(&solo).len(), 1, "{solo:?}");
        s.apply(Input::PodApplied(member("g", 3, 4, 8)), now);
        let actions = s.next_actions(now, 100);
        let mut nodes: Vec<String> = bound(&actions).into_iter().map(|(_, n)| n).collect();
        nodes.sort();
        assert_eq!(nodes, ["n0", "n1", "n2", "n3"]);
    }

    #[test]
    fn a_gang_that_never_completes_releases_its_reservation() {
        let mut s = scheduler();
        let now = Instant::now();
        s.apply(Input::NodeApplied(node("n0", 8)), now);
        s.apply(Input::PodApplied(member("g", 0, 2, 4)), now);
        assert!(s.next_actions(now, 10).is_empty());
        assert_eq!(s.view().node("n0").unwrap().used.gpus[Vendor::Nvidia], 8);
        let late = now + Duration::from_secs(31);
        let actions = s.next_actions(late, 10);
        assert!(reports(&actions)[0].contains("1 of 2 pods arrived"), "{actions:?}");
        assert_eq!(s.view().node("n0").unwrap().used.gpus[Vendor::Nvidia], 0);
    }

    #[test]
    fn two_competing_gangs_never_each_hold_half() {
        let mut s = scheduler();
        let now = Instant::now();
        for i in 0..4 {
            s.apply(Input::NodeApplied(node(&format!("n{i}"), 8)), now);
        }
        // Room for one 4×8 gang; both gangs arrive interleaved.
        for i in 0..4 {
            s.apply(Input::PodApplied(member("a", i, 4, 8)), now);
            s.apply(Input::PodApplied(member("b", i, 4, 8)), now);
        }
        let first = s.next_actions(now, 100);
        let names: Vec<String> = bound(&first).into_iter().map(|(p, _)| p).collect();
        assert_eq!(names.len(), 4, "{first:?}");
        let gang = &names[0][..1];
        assert!(names.iter().all(|n| n.starts_with(gang)), "one whole gang binds: {names:?}");
        assert_eq!(reports(&first).len(), 4, "the other is refused whole");
        // The winner finishes; the loser then binds whole.
        for n in &names {
            let mut done = member(gang, n[2..].parse().unwrap(), 4, 8);
            done.done = true;
            s.apply(Input::PodApplied(done), now);
        }
        let second = s.next_actions(now + Duration::from_secs(2), 100);
        assert_eq!(bound(&second).len(), 4, "{second:?}");
    }
}
