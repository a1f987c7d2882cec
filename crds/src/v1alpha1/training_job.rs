//! TrainingJob: distributed PyTorch training run as one gang of workers inside one member.

use super::conditions::conditions_schema;
use super::requirements::{Budget, GpuRequirements, PodResources, STORAGE_URL_RULE, Tier, is_default};
use crate::contract::runtime_env;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A distributed training run: `workers` pods with `gpu.count` GPUs each, started together in one
/// member cluster with the environment torchrun expects, restarted as a gang from the last
/// checkpoint when a worker fails.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "pictor.network",
    version = "v1alpha1",
    kind = "TrainingJob",
    namespaced,
    status = "TrainingJobStatus",
    shortname = "tj",
    category = "pictor",
    doc = "A distributed training run on the GPUs of one Pictor member, run as a gang.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Workers", type_ = "integer", json_path = ".spec.workers"),
    printcolumn(name = "GPUs/Worker", type_ = "integer", json_path = ".spec.gpu.count"),
    printcolumn(name = "Restarts", type_ = "integer", json_path = ".status.restarts"),
    printcolumn(name = "Member", type_ = "string", json_path = ".status.member"),
    printcolumn(name = "Cost", type_ = "string", json_path = ".status.cost", description = "GPU time paid so far, in APT"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending' || (self.spec.image == oldSelf.spec.image && (has(self.spec.command) ? self.spec.command : []) == (has(oldSelf.spec.command) ? oldSelf.spec.command : []) && (has(self.spec.args) ? self.spec.args : []) == (has(oldSelf.spec.args) ? oldSelf.spec.args : []))").message("spec.image, spec.command and spec.args cannot change once training has started; create a new TrainingJob").field_path(".spec.image"),
    validation = Rule::new("!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending' || (self.spec.workers == oldSelf.spec.workers && self.spec.gpu == oldSelf.spec.gpu)").message("spec.workers and spec.gpu cannot change once training has started: the gang's world size is fixed").field_path(".spec.workers")
)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobSpec {
    /// Container image with the training code.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,

    /// Entrypoint, e.g. `["torchrun", "train.py"]`. Unset runs the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub command: Vec<String>,

    /// Arguments to the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub args: Vec<String>,

    /// Extra environment for every worker. The torchrun variables (MASTER_ADDR, WORLD_SIZE,
    /// RANK, PET_*) are set by the operator and cannot be overridden here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(e, !(e.name in ['MASTER_ADDR', 'MASTER_PORT', 'WORLD_SIZE', 'RANK', 'LOCAL_RANK']) && !e.name.startsWith('PET_'))").message("spec.env must not set MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK or PET_* variables: the operator sets them for the gang"))]
    pub env: Vec<EnvVar>,

    /// Worker pods (torchrun nodes). All start together in one member cluster.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 64").message("spec.workers must be between 1 and 64"))]
    pub workers: i64,

    /// GPUs of each worker (`gpu.count` is GPUs per worker).
    #[serde(default)]
    pub gpu: GpuRequirements,

    /// URL of the dataset in object storage, handed to workers as `PICTOR_DATASET_URL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(STORAGE_URL_RULE).message("spec.dataset must be a URL: file://, s3://, gs://, az://, http:// or https://"))]
    pub dataset: Option<String>,

    /// URL of a folder where workers write checkpoints (`PICTOR_CHECKPOINT_URL`); a restarted
    /// gang resumes from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(STORAGE_URL_RULE).message("spec.checkpoint must be a folder URL: file://, s3://, gs://, az://, http:// or https://"))]
    pub checkpoint: Option<String>,

    /// When a failed gang is started again.
    #[serde(default)]
    pub restart_policy: RestartPolicy,

    /// Gang restarts before the job fails.
    #[serde(default = "default_restart_limit")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("spec.restartLimit must be between 0 and 100"))]
    pub restart_limit: i64,

    /// Rendezvous port of worker 0 (MASTER_PORT).
    #[serde(default = "default_master_port")]
    #[x_kube(validation = Rule::new("self >= 1024 && self <= 65535").message("spec.masterPort must be an unprivileged port, 1024 to 65535"))]
    pub master_port: i64,

    /// CPU, memory and scratch disk of each worker; what is left out is the member's default.
    #[serde(default, skip_serializing_if = "is_default")]
    pub resources: PodResources,

    /// What the job may spend.
    #[serde(default)]
    pub budget: Budget,

    /// Which providers may run it.
    #[serde(default)]
    pub tier: Tier,

    /// The longest a gang may stay Pending or Running, in seconds, before the hub calls it Lost
    /// and starts it again elsewhere (a restart). Unset: a day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 60 && self <= 2592000").message("spec.unitTimeoutSeconds must be between 60 (a minute) and 2592000 (30 days)"))]
    pub unit_timeout_seconds: Option<i64>,

    /// Name of a Secret in the job's namespace with object-storage credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub credentials_secret: Option<String>,

    /// Stops the gang while true.
    #[serde(default)]
    pub suspend: bool,
}

fn default_restart_limit() -> i64 {
    3
}
fn default_master_port() -> i64 {
    23456
}

/// An environment variable with a literal value. Values from Secrets are not offered: members
/// must never see a submitter's secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
pub struct EnvVar {
    /// Variable name.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z_][A-Za-z0-9_]*$')").message("env names are letters, digits and underscores, not starting with a digit"))]
    #[x_kube(validation = Rule::new(runtime_env::RULE).message(runtime_env::MESSAGE))]
    pub name: String,
    /// Value.
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// When a failed gang is started again, as Kubeflow's PyTorchJob defines them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestartPolicy {
    /// Restart after any worker failure, up to `restartLimit`.
    #[default]
    OnFailure,
    /// Restart only when a worker exits with a retryable code (128 to 255, signals); exit codes
    /// 1 to 127 fail the job at once.
    ExitCode,
    /// Never restart.
    Never,
}

/// Where a training job stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TrainingJobPhase {
    /// Accepted, the gang is not placed yet.
    #[default]
    Pending,
    /// All workers run.
    Running,
    /// A worker failed; the gang starts again from the last checkpoint.
    Restarting,
    /// Every worker exited 0.
    Succeeded,
    /// Out of restarts, budget or a permanent failure.
    Failed,
    /// Suspended or deleted by the submitter.
    Cancelled,
}

/// What the operator observed of a training job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Running, Restarting, Succeeded, Failed or Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TrainingJobPhase>,
    /// Gang restarts so far.
    #[serde(default)]
    pub restarts: i64,
    /// Member cluster running the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// WorkUnit of the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_unit: Option<String>,
    /// Cost of the GPU time used so far, in octas.
    #[serde(default)]
    pub cost_octas: i64,
    /// `costOctas` as a person reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// When the first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job reached Succeeded, Failed or Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Latest observations; `Ready` is True while the gang runs or has succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}
