//! The hub's in-memory view, fed by watches and shared by every controller: members, their
//! agents' Leases and all WorkUnits. Decisions read these; nothing re-lists per decision.
//!
//! WorkUnits and members are watched untyped and decoded one by one: an object the operator cannot
//! read is skipped and counted (`pictor_operator_undecodable_objects`), never a reason for the
//! whole list to fail and the operator to never become ready.
//!
//! WorkUnits are watched once for the whole operator: the index keeps them keyed by job and by
//! member ([`UnitIndex`]) and tells the job controllers which jobs a change concerns
//! ([`HubIndex::job_changes`]), instead of each controller opening a watch of its own.

use crate::heartbeats::Heartbeats;
use crate::metrics::OperatorMetrics;
use crate::placement::Claims;
use crate::runner::SharedWatch;
use crate::unit_index::UnitIndex;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::runtime::reflector::ReflectHandle;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use pictor_crds::contract::members::AGENT;
use pictor_crds::v1alpha1::{GpuCluster, JobReference, WorkUnit};
use pictor_telemetry::watch::watch_objects;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{mpsc, watch};

/// GpuCluster events held for the member controller before it reads them: one per member and
/// more, so a network of hundreds of members starts without the watch waiting on it.
const CLUSTER_EVENTS_BUFFER: usize = 4096;

/// Stores of what the hub's controllers decide over.
#[derive(Clone)]
pub struct HubIndex {
    /// Every member.
    pub clusters: reflector::Store<GpuCluster>,
    /// The agents' Leases.
    pub leases: reflector::Store<Lease>,
    /// When the hub saw each agent renew its Lease, on its own clock.
    heartbeats: Arc<Mutex<Heartbeats>>,
    units: Arc<RwLock<UnitIndex>>,
    job_listeners: Arc<Mutex<Vec<mpsc::UnboundedSender<JobReference>>>>,
    /// The GpuCluster watch's events, for the one controller that reconciles members (taken
    /// once: a handle nobody reads would hold the watch back when its buffer fills).
    cluster_events: Arc<Mutex<Option<ReflectHandle<GpuCluster>>>>,
}

impl HubIndex {
    /// Starts the watches (each retries with backoff on its own) and waits for the first lists.
    /// `on_lease` is called for every Lease event: the member controller's proof that the hub
    /// answers.
    pub async fn start(
        client: kube::Client,
        metrics: &OperatorMetrics,
        on_lease: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        let (clusters, cluster_writer) = reflector::store_shared::<GpuCluster>(CLUSTER_EVENTS_BUFFER);
        let cluster_events = cluster_writer.subscribe();
        let (leases, lease_writer) = reflector::store::<Lease>();
        metrics.watches.opened("GpuCluster");
        let clusters_watch = watch_objects::<GpuCluster>(
            client.clone(),
            None,
            watcher::Config::default(),
            metrics.watches.skipping("GpuCluster"),
        );
        tokio::spawn(
            clusters_watch
                .default_backoff()
                .reflect_shared(cluster_writer)
                .for_each(|_| futures::future::ready(())),
        );
        let lease_config = watcher::Config::default().fields(&format!("metadata.name={AGENT}"));
        metrics.watches.opened("Lease");
        let heartbeats = Arc::new(Mutex::new(Heartbeats::default()));
        let heard = heartbeats.clone();
        tokio::spawn(
            reflector(lease_writer, watcher(Api::<Lease>::all(client.clone()), lease_config))
                .default_backoff()
                .touched_objects()
                .for_each(move |event| {
                    if let Ok(lease) = event {
                        heard
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .observe(&lease, k8s_openapi::jiff::Timestamp::now());
                        on_lease();
                    }
                    futures::future::ready(())
                }),
        );
        let index = Self {
            clusters,
            leases,
            heartbeats,
            units: Arc::default(),
            job_listeners: Arc::default(),
            cluster_events: Arc::new(Mutex::new(cluster_events)),
        };
        let (listed, mut units_listed) = watch::channel(false);
        metrics.watches.opened("WorkUnit");
        let units_watch = watch_objects::<WorkUnit>(
            client,
            None,
            watcher::Config::default(),
            metrics.watches.skipping("WorkUnit"),
        );
        tokio::spawn(index.clone().follow_units(units_watch, listed));
        let _ = tokio::join!(
            index.clusters.wait_until_ready(),
            index.leases.wait_until_ready(),
            units_listed.wait_for(|listed| *listed),
        );
        index
    }

    /// The one WorkUnit watch: applies each event to the index and tells the job controllers.
    /// A re-list (after the watch expired) is built aside and swapped in whole, as kube's
    /// reflector does, so no decision sees half a list.
    async fn follow_units(
        self,
        units_watch: impl futures::Stream<Item = Result<watcher::Event<WorkUnit>, watcher::Error>> + Send,
        listed: watch::Sender<bool>,
    ) {
        let mut relisting: Option<Vec<WorkUnit>> = None;
        let events = units_watch.default_backoff();
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(%error, "WorkUnit watch failed; retrying with backoff");
                    continue;
                }
            };
            match event {
                watcher::Event::Init => relisting = Some(Vec::new()),
                watcher::Event::InitApply(unit) => relisting.get_or_insert_default().push(unit),
                watcher::Event::InitDone => {
                    let fresh = UnitIndex::of(relisting.take().unwrap_or_default());
                    let jobs: Vec<JobReference> = fresh.all().map(|u| u.spec.job_ref.clone()).collect();
                    *self.units.write().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                    listed.send_replace(true);
                    jobs.into_iter().for_each(|job| self.tell(job));
                }
                watcher::Event::Apply(unit) => {
                    let job = unit.spec.job_ref.clone();
                    self.units.write().unwrap_or_else(std::sync::PoisonError::into_inner).apply(unit);
                    self.tell(job);
                }
                watcher::Event::Delete(unit) => {
                    self.units.write().unwrap_or_else(std::sync::PoisonError::into_inner).delete(&unit);
                    self.tell(unit.spec.job_ref.clone());
                }
            }
        }
    }

    fn tell(&self, job: JobReference) {
        let mut listeners = self.job_listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        listeners.retain(|listener| listener.send(job.clone()).is_ok());
    }

    /// The GpuCluster watch's events with the store they update, for the member controller;
    /// `None` once taken.
    pub fn take_cluster_events(&self) -> Option<SharedWatch<GpuCluster>> {
        let events = self.cluster_events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()?;
        Some((events, self.clusters.clone()))
    }

    /// The jobs whose units change from now on, one message per change.
    pub fn job_changes(&self) -> mpsc::UnboundedReceiver<JobReference> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.job_listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(sender);
        receiver
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, UnitIndex> {
        self.units.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When the hub last saw the agent of a member namespace renew its Lease, on the hub's clock
    /// ([`Heartbeats`]).
    pub fn heard_at(&self, namespace: &str) -> Option<k8s_openapi::jiff::Timestamp> {
        self.heartbeats.lock().unwrap_or_else(std::sync::PoisonError::into_inner).heard_at(namespace)
    }

    /// The units of one job, by the job's UID label.
    pub fn units_of_job(&self, job_uid: &str) -> Vec<Arc<WorkUnit>> {
        self.read().of_job(job_uid)
    }

    /// The units in one member's namespace.
    pub fn units_of_member(&self, member: &str) -> Vec<Arc<WorkUnit>> {
        self.read().of_member(member)
    }

    /// Every unit.
    pub fn units(&self) -> Vec<Arc<WorkUnit>> {
        self.read().all().cloned().collect()
    }

    /// GPUs promised to units that their members have not started yet, by member and model.
    pub fn claims(&self) -> Claims {
        self.read().claims()
    }
}
