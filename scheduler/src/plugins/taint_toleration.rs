//! Filter: NoSchedule and NoExecute taints must be tolerated; PreferNoSchedule never blocks.

use crate::framework::{FilterPlugin, Reason};
use crate::resources::Resources;
use crate::view::{NodeInfo, PodInfo, Taint};
use k8s_openapi::api::core::v1::Toleration;

/// Rejects nodes with a taint the pod does not tolerate.
pub struct TaintToleration;

/// Whether any toleration matches the taint (Kubernetes' `ToleratesTaint`).
pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
        let key = t.key.as_deref().unwrap_or("");
        let operator = t.operator.as_deref().unwrap_or("Equal");
        let key_ok = (key.is_empty() && operator == "Exists") || key == taint.key;
        let value_ok = match operator {
            "Exists" => true,
            _ => t.value.as_deref().unwrap_or("") == taint.value,
        };
        effect_ok && key_ok && value_ok
    })
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _free: &Resources) -> Result<(), Reason> {
        let blocking = node
            .taints
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .any(|t| !tolerates(&pod.tolerations, t));
        if blocking { Err(Reason::UntoleratedTaint) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::tests::{node, pod};

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: value.into(), effect: effect.into() }
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: Some(key.into()).filter(|k: &String| !k.is_empty()),
            operator: Some(op.into()),
            value: Some(value.into()).filter(|v: &String| !v.is_empty()),
            effect: Some(effect.into()).filter(|e: &String| !e.is_empty()),
            ..Default::default()
        }
    }

    #[test]
    fn no_schedule_and_no_execute_block_prefer_no_schedule_does_not() {
        let p = pod("p", 1);
        for (effect, blocked) in [("NoSchedule", true), ("NoExecute", true), ("PreferNoSchedule", false)] {
            let n = NodeInfo { taints: vec![taint("gpu", "reserved", effect)], ..node("n", 8) };
            assert_eq!(TaintToleration.filter(&p, &n, &n.free()).is_err(), blocked, "{effect}");
        }
    }

    #[test]
    fn tolerations_match_by_key_value_operator_and_effect() {
        let t = taint("gpu", "reserved", "NoSchedule");
        assert!(tolerates(&[toleration("gpu", "Equal", "reserved", "NoSchedule")], &t));
        assert!(tolerates(&[toleration("gpu", "Exists", "", "")], &t));
        assert!(tolerates(&[toleration("", "Exists", "", "")], &t));
        assert!(!tolerates(&[toleration("gpu", "Equal", "other", "NoSchedule")], &t));
        assert!(!tolerates(&[toleration("gpu", "Equal", "reserved", "NoExecute")], &t));
        assert!(!tolerates(&[toleration("cpu", "Exists", "", "")], &t));
        assert!(!tolerates(&[], &t));
    }
}
