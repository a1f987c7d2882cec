//! What the hub operator's `/metrics` exports, every family registered in [`OperatorMetrics::new`]:
//! reconciles and their errors and durations by controller, how long work waits for placement,
//! WorkUnits by phase, members Ready and NotReady, jobs by phase and each render job's frames.
//!
//! A part of the operator with metrics of its own keeps them in a struct with a `register`
//! function like [`ControllerMetrics::register`], and `OperatorMetrics::new` calls it: one
//! registry under the `pictor_` prefix, one `/metrics`.

use crate::hub_index::HubIndex;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::Store;
use pictor_crds::contract::labels::CHUNK;
use pictor_crds::contract::labels::VERIFIES;
use pictor_crds::v1alpha1::{CONDITION_READY, RenderJob, TrainingJob, WorkUnit, WorkUnitPhase};
use pictor_telemetry::NamedRegistry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Every metric family of the operator and the registry `/metrics` serves.
#[derive(Debug)]
pub struct OperatorMetrics {
    registry: Arc<Registry>,
    series: BTreeSet<String>,
    /// Reconciles, errors and durations by controller.
    pub controllers: ControllerMetrics,
    /// How work is placed on members.
    pub placement: PlacementMetrics,
    /// Gauges of the hub's state, refreshed from the watches.
    pub hub: HubGauges,
    /// The watches the operator holds open on the hub's API server.
    pub watches: WatchMetrics,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl OperatorMetrics {
    /// Registers every family under the `pictor_` prefix.
    pub fn new() -> Self {
        let mut registry = NamedRegistry::with_prefix("pictor");
        let controllers = ControllerMetrics::register(&mut registry);
        let placement = PlacementMetrics::register(&mut registry);
        let hub = HubGauges::register(&mut registry);
        let watches = WatchMetrics::register(&mut registry);
        let (registry, series) = registry.finish();
        Self { registry, series, controllers, placement, hub, watches }
    }

    /// The name of every series `/metrics` may export.
    pub fn series(&self) -> &BTreeSet<String> {
        &self.series
    }

    /// The registry `/metrics` serves.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// The OpenMetrics text of every family.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        pictor_telemetry::encode(&self.registry)
    }
}

/// The controller a reconcile belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `renderjob`, `trainingjob` or `gpucluster`.
    pub controller: &'static str,
}

/// A reconcile's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `renderjob`, `trainingjob` or `gpucluster`.
    pub controller: &'static str,
    /// `success` or `error`.
    pub result: &'static str,
}

/// Why a reconcile failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `renderjob`, `trainingjob` or `gpucluster`.
    pub controller: &'static str,
    /// The error variant's metric label, e.g. `hub_call_failed`.
    pub reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 1 ms to about 30 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn wait_histogram() -> Histogram {
    // 50 ms to about 55 minutes.
    Histogram::new(exponential_buckets(0.05, 2.0, 17))
}

/// Reconciles by controller and result, errors by reason, and how long they take.
#[derive(Debug)]
pub struct ControllerMetrics {
    /// `pictor_operator_reconciles_total{controller,result}`.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// `pictor_operator_reconcile_errors_total{controller,reason}`.
    pub errors: Family<ErrorLabels, Counter>,
    /// `pictor_operator_reconcile_duration_seconds{controller}`.
    pub duration: HistogramFamily<ControllerLabels>,
}

impl ControllerMetrics {
    /// Creates the families and registers them.
    pub fn register(registry: &mut NamedRegistry) -> Self {
        let metrics = Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
        };
        registry.register(
            "operator_reconciles",
            "Reconciles by controller and result",
            metrics.reconciles.clone(),
        );
        registry.register(
            "operator_reconcile_errors",
            "Failed reconciles by controller and error reason",
            metrics.errors.clone(),
        );
        registry.register(
            "operator_reconcile_duration_seconds",
            "Seconds one reconcile took, by controller",
            metrics.duration.clone(),
        );
        metrics
    }

    /// Records one reconcile of `controller`: its error's metric label when it failed.
    pub fn reconciled(&self, controller: &'static str, error: Option<&'static str>, took: Duration) {
        let result = if error.is_some() { "error" } else { "success" };
        self.reconciles.get_or_create(&ReconcileLabels { controller, result }).inc();
        if let Some(reason) = error {
            self.errors.get_or_create(&ErrorLabels { controller, reason }).inc();
        }
        self.duration.get_or_create(&ControllerLabels { controller }).observe(took.as_secs_f64());
    }
}

/// The kind of object a watch lists and follows.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    /// `WorkUnit`, `GpuCluster`, `Lease`, `RenderJob`, …
    pub kind: &'static str,
}

/// `pictor_operator_watches{kind}`: watches opened on the hub, by kind. Every watch costs the
/// API server a stream and the operator a decoded copy of each object, so each kind should be
/// watched once.
#[derive(Debug)]
pub struct WatchMetrics {
    /// Watches opened, by kind.
    pub opened: Family<WatchLabels, Gauge>,
    /// Objects a watch skipped because they did not decode, by kind.
    pub undecodable: Family<WatchLabels, Counter>,
}

impl WatchMetrics {
    /// Creates the families and registers them.
    pub fn register(registry: &mut NamedRegistry) -> Self {
        let metrics = Self { opened: Family::default(), undecodable: Family::default() };
        registry.register(
            "operator_watches",
            "Watches the operator opened on the hub, by kind",
            metrics.opened.clone(),
        );
        registry.register(
            "operator_undecodable_objects",
            "Objects a watch skipped because the operator's types could not read them (e.g. stored under an older schema), by kind",
            metrics.undecodable.clone(),
        );
        metrics
    }

    /// Records that a watch of `kind` was opened.
    pub fn opened(&self, kind: &'static str) {
        self.opened.get_or_create(&WatchLabels { kind }).inc();
    }

    /// What a watch of `kind` does with an object it cannot decode: a warning and a count.
    pub fn skipping(&self, kind: &'static str) -> pictor_telemetry::watch::Skipped {
        let undecodable = self.undecodable.clone();
        std::sync::Arc::new(move |name: &str, why: &str| {
            tracing::warn!(kind, object = name, error = why, "skipped an object the operator cannot decode");
            undecodable.get_or_create(&WatchLabels { kind }).inc();
        })
    }
}

/// The kind of job a unit serves.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `RenderJob` or `TrainingJob`.
    pub kind: &'static str,
}

/// Why a unit was placed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlacedLabels {
    /// `RenderJob` or `TrainingJob`.
    pub kind: &'static str,
    /// `first` (a chunk's or gang's first attempt), `retry` or `verification`.
    pub attempt: &'static str,
}

/// One job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// `RenderJob` or `TrainingJob`.
    pub kind: &'static str,
    /// The job's namespace.
    pub namespace: String,
    /// The job's name.
    pub job: String,
}

/// How work reaches members.
#[derive(Debug)]
pub struct PlacementMetrics {
    /// `pictor_placement_latency_seconds{kind}`: from the moment work needed a member (the job
    /// created, the previous attempt finished, the output to verify written) to its WorkUnit.
    pub latency: HistogramFamily<KindLabels>,
    /// `pictor_units_placed_total{kind,attempt}`.
    pub placed: Family<PlacedLabels, Counter>,
    /// `pictor_units_awaiting_placement{kind,namespace,job}`: chunks or gangs that need a member
    /// and have none yet (no member fits, the budget, or the job's in-flight limit).
    pub awaiting: Family<JobLabels, Gauge>,
}

impl PlacementMetrics {
    /// Creates the families and registers them.
    pub fn register(registry: &mut NamedRegistry) -> Self {
        let metrics = Self {
            latency: Family::new_with_constructor(wait_histogram),
            placed: Family::default(),
            awaiting: Family::default(),
        };
        registry.register(
            "placement_latency_seconds",
            "Seconds work waited for a member: from needing one to its WorkUnit being created",
            metrics.latency.clone(),
        );
        registry.register("units_placed", "WorkUnits placed on members, by attempt", metrics.placed.clone());
        registry.register(
            "units_awaiting_placement",
            "Chunks or gangs of a job that need a member and have none yet",
            metrics.awaiting.clone(),
        );
        metrics
    }

    /// Records a unit placed after waiting since `since` (when known).
    pub fn placed(&self, kind: &'static str, attempt: &'static str, since: Option<&Time>) {
        self.placed.get_or_create(&PlacedLabels { kind, attempt }).inc();
        if let Some(since) = since {
            let waited = k8s_openapi::jiff::Timestamp::now().duration_since(since.0).as_secs_f64().max(0.0);
            self.latency.get_or_create(&KindLabels { kind }).observe(waited);
        }
    }

    /// Sets how much of a job waits for a member; a finished or deleted job's series goes.
    pub fn awaiting(&self, kind: &'static str, namespace: &str, job: &str, units: Option<i64>) {
        let labels = JobLabels { kind, namespace: namespace.to_string(), job: job.to_string() };
        match units {
            Some(n) => {
                self.awaiting.get_or_create(&labels).set(n);
            }
            None => {
                self.awaiting.remove(&labels);
            }
        }
    }
}

/// Why `unit` was placed (`first`, `retry`, `verification`) and since when its work had needed a
/// member: the job's creation for a first attempt, the end of the previous attempt of the same
/// chunk or gang for a retry, the end of the verified render for a verification.
pub fn waiting_since(
    unit: &WorkUnit,
    units: &[&WorkUnit],
    job_created: Option<&Time>,
) -> (&'static str, Option<Time>) {
    let labels = unit.metadata.labels.as_ref();
    let finished = |u: &&&WorkUnit| u.status.as_ref().and_then(|s| s.completion_time.clone());
    if let Some(checked) = labels.and_then(|l| l.get(VERIFIES)) {
        let verified = units.iter().find(|u| u.metadata.name.as_ref() == Some(checked));
        return ("verification", verified.and_then(|u| finished(&u)));
    }
    if unit.spec.attempt <= 1 {
        return ("first", job_created.cloned());
    }
    let chunk = labels.and_then(|l| l.get(CHUNK));
    let previous = units
        .iter()
        .filter(|u| u.metadata.labels.as_ref().is_none_or(|l| !l.contains_key(VERIFIES)))
        .filter(|u| u.metadata.labels.as_ref().and_then(|l| l.get(CHUNK)) == chunk)
        .filter(|u| u.spec.attempt < unit.spec.attempt)
        .filter_map(|u| finished(&u))
        .max_by_key(|t| t.0);
    ("retry", previous)
}

/// A phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The status phase; `New` before the agent reported one.
    pub phase: String,
}

/// A job kind and phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobPhaseLabels {
    /// `RenderJob` or `TrainingJob`.
    pub kind: &'static str,
    /// The job's phase; `Pending` before the operator wrote one.
    pub phase: String,
}

/// A member's readiness.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberStateLabels {
    /// `Ready` or `NotReady`.
    pub state: &'static str,
}

/// A member's GPUs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberGpuLabels {
    /// The member's name.
    pub member: String,
    /// `total` or `free`.
    pub state: &'static str,
}

/// A render job's frames.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrameLabels {
    /// The job's namespace.
    pub namespace: String,
    /// The job's name.
    pub job: String,
    /// `total`, `done`, `running` or `failed`.
    pub state: &'static str,
}

/// Gauges of the hub's state, set from the watched stores by [`refresh_hub`] and
/// [`refresh_render_jobs`] / [`refresh_training_jobs`].
#[derive(Debug)]
pub struct HubGauges {
    /// `pictor_work_units{phase}`.
    pub work_units: Family<PhaseLabels, Gauge>,
    /// `pictor_members{state}`.
    pub members: Family<MemberStateLabels, Gauge>,
    /// `pictor_member_gpus{member,state}`.
    pub member_gpus: Family<MemberGpuLabels, Gauge>,
    /// `pictor_jobs{kind,phase}`.
    pub jobs: Family<JobPhaseLabels, Gauge>,
    /// `pictor_render_job_frames{namespace,job,state}`.
    pub render_frames: Family<FrameLabels, Gauge>,
}

impl HubGauges {
    /// Creates the families and registers them.
    pub fn register(registry: &mut NamedRegistry) -> Self {
        let metrics = Self {
            work_units: Family::default(),
            members: Family::default(),
            member_gpus: Family::default(),
            jobs: Family::default(),
            render_frames: Family::default(),
        };
        registry.register("work_units", "WorkUnits on the hub by phase", metrics.work_units.clone());
        registry.register("members", "Member clusters by readiness (heartbeat)", metrics.members.clone());
        registry.register(
            "member_gpus",
            "GPUs a member advertises, total and free",
            metrics.member_gpus.clone(),
        );
        registry.register("jobs", "RenderJobs and TrainingJobs by phase", metrics.jobs.clone());
        registry.register(
            "render_job_frames",
            "Frames of each RenderJob: total, done, running, failed",
            metrics.render_frames.clone(),
        );
        metrics
    }
}

/// A phase as the API writes it (`Running`), for a label.
fn phase_name(phase: &impl serde::Serialize) -> String {
    serde_json::to_value(phase).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// How often the gauges are set from the stores.
pub const REFRESH: Duration = Duration::from_secs(5);

/// Sets WorkUnits by phase, members by readiness and their GPUs from the hub's index, every
/// [`REFRESH`], for the life of the process.
pub async fn refresh_hub(index: HubIndex, metrics: Arc<OperatorMetrics>) {
    loop {
        set_hub_gauges(&index, &metrics.hub);
        tokio::time::sleep(REFRESH).await;
    }
}

fn set_hub_gauges(index: &HubIndex, gauges: &HubGauges) {
    let mut units: BTreeMap<String, i64> =
        ["New", "Pending", "Running", "Succeeded", "Failed", "Lost"].map(|p| (p.to_string(), 0)).into();
    for unit in index.units() {
        let phase = unit.status.as_ref().and_then(|s| s.phase);
        let name = phase.map_or_else(|| "New".to_string(), |p: WorkUnitPhase| phase_name(&p));
        *units.entry(name).or_default() += 1;
    }
    for (phase, n) in units {
        gauges.work_units.get_or_create(&PhaseLabels { phase }).set(n);
    }
    let (mut ready, mut not_ready) = (0, 0);
    gauges.member_gpus.clear();
    for cluster in index.clusters.state() {
        let status = cluster.status.as_ref();
        let is_ready = status
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == CONDITION_READY && c.status == "True"));
        if is_ready {
            ready += 1
        } else {
            not_ready += 1
        }
        if let Some(inventory) = status.and_then(|s| s.inventory.as_ref()) {
            let member = cluster.metadata.name.clone().unwrap_or_default();
            gauges
                .member_gpus
                .get_or_create(&MemberGpuLabels { member: member.clone(), state: "total" })
                .set(inventory.total_gpus);
            gauges
                .member_gpus
                .get_or_create(&MemberGpuLabels { member, state: "free" })
                .set(inventory.free_gpus);
        }
    }
    gauges.members.get_or_create(&MemberStateLabels { state: "Ready" }).set(ready);
    gauges.members.get_or_create(&MemberStateLabels { state: "NotReady" }).set(not_ready);
}

fn set_job_phases(
    gauges: &HubGauges,
    kind: &'static str,
    phases: impl Iterator<Item = String>,
    all: &[&str],
) {
    let mut counts: BTreeMap<String, i64> = all.iter().map(|p| (p.to_string(), 0)).collect();
    for phase in phases {
        *counts.entry(phase).or_default() += 1;
    }
    for (phase, n) in counts {
        gauges.jobs.get_or_create(&JobPhaseLabels { kind, phase }).set(n);
    }
}

/// Sets RenderJobs by phase and each job's frames from the render controller's store.
pub async fn refresh_render_jobs(jobs: Store<RenderJob>, metrics: Arc<OperatorMetrics>) {
    loop {
        let list = jobs.state();
        let gauges = &metrics.hub;
        let phases = list.iter().map(|j| {
            j.status.as_ref().and_then(|s| s.phase).map_or_else(|| "Pending".to_string(), |p| phase_name(&p))
        });
        let all = ["Pending", "Rendering", "Verifying", "Succeeded", "Failed", "Cancelled"];
        set_job_phases(gauges, "RenderJob", phases, &all);
        gauges.render_frames.clear();
        for job in &list {
            let Some(frames) = job.status.as_ref().and_then(|s| s.frames.as_ref()) else { continue };
            let (namespace, name) = (
                job.metadata.namespace.clone().unwrap_or_default(),
                job.metadata.name.clone().unwrap_or_default(),
            );
            for (state, n) in [
                ("total", frames.total),
                ("done", frames.done),
                ("running", frames.running),
                ("failed", frames.failed),
            ] {
                let labels = FrameLabels { namespace: namespace.clone(), job: name.clone(), state };
                gauges.render_frames.get_or_create(&labels).set(n);
            }
        }
        tokio::time::sleep(REFRESH).await;
    }
}

/// Sets TrainingJobs by phase from the training controller's store.
pub async fn refresh_training_jobs(jobs: Store<TrainingJob>, metrics: Arc<OperatorMetrics>) {
    loop {
        let list = jobs.state();
        let phases = list.iter().map(|j| {
            j.status.as_ref().and_then(|s| s.phase).map_or_else(|| "Pending".to_string(), |p| phase_name(&p))
        });
        let all = ["Pending", "Running", "Restarting", "Succeeded", "Failed", "Cancelled"];
        set_job_phases(&metrics.hub, "TrainingJob", phases, &all);
        tokio::time::sleep(REFRESH).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exported_under_the_pictor_prefix() {
        let m = OperatorMetrics::new();
        m.controllers.reconciled("renderjob", None, Duration::from_millis(3));
        m.controllers.reconciled("renderjob", Some("hub_call_failed"), Duration::from_millis(3));
        m.placement.placed("RenderJob", "first", Some(&Time(k8s_openapi::jiff::Timestamp::now())));
        m.placement.awaiting("RenderJob", "default", "classroom", Some(4));
        let text = m.render().unwrap();
        for line in [
            "pictor_operator_reconciles_total{controller=\"renderjob\",result=\"success\"} 1",
            "pictor_operator_reconciles_total{controller=\"renderjob\",result=\"error\"} 1",
            "pictor_operator_reconcile_errors_total{controller=\"renderjob\",reason=\"hub_call_failed\"} 1",
            "pictor_operator_reconcile_duration_seconds_count{controller=\"renderjob\"} 2",
            "pictor_placement_latency_seconds_count{kind=\"RenderJob\"} 1",
            "pictor_units_placed_total{kind=\"RenderJob\",attempt=\"first\"} 1",
            "pictor_units_awaiting_placement{kind=\"RenderJob\",namespace=\"default\",job=\"classroom\"} 4",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        for series in [
            "pictor_work_units",
            "pictor_members",
            "pictor_member_gpus",
            "pictor_jobs",
            "pictor_render_job_frames",
            "pictor_operator_reconcile_duration_seconds_bucket",
        ] {
            assert!(m.series().contains(series), "{series} not registered: {:?}", m.series());
        }
        m.placement.awaiting("RenderJob", "default", "classroom", None);
        assert!(!m.render().unwrap().contains("job=\"classroom\""), "a finished job's series goes");
    }

    #[test]
    fn placement_waits_from_the_job_the_failed_attempt_or_the_verified_render() {
        let unit = |name: &str, attempt: i64, labels: serde_json::Value, done: Option<i64>| -> WorkUnit {
            let mut u = serde_json::json!({"apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
                "metadata": {"name": name, "labels": labels},
                "spec": {"jobRef": {"kind": "RenderJob", "namespace": "d", "name": "j", "uid": "1"},
                         "pods": [{"name": "p", "image": "i", "gpuVendor": "nvidia", "gpus": 1}],
                         "agreedPricePerGpuHour": 1, "attempt": attempt}});
            if let Some(s) = done {
                let at = Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap());
                u["status"] = serde_json::json!({"phase": "Failed", "completionTime": at});
            }
            serde_json::from_value(u).unwrap()
        };
        let at = |s| Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap());
        let created = at(100);
        let c0 = serde_json::json!({"pictor.network/chunk": "0"});
        let failed = unit("c0-1", 1, c0.clone(), Some(200));
        let other = unit("c1-1", 1, serde_json::json!({"pictor.network/chunk": "1"}), Some(300));
        let existing = [&failed, &other];
        assert_eq!(
            waiting_since(&unit("c0-1", 1, c0.clone(), None), &[], Some(&created)),
            ("first", Some(at(100)))
        );
        assert_eq!(
            waiting_since(&unit("c0-2", 2, c0, None), &existing, Some(&created)),
            ("retry", Some(at(200)))
        );
        let check = unit("v", 1, serde_json::json!({"pictor.network/verifies": "c1-1"}), None);
        assert_eq!(waiting_since(&check, &existing, Some(&created)), ("verification", Some(at(300))));
    }

    #[test]
    fn job_phases_are_counted_with_zeros_for_the_empty_ones() {
        let m = OperatorMetrics::new();
        let phases = ["Rendering", "Rendering", "Succeeded"].map(String::from).into_iter();
        set_job_phases(&m.hub, "RenderJob", phases, &["Pending", "Rendering", "Succeeded"]);
        let text = m.render().unwrap();
        assert!(text.contains("pictor_jobs{kind=\"RenderJob\",phase=\"Rendering\"} 2"), "{text}");
        assert!(text.contains("pictor_jobs{kind=\"RenderJob\",phase=\"Pending\"} 0"), "{text}");
    }
}
