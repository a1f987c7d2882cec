//! `status.conditions` as Kubernetes lists them: `metav1.Condition` in a list map keyed by
//! `type`, so server-side apply merges one condition at a time instead of replacing the list.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator};

/// The condition every Pictor kind carries: whether the object is doing what it should.
pub const CONDITION_READY: &str = "Ready";

/// Schema of a `conditions` field: a list map keyed by `type`, at most 16 entries.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = <Vec<Condition>>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema.insert("maxItems".into(), 16.into());
    schema
}
