//! `verify`: render one frame again and compare it with the frame a provider delivered — a tool
//! for a person checking a frame by hand. The hub does not run it: its verification units are
//! ordinary renders, and it compares the two frames itself (pictor-operator's judge).
//!
//! The verdict is data: a mismatch is a successful verification with `passed: false`. Only a
//! verification that could not judge (no scene, no original, Blender failing, an undecodable
//! image) is an error.

use crate::blender::{BlenderError, FrameSelection, RenderInvocation, RequestedDevice};
use crate::chunk::{self, ChunkError};
use crate::comparison::{self, ComparisonError, FrameComparison};
use crate::storage::{StorageError, StorageObject, StorageSettings};
use pictor_crds::contract::render_output::format_of_extension;
use pictor_crds::contract::verification::REPORTED_PSNR_CEILING_DB;
use pictor_crds::v1alpha1::{ImageFormat, RenderEngine};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

use pictor_crds::contract::VerificationReport;

/// What can go wrong verifying a frame.
#[derive(Debug, thiserror::Error)]
pub enum VerificationError {
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Blender(#[from] BlenderError),
    #[error(transparent)]
    Comparison(#[from] ComparisonError),
    #[error("cannot tell the image format of {original}; name it with --format PNG|OPEN_EXR|JPEG|TIFF")]
    UnknownFormat { original: String },
    #[error("cannot read the re-rendered frame {path}: {source}")]
    ReadFrame { path: PathBuf, source: std::io::Error },
}

/// A frame to verify.
#[derive(Clone, Debug)]
pub struct VerificationRequest {
    /// URL of the `.blend` scene.
    pub scene: String,
    pub frame: i64,
    /// URL of the frame as the provider stored it.
    pub original: String,
    /// The lowest PSNR that passes.
    pub threshold_db: f64,
    pub engine: RenderEngine,
    /// The format to render in; unset takes it from the original's file extension.
    pub format: Option<ImageFormat>,
    pub device: RequestedDevice,
    pub blender: PathBuf,
}

/// Re-renders the frame, fetches the original and judges them.
pub async fn verify_frame(
    request: &VerificationRequest,
    settings: &StorageSettings,
) -> Result<VerificationReport, VerificationError> {
    let format = match request.format {
        Some(format) => format,
        None => request
            .original
            .rsplit_once('.')
            .and_then(|(_, extension)| format_of_extension(extension))
            .ok_or_else(|| VerificationError::UnknownFormat { original: request.original.clone() })?,
    };
    // Fetch the original first: without it there is nothing to judge and no reason to render.
    let original = StorageObject::open(&request.original, settings)?.read().await?;
    let original_sha256 = hex::encode(Sha256::digest(&original));

    let workspace = chunk::fetch_scene(&request.scene, settings).await?;
    let device = chunk::pick_device(request.device, request.engine, &request.blender).await;
    let invocation = RenderInvocation {
        scene: workspace.scene.clone(),
        engine: request.engine,
        format,
        frames: FrameSelection::new(request.frame, request.frame, 1)?,
        device,
    };
    let rendered = invocation.run(&request.blender).await?;
    let (_, file) = &rendered.files[0];
    let rerendered =
        std::fs::read(file).map_err(|source| VerificationError::ReadFrame { path: file.clone(), source })?;

    let comparison = comparison::compare_encoded_frames(&original, &rerendered)?;
    let mismatch = match comparison {
        FrameComparison::SizeMismatch { original, rerendered } => Some(format!(
            "the original is {}x{}, the re-render {}x{}",
            original.0, original.1, rerendered.0, rerendered.1
        )),
        FrameComparison::Compared { .. } => None,
    };
    Ok(VerificationReport {
        frame: request.frame,
        psnr_db: comparison.psnr_db().min(REPORTED_PSNR_CEILING_DB),
        passed: comparison.passes(request.threshold_db),
        sha256: original_sha256,
        rerendered_sha256: hex::encode(Sha256::digest(&rerendered)),
        mismatch,
        device: chunk::reported_device(request.engine, device),
    })
}
