//! WorkUnit: what the hub hands to one member — a render chunk or a training gang.

use super::conditions::conditions_schema;
use super::requirements::{GpuVendor, PodResources};
use super::training_job::EnvVar;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Work placed on one member: the pods to run (one for a render chunk, N for a training gang),
/// the job it belongs to and the agreed price. Lives in the member's namespace
/// `pictor-member-<cluster>` on the hub; the operator writes the spec, the member's agent the
/// status.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "pictor.network",
    version = "v1alpha1",
    kind = "WorkUnit",
    namespaced,
    status = "WorkUnitStatus",
    shortname = "wu",
    category = "pictor",
    doc = "Work placed on one Pictor member: a render chunk or a training gang.",
    printcolumn(name = "Job", type_ = "string", json_path = ".spec.jobRef.name"),
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.jobRef.kind"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "GPU-Seconds", type_ = "integer", json_path = ".status.gpuSeconds"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Frames", type_ = "string", json_path = ".spec.frames", priority = 1),
    selectable = ".spec.jobRef.uid"
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("a WorkUnit's spec is immutable: delete it and create a new unit"))]
pub struct WorkUnitSpec {
    /// The job this unit belongs to.
    pub job_ref: JobReference,

    /// Pods to run. More than one makes a gang: the member binds all of them or none.
    #[schemars(length(min = 1, max = 64))]
    pub pods: Vec<PodTemplate>,

    /// Frames of a render chunk, e.g. `1-10`; empty for training.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 64))]
    pub frames: String,

    /// Price per GPU-hour agreed at placement, in octas.
    #[x_kube(validation = Rule::new("self >= 0").message("agreedPricePerGpuHour is whole octas, not negative"))]
    pub agreed_price_per_gpu_hour: i64,

    /// The unit fails if it has not finished by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,

    /// Attempt number of this piece of work (1 for the first).
    #[serde(default = "super::requirements::one")]
    pub attempt: i64,

    /// For a gang that rendezvouses (torchrun): the member gives the unit a headless Service
    /// named after the unit with this port, and each pod the hostname of its template name, so
    /// `<template>.<unit>` resolves to that pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1024 && self <= 65535").message("rendezvousPort must be 1024 to 65535"))]
    pub rendezvous_port: Option<i64>,
}

/// Which job a unit belongs to. Cross-namespace owner references are not allowed, so this
/// reference and the label `pictor.network/job-uid` tie the unit to its job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JobReference {
    /// `RenderJob` or `TrainingJob`.
    pub kind: JobKind,
    /// Namespace of the job on the hub.
    #[schemars(length(max = 63))]
    pub namespace: String,
    /// Name of the job.
    #[schemars(length(max = 253))]
    pub name: String,
    /// UID of the job.
    #[schemars(length(max = 36))]
    pub uid: String,
}

/// Kinds of job that produce WorkUnits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum JobKind {
    /// A RenderJob chunk.
    RenderJob,
    /// A TrainingJob gang.
    TrainingJob,
}

impl WorkUnit {
    /// The member whose hub namespace holds the unit, i.e. the member that runs it.
    pub fn member(&self) -> Option<&str> {
        self.metadata.namespace.as_deref().and_then(crate::contract::member_of_namespace)
    }
}

impl JobKind {
    /// The kind's name, as `kind` and the unit reference spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::RenderJob => "RenderJob",
            JobKind::TrainingJob => "TrainingJob",
        }
    }
}

/// One pod of a unit, in the narrow form a member accepts: an image, its command and GPUs.
/// Members never run arbitrary pod specs (no host paths, no privileges) from the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    /// Pod name suffix, unique within the unit (e.g. `worker-0`).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Container image.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub args: Vec<String>,
    /// Environment with literal values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub env: Vec<EnvVar>,
    /// GPU vendor resource the pod asks for.
    pub gpu_vendor: GpuVendor,
    /// GPUs of the pod.
    pub gpus: i64,
    /// CPU, memory and scratch disk of the pod (`cpu`, `memory`, `ephemeralStorage`); what is
    /// left out is the member's default.
    #[serde(flatten)]
    pub resources: PodResources,
    /// Pod annotations, only under `pictor.network/` (the network may not steer a member's
    /// other controllers through them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    #[x_kube(validation = Rule::new("self.all(k, k.startsWith('pictor.network/'))").message("pod annotations must be under pictor.network/"))]
    pub annotations: BTreeMap<String, String>,
}

/// Reason of the `Ready` condition of a unit its member refused before running it (its
/// provider does not run the image, or a pod is over its caps): the hub places the work
/// elsewhere, and a training job's restart limit does not count it.
pub const REASON_REFUSED: &str = "Refused";

/// Where a unit stands on its member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WorkUnitPhase {
    /// Waiting for the member's agent or scheduler.
    #[default]
    Pending,
    /// Pods run.
    Running,
    /// Every pod exited 0.
    Succeeded,
    /// A pod failed.
    Failed,
    /// The member went silent past the grace period; the work is placed again elsewhere.
    Lost,
}

/// An object a unit wrote, with its digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OutputObject {
    /// URL of the object.
    #[schemars(length(max = 2048))]
    pub url: String,
    /// SHA-256 of its bytes, lowercase hex.
    #[schemars(length(max = 64))]
    pub sha256: String,
}

/// What the member's agent reports of a unit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkUnitStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Running, Succeeded, Failed or Lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<WorkUnitPhase>,
    /// When the first pod started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the last pod ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// GPUs × seconds the unit's pods held their GPUs, as the member reports them. The hub pays
    /// at most this, and never more than it observed itself (the unit's
    /// `pictor.network/metered-gpu-seconds`).
    #[serde(default)]
    #[schemars(range(min = 0, max = 1_000_000_000_000i64))]
    pub gpu_seconds: i64,
    /// Exit code of each pod, in `spec.pods` order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(range(min = -2147483648, max = 2147483647)))]
    pub exit_codes: Vec<i32>,
    /// Objects the unit wrote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub outputs: Vec<OutputObject>,
    /// Human-readable detail of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub message: Option<String>,
    /// `Ready` is True while the unit runs or has succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}
