//! `pictor logs`: the log tails of a job's units, as the members' agents copied them to the hub
//! (ConfigMaps `<unit>-log` beside each WorkUnit; see `agent::unit_logs`).

use super::{CliError, Hub};
use clap::Args;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use pictor_crds::contract::annotations::{LOG_CAPTURED_AT as CAPTURED_AT, LOG_FINAL as FINAL};
use pictor_crds::v1alpha1::{RenderJob, TrainingJob, WorkUnit};

#[derive(Args)]
pub(super) struct LogsArgs {
    /// The RenderJob or TrainingJob.
    job: String,
    /// Only this unit.
    #[arg(long)]
    unit: Option<String>,
}

/// The UID of the job named `name`, a RenderJob or else a TrainingJob.
pub(super) async fn job_uid(hub: &Hub, name: &str) -> Result<String, CliError> {
    let render = Api::<RenderJob>::namespaced(hub.client.clone(), &hub.namespace)
        .get_opt(name)
        .await
        .map_err(super::hub(format!("read RenderJob {name}")))?;
    let uid = match render {
        Some(job) => job.metadata.uid,
        None => Api::<TrainingJob>::namespaced(hub.client.clone(), &hub.namespace)
            .get_opt(name)
            .await
            .map_err(super::hub(format!("read TrainingJob {name}")))?
            .and_then(|j| j.metadata.uid),
    };
    uid.ok_or_else(|| {
        CliError::Usage(format!("no RenderJob or TrainingJob named {name} in namespace {}", hub.namespace))
    })
}

/// A job's units, oldest first.
pub(super) async fn job_units(hub: &Hub, uid: &str) -> Result<Vec<WorkUnit>, CliError> {
    let selector = format!("{}={uid}", pictor_crds::contract::labels::JOB_UID);
    let mut units = Api::<WorkUnit>::all(hub.client.clone())
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(super::hub("list WorkUnits"))?
        .items;
    units.sort_by_key(|u| (u.metadata.creation_timestamp.clone().map(|t| t.0), u.metadata.name.clone()));
    Ok(units)
}

/// What `pictor logs` prints for one unit and its stored logs (if any).
pub fn unit_section(unit: &WorkUnit, stored: Option<&ConfigMap>) -> Vec<String> {
    let namespace = unit.metadata.namespace.as_deref().unwrap_or_default();
    let member = pictor_crds::contract::member_of_namespace(namespace).unwrap_or(namespace);
    let phase = unit.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
    let name = unit.metadata.name.as_deref().unwrap_or_default();
    let frames =
        if unit.spec.frames.is_empty() { String::new() } else { format!(", frames {}", unit.spec.frames) };
    let mut lines = vec![format!("==> {name} on {member} ({phase:?}{frames}) <==")];
    let Some(stored) = stored else {
        lines.push("(no log stored yet: the member's agent copies it once the unit's pods start)".into());
        return lines;
    };
    let annotation = |k: &str| stored.metadata.annotations.as_ref().and_then(|a| a.get(k)).cloned();
    if annotation(FINAL).as_deref() != Some("true") {
        let at = annotation(CAPTURED_AT).unwrap_or_else(|| "?".into());
        lines.push(format!("(copied at {at} while the unit ran; the final copy follows when it ends)"));
    }
    let data = stored.data.clone().unwrap_or_default();
    let several = data.len() > 1;
    // In the unit's pod order, which is how the agent named the keys.
    for template in &unit.spec.pods {
        let Some(text) = data.get(&format!("{}.log", template.name)) else { continue };
        if several {
            lines.push(format!("--- {} ---", template.name));
        }
        lines.extend(text.lines().map(str::to_string));
    }
    lines
}

pub(super) async fn run(hub: &Hub, args: LogsArgs) -> Result<(), CliError> {
    let uid = job_uid(hub, &args.job).await?;
    let units: Vec<WorkUnit> = job_units(hub, &uid)
        .await?
        .into_iter()
        .filter(|u| args.unit.as_deref().is_none_or(|n| u.metadata.name.as_deref() == Some(n)))
        .collect();
    if units.is_empty() {
        return Err(CliError::Usage(match args.unit {
            Some(unit) => format!("job {} has no unit named {unit}", args.job),
            None => format!("job {} has no units yet", args.job),
        }));
    }
    for (i, unit) in units.iter().enumerate() {
        let namespace = unit.metadata.namespace.as_deref().unwrap_or_default();
        let name = pictor_crds::contract::members::unit_log_config_map(
            unit.metadata.name.as_deref().unwrap_or_default(),
        );
        let stored = Api::<ConfigMap>::namespaced(hub.client.clone(), namespace)
            .get_opt(&name)
            .await
            .map_err(super::hub(format!("read ConfigMap {namespace}/{name}")))?
            .filter(|c| {
                c.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| Some(&o.uid) == unit.metadata.uid.as_ref())
            });
        if i > 0 {
            println!();
        }
        unit_section(unit, stored.as_ref()).iter().for_each(|l| println!("{l}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_unit_shows_its_member_phase_and_pods_logs_in_order() {
        let unit: WorkUnit = serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
            "metadata": {"name": "llm-a1", "namespace": "pictor-member-lab-b", "uid": "u1"},
            "spec": {"jobRef": {"kind": "TrainingJob", "namespace": "default", "name": "llm", "uid": "j"},
                     "pods": [{"name": "worker-0", "image": "i", "gpuVendor": "amd", "gpus": 1},
                              {"name": "worker-1", "image": "i", "gpuVendor": "amd", "gpus": 1}],
                     "agreedPricePerGpuHour": 1},
            "status": {"phase": "Running"}
        }))
        .unwrap();
        assert_eq!(unit_section(&unit, None)[0], "==> llm-a1 on lab-b (Running) <==");
        let stored: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "llm-a1-log", "annotations": {FINAL: "false", CAPTURED_AT: "2026-01-01T00:00:00Z"}},
            "data": {"worker-1.log": "log unavailable: no kubelet\n", "worker-0.log": "epoch 1\nepoch 2\n"}
        }))
        .unwrap();
        assert_eq!(
            unit_section(&unit, Some(&stored)),
            vec![
                "==> llm-a1 on lab-b (Running) <==",
                "(copied at 2026-01-01T00:00:00Z while the unit ran; the final copy follows when it ends)",
                "--- worker-0 ---",
                "epoch 1",
                "epoch 2",
                "--- worker-1 ---",
                "log unavailable: no kubelet",
            ]
        );
    }
}
