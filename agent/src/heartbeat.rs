//! The agent's heartbeat: its Lease on the hub, renewed every few seconds.

use super::metrics::AgentMetrics;
use super::{AgentConfig, FIELD_MANAGER};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams};

/// Renews the Lease forever; a failed renewal (hub outage) is logged and tried again at the
/// next beat, and the hub's member controller decides what silence means.
pub async fn renew_forever(
    hub: kube::Client,
    namespace: String,
    config: AgentConfig,
    metrics: std::sync::Arc<AgentMetrics>,
) {
    let leases = Api::<Lease>::namespaced(hub, &namespace);
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    let mut failing = false;
    loop {
        let body = serde_json::json!({
            "spec": {
                "holderIdentity": config.identity,
                "leaseDurationSeconds": config.lease_duration.as_secs(),
                "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now()),
            }
        });
        let renewed =
            leases.patch(pictor_crds::contract::members::AGENT, &params, &Patch::Merge(&body)).await;
        if renewed.is_ok() {
            metrics.heartbeats.inc();
        } else {
            metrics.heartbeat_failures.inc();
        }
        match renewed {
            Ok(_) if failing => {
                tracing::info!("heartbeat restored");
                failing = false;
            }
            Ok(_) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "heartbeat failed; the hub may be unreachable");
                }
                failing = true;
            }
        }
        tokio::time::sleep(config.heartbeat_interval).await;
    }
}
