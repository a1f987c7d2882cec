//! When the hub last heard each member's agent, on the hub's own clock.
//!
//! An agent renews its Lease by writing `renewTime`, a time it chooses: a member could write a
//! time far in the future once and look fresh forever. So the hub never reads that time as a
//! time. A renewal is a *change* of the Lease's `renewTime`, and the hub notes when its watch saw
//! each change, as kube-controller-manager's node lifecycle controller does with node Leases.
//! After an operator restart every member counts as heard at the first list: a member silent
//! since then is judged a grace period later.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use std::collections::HashMap;

/// The last renewal seen of each agent Lease, and when the hub saw it.
#[derive(Debug, Default)]
pub struct Heartbeats {
    /// By the Lease's namespace (the member's): the `renewTime` seen, and the hub's time then.
    seen: HashMap<String, (Option<String>, Timestamp)>,
}

impl Heartbeats {
    /// Notes a Lease as the watch delivered it at `now`: a new `renewTime` is a heartbeat.
    pub fn observe(&mut self, lease: &Lease, now: Timestamp) {
        let Some(namespace) = lease.metadata.namespace.clone() else { return };
        let renewed = lease.spec.as_ref().and_then(|s| s.renew_time.as_ref()).map(|t| t.0.to_string());
        let Some(renewed) = renewed else { return };
        match self.seen.get_mut(&namespace) {
            Some((last, _)) if last.as_deref() == Some(renewed.as_str()) => {}
            Some(entry) => *entry = (Some(renewed), now),
            None => {
                self.seen.insert(namespace, (Some(renewed), now));
            }
        }
    }

    /// When the hub last saw the agent of the member namespace renew its Lease, on its own clock.
    pub fn heard_at(&self, namespace: &str) -> Option<Timestamp> {
        self.seen.get(namespace).map(|(_, at)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(renew: &str) -> Lease {
        let mut lease = Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(renew.parse().unwrap())),
                ..Default::default()
            }),
            ..Default::default()
        };
        lease.metadata.namespace = Some("pictor-member-a".into());
        lease
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_renewal_counts_when_the_hub_sees_it_whatever_time_it_claims() {
        let mut beats = Heartbeats::default();
        assert_eq!(beats.heard_at("pictor-member-a"), None);
        // A renewTime a year ahead is heard now, and stays heard now until it changes.
        beats.observe(&lease("2027-11-25T12:00:00Z"), at("2026-11-25T12:00:00Z"));
        beats.observe(&lease("2027-11-25T12:00:00Z"), at("2026-11-25T12:05:00Z"));
        assert_eq!(beats.heard_at("pictor-member-a"), Some(at("2026-11-25T12:00:00Z")));
        beats.observe(&lease("2026-11-25T12:05:01Z"), at("2026-11-25T12:05:02Z"));
        assert_eq!(beats.heard_at("pictor-member-a"), Some(at("2026-11-25T12:05:02Z")));
        assert_eq!(beats.heard_at("pictor-member-b"), None);
    }
}
