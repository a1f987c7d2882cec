//! The job controllers' writes of WorkUnits on the hub: creating what placement decided and
//! deleting what a job no longer needs. Both are idempotent (an existing unit, a missing one).

use crate::accrual::UnitMark;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use pictor_crds::v1alpha1::{CONDITION_READY, Observation, WorkUnit, set_condition};
use pictor_telemetry::cluster::{is_code, tolerate};

/// Unit writes in flight at once: a 100,000-frame job places thousands of units, and one at a
/// time the API server's round trips, not placement, would set the pace.
const CONCURRENT_WRITES: usize = 16;

/// A unit write the hub refused.
#[derive(Debug, thiserror::Error)]
#[error("{what} {namespace}/{name}: {source}")]
pub struct UnitWriteError {
    what: &'static str,
    namespace: String,
    name: String,
    source: kube::Error,
}

/// Creates units in their member namespaces; units that already exist are left as they are.
/// Returns the names of the units this call created (not those that existed already), so that
/// what is counted and told about each placement happens once.
pub async fn create(client: &kube::Client, units: &[WorkUnit]) -> Result<Vec<String>, UnitWriteError> {
    let outcomes: Vec<Result<Option<String>, UnitWriteError>> = futures::stream::iter(units.iter().cloned())
        .map(|unit| {
            let client = client.clone();
            async move {
                let namespace = unit.namespace().unwrap_or_default();
                let created = Api::<WorkUnit>::namespaced(client, &namespace)
                    .create(&PostParams::default(), &unit)
                    .await;
                match created {
                    Ok(_) => Ok(Some(unit.name_any())),
                    Err(e) if is_code(&e, 409) => Ok(None),
                    Err(source) => {
                        Err(UnitWriteError { what: "create unit", namespace, name: unit.name_any(), source })
                    }
                }
            }
        })
        .buffer_unordered(CONCURRENT_WRITES)
        .collect()
        .await;
    let mut names = Vec::new();
    for outcome in outcomes {
        names.extend(outcome?);
    }
    Ok(names)
}

/// Deletes units by namespace and name; units already gone are fine.
pub async fn delete(client: &kube::Client, units: &[(String, String)]) -> Result<(), UnitWriteError> {
    for (namespace, name) in units {
        let deleted = Api::<WorkUnit>::namespaced(client.clone(), namespace)
            .delete(name, &DeleteParams::background())
            .await;
        tolerate(deleted, &[404]).map_err(|source| UnitWriteError {
            what: "delete unit",
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Sets the labels, annotations and finalizers a job controller decided on units (verdicts,
/// billing). Metadata, not status: the member's agent owns a unit's status.
pub async fn mark(
    client: &kube::Client,
    field_manager: &str,
    marks: &[UnitMark],
) -> Result<(), UnitWriteError> {
    futures::stream::iter(marks.iter().cloned())
        .map(|mark| {
            let client = client.clone();
            let field_manager = field_manager.to_string();
            async move {
                let mut metadata =
                    serde_json::json!({"labels": mark.labels, "annotations": mark.annotations});
                if let Some(finalizers) = &mark.finalizers {
                    metadata["finalizers"] = serde_json::json!(finalizers);
                }
                let params = PatchParams { field_manager: Some(field_manager), ..Default::default() };
                let patched = Api::<WorkUnit>::namespaced(client, &mark.namespace)
                    .patch(&mark.name, &params, &Patch::Merge(serde_json::json!({"metadata": metadata})))
                    .await;
                tolerate(patched, &[404]).map_err(|source| UnitWriteError {
                    what: "mark unit",
                    namespace: mark.namespace,
                    name: mark.name,
                    source,
                })
            }
        })
        .buffer_unordered(CONCURRENT_WRITES)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Marks a unit Lost, the hub's verdict (a member's agent may not write it): its member went
/// silent, or it stayed unfinished past its bound. `reason` is the Ready condition's reason.
pub async fn mark_lost(
    client: &kube::Client,
    field_manager: &str,
    unit: &WorkUnit,
    reason: &'static str,
    message: String,
    now: Time,
) -> Result<(), UnitWriteError> {
    let namespace = unit.namespace().unwrap_or_default();
    let mut conditions = unit.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let observation = Observation { type_: CONDITION_READY, status: false, reason, message: message.clone() };
    set_condition(&mut conditions, observation, unit.meta().generation, now);
    let body = serde_json::json!({
        "apiVersion": WorkUnit::api_version(&()),
        "kind": WorkUnit::kind(&()),
        "status": {"phase": "Lost", "message": message, "conditions": conditions},
    });
    let params = PatchParams::apply(field_manager).force();
    let patched = Api::<WorkUnit>::namespaced(client.clone(), &namespace)
        .patch_status(&unit.name_any(), &params, &Patch::Apply(&body))
        .await;
    tolerate(patched, &[404]).map_err(|source| UnitWriteError {
        what: "mark unit Lost",
        namespace,
        name: unit.name_any(),
        source,
    })?;
    Ok(())
}
