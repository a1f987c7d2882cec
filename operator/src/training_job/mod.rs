//! The TrainingJob controller: runs each attempt as one gang WorkUnit in one member and starts
//! the gang again after a failure, up to the job's limit. The plan ([`plan`]) decides; the
//! shared job runner ([`crate::job_controller`]) applies.

pub mod plan;

use crate::events;
use crate::job_controller::{Conclusion, JobKind, JobView, UnitChanges};
use crate::metrics;
use crate::runner::Hub;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::Store;
use pictor_crds::v1alpha1::{
    JobKind as JobKindName, TrainingJob, TrainingJobPhase, TrainingJobStatus, WorkUnit,
};
use plan::{TrainingPlan, TrainingSettings};

/// TrainingJobs, for the job runner.
pub struct TrainingJobs {
    /// The controller's settings.
    pub settings: TrainingSettings,
}

impl JobKind for TrainingJobs {
    type Job = TrainingJob;
    type Status = TrainingJobStatus;
    type Plan = TrainingPlan;
    const KIND: JobKindName = JobKindName::TrainingJob;
    const CONTROLLER: &'static str = "trainingjob";
    const FIELD_MANAGER: &'static str = "pictor-training-controller";

    fn plan(&self, job: &TrainingJob, view: JobView<'_>) -> TrainingPlan {
        plan::plan(job, view.units, view.members, view.claims, &self.settings, view.now)
    }

    fn unit_changes(plan: &mut TrainingPlan) -> UnitChanges<'_> {
        UnitChanges { create: &mut plan.create, marks: &mut plan.marks, delete: &plan.delete }
    }

    fn budget_octas(job: &TrainingJob) -> Option<i64> {
        job.spec.budget.max_total
    }

    fn unit_timeout(job: &TrainingJob, _unit: &WorkUnit) -> std::time::Duration {
        job.spec.unit_timeout_seconds.map_or(crate::unit_timeouts::TRAINING_DEFAULT, |s| {
            std::time::Duration::from_secs(s.max(1) as u64)
        })
    }

    fn conclude(
        &self,
        job: &TrainingJob,
        _units: &[&WorkUnit],
        plan: TrainingPlan,
        _now: Timestamp,
    ) -> Conclusion<TrainingJobStatus> {
        let events = events::training_job_events(job, &plan);
        let awaiting_placement = i64::from(plan.create.is_empty() && plan.ready.1 == "NoMemberFits");
        let status = plan.status;
        let terminal = matches!(
            status.phase,
            Some(TrainingJobPhase::Succeeded | TrainingJobPhase::Failed | TrainingJobPhase::Cancelled)
        );
        Conclusion { status, ready: plan.ready, terminal, awaiting_placement, events }
    }

    fn outcome_fields(status: &mut TrainingJobStatus) -> (&mut Vec<Condition>, &mut Option<Time>) {
        (&mut status.conditions, &mut status.completion_time)
    }

    fn watching(&self, jobs: Store<TrainingJob>, hub: &Hub) {
        tokio::spawn(metrics::refresh_training_jobs(jobs, hub.metrics.clone()));
    }
}
