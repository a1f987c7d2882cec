//! `status.conditions` as Kubernetes lists them: `metav1.Condition` in a list map keyed by
//! `type`, so server-side apply merges one condition at a time instead of replacing the list, and
//! `lastTransitionTime` moving only when the status flips, so `kubectl describe` tells since when
//! an object has been failing rather than when it was last reconciled.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::{JsonSchema, Schema, SchemaGenerator};

/// The condition every Pictor kind carries: whether the object is doing what it should.
pub const CONDITION_READY: &str = "Ready";

/// Schema of a `conditions` field: a list map keyed by `type`, at most 16 entries.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = <Vec<Condition>>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema.insert("maxItems".into(), 16.into());
    // Members write conditions too: every string is bounded, as upstream's metav1.Condition is.
    let bounds = [("type", 316), ("status", 16), ("reason", 1024), ("message", 4096)];
    if let Some(properties) = schema.get_mut("items").and_then(|i| i.get_mut("properties")) {
        for (field, max) in bounds {
            if let Some(property) = properties.get_mut(field).and_then(|p| p.as_object_mut()) {
                property.insert("maxLength".into(), max.into());
            }
        }
    }
    schema
}

/// What a controller observed, before it is merged into the conditions list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation<'a> {
    /// Condition type, e.g. `Ready`.
    pub type_: &'a str,
    /// `True`, `False` or `Unknown`.
    pub status: bool,
    /// CamelCase reason.
    pub reason: &'a str,
    /// What a person should know, and what to do about it.
    pub message: String,
}

/// Merges `observed` into `conditions`: replaces the entry of its type, keeping the old
/// `lastTransitionTime` when the status did not change, appending it when new.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    observed: Observation<'_>,
    generation: Option<i64>,
    now: Time,
) {
    let status = if observed.status { "True" } else { "False" }.to_string();
    let existing = conditions.iter_mut().find(|c| c.type_ == observed.type_);
    match existing {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status;
            c.reason = observed.reason.to_string();
            c.message = observed.message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: observed.type_.to_string(),
            status,
            reason: observed.reason.to_string(),
            message: observed.message,
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn ready(status: bool, reason: &str) -> Observation<'_> {
        Observation { type_: "Ready", status, reason, message: format!("{reason} happened") }
    }

    #[test]
    fn a_new_condition_is_appended_with_its_transition_time() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, ready(false, "Placing"), Some(1), at(10));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].observed_generation, Some(1));
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, ready(false, "Placing"), Some(1), at(10));
        set_condition(&mut conditions, ready(false, "NoMemberFits"), Some(2), at(20));
        assert_eq!(conditions[0].last_transition_time, at(10), "same status keeps the time");
        assert_eq!(conditions[0].reason, "NoMemberFits");
        assert_eq!(conditions[0].observed_generation, Some(2));
        set_condition(&mut conditions, ready(true, "Rendering"), Some(2), at(30));
        assert_eq!(conditions[0].last_transition_time, at(30), "a flip moves it");
        assert_eq!(conditions.len(), 1, "one entry per type");
    }
}
