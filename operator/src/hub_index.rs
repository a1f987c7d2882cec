//! The hub's in-memory view, fed by watches and shared by every controller: members, their
//! agents' Leases and all WorkUnits. Decisions read these stores; nothing re-lists per decision.

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use pictor_crds::v1alpha1::{GpuCluster, WorkUnit, WorkUnitPhase};
use std::sync::Arc;

use crate::placement::Claims;

/// Stores of what the hub's controllers decide over.
#[derive(Clone)]
pub struct HubIndex {
    /// Every member.
    pub clusters: reflector::Store<GpuCluster>,
    /// Every WorkUnit in every member namespace.
    pub units: reflector::Store<WorkUnit>,
    /// The agents' Leases.
    pub leases: reflector::Store<Lease>,
}

/// Annotation on a WorkUnit naming the GPU model placement chose, for claims.
pub const GPU_MODEL_ANNOTATION: &str = pictor_crds::contract::annotations::GPU_MODEL;

impl HubIndex {
    /// Starts the watches (each retries with backoff on its own) and waits for the first lists.
    /// `on_lease` is called for every Lease event: the member controller's proof that the hub
    /// answers.
    pub async fn start(client: kube::Client, on_lease: Arc<dyn Fn() + Send + Sync>) -> Self {
        let (clusters, cluster_writer) = reflector::store::<GpuCluster>();
        let (units, unit_writer) = reflector::store::<WorkUnit>();
        let (leases, lease_writer) = reflector::store::<Lease>();
        tokio::spawn(
            reflector(
                cluster_writer,
                watcher(Api::<GpuCluster>::all(client.clone()), watcher::Config::default()),
            )
            .default_backoff()
            .touched_objects()
            .for_each(|_| futures::future::ready(())),
        );
        tokio::spawn(
            reflector(unit_writer, watcher(Api::<WorkUnit>::all(client.clone()), watcher::Config::default()))
                .default_backoff()
                .touched_objects()
                .for_each(|_| futures::future::ready(())),
        );
        let lease_config = watcher::Config::default()
            .fields(&format!("metadata.name={}", pictor_crds::contract::members::AGENT));
        tokio::spawn(
            reflector(lease_writer, watcher(Api::<Lease>::all(client), lease_config))
                .default_backoff()
                .touched_objects()
                .for_each(move |event| {
                    if event.is_ok() {
                        on_lease();
                    }
                    futures::future::ready(())
                }),
        );
        let _ =
            tokio::join!(clusters.wait_until_ready(), units.wait_until_ready(), leases.wait_until_ready());
        Self { clusters, units, leases }
    }

    /// The units of one job, by the job's UID label.
    pub fn units_of_job(&self, job_uid: &str) -> Vec<Arc<WorkUnit>> {
        self.units
            .state()
            .into_iter()
            .filter(|u| {
                u.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(pictor_crds::contract::labels::JOB_UID))
                    .is_some_and(|j| j == job_uid)
            })
            .collect()
    }

    /// GPUs promised to units that their members have not started yet, by member and model.
    pub fn claims(&self) -> Claims {
        let mut claims = Claims::new();
        for unit in self.units.state() {
            let waiting =
                matches!(unit.status.as_ref().and_then(|s| s.phase), None | Some(WorkUnitPhase::Pending));
            let member =
                unit.metadata.namespace.as_deref().and_then(pictor_crds::contract::member_of_namespace);
            let model = unit.metadata.annotations.as_ref().and_then(|a| a.get(GPU_MODEL_ANNOTATION));
            if let (true, Some(member), Some(model)) = (waiting, member, model) {
                let gpus: i64 = unit.spec.pods.iter().map(|p| p.gpus).sum();
                *claims.entry((member.to_string(), model.clone())).or_default() += gpus;
            }
        }
        claims
    }
}
