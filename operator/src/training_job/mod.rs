//! The TrainingJob controller: runs each attempt as one gang WorkUnit in one member and starts
//! the gang again after a failure, up to the job's limit.

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
use pictor_crds::v1alpha1::{JobKind, TrainingJob, TrainingJobPhase, WorkUnit};
use plan::TrainingSettings;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The `controller` label of this controller's metrics.
pub const CONTROLLER: &str = "trainingjob";
/// Field manager of what the training controller writes.
pub const FIELD_MANAGER: &str = "pictor-training-controller";
/// Finalizer that makes deleting a job delete its units first.
pub const FINALIZER: &str = pictor_crds::contract::finalizers::WORK_UNITS;

/// Why a reconcile failed; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum TrainingJobError {
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

impl TrainingJobError {
    /// Label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            TrainingJobError::Hub { .. } => "hub_call_failed",
            TrainingJobError::Units(_) => "unit_write_failed",
            TrainingJobError::Finalizer(_) => "finalizer_failed",
        }
    }
}

fn hub(what: impl Into<String>) -> impl FnOnce(kube::Error) -> TrainingJobError {
    let what = what.into();
    move |source| TrainingJobError::Hub { what, source }
}

struct Context {
    client: kube::Client,
    index: HubIndex,
    settings: TrainingSettings,
    metrics: Arc<OperatorMetrics>,
    recorder: Recorder,
}

async fn reconcile(job: Arc<TrainingJob>, ctx: Arc<Context>) -> Result<Action, TrainingJobError> {
    let span = tracing::info_span!("reconcile", controller = CONTROLLER, job = %job.name_any(), namespace = %job.namespace().unwrap_or_default());
    let started = Instant::now();
    let result = reconcile_job(job, &ctx).instrument(span).await;
    let error = result.as_ref().err().map(TrainingJobError::metric_label);
    ctx.metrics.controllers.reconciled(CONTROLLER, error, started.elapsed());
    result
}

async fn reconcile_job(job: Arc<TrainingJob>, ctx: &Context) -> Result<Action, TrainingJobError> {
    let api: Api<TrainingJob> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, job, |event| async {
        match event {
            Event::Apply(job) => apply(&job, ctx).await,
            Event::Cleanup(job) => {
                let units: Vec<_> = ctx
                    .index
                    .units_of_job(&job.uid().unwrap_or_default())
                    .iter()
                    .map(|u| (u.namespace().unwrap_or_default(), u.name_any()))
                    .collect();
                unit_writes::delete(&ctx.client, &units).await?;
                let (namespace, name) = (job.namespace().unwrap_or_default(), job.name_any());
                ctx.metrics.placement.awaiting("TrainingJob", &namespace, &name, None);
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => TrainingJobError::Finalizer(other.to_string()),
    })
}

async fn apply(job: &TrainingJob, ctx: &Context) -> Result<Action, TrainingJobError> {
    let units = ctx.index.units_of_job(&job.uid().unwrap_or_default());
    let unit_refs: Vec<&WorkUnit> = units.iter().map(|u| u.as_ref()).collect();
    let members = ctx.index.clusters.state();
    let member_refs: Vec<_> = members.iter().map(|m| m.as_ref()).collect();
    let mut plan = plan::plan(
        job,
        &unit_refs,
        &member_refs,
        &mut ctx.index.claims(),
        &ctx.settings,
        k8s_openapi::jiff::Timestamp::now(),
    );
    let created = unit_writes::create(&ctx.client, plan.create.as_slice()).await?;
    unit_writes::mark(&ctx.client, FIELD_MANAGER, &plan.marks).await?;
    // A unit the index had not seen yet exists already: it was placed and told about before.
    plan.create = plan.create.filter(|u| created.contains(&u.name_any()));
    if let Some(unit) = &plan.create {
        let (attempt, since) =
            metrics::waiting_since(unit, &unit_refs, job.meta().creation_timestamp.as_ref());
        ctx.metrics.placement.placed("TrainingJob", attempt, since.as_ref());
        tracing::info!(unit = %unit.name_any(), member = ?unit.namespace().as_deref().and_then(pictor_crds::contract::member_of_namespace), attempt, "gang placed");
    }
    unit_writes::delete(&ctx.client, &plan.delete).await?;
    let job_events = events::training_job_events(job, &plan);
    let waiting = i64::from(plan.create.is_none() && plan.ready.1 == "NoMemberFits");
    let mut status = plan.status;
    let terminal = matches!(
        status.phase,
        Some(TrainingJobPhase::Succeeded | TrainingJobPhase::Failed | TrainingJobPhase::Cancelled)
    );
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    record_job_outcome(
        &mut status.conditions,
        &mut status.completion_time,
        plan.ready,
        terminal,
        job.meta().generation,
        now,
    );
    job_status::write(&ctx.client, job, FIELD_MANAGER, &status).await.map_err(hub("write the job status"))?;
    let awaiting = (!terminal).then_some(waiting);
    ctx.metrics.placement.awaiting(
        "TrainingJob",
        &job.namespace().unwrap_or_default(),
        &job.name_any(),
        awaiting,
    );
    events::publish(&ctx.recorder, &job.object_ref(&()), job_events).await;
    Ok(Action::requeue(if terminal { Duration::from_secs(300) } else { Duration::from_secs(5) }))
}

fn error_policy(job: Arc<TrainingJob>, error: &TrainingJobError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(job = %job.name_any(), reason = error.metric_label(), error = %error, "training reconcile failed");
    Action::requeue(Duration::from_secs(3))
}

fn job_of(unit: WorkUnit) -> Option<ObjectRef<TrainingJob>> {
    let job = &unit.spec.job_ref;
    (job.kind == JobKind::TrainingJob).then(|| ObjectRef::new(&job.name).within(&job.namespace))
}

/// Runs the TrainingJob controller until the process stops.
pub async fn run(
    client: kube::Client,
    index: HubIndex,
    settings: TrainingSettings,
    metrics: Arc<OperatorMetrics>,
) {
    let recorder = events::recorder(client.clone());
    let ctx =
        Arc::new(Context { client: client.clone(), index, settings, metrics: metrics.clone(), recorder });
    let controller = Controller::new(Api::<TrainingJob>::all(client.clone()), watcher::Config::default());
    tokio::spawn(metrics::refresh_training_jobs(controller.store(), metrics));
    controller
        .watches(Api::<WorkUnit>::all(client), watcher::Config::default(), job_of)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
