//! pictor-agent, the member agent (DESIGN.md, "The member agent speaks to the hub through the
//! hub's Kubernetes API"): runs in a member cluster and speaks to the hub only through the hub's
//! Kubernetes API, with the narrow credentials `pictor member add` printed.
//!
//! Three loops over in-memory stores fed by watches: the heartbeat renews the agent's Lease on
//! the hub; the inventory loop summarises the member's GPU nodes into its GpuCluster status when
//! they change; the work loop turns the member's WorkUnits into local pods and reports their
//! state back. A fourth copies the tail of each unit's pod logs up to the hub, where `pictor
//! logs` reads it ([`unit_logs`]). When the hub is unreachable the stores keep their last contents, pods keep
//! running, and reports go out once the hub answers again.

pub mod confinement;
pub mod gang_network;
mod heartbeat;
pub mod inventory;
pub mod metrics;
pub mod unit_logs;
pub mod work_pods;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use metrics::AgentMetrics;
use pictor_crds::v1alpha1::{GpuCluster, GpuInventory, WorkPolicy, WorkUnit};
use pictor_telemetry::cluster::tolerate;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::Instrument;
use work_pods::{AgentAction, PodSettings};

/// Field manager of everything the agent writes.
pub const FIELD_MANAGER: &str = "pictor-agent";

/// How an agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Member name (its GpuCluster on the hub).
    pub member: String,
    /// Namespace in the member cluster where unit pods run.
    pub namespace: String,
    /// Scheduler of the unit pods.
    pub scheduler_name: String,
    /// How often the Lease is renewed.
    pub heartbeat_interval: Duration,
    /// Lease duration written into the Lease.
    pub lease_duration: Duration,
    /// Identity written as the Lease holder.
    pub identity: String,
    /// Environment every work pod gets beside the hub's: this member's own settings (where its
    /// pods reach storage, a proxy), never the hub's to decide.
    pub work_env: Vec<(String, String)>,
    /// What the provider runs (images, caps per pod) and its defaults; advertised to the hub.
    pub policy: confinement::ProviderPolicy,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The member cluster refused a call the agent cannot work without.
    #[error("member cluster: {what}: {source}")]
    Member { what: String, source: kube::Error },
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Runs the agent until the process is stopped; every log line carries the member's name.
pub async fn run(
    hub: kube::Client,
    member: kube::Client,
    config: AgentConfig,
    metrics: Arc<AgentMetrics>,
) -> Result<(), AgentError> {
    let span = tracing::info_span!("agent", member = %config.member);
    run_agent(hub, member, config, metrics).instrument(span).await
}

async fn run_agent(
    hub: kube::Client,
    member: kube::Client,
    config: AgentConfig,
    metrics: Arc<AgentMetrics>,
) -> Result<(), AgentError> {
    ensure_namespace(&member, &config.namespace).await?;
    let hub_namespace = pictor_crds::contract::member_namespace(&config.member);
    let changed = Arc::new(Notify::new());

    let (nodes, node_writer) = reflector::store::<Node>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (units, unit_writer) = reflector::store::<WorkUnit>();
    let (services, service_writer) = reflector::store::<Service>();
    let node_watch = mirror(node_writer, Api::<Node>::all(member.clone()), changed.clone());
    // Every pod counts for the inventory (GPUs held by pods of other owners are not free).
    let pod_watch = mirror(pod_writer, Api::<Pod>::all(member.clone()), changed.clone());
    let unit_watch =
        mirror(unit_writer, Api::<WorkUnit>::namespaced(hub.clone(), &hub_namespace), changed.clone());
    let service_watch = mirror(
        service_writer,
        Api::<Service>::namespaced(member.clone(), &config.namespace),
        changed.clone(),
    );

    let settings = PodSettings {
        namespace: config.namespace.clone(),
        scheduler_name: config.scheduler_name.clone(),
        env: config.work_env.clone(),
        policy: config.policy.clone(),
    };
    let (logs, log_writer) = reflector::store::<ConfigMap>();
    let log_watch = reflector(
        log_writer,
        watcher(
            Api::<ConfigMap>::namespaced(hub.clone(), &hub_namespace),
            watcher::Config::default().labels(pictor_crds::contract::labels::UNIT_LOG),
        ),
    )
    .default_backoff()
    .for_each(|_| futures::future::ready(()));
    let log_copies = log_loop(
        LogClients { hub: hub.clone(), member: member.clone() },
        hub_namespace.clone(),
        config.namespace.clone(),
        LogStores { units: units.clone(), pods: pods.clone(), logs },
    );
    let stores = WorkStores { units, pods: pods.clone(), services };
    let work = work_loop(
        WorkClients { hub: hub.clone(), member: member.clone(), hub_namespace: hub_namespace.clone() },
        settings,
        stores,
        changed.clone(),
        metrics.clone(),
    );
    let inventory = inventory_loop(
        hub.clone(),
        config.member.clone(),
        config.policy.advertised.clone(),
        InventoryStores { nodes, pods },
        metrics.clone(),
    );
    let heartbeat = heartbeat::renew_forever(hub, hub_namespace, config.clone(), metrics);
    tracing::info!(member = %config.member, namespace = %config.namespace, "agent started");
    tokio::join!(
        node_watch,
        pod_watch,
        unit_watch,
        service_watch,
        log_watch,
        work,
        inventory,
        heartbeat,
        log_copies
    );
    Ok(())
}

/// Keeps a store in step with the API server and wakes the loops on every change. Watch errors
/// (a hub outage) back off and retry; the store keeps its last contents meanwhile.
async fn mirror<K>(writer: reflector::store::Writer<K>, api: Api<K>, changed: Arc<Notify>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects()
        .for_each(|_| {
            changed.notify_one();
            futures::future::ready(())
        })
        .await
}

async fn ensure_namespace(member: &kube::Client, name: &str) -> Result<(), AgentError> {
    let api = Api::<Namespace>::all(member.clone());
    // Strangers' code runs here: the API server holds every pod to the restricted standard.
    let namespace = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(confinement::pod_security_labels()),
            ..Default::default()
        },
        ..Default::default()
    };
    tolerate(api.create(&PostParams::default(), &namespace).await, &[409])
        .map_err(|source| AgentError::Member { what: format!("create namespace {name}"), source })
}

/// What the work loop reads: the hub's units, the member's pods and Services.
struct WorkStores {
    units: reflector::Store<WorkUnit>,
    pods: reflector::Store<Pod>,
    services: reflector::Store<Service>,
}

/// Where the work loop writes: the hub (its member namespace) and the member cluster.
struct WorkClients {
    hub: kube::Client,
    member: kube::Client,
    hub_namespace: String,
}

/// Turns units into pods and pods into unit status, whenever a store changes.
async fn work_loop(
    clients: WorkClients,
    settings: PodSettings,
    stores: WorkStores,
    changed: Arc<Notify>,
    metrics: Arc<AgentMetrics>,
) {
    let WorkClients { hub, member, hub_namespace } = clients;
    let WorkStores { units, pods, services } = stores;
    let local_pods = Api::<Pod>::namespaced(member.clone(), &settings.namespace);
    let local = WorkApis {
        pods: local_pods.clone(),
        services: Api::<Service>::namespaced(member.clone(), &settings.namespace),
        policies: Api::<NetworkPolicy>::namespaced(member, &settings.namespace),
    };
    let hub_units = Api::<WorkUnit>::namespaced(hub, &hub_namespace);
    loop {
        // Wake on any change, and at least every few seconds so a failed write is retried.
        let _ = tokio::time::timeout(Duration::from_secs(3), changed.notified()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let unit_list = units.state();
        let pod_list: Vec<_> = pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(settings.namespace.as_str()))
            .collect();
        let unit_refs: Vec<&WorkUnit> = unit_list.iter().map(|u| u.as_ref()).collect();
        let pod_refs: Vec<&Pod> = pod_list.iter().map(|p| p.as_ref()).collect();
        let service_list = services.state();
        let service_refs: Vec<&Service> = service_list.iter().map(|s| s.as_ref()).collect();
        let synced = units.wait_until_ready().now_or_never_ready();
        let unit_pods: Vec<&Pod> = pod_refs
            .iter()
            .copied()
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key(pictor_crds::contract::labels::WORK_UNIT_UID))
            })
            .collect();
        metrics.observe(&unit_refs, &unit_pods);
        for action in work_pods::plan(&unit_refs, &pod_refs, &service_refs, synced, &settings, &now()) {
            let reports = matches!(action, AgentAction::ReportStatus { .. });
            let result = apply_action(&local, &hub_units, action).await;
            if reports {
                metrics.status_reported(result.is_ok());
            }
            if let Err(e) = result {
                tracing::warn!(error = %e, "agent action failed; retrying on the next change");
            }
        }
    }
}

/// Whether a store has seen its first full list, without waiting.
trait ReadyNow {
    fn now_or_never_ready(self) -> bool;
}

impl<F: std::future::Future<Output = Result<(), reflector::store::WriterDropped>>> ReadyNow for F {
    fn now_or_never_ready(self) -> bool {
        futures::FutureExt::now_or_never(self).is_some_and(|r| r.is_ok())
    }
}

/// The work namespace's objects the work loop writes.
struct WorkApis {
    pods: Api<Pod>,
    services: Api<Service>,
    policies: Api<NetworkPolicy>,
}

async fn apply_action(
    local: &WorkApis,
    units: &Api<WorkUnit>,
    action: AgentAction,
) -> Result<(), kube::Error> {
    let WorkApis { pods, services, policies } = local;
    match action {
        AgentAction::CreateGangNetwork(network) => {
            // The policy first: the Service's existence is what says the gang's network is done.
            tolerate(policies.create(&PostParams::default(), &network.policy).await, &[409])?;
            tolerate(services.create(&PostParams::default(), &network.service).await, &[409])
        }
        AgentAction::CreatePod(pod) => match pods.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let unit = created
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(pictor_crds::contract::labels::WORK_UNIT));
                tracing::info!(pod = ?created.metadata.name, unit = ?unit, "created unit pod");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e),
        },
        AgentAction::DeletePod(name) => match pods.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(pod = %name, "deleted pod of a removed or lost unit");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        },
        AgentAction::ReportStatus { unit, status } => {
            let body = serde_json::json!({
                "apiVersion": "pictor.network/v1alpha1",
                "kind": "WorkUnit",
                "status": status,
            });
            units
                .patch_status(&unit, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
                .await?;
            tracing::info!(unit = %unit, phase = ?status.phase, gpu_seconds = status.gpu_seconds, "reported unit status");
            Ok(())
        }
    }
}

/// The clusters the log loop reads from (the member) and writes to (the hub).
struct LogClients {
    hub: kube::Client,
    member: kube::Client,
}

/// What the log loop reads: the hub's units and log ConfigMaps, the member's pods.
struct LogStores {
    units: reflector::Store<WorkUnit>,
    pods: reflector::Store<Pod>,
    logs: reflector::Store<ConfigMap>,
}

/// How long a unit whose log copy failed waits before the next try.
const LOG_RETRY_DELAY: Duration = Duration::from_secs(15);

/// How long the member's API server may take to serve one pod's log.
const LOG_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Copies the tails of unit pod logs to the hub: each finished unit once, running ones at most
/// every [`unit_logs::RUNNING_REFRESH`], a bounded number per pass.
async fn log_loop(clients: LogClients, hub_namespace: String, work_namespace: String, stores: LogStores) {
    let local_pods = Api::<Pod>::namespaced(clients.member, &work_namespace);
    let hub_logs = Api::<ConfigMap>::namespaced(clients.hub, &hub_namespace);
    let _ = stores.units.wait_until_ready().await;
    let _ = stores.pods.wait_until_ready().await;
    let _ = stores.logs.wait_until_ready().await;
    // A unit whose copy failed (the hub refused or was away) waits before the next try.
    let mut failed: std::collections::HashMap<String, std::time::Instant> = Default::default();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let unit_list = stores.units.state();
        let pod_list: Vec<_> = stores
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(work_namespace.as_str()))
            .collect();
        let log_list = stores.logs.state();
        let due = unit_logs::captures_due(
            &unit_list.iter().map(|u| u.as_ref()).collect::<Vec<_>>(),
            &pod_list.iter().map(|p| p.as_ref()).collect::<Vec<_>>(),
            &log_list.iter().map(|c| c.as_ref()).collect::<Vec<_>>(),
            k8s_openapi::jiff::Timestamp::now(),
        );
        failed.retain(|_, at| at.elapsed() < LOG_RETRY_DELAY);
        let due = due.into_iter().filter(|c| !failed.contains_key(&c.unit));
        let failures: Vec<String> = futures::stream::iter(due)
            .map(|capture| copy_log(&local_pods, &hub_logs, &hub_namespace, capture))
            .buffer_unordered(4)
            .filter_map(futures::future::ready)
            .collect()
            .await;
        failed.extend(failures.into_iter().map(|unit| (unit, std::time::Instant::now())));
    }
}

/// Copies one unit's logs; the unit's name when the hub did not take them.
async fn copy_log(
    pods: &Api<Pod>,
    hub_logs: &Api<ConfigMap>,
    hub_namespace: &str,
    capture: unit_logs::LogCapture,
) -> Option<String> {
    let limit = unit_logs::limit_per_pod(capture.pods.len());
    let params = LogParams { tail_lines: Some(unit_logs::TAIL_LINES), ..Default::default() };
    let mut texts = Vec::new();
    for (template, pod) in &capture.pods {
        let result = match tokio::time::timeout(LOG_READ_TIMEOUT, pods.logs(pod, &params)).await {
            Ok(Ok(log)) => Ok(log),
            Ok(Err(e)) => Err(unit_logs::unavailable_reason(&e)),
            Err(_) => Err(format!("the member's API server did not answer within {LOG_READ_TIMEOUT:?}")),
        };
        texts.push((template.clone(), unit_logs::stored_text(result, limit)));
    }
    let config_map =
        unit_logs::log_config_map(&capture, hub_namespace, texts, k8s_openapi::jiff::Timestamp::now());
    let name = pictor_crds::contract::members::unit_log_config_map(&capture.unit);
    match hub_logs.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&config_map)).await
    {
        Ok(_) => {
            tracing::debug!(unit = %capture.unit, final_copy = capture.final_copy, "copied unit log");
            None
        }
        Err(e) => {
            tracing::warn!(unit = %capture.unit, error = %e, "unit log not copied; retrying later");
            Some(capture.unit)
        }
    }
}

/// What the inventory loop reads: the member's nodes and every pod on them.
struct InventoryStores {
    nodes: reflector::Store<Node>,
    pods: reflector::Store<Pod>,
}

/// Writes the member's inventory, with the provider's work policy beside it (one apply owns
/// both), into its GpuCluster status whenever the inventory changes. Checking once a second over
/// the in-memory stores debounces bursts of node and pod events into one write.
async fn inventory_loop(
    hub: kube::Client,
    member: String,
    policy: WorkPolicy,
    stores: InventoryStores,
    metrics: Arc<AgentMetrics>,
) {
    let InventoryStores { nodes, pods } = stores;
    let clusters = Api::<GpuCluster>::all(hub);
    let mut written: Option<GpuInventory> = None;
    let _ = nodes.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    loop {
        let node_list = nodes.state();
        let pod_list = pods.state();
        let inventory =
            inventory::summarise(node_list.iter().map(|n| n.as_ref()), pod_list.iter().map(|p| p.as_ref()));
        if written.as_ref() != Some(&inventory) {
            let body = serde_json::json!({
                "apiVersion": "pictor.network/v1alpha1",
                "kind": "GpuCluster",
                "status": {"inventory": inventory, "workPolicy": policy},
            });
            let written_now = clusters
                .patch_status(&member, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
                .await;
            metrics.inventory_reported(written_now.is_ok());
            match written_now {
                Ok(_) => {
                    tracing::info!(
                        total = inventory.total_gpus,
                        free = inventory.free_gpus,
                        "reported inventory"
                    );
                    written = Some(inventory);
                }
                Err(e) => tracing::warn!(error = %e, "inventory not reported; retrying"),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
