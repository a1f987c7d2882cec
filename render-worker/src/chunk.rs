//! `render`: one chunk of a RenderJob — fetch the scene, render its frames, store them with
//! their digests, report what was written.

use crate::blender::{
    self, BlenderError, CyclesDevice, FrameSelection, NodeGpus, RenderInvocation, RequestedDevice,
};
use crate::storage::{StorageError, StorageObject, StorageSettings, child_url};
use crate::termination::{self, TerminationError};
use bytes::Bytes;
use pictor_crds::contract::render_output::frame_file_name;
use pictor_crds::v1alpha1::{ImageFormat, OutputObject, RenderEngine};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What can go wrong rendering a chunk.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Blender(#[from] BlenderError),
    #[error(transparent)]
    Termination(#[from] TerminationError),
    #[error("cannot create a working folder: {0}")]
    WorkDir(std::io::Error),
}

/// A chunk to render.
#[derive(Clone, Debug)]
pub struct ChunkRequest {
    /// URL of the `.blend` scene.
    pub scene: String,
    pub frames: FrameSelection,
    /// URL of the folder the frames go to.
    pub output: String,
    pub format: ImageFormat,
    pub engine: RenderEngine,
    pub device: RequestedDevice,
    /// The Blender executable.
    pub blender: PathBuf,
}

/// A stored frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFrame {
    pub frame: i64,
    #[serde(flatten)]
    pub object: OutputObject,
}

/// What a chunk wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkReport {
    pub frames: Vec<StoredFrame>,
    /// The device Blender rendered on: CPU, CUDA, OPTIX or HIP (GPU for Eevee).
    pub device: String,
    /// Wall-clock seconds of the Blender run.
    pub render_seconds: f64,
}

/// The termination message when the whole report does not fit: the report is stored next to
/// the frames instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestReference {
    pub manifest: OutputObject,
    pub frames: usize,
}

/// A local working folder with the scene in it; the frames land beside it.
pub(crate) struct SceneWorkspace {
    // Held so the folder is removed when the work is done.
    _dir: tempfile::TempDir,
    pub scene: PathBuf,
}

/// Downloads the scene into a fresh working folder.
pub(crate) async fn fetch_scene(
    scene_url: &str,
    settings: &StorageSettings,
) -> Result<SceneWorkspace, ChunkError> {
    let dir = tempfile::Builder::new().prefix("pictor-render-").tempdir().map_err(ChunkError::WorkDir)?;
    let scene = dir.path().join("scene.blend");
    let object = StorageObject::open(scene_url, settings)?;
    let sha256 = object.download(&scene).await?;
    tracing::info!(scene = %object.url(), %sha256, "scene downloaded");
    Ok(SceneWorkspace { _dir: dir, scene })
}

/// The Cycles device for this node and Blender; a fallback to the CPU is logged with its reason.
pub(crate) async fn pick_device(
    requested: RequestedDevice,
    engine: RenderEngine,
    blender: &Path,
) -> CyclesDevice {
    if engine != RenderEngine::Cycles {
        return CyclesDevice::Cpu;
    }
    let candidates = blender::device_candidates(requested, NodeGpus::detect());
    if candidates.is_empty() {
        return CyclesDevice::Cpu;
    }
    let usable = match blender::usable_gpu_devices(blender).await {
        Ok(usable) => usable,
        Err(e) => {
            tracing::warn!(error = %e, "asking Blender for its GPU devices failed");
            Vec::new()
        }
    };
    let (device, fallback) = blender::choose_device(&candidates, &usable);
    match fallback {
        Some(reason) => tracing::warn!(requested = ?requested, "{reason}"),
        None => tracing::info!(device = device.name(), "rendering on the GPU"),
    }
    device
}

/// The device name a report gives.
pub(crate) fn reported_device(engine: RenderEngine, device: CyclesDevice) -> String {
    match engine {
        RenderEngine::Cycles => device.name().to_string(),
        // Eevee rasterises through OpenGL on whatever GPU the display server offers.
        RenderEngine::Eevee => "GPU".to_string(),
    }
}

/// Renders the chunk and stores its frames; returns the report.
pub async fn render_chunk(
    request: &ChunkRequest,
    settings: &StorageSettings,
) -> Result<ChunkReport, ChunkError> {
    // Refuse a bad output location before spending time on the render.
    let frame_url = |frame: i64| child_url(&request.output, &frame_file_name(frame, request.format));
    StorageObject::open(&frame_url(request.frames.first)?, settings)?;

    let workspace = fetch_scene(&request.scene, settings).await?;
    let device = pick_device(request.device, request.engine, &request.blender).await;
    let invocation = RenderInvocation {
        scene: workspace.scene.clone(),
        engine: request.engine,
        format: request.format,
        frames: request.frames,
        device,
    };
    let rendered = invocation.run(&request.blender).await?;

    let mut frames = Vec::with_capacity(rendered.files.len());
    for (frame, file) in &rendered.files {
        let object = StorageObject::open(&frame_url(*frame)?, settings)?;
        let stored = object.upload(file).await?;
        tracing::info!(frame, url = %stored.url, sha256 = %stored.sha256, "frame stored");
        frames.push(StoredFrame { frame: *frame, object: stored });
    }
    Ok(ChunkReport {
        frames,
        device: reported_device(request.engine, device),
        render_seconds: rendered.seconds,
    })
}

/// The termination message for `report`: the report itself when it fits, else a reference to
/// the report stored as `manifest_<first>_<last>.json` in the output folder.
pub async fn termination_message(
    request: &ChunkRequest,
    report: &ChunkReport,
    settings: &StorageSettings,
) -> Result<String, ChunkError> {
    let full = serde_json::to_string(report).map_err(TerminationError::from)?;
    if termination::fits_termination_message(&full) {
        return Ok(full);
    }
    let name = format!("manifest_{}_{}.json", request.frames.first, request.frames.last);
    let manifest = StorageObject::open(&child_url(&request.output, &name)?, settings)?;
    let stored = manifest.write(Bytes::from(full)).await?;
    tracing::info!(url = %stored.url, "the report is too big for a termination message; stored it");
    let reference = ManifestReference { manifest: stored, frames: report.frames.len() };
    Ok(serde_json::to_string(&reference).map_err(TerminationError::from)?)
}
