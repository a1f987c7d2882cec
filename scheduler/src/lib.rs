//! pictor-scheduler: the member-side scheduler that binds Pods with
//! `spec.schedulerName: pictor-scheduler` to GPU nodes (DESIGN.md, "Two-level scheduling" and
//! "Gang").
//!
//! The layers, from pure to I/O:
//! - [`resources`], [`view`]: plain data — what nodes have, what pods hold and ask for;
//!   [`shared_gpus`]: the memory of time-sliced GPUs, GPU by GPU.
//! - [`framework`], [`plugins`]: Filter, Score, Reserve and Permit plugins over that data.
//! - [`decision`]: where a pod or a whole gang goes, or why nothing fits.
//! - [`scheduling`]: the state machine — queue, backoff, gangs gathering; inputs in, actions out.
//! - [`watch`], [`api`], [`service`]: the watches that feed it, the writes it asks for
//!   (`pods/binding`, `PodScheduled`, Events), leader election and the HTTP endpoints.
#![forbid(unsafe_code)]

pub mod api;
pub mod decision;
pub mod framework;
pub mod metrics;
pub mod plugins;
pub mod resources;
pub mod scheduling;
pub mod service;
pub mod shared_gpus;
pub mod view;
pub mod watch;

/// The `spec.schedulerName` this scheduler answers to.
pub const SCHEDULER_NAME: &str = "pictor-scheduler";
