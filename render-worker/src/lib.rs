//! The Pictor render worker: the container entrypoint of a render chunk or of a verification's
//! one frame (`render`), and a hand tool that checks a frame (`verify`) (DESIGN.md, "RenderJob"
//! and "Storage"). It reads the scene from object storage, runs Blender, stores
//! the frames with their SHA-256 and leaves a JSON result as the container's termination message.
#![forbid(unsafe_code)]

pub mod blender;
pub mod chunk;
pub mod termination;
pub mod verification;

// Where frames are kept and how two are compared, shared with the hub's judge of verification.
pub use pictor_frames::{comparison, storage};
