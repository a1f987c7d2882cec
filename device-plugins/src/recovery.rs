//! When a GPU that a fault made unhealthy may serve again. Vendor libraries report faults
//! (an XID, an ECC error) but never a recovery, so a backend that only listened would keep a
//! GPU out until the plugin restarts — NVIDIA's plugin does. Here a faulted GPU is looked at
//! again once it has been quiet for a while; if the backend's probe finds it answering and
//! without pending repairs it is healthy again, else the wait starts over. Pure: the caller
//! brings the clock and the probe.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a faulted GPU must go without a new fault before it is probed.
pub const DEFAULT_QUIET: Duration = Duration::from_secs(60);

/// The faulted GPUs and when each last faulted.
#[derive(Clone, Debug)]
pub struct Recovery {
    quiet: Duration,
    faulted: BTreeMap<String, Instant>,
}

impl Recovery {
    pub fn new(quiet: Duration) -> Self {
        Recovery { quiet, faulted: BTreeMap::new() }
    }

    /// The GPU faulted at `now`: unhealthy, and its quiet time starts (again).
    pub fn fault(&mut self, id: &str, now: Instant) {
        self.faulted.insert(id.to_string(), now);
    }

    pub fn is_faulted(&self, id: &str) -> bool {
        self.faulted.contains_key(id)
    }

    /// GPUs quiet long enough to be probed at `now`.
    pub fn due(&self, now: Instant) -> Vec<String> {
        self.faulted
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) >= self.quiet)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The probe's verdict on a due GPU: `true` heals it (returned so the caller reports it),
    /// `false` counts as a fresh fault, so it is probed again a quiet time later.
    pub fn probed(&mut self, id: &str, healthy: bool, now: Instant) -> bool {
        if !self.faulted.contains_key(id) {
            return false;
        }
        if healthy {
            self.faulted.remove(id);
        } else {
            self.fault(id, now);
        }
        healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_secs(60);

    #[test]
    fn a_fault_heals_after_a_quiet_time_and_a_good_probe() {
        let t0 = Instant::now();
        let mut r = Recovery::new(QUIET);
        r.fault("GPU-a", t0);
        assert!(r.is_faulted("GPU-a"));
        assert!(r.due(t0 + Duration::from_secs(59)).is_empty(), "not before the quiet time");
        assert_eq!(r.due(t0 + QUIET), ["GPU-a"]);
        assert!(r.probed("GPU-a", true, t0 + QUIET));
        assert!(!r.is_faulted("GPU-a"));
        assert!(r.due(t0 + QUIET * 10).is_empty());
    }

    #[test]
    fn a_new_fault_or_a_bad_probe_starts_the_wait_again() {
        let t0 = Instant::now();
        let mut r = Recovery::new(QUIET);
        r.fault("GPU-a", t0);
        r.fault("GPU-a", t0 + Duration::from_secs(50));
        assert!(r.due(t0 + QUIET).is_empty(), "the second fault restarted the wait");
        let t1 = t0 + Duration::from_secs(110);
        assert_eq!(r.due(t1), ["GPU-a"]);
        assert!(!r.probed("GPU-a", false, t1));
        assert!(r.is_faulted("GPU-a"));
        assert!(r.due(t1 + Duration::from_secs(1)).is_empty());
        assert_eq!(r.due(t1 + QUIET), ["GPU-a"]);
    }

    #[test]
    fn a_probe_of_a_gpu_that_never_faulted_heals_nothing() {
        let mut r = Recovery::new(QUIET);
        assert!(!r.probed("GPU-b", true, Instant::now()));
    }
}
