//! pictor-scheduler: the member-side scheduler that binds Pods with
//! `spec.schedulerName: pictor-scheduler` to GPU nodes (DESIGN.md, "Two-level scheduling" and
//! "Gang"): an in-memory cluster view fed by watches, filter and score plugins over it, gangs
//! bound all or none, binding through `pods/binding`.
//!
//! Empty until the scheduler work lands; the crate holds its place in the workspace.
#![forbid(unsafe_code)]
