//! Stage 3, verify: a sampled chunk's output is accepted once another member reproduced it.
//! Which chunks are sampled is decided after they report success, from the job's UID; the
//! verifier's verdict is its typed [`VerificationReport`]; the frame it re-renders is the one
//! the accepted unit reported in `status.outputs`.

use super::{Chunk, UnitPlacer, member_of, phase, pods};
use crate::accrual::{self, UnitMark};
use crate::placement::{Claims, NoMemberFits};
use crate::unit_drafts::{self, UnitDraft};
use crate::verification_key::VerificationKey;
use k8s_openapi::jiff::Timestamp;
use pictor_crds::contract::labels::{BILLING, DISPUTE_CHECK, VERDICT, VERIFIES};
use pictor_crds::contract::render_output::frame_file_name;
use pictor_crds::contract::{BillingState, MISMATCH, VerificationReport, billing_marks};
use pictor_crds::v1alpha1::{JobKind, OutputObject, RenderJobSpec, WorkUnit, WorkUnitPhase};
use std::collections::BTreeMap;
use std::time::Duration;

/// Verification renders tried on other members before a chunk is accepted unverified.
pub const VERIFY_ATTEMPTS: usize = 3;

/// Whether a chunk is in the job's verification sample: drawn from the hub's secret key, the job
/// and the chunk, so it does not move between reconciles and no member can compute it.
pub fn sampled(key: &VerificationKey, job_uid: &str, index: i64, percent: i64) -> bool {
    let draw = key.draw(&[b"sample", job_uid.as_bytes(), &index.to_le_bytes()], 10_000);
    draw < percent.clamp(0, 100) as u64 * 100
}

/// The frame of a chunk a check renders again: drawn from the hub's key and the accepted unit,
/// so its renderer cannot know which of its frames will be compared.
pub(super) fn checked_frame(key: &VerificationKey, chunk: &Chunk, accepted: &WorkUnit) -> i64 {
    let step = if chunk.frames > 1 { (chunk.last - chunk.first) / (chunk.frames - 1) } else { 1 };
    let id = accepted.metadata.uid.as_deref().or(accepted.metadata.name.as_deref()).unwrap_or_default();
    let position = key.draw(&[b"frame", id.as_bytes()], chunk.frames.max(1) as u64) as i64;
    chunk.first + step * position
}

/// Where the verification of one chunk's output stands.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verification {
    /// A second render agreed.
    Passed,
    /// A second render disagreed: the output is rejected.
    Mismatch,
    /// A verification unit is running.
    Running,
    /// No verification unit runs and the output is not judged yet.
    Needed,
    /// Verification renders kept failing: the chunk is accepted unverified.
    GaveUp,
}

/// The report a verification unit left, if it succeeded with one.
fn report(unit: &WorkUnit) -> Option<VerificationReport> {
    VerificationReport::from_message(unit.status.as_ref()?.message.as_deref()?)
}

/// What the verification units of one output add up to. One mismatch rejects it, whatever
/// other checks said: a verifier that passes everything must not outvote one that looked.
pub(super) fn outcome(checks: &[&WorkUnit]) -> Verification {
    let verdicts: Vec<bool> = checks
        .iter()
        .filter(|u| phase(u) == Some(WorkUnitPhase::Succeeded))
        .filter_map(|u| report(u))
        .map(|r| r.passed)
        .collect();
    if verdicts.contains(&false) {
        return Verification::Mismatch;
    }
    if verdicts.contains(&true) {
        return Verification::Passed;
    }
    if checks.iter().any(|u| matches!(phase(u), None | Some(WorkUnitPhase::Pending | WorkUnitPhase::Running)))
    {
        return Verification::Running;
    }
    // Every check failed, was lost or gave no verdict.
    if checks.len() >= VERIFY_ATTEMPTS { Verification::GaveUp } else { Verification::Needed }
}

/// What became of a sampled (or unsampled) chunk's accepted output.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SampleVerdict {
    /// Accepted: paid once the dispute window has passed.
    Accepted,
    /// Accepted without a second opinion, because no other member can give one (why).
    AcceptedUnverified(String),
    /// A second render disagreed: the chunk is rendered again.
    Rejected,
    /// Waiting for a verification render.
    Awaiting,
}

/// One reconcile's review of an accepted, undisputed output.
#[derive(Debug)]
pub(super) struct SampleReview {
    pub verdict: SampleVerdict,
    /// Marks on the accepted unit: accrual, or the mismatch verdict.
    pub marks: Vec<UnitMark>,
    /// A verification unit to create.
    pub check: Option<WorkUnit>,
}

/// Reviews an accepted output: accrues it when it is outside the sample or verified, rejects it
/// on a mismatch, and otherwise asks `place_check` for a verification unit.
pub(super) fn review_sample(
    accepted: &WorkUnit,
    in_sample: bool,
    checks: &[&WorkUnit],
    place_check: impl FnOnce() -> Result<WorkUnit, NoMemberFits>,
    now: Timestamp,
    dispute_window: Duration,
) -> SampleReview {
    let accrue = || accrual::accrue(accepted, now, dispute_window).into_iter().collect();
    let review = |verdict, marks, check| SampleReview { verdict, marks, check };
    if !in_sample {
        return review(SampleVerdict::Accepted, accrue(), None);
    }
    match outcome(checks) {
        Verification::Passed | Verification::GaveUp => review(SampleVerdict::Accepted, accrue(), None),
        Verification::Mismatch => {
            let mut mark = UnitMark::of(accepted).label(VERDICT, MISMATCH);
            // Checked after it was accrued (its member was caught on another chunk): not paid.
            if billing_marks::billing_state(accepted).is_some() {
                mark = mark.label(BILLING, BillingState::Forfeited.as_str());
            }
            review(SampleVerdict::Rejected, vec![mark], None)
        }
        Verification::Running => review(SampleVerdict::Awaiting, vec![], None),
        Verification::Needed => match place_check() {
            Ok(unit) => review(SampleVerdict::Awaiting, vec![], Some(unit)),
            // Busy members free up; a network with no second provider of these GPUs never
            // will, and the job must not wait for it forever.
            Err(e) if e.busy => review(SampleVerdict::Awaiting, vec![], None),
            // Accepted unverified, as the job's status says: its provider is paid.
            Err(e) => review(SampleVerdict::AcceptedUnverified(e.message), accrue(), None),
        },
    }
}

/// The object a verification of `frame` is compared with, as the accepted unit reported it. A
/// chunk whose report was too long for a termination message lists only its manifest; its frame
/// is then where the worker stores every frame, by the contract's file name.
pub(super) fn original_frame(spec: &RenderJobSpec, frame: i64, accepted: &WorkUnit) -> OutputObject {
    let name = frame_file_name(frame, spec.output.format);
    let reported = accepted.status.as_ref().and_then(|s| {
        s.outputs.iter().find(|o| o.url.rsplit_once('/').is_some_and(|(_, file)| file == name))
    });
    reported.cloned().unwrap_or_else(|| OutputObject {
        url: format!("{}/{name}", spec.output.location.trim_end_matches('/')),
        sha256: String::new(),
    })
}

/// Why a verification unit is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CheckKind {
    /// The chunk is in the job's sample.
    Sample,
    /// The submitter disputes the chunk.
    Dispute,
}

/// A unit that renders a frame of the chunk ([`checked_frame`]) again on a member that has not judged this
/// output yet (neither its renderer nor an `earlier` check's) and compares it with the original.
pub(super) fn check_unit(
    placer: &UnitPlacer<'_>,
    chunk: &Chunk,
    accepted: &WorkUnit,
    earlier: &[&WorkUnit],
    kind: CheckKind,
    claims: &mut Claims,
) -> Result<WorkUnit, NoMemberFits> {
    let job = placer.job;
    let renderer = member_of(accepted);
    let mut excluded: Vec<String> = earlier.iter().map(|u| member_of(u)).collect();
    excluded.push(renderer.clone());
    let placement = placer.place(&excluded, claims)?;
    placer.claim(&placement, claims);
    let frame = checked_frame(&placer.settings.verification_key, chunk, accepted);
    let original = original_frame(&job.spec, frame, accepted);
    let settings = placer.settings;
    let fake_verdict = settings
        .fake_run_seconds
        .map(|_| settings.fake_mismatch_member.as_deref() != Some(renderer.as_str()));
    let pod = pods::verify_pod(job, frame, &original, placement.vendor, settings, fake_verdict);
    let accepted_name = accepted.metadata.name.clone().unwrap_or_default();
    let attempt = earlier.len() as i64 + 1;
    let mut labels = BTreeMap::from([(VERIFIES.to_string(), accepted_name.clone())]);
    if kind == CheckKind::Dispute {
        labels.insert(DISPUTE_CHECK.into(), "true".into());
    }
    let prefix = match kind {
        CheckKind::Sample => "v",
        CheckKind::Dispute => "d",
    };
    Ok(unit_drafts::work_unit(UnitDraft {
        name: unit_drafts::unit_name(&accepted_name, &format!("{prefix}{attempt}")),
        job: unit_drafts::job_reference(
            JobKind::RenderJob,
            job.metadata.namespace.as_deref().unwrap_or_default(),
            job.metadata.name.as_deref().unwrap_or_default(),
            job.metadata.uid.as_deref().unwrap_or_default(),
        ),
        placement,
        pods: vec![pod],
        frames: frame.to_string(),
        attempt,
        labels,
        rendezvous_port: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render_job::plan::fixtures::{job, now, unit, verify_unit};
    use serde_json::json;

    const WINDOW: Duration = Duration::from_secs(600);

    fn no_fit(busy: bool) -> NoMemberFits {
        NoMemberFits { message: "no Ready member offers amd GPUs".into(), busy }
    }

    #[test]
    fn the_sample_is_stable_near_its_share_and_secret() {
        let key = VerificationKey::new(b"a hub secret of some length");
        let picked = (0..1000).filter(|i| sampled(&key, "job-uid", *i, 10)).count();
        assert!((60..=140).contains(&picked), "{picked} of 1000 at 10%");
        assert_eq!(sampled(&key, "job-uid", 7, 10), sampled(&key, "job-uid", 7, 10));
        assert!((0..100).all(|i| sampled(&key, "x", i, 100)) && (0..100).all(|i| !sampled(&key, "x", i, 0)));
        let other = VerificationKey::new(b"another hub's secret");
        let differs =
            (0..1000).filter(|i| sampled(&key, "job-uid", *i, 10) != sampled(&other, "job-uid", *i, 10));
        assert!(differs.count() > 50, "without the key the sample cannot be computed");
    }

    #[test]
    fn the_checked_frame_is_any_frame_of_the_chunk_on_its_step() {
        let key = VerificationKey::new(b"a hub secret of some length");
        let chunk = Chunk { index: 0, first: 11, last: 29, frames: 10 };
        let frames: std::collections::BTreeSet<i64> = (0..200)
            .map(|i| {
                let mut u = unit(0, 1, "a", Some("Succeeded"), 10);
                u.metadata.uid = Some(format!("uid-{i}"));
                checked_frame(&key, &chunk, &u)
            })
            .collect();
        assert!(frames.iter().all(|f| (11..=29).contains(f) && (f - 11) % 2 == 0), "{frames:?}");
        assert!(frames.len() > 5, "not always the first frame: {frames:?}");
    }

    #[test]
    fn a_mismatch_outweighs_a_pass_and_an_untyped_message_is_no_verdict() {
        let pass = verify_unit("u", "b", 1, "Succeeded", Some(true));
        let fail = verify_unit("u", "c", 2, "Succeeded", Some(false));
        assert_eq!(outcome(&[&pass, &fail]), Verification::Mismatch);
        assert_eq!(outcome(&[&pass]), Verification::Passed);
        assert_eq!(outcome(&[&verify_unit("u", "b", 1, "Running", None)]), Verification::Running);
        let mut untyped = verify_unit("u", "b", 1, "Succeeded", None);
        untyped.status.as_mut().unwrap().message = Some(r#"{"passed": true}"#.into());
        assert_eq!(outcome(&[&untyped]), Verification::Needed, "not a report: judged again");
        let failed: Vec<WorkUnit> = (1..=3).map(|a| verify_unit("u", "b", a, "Failed", None)).collect();
        assert_eq!(outcome(&failed.iter().collect::<Vec<_>>()), Verification::GaveUp);
    }

    #[test]
    fn an_output_outside_the_sample_or_verified_accrues_and_a_mismatch_is_rejected() {
        let accepted = unit(0, 1, "a", Some("Succeeded"), 10);
        let unplaced = || -> Result<WorkUnit, NoMemberFits> { unreachable!("no check needed") };
        let outside = review_sample(&accepted, false, &[], unplaced, now(), WINDOW);
        assert_eq!((outside.verdict, outside.marks.len()), (SampleVerdict::Accepted, 1));

        let fail = verify_unit("shot-00000-1", "b", 1, "Succeeded", Some(false));
        let rejected = review_sample(&accepted, true, &[&fail], unplaced, now(), WINDOW);
        assert_eq!(rejected.verdict, SampleVerdict::Rejected);
        assert_eq!(rejected.marks[0].labels[VERDICT], MISMATCH);
    }

    #[test]
    fn a_needed_check_is_placed_waited_for_when_busy_and_skipped_when_no_member_can_judge() {
        let accepted = unit(0, 1, "a", Some("Succeeded"), 10);
        let check = verify_unit("shot-00000-1", "b", 1, "Pending", None);
        let placed = review_sample(&accepted, true, &[], || Ok(check.clone()), now(), WINDOW);
        assert_eq!((placed.verdict, placed.check.is_some()), (SampleVerdict::Awaiting, true));
        let busy = review_sample(&accepted, true, &[], || Err(no_fit(true)), now(), WINDOW);
        assert_eq!((busy.verdict, busy.marks.len()), (SampleVerdict::Awaiting, 0));
        let never = review_sample(&accepted, true, &[], || Err(no_fit(false)), now(), WINDOW);
        assert!(matches!(never.verdict, SampleVerdict::AcceptedUnverified(ref why) if why.contains("amd")));
        assert_eq!(never.marks.len(), 1, "paid as accepted");
    }

    #[test]
    fn the_original_is_the_frame_the_renderer_reported() {
        let spec = job(10, json!({"output": {"location": "s3://out/a/", "format": "OPEN_EXR"}})).spec;
        let chunk = Chunk { index: 0, first: 1, last: 10, frames: 10 };
        let mut accepted = unit(0, 1, "a", Some("Succeeded"), 10);
        let frame = |n: i64, digest: &str| OutputObject {
            url: format!("s3://elsewhere/frame_{n:06}.exr"),
            sha256: digest.into(),
        };
        accepted.status.as_mut().unwrap().outputs = vec![frame(2, "bb"), frame(1, "aa")];
        assert_eq!(original_frame(&spec, 1, &accepted), frame(1, "aa"));

        let manifest_only = unit(0, 1, "a", Some("Succeeded"), 10);
        let stored = original_frame(&spec, chunk.first, &manifest_only);
        assert_eq!(stored.url, "s3://out/a/frame_000001.exr", "where the worker stores it");
    }
}
