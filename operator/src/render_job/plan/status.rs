//! Stage 5, status: what the job's status shows of the other stages — frame counts, cost,
//! providers, failed chunks, the phase and the Ready condition.

use super::place::Placed;
use super::tally::Tally;
use super::{Chunk, member_of, phase};
use pictor_crds::contract::format_apt;
use pictor_crds::v1alpha1::{
    FailedChunk, FrameCounts, RenderJob, RenderJobPhase, RenderJobStatus, WorkUnit, WorkUnitPhase,
};
use std::collections::BTreeSet;

/// Failed chunks the status lists, at most.
const LISTED_FAILED_CHUNKS: usize = 50;

/// What the earlier stages found, as the status sums it up.
pub(super) struct Findings<'a> {
    pub chunks: &'a [Chunk],
    pub tally: &'a Tally<'a>,
    /// What the place stage did.
    pub placed: &'a Placed,
    /// Units (chunks and checks) this reconcile creates.
    pub creating: usize,
    /// Chunks that failed more often than the job retries one.
    pub failed_for_good: &'a [&'a Chunk],
    /// Sampled chunks awaiting their verification.
    pub awaiting_verification: usize,
    /// Disputed chunks being verified again.
    pub open_disputes: usize,
    /// Why sampled chunks were accepted unverified, if some were.
    pub unverifiable: Option<String>,
}

/// The job's status, its Ready condition and the chunks waiting for a member.
pub(super) struct Summary {
    pub status: RenderJobStatus,
    pub ready: (bool, &'static str, String),
    pub awaiting_placement: i64,
}

/// What the job cost so far: its accepted outputs and every verification that succeeded, as the
/// hub meters them.
pub(super) fn cost(
    accepted: &[&WorkUnit],
    succeeded_checks: &[&WorkUnit],
    now: k8s_openapi::jiff::Timestamp,
) -> i64 {
    let units: Vec<&WorkUnit> = accepted.iter().chain(succeeded_checks).copied().collect();
    crate::metering::cost_octas_of(&units, now)
}

/// Frames done, running (or placed now) and failed for good.
pub(super) fn frame_counts(total: i64, f: &Findings<'_>) -> FrameCounts {
    let frames_of =
        |pred: &dyn Fn(&Chunk) -> bool| f.chunks.iter().filter(|c| pred(c)).map(|c| c.frames).sum::<i64>();
    let units = |c: &Chunk| f.tally.chunks.get(&c.index);
    let done = frames_of(&|c| units(c).is_some_and(|u| u.accepted.is_some()));
    let running = frames_of(&|c| units(c).is_some_and(|u| u.accepted.is_none() && !u.active.is_empty()))
        + frames_of(&|c| f.placed.chunks.contains(&c.index));
    let failed = f.failed_for_good.iter().map(|c| c.frames).sum::<i64>();
    FrameCounts { total, done, running, failed, done_of_total: format!("{done}/{total}") }
}

/// The job's phase: suspension and failure first, then whether every frame is done (and
/// verified), then whether anything was ever placed.
pub(super) fn job_phase(
    suspended: bool,
    frames: &FrameCounts,
    any_units: bool,
    f: &Findings<'_>,
) -> RenderJobPhase {
    let verifying = f.awaiting_verification > 0 || f.open_disputes > 0;
    if suspended {
        RenderJobPhase::Cancelled
    } else if !f.failed_for_good.is_empty() {
        RenderJobPhase::Failed
    } else if frames.done == frames.total && verifying {
        RenderJobPhase::Verifying
    } else if frames.done == frames.total {
        RenderJobPhase::Succeeded
    } else if !any_units && f.creating == 0 {
        RenderJobPhase::Pending
    } else {
        RenderJobPhase::Rendering
    }
}

/// Chunks with no accepted output whose last attempt failed, with its member and reason.
pub(super) fn failed_chunks(chunks: &[Chunk], tally: &Tally<'_>) -> Vec<FailedChunk> {
    chunks
        .iter()
        .filter_map(|c| {
            let units = tally.chunks.get(&c.index)?;
            let last = units.failures.last()?;
            units.accepted.is_none().then(|| FailedChunk {
                first_frame: c.first,
                last_frame: c.last,
                member: Some(member_of(last)),
                attempts: units.attempts,
                reason: last
                    .status
                    .as_ref()
                    .and_then(|st| st.message.clone())
                    .unwrap_or_else(|| format!("{:?}", phase(last).unwrap_or(WorkUnitPhase::Pending))),
            })
        })
        .take(LISTED_FAILED_CHUNKS)
        .collect()
}

/// Chunks that need a member and got none this time; none while the job is cancelled or failed.
pub(super) fn awaiting_placement(cancelled: bool, f: &Findings<'_>) -> i64 {
    if cancelled {
        return 0;
    }
    f.chunks
        .iter()
        .filter(|c| {
            !f.placed.chunks.contains(&c.index) && f.tally.chunks.get(&c.index).is_none_or(|u| u.needs_unit())
        })
        .count() as i64
}

/// The Ready condition (status, reason, message) for `phase`.
pub(super) fn ready(
    job: &RenderJob,
    phase: RenderJobPhase,
    frames: &FrameCounts,
    failed: &[FailedChunk],
    f: &Findings<'_>,
) -> (bool, &'static str, String) {
    let spec = &job.spec;
    let (total, done) = (frames.total, frames.done);
    let idle = f.tally.active().is_empty();
    match phase {
        RenderJobPhase::Succeeded => match &f.unverifiable {
            None => (true, "Succeeded", format!("all {total} frames rendered")),
            Some(why) => (
                true,
                "SucceededUnverified",
                format!(
                    "all {total} frames rendered; sampled chunks could not be verified by a second provider: {why}"
                ),
            ),
        },
        RenderJobPhase::Verifying => (
            true,
            "Verifying",
            format!(
                "all {total} frames rendered; {} sampled and {} disputed chunks await verification",
                f.awaiting_verification, f.open_disputes
            ),
        ),
        RenderJobPhase::Cancelled => (false, "Cancelled", "spec.suspend is true: no chunk runs".into()),
        RenderJobPhase::Failed => (
            false,
            "ChunkFailed",
            format!(
                "frames {}-{} failed {} times, the last on {}",
                f.failed_for_good[0].first,
                f.failed_for_good[0].last,
                spec.retries_per_chunk + 1,
                failed.first().and_then(|c| c.member.clone()).unwrap_or_default()
            ),
        ),
        _ if f.placed.over_budget && idle => (
            false,
            "BudgetExhausted",
            format!(
                "the next chunk would take the job over budget.maxTotal ({})",
                format_apt(spec.budget.max_total.unwrap_or(0).max(0) as u64)
            ),
        ),
        _ => match &f.placed.no_fit {
            Some(e) if idle && f.creating == 0 => (false, "NoMemberFits", e.to_string()),
            _ => (true, "Rendering", format!("{done} of {total} frames done")),
        },
    }
}

/// The job's status and Ready condition from what the stages found; `cost` is what the job cost
/// so far. Conditions, settlements and the completion time are carried over from the job.
pub(super) fn summarise(job: &RenderJob, units: &[&WorkUnit], cost: i64, f: &Findings<'_>) -> Summary {
    let spec = &job.spec;
    let frames = frame_counts(spec.frames.len(), f);
    let phase = job_phase(spec.suspend, &frames, !units.is_empty(), f);
    let failed = failed_chunks(f.chunks, f.tally);
    let ready = ready(job, phase, &frames, &failed, f);
    let cancelled = spec.suspend || !f.failed_for_good.is_empty();
    let providers: BTreeSet<String> = f.tally.accepted().iter().map(|u| member_of(u)).collect();
    let (total, done) = (frames.total, frames.done);
    let status = RenderJobStatus {
        observed_generation: job.metadata.generation,
        phase: Some(phase),
        progress: Some(format!("{}%", if total == 0 { 100 } else { done * 100 / total })),
        frames: Some(frames),
        cost_octas: cost,
        cost: Some(format_apt(cost.max(0) as u64)),
        providers: providers.into_iter().collect(),
        failed_chunks: failed,
        settlements: job.status.as_ref().map(|s| s.settlements.clone()).unwrap_or_default(),
        start_time: units.iter().filter_map(|u| u.status.as_ref()?.start_time.clone()).min_by_key(|t| t.0),
        completion_time: job.status.as_ref().and_then(|s| s.completion_time.clone()),
        conditions: job.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default(),
    };
    Summary { status, ready, awaiting_placement: awaiting_placement(cancelled, f) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render_job::plan::fixtures::{job, unit};
    use crate::render_job::plan::{chunks, tally::tally};
    use serde_json::json;

    fn findings<'a>(chunks: &'a [Chunk], tally: &'a Tally<'a>, placed: &'a Placed) -> Findings<'a> {
        Findings {
            chunks,
            tally,
            placed,
            creating: placed.create.len(),
            failed_for_good: &[],
            awaiting_verification: 0,
            open_disputes: 0,
            unverifiable: None,
        }
    }

    #[test]
    fn frames_count_done_running_and_placed_now() {
        let j = job(40, json!({}));
        let all = chunks(&j.spec.frames, 10);
        let (done, running) = (unit(0, 1, "a", Some("Succeeded"), 10), unit(1, 1, "a", Some("Running"), 0));
        let t = tally(&[&done, &running]);
        let placed = Placed { chunks: BTreeSet::from([2]), ..Default::default() };
        let f = findings(&all, &t, &placed);
        let frames = frame_counts(40, &f);
        assert_eq!(
            (frames.done, frames.running, frames.failed, frames.done_of_total.as_str()),
            (10, 20, 0, "10/40")
        );
        assert_eq!(awaiting_placement(false, &f), 1, "chunk 3 waits");
        assert_eq!(awaiting_placement(true, &f), 0);
        assert_eq!(job_phase(false, &frames, true, &f), RenderJobPhase::Rendering);
    }

    #[test]
    fn every_frame_done_succeeds_unless_verification_or_a_dispute_is_open() {
        let j = job(10, json!({}));
        let all = chunks(&j.spec.frames, 10);
        let done = unit(0, 1, "a", Some("Succeeded"), 10);
        let t = tally(&[&done]);
        let placed = Placed::default();
        let mut f = findings(&all, &t, &placed);
        let frames = frame_counts(10, &f);
        assert_eq!(job_phase(false, &frames, true, &f), RenderJobPhase::Succeeded);
        assert_eq!(job_phase(true, &frames, true, &f), RenderJobPhase::Cancelled, "suspension wins");
        f.open_disputes = 1;
        assert_eq!(job_phase(false, &frames, true, &f), RenderJobPhase::Verifying);
        let (ready_, reason, message) = ready(&j, RenderJobPhase::Verifying, &frames, &[], &f);
        assert!(ready_ && reason == "Verifying" && message.contains("0 sampled and 1 disputed"), "{message}");
    }

    #[test]
    fn a_failed_chunk_is_listed_with_its_last_member_and_reason() {
        let mut failed = unit(0, 2, "b", Some("Failed"), 0);
        failed.status.as_mut().unwrap().message = Some("pod render failed: OOMKilled".into());
        let first = unit(0, 1, "a", Some("Lost"), 0);
        let t = tally(&[&first, &failed]);
        let all = chunks(&job(10, json!({})).spec.frames, 10);
        let listed = failed_chunks(&all, &t);
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].member.as_deref(), listed[0].attempts), (Some("b"), 2));
        assert_eq!(listed[0].reason, "pod render failed: OOMKilled");
    }

    #[test]
    fn cost_counts_accepted_outputs_and_verifications() {
        let (done, check) = (unit(0, 1, "a", Some("Succeeded"), 10), unit(1, 1, "b", Some("Succeeded"), 2));
        assert_eq!(
            cost(&[&done], &[&check], super::super::fixtures::now()),
            12,
            "GPU-seconds × 3600 octas/GPU-hour"
        );
    }
}
