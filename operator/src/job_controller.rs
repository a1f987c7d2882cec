//! What every job controller does, written once: read the job's units, the members and the
//! claims from the hub index; ask the kind's pure plan what is next; apply it in one order —
//! create units, then mark them (verdicts, billing), then delete what the job no longer needs;
//! record Ready and the completion time; write the status by server-side apply; count and tell
//! (metrics, Events). Deleting a job deletes its units first, through the finalizer.
//!
//! A job kind is a [`JobKind`]: its CRD type, its plan, and what it concludes from a plan. Adding
//! a third kind takes its CRD type (crds/src/v1alpha1), a module with its plan and its `JobKind`
//! (like operator/src/training_job/), and one line in the operator binary that runs it.

use crate::accrual::{self, UnitMark};
use crate::conditions::record_job_outcome;
use crate::events;
use crate::job_status;
use crate::metering;
use crate::metrics;
use crate::placement::Claims;
use crate::runner::{Hub, HubObject, Reconciler};
use crate::unit_timeouts;
use crate::unit_writes::{self, UnitWriteError};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::Action;
use kube::runtime::events::Event;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use pictor_crds::contract::finalizers::WORK_UNITS;
use pictor_crds::v1alpha1::{GpuCluster, JobKind as JobKindName, JobReference, WorkUnit};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// What a job's plan sees: its units, the members, and the GPUs already promised.
pub struct JobView<'a> {
    /// The job's units, by its UID label.
    pub units: &'a [&'a WorkUnit],
    /// Every member.
    pub members: &'a [&'a GpuCluster],
    /// GPUs promised to units not started yet, by member and model; placement adds to it.
    pub claims: &'a mut Claims,
    /// The hub's clock.
    pub now: Timestamp,
}

/// The unit writes a plan decided, in the shape the runner applies them.
pub struct UnitChanges<'a> {
    /// Units to create; the runner keeps only those it created (not those that existed).
    pub create: &'a mut Vec<WorkUnit>,
    /// Labels, annotations and finalizers to set on units; the runner adds what the hub
    /// observed and meters what becomes payable.
    pub marks: &'a mut Vec<UnitMark>,
    /// Units to delete, by (namespace, name).
    pub delete: &'a [(String, String)],
}

/// What a job kind concludes from its plan once the units are written.
pub struct Conclusion<S> {
    /// The status to write (its Ready condition and completion time are set by the runner).
    pub status: S,
    /// Ready: status, reason, message.
    pub ready: (bool, &'static str, String),
    /// Whether the job reached a final phase.
    pub terminal: bool,
    /// Units waiting for a member that fits.
    pub awaiting_placement: i64,
    /// Events about the job.
    pub events: Vec<Event>,
}

/// One kind of job: a CRD type, a pure plan, and what to conclude from it.
pub trait JobKind: Send + Sync + 'static {
    /// The job's CRD type.
    type Job: HubObject + Resource<Scope = NamespaceResourceScope>;
    /// Its status.
    type Status: Serialize + Send + Sync;
    /// What its plan decides.
    type Plan: Send;
    /// The kind as unit references name it.
    const KIND: JobKindName;
    /// The `controller` label of its metrics, e.g. `renderjob`.
    const CONTROLLER: &'static str;
    /// The field manager of what it writes.
    const FIELD_MANAGER: &'static str;

    /// What the job needs next.
    fn plan(&self, job: &Self::Job, view: JobView<'_>) -> Self::Plan;

    /// The unit writes of a plan.
    fn unit_changes(plan: &mut Self::Plan) -> UnitChanges<'_>;

    /// The job's status and what to tell, from a plan whose new units were created.
    fn conclude(
        &self,
        job: &Self::Job,
        units: &[&WorkUnit],
        plan: Self::Plan,
        now: Timestamp,
    ) -> Conclusion<Self::Status>;

    /// What the hub finds out about the job's units by looking itself, before it plans: marks to
    /// write with the plan's (e.g. its judgement of finished verifications). Nothing by default.
    fn inspect(
        &self,
        _job: &Self::Job,
        _units: &[&WorkUnit],
        _hub: &Hub,
    ) -> impl std::future::Future<Output = Vec<UnitMark>> + Send {
        async { Vec::new() }
    }

    /// The most the job may spend in all, in octas (`None`: no cap): metering never pays past it.
    fn budget_octas(job: &Self::Job) -> Option<i64>;

    /// How long `unit` of `job` may stay Pending or Running before the hub calls it Lost.
    fn unit_timeout(job: &Self::Job, unit: &WorkUnit) -> Duration;

    /// The status fields the runner records the outcome in.
    fn outcome_fields(status: &mut Self::Status) -> (&mut Vec<Condition>, &mut Option<Time>);

    /// Called once with the store of jobs of this kind, e.g. for gauges read from it.
    fn watching(&self, _jobs: Store<Self::Job>, _hub: &Hub) {}
}

/// Why a job reconcile failed; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A hub call failed.
    #[error("{what}: {source}")]
    Hub { what: String, source: kube::Error },
    /// Creating, marking or deleting a unit failed.
    #[error(transparent)]
    Units(#[from] UnitWriteError),
}

/// Runs a [`JobKind`] on the shared runner.
pub struct JobController<K>(pub K);

impl<K: JobKind> Reconciler for JobController<K> {
    type Object = K::Job;
    type Error = JobError;
    const CONTROLLER: &'static str = K::CONTROLLER;
    const FINALIZER: Option<&'static str> = Some(WORK_UNITS);

    fn api(client: kube::Client, job: &K::Job) -> Api<K::Job> {
        Api::namespaced(client, &job.namespace().unwrap_or_default())
    }

    fn metric_label(error: &JobError) -> &'static str {
        match error {
            JobError::Hub { .. } => "hub_call_failed",
            JobError::Units(_) => "unit_write_failed",
        }
    }

    async fn apply(&self, job: Arc<K::Job>, hub: &Hub) -> Result<Action, JobError> {
        let uid = job.uid().unwrap_or_default();
        let units = hub.index.units_of_job(&uid);
        let units: Vec<&WorkUnit> = units.iter().map(|u| u.as_ref()).collect();
        let members = hub.index.clusters.state();
        let members: Vec<&GpuCluster> = members.iter().map(|m| m.as_ref()).collect();
        let mut claims = hub.index.claims();
        let now = Timestamp::now();
        let view = JobView { units: &units, members: &members, claims: &mut claims, now };
        let mut plan = self.0.plan(&job, view);

        let changes = K::unit_changes(&mut plan);
        // What the hub saw of the units first, then the plan's marks with every newly payable
        // unit metered: one write per unit.
        let mut marks = metering::observations(&units, now);
        marks.append(changes.marks);
        marks.extend(self.0.inspect(&job, &units, hub).await);
        metering::meter(&mut marks, &units, K::budget_octas(&job), now);
        *changes.marks = accrual::merge(marks);
        let created: HashSet<String> =
            unit_writes::create(&hub.client, changes.create).await?.into_iter().collect();
        // A unit the index had not seen yet exists already: it was placed and told about before.
        changes.create.retain(|u| created.contains(&u.name_any()));
        let kind = K::KIND.as_str();
        for unit in changes.create.iter() {
            let (attempt, since) =
                metrics::waiting_since(unit, &units, job.meta().creation_timestamp.as_ref());
            hub.metrics.placement.placed(kind, attempt, since.as_ref());
            let member = unit.member();
            tracing::debug!(unit = %unit.name_any(), ?member, attempt, "unit placed");
        }
        unit_writes::mark(&hub.client, K::FIELD_MANAGER, changes.marks).await?;
        unit_writes::delete(&hub.client, changes.delete).await?;
        for unit_timeouts::Stalled { unit, out, bound } in
            unit_timeouts::stalled(&units, now, |u| K::unit_timeout(&job, u))
        {
            let bound = bound.as_secs();
            let message = format!(
                "no result after {}s on member {}; the bound is {bound}s (spec.unitTimeoutSeconds): placed again elsewhere",
                out.as_secs(),
                unit.member().unwrap_or_default()
            );
            tracing::warn!(unit = %unit.name_any(), member = ?unit.member(), bound, "unit timed out: Lost");
            unit_writes::mark_lost(&hub.client, K::FIELD_MANAGER, unit, "TimedOut", message, Time(now))
                .await?;
        }

        let Conclusion { mut status, ready, terminal, awaiting_placement, events } =
            self.0.conclude(&job, &units, plan, now);
        let (conditions, completion_time) = K::outcome_fields(&mut status);
        record_job_outcome(conditions, completion_time, ready, terminal, job.meta().generation, Time(now));
        job_status::write(&hub.client, job.as_ref(), K::FIELD_MANAGER, &status)
            .await
            .map_err(|source| JobError::Hub { what: "write the job status".into(), source })?;
        let (namespace, name) = (job.namespace().unwrap_or_default(), job.name_any());
        hub.metrics.placement.awaiting(kind, &namespace, &name, (!terminal).then_some(awaiting_placement));
        events::publish(&hub.recorder, &job.object_ref(&()), events).await;
        // Unit changes wake the job through the hub index; the requeue catches members freeing up.
        Ok(Action::requeue(if terminal { Duration::from_secs(300) } else { Duration::from_secs(5) }))
    }

    async fn cleanup(&self, job: Arc<K::Job>, hub: &Hub) -> Result<Action, JobError> {
        let units: Vec<(String, String)> = hub
            .index
            .units_of_job(&job.uid().unwrap_or_default())
            .iter()
            .map(|u| (u.namespace().unwrap_or_default(), u.name_any()))
            .collect();
        unit_writes::delete(&hub.client, &units).await?;
        let (namespace, name) = (job.namespace().unwrap_or_default(), job.name_any());
        hub.metrics.placement.awaiting(K::KIND.as_str(), &namespace, &name, None);
        tracing::info!(job = %name, units = units.len(), "deleted the job's units");
        Ok(Action::await_change())
    }

    fn woken_by(job: &JobReference) -> Option<ObjectRef<K::Job>> {
        (job.kind == K::KIND).then(|| ObjectRef::new(&job.name).within(&job.namespace))
    }

    fn watching(&self, jobs: Store<K::Job>, hub: &Hub) {
        self.0.watching(jobs, hub);
    }
}
