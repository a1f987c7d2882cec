//! Permit: a gang member is bound only once every member of its gang is there; until then the
//! gang's reservation waits, for a bounded time (DESIGN.md, "Gang").

use crate::framework::{Permit, PermitPlugin};
use crate::view::PodInfo;
use std::time::Duration;

/// Holds gang members until the gang has gathered.
pub struct GangPermit {
    /// How long a gathering gang may hold its reservation.
    pub wait: Duration,
}

impl PermitPlugin for GangPermit {
    fn name(&self) -> &'static str {
        "GangPermit"
    }

    fn permit(&self, pod: &PodInfo, gathered: usize) -> Permit {
        match &pod.gang {
            Some(g) if gathered < g.size => Permit::Wait(self.wait),
            _ => Permit::Allow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::GangRef;
    use crate::view::tests::pod;

    #[test]
    fn members_wait_until_the_gang_is_complete() {
        let permit = GangPermit { wait: Duration::from_secs(30) };
        let member = PodInfo { gang: Some(GangRef { key: "ns/g".into(), size: 4 }), ..pod("m", 8) };
        assert_eq!(permit.permit(&member, 3), Permit::Wait(Duration::from_secs(30)));
        assert_eq!(permit.permit(&member, 4), Permit::Allow);
        assert_eq!(permit.permit(&pod("solo", 1), 1), Permit::Allow);
    }
}
