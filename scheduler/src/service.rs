//! The running scheduler: watches feed the state machine, its actions become API writes,
//! leader election gates the writes (every replica keeps its view warm), and `/healthz`,
//! `/readyz` and `/metrics` are served over HTTP.

use crate::api::{ApiError, ClusterWriter};
use crate::framework::Profile;
use crate::metrics::Metrics;
use crate::scheduling::{Action, Input, Scheduler, SchedulerConfig};
use crate::watch::{watch_nodes, watch_pods};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use pictor_telemetry::Readiness;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Leader election could not start.
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// The HTTP endpoints could not listen.
    #[error(transparent)]
    Listen(#[from] pictor_telemetry::ServeError),
    /// Another replica took the lease: this one stops writing and exits so it restarts clean.
    #[error("lost the leader lease")]
    LostLease,
}

/// How the scheduler runs.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// The `spec.schedulerName` served.
    pub scheduler_name: String,
    /// This replica's name in the lease and in Events.
    pub identity: String,
    /// Take a Lease before writing anything; off only for a single replica.
    pub leader_election: bool,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// Seconds a lease is valid without renewal.
    pub lease_duration_seconds: u64,
    /// Seconds before expiry at which the holder renews.
    pub lease_grace_seconds: u64,
    /// Where `/healthz`, `/readyz` and `/metrics` are served; none when absent.
    pub http_addr: Option<SocketAddr>,
    /// Bindings in flight at once.
    pub bind_concurrency: usize,
    /// Decisions between two looks at the watch events.
    pub batch: usize,
    /// Queue, backoff and gang tunables.
    pub scheduler: SchedulerConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            scheduler_name: crate::SCHEDULER_NAME.into(),
            identity: format!("pictor-scheduler-{}", std::process::id()),
            leader_election: true,
            lease_namespace: "kube-system".into(),
            lease_name: crate::SCHEDULER_NAME.into(),
            lease_duration_seconds: 15,
            lease_grace_seconds: 5,
            http_addr: None,
            bind_concurrency: 64,
            batch: 512,
            scheduler: SchedulerConfig::default(),
        }
    }
}

/// Runs the scheduler until `shutdown` completes (then releases the lease) or the lease is lost.
pub async fn run<W: ClusterWriter>(
    client: Client,
    writer: W,
    config: ServiceConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    let metrics = Arc::new(Metrics::default());
    let ready = Readiness::new("the watches have not listed the cluster yet");
    if let Some(addr) = config.http_addr {
        pictor_telemetry::serve(addr, metrics.registry(), ready.clone()).await?;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Input>();
    let watches = [
        tokio::spawn(watch_nodes(client.clone(), tx.clone())),
        tokio::spawn(watch_pods(client.clone(), config.scheduler_name.clone(), tx.clone())),
    ];

    // Without leader election the sender stays here, so `leading` stays true for the loop.
    let mut always_leading = None;
    let (mut leading, lease_task) = if config.leader_election {
        let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
            .with_namespace(&config.lease_namespace)
            .with_identity(&config.identity)
            .with_duration(config.lease_duration_seconds)
            .with_grace(config.lease_grace_seconds)
            .with_field_manager(crate::api::FIELD_MANAGER)
            .build()
            .await?;
        let (rx, task) = manager.watch().await;
        (rx, Some(task))
    } else {
        let (tx, rx) = watch::channel(true);
        always_leading = Some(tx);
        (rx, None)
    };

    let mut scheduler =
        Scheduler::new(Profile::pictor(config.scheduler.gang_wait), config.scheduler.clone(), metrics);
    let binds = Arc::new(Semaphore::new(config.bind_concurrency.max(1)));
    let reports = Arc::new(Semaphore::new(16));
    let mut was_leading = *leading.borrow();
    let mut shutdown = std::pin::pin!(shutdown);
    let result = loop {
        let now = Instant::now();
        let busy = scheduler.synced() && *leading.borrow() && scheduler.has_queued();
        let wake = if busy {
            now
        } else {
            scheduler.next_wake().unwrap_or(now + Duration::from_secs(1)).min(now + Duration::from_secs(1))
        };
        tokio::select! {
            biased;
            () = &mut shutdown => break Ok(()),
            changed = leading.changed() => {
                let is_leader = changed.is_ok() && *leading.borrow();
                if was_leading && !is_leader {
                    break Err(ServiceError::LostLease);
                }
                if is_leader {
                    tracing::info!(identity = %config.identity, "leading: scheduling starts");
                }
                was_leading = is_leader;
            }
            input = rx.recv() => {
                let Some(input) = input else { break Ok(()) };
                let now = Instant::now();
                scheduler.apply(input, now);
                // Take every event already waiting before deciding: decisions see a fresh view.
                for _ in 0..50_000 {
                    match rx.try_recv() {
                        Ok(input) => scheduler.apply(input, now),
                        Err(_) => break,
                    }
                }
            }
            () = tokio::time::sleep_until(wake.into()) => {}
        }
        ready.set(scheduler.synced());
        if !*leading.borrow() {
            continue;
        }
        for action in scheduler.next_actions(Instant::now(), config.batch) {
            match action {
                Action::Bind(binding) => {
                    let (writer, tx, binds) = (writer.clone(), tx.clone(), binds.clone());
                    tokio::spawn(async move {
                        let _permit = binds.acquire_owned().await;
                        let key = binding.key.clone();
                        let input = match writer.bind(&binding).await {
                            Ok(()) => Input::BindSucceeded(key),
                            Err(e) => {
                                tracing::debug!(error = %e, kind = e.metric_label(), "binding failed");
                                Input::BindFailed { key, pod_gone: matches!(e, ApiError::PodGone(_)) }
                            }
                        };
                        let _ = tx.send(input);
                    });
                }
                Action::ReportUnschedulable(report) => {
                    let (writer, reports) = (writer.clone(), reports.clone());
                    tokio::spawn(async move {
                        let _permit = reports.acquire_owned().await;
                        if let Err(e) = writer.report_unschedulable(&report).await {
                            tracing::debug!(error = %e, "reporting an unschedulable pod failed");
                        }
                    });
                }
            }
        }
    };
    for w in &watches {
        w.abort();
    }
    // Dropping the receiver makes the lease task release the lease, so a successor takes
    // over at once instead of waiting for it to expire.
    drop(leading);
    drop(always_leading);
    if let Some(task) = lease_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    result
}
