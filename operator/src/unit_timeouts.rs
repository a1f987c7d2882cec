//! Units that hold work hostage: a unit Pending or Running longer than its job allows is Lost,
//! and its job places the work again elsewhere. The bound is the hub's (the job's
//! `spec.unitTimeoutSeconds`, or a default from the unit's size) and so is the clock: the unit's
//! creation time, set by the API server.

use k8s_openapi::jiff::Timestamp;
use pictor_crds::v1alpha1::{WorkUnit, WorkUnitPhase};
use std::time::Duration;

/// Time a render unit is given to start before its frames count.
pub const RENDER_START_ALLOWANCE: Duration = Duration::from_secs(600);
/// Time a render unit is given per frame.
pub const RENDER_PER_FRAME: Duration = Duration::from_secs(600);
/// Time a training gang is given when its job sets none.
pub const TRAINING_DEFAULT: Duration = Duration::from_secs(24 * 3600);

/// Frames a render unit covers, from its `spec.frames` (`first-last`, or one frame): an upper
/// bound, since the job's step may skip some.
pub fn frames_of(unit: &WorkUnit) -> u64 {
    let frames = unit.spec.frames.as_str();
    let span =
        frames.split_once('-').and_then(|(a, b)| Some(b.parse::<i64>().ok()? - a.parse::<i64>().ok()? + 1));
    span.unwrap_or(1).clamp(1, 1_000_000) as u64
}

/// A render unit's bound: the job's, or the start allowance plus a time per frame.
pub fn render_bound(job_seconds: Option<i64>, unit: &WorkUnit) -> Duration {
    match job_seconds {
        Some(s) => Duration::from_secs(s.max(1) as u64),
        None => RENDER_START_ALLOWANCE + RENDER_PER_FRAME * frames_of(unit) as u32,
    }
}

/// A unit out past its bound.
#[derive(Debug)]
pub struct Stalled<'a> {
    /// The unit.
    pub unit: &'a WorkUnit,
    /// How long it has been out, since its creation.
    pub out: Duration,
    /// Its bound.
    pub bound: Duration,
}

/// Units still Pending or Running past their bound at `now`.
pub fn stalled<'a>(
    units: &[&'a WorkUnit],
    now: Timestamp,
    bound: impl Fn(&WorkUnit) -> Duration,
) -> Vec<Stalled<'a>> {
    units
        .iter()
        .copied()
        .filter(|u| {
            matches!(
                u.status.as_ref().and_then(|s| s.phase),
                None | Some(WorkUnitPhase::Pending | WorkUnitPhase::Running)
            )
        })
        .filter_map(|u| {
            let created = u.metadata.creation_timestamp.as_ref()?.0;
            let out = Duration::try_from(now.duration_since(created)).unwrap_or_default();
            let bound = bound(u);
            (out > bound).then_some(Stalled { unit: u, out, bound })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unit(frames: &str, phase: Option<&str>) -> WorkUnit {
        let mut u = json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
            "metadata": {"name": "u", "namespace": "pictor-member-a", "creationTimestamp": "2026-11-25T12:00:00Z"},
            "spec": {"jobRef": {"kind": "RenderJob", "namespace": "d", "name": "j", "uid": "x"},
                     "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": 1}],
                     "frames": frames, "agreedPricePerGpuHour": 3600},
        });
        if let Some(p) = phase {
            u["status"] = json!({"phase": p});
        }
        serde_json::from_value(u).unwrap()
    }

    #[test]
    fn the_default_bound_grows_with_the_frames_of_a_unit() {
        assert_eq!(frames_of(&unit("11-20", None)), 10);
        assert_eq!(frames_of(&unit("7", None)), 1);
        assert_eq!(render_bound(None, &unit("1-10", None)), Duration::from_secs(600 + 6000));
        assert_eq!(render_bound(Some(120), &unit("1-10", None)), Duration::from_secs(120));
    }

    #[test]
    fn only_unfinished_units_past_their_bound_stall() {
        let now: Timestamp = "2026-11-25T12:03:00Z".parse().unwrap();
        let pending = unit("1-10", None);
        let running = unit("1-10", Some("Running"));
        let done = unit("1-10", Some("Succeeded"));
        let units = [&pending, &running, &done];
        assert!(stalled(&units, now, |_| Duration::from_secs(200)).is_empty());
        let out = stalled(&units, now, |_| Duration::from_secs(120));
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].out, out[0].bound), (Duration::from_secs(180), Duration::from_secs(120)));
    }
}
