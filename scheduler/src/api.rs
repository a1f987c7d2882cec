//! The writes the scheduler makes: `pods/binding`, the `PodScheduled` condition and the
//! FailedScheduling Event. Behind a trait so tests can put a fault in front of the real one.

use crate::scheduling::{Binding, UnschedulableReport};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::future::Future;

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "pictor-scheduler";

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The pod is gone (deleted, or re-created with another UID): forget it.
    #[error("pod {0} is gone")]
    PodGone(String),
    /// Someone else bound the pod first, or it changed under us: retry after a backoff.
    #[error("binding {0} conflicted: {1}")]
    Conflict(String, String),
    /// Any other API failure: retry after a backoff.
    #[error("{what}: {source}")]
    Kube {
        /// What was being written.
        what: String,
        /// The client's error.
        source: kube::Error,
    },
}

impl ApiError {
    /// Label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::PodGone(_) => "pod_gone",
            Self::Conflict(..) => "conflict",
            Self::Kube { .. } => "api",
        }
    }
}

/// Where decisions are written.
pub trait ClusterWriter: Clone + Send + Sync + 'static {
    /// Creates the binding.
    fn bind(&self, binding: &Binding) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Sets `PodScheduled=False/Unschedulable` with the message and records an Event.
    fn report_unschedulable(
        &self,
        report: &UnschedulableReport,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

/// The real API server.
#[derive(Clone)]
pub struct KubeWriter {
    client: Client,
    identity: String,
}

impl KubeWriter {
    /// Writes as `identity` (the Event's reporting instance).
    pub fn new(client: Client, identity: &str) -> Self {
        Self { client, identity: identity.into() }
    }
}

/// A FailedScheduling Event. Each new message is its own Event: kube-runtime's recorder
/// folds repeats of one reason into a series that keeps the first note, and the reason a pod
/// does not fit changes as the cluster does.
pub fn failed_scheduling_event(
    r: &UnschedulableReport,
    identity: &str,
    now: k8s_openapi::jiff::Timestamp,
) -> Event {
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(r.name.clone()),
        namespace: Some(r.namespace.clone()),
        uid: Some(r.uid.clone()),
        ..Default::default()
    };
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", r.name, now.as_nanosecond())),
            namespace: Some(r.namespace.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some("Warning".into()),
        reason: Some("FailedScheduling".into()),
        action: Some("Scheduling".into()),
        note: Some(r.message.chars().take(1000).collect()),
        regarding: Some(regarding),
        reporting_controller: Some(FIELD_MANAGER.into()),
        reporting_instance: Some(identity.into()),
        ..Default::default()
    }
}

/// The `pods/binding` body; the UID makes the API server refuse a re-created pod of the same
/// name.
pub fn binding_body(b: &Binding) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": b.name, "namespace": b.namespace, "uid": b.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": b.node},
    })
}

impl ClusterWriter for KubeWriter {
    async fn bind(&self, b: &Binding) -> Result<(), ApiError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &b.namespace);
        let body = binding_body(b);
        match api
            .create_subresource::<_, serde_json::Value>("binding", &b.name, &PostParams::default(), &body)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(ApiError::PodGone(b.key.clone())),
            // A UID precondition failure means the pod was re-created: this one is gone.
            Err(kube::Error::Api(s)) if s.code == 409 && s.message.contains("UID") => {
                Err(ApiError::PodGone(b.key.clone()))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                Err(ApiError::Conflict(b.key.clone(), s.message.clone()))
            }
            Err(source) => Err(ApiError::Kube { what: format!("bind {} to {}", b.key, b.node), source }),
        }
    }

    async fn report_unschedulable(&self, r: &UnschedulableReport) -> Result<(), ApiError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &r.namespace);
        let now = k8s_openapi::jiff::Timestamp::now();
        let patch = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "status": {"conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": r.message,
                "lastTransitionTime": now.to_string(),
            }]},
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch_status(&r.name, &params, &Patch::Apply(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Err(ApiError::PodGone(r.name.clone())),
            Err(source) => {
                return Err(ApiError::Kube { what: format!("set PodScheduled on {}", r.name), source });
            }
        }
        let events: Api<Event> = Api::namespaced(self.client.clone(), &r.namespace);
        let event = failed_scheduling_event(r, &self.identity, now);
        events
            .create(&PostParams::default(), &event)
            .await
            .map(|_| ())
            .map_err(|source| ApiError::Kube { what: format!("record an Event for {}", r.name), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_names_the_pod_uid_and_the_node() {
        let b = Binding {
            key: "ns/p".into(),
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u-1".into(),
            node: "n1".into(),
        };
        let body = binding_body(&b);
        assert_eq!(body["metadata"]["uid"], "u-1");
        assert_eq!(body["target"]["name"], "n1");
        assert_eq!(body["kind"], "Binding");
    }
}
