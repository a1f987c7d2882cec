//! What a RenderJob needs next, as a pure function of the job, its units and the members:
//! chunks to place, units to cancel, and the status that sums it all up.
//!
//! [`plan`] runs five stages, each a function over plain data with its own tests:
//!
//! 1. [`tally`]: what each chunk's units say — accepted, running, failed, lost;
//! 2. [`dispute`]: chunks the submitter disputes are held, verified again, then paid or
//!    forfeited;
//! 3. [`verify`]: sampled chunks get a verification unit on another member, and its verdict;
//! 4. [`place`]: new chunks and retries, within the in-flight bound and the budget;
//! 5. [`status`]: frame counts, cost, phase and Ready.
//!
//! Every frame is accounted for exactly once: a chunk counts as done by its first Succeeded
//! unit, and a Lost unit never counts, whatever it reports later.

mod dispute;
#[cfg(test)]
mod fixtures;
mod place;
mod pods;
mod status;
mod tally;
mod verify;

pub use verify::{VERIFY_ATTEMPTS, check_location, reported_frame, sampled};

use crate::accrual::{self, UnitMark};
use crate::placement::{self, Claims, Need, NoMemberFits, Placement};
use crate::verification_key::VerificationKey;
use dispute::{DisputeTally, Standing};
use k8s_openapi::jiff::Timestamp;
use pictor_crds::contract::labels::{BILLING, VERDICT};
use pictor_crds::contract::{BillingState, MISMATCH, billing_marks};
use pictor_crds::v1alpha1::{FrameRange, GpuCluster, RenderJob, RenderJobStatus, WorkUnit, WorkUnitPhase};
use place::Spend;
use std::time::Duration;
use verify::{CheckKind, SampleVerdict};

/// A member that failed this many units of one job takes no more of it (as Flamenco does).
pub const JOB_BLOCKLIST_FAILURES: usize = 3;

/// GPU-seconds assumed for a chunk before any has finished, to keep a job inside its budget.
pub const FIRST_CHUNK_ESTIMATE_SECONDS: i64 = 600;

/// A run of frames rendered by one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Position in the job.
    pub index: i64,
    /// First frame.
    pub first: i64,
    /// Last frame (included; frames between step by the job's step).
    pub last: i64,
    /// Frames in the chunk.
    pub frames: i64,
}

impl Chunk {
    /// The chunk's frames as its unit's `spec.frames` shows them and a dispute names them.
    pub fn frames_label(&self) -> String {
        format!("{}-{}", self.first, self.last)
    }
}

/// Splits a frame range into chunks of `chunk_size` selected frames.
pub fn chunks(range: &FrameRange, chunk_size: i64) -> Vec<Chunk> {
    let step = range.step.max(1);
    let size = chunk_size.max(1);
    let total = range.len();
    (0..(total + size - 1) / size)
        .map(|index| {
            let first_pos = index * size;
            let frames = size.min(total - first_pos);
            let first = range.start + first_pos * step;
            Chunk { index, first, last: first + (frames - 1) * step, frames }
        })
        .collect()
}

/// Settings of the render controller.
#[derive(Clone, Debug)]
pub struct RenderSettings {
    /// Image when the job names none.
    pub default_image: String,
    /// Units of one job Pending or Running at once.
    pub max_in_flight: usize,
    /// For local networks on kwok: pods "run" this long (annotation kwok acts on).
    pub fake_run_seconds: Option<u32>,
    /// How long after a unit is accepted its submitter may still dispute it; billing pays it
    /// only afterwards.
    pub dispute_window: Duration,
    /// The hub's secret that draws the verification sample and the frame each check renders.
    pub verification_key: VerificationKey,
}

impl RenderSettings {
    /// The image a job's workers run: its own, or the network's default.
    pub fn image_of<'a>(&'a self, job: &'a RenderJob) -> &'a str {
        job.spec.renderer.image.as_deref().unwrap_or(&self.default_image)
    }
}

/// Whether the job runs for real on a local network that plays pods on kwok
/// ([`pictor_crds::contract::annotations::REAL_RUN`]).
pub fn runs_for_real(job: &RenderJob) -> bool {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(pictor_crds::contract::annotations::REAL_RUN))
        .is_some_and(|v| v == "true")
}

/// What the controller does for one job.
#[derive(Debug, Default)]
pub struct RenderPlan {
    /// Units to create.
    pub create: Vec<WorkUnit>,
    /// Units to delete (namespace, name).
    pub delete: Vec<(String, String)>,
    /// Labels, annotations and finalizers to set on units: verdicts ([`VERDICT`]) and billing
    /// ([`accrual`]).
    pub marks: Vec<UnitMark>,
    /// Dispute condition (status, reason, message), while the job's dispute annotation names
    /// chunks.
    pub dispute: Option<(bool, &'static str, String)>,
    /// The job's status (conditions are merged by the caller).
    pub status: RenderJobStatus,
    /// Ready condition: status, reason, message.
    pub ready: (bool, &'static str, String),
    /// Chunks that need a member and got none this time (no member fits, the budget, the
    /// in-flight limit).
    pub awaiting_placement: i64,
}

impl RenderPlan {
    /// The units this plan rejects as verification mismatches.
    pub fn mismatched(&self) -> impl Iterator<Item = &UnitMark> {
        self.marks.iter().filter(|m| m.labels.get(VERDICT).is_some_and(|v| v == MISMATCH))
    }
}

/// Places single units of one job on the members: what the verify and place stages share.
struct UnitPlacer<'a> {
    job: &'a RenderJob,
    members: &'a [&'a GpuCluster],
    settings: &'a RenderSettings,
}

impl UnitPlacer<'_> {
    /// The member for one unit of the job's GPUs, on none of the `excluded` members.
    fn place(&self, excluded: &[String], claims: &Claims) -> Result<Placement, NoMemberFits> {
        let spec = &self.job.spec;
        let image = self.settings.image_of(self.job);
        let need = Need {
            gpu: &spec.gpu,
            pods: 1,
            budget: &spec.budget,
            tier: spec.tier,
            excluded,
            image,
            resources: &spec.resources,
        };
        placement::place(&need, self.members, claims)
    }

    /// Promises the placed GPUs, so the next placement of this reconcile does not count them free.
    fn claim(&self, placement: &Placement, claims: &mut Claims) {
        *claims.entry((placement.member.clone(), placement.model.clone())).or_default() +=
            self.job.spec.gpu.count;
    }
}

fn phase(unit: &WorkUnit) -> Option<WorkUnitPhase> {
    unit.status.as_ref().and_then(|s| s.phase)
}

fn member_of(unit: &WorkUnit) -> String {
    unit.member().unwrap_or_default().to_string()
}

/// Plans the next step of a render job.
pub fn plan(
    job: &RenderJob,
    units: &[&WorkUnit],
    members: &[&GpuCluster],
    claims: &mut Claims,
    settings: &RenderSettings,
    now: Timestamp,
) -> RenderPlan {
    let spec = &job.spec;
    let all_chunks = chunks(&spec.frames, spec.chunk_size);
    let placer = UnitPlacer { job, members, settings };
    let mut tally = tally::tally(units);
    let mut out = RenderPlan::default();

    // Judge every accepted output, in chunk order: disputed ones again, sampled ones once.
    let job_uid = job.metadata.uid.as_deref().unwrap_or_default();
    let disputed = billing_marks::disputed_frames(job.metadata.annotations.as_ref());
    let caught = tally.caught();
    let mut disputes = DisputeTally::default();
    let mut rejected = Vec::new();
    let mut awaiting_verification = 0;
    let mut unverifiable = None;
    // Verifications on the winning side of a decided verification: paid work. Those decided in
    // earlier reconciles carry their billing mark already.
    let mut paid_checks: Vec<&WorkUnit> = tally
        .checks
        .iter()
        .copied()
        .filter(|u| billing_marks::billing_state(u).is_some_and(|s| s != BillingState::Forfeited))
        .collect();
    for chunk in &all_chunks {
        let Some(units) = tally.chunks.get(&chunk.index) else { continue };
        let Some(accepted) = units.accepted else { continue };
        let name = accepted.metadata.name.as_deref().unwrap_or_default();
        let frames = &accepted.spec.frames;
        match dispute::standing(accepted, disputed.contains(frames), &units.failures, now) {
            Standing::UnderReview { held } => {
                let checks = tally.checks_of(name, true);
                // A re-verification goes to a member that judged this output neither way before.
                let earlier = [checks.clone(), tally.checks_of(name, false)].concat();
                let place_check = |tie_break| {
                    verify::check_unit(
                        &placer,
                        chunk,
                        accepted,
                        &earlier,
                        (CheckKind::Dispute, tie_break),
                        claims,
                    )
                };
                let review = dispute::review_dispute(accepted, held, &checks, place_check, now);
                out.marks.extend(review.marks);
                paid_checks.extend(review.paid_checks);
                out.create.extend(review.check);
                if review.state == dispute::DisputeState::Upheld {
                    rejected.push(chunk.index);
                }
                disputes.record(review.state, frames);
                continue;
            }
            // A decided dispute leaves the output to the sample, like any other.
            Standing::Decided(state) => disputes.record(state, frames),
            Standing::Undisputed => {}
        }
        let checks = tally.checks_of(name, false);
        // A member caught once in this job has every other chunk of it checked.
        let in_sample = sampled(&settings.verification_key, job_uid, chunk.index, spec.verification_percent)
            || caught.contains(&member_of(accepted));
        let place_check = |tie_break| {
            verify::check_unit(&placer, chunk, accepted, &checks, (CheckKind::Sample, tie_break), claims)
        };
        let review =
            verify::review_sample(accepted, in_sample, &checks, place_check, now, settings.dispute_window);
        out.marks.extend(review.marks);
        paid_checks.extend(review.paid_checks);
        out.create.extend(review.check);
        match review.verdict {
            SampleVerdict::Accepted => {}
            SampleVerdict::AcceptedUnverified(why) => unverifiable = Some(why),
            SampleVerdict::Rejected => rejected.push(chunk.index),
            SampleVerdict::Awaiting => awaiting_verification += 1,
        }
    }
    for index in rejected {
        tally.reject(index);
    }

    paid_checks.sort_by_key(|u| u.metadata.name.as_deref());
    paid_checks.dedup_by_key(|u| u.metadata.name.as_deref());
    out.marks.extend(paid_checks.iter().filter_map(|u| accrual::accrue(u, now, settings.dispute_window)));
    // A member caught in this job is paid nothing for it: the penalty that makes skipping work
    // cost more than it saves. (What billing already paid stays paid.)
    out.marks.extend(forfeit_caught(&tally, &caught, now));
    let accepted = tally.accepted();
    let cost = status::cost(&accepted, &paid_checks, now);
    let failed_for_good = tally.failed_for_good(&all_chunks, spec.retries_per_chunk);
    let active = tally.active();

    let mut placed = if spec.suspend || !failed_for_good.is_empty() {
        out.delete.extend(active.iter().map(|u| {
            (u.metadata.namespace.clone().unwrap_or_default(), u.metadata.name.clone().unwrap_or_default())
        }));
        place::Placed::default()
    } else {
        let room = settings.max_in_flight.saturating_sub(active.len());
        let spend = Spend::new(cost, &accepted, &active, spec.gpu.count, spec.budget.max_total);
        place::place_chunks(&placer, &all_chunks, &tally, room, spend, claims)
    };
    out.create.append(&mut placed.create);

    let findings = status::Findings {
        chunks: &all_chunks,
        tally: &tally,
        placed: &placed,
        creating: out.create.len(),
        failed_for_good: &failed_for_good,
        awaiting_verification,
        open_disputes: disputes.open(),
        unverifiable,
    };
    let summary = status::summarise(job, units, cost, &findings);
    out.status = summary.status;
    out.ready = summary.ready;
    out.awaiting_placement = summary.awaiting_placement;
    out.dispute = disputes.condition(&disputed, &all_chunks);
    out
}

/// Forfeits every render unit of a `caught` member in this job that could still be paid: not
/// judged yet, held, or accrued and inside its dispute window.
fn forfeit_caught(
    tally: &tally::Tally<'_>,
    caught: &std::collections::BTreeSet<String>,
    now: Timestamp,
) -> Vec<UnitMark> {
    tally
        .chunks
        .values()
        .flat_map(|c| c.accepted.iter().chain(&c.failures))
        .filter(|u| caught.contains(&member_of(u)) && phase(u) == Some(WorkUnitPhase::Succeeded))
        .filter(|u| match billing_marks::billing_state(u) {
            None | Some(BillingState::Held) => true,
            Some(BillingState::Accrued) => accrual::disputable(u, now),
            Some(BillingState::Forfeited) => false,
        })
        .map(|u| UnitMark::of(u).label(BILLING, BillingState::Forfeited.as_str()))
        .collect()
}

#[cfg(test)]
mod tests;
