//! The RenderJob controller: splits a job's frames into chunks, places each chunk as a WorkUnit
//! on a member, re-places failed and Lost chunks elsewhere, verifies, accrues, and keeps the job's
//! status current. The plan ([`plan`]) decides; the shared job runner
//! ([`crate::job_controller`]) applies.

pub mod judge;
pub mod plan;

use crate::accrual::UnitMark;
use crate::events;
use crate::job_controller::{Conclusion, JobKind, JobView, UnitChanges};
use crate::metrics;
use crate::runner::Hub;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use pictor_crds::contract::member_of_namespace;
use pictor_crds::v1alpha1::{
    JobKind as JobKindName, Observation, RenderJob, RenderJobPhase, RenderJobStatus, WorkUnit, set_condition,
};
use plan::{RenderPlan, RenderSettings};

/// RenderJobs, for the job runner.
pub struct RenderJobs {
    /// The controller's settings.
    pub settings: RenderSettings,
    /// How the hub compares a verification's frame with the one it checks.
    pub judge: judge::FrameJudge,
}

impl JobKind for RenderJobs {
    type Job = RenderJob;
    type Status = RenderJobStatus;
    type Plan = RenderPlan;
    const KIND: JobKindName = JobKindName::RenderJob;
    const CONTROLLER: &'static str = "renderjob";
    const FIELD_MANAGER: &'static str = "pictor-render-controller";

    fn plan(&self, job: &RenderJob, view: JobView<'_>) -> RenderPlan {
        plan::plan(job, view.units, view.members, view.claims, &self.settings, view.now)
    }

    fn unit_changes(plan: &mut RenderPlan) -> UnitChanges<'_> {
        UnitChanges { create: &mut plan.create, marks: &mut plan.marks, delete: &plan.delete }
    }

    async fn inspect(&self, job: &RenderJob, units: &[&WorkUnit], hub: &Hub) -> Vec<UnitMark> {
        // A local network's fake judge never judges a job that really ran.
        static STORAGE: judge::FrameJudge = judge::FrameJudge::Storage;
        let judge = if plan::runs_for_real(job) { &STORAGE } else { &self.judge };
        judge::judge_awaiting(judge, &hub.client, job, units).await
    }

    fn budget_octas(job: &RenderJob) -> Option<i64> {
        job.spec.budget.max_total
    }

    fn unit_timeout(job: &RenderJob, unit: &WorkUnit) -> std::time::Duration {
        crate::unit_timeouts::render_bound(job.spec.unit_timeout_seconds, unit)
    }

    fn conclude(
        &self,
        job: &RenderJob,
        units: &[&WorkUnit],
        plan: RenderPlan,
        now: Timestamp,
    ) -> Conclusion<RenderJobStatus> {
        for mark in plan.mismatched() {
            tracing::warn!(job = %job.name_any(), unit = %mark.name, member = ?member_of_namespace(&mark.namespace), "verification mismatch: output rejected");
        }
        let events = events::render_job_events(job, units, &plan);
        let mut status = plan.status;
        if let Some((held, reason, message)) = plan.dispute {
            let observed = Observation { type_: "Dispute", status: held, reason, message };
            set_condition(&mut status.conditions, observed, job.meta().generation, Time(now));
        }
        let terminal = matches!(
            status.phase,
            Some(RenderJobPhase::Succeeded | RenderJobPhase::Failed | RenderJobPhase::Cancelled)
        );
        Conclusion {
            status,
            ready: plan.ready,
            terminal,
            awaiting_placement: plan.awaiting_placement,
            events,
        }
    }

    fn outcome_fields(status: &mut RenderJobStatus) -> (&mut Vec<Condition>, &mut Option<Time>) {
        (&mut status.conditions, &mut status.completion_time)
    }

    fn watching(&self, jobs: Store<RenderJob>, hub: &Hub) {
        tokio::spawn(metrics::refresh_render_jobs(jobs, hub.metrics.clone()));
    }
}
