//! The tail of each unit's pod logs, kept on the hub for `pictor logs`.
//!
//! The hub never reaches a member's API server (members connect out, with narrow credentials),
//! so the agent copies the logs up: the last [`LOG_TAIL_BYTES`] of each pod, in a ConfigMap
//! `<unit>-log` in the member's hub namespace, owned by the WorkUnit so it goes with it. A
//! unit that has run for [`RUNNING_REFRESH`] gets a copy at most that often while it runs (a
//! short unit needs none: its final copy follows soon); a finished unit's log is written once
//! more, marked final, and never again. When the member cannot serve a pod's log (a kwok node
//! without a log server has none) the ConfigMap says `log unavailable: <reason>` instead.

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use pictor_crds::contract::annotations::{LOG_CAPTURED_AT as CAPTURED_AT, LOG_FINAL as FINAL};
use pictor_crds::contract::labels::UNIT_LOG;
use pictor_crds::contract::members::unit_log_config_map as config_map_name;
use pictor_crds::v1alpha1::{WorkUnit, WorkUnitPhase};
use std::collections::BTreeMap;
use std::time::Duration;

/// Most bytes of one pod's log kept.
pub const LOG_TAIL_BYTES: usize = 64 * 1024;
/// A ConfigMap holds at most 1 MiB; a gang's pods share what is left after the metadata.
const CONFIG_MAP_BUDGET: usize = 900 * 1024;
/// Lines asked of the member's API server (it cannot cut by bytes from the end).
pub const TAIL_LINES: i64 = 5000;
/// How often a running unit's log is copied again.
pub const RUNNING_REFRESH: Duration = Duration::from_secs(30);
/// Most logs copied per pass, so a member with many units does not flood either API server.
pub const MAX_CAPTURES_PER_PASS: usize = 8;

/// Logs to copy now: one unit, its pods by template name, and whether the unit has finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCapture {
    /// The unit's name.
    pub unit: String,
    /// The unit's UID (the ConfigMap's owner).
    pub unit_uid: String,
    /// (template name, member pod name) of each pod, in `spec.pods` order.
    pub pods: Vec<(String, String)>,
    /// Whether the unit's pods had finished: this is the last copy.
    pub final_copy: bool,
}

fn pod_finished(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

fn pod_started(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running" | "Succeeded" | "Failed"))
}

/// Which units' logs to copy now, from the hub's units, the member's pods and the log
/// ConfigMaps already on the hub.
pub fn captures_due(
    units: &[&WorkUnit],
    pods: &[&Pod],
    stored: &[&ConfigMap],
    now: Timestamp,
) -> Vec<LogCapture> {
    let by_name: BTreeMap<&str, &Pod> =
        pods.iter().filter_map(|p| Some((p.metadata.name.as_deref()?, *p))).collect();
    let stored: BTreeMap<&str, &ConfigMap> =
        stored.iter().filter_map(|c| Some((c.metadata.name.as_deref()?, *c))).collect();
    let mut due = Vec::new();
    for unit in units {
        let (Some(name), Some(uid)) = (unit.metadata.name.as_deref(), unit.metadata.uid.as_deref()) else {
            continue;
        };
        if unit.metadata.deletion_timestamp.is_some()
            || unit.status.as_ref().and_then(|s| s.phase) == Some(WorkUnitPhase::Lost)
        {
            continue;
        }
        let unit_pods: Vec<(String, &Pod)> = unit
            .spec
            .pods
            .iter()
            .filter_map(|t| {
                let pod = by_name.get(super::work_pods::pod_name(unit, &t.name).as_str())?;
                Some((t.name.clone(), *pod))
            })
            .collect();
        if unit_pods.is_empty() || !unit_pods.iter().any(|(_, p)| pod_started(p)) {
            continue;
        }
        let final_copy =
            unit_pods.len() == unit.spec.pods.len() && unit_pods.iter().all(|(_, p)| pod_finished(p));
        let existing = stored.get(config_map_name(name).as_str()).filter(|c| {
            // A log of an earlier unit of the same name is not this unit's.
            c.metadata.owner_references.iter().flatten().any(|o| o.uid == uid)
        });
        let annotation =
            |key: &str| existing.and_then(|c| c.metadata.annotations.as_ref()?.get(key).cloned());
        let already_final = annotation(FINAL).as_deref() == Some("true");
        let older_than_refresh =
            |t: Timestamp| now.duration_since(t).as_secs_f64() >= RUNNING_REFRESH.as_secs_f64();
        let captured_at = annotation(CAPTURED_AT).and_then(|t| t.parse::<Timestamp>().ok());
        let started_at =
            unit_pods.iter().filter_map(|(_, p)| p.status.as_ref()?.start_time.as_ref().map(|t| t.0)).min();
        let stale = match captured_at {
            Some(at) => older_than_refresh(at),
            None => started_at.is_some_and(older_than_refresh),
        };
        let wanted = if final_copy { !already_final } else { stale };
        if wanted {
            due.push(LogCapture {
                unit: name.to_string(),
                unit_uid: uid.to_string(),
                pods: unit_pods
                    .iter()
                    .map(|(t, p)| (t.clone(), p.metadata.name.clone().unwrap_or_default()))
                    .collect(),
                final_copy,
            });
        }
    }
    // Finished units first: their copy is the one that matters and is never refreshed.
    due.sort_by_key(|c| !c.final_copy);
    due.truncate(MAX_CAPTURES_PER_PASS);
    due
}

/// The last `limit` bytes of `log`, cut at a line start (or a character boundary) so it reads
/// cleanly, with a note of how much was dropped.
pub fn tail(log: &str, limit: usize) -> String {
    if log.len() <= limit {
        return log.to_string();
    }
    let mut start = log.len() - limit;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    if let Some(newline) = log[start..].find('\n')
        && newline + 1 < log.len() - start
    {
        start += newline + 1;
    }
    format!("[… {} earlier bytes not kept]\n{}", start, &log[start..])
}

/// What is stored for one pod: its log's tail, or why there is none.
pub fn stored_text(result: Result<String, String>, limit: usize) -> String {
    match result {
        Ok(log) if log.is_empty() => "(the pod wrote no log)\n".to_string(),
        Ok(log) => tail(&log, limit),
        Err(reason) => format!("log unavailable: {reason}\n"),
    }
}

/// The reason a log could not be read, as a person reads it.
pub fn unavailable_reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("the member's API server answered {}: {}", status.code, status.message)
        }
        other => format!("the member's API server could not serve it: {other}"),
    }
}

/// Bytes each pod's log may keep in a unit of `pods` pods.
pub fn limit_per_pod(pods: usize) -> usize {
    LOG_TAIL_BYTES.min(CONFIG_MAP_BUDGET / pods.max(1))
}

/// The ConfigMap that holds a unit's logs: one key `<template>.log` per pod, owned by the
/// WorkUnit (same namespace, so the owner reference is allowed and the garbage collector removes
/// it with the unit).
pub fn log_config_map(
    capture: &LogCapture,
    namespace: &str,
    logs: Vec<(String, String)>,
    now: Timestamp,
) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(&capture.unit)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(UNIT_LOG.to_string(), capture.unit.clone())])),
            annotations: Some(BTreeMap::from([
                (CAPTURED_AT.to_string(), now.to_string()),
                (FINAL.to_string(), capture.final_copy.to_string()),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: "pictor.network/v1alpha1".into(),
                kind: "WorkUnit".into(),
                name: capture.unit.clone(),
                uid: capture.unit_uid.clone(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        data: Some(logs.into_iter().map(|(template, text)| (format!("{template}.log"), text)).collect()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unit(name: &str, pods: &[&str], phase: Option<&str>) -> WorkUnit {
        let templates: Vec<_> =
            pods.iter().map(|p| json!({"name": p, "image": "i", "gpuVendor": "nvidia", "gpus": 1})).collect();
        serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
            "metadata": {"name": name, "namespace": "pictor-member-a", "uid": format!("uid-{name}")},
            "spec": {"jobRef": {"kind": "RenderJob", "namespace": "default", "name": "j", "uid": "j"},
                     "pods": templates, "agreedPricePerGpuHour": 1},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn pod(unit: &WorkUnit, template: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": super::super::work_pods::pod_name(unit, template), "namespace": "pictor-work"},
            "status": {"phase": phase, "startTime": "2026-01-01T00:00:00Z"}
        }))
        .unwrap()
    }

    fn stored(unit: &str, uid: &str, at: &str, final_copy: bool) -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{unit}-log"), "namespace": "pictor-member-a",
                         "annotations": {CAPTURED_AT: at, FINAL: final_copy.to_string()},
                         "ownerReferences": [{"apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
                                              "name": unit, "uid": uid}]}
        }))
        .unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_finished_unit_gets_one_final_copy_and_a_running_one_a_bounded_refresh() {
        let done = unit("done", &["render"], Some("Succeeded"));
        let running = unit("running", &["render"], Some("Running"));
        let waiting = unit("waiting", &["render"], Some("Pending"));
        let pods = [
            pod(&done, "render", "Succeeded"),
            pod(&running, "render", "Running"),
            pod(&waiting, "render", "Pending"),
        ];
        let units = [&done, &running, &waiting];
        let pod_refs: Vec<&Pod> = pods.iter().collect();
        let now = at("2026-01-01T00:01:00Z");

        // A unit that started 20 s ago gets no copy while it runs; at 30 s it does.
        let early = captures_due(&units, &pod_refs, &[], at("2026-01-01T00:00:20Z"));
        assert_eq!(early.iter().map(|c| c.unit.as_str()).collect::<Vec<_>>(), ["done"]);
        let due = captures_due(&units, &pod_refs, &[], now);
        assert_eq!(
            due.iter().map(|c| (c.unit.as_str(), c.final_copy)).collect::<Vec<_>>(),
            [("done", true), ("running", false)]
        );
        assert_eq!(due[0].pods, vec![("render".to_string(), pods[0].metadata.name.clone().unwrap())]);

        // Copied 10 s ago: the running unit waits; the finished one's final copy is done.
        let fresh = [
            stored("done", "uid-done", "2026-01-01T00:00:50Z", true),
            stored("running", "uid-running", "2026-01-01T00:00:50Z", false),
        ];
        let fresh_refs: Vec<&ConfigMap> = fresh.iter().collect();
        assert!(captures_due(&units, &pod_refs, &fresh_refs, now).is_empty());
        // 30 s later the running unit is copied again; the finished one never is.
        let later = captures_due(&units, &pod_refs, &fresh_refs, at("2026-01-01T00:01:21Z"));
        assert_eq!(later.iter().map(|c| c.unit.as_str()).collect::<Vec<_>>(), ["running"]);
        // A copy taken while it ran is not the final one.
        let running_copy = [stored("done", "uid-done", "2026-01-01T00:00:59Z", false)];
        let running_refs: Vec<&ConfigMap> = running_copy.iter().collect();
        assert!(captures_due(&[&done], &pod_refs, &running_refs, now)[0].final_copy);
        // A log left by an earlier unit of the same name does not count.
        let other = [stored("done", "uid-old", "2026-01-01T00:00:59Z", true)];
        let other_refs: Vec<&ConfigMap> = other.iter().collect();
        assert_eq!(captures_due(&[&done], &pod_refs, &other_refs, now).len(), 1);
    }

    #[test]
    fn a_gang_is_final_only_when_every_pod_finished_and_captures_are_bounded() {
        let gang = unit("gang", &["worker-0", "worker-1"], Some("Running"));
        let pods = [pod(&gang, "worker-0", "Succeeded"), pod(&gang, "worker-1", "Running")];
        let refs: Vec<&Pod> = pods.iter().collect();
        let due = captures_due(&[&gang], &refs, &[], at("2026-01-01T00:00:40Z"));
        assert!(!due[0].final_copy);
        assert_eq!(due[0].pods.len(), 2);

        let many: Vec<WorkUnit> =
            (0..20).map(|i| unit(&format!("u{i}"), &["render"], Some("Succeeded"))).collect();
        let many_pods: Vec<Pod> = many.iter().map(|u| pod(u, "render", "Succeeded")).collect();
        let units: Vec<&WorkUnit> = many.iter().collect();
        let pod_refs: Vec<&Pod> = many_pods.iter().collect();
        assert_eq!(
            captures_due(&units, &pod_refs, &[], at("2026-01-01T00:00:00Z")).len(),
            MAX_CAPTURES_PER_PASS
        );
    }

    #[test]
    fn lost_units_and_units_whose_pods_never_started_are_skipped() {
        let lost = unit("lost", &["render"], Some("Lost"));
        let pending = unit("pending", &["render"], None);
        let pods = [pod(&lost, "render", "Succeeded"), pod(&pending, "render", "Pending")];
        let refs: Vec<&Pod> = pods.iter().collect();
        assert!(captures_due(&[&lost, &pending], &refs, &[], at("2026-01-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn only_the_tail_is_kept_starting_at_a_whole_line() {
        assert_eq!(tail("short\n", 64), "short\n");
        let log = "line one\nline two\nline three\n";
        assert_eq!(tail(log, 15), "[… 18 earlier bytes not kept]\nline three\n");
        // Multi-byte characters are never cut in half.
        let wide = "ééééé";
        assert!(tail(wide, 3).ends_with('é'));
        assert_eq!(stored_text(Ok(String::new()), 10), "(the pod wrote no log)\n");
        assert_eq!(stored_text(Err("no kubelet".into()), 10), "log unavailable: no kubelet\n");
        assert_eq!(limit_per_pod(1), LOG_TAIL_BYTES);
        assert!(limit_per_pod(64) * 64 <= CONFIG_MAP_BUDGET);
    }

    #[test]
    fn the_log_config_map_is_owned_by_its_unit() {
        let capture = LogCapture {
            unit: "job-c0-a1".into(),
            unit_uid: "uid-1".into(),
            pods: vec![("render".into(), "p".into())],
            final_copy: true,
        };
        let cm = log_config_map(
            &capture,
            "pictor-member-a",
            vec![("render".into(), "hello\n".into())],
            at("2026-01-01T00:00:00Z"),
        );
        assert_eq!(cm.metadata.name.as_deref(), Some("job-c0-a1-log"));
        let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("WorkUnit", "uid-1", None));
        assert_eq!(cm.data.unwrap()["render.log"], "hello\n");
        assert_eq!(cm.metadata.annotations.unwrap()[FINAL], "true");
    }
}
