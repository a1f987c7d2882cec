//! A job's `Ready` condition and completion time, as both job controllers record them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use pictor_crds::v1alpha1::{CONDITION_READY, Observation, set_condition};

/// Records a job's `Ready` observation and its completion time: set once when the job reaches
/// a final phase, cleared if it leaves one.
pub fn record_job_outcome(
    conditions: &mut Vec<Condition>,
    completion_time: &mut Option<Time>,
    ready: (bool, &str, String),
    terminal: bool,
    generation: Option<i64>,
    now: Time,
) {
    let (status, reason, message) = ready;
    set_condition(
        conditions,
        Observation { type_: CONDITION_READY, status, reason, message },
        generation,
        now.clone(),
    );
    *completion_time = if terminal { completion_time.take().or(Some(now)) } else { None };
}
