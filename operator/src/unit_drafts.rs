//! WorkUnits as the job controllers create them: names, labels and annotations that tie a unit
//! to its job and record what placement chose.

use crate::placement::Placement;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pictor_crds::contract::annotations::GPU_MODEL;
use pictor_crds::contract::{labels::JOB_UID, member_namespace};
use pictor_crds::v1alpha1::{JobKind, JobReference, PodTemplate, WorkUnit, WorkUnitSpec};
use std::collections::BTreeMap;

/// A unit name from a job name and a suffix, within the 63 characters a Service name (and the
/// `pictor.network/work-unit` label) allows.
pub fn unit_name(job: &str, suffix: &str) -> String {
    let room = 62usize.saturating_sub(suffix.len());
    let stem: String = job.chars().take(room).collect();
    format!("{}-{suffix}", stem.trim_end_matches('-'))
}

/// What a controller wants of a new unit.
pub struct UnitDraft {
    /// Unit name.
    pub name: String,
    /// The job.
    pub job: JobReference,
    /// Where placement put it.
    pub placement: Placement,
    /// Pods to run.
    pub pods: Vec<PodTemplate>,
    /// Frames, for a render chunk.
    pub frames: String,
    /// Attempt number.
    pub attempt: i64,
    /// Extra labels (chunk index).
    pub labels: BTreeMap<String, String>,
    /// Rendezvous port of a training gang.
    pub rendezvous_port: Option<i64>,
}

/// The WorkUnit of a draft, in its member's namespace.
pub fn work_unit(draft: UnitDraft) -> WorkUnit {
    let mut labels = draft.labels;
    labels.insert(JOB_UID.into(), draft.job.uid.clone());
    let mut unit = WorkUnit::new(
        &draft.name,
        WorkUnitSpec {
            job_ref: draft.job,
            pods: draft.pods,
            frames: draft.frames,
            agreed_price_per_gpu_hour: draft.placement.price_per_gpu_hour,
            deadline: None,
            attempt: draft.attempt,
            rendezvous_port: draft.rendezvous_port,
        },
    );
    unit.metadata = ObjectMeta {
        name: Some(draft.name),
        namespace: Some(member_namespace(&draft.placement.member)),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([(GPU_MODEL.to_string(), draft.placement.model)])),
        ..Default::default()
    };
    unit
}

/// The job kind of a unit's reference.
pub fn job_reference(kind: JobKind, namespace: &str, name: &str, uid: &str) -> JobReference {
    JobReference { kind, namespace: namespace.into(), name: name.into(), uid: uid.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_fit_a_service_name() {
        assert_eq!(unit_name("shot", "00001-1"), "shot-00001-1");
        let long = unit_name(&"a".repeat(100), "00001-1");
        assert_eq!(long.len(), 63);
        assert!(long.ends_with("-00001-1"));
    }
}
