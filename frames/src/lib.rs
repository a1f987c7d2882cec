//! Rendered frames where they are kept: object storage ([`storage`]: `file://`, S3, GCS, Azure,
//! HTTP) and how close two renders of one frame are ([`comparison`]). The render worker stores
//! frames with these; the hub's judge of verification reads two of them back and compares them.
#![forbid(unsafe_code)]

pub mod comparison;
pub mod storage;
