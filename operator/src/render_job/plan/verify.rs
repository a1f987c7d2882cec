//! Stage 3, verify: a sampled chunk's output is accepted once another member reproduced it.
//! Which chunks are sampled, and which frame of each is rendered again, is drawn after they
//! report success from the hub's secret; a verification unit is an ordinary render of that one
//! frame into its own folder; the hub compares the two frames itself (the `judge` of the render
//! controller) and this stage reads only its judgement. When the renderer and a verifier
//! disagree, a tie-break on a third member (another payout address) settles it, and the side it
//! disagrees with is penalised.

use super::{Chunk, UnitPlacer, member_of, phase, pods};
use crate::accrual::{self, UnitMark};
use crate::placement::{Claims, NoMemberFits};
use crate::unit_drafts::{self, UnitDraft};
use crate::verification_key::VerificationKey;
use k8s_openapi::jiff::Timestamp;
use pictor_crds::contract::annotations::JUDGEMENT;
use pictor_crds::contract::labels::{BILLING, DISPUTE_CHECK, TIE_BREAK, VERDICT, VERIFIES};
use pictor_crds::contract::render_output::frame_file_name;
use pictor_crds::contract::{BillingState, Finding, Judgement, MISMATCH, billing_marks};
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
#[derive(Debug)]
pub(super) enum Verification<'a> {
    /// A second render reproduced it (after a tie-break, if another disagreed: those verifiers
    /// are `outvoted`).
    Passed { outvoted: Vec<&'a WorkUnit> },
    /// It was not reproduced (by the tie-break, if one was needed): the output is rejected.
    Mismatch,
    /// A verification unit is running, or finished and waits for the hub's judgement.
    Running,
    /// The renderer and a verifier disagree: a third member settles it.
    NeedsTieBreak,
    /// No verification unit runs and the output is not judged yet.
    Needed,
    /// Verification renders kept failing: the chunk is accepted unverified.
    GaveUp,
}

/// The hub's judgement of a verification unit, once it compared the frames itself.
pub(super) fn judgement(unit: &WorkUnit) -> Option<Judgement> {
    if phase(unit) != Some(WorkUnitPhase::Succeeded) {
        return None;
    }
    Judgement::from_annotation(unit.metadata.annotations.as_ref()?.get(JUDGEMENT)?)
}

fn finding(unit: &WorkUnit) -> Option<Finding> {
    judgement(unit).map(|j| j.finding)
}

fn is_tie_break(unit: &WorkUnit) -> bool {
    unit.metadata.labels.as_ref().is_some_and(|l| l.contains_key(TIE_BREAK))
}

/// Whether a check may still give a verdict: not started, running, or finished and not judged.
fn undecided(unit: &WorkUnit) -> bool {
    match phase(unit) {
        None | Some(WorkUnitPhase::Pending | WorkUnitPhase::Running) => true,
        Some(WorkUnitPhase::Succeeded) => judgement(unit).is_none(),
        Some(WorkUnitPhase::Failed | WorkUnitPhase::Lost) => false,
    }
}

/// What the verification units of one output add up to, by the hub's judgements (a verifier's
/// own word is never read). A verifier that reproduces it and one that does not are settled by
/// a tie-break on a third member: the side it agrees with wins, the other is outvoted.
pub(super) fn outcome<'a>(checks: &[&'a WorkUnit]) -> Verification<'a> {
    let (ties, first): (Vec<&WorkUnit>, Vec<&WorkUnit>) =
        checks.iter().copied().partition(|u| is_tie_break(u));
    let differs: Vec<&WorkUnit> =
        first.iter().copied().filter(|u| finding(u) == Some(Finding::Differs)).collect();
    let reproduced = first.iter().any(|u| finding(u) == Some(Finding::Reproduced));
    if !differs.is_empty() {
        let settled = ties.iter().find_map(|u| finding(u).filter(|f| *f != Finding::CheckInvalid));
        return match settled {
            Some(Finding::Reproduced) => Verification::Passed { outvoted: differs },
            Some(_) => Verification::Mismatch,
            None if ties.iter().any(|u| undecided(u)) => Verification::Running,
            // No third render could be had: the disagreement stands against the output.
            None if ties.len() >= VERIFY_ATTEMPTS => Verification::Mismatch,
            None => Verification::NeedsTieBreak,
        };
    }
    if reproduced {
        return Verification::Passed { outvoted: vec![] };
    }
    if first.iter().any(|u| undecided(u)) {
        return Verification::Running;
    }
    // Every check failed, was lost or its output was invalid.
    if first.len() >= VERIFY_ATTEMPTS { Verification::GaveUp } else { Verification::Needed }
}

/// The checks of a decided verification that are paid: those whose render the hub found valid
/// and on the winning side. An outvoted or invalid check is not paid.
pub(super) fn paid_checks<'a>(checks: &[&'a WorkUnit], verification: &Verification<'_>) -> Vec<&'a WorkUnit> {
    let winning = match verification {
        Verification::Passed { .. } => Finding::Reproduced,
        Verification::Mismatch => Finding::Differs,
        _ => return vec![],
    };
    checks.iter().copied().filter(|u| finding(u) == Some(winning)).collect()
}

/// Marks on verifiers whose render the hub found invalid or that were outvoted: a verdict
/// against their member and no pay.
pub(super) fn penalties(checks: &[&WorkUnit], verification: &Verification<'_>) -> Vec<UnitMark> {
    let outvoted: &[&WorkUnit] = match verification {
        Verification::Passed { outvoted } => outvoted,
        _ => &[],
    };
    let invalid = checks.iter().copied().filter(|u| finding(u) == Some(Finding::CheckInvalid));
    outvoted
        .iter()
        .copied()
        .chain(invalid)
        .filter(|u| billing_marks::billing_state(u) != Some(BillingState::Forfeited))
        .map(|u| UnitMark::of(u).label(VERDICT, MISMATCH).label(BILLING, BillingState::Forfeited.as_str()))
        .collect()
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
pub(super) struct SampleReview<'a> {
    pub verdict: SampleVerdict,
    /// Marks on the accepted unit (accrual, or the mismatch verdict) and on verifiers penalised.
    pub marks: Vec<UnitMark>,
    /// A verification unit to create.
    pub check: Option<WorkUnit>,
    /// The checks that are paid work.
    pub paid_checks: Vec<&'a WorkUnit>,
}

/// Reviews an accepted output: accrues it when it is outside the sample or verified, rejects it
/// on a mismatch, and otherwise asks `place_check` for a verification unit (`tie_break`: one
/// that settles a disagreement).
pub(super) fn review_sample<'a>(
    accepted: &WorkUnit,
    in_sample: bool,
    checks: &[&'a WorkUnit],
    place_check: impl FnOnce(bool) -> Result<WorkUnit, NoMemberFits>,
    now: Timestamp,
    dispute_window: Duration,
) -> SampleReview<'a> {
    let accrue = || accrual::accrue(accepted, now, dispute_window).into_iter().collect::<Vec<_>>();
    let review = |verdict, marks, check| SampleReview { verdict, marks, check, paid_checks: vec![] };
    if !in_sample {
        return review(SampleVerdict::Accepted, accrue(), None);
    }
    let verification = outcome(checks);
    let paid = paid_checks(checks, &verification);
    let mut penalties = penalties(checks, &verification);
    let mut decided = match verification {
        Verification::Passed { .. } | Verification::GaveUp => review(SampleVerdict::Accepted, accrue(), None),
        Verification::Mismatch => review(SampleVerdict::Rejected, vec![reject(accepted)], None),
        Verification::Running => review(SampleVerdict::Awaiting, vec![], None),
        Verification::NeedsTieBreak => match place_check(true) {
            Ok(unit) => review(SampleVerdict::Awaiting, vec![], Some(unit)),
            Err(e) if e.busy => review(SampleVerdict::Awaiting, vec![], None),
            // No third member: the disagreement stands against the output, as one mismatch,
            // and the verifier that found it is paid.
            Err(_) => SampleReview {
                paid_checks: paid_checks(checks, &Verification::Mismatch),
                ..review(SampleVerdict::Rejected, vec![reject(accepted)], None)
            },
        },
        Verification::Needed => match place_check(false) {
            Ok(unit) => review(SampleVerdict::Awaiting, vec![], Some(unit)),
            // Busy members free up; a network with no second provider of these GPUs never
            // will, and the job must not wait for it forever.
            Err(e) if e.busy => review(SampleVerdict::Awaiting, vec![], None),
            // Accepted unverified, as the job's status says: its provider is paid.
            Err(e) => review(SampleVerdict::AcceptedUnverified(e.message), accrue(), None),
        },
    };
    decided.marks.append(&mut penalties);
    if decided.paid_checks.is_empty() {
        decided.paid_checks = paid;
    }
    decided
}

/// The mark that rejects an accepted output: a mismatch verdict, and no pay if it was accrued
/// already (its member was caught on another chunk and every chunk of it is checked).
fn reject(accepted: &WorkUnit) -> UnitMark {
    let mark = UnitMark::of(accepted).label(VERDICT, MISMATCH);
    if billing_marks::billing_state(accepted).is_some() {
        mark.label(BILLING, BillingState::Forfeited.as_str())
    } else {
        mark
    }
}

/// Where a worker the hub told to write into `location` stored `frame`, with the SHA-256 `unit`
/// reported for it (empty when its report lists only its manifest, or does not list the frame
/// there). The URL is always the hub's own: a member's report never sends the hub to read
/// anything else (another bucket, a local file, an internal service).
pub fn reported_frame(spec: &RenderJobSpec, frame: i64, unit: &WorkUnit, location: &str) -> OutputObject {
    let url = format!("{}/{}", location.trim_end_matches('/'), frame_file_name(frame, spec.output.format));
    let sha256 = unit
        .status
        .as_ref()
        .and_then(|s| s.outputs.iter().find(|o| o.url == url))
        .map(|o| o.sha256.clone())
        .unwrap_or_default();
    OutputObject { url, sha256 }
}

/// The folder a verification unit renders into: its own, under the job's output.
pub fn check_location(spec: &RenderJobSpec, unit_name: &str) -> String {
    format!("{}/checks/{unit_name}/", spec.output.location.trim_end_matches('/'))
}

/// Why a verification unit is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CheckKind {
    /// The chunk is in the job's sample.
    Sample,
    /// The submitter disputes the chunk.
    Dispute,
}

/// A unit that renders a frame of the chunk ([`checked_frame`]) again on a member that has not
/// judged this output yet (neither its renderer nor an `earlier` check's). A `tie_break`, which
/// settles a disagreement between them, also avoids every member paid to the same address.
pub(super) fn check_unit(
    placer: &UnitPlacer<'_>,
    chunk: &Chunk,
    accepted: &WorkUnit,
    earlier: &[&WorkUnit],
    (kind, tie_break): (CheckKind, bool),
    claims: &mut Claims,
) -> Result<WorkUnit, NoMemberFits> {
    let job = placer.job;
    let renderer = member_of(accepted);
    let mut excluded: Vec<String> = earlier.iter().map(|u| member_of(u)).collect();
    excluded.push(renderer.clone());
    if tie_break {
        let payouts: Vec<&str> = placer
            .members
            .iter()
            .filter(|m| m.metadata.name.as_ref().is_some_and(|n| excluded.contains(n)))
            .map(|m| m.spec.payout_address.as_str())
            .collect();
        excluded.extend(
            placer
                .members
                .iter()
                .filter(|m| payouts.contains(&m.spec.payout_address.as_str()))
                .filter_map(|m| m.metadata.name.clone()),
        );
    }
    let placement = placer.place(&excluded, claims)?;
    placer.claim(&placement, claims);
    let frame = checked_frame(&placer.settings.verification_key, chunk, accepted);
    let accepted_name = accepted.metadata.name.clone().unwrap_or_default();
    let attempt = earlier.len() as i64 + 1;
    let mut labels = BTreeMap::from([(VERIFIES.to_string(), accepted_name.clone())]);
    if kind == CheckKind::Dispute {
        labels.insert(DISPUTE_CHECK.into(), "true".into());
    }
    if tie_break {
        labels.insert(TIE_BREAK.into(), "true".into());
    }
    let prefix = match (kind, tie_break) {
        (CheckKind::Sample, false) => "v",
        (CheckKind::Sample, true) => "t",
        (CheckKind::Dispute, false) => "d",
        (CheckKind::Dispute, true) => "dt",
    };
    let name = unit_drafts::unit_name(&accepted_name, &format!("{prefix}{attempt}"));
    let pod =
        pods::verify_pod(job, frame, &check_location(&job.spec, &name), placement.vendor, placer.settings);
    Ok(unit_drafts::work_unit(UnitDraft {
        name,
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
    use crate::render_job::plan::fixtures::{job, judgement, now, unit, verify_unit};
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

    fn tie_break(checked: &str, member: &str, phase: &str, passed: Option<bool>) -> WorkUnit {
        let mut u = verify_unit(checked, member, 9, phase, passed);
        u.metadata.name = Some(format!("{checked}-t1"));
        u.metadata.labels.as_mut().unwrap().insert(TIE_BREAK.into(), "true".into());
        u
    }

    fn judged(mut u: WorkUnit, finding: Finding) -> WorkUnit {
        u.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(JUDGEMENT.into(), judgement(finding));
        u
    }

    #[test]
    fn only_the_hubs_judgement_counts_and_a_disagreement_needs_a_tie_break() {
        let pass = verify_unit("u", "b", 1, "Succeeded", Some(true));
        let fail = verify_unit("u", "c", 2, "Succeeded", Some(false));
        assert!(matches!(outcome(&[&pass]), Verification::Passed { ref outvoted } if outvoted.is_empty()));
        assert!(matches!(outcome(&[&pass, &fail]), Verification::NeedsTieBreak));
        assert!(matches!(outcome(&[&fail]), Verification::NeedsTieBreak));
        assert!(matches!(outcome(&[&verify_unit("u", "b", 1, "Running", None)]), Verification::Running));
        // A verifier's own message is never read: finished and not judged, it waits for the hub.
        let mut claims_passed = verify_unit("u", "b", 1, "Succeeded", None);
        claims_passed.status.as_mut().unwrap().message = Some(r#"{"passed": true}"#.into());
        assert!(matches!(outcome(&[&claims_passed]), Verification::Running));
        let invalid = judged(verify_unit("u", "b", 1, "Succeeded", None), Finding::CheckInvalid);
        assert!(matches!(outcome(&[&invalid]), Verification::Needed), "no verdict: checked again");
        let failed: Vec<WorkUnit> = (1..=3).map(|a| verify_unit("u", "b", a, "Failed", None)).collect();
        assert!(matches!(outcome(&failed.iter().collect::<Vec<_>>()), Verification::GaveUp));
    }

    #[test]
    fn the_tie_break_decides_and_the_outvoted_side_is_penalised() {
        let fail = verify_unit("u", "c", 1, "Succeeded", Some(false));
        let running = tie_break("u", "d", "Running", None);
        assert!(matches!(outcome(&[&fail, &running]), Verification::Running));
        // The third member reproduces the original: the verifier that said otherwise lied.
        let agrees = tie_break("u", "d", "Succeeded", Some(true));
        let verification = outcome(&[&fail, &agrees]);
        assert!(matches!(verification, Verification::Passed { ref outvoted } if outvoted.len() == 1));
        let penalised = penalties(&[&fail, &agrees], &verification);
        assert_eq!((penalised.len(), penalised[0].name.as_str()), (1, "u-v1"));
        assert_eq!(
            (penalised[0].labels[VERDICT].as_str(), penalised[0].labels[BILLING].as_str()),
            (MISMATCH, "forfeited")
        );
        let paid = paid_checks(&[&fail, &agrees], &verification);
        assert_eq!(paid.iter().map(|u| u.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["u-t1"]);
        // It does not: the renderer's output is rejected, and the first verifier was right.
        let disagrees = tie_break("u", "d", "Succeeded", Some(false));
        let verification = outcome(&[&fail, &disagrees]);
        assert!(matches!(verification, Verification::Mismatch));
        assert!(penalties(&[&fail, &disagrees], &verification).is_empty());
        assert_eq!(paid_checks(&[&fail, &disagrees], &verification).len(), 2);
    }

    #[test]
    fn an_output_outside_the_sample_or_verified_accrues_and_a_settled_mismatch_is_rejected() {
        let accepted = unit(0, 1, "a", Some("Succeeded"), 10);
        let unplaced = |_| -> Result<WorkUnit, NoMemberFits> { unreachable!("no check needed") };
        let outside = review_sample(&accepted, false, &[], unplaced, now(), WINDOW);
        assert_eq!((outside.verdict, outside.marks.len()), (SampleVerdict::Accepted, 1));

        let fail = verify_unit("shot-00000-1", "b", 1, "Succeeded", Some(false));
        let tie = tie_break("shot-00000-1", "c", "Succeeded", Some(false));
        let rejected = review_sample(&accepted, true, &[&fail, &tie], unplaced, now(), WINDOW);
        assert_eq!(rejected.verdict, SampleVerdict::Rejected);
        assert_eq!(rejected.marks[0].labels[VERDICT], MISMATCH);
        assert_eq!(rejected.paid_checks.len(), 2);
    }

    #[test]
    fn a_disagreement_places_a_tie_break_or_stands_when_no_third_member_can_judge() {
        let accepted = unit(0, 1, "a", Some("Succeeded"), 10);
        let fail = verify_unit("shot-00000-1", "b", 1, "Succeeded", Some(false));
        let tie = tie_break("shot-00000-1", "c", "Pending", None);
        let placed = review_sample(
            &accepted,
            true,
            &[&fail],
            |tie_break| {
                assert!(tie_break);
                Ok(tie.clone())
            },
            now(),
            WINDOW,
        );
        assert_eq!((placed.verdict, placed.check.is_some()), (SampleVerdict::Awaiting, true));
        let nobody = review_sample(&accepted, true, &[&fail], |_| Err(no_fit(false)), now(), WINDOW);
        assert_eq!(nobody.verdict, SampleVerdict::Rejected, "the disagreement stands against the output");
    }

    #[test]
    fn a_needed_check_is_placed_waited_for_when_busy_and_skipped_when_no_member_can_judge() {
        let accepted = unit(0, 1, "a", Some("Succeeded"), 10);
        let check = verify_unit("shot-00000-1", "b", 1, "Pending", None);
        let placed = review_sample(
            &accepted,
            true,
            &[],
            |tie_break| {
                assert!(!tie_break);
                Ok(check.clone())
            },
            now(),
            WINDOW,
        );
        assert_eq!((placed.verdict, placed.check.is_some()), (SampleVerdict::Awaiting, true));
        let busy = review_sample(&accepted, true, &[], |_| Err(no_fit(true)), now(), WINDOW);
        assert_eq!((busy.verdict, busy.marks.len()), (SampleVerdict::Awaiting, 0));
        let never = review_sample(&accepted, true, &[], |_| Err(no_fit(false)), now(), WINDOW);
        assert!(matches!(never.verdict, SampleVerdict::AcceptedUnverified(ref why) if why.contains("amd")));
        assert_eq!(never.marks.len(), 1, "paid as accepted");
    }

    #[test]
    fn the_original_is_read_where_the_hub_told_the_renderer_to_write_it() {
        let spec = job(10, json!({"output": {"location": "s3://out/a/", "format": "OPEN_EXR"}})).spec;
        let chunk = Chunk { index: 0, first: 1, last: 10, frames: 10 };
        let mut accepted = unit(0, 1, "a", Some("Succeeded"), 10);
        let frame = |place: &str, n: i64, digest: &str| OutputObject {
            url: format!("{place}/frame_{n:06}.exr"),
            sha256: digest.into(),
        };
        accepted.status.as_mut().unwrap().outputs =
            vec![frame("s3://out/a", 2, "bb"), frame("s3://out/a", 1, "aa")];
        assert_eq!(reported_frame(&spec, 1, &accepted, &spec.output.location), frame("s3://out/a", 1, "aa"));

        // A report naming another place is not followed: the hub reads its own location,
        // without a digest to hold it to.
        accepted.status.as_mut().unwrap().outputs = vec![frame("file:///etc", 1, "aa")];
        assert_eq!(reported_frame(&spec, 1, &accepted, &spec.output.location), frame("s3://out/a", 1, ""));

        let manifest_only = unit(0, 1, "a", Some("Succeeded"), 10);
        let stored = reported_frame(&spec, chunk.first, &manifest_only, &spec.output.location);
        assert_eq!(stored.url, "s3://out/a/frame_000001.exr", "where the worker stores it");
    }
}
