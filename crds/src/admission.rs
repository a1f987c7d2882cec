//! What the hub's API server refuses a member's agent, whatever its RBAC allows: the
//! ValidatingAdmissionPolicies (and their bindings) that keep a member from rewriting the record
//! the hub pays and judges from (DESIGN.md, "Trust"). RBAC lets an agent write its units' status,
//! its GpuCluster's status and its log ConfigMaps; these policies say *what* it may write there.
//!
//! A policy matches only requests made by a member agent's ServiceAccount
//! (`system:serviceaccount:pictor-member-<name>:pictor-agent`): the hub's own controllers write
//! the same fields (Lost, reputation, conditions) and are not bound by them. Every refusal names
//! the object, what was refused and why.
//!
//! Like the CRDs, the policies are rendered into the `pictor-crds` chart by `crdgen`, and a test
//! fails when the committed YAML drifts.

use crate::contract::members::{AGENT, MEMBER_NAMESPACE_PREFIX};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use serde_json::{Value, json};

/// Largest total size of a member's log ConfigMap's data, in bytes.
pub const MAX_LOG_CONFIG_MAP_BYTES: i64 = 64 * 1024;

/// Phases after which a unit's record is final.
const TERMINAL: &str = "['Succeeded', 'Failed', 'Lost']";

/// Fields of a unit's status frozen once it is terminal (conditions stay writable: the agent
/// records a late report on a Lost unit there, for the record).
const FROZEN_UNIT_FIELDS: &[&str] =
    &["phase", "startTime", "completionTime", "gpuSeconds", "exitCodes", "outputs", "message"];

/// GpuCluster status fields only the hub writes: the member reports its inventory, nothing else.
const HUB_OWNED_CLUSTER_FIELDS: &[&str] =
    &["reputation", "earnings", "conditions", "lastHeartbeat", "observedGeneration"];

/// A CEL condition true when the request comes from a member's agent.
fn from_member_agent() -> String {
    format!(
        "request.userInfo.username.startsWith('system:serviceaccount:{MEMBER_NAMESPACE_PREFIX}') && request.userInfo.username.endsWith(':{AGENT}')"
    )
}

/// CEL: `object.status.<field>` and `oldObject.status.<field>` are the same, absent included.
fn unchanged_status_field(field: &str) -> String {
    let present = |o: &str| format!("(has({o}.status) && has({o}.status.{field}))");
    format!(
        "{new} == {old} && (!{new} || object.status.{field} == oldObject.status.{field})",
        new = present("object"),
        old = present("oldObject"),
    )
}

fn policy(
    name: &str,
    resources: &[&str],
    operations: &[&str],
    variables: Value,
    validations: Value,
) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [resources_group(resources)],
                "apiVersions": ["*"],
                "operations": operations,
                "resources": resources,
            }]},
            "matchConditions": [{"name": "from-member-agent", "expression": from_member_agent()}],
            "variables": variables,
            "validations": validations,
        }
    })
}

fn resources_group(resources: &[&str]) -> &'static str {
    if resources.iter().all(|r| r.starts_with("configmaps")) { "" } else { crate::GROUP }
}

fn binding(policy: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": policy},
        "spec": {"policyName": policy, "validationActions": ["Deny"]}
    })
}

/// A unit's status from a member: phases move forward only, a terminal phase and what the unit
/// reported with it are final, and Lost is the hub's word.
fn work_unit_status() -> Value {
    let frozen =
        FROZEN_UNIT_FIELDS.iter().map(|f| unchanged_status_field(f)).collect::<Vec<_>>().join(" && ");
    policy(
        "pictor-member-workunit-status",
        &["workunits/status"],
        &["UPDATE"],
        json!([
            {"name": "oldPhase", "expression": "has(oldObject.status) && has(oldObject.status.phase) ? oldObject.status.phase : 'Pending'"},
            {"name": "newPhase", "expression": "has(object.status) && has(object.status.phase) ? object.status.phase : 'Pending'"},
            {"name": "rank", "expression": "{'Pending': 0, 'Running': 1, 'Succeeded': 2, 'Failed': 2, 'Lost': 2}"},
        ]),
        json!([
            {
                "expression": format!("!(variables.oldPhase in {TERMINAL}) || ({frozen})"),
                "messageExpression": "'WorkUnit ' + object.metadata.name + ' is ' + variables.oldPhase + ': a finished unit\\'s phase, times, gpuSeconds, exitCodes, outputs and message are final and a member agent may not change them'",
                "reason": "Forbidden",
            },
            {
                "expression": "variables.newPhase != 'Lost' || variables.oldPhase == 'Lost'",
                "messageExpression": "'WorkUnit ' + object.metadata.name + ': a member agent may not mark a unit Lost; Lost is the hub\\'s verdict on a silent member or a stalled unit'",
                "reason": "Forbidden",
            },
            {
                "expression": "variables.rank[variables.newPhase] >= variables.rank[variables.oldPhase]",
                "messageExpression": "'WorkUnit ' + object.metadata.name + ': phase may only move forward (Pending, Running, then Succeeded or Failed), not from ' + variables.oldPhase + ' to ' + variables.newPhase",
                "reason": "Forbidden",
            },
        ]),
    )
}

/// A GpuCluster's status from its member: the inventory, and none of what the hub records of it.
fn gpu_cluster_status() -> Value {
    let validations: Vec<Value> = HUB_OWNED_CLUSTER_FIELDS
        .iter()
        .map(|field| {
            json!({
                "expression": unchanged_status_field(field),
                "messageExpression": format!("'GpuCluster ' + object.metadata.name + ': status.{field} is written by the hub, not by the member\\'s agent (an agent reports status.inventory only)'"),
                "reason": "Forbidden",
            })
        })
        .collect();
    policy(
        "pictor-member-gpucluster-status",
        &["gpuclusters/status"],
        &["UPDATE"],
        json!([]),
        Value::Array(validations),
    )
}

/// A member's ConfigMaps on the hub: unit log tails (`<unit>-log`), bounded in size.
fn log_config_maps() -> Value {
    policy(
        "pictor-member-log-configmaps",
        &["configmaps"],
        &["CREATE", "UPDATE"],
        json!([
            {"name": "bytes", "expression": "has(object.data) ? object.data.map(k, size(k) + size(object.data[k])).sum() : 0"},
        ]),
        json!([
            {
                "expression": "object.metadata.name.endsWith('-log')",
                "messageExpression": "'ConfigMap ' + object.metadata.name + ': a member agent writes only unit log ConfigMaps, named <unit>-log'",
                "reason": "Forbidden",
            },
            {
                "expression": "!has(object.binaryData)",
                "message": "a unit log ConfigMap holds text only: binaryData is refused",
                "reason": "Invalid",
            },
            {
                "expression": format!("variables.bytes <= {MAX_LOG_CONFIG_MAP_BYTES}"),
                "messageExpression": format!("'ConfigMap ' + object.metadata.name + ': ' + string(variables.bytes) + ' bytes of data; a unit log ConfigMap holds at most {MAX_LOG_CONFIG_MAP_BYTES} (keep the tail)'"),
                "reason": "RequestEntityTooLarge",
            },
        ]),
    )
}

/// Every policy with its binding, in a stable order.
pub fn policies() -> Vec<(ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding)> {
    [work_unit_status(), gpu_cluster_status(), log_config_maps()]
        .into_iter()
        .map(|policy| {
            let name = policy["metadata"]["name"].as_str().expect("a policy has a name").to_string();
            (
                serde_json::from_value(policy).expect("a policy is a ValidatingAdmissionPolicy"),
                serde_json::from_value(binding(&name))
                    .expect("a binding is a ValidatingAdmissionPolicyBinding"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_is_bound_and_matches_member_agents_only() {
        let policies = policies();
        assert_eq!(policies.len(), 3);
        for (policy, binding) in &policies {
            let spec = policy.spec.as_ref().unwrap();
            assert_eq!(binding.spec.as_ref().unwrap().policy_name, policy.metadata.name);
            let conditions = spec.match_conditions.as_ref().unwrap();
            assert!(conditions[0].expression.contains("system:serviceaccount:pictor-member-"));
            assert!(conditions[0].expression.contains(":pictor-agent'"));
            assert!(spec.validations.as_ref().unwrap().iter().all(|v| v.reason.is_some()));
        }
    }

    #[test]
    fn an_unchanged_field_compares_presence_first() {
        assert_eq!(
            unchanged_status_field("x"),
            "(has(object.status) && has(object.status.x)) == (has(oldObject.status) && has(oldObject.status.x)) && (!(has(object.status) && has(object.status.x)) || object.status.x == oldObject.status.x)"
        );
    }
}
