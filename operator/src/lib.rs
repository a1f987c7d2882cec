//! The hub operator of Pictor and the member agent (DESIGN.md, "Two-level scheduling", "The
//! member agent speaks to the hub through the hub's Kubernetes API", "Billing and settlement on
//! Aptos").
//!
//! - [`cli`]: the `pictor` command line (also `kubectl pictor`).
//! - [`membership`]: what `pictor member add/remove` creates and deletes on the hub.
//! - [`agent`]: the member agent — heartbeat, inventory, WorkUnits run as local pods.
//! - [`member_health`]: the hub's member controller — Ready from the heartbeat, Lost units.
//! - [`conditions`]: the status machinery every controller shares.
//! - [`metrics`] and [`events`]: what the operator tells the people who run it and use it.
#![forbid(unsafe_code)]

pub mod accrual;
pub mod agent;
pub mod api_status;
pub mod cli;
pub mod conditions;
pub mod events;
pub mod hub_index;
pub mod job_status;
pub mod kubeconfig;
pub mod labels;
pub mod logging;
pub mod member_health;
pub mod membership;
pub mod metrics;
pub mod placement;
pub mod render_job;
pub mod training_job;
pub mod unit_writes;
pub mod work_units;
