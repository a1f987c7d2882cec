//! pictor-operator, the hub (DESIGN.md, "Two-level scheduling" (placement), "API", "Trust",
//! "Billing and settlement on Aptos" (accrual)): the controllers that turn RenderJobs and
//! TrainingJobs into WorkUnits on member clusters, judge what comes back and hand verified work
//! to billing, and the member controller that keeps each GpuCluster's Ready and reputation.
//!
//! - [`runner`]: how every controller runs (finalizer, errors, metrics, wake-ups), written once.
//! - [`job_controller`]: what every job controller does; [`render_job`] and [`training_job`]
//!   plug into it with a pure plan each.
//! - [`member_controller`]: the GpuCluster controller — Ready from the heartbeat, Lost units.
//! - [`placement`]: which member takes a unit, at what price.
//! - [`hub_index`] and [`unit_index`]: the in-memory view every controller decides over, fed by
//!   one watch per kind.
//! - [`accrual`]: the marks that hand verified work to billing.
//! - [`conditions`], [`job_status`], [`unit_writes`], [`unit_drafts`]: what the controllers write.
//! - [`metrics`] and [`events`]: what the operator tells the people who run it and use it.
#![forbid(unsafe_code)]

pub mod accrual;
pub mod conditions;
pub mod events;
pub mod heartbeats;
pub mod hub_index;
pub mod job_controller;
pub mod job_status;
pub mod member_controller;
pub mod metering;
pub mod metrics;
pub mod placement;
pub mod render_job;
pub mod runner;
pub mod training_job;
pub mod unit_drafts;
pub mod unit_index;
pub mod unit_timeouts;
pub mod unit_writes;
pub mod verification_key;
