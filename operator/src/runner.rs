//! How every hub controller runs, written once: a kube-runtime `Controller` over its kind, woken
//! too by the hub index when the units of one of its objects change (no watch of its own on
//! WorkUnits); each reconcile in a span, counted and timed in the metrics under the controller's
//! name; the one finalizer call at the top (when the kind has one); every error mapped to a
//! requeue with backoff and labelled by its variant.
//!
//! A controller is a [`Reconciler`]: what it does on apply and on cleanup. The job controllers
//! share one more layer ([`crate::job_controller`]); the member controller plugs in here directly.

use crate::events;
use crate::hub_index::HubIndex;
use crate::metrics::OperatorMetrics;
use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::{ObjectRef, ReflectHandle, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use pictor_crds::v1alpha1::JobReference;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// What every controller reaches: the hub's client, its in-memory view, the operator's metrics
/// and the recorder its Events go through.
#[derive(Clone)]
pub struct Hub {
    /// The hub's API server.
    pub client: kube::Client,
    /// Members, Leases and WorkUnits, fed by watches.
    pub index: HubIndex,
    /// The operator's metric families.
    pub metrics: Arc<OperatorMetrics>,
    /// Where Events are published.
    pub recorder: Recorder,
}

impl Hub {
    /// The context of every controller of one operator process.
    pub fn new(client: kube::Client, index: HubIndex, metrics: Arc<OperatorMetrics>) -> Self {
        let recorder = events::recorder(client.clone());
        Self { client, index, metrics, recorder }
    }
}

/// A kind the hub's controllers reconcile: a Kubernetes object they can read, write and share
/// between tasks.
pub trait HubObject:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug + Send + Sync + 'static
{
}

impl<K> HubObject for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug + Send + Sync + 'static
{
}

/// A watch the hub index already holds: its events and the store they update.
pub type SharedWatch<K> = (ReflectHandle<K>, Store<K>);

/// One controller of the hub.
pub trait Reconciler: Send + Sync + Sized + 'static {
    /// The kind it reconciles.
    type Object: HubObject;
    /// Why a reconcile failed.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The `controller` label of its metrics and spans, e.g. `renderjob`.
    const CONTROLLER: &'static str;
    /// The finalizer whose cleanup runs before an object goes; `None` when the controller owns
    /// nothing that must outlive a deleted object.
    const FINALIZER: Option<&'static str>;

    /// The API the object lives in (namespaced or cluster-wide).
    fn api(client: kube::Client, object: &Self::Object) -> Api<Self::Object>;

    /// The error's variant, for metrics and logs.
    fn metric_label(error: &Self::Error) -> &'static str;

    /// Brings the world in line with the object.
    fn apply(
        &self,
        object: Arc<Self::Object>,
        hub: &Hub,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send;

    /// Releases what the object owns before it is deleted (only with a [`Self::FINALIZER`]).
    fn cleanup(
        &self,
        _object: Arc<Self::Object>,
        _hub: &Hub,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send {
        async { Ok(Action::await_change()) }
    }

    /// The object a change to one of a job's units concerns, if it is one of this kind.
    fn woken_by(_job: &JobReference) -> Option<ObjectRef<Self::Object>> {
        None
    }

    /// How long after a failed reconcile to try again.
    fn retry_after(&self) -> Duration {
        Duration::from_secs(3)
    }

    /// Called once with the controller's store of its objects, e.g. for gauges read from it.
    fn watching(&self, _objects: Store<Self::Object>, _hub: &Hub) {}

    /// The events of a watch of its kind the hub index already holds, with their store, so the
    /// controller opens none of its own; `None` to watch its kind itself.
    fn shared_watch(_hub: &Hub) -> Option<SharedWatch<Self::Object>> {
        None
    }
}

/// A reconcile's failure: the controller's own, or the finalizer machinery's.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError<E: std::error::Error + 'static> {
    /// The controller failed.
    #[error(transparent)]
    Controller(E),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

struct Context<R> {
    reconciler: R,
    hub: Hub,
}

fn metric_label<R: Reconciler>(error: &ReconcileError<R::Error>) -> &'static str {
    match error {
        ReconcileError::Controller(e) => R::metric_label(e),
        ReconcileError::Finalizer(_) => "finalizer_failed",
    }
}

async fn reconcile<R: Reconciler>(
    object: Arc<R::Object>,
    ctx: Arc<Context<R>>,
) -> Result<Action, ReconcileError<R::Error>> {
    let span = tracing::info_span!("reconcile", controller = R::CONTROLLER, object = %object.name_any(), namespace = %object.namespace().unwrap_or_default());
    let started = Instant::now();
    let result = reconcile_object(object, &ctx).instrument(span).await;
    let error = result.as_ref().err().map(metric_label::<R>);
    ctx.hub.metrics.controllers.reconciled(R::CONTROLLER, error, started.elapsed());
    result
}

async fn reconcile_object<R: Reconciler>(
    object: Arc<R::Object>,
    ctx: &Context<R>,
) -> Result<Action, ReconcileError<R::Error>> {
    let Some(name) = R::FINALIZER else {
        return ctx.reconciler.apply(object, &ctx.hub).await.map_err(ReconcileError::Controller);
    };
    let api = R::api(ctx.hub.client.clone(), &object);
    finalizer(&api, name, object, |event| async {
        match event {
            Event::Apply(object) => ctx.reconciler.apply(object, &ctx.hub).await,
            Event::Cleanup(object) => ctx.reconciler.cleanup(object, &ctx.hub).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => ReconcileError::Controller(e),
        other => ReconcileError::Finalizer(other.to_string()),
    })
}

fn error_policy<R: Reconciler>(
    object: Arc<R::Object>,
    error: &ReconcileError<R::Error>,
    ctx: Arc<Context<R>>,
) -> Action {
    tracing::warn!(controller = R::CONTROLLER, object = %object.name_any(), reason = metric_label::<R>(error), %error, "reconcile failed");
    Action::requeue(ctx.reconciler.retry_after())
}

/// The objects of kind `R::Object` that the hub index's unit changes concern.
fn woken<R: Reconciler>(index: &HubIndex) -> impl Stream<Item = ObjectRef<R::Object>> + Send + 'static {
    futures::stream::unfold(index.job_changes(), |mut changes| async move {
        let job = changes.recv().await?;
        Some((R::woken_by(&job), changes))
    })
    .filter_map(futures::future::ready)
}

/// Runs `reconciler` until the process stops.
pub async fn run<R: Reconciler>(reconciler: R, hub: Hub) {
    let controller = match R::shared_watch(&hub) {
        Some((events, store)) => Controller::for_shared_stream(events, store),
        None => {
            let kind = std::any::type_name::<R::Object>().rsplit("::").next().unwrap_or("object");
            hub.metrics.watches.opened(kind);
            Controller::new(Api::<R::Object>::all(hub.client.clone()), watcher::Config::default())
        }
    };
    reconciler.watching(controller.store(), &hub);
    let triggers = woken::<R>(&hub.index);
    let ctx = Arc::new(Context { reconciler, hub });
    controller
        .reconcile_on(triggers)
        .shutdown_on_signal()
        .run(reconcile::<R>, error_policy::<R>, ctx)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(controller = R::CONTROLLER, %error, "controller");
            }
            futures::future::ready(())
        })
        .await;
}
