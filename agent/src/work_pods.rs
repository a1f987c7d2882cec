//! WorkUnits as member-side pods: the pods a unit becomes, the unit status its pods add up to,
//! and what the agent must do to bring the two together. All pure, so every branch is tested
//! without a cluster.

use crate::confinement::{ProviderPolicy, Refusal, confine};
use crate::gang_network::{GangNetwork, gang_network};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, Pod, PodSpec, ResourceRequirements, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use pictor_crds::contract::{annotations, labels};
use pictor_crds::v1alpha1::{
    CONDITION_READY, OutputObject, REASON_REFUSED, WorkUnit, WorkUnitPhase, WorkUnitStatus,
};
use pictor_crds::v1alpha1::{Observation, set_condition};
use std::collections::{BTreeMap, HashMap};

/// Condition recording a result that arrived after the hub had given the unit up as Lost.
pub const CONDITION_LATE_REPORT: &str = "LateReport";

/// How the agent runs units on its member.
#[derive(Clone, Debug)]
pub struct PodSettings {
    /// Member namespace the pods live in.
    pub namespace: String,
    /// `spec.schedulerName` of every pod.
    pub scheduler_name: String,
    /// The member's own variables, added to every container after the template's.
    pub env: Vec<(String, String)>,
    /// What the provider runs, and the CPU, memory and disk a pod gets by default.
    pub policy: ProviderPolicy,
}

/// Why a unit cannot run here; it becomes the unit's Failed message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitRefused {
    /// The placement left the vendor open.
    #[error("pod {0} names no GPU vendor (nvidia or amd); placement must choose one")]
    NoVendor(String),
    /// The unit has no UID yet (never from a real API server).
    #[error("the WorkUnit has no UID")]
    NoUid,
    /// The provider's policy does not run it.
    #[error("refused by this provider: {0}")]
    Policy(#[from] Refusal),
}

fn uid(unit: &WorkUnit) -> Result<&str, UnitRefused> {
    unit.metadata.uid.as_deref().ok_or(UnitRefused::NoUid)
}

/// Name of the member-side pod for one template of a unit.
pub fn pod_name(unit: &WorkUnit, template: &str) -> String {
    format!("{}-{template}", unit.metadata.name.as_deref().unwrap_or("unit"))
}

/// The pods a unit runs as: one per template, labelled back to the unit, a gang when more than
/// one.
pub fn pods_for_unit(unit: &WorkUnit, settings: &PodSettings) -> Result<Vec<Pod>, UnitRefused> {
    let uid = uid(unit)?;
    let gang = unit.spec.pods.len() > 1;
    unit.spec
        .pods
        .iter()
        .map(|template| {
            let resource = template
                .gpu_vendor
                .resource_name()
                .ok_or_else(|| UnitRefused::NoVendor(template.name.clone()))?;
            let mut labels = BTreeMap::from([(labels::WORK_UNIT_UID.to_string(), uid.to_string())]);
            if let Some(name) = unit.metadata.name.as_deref().filter(|n| n.len() <= 63) {
                labels.insert(labels::WORK_UNIT.to_string(), name.to_string());
            }
            if let Some(job) = unit.spec.job_ref.uid.get(..).filter(|u| !u.is_empty()) {
                labels.insert(labels::JOB_UID.to_string(), job.to_string());
            }
            let mut annotations = template.annotations.clone();
            if gang {
                labels.insert(labels::GANG.to_string(), uid.to_string());
                annotations.insert(annotations::GANG_SIZE.to_string(), unit.spec.pods.len().to_string());
            }
            let resources = settings.policy.admit(template)?;
            let limits = BTreeMap::from([(resource.to_string(), Quantity(template.gpus.to_string()))]);
            let mut pod = Pod {
                metadata: ObjectMeta {
                    name: Some(pod_name(unit, &template.name)),
                    namespace: Some(settings.namespace.clone()),
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    // Placement chose a GPU model; a member with several must run the pod there.
                    node_selector: unit
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(pictor_crds::contract::annotations::GPU_MODEL))
                        .map(|model| {
                            BTreeMap::from([(
                                pictor_crds::contract::node_labels::PRODUCT.to_string(),
                                model.clone(),
                            )])
                        }),
                    // `<template>.<unit>` resolves to this pod through the unit's headless
                    // Service: how torchrun workers find worker 0.
                    hostname: unit.spec.rendezvous_port.map(|_| template.name.clone()),
                    subdomain: unit.spec.rendezvous_port.and(unit.metadata.name.clone()),
                    scheduler_name: Some(settings.scheduler_name.clone()),
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "work".into(),
                        image: Some(template.image.clone()),
                        command: Some(template.command.clone()).filter(|c| !c.is_empty()),
                        args: Some(template.args.clone()).filter(|a| !a.is_empty()),
                        env: Some(container_env(template, &settings.env))
                            .filter(|e: &Vec<EnvVar>| !e.is_empty()),
                        ports: unit.spec.rendezvous_port.map(|port| {
                            vec![ContainerPort {
                                container_port: port as i32,
                                name: Some("rendezvous".into()),
                                ..Default::default()
                            }]
                        }),
                        resources: Some(ResourceRequirements { limits: Some(limits), ..Default::default() }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                status: None,
            };
            if let Some(spec) = pod.spec.as_mut() {
                confine(spec, &resources);
            }
            Ok(pod)
        })
        .collect()
}

/// The template's variables, then the member's that the template does not set.
fn container_env(template: &pictor_crds::v1alpha1::PodTemplate, member: &[(String, String)]) -> Vec<EnvVar> {
    let from_hub = template.env.iter().map(|e| (e.name.as_str(), e.value.as_str()));
    let from_member = member
        .iter()
        .filter(|(name, _)| !template.env.iter().any(|e| e.name == *name))
        .map(|(name, value)| (name.as_str(), value.as_str()));
    from_hub
        .chain(from_member)
        .map(|(name, value)| EnvVar {
            name: name.to_string(),
            value: Some(value.to_string()),
            ..Default::default()
        })
        .collect()
}

fn pod_phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

fn terminated(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| c.state.as_ref()?.terminated.as_ref())
}

/// What the unit's pods add up to, merged into its current status. A unit the hub gave up as
/// Lost stays Lost: a finished result is recorded in a `LateReport` condition, never as a
/// phase that would be paid.
pub fn observed_status(unit: &WorkUnit, pods: &[&Pod], now: &Time) -> WorkUnitStatus {
    let current = unit.status.clone().unwrap_or_default();
    let templates = &unit.spec.pods;
    let by_name: HashMap<&str, &Pod> =
        pods.iter().filter_map(|p| Some((p.metadata.name.as_deref()?, *p))).collect();
    let ordered: Vec<Option<&Pod>> =
        templates.iter().map(|t| by_name.get(pod_name(unit, &t.name).as_str()).copied()).collect();
    let all_present = ordered.iter().all(Option::is_some);
    let phases: Vec<&str> = ordered.iter().flatten().map(|p| pod_phase(p)).collect();

    let (phase, mut message) =
        if let Some(failed) = ordered.iter().flatten().find(|p| pod_phase(p) == "Failed") {
            let reason = terminated(failed).and_then(|t| t.reason.clone()).unwrap_or_else(|| "Error".into());
            (
                WorkUnitPhase::Failed,
                Some(format!("pod {} failed: {reason}", failed.metadata.name.as_deref().unwrap_or(""))),
            )
        } else if all_present && !phases.is_empty() && phases.iter().all(|p| *p == "Succeeded") {
            // The worker's own result (a verification verdict, say) is what the hub reads next.
            let result = ordered.iter().flatten().find_map(|p| terminated(p)?.message.clone());
            (WorkUnitPhase::Succeeded, result.map(|m| m.chars().take(2048).collect()))
        } else if current.phase == Some(WorkUnitPhase::Running) && !all_present {
            (WorkUnitPhase::Failed, Some("a pod of the unit disappeared from the member while it ran".into()))
        } else if phases.iter().any(|p| *p == "Running" || *p == "Succeeded") {
            (WorkUnitPhase::Running, None)
        } else {
            (WorkUnitPhase::Pending, None)
        };

    let terminal = matches!(phase, WorkUnitPhase::Succeeded | WorkUnitPhase::Failed);
    let start_time =
        ordered.iter().flatten().filter_map(|p| p.status.as_ref()?.start_time.clone()).min_by_key(|t| t.0);
    let end_of = |p: &Pod| terminated(p).and_then(|t| t.finished_at.clone()).unwrap_or_else(|| now.clone());
    let completion_time =
        terminal.then(|| ordered.iter().flatten().map(|p| end_of(p)).max_by_key(|t| t.0)).flatten();
    let gpu_seconds = if terminal {
        templates
            .iter()
            .zip(&ordered)
            .filter_map(|(t, p)| {
                let p = (*p)?;
                let start = p.status.as_ref()?.start_time.as_ref()?;
                let seconds = end_of(p).0.duration_since(start.0).as_secs_f64().max(0.0);
                Some(t.gpus * seconds.round() as i64)
            })
            .sum()
    } else {
        0
    };
    let exit_codes = if terminal {
        ordered.iter().map(|p| p.and_then(terminated).map_or(-1, |t| t.exit_code)).collect()
    } else {
        Vec::new()
    };

    let outputs: Vec<OutputObject> = if terminal {
        ordered
            .iter()
            .flatten()
            .filter_map(|p| terminated(p)?.message.as_deref())
            .flat_map(reported_outputs)
            .collect()
    } else {
        Vec::new()
    };

    let mut status = current.clone();
    if current.phase == Some(WorkUnitPhase::Lost) {
        if terminal {
            let observation = Observation {
                type_: CONDITION_LATE_REPORT,
                status: true,
                reason: if phase == WorkUnitPhase::Succeeded {
                    "SucceededAfterLost"
                } else {
                    "FailedAfterLost"
                },
                message: format!(
                    "the member reported {phase:?} with {gpu_seconds} GPU-seconds after the unit was Lost; kept for the record, not paid"
                ),
            };
            set_condition(&mut status.conditions, observation, unit.metadata.generation, now.clone());
        }
        return status;
    }
    if phase == WorkUnitPhase::Pending && !all_present && current.message.is_some() {
        message = current.message.clone();
    }
    status.phase = Some(phase);
    status.start_time = start_time;
    status.completion_time = completion_time;
    status.gpu_seconds = gpu_seconds;
    status.exit_codes = exit_codes;
    status.outputs = outputs;
    status.message = message;
    status.observed_generation = unit.metadata.generation;
    let ready = matches!(phase, WorkUnitPhase::Running | WorkUnitPhase::Succeeded);
    let reason = format!("{phase:?}");
    let observation = Observation {
        type_: CONDITION_READY,
        status: ready,
        reason: &reason,
        message: status.message.clone().unwrap_or_else(|| format!("the unit is {phase:?} on its member")),
    };
    set_condition(&mut status.conditions, observation, unit.metadata.generation, now.clone());
    status
}

/// The objects a worker reported in its termination message: the render worker's
/// `{"frames":[{"url","sha256"}]}`, or `{"manifest":{"url","sha256"}}` when the list did not fit.
pub fn reported_outputs(message: &str) -> Vec<OutputObject> {
    #[derive(serde::Deserialize)]
    struct Report {
        #[serde(default)]
        frames: serde_json::Value,
        manifest: Option<OutputObject>,
    }
    let Ok(report) = serde_json::from_str::<Report>(message) else { return Vec::new() };
    if let Some(manifest) = report.manifest {
        return vec![manifest];
    }
    serde_json::from_value::<Vec<OutputObject>>(report.frames).unwrap_or_default()
}

/// Whether two statuses differ in what the agent reports (times of conditions aside).
pub fn reported_differs(a: &WorkUnitStatus, b: &WorkUnitStatus) -> bool {
    let strip = |s: &WorkUnitStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) != strip(b)
}

/// One thing the agent does to its member or to the hub.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentAction {
    /// Create a pod of a unit.
    CreatePod(Box<Pod>),
    /// Delete a pod whose unit is gone or Lost.
    DeletePod(String),
    /// Create what a rendezvous gang talks over: the NetworkPolicy that lets its pods reach
    /// each other (and nothing else more), then its headless Service.
    CreateGangNetwork(Box<GangNetwork>),
    /// Write a unit's status on the hub.
    ReportStatus { unit: String, status: Box<WorkUnitStatus> },
}

/// What the agent must do so that member pods match the hub's units.
///
/// `units_synced` is false until the hub's WorkUnits have been listed once: until then (and
/// during a hub outage the store keeps its last contents) no pod is deleted for a missing unit.
pub fn plan(
    units: &[&WorkUnit],
    pods: &[&Pod],
    services: &[&Service],
    units_synced: bool,
    settings: &PodSettings,
    now: &Time,
) -> Vec<AgentAction> {
    let mut actions = Vec::new();
    let mut pods_by_unit: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for pod in pods {
        if let Some(uid) = pod.metadata.labels.as_ref().and_then(|l| l.get(labels::WORK_UNIT_UID)) {
            pods_by_unit.entry(uid.as_str()).or_default().push(pod);
        }
    }
    let mut known = std::collections::HashSet::new();
    for unit in units {
        let Some(uid) = unit.metadata.uid.as_deref() else { continue };
        known.insert(uid);
        let name = unit.metadata.name.clone().unwrap_or_default();
        let unit_pods = pods_by_unit.get(uid).cloned().unwrap_or_default();
        let current = unit.status.clone().unwrap_or_default();
        let lost = current.phase == Some(WorkUnitPhase::Lost);
        let deleting = unit.metadata.deletion_timestamp.is_some();

        let observed = observed_status(unit, &unit_pods, now);
        if !deleting && reported_differs(&observed, &current) {
            actions
                .push(AgentAction::ReportStatus { unit: name.clone(), status: Box::new(observed.clone()) });
        }
        if lost || deleting {
            actions
                .extend(unit_pods.iter().filter_map(|p| p.metadata.name.clone()).map(AgentAction::DeletePod));
            continue;
        }
        let has_service = services.iter().any(|s| s.metadata.name == unit.metadata.name);
        let first_pod = unit.spec.pods.first().and_then(|t| {
            let name = pod_name(unit, &t.name);
            unit_pods.iter().find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
        });
        if !has_service && let Some(network) = first_pod.and_then(|p| gang_network(unit, settings, p)) {
            actions.push(AgentAction::CreateGangNetwork(Box::new(network)));
        }
        let may_start = matches!(current.phase, None | Some(WorkUnitPhase::Pending));
        if !may_start {
            continue;
        }
        match pods_for_unit(unit, settings) {
            Ok(wanted) => {
                let existing: std::collections::HashSet<_> =
                    unit_pods.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
                for pod in wanted {
                    if !existing.contains(pod.metadata.name.as_deref().unwrap_or_default()) {
                        actions.push(AgentAction::CreatePod(Box::new(pod)));
                    }
                }
            }
            Err(refused) => {
                let mut status = current.clone();
                status.phase = Some(WorkUnitPhase::Failed);
                status.message = Some(refused.to_string());
                let observation = Observation {
                    type_: CONDITION_READY,
                    status: false,
                    reason: REASON_REFUSED,
                    message: refused.to_string(),
                };
                set_condition(&mut status.conditions, observation, unit.metadata.generation, now.clone());
                actions.retain(|a| !matches!(a, AgentAction::ReportStatus { unit, .. } if *unit == name));
                actions.push(AgentAction::ReportStatus { unit: name.clone(), status: Box::new(status) });
            }
        }
    }
    if units_synced {
        for (uid, unit_pods) in &pods_by_unit {
            if !known.contains(uid) {
                actions.extend(
                    unit_pods.iter().filter_map(|p| p.metadata.name.clone()).map(AgentAction::DeletePod),
                );
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn settings() -> PodSettings {
        PodSettings {
            namespace: "pictor-work".into(),
            scheduler_name: "pictor-scheduler".into(),
            env: vec![],
            policy: ProviderPolicy::permissive(Default::default()),
        }
    }

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + seconds).unwrap())
    }

    fn unit(pods: usize, phase: Option<&str>) -> WorkUnit {
        let templates: Vec<_> = (0..pods)
            .map(|i| {
                json!({"name": format!("worker-{i}"), "image": "img", "gpuVendor": "nvidia", "gpus": 2,
                            "annotations": {"pictor.network/fake-run-seconds": "3"}})
            })
            .collect();
        let mut u = json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
            "metadata": {"name": "shot-0001", "namespace": "pictor-member-a", "uid": "unit-uid", "generation": 1},
            "spec": {"jobRef": {"kind": "RenderJob", "namespace": "default", "name": "shot", "uid": "job-uid"},
                     "pods": templates, "agreedPricePerGpuHour": 100}
        });
        if let Some(phase) = phase {
            u["status"] = json!({"phase": phase});
        }
        serde_json::from_value(u).unwrap()
    }

    fn pod(name: &str, phase: &str, start: i64, end: Option<(i64, i32)>) -> Pod {
        let mut p = json!({
            "metadata": {"name": name, "labels": {"pictor.network/work-unit-uid": "unit-uid"}},
            "status": {"phase": phase, "startTime": at(start).0.to_string()}
        });
        if let Some((end, code)) = end {
            p["status"]["containerStatuses"] = json!([{"name": "work", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "finishedAt": at(end).0.to_string(), "reason": if code == 0 {"Completed"} else {"Error"}}}}]);
        }
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn the_members_variables_follow_the_hubs_and_never_replace_them() {
        let mut u = unit(1, None);
        u.spec.pods[0].env = serde_json::from_value(json!([{"name": "MODE", "value": "hub"}])).unwrap();
        let mut with_env = settings();
        with_env.env =
            vec![("MODE".into(), "member".into()), ("AWS_ENDPOINT_URL".into(), "http://store:9000".into())];
        let pods = pods_for_unit(&u, &with_env).unwrap();
        let env: Vec<(String, Option<String>)> = pods[0].spec.as_ref().unwrap().containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect();
        assert_eq!(
            env,
            [
                ("MODE".to_string(), Some("hub".to_string())),
                ("AWS_ENDPOINT_URL".into(), Some("http://store:9000".into())),
                ("HOME".into(), Some("/tmp".into())),
                ("TMPDIR".into(), Some("/tmp".into())),
            ]
        );
    }

    #[test]
    fn a_gang_unit_becomes_labelled_pods_with_gpu_limits_and_its_size() {
        let pods = pods_for_unit(&unit(4, None), &settings()).unwrap();
        assert_eq!(pods.len(), 4);
        let p = &pods[0];
        assert_eq!(p.metadata.name.as_deref(), Some("shot-0001-worker-0"));
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[labels::WORK_UNIT_UID], "unit-uid");
        assert_eq!(labels[labels::GANG], "unit-uid");
        assert_eq!(labels[labels::JOB_UID], "job-uid");
        let annotations = p.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations[annotations::GANG_SIZE], "4");
        assert_eq!(annotations["pictor.network/fake-run-seconds"], "3");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.scheduler_name.as_deref(), Some("pictor-scheduler"));
        let limits = spec.containers[0].resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["nvidia.com/gpu"], Quantity("2".into()));
        assert_eq!(spec.node_selector, None, "no model chosen, no selector");
        let mut placed = unit(1, None);
        placed.metadata.annotations = Some(BTreeMap::from([(
            "pictor.network/gpu-model".to_string(),
            "NVIDIA-H100-80GB-HBM3".to_string(),
        )]));
        let pinned = pods_for_unit(&placed, &settings()).unwrap();
        let selector = pinned[0].spec.as_ref().unwrap().node_selector.clone().unwrap();
        assert_eq!(
            selector["pictor.network/gpu.product"], "NVIDIA-H100-80GB-HBM3",
            "the model placement chose"
        );
        let single = pods_for_unit(&unit(1, None), &settings()).unwrap();
        assert!(
            !single[0].metadata.labels.as_ref().unwrap().contains_key(labels::GANG),
            "one pod is no gang"
        );
    }

    #[test]
    fn new_units_get_their_pods_once_and_restarts_create_none_twice() {
        let u = unit(2, None);
        let actions = plan(&[&u], &[], &[], true, &settings(), &at(0));
        assert_eq!(actions.iter().filter(|a| matches!(a, AgentAction::CreatePod(_))).count(), 2);
        // After a restart the agent finds one pod by label: it creates only the missing one.
        let existing = pod("shot-0001-worker-0", "Pending", 0, None);
        let actions = plan(&[&u], &[&existing], &[], true, &settings(), &at(0));
        let created: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                AgentAction::CreatePod(p) => p.metadata.name.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(created, ["shot-0001-worker-1"]);
    }

    #[test]
    fn succeeded_pods_report_times_exit_codes_and_gpu_seconds() {
        let u = unit(2, Some("Running"));
        let a = pod("shot-0001-worker-0", "Succeeded", 0, Some((10, 0)));
        let b = pod("shot-0001-worker-1", "Succeeded", 2, Some((12, 0)));
        let status = observed_status(&u, &[&a, &b], &at(20));
        assert_eq!(status.phase, Some(WorkUnitPhase::Succeeded));
        assert_eq!(status.start_time, Some(at(0)));
        assert_eq!(status.completion_time, Some(at(12)));
        assert_eq!(status.exit_codes, [0, 0]);
        assert_eq!(status.gpu_seconds, 2 * 10 + 2 * 10);
        assert_eq!(status.conditions[0].status, "True");
    }

    #[test]
    fn the_render_workers_report_becomes_the_units_outputs() {
        let frames = r#"{"frames":[{"frame":1,"url":"s3://o/frame_000001.png","sha256":"ab"}],"device":"CPU","renderSeconds":3.5}"#;
        assert_eq!(
            reported_outputs(frames),
            [OutputObject { url: "s3://o/frame_000001.png".into(), sha256: "ab".into() }]
        );
        let manifest = r#"{"manifest":{"url":"s3://o/manifest_1_99.json","sha256":"cd"},"frames":99}"#;
        assert_eq!(reported_outputs(manifest)[0].url, "s3://o/manifest_1_99.json");
        assert!(reported_outputs("killed").is_empty());
    }

    #[test]
    fn one_failed_pod_fails_the_unit_with_its_reason() {
        let u = unit(2, Some("Running"));
        let a = pod("shot-0001-worker-0", "Failed", 0, Some((5, 137)));
        let b = pod("shot-0001-worker-1", "Running", 0, None);
        let status = observed_status(&u, &[&a, &b], &at(6));
        assert_eq!(status.phase, Some(WorkUnitPhase::Failed));
        assert_eq!(status.exit_codes, [137, -1]);
        assert!(status.message.unwrap().contains("shot-0001-worker-0 failed: Error"));
    }

    #[test]
    fn a_lost_unit_stays_lost_keeps_a_late_report_and_its_pods_are_deleted() {
        let u = unit(1, Some("Lost"));
        let done = pod("shot-0001-worker-0", "Succeeded", 0, Some((30, 0)));
        let actions = plan(&[&u], &[&done], &[], true, &settings(), &at(40));
        let report = actions
            .iter()
            .find_map(|a| match a {
                AgentAction::ReportStatus { status, .. } => Some(status.clone()),
                _ => None,
            })
            .expect("a late report");
        assert_eq!(report.phase, Some(WorkUnitPhase::Lost));
        assert_eq!(report.gpu_seconds, 0, "a Lost unit's GPU time is never counted");
        let late = report.conditions.iter().find(|c| c.type_ == CONDITION_LATE_REPORT).unwrap();
        assert!(late.message.contains("Succeeded with 60 GPU-seconds"), "{}", late.message);
        assert!(actions.contains(&AgentAction::DeletePod("shot-0001-worker-0".into())));
        assert!(!actions.iter().any(|a| matches!(a, AgentAction::CreatePod(_))));
    }

    #[test]
    fn pods_of_deleted_units_go_only_once_the_hub_was_listed() {
        let orphan = pod("gone-worker-0", "Running", 0, None);
        assert!(
            plan(&[], &[&orphan], &[], false, &settings(), &at(0)).is_empty(),
            "not before the first list"
        );
        assert_eq!(
            plan(&[], &[&orphan], &[], true, &settings(), &at(0)),
            [AgentAction::DeletePod("gone-worker-0".into())]
        );
    }

    #[test]
    fn a_rendezvous_gang_gets_hostnames_and_a_headless_service_owned_by_its_first_pod() {
        let mut u = unit(2, None);
        u.spec.rendezvous_port = Some(23456);
        let pods = pods_for_unit(&u, &settings()).unwrap();
        let spec = pods[1].spec.as_ref().unwrap();
        assert_eq!(
            (spec.hostname.as_deref(), spec.subdomain.as_deref()),
            (Some("worker-1"), Some("shot-0001"))
        );
        let mut first = pod("shot-0001-worker-0", "Pending", 0, None);
        first.metadata.uid = Some("pod-uid".into());
        let actions = plan(&[&u], &[&first], &[], true, &settings(), &at(0));
        let service = actions
            .iter()
            .find_map(|a| match a {
                AgentAction::CreateGangNetwork(n) => Some(n.service.clone()),
                _ => None,
            })
            .expect("a Service");
        let svc_spec = service.spec.unwrap();
        assert_eq!(svc_spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(svc_spec.ports.unwrap()[0].port, 23456);
        assert_eq!(service.metadata.owner_references.unwrap()[0].uid, "pod-uid");
    }

    #[test]
    fn a_unit_the_provider_does_not_run_fails_at_once_with_the_providers_reason() {
        let mut strict = settings();
        strict.policy = ProviderPolicy::new(
            pictor_crds::v1alpha1::WorkPolicy {
                images: vec!["ghcr.io/pictor-network/*".into()],
                ..Default::default()
            },
            Default::default(),
        )
        .unwrap();
        let actions = plan(&[&unit(1, None)], &[], &[], true, &strict, &at(0));
        assert_eq!(actions.len(), 1, "{actions:?}");
        let AgentAction::ReportStatus { status, .. } = &actions[0] else { panic!("{actions:?}") };
        assert_eq!(status.phase, Some(WorkUnitPhase::Failed));
        assert_eq!(
            status.message.as_deref(),
            Some(
                "refused by this provider: pod worker-0: image img is not allowed by this provider (it runs: ghcr.io/pictor-network/*)"
            )
        );
    }

    #[test]
    fn a_unit_without_a_vendor_fails_with_what_to_fix() {
        let mut u = unit(1, None);
        u.spec.pods[0].gpu_vendor = pictor_crds::v1alpha1::GpuVendor::Any;
        let actions = plan(&[&u], &[], &[], true, &settings(), &at(0));
        let AgentAction::ReportStatus { status, .. } = &actions[0] else { panic!("{actions:?}") };
        assert_eq!(status.phase, Some(WorkUnitPhase::Failed));
        assert!(status.message.as_ref().unwrap().contains("names no GPU vendor"));
    }
}
