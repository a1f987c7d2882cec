//! Filter: `nodeSelector` and required node affinity (`In`, `NotIn`, `Exists`,
//! `DoesNotExist`, `Gt`, `Lt`; `matchFields` on `metadata.name`).

use crate::framework::{FilterPlugin, Reason};
use crate::resources::Resources;
use crate::view::{NodeInfo, PodInfo};
use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement};
use std::collections::BTreeMap;

/// Rejects nodes whose labels do not satisfy the pod's selector and required affinity.
pub struct NodeAffinity;

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let as_int = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| values.iter().all(|x| x != v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(as_int), values.first().and_then(|x| as_int(x))), (Some(v), Some(x)) if v > x)
        }
        "Lt" => {
            matches!((value.and_then(as_int), values.first().and_then(|x| as_int(x))), (Some(v), Some(x)) if v < x)
        }
        _ => false,
    }
}

/// Whether the terms (ORed; expressions inside a term ANDed) select the node.
pub fn selector_matches(selector: &NodeSelector, name: &str, labels: &BTreeMap<String, String>) -> bool {
    selector.node_selector_terms.iter().any(|term| {
        let expressions = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if expressions.is_empty() && fields.is_empty() {
            return false; // an empty term matches nothing, as in Kubernetes
        }
        expressions.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
            && fields.iter().all(|r| requirement_matches(r, (r.key == "metadata.name").then_some(name)))
    })
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _free: &Resources) -> Result<(), Reason> {
        let selector_ok = pod.node_selector.iter().all(|(k, v)| node.labels.get(k) == Some(v));
        let affinity_ok =
            pod.required_affinity.as_ref().is_none_or(|s| selector_matches(s, &node.name, &node.labels));
        if selector_ok && affinity_ok { Ok(()) } else { Err(Reason::NodeAffinity) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::tests::{node, pod};
    use k8s_openapi::api::core::v1::NodeSelectorTerm;
    use pictor_crds::contract::node_labels;

    fn labelled(pairs: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            labels: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..node("n1", 8)
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn with_affinity(terms: Vec<Vec<NodeSelectorRequirement>>) -> PodInfo {
        PodInfo {
            required_affinity: Some(NodeSelector {
                node_selector_terms: terms
                    .into_iter()
                    .map(|e| NodeSelectorTerm { match_expressions: Some(e), match_fields: None })
                    .collect(),
            }),
            ..pod("p", 1)
        }
    }

    #[test]
    fn node_selector_needs_every_label() {
        let n = labelled(&[("zone", "a"), ("tier", "partner")]);
        let mut p = pod("p", 1);
        p.node_selector.insert("zone".into(), "a".into());
        assert_eq!(NodeAffinity.filter(&p, &n, &n.free()), Ok(()));
        p.node_selector.insert("tier".into(), "community".into());
        assert_eq!(NodeAffinity.filter(&p, &n, &n.free()), Err(Reason::NodeAffinity));
    }

    #[test]
    fn required_affinity_supports_every_operator_and_ors_terms() {
        let n = labelled(&[(node_labels::MEMORY_MIB, "81559"), ("zone", "a")]);
        let fits = |p: &PodInfo| NodeAffinity.filter(p, &n, &n.free()).is_ok();
        assert!(fits(&with_affinity(vec![vec![req(node_labels::MEMORY_MIB, "Gt", &["40000"])]])));
        assert!(!fits(&with_affinity(vec![vec![req(node_labels::MEMORY_MIB, "Lt", &["40000"])]])));
        assert!(fits(&with_affinity(vec![vec![req("zone", "In", &["a", "b"])]])));
        assert!(!fits(&with_affinity(vec![vec![req("zone", "NotIn", &["a"])]])));
        assert!(fits(&with_affinity(vec![vec![req("zone", "Exists", &[])]])));
        assert!(!fits(&with_affinity(vec![vec![req("zone", "DoesNotExist", &[])]])));
        assert!(fits(&with_affinity(vec![vec![req("zone", "In", &["x"])], vec![req("zone", "In", &["a"])]])));
        assert!(!fits(&with_affinity(vec![vec![req("zone", "In", &["a"]), req("rack", "Exists", &[])]])));
    }

    #[test]
    fn match_fields_select_by_node_name() {
        let n = labelled(&[]);
        let term = |op: &str| NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![req("metadata.name", op, &["n1"])]),
            }],
        };
        assert!(selector_matches(&term("In"), &n.name, &n.labels));
        assert!(!selector_matches(&term("NotIn"), &n.name, &n.labels));
    }
}
