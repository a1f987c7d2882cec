//! Kubernetes Events the hub's controllers publish: each state change a person watching
//! `kubectl describe` cares about, with a reason — a job placed, a chunk retried or a gang
//! restarted, a verification failed, a job finished, a member turning Ready or NotReady, a unit
//! Lost. Which events a reconcile produces is decided by pure functions over the job, its units
//! and the plan; publishing is the edge.

use crate::render_job::plan::RenderPlan;
use crate::training_job::plan::TrainingPlan;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use pictor_crds::contract::labels::CHUNK;
use pictor_crds::contract::labels::VERIFIES;
use pictor_crds::v1alpha1::{
    JobReference, RenderJob, RenderJobPhase, TrainingJob, TrainingJobPhase, WorkUnit,
};
use std::collections::BTreeMap;

/// The `reportingController` of the operator's Events.
pub const REPORTER: &str = "pictor-operator";

/// A recorder for the operator's Events; `POD_NAME` (the downward API) names the instance.
pub fn recorder(client: kube::Client) -> Recorder {
    let instance = std::env::var("POD_NAME").ok();
    Recorder::new(client, Reporter { controller: REPORTER.into(), instance })
}

fn event(type_: EventType, reason: &str, action: &str, note: String) -> Event {
    // The API refuses notes over 1 kB.
    let mut note = note;
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None }
}

/// Publishes `events` about `regarding`. An Event the hub refuses is logged and dropped: it
/// never fails the reconcile that produced it.
pub async fn publish(recorder: &Recorder, regarding: &ObjectReference, events: Vec<Event>) {
    for e in events {
        if let Err(error) = recorder.publish(&e, regarding).await {
            tracing::warn!(reason = %e.reason, %error, "event not recorded");
        }
    }
}

/// The reference of the job a unit belongs to, for Events about the job.
pub fn job_reference(job: &JobReference) -> ObjectReference {
    ObjectReference {
        api_version: Some("pictor.network/v1alpha1".into()),
        kind: Some(format!("{:?}", job.kind)),
        namespace: Some(job.namespace.clone()),
        name: Some(job.name.clone()),
        uid: Some(job.uid.clone()),
        ..Default::default()
    }
}

fn member_of(unit: &WorkUnit) -> String {
    unit.member().unwrap_or_default().to_string()
}

fn is_verification(unit: &WorkUnit) -> bool {
    unit.metadata.labels.as_ref().is_some_and(|l| l.contains_key(VERIFIES))
}

/// "member-a (3), member-b (1)".
fn by_member<'a>(units: impl Iterator<Item = &'a WorkUnit>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for unit in units {
        *counts.entry(member_of(unit)).or_default() += 1;
    }
    counts.iter().map(|(m, n)| format!("{m} ({n})")).collect::<Vec<_>>().join(", ")
}

/// The last word of a failed or lost attempt of the same chunk, for a retry's note.
fn previous_failure(unit: &WorkUnit, units: &[&WorkUnit]) -> Option<String> {
    let chunk = unit.metadata.labels.as_ref()?.get(CHUNK)?;
    let previous = units
        .iter()
        .filter(|u| !is_verification(u))
        .filter(|u| u.metadata.labels.as_ref().and_then(|l| l.get(CHUNK)) == Some(chunk))
        .filter(|u| u.spec.attempt < unit.spec.attempt)
        .max_by_key(|u| u.spec.attempt)?;
    let status = previous.status.as_ref();
    let phase = status.and_then(|s| s.phase).map(|p| format!("{p:?}")).unwrap_or_else(|| "gone".into());
    let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
    Some(format!("attempt {} on {} {phase}: {message}", previous.spec.attempt, member_of(previous)))
}

/// What a render job's reconcile tells its owner, from the job as stored, its units and the plan.
pub fn render_job_events(job: &RenderJob, units: &[&WorkUnit], plan: &RenderPlan) -> Vec<Event> {
    let mut out = Vec::new();
    let chunks: Vec<&WorkUnit> = plan.create.iter().filter(|u| !is_verification(u)).collect();
    let first: Vec<&WorkUnit> = chunks.iter().copied().filter(|u| u.spec.attempt <= 1).collect();
    if !first.is_empty() {
        let verb = if units.is_empty() { "placed" } else { "more chunks placed" };
        out.push(event(
            EventType::Normal,
            "Placed",
            "Place",
            format!("{} chunks {verb} on {}", first.len(), by_member(first.iter().copied())),
        ));
    }
    for unit in chunks.iter().filter(|u| u.spec.attempt > 1) {
        let why = previous_failure(unit, units).unwrap_or_default();
        out.push(event(
            EventType::Warning,
            "ChunkRetried",
            "Place",
            format!(
                "frames {} placed again on {} (attempt {}) after {why}",
                unit.spec.frames,
                member_of(unit),
                unit.spec.attempt
            ),
        ));
    }
    for mark in plan.mismatched() {
        let (name, member) =
            (&mark.name, pictor_crds::contract::member_of_namespace(&mark.namespace).unwrap_or_default());
        out.push(event(
            EventType::Warning,
            "VerificationFailed",
            "Verify",
            format!(
                "the output of {name} rendered on {member} did not match a second provider's render; \
                 it is rejected and the chunk is rendered again elsewhere"
            ),
        ));
    }
    let before = job.status.as_ref().and_then(|s| s.phase);
    let after = plan.status.phase;
    if before != after {
        let note = plan.ready.2.clone();
        match after {
            Some(RenderJobPhase::Succeeded) => {
                out.push(event(EventType::Normal, "Succeeded", "Finish", note))
            }
            Some(RenderJobPhase::Failed) => out.push(event(EventType::Warning, "Failed", "Finish", note)),
            Some(RenderJobPhase::Cancelled) => {
                out.push(event(EventType::Normal, "Cancelled", "Cancel", note))
            }
            _ => {}
        }
    }
    out
}

/// What a training job's reconcile tells its owner.
pub fn training_job_events(job: &TrainingJob, plan: &TrainingPlan) -> Vec<Event> {
    let mut out = Vec::new();
    if let Some(unit) = plan.create.first() {
        let member = member_of(unit);
        let workers = unit.spec.pods.len();
        if unit.spec.attempt <= 1 {
            out.push(event(
                EventType::Normal,
                "Placed",
                "Place",
                format!("the gang of {workers} workers is placed on {member}"),
            ));
        } else {
            out.push(event(
                EventType::Warning,
                "GangRestarted",
                "Place",
                format!(
                    "attempt {} failed; attempt {} of {workers} workers placed on {member}, from the last checkpoint",
                    unit.spec.attempt - 1,
                    unit.spec.attempt
                ),
            ));
        }
    }
    let before = job.status.as_ref().and_then(|s| s.phase);
    let after = plan.status.phase;
    if before != after {
        let note = plan.ready.2.clone();
        match after {
            Some(TrainingJobPhase::Succeeded) => {
                out.push(event(EventType::Normal, "Succeeded", "Finish", note))
            }
            Some(TrainingJobPhase::Failed) => out.push(event(EventType::Warning, "Failed", "Finish", note)),
            Some(TrainingJobPhase::Cancelled) => {
                out.push(event(EventType::Normal, "Cancelled", "Cancel", note))
            }
            _ => {}
        }
    }
    out
}

/// The Event of a member whose readiness flipped (or was judged for the first time).
pub fn member_event(was_ready: Option<bool>, ready: bool, reason: &str, message: &str) -> Option<Event> {
    if was_ready == Some(ready) {
        return None;
    }
    let note = format!("{reason}: {message}");
    Some(if ready {
        event(EventType::Normal, "MemberReady", "Heartbeat", note)
    } else {
        event(EventType::Warning, "MemberNotReady", "Heartbeat", note)
    })
}

/// The Event of a member the hub cordoned because other providers could not reproduce its output.
pub fn member_cordoned(mismatches: i64) -> Event {
    event(
        EventType::Warning,
        "CordonedForMismatches",
        "Cordon",
        format!(
            "{mismatches} outputs of this member were not reproduced by other providers (the hub cordons at {}): it takes no new work until an admin sets spec.cordoned=false",
            crate::member_controller::CORDON_AFTER_MISMATCHES
        ),
    )
}

/// The Event of a unit given up because its member went silent (on the unit and on its job).
pub fn unit_lost(unit: &str, member: &str, why: &str) -> Event {
    event(
        EventType::Warning,
        "UnitLost",
        "MarkLost",
        format!("{unit} on {member} is Lost: {why}; its work is placed again elsewhere"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pictor_crds::v1alpha1::{RenderJobStatus, TrainingJobStatus};
    use serde_json::json;

    fn unit(name: &str, member: &str, chunk: i64, attempt: i64, phase: Option<&str>) -> WorkUnit {
        let mut u = json!({"apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
            "metadata": {"name": name, "namespace": format!("pictor-member-{member}"),
                         "labels": {"pictor.network/chunk": chunk.to_string()}},
            "spec": {"jobRef": {"kind": "RenderJob", "namespace": "art", "name": "shot", "uid": "1"},
                     "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": 1}],
                     "agreedPricePerGpuHour": 1, "attempt": attempt, "frames": "1-10"}});
        if let Some(p) = phase {
            u["status"] = json!({"phase": p, "message": "exit code 137"});
        }
        serde_json::from_value(u).unwrap()
    }

    fn render_job(phase: Option<RenderJobPhase>) -> RenderJob {
        let mut job: RenderJob = serde_json::from_value(json!({"apiVersion": "pictor.network/v1alpha1",
            "kind": "RenderJob", "metadata": {"name": "shot", "namespace": "art"},
            "spec": {"scene": "s3://s/a.blend", "frames": {"start": 1, "end": 20}, "chunkSize": 10,
                     "output": {"location": "s3://o/"}}}))
        .unwrap();
        job.status = Some(RenderJobStatus { phase, ..Default::default() });
        job
    }

    fn reasons(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.reason.as_str()).collect()
    }

    #[test]
    fn a_first_placement_says_where_the_chunks_went() {
        let job = render_job(None);
        let plan = RenderPlan {
            create: vec![
                unit("a0", "a", 0, 1, None),
                unit("a1", "a", 1, 1, None),
                unit("b2", "b", 2, 1, None),
            ],
            status: RenderJobStatus { phase: Some(RenderJobPhase::Rendering), ..Default::default() },
            ..Default::default()
        };
        let events = render_job_events(&job, &[], &plan);
        assert_eq!(reasons(&events), ["Placed"]);
        assert_eq!(events[0].note.as_deref(), Some("3 chunks placed on a (2), b (1)"));
    }

    #[test]
    fn a_retry_names_the_failure_it_follows() {
        let job = render_job(Some(RenderJobPhase::Rendering));
        let failed = unit("a0-1", "a", 0, 1, Some("Failed"));
        let plan = RenderPlan {
            create: vec![unit("b0-2", "b", 0, 2, None)],
            status: RenderJobStatus { phase: Some(RenderJobPhase::Rendering), ..Default::default() },
            ..Default::default()
        };
        let events = render_job_events(&job, &[&failed], &plan);
        assert_eq!(reasons(&events), ["ChunkRetried"]);
        let note = events[0].note.as_deref().unwrap();
        assert!(
            note.contains("on b (attempt 2)") && note.contains("attempt 1 on a Failed: exit code 137"),
            "{note}"
        );
        assert_eq!(events[0].type_, EventType::Warning);
    }

    #[test]
    fn a_mismatch_and_the_end_of_a_job_are_told_once() {
        let job = render_job(Some(RenderJobPhase::Rendering));
        let plan = RenderPlan {
            marks: vec![crate::accrual::UnitMark {
                namespace: "pictor-member-a".into(),
                name: "a0-1".into(),
                labels: [(
                    pictor_crds::contract::labels::VERDICT.to_string(),
                    pictor_crds::contract::MISMATCH.to_string(),
                )]
                .into(),
                annotations: Default::default(),
                finalizers: None,
            }],
            status: RenderJobStatus { phase: Some(RenderJobPhase::Failed), ..Default::default() },
            ready: (false, "ChunkFailed", "frames 1-10 failed 3 times".into()),
            ..Default::default()
        };
        let events = render_job_events(&job, &[], &plan);
        assert_eq!(reasons(&events), ["VerificationFailed", "Failed"]);
        assert_eq!(events[1].note.as_deref(), Some("frames 1-10 failed 3 times"));
        let again = render_job(Some(RenderJobPhase::Failed));
        let quiet = RenderPlan { status: plan.status.clone(), ..Default::default() };
        assert!(render_job_events(&again, &[], &quiet).is_empty(), "no phase change, no event");
        let done = RenderPlan {
            status: RenderJobStatus { phase: Some(RenderJobPhase::Succeeded), ..Default::default() },
            ..Default::default()
        };
        assert_eq!(reasons(&render_job_events(&job, &[], &done)), ["Succeeded"]);
    }

    #[test]
    fn a_gang_restart_and_a_training_job_success_are_told() {
        let mut job: TrainingJob = serde_json::from_value(json!({"apiVersion": "pictor.network/v1alpha1",
            "kind": "TrainingJob", "metadata": {"name": "llm", "namespace": "ml"},
            "spec": {"image": "i", "workers": 2, "gpu": {"count": 1}}}))
        .unwrap();
        job.status = Some(TrainingJobStatus { phase: Some(TrainingJobPhase::Running), ..Default::default() });
        let plan = TrainingPlan {
            create: vec![unit("llm-a2", "b", 0, 2, None)],
            status: TrainingJobStatus { phase: Some(TrainingJobPhase::Restarting), ..Default::default() },
            ..Default::default()
        };
        assert_eq!(reasons(&training_job_events(&job, &plan)), ["GangRestarted"]);
        let done = TrainingPlan {
            status: TrainingJobStatus { phase: Some(TrainingJobPhase::Succeeded), ..Default::default() },
            ..Default::default()
        };
        assert_eq!(reasons(&training_job_events(&job, &done)), ["Succeeded"]);
    }

    #[test]
    fn a_member_event_comes_only_when_readiness_flips() {
        assert!(member_event(Some(true), true, "HeartbeatFresh", "").is_none());
        let lost = member_event(Some(true), false, "HeartbeatMissed", "no heartbeat for 40s").unwrap();
        assert_eq!((lost.reason.as_str(), lost.type_), ("MemberNotReady", EventType::Warning));
        assert!(lost.note.unwrap().contains("HeartbeatMissed: no heartbeat for 40s"));
        assert_eq!(member_event(None, true, "HeartbeatFresh", "").unwrap().reason, "MemberReady");
        assert_eq!(unit_lost("u", "a", "silent").reason, "UnitLost");
    }
}
