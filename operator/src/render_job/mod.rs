//! The RenderJob controller: splits a job's frames into chunks, places each chunk as a WorkUnit
//! on a member, re-places failed and Lost chunks elsewhere, keeps the job's status current, and
//! cleans every unit up through its finalizer.

pub mod plan;

use crate::conditions::record_job_outcome;
use crate::events;
use crate::hub_index::HubIndex;
use crate::job_status;
use crate::metrics::{self, OperatorMetrics};
use crate::unit_writes::{self, UnitWriteError};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use pictor_crds::v1alpha1::{JobKind, RenderJob, RenderJobPhase, WorkUnit};
use pictor_crds::v1alpha1::{Observation, set_condition};
use plan::RenderSettings;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The `controller` label of this controller's metrics.
pub const CONTROLLER: &str = "renderjob";
/// Field manager of what the render controller writes.
pub const FIELD_MANAGER: &str = "pictor-render-controller";
/// Finalizer that makes deleting a job delete its units first.
pub const FINALIZER: &str = pictor_crds::contract::finalizers::WORK_UNITS;

/// Why a reconcile failed; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum RenderJobError {
    /// A hub call failed.
    #[error("{what}: {source}")]
    Hub { what: String, source: kube::Error },
    /// Creating or deleting a unit failed.
    #[error(transparent)]
    Units(#[from] UnitWriteError),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl RenderJobError {
    /// Label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            RenderJobError::Hub { .. } => "hub_call_failed",
            RenderJobError::Units(_) => "unit_write_failed",
            RenderJobError::Finalizer(_) => "finalizer_failed",
        }
    }
}

fn hub(what: impl Into<String>) -> impl FnOnce(kube::Error) -> RenderJobError {
    let what = what.into();
    move |source| RenderJobError::Hub { what, source }
}

struct Context {
    client: kube::Client,
    index: HubIndex,
    settings: RenderSettings,
    metrics: Arc<OperatorMetrics>,
    recorder: Recorder,
}

async fn reconcile(job: Arc<RenderJob>, ctx: Arc<Context>) -> Result<Action, RenderJobError> {
    let span = tracing::info_span!("reconcile", controller = CONTROLLER, job = %job.name_any(), namespace = %job.namespace().unwrap_or_default());
    let started = Instant::now();
    let result = reconcile_job(job, &ctx).instrument(span).await;
    let error = result.as_ref().err().map(RenderJobError::metric_label);
    ctx.metrics.controllers.reconciled(CONTROLLER, error, started.elapsed());
    result
}

async fn reconcile_job(job: Arc<RenderJob>, ctx: &Context) -> Result<Action, RenderJobError> {
    let namespace = job.namespace().unwrap_or_default();
    let api: Api<RenderJob> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, job, |event| async {
        match event {
            Event::Apply(job) => apply(&job, ctx).await,
            Event::Cleanup(job) => cleanup(&job, ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => RenderJobError::Finalizer(other.to_string()),
    })
}

async fn apply(job: &RenderJob, ctx: &Context) -> Result<Action, RenderJobError> {
    let uid = job.uid().unwrap_or_default();
    let units = ctx.index.units_of_job(&uid);
    let unit_refs: Vec<&WorkUnit> = units.iter().map(|u| u.as_ref()).collect();
    let members = ctx.index.clusters.state();
    let member_refs: Vec<_> = members.iter().map(|m| m.as_ref()).collect();
    let mut claims = ctx.index.claims();
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut plan = plan::plan(job, &unit_refs, &member_refs, &mut claims, &ctx.settings, now);

    let created = unit_writes::create(&ctx.client, &plan.create).await?;
    // A unit the index had not seen yet exists already: it was placed and told about before.
    plan.create.retain(|u| created.contains(&u.name_any()));
    for unit in &plan.create {
        let (attempt, since) =
            metrics::waiting_since(unit, &unit_refs, job.meta().creation_timestamp.as_ref());
        ctx.metrics.placement.placed("RenderJob", attempt, since.as_ref());
        tracing::debug!(unit = %unit.name_any(), member = ?unit.namespace().as_deref().and_then(pictor_crds::contract::member_of_namespace), attempt, "unit placed");
    }
    unit_writes::delete(&ctx.client, &plan.delete).await?;
    unit_writes::mark(&ctx.client, FIELD_MANAGER, &plan.marks).await?;
    for mark in plan.mismatched() {
        tracing::warn!(job = %job.name_any(), unit = %mark.name, member = ?pictor_crds::contract::member_of_namespace(&mark.namespace), "verification mismatch: output rejected");
    }

    let job_events = events::render_job_events(job, &unit_refs, &plan);
    let mut status = plan.status;
    let terminal = matches!(
        status.phase,
        Some(RenderJobPhase::Succeeded | RenderJobPhase::Failed | RenderJobPhase::Cancelled)
    );
    if let Some((status_, reason, message)) = plan.dispute {
        let observed = Observation { type_: "Dispute", status: status_, reason, message };
        set_condition(&mut status.conditions, observed, job.meta().generation, Time(now));
    }
    let now = Time(now);
    record_job_outcome(
        &mut status.conditions,
        &mut status.completion_time,
        plan.ready,
        terminal,
        job.meta().generation,
        now,
    );
    job_status::write(&ctx.client, job, FIELD_MANAGER, &status).await.map_err(hub("write the job status"))?;
    let awaiting = (!terminal).then_some(plan.awaiting_placement);
    ctx.metrics.placement.awaiting(
        "RenderJob",
        &job.namespace().unwrap_or_default(),
        &job.name_any(),
        awaiting,
    );
    events::publish(&ctx.recorder, &job.object_ref(&()), job_events).await;
    // Unit changes wake the job through the watch; the requeue catches members becoming free.
    Ok(Action::requeue(if terminal { Duration::from_secs(300) } else { Duration::from_secs(5) }))
}

async fn cleanup(job: &RenderJob, ctx: &Context) -> Result<Action, RenderJobError> {
    let units: Vec<_> = ctx
        .index
        .units_of_job(&job.uid().unwrap_or_default())
        .iter()
        .map(|u| (u.namespace().unwrap_or_default(), u.name_any()))
        .collect();
    unit_writes::delete(&ctx.client, &units).await?;
    ctx.metrics.placement.awaiting("RenderJob", &job.namespace().unwrap_or_default(), &job.name_any(), None);
    tracing::info!(job = %job.name_any(), "deleted the job's units");
    Ok(Action::await_change())
}

fn error_policy(job: Arc<RenderJob>, error: &RenderJobError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(job = %job.name_any(), reason = error.metric_label(), error = %error, "render reconcile failed");
    Action::requeue(Duration::from_secs(3))
}

/// The job a unit belongs to, when it is a render unit.
fn job_of(unit: WorkUnit) -> Option<ObjectRef<RenderJob>> {
    let job = &unit.spec.job_ref;
    (job.kind == JobKind::RenderJob).then(|| ObjectRef::new(&job.name).within(&job.namespace))
}

/// Runs the RenderJob controller until the process stops.
pub async fn run(
    client: kube::Client,
    index: HubIndex,
    settings: RenderSettings,
    metrics: Arc<OperatorMetrics>,
) {
    let recorder = events::recorder(client.clone());
    let ctx =
        Arc::new(Context { client: client.clone(), index, settings, metrics: metrics.clone(), recorder });
    let controller = Controller::new(Api::<RenderJob>::all(client.clone()), watcher::Config::default());
    tokio::spawn(metrics::refresh_render_jobs(controller.store(), metrics));
    controller
        .watches(Api::<WorkUnit>::all(client), watcher::Config::default(), job_of)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
