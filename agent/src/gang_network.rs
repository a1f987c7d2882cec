//! What a rendezvous gang (a TrainingJob's workers) talks over inside its member: a headless
//! Service that names each worker, and a NetworkPolicy that lets the gang's pods reach each other.
//! The work namespace denies everything else by default (the provider chart's NetworkPolicy:
//! DNS and the allowed storage endpoints only), so a gang opens no path to other units, to the
//! provider's network or to metadata endpoints. Both are owned by the gang's first pod, so the
//! member's garbage collector removes them with the pods.

use crate::work_pods::PodSettings;
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use pictor_crds::contract::labels;
use pictor_crds::v1alpha1::WorkUnit;
use std::collections::BTreeMap;

/// A gang's Service and NetworkPolicy, created together.
#[derive(Clone, Debug, PartialEq)]
pub struct GangNetwork {
    /// Lets the gang's pods reach each other.
    pub policy: NetworkPolicy,
    /// Names each worker (`<template>.<unit>`).
    pub service: Service,
}

/// The network of a unit with a rendezvous port, once its first pod exists (it owns both).
pub fn gang_network(unit: &WorkUnit, settings: &PodSettings, first_pod: &Pod) -> Option<GangNetwork> {
    let port = unit.spec.rendezvous_port?;
    let uid = unit.metadata.uid.clone()?;
    let name = unit.metadata.name.clone()?;
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: first_pod.metadata.name.clone()?,
        uid: first_pod.metadata.uid.clone()?,
        ..Default::default()
    };
    let of_the_unit = BTreeMap::from([(labels::WORK_UNIT_UID.to_string(), uid)]);
    let metadata = |name: String| ObjectMeta {
        name: Some(name),
        namespace: Some(settings.namespace.clone()),
        labels: Some(of_the_unit.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };
    let the_gang = || NetworkPolicyPeer {
        pod_selector: Some(LabelSelector { match_labels: Some(of_the_unit.clone()), ..Default::default() }),
        ..Default::default()
    };
    let policy = NetworkPolicy {
        metadata: metadata(format!("{name}-gang")),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(of_the_unit.clone()),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule { from: Some(vec![the_gang()]), ports: None }]),
            egress: Some(vec![NetworkPolicyEgressRule { to: Some(vec![the_gang()]), ports: None }]),
        }),
    };
    let service = Service {
        metadata: metadata(name),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(of_the_unit.clone()),
            ports: Some(vec![ServicePort {
                name: Some("rendezvous".into()),
                port: port as i32,
                ..Default::default()
            }]),
            publish_not_ready_addresses: Some(true),
            ..Default::default()
        }),
        status: None,
    };
    Some(GangNetwork { policy, service })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confinement::ProviderPolicy;
    use serde_json::json;

    #[test]
    fn a_gangs_pods_may_reach_each_other_and_the_policy_goes_with_its_first_pod() {
        let unit: WorkUnit = serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
            "metadata": {"name": "train-1", "namespace": "pictor-member-a", "uid": "unit-uid"},
            "spec": {"jobRef": {"kind": "TrainingJob", "namespace": "default", "name": "train", "uid": "job"},
                     "pods": [], "agreedPricePerGpuHour": 1, "rendezvousPort": 23456}
        }))
        .unwrap();
        let settings = PodSettings {
            namespace: "pictor-work".into(),
            scheduler_name: "s".into(),
            env: vec![],
            policy: ProviderPolicy::permissive(Default::default()),
        };
        let mut first = Pod::default();
        assert_eq!(gang_network(&unit, &settings, &first), None, "no owner yet");
        first.metadata.name = Some("train-1-worker-0".into());
        first.metadata.uid = Some("pod-uid".into());
        let network = gang_network(&unit, &settings, &first).unwrap();
        let spec = network.policy.spec.as_ref().unwrap();
        let selector = |peer: &NetworkPolicyPeer| peer.pod_selector.clone().unwrap().match_labels.unwrap();
        let gang = BTreeMap::from([(labels::WORK_UNIT_UID.to_string(), "unit-uid".to_string())]);
        assert_eq!(spec.pod_selector.clone().unwrap().match_labels.unwrap(), gang);
        assert_eq!(selector(&spec.ingress.as_ref().unwrap()[0].from.as_ref().unwrap()[0]), gang);
        assert_eq!(selector(&spec.egress.as_ref().unwrap()[0].to.as_ref().unwrap()[0]), gang);
        assert_eq!(network.policy.metadata.owner_references.unwrap()[0].uid, "pod-uid");
        assert_eq!(network.service.metadata.owner_references.unwrap()[0].uid, "pod-uid");
    }
}
