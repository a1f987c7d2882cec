//! Reserve: counts the pod on its node in the view before the binding is confirmed, so the
//! next decision cannot hand out the same room (kube-scheduler's "assume").

use crate::framework::ReservePlugin;
use crate::view::{ClusterView, PodInfo};

/// Assumes the pod on its node; undone when the binding fails or the gang gives up.
pub struct ViewReservation;

impl ReservePlugin for ViewReservation {
    fn name(&self) -> &'static str {
        "ViewReservation"
    }

    fn reserve(&self, view: &mut ClusterView, pod: &PodInfo, node: &str) {
        view.assume(&pod.key, node);
    }

    fn unreserve(&self, view: &mut ClusterView, pod: &PodInfo) {
        view.forget_assumed(&pod.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::tests::{node, pod};
    use pictor_crds::contract::Vendor;

    #[test]
    fn reserve_takes_room_and_unreserve_gives_it_back() {
        let mut view = ClusterView::default();
        view.apply_node(node("n", 8));
        let p = pod("p", 8);
        view.apply_pod(p.clone());
        ViewReservation.reserve(&mut view, &p, "n");
        assert_eq!(view.node("n").unwrap().free().gpus[Vendor::Nvidia], 0);
        ViewReservation.unreserve(&mut view, &p);
        assert_eq!(view.node("n").unwrap().free().gpus[Vendor::Nvidia], 8);
    }
}
