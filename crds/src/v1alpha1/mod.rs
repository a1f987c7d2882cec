//! `pictor.network/v1alpha1`: the five kinds of DESIGN.md and the pieces they share.

mod conditions;
mod gpu_cluster;
mod render_job;
mod requirements;
mod settlement;
mod training_job;
mod work_unit;

pub use conditions::{CONDITION_READY, Observation, conditions_schema, set_condition};
pub use gpu_cluster::*;
pub use render_job::*;
pub use requirements::*;
pub use settlement::*;
pub use training_job::*;
pub use work_unit::*;

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
