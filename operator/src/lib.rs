//! pictor-operator, the hub (DESIGN.md, "Two-level scheduling" (placement), "API", "Trust",
//! "Billing and settlement on Aptos" (accrual)): the controllers that turn RenderJobs and
//! TrainingJobs into WorkUnits on member clusters, judge what comes back and hand verified work
//! to billing, and the member controller that keeps each GpuCluster's Ready and reputation.
//!
//! - [`render_job`], [`training_job`]: the job controllers, each a pure plan plus registration.
//! - [`placement`]: which member takes a unit, at what price.
//! - [`member_health`]: the GpuCluster controller — Ready from the heartbeat, Lost units.
//! - [`hub_index`]: the in-memory view every controller decides over, fed by watches.
//! - [`accrual`]: the marks that hand verified work to billing.
//! - [`conditions`], [`job_status`], [`unit_writes`], [`work_units`]: what the controllers write.
//! - [`metrics`] and [`events`]: what the operator tells the people who run it and use it.
#![forbid(unsafe_code)]

pub mod accrual;
pub mod conditions;
pub mod events;
pub mod hub_index;
pub mod job_status;
pub mod member_health;
pub mod metrics;
pub mod placement;
pub mod render_job;
pub mod training_job;
pub mod unit_writes;
pub mod work_units;
