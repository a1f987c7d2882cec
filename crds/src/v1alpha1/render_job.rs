//! RenderJob: a Blender render split into chunks of frames that members render in parallel.

use super::conditions::conditions_schema;
use super::requirements::{Budget, GpuRequirements, PodResources, STORAGE_URL_RULE, Tier, is_default};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A render of a Blender scene: the frames are split into chunks, each chunk runs as a WorkUnit
/// on a member cluster's GPUs, a share of chunks is verified by a second provider, and every
/// provider is paid for verified GPU time.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "pictor.network",
    version = "v1alpha1",
    kind = "RenderJob",
    namespaced,
    status = "RenderJobStatus",
    shortname = "rj",
    category = "pictor",
    doc = "A render of a Blender scene across the GPUs of the Pictor network.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Frames", type_ = "string", json_path = ".status.frames.doneOfTotal", description = "Frames rendered and verified, of the total"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress"),
    printcolumn(name = "Cost", type_ = "string", json_path = ".status.cost", description = "GPU time paid so far, in APT"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Engine", type_ = "string", json_path = ".spec.renderer.engine", priority = 1),
    printcolumn(name = "Chunk", type_ = "integer", json_path = ".spec.chunkSize", priority = 1),
    validation = Rule::new("!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending' || self.spec.scene == oldSelf.spec.scene").message("spec.scene cannot change once rendering has started; create a new RenderJob").field_path(".spec.scene"),
    validation = Rule::new("!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending' || self.spec.frames == oldSelf.spec.frames").message("spec.frames cannot change once rendering has started; create a new RenderJob for other frames").field_path(".spec.frames"),
    validation = Rule::new("!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending' || self.spec.chunkSize == oldSelf.spec.chunkSize").message("spec.chunkSize cannot change once rendering has started").field_path(".spec.chunkSize"),
    validation = Rule::new("!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending' || self.spec.renderer == oldSelf.spec.renderer").message("spec.renderer cannot change once rendering has started; frames of one job must come from one renderer").field_path(".spec.renderer"),
    validation = Rule::new("!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending' || self.spec.output == oldSelf.spec.output").message("spec.output cannot change once rendering has started").field_path(".spec.output")
)]
#[serde(rename_all = "camelCase")]
pub struct RenderJobSpec {
    /// URL of the `.blend` scene in object storage: `file://`, `s3://`, `gs://`, `az://` or
    /// `http(s)://`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(STORAGE_URL_RULE).message("spec.scene must be a URL of the scene file: file://, s3://, gs://, az://, http:// or https://"))]
    pub scene: String,

    /// The renderer: Blender's engine and, optionally, another container image.
    #[serde(default)]
    pub renderer: Renderer,

    /// Frames to render: `start` to `end` inclusive, every `step`th frame.
    pub frames: FrameRange,

    /// Frames per WorkUnit. Smaller chunks spread wider and retry cheaper; larger ones load the
    /// scene fewer times.
    #[serde(default = "default_chunk_size")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 10000").message("spec.chunkSize must be between 1 and 10000 frames per chunk"))]
    pub chunk_size: i64,

    /// Where the frames go and in which format.
    pub output: RenderOutput,

    /// GPUs each chunk needs.
    #[serde(default)]
    pub gpu: GpuRequirements,

    /// CPU, memory and scratch disk of each chunk's pod; what is left out is the member's
    /// default.
    #[serde(default, skip_serializing_if = "is_default")]
    pub resources: PodResources,

    /// What the job may spend.
    #[serde(default)]
    pub budget: Budget,

    /// Which providers may render it.
    #[serde(default)]
    pub tier: Tier,

    /// Finish before this time, or fail with the frames that are missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,

    /// Percent of chunks whose sample frame a different provider renders again to verify the
    /// result (0 to 100).
    #[serde(default = "default_verification_percent")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("spec.verificationPercent is a share of chunks from 0 to 100"))]
    pub verification_percent: i64,

    /// Attempts per chunk, each on another member, before the chunk (and the job) fails.
    #[serde(default = "default_retries_per_chunk")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 20").message("spec.retriesPerChunk must be between 0 and 20"))]
    pub retries_per_chunk: i64,

    /// The longest a unit may stay Pending or Running, in seconds, before the hub calls it Lost
    /// and renders its frames elsewhere. Unset: 10 minutes to start plus 10 minutes per frame
    /// of the unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 60 && self <= 604800").message("spec.unitTimeoutSeconds must be between 60 (a minute) and 604800 (a week)"))]
    pub unit_timeout_seconds: Option<i64>,

    /// Name of a Secret in the job's namespace with the object-storage credentials for the
    /// scene and the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub credentials_secret: Option<String>,

    /// Stops placing chunks and cancels the running ones while true.
    #[serde(default)]
    pub suspend: bool,
}

fn default_chunk_size() -> i64 {
    10
}
fn default_verification_percent() -> i64 {
    5
}
fn default_retries_per_chunk() -> i64 {
    3
}

/// Blender's render engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RenderEngine {
    /// Path tracing on the GPU (OptiX or CUDA on NVIDIA, HIP on AMD), CPU as a fallback.
    #[default]
    Cycles,
    /// Blender's real-time rasterising engine.
    Eevee,
}

/// Which renderer runs each chunk.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Renderer {
    /// Blender render engine: `Cycles` or `Eevee`.
    #[serde(default)]
    pub engine: RenderEngine,
    /// Container image with Blender and the Pictor render worker; unset uses the network's
    /// default image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("size(self) > 0").message("renderer.image must name a container image, or be left out for the default"))]
    pub image: Option<String>,
}

/// An inclusive frame range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("self.end >= self.start").message("frames.end must not be before frames.start: the range is start to end inclusive, in increasing order"))]
pub struct FrameRange {
    /// First frame.
    #[x_kube(validation = Rule::new("self >= 0 && self <= 1048574").message("frames.start must be between 0 and 1048574, Blender's frame limits"))]
    pub start: i64,
    /// Last frame, included.
    #[x_kube(validation = Rule::new("self >= 0 && self <= 1048574").message("frames.end must be between 0 and 1048574, Blender's frame limits"))]
    pub end: i64,
    /// Render every `step`th frame.
    #[serde(default = "super::requirements::one")]
    #[x_kube(validation = Rule::new("self >= 1").message("frames.step must be at least 1"))]
    pub step: i64,
}

impl FrameRange {
    /// Number of frames the range selects.
    pub fn len(&self) -> i64 {
        if self.end < self.start || self.step < 1 {
            return 0;
        }
        (self.end - self.start) / self.step + 1
    }

    /// Whether the range selects no frame (only for ranges the schema would refuse).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Image formats Blender writes (`-F`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ImageFormat {
    /// 8- or 16-bit PNG.
    #[default]
    #[serde(rename = "PNG")]
    Png,
    /// OpenEXR, for compositing.
    #[serde(rename = "OPEN_EXR")]
    OpenExr,
    /// JPEG, for previews.
    #[serde(rename = "JPEG")]
    Jpeg,
    /// TIFF.
    #[serde(rename = "TIFF")]
    Tiff,
}

/// Where rendered frames are written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenderOutput {
    /// URL of a folder in object storage; frames are written as `frame_NNNNNN.<ext>` under it.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(STORAGE_URL_RULE).message("output.location must be a folder URL: file://, s3://, gs://, az://, http:// or https://"))]
    pub location: String,
    /// Image format: `PNG`, `OPEN_EXR`, `JPEG` or `TIFF`.
    #[serde(default)]
    pub format: ImageFormat,
}

/// Where a render job stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RenderJobPhase {
    /// Accepted, no chunk placed yet.
    #[default]
    Pending,
    /// Chunks are rendering on members.
    Rendering,
    /// Every frame is rendered; verification renders are running.
    Verifying,
    /// Every frame rendered, verified where sampled, and accounted for exactly once.
    Succeeded,
    /// A chunk ran out of retries, the deadline passed, or the budget ran out.
    Failed,
    /// Suspended or deleted by the submitter.
    Cancelled,
}

/// Frame counts of a render job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FrameCounts {
    /// Frames the job renders.
    pub total: i64,
    /// Frames rendered and uploaded.
    pub done: i64,
    /// Frames in chunks that are running.
    pub running: i64,
    /// Frames in chunks that failed for good.
    pub failed: i64,
    /// `done/total`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub done_of_total: String,
}

/// A chunk that failed, with why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedChunk {
    /// First frame of the chunk.
    pub first_frame: i64,
    /// Last frame of the chunk.
    pub last_frame: i64,
    /// Member cluster that ran the failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Attempts so far.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub reason: String,
}

/// What the operator observed of a render job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenderJobStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Rendering, Verifying, Succeeded, Failed or Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RenderJobPhase>,
    /// Frame counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<FrameCounts>,
    /// Share of frames done, e.g. `42%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Cost of the GPU time used so far, in octas.
    #[serde(default)]
    pub cost_octas: i64,
    /// `costOctas` as a person reads it, e.g. `1.25 APT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// Member clusters that rendered chunks of this job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// Chunks that failed, with the reason of their last attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_chunks: Vec<FailedChunk>,
    /// Settlements that paid for this job's GPU time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settlements: Vec<String>,
    /// When the first chunk started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job reached Succeeded, Failed or Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Latest observations; `Ready` is True while the job makes progress or has succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}
