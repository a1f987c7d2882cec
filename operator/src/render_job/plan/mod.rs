//! What a RenderJob needs next, as a pure function of the job, its units and the members:
//! chunks to place, units to cancel, and the status that sums it all up.
//!
//! Every frame is accounted for exactly once: a chunk counts as done by its first Succeeded
//! unit, and a Lost unit never counts, whatever it reports later.

use crate::accrual::{self, UnitMark};
use crate::placement::{self, Claims, Need, NoMemberFits};
use crate::work_units::{self, UnitDraft};
use k8s_openapi::jiff::Timestamp;
use pictor_crds::contract::labels::{CHUNK, DISPUTE_CHECK, VERDICT, VERIFIES};
use pictor_crds::contract::{BillingState, MISMATCH, billing_marks, cost_octas, format_apt, labels};
use pictor_crds::v1alpha1::{
    FailedChunk, FrameCounts, FrameRange, GpuCluster, JobKind, PodTemplate, RenderJob, RenderJobPhase,
    RenderJobStatus, WorkUnit, WorkUnitPhase,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// A member that failed this many units of one job takes no more of it (as Flamenco does).
pub const JOB_BLOCKLIST_FAILURES: usize = 3;

/// Verification renders tried on other members before a chunk is accepted unverified.
pub const VERIFY_ATTEMPTS: usize = 3;

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
    /// For local networks on kwok: verification of this member's output reports a mismatch
    /// (every other verification passes), to exercise the mismatch path.
    pub fake_mismatch_member: Option<String>,
    /// How long after a unit is accepted its submitter may still dispute it; billing pays it
    /// only afterwards.
    pub dispute_window: Duration,
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

#[derive(Default)]
struct ChunkState<'a> {
    accepted: Option<&'a WorkUnit>,
    active: Vec<&'a WorkUnit>,
    failures: Vec<&'a WorkUnit>,
    attempts: i64,
}

fn phase(unit: &WorkUnit) -> Option<WorkUnitPhase> {
    unit.status.as_ref().and_then(|s| s.phase)
}

fn member_of(unit: &WorkUnit) -> String {
    unit.metadata
        .namespace
        .as_deref()
        .and_then(pictor_crds::contract::member_of_namespace)
        .unwrap_or_default()
        .to_string()
}

fn unit_cost(unit: &WorkUnit) -> i64 {
    billing_marks::amount_octas(unit)
}

fn mismatch(unit: &WorkUnit) -> UnitMark {
    UnitMark::of(unit).label(VERDICT, MISMATCH)
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
    let mut states: BTreeMap<i64, ChunkState<'_>> = BTreeMap::new();
    let mut sorted: Vec<&WorkUnit> = units.to_vec();
    sorted.sort_by_key(|u| {
        (u.status.as_ref().and_then(|s| s.completion_time.clone()).map(|t| t.0), u.metadata.name.clone())
    });
    let mut verifications: HashMap<&str, Vec<&WorkUnit>> = HashMap::new();
    let mut dispute_checks: HashMap<&str, Vec<&WorkUnit>> = HashMap::new();
    let mut check_units: Vec<&WorkUnit> = Vec::new();
    for unit in sorted {
        let labels = unit.metadata.labels.as_ref();
        if let Some(checked) = labels.and_then(|l| l.get(VERIFIES)) {
            let map = if labels.is_some_and(|l| l.contains_key(DISPUTE_CHECK)) {
                &mut dispute_checks
            } else {
                &mut verifications
            };
            map.entry(checked.as_str()).or_default().push(unit);
            check_units.push(unit);
            continue;
        }
        let Some(index) = labels.and_then(|l| l.get(CHUNK)).and_then(|c| c.parse().ok()) else { continue };
        let state = states.entry(index).or_default();
        state.attempts = state.attempts.max(unit.spec.attempt);
        let mismatched = labels.and_then(|l| l.get(VERDICT)).is_some_and(|v| v == MISMATCH);
        match phase(unit) {
            Some(WorkUnitPhase::Succeeded) if mismatched => state.failures.push(unit),
            Some(WorkUnitPhase::Succeeded) if state.accepted.is_none() => state.accepted = Some(unit),
            Some(WorkUnitPhase::Succeeded) => {}
            Some(WorkUnitPhase::Failed | WorkUnitPhase::Lost) => state.failures.push(unit),
            _ => state.active.push(unit),
        }
    }
    // Verification: a sampled chunk's output is accepted once another member reproduced it.
    let mut out = RenderPlan::default();
    let job_uid = job.metadata.uid.clone().unwrap_or_default();
    let mut unverified: Vec<(&Chunk, &WorkUnit)> = Vec::new();
    let mut unverifiable: Option<String> = None;
    let disputed = billing_marks::disputed_frames(job.metadata.annotations.as_ref());
    let mut dispute = DisputeTally::default();
    for chunk in &all_chunks {
        let Some(state) = states.get_mut(&chunk.index) else { continue };
        let Some(accepted) = state.accepted else { continue };
        let name = accepted.metadata.name.as_deref().unwrap_or_default();
        let held = billing_marks::billing_state(accepted) == Some(BillingState::Held);
        let named = disputed.contains(&accepted.spec.frames);
        // A dispute is decided once: a chunk whose disputed output was forfeited is rendered
        // again and not disputed anew; an output that passed its re-verification stays paid.
        let upheld_before =
            state.failures.iter().any(|u| billing_marks::billing_state(u) == Some(BillingState::Forfeited));
        if named && !held && upheld_before {
            dispute.upheld.push(accepted.spec.frames.clone());
        } else if named && !held && billing_marks::dispute_cleared(accepted) {
            dispute.cleared.push(accepted.spec.frames.clone());
        } else if named && !held && !accrual::disputable(accepted, now) {
            dispute.too_late.push(accepted.spec.frames.clone());
        } else if held || named {
            // A disputed chunk is verified again, on yet another member, whatever its sample said.
            if !held {
                out.marks.push(accrual::hold(accepted));
            }
            let checks = dispute_checks.get(name).cloned().unwrap_or_default();
            let mut earlier = checks.clone();
            earlier.extend(verifications.get(name).cloned().unwrap_or_default());
            match verification_outcome(&checks) {
                Verification::Passed | Verification::GaveUp => {
                    out.marks.push(accrual::release(accepted, now));
                    dispute.cleared.push(accepted.spec.frames.clone());
                }
                Verification::Mismatch => {
                    out.marks
                        .push(mismatch(accepted).label(labels::BILLING, BillingState::Forfeited.as_str()));
                    dispute.upheld.push(accepted.spec.frames.clone());
                    state.accepted = None;
                    state.failures.push(accepted);
                }
                Verification::Running => dispute.open.push(accepted.spec.frames.clone()),
                Verification::Needed => {
                    match verification_unit(job, chunk, accepted, &earlier, true, members, claims, settings) {
                        Ok(unit) => out.create.push(unit),
                        Err(e) if e.busy => {}
                        // No other member can judge it: the dispute cannot be decided, and the
                        // provider is paid as first accepted.
                        Err(_) => out.marks.push(accrual::release(accepted, now)),
                    }
                    dispute.open.push(accepted.spec.frames.clone());
                }
            }
            continue;
        }
        if !sampled(&job_uid, chunk.index, spec.verification_percent) {
            out.marks.extend(accrual::accrue(accepted, now, settings.dispute_window));
            continue;
        }
        let checks = verifications.get(name).cloned().unwrap_or_default();
        match verification_outcome(&checks) {
            Verification::Passed | Verification::GaveUp => {
                out.marks.extend(accrual::accrue(accepted, now, settings.dispute_window));
            }
            Verification::Mismatch => {
                out.marks.push(mismatch(accepted));
                state.accepted = None;
                state.failures.push(accepted);
            }
            Verification::Running => unverified.push((chunk, accepted)),
            Verification::Needed => {
                match verification_unit(job, chunk, accepted, &checks, false, members, claims, settings) {
                    Ok(unit) => {
                        unverified.push((chunk, accepted));
                        out.create.push(unit);
                    }
                    // Busy members free up; a network with no second provider of these GPUs never
                    // will, and the job must not wait for it forever.
                    Err(e) if e.busy => unverified.push((chunk, accepted)),
                    // Accepted unverified, as the job's status says: its provider is paid.
                    Err(e) => {
                        unverifiable = Some(e.message);
                        out.marks.extend(accrual::accrue(accepted, now, settings.dispute_window));
                    }
                }
            }
        }
    }

    let mut failures_by_member: HashMap<String, usize> = HashMap::new();
    for state in states.values() {
        for unit in &state.failures {
            *failures_by_member.entry(member_of(unit)).or_default() += 1;
        }
    }
    let blocklisted: Vec<String> = failures_by_member
        .iter()
        .filter(|(_, n)| **n >= JOB_BLOCKLIST_FAILURES)
        .map(|(m, _)| m.clone())
        .collect();

    // Every succeeded verification is paid work, whatever it found.
    let succeeded_checks: Vec<&WorkUnit> =
        check_units.iter().copied().filter(|u| phase(u) == Some(WorkUnitPhase::Succeeded)).collect();
    out.marks
        .extend(succeeded_checks.iter().filter_map(|u| accrual::accrue(u, now, settings.dispute_window)));
    let done_units: Vec<&WorkUnit> = states.values().filter_map(|s| s.accepted).collect();
    let cost: i64 = done_units.iter().chain(succeeded_checks.iter()).map(|u| unit_cost(u)).sum::<i64>();
    let failed_for_good: Vec<&Chunk> = all_chunks
        .iter()
        .filter(|c| {
            states.get(&c.index).is_some_and(|s| {
                s.accepted.is_none()
                    && s.active.is_empty()
                    && s.failures.len() as i64 > spec.retries_per_chunk
            })
        })
        .collect();

    // What is running now, and what the budget still allows.
    let active: Vec<&WorkUnit> = states.values().flat_map(|s| s.active.iter().copied()).collect();
    let mean_gpu_seconds = if done_units.is_empty() {
        FIRST_CHUNK_ESTIMATE_SECONDS * spec.gpu.count
    } else {
        done_units.iter().map(|u| u.status.as_ref().map_or(0, |s| s.gpu_seconds)).sum::<i64>()
            / done_units.len() as i64
    };
    let mut committed = cost
        + active.iter().map(|u| cost_octas(mean_gpu_seconds, u.spec.agreed_price_per_gpu_hour)).sum::<i64>();

    let cancel = spec.suspend || !failed_for_good.is_empty();
    if cancel {
        out.delete.extend(active.iter().map(|u| {
            (u.metadata.namespace.clone().unwrap_or_default(), u.metadata.name.clone().unwrap_or_default())
        }));
    }

    let mut no_fit: Option<NoMemberFits> = None;
    let mut over_budget = false;
    if !cancel {
        let mut room = settings.max_in_flight.saturating_sub(active.len());
        let job_name = job.metadata.name.clone().unwrap_or_default();
        let job_ref = work_units::job_reference(
            JobKind::RenderJob,
            job.metadata.namespace.as_deref().unwrap_or_default(),
            &job_name,
            job.metadata.uid.as_deref().unwrap_or_default(),
        );
        for chunk in &all_chunks {
            if room == 0 {
                break;
            }
            let state = states.get(&chunk.index);
            if state.is_some_and(|s| s.accepted.is_some() || !s.active.is_empty()) {
                continue;
            }
            let mut excluded = blocklisted.clone();
            if let Some(s) = state {
                excluded.extend(s.failures.iter().map(|u| member_of(u)));
            }
            let need =
                Need { gpu: &spec.gpu, pods: 1, budget: &spec.budget, tier: spec.tier, excluded: &excluded };
            let placement = match placement::place(&need, members, claims) {
                Ok(p) => p,
                Err(e) => {
                    no_fit = Some(e);
                    break;
                }
            };
            let estimate = cost_octas(mean_gpu_seconds, placement.price_per_gpu_hour);
            if spec.budget.max_total.is_some_and(|max| committed + estimate > max) {
                over_budget = true;
                break;
            }
            committed += estimate;
            *claims.entry((placement.member.clone(), placement.model.clone())).or_default() += spec.gpu.count;
            let attempt = state.map_or(0, |s| s.attempts) + 1;
            out.create.push(work_units::work_unit(UnitDraft {
                name: work_units::unit_name(&job_name, &format!("{:05}-{attempt}", chunk.index)),
                job: job_ref.clone(),
                pods: vec![render_pod(job, chunk, placement.vendor, settings)],
                frames: chunk.frames_label(),
                attempt,
                labels: BTreeMap::from([(CHUNK.to_string(), chunk.index.to_string())]),
                placement,
                rendezvous_port: None,
            }));
            room -= 1;
        }
    }

    // Status.
    let frames_of =
        |pred: &dyn Fn(&Chunk) -> bool| all_chunks.iter().filter(|c| pred(c)).map(|c| c.frames).sum::<i64>();
    let total = spec.frames.len();
    let done = frames_of(&|c| states.get(&c.index).is_some_and(|s| s.accepted.is_some()));
    let running =
        frames_of(&|c| states.get(&c.index).is_some_and(|s| s.accepted.is_none() && !s.active.is_empty()))
            + out
                .create
                .iter()
                .filter_map(|u| u.metadata.labels.as_ref()?.get(CHUNK)?.parse::<i64>().ok())
                .map(|i| all_chunks[i as usize].frames)
                .sum::<i64>();
    let failed = failed_for_good.iter().map(|c| c.frames).sum::<i64>();
    let phase = if spec.suspend {
        RenderJobPhase::Cancelled
    } else if !failed_for_good.is_empty() {
        RenderJobPhase::Failed
    } else if done == total && (!unverified.is_empty() || !dispute.open.is_empty()) {
        RenderJobPhase::Verifying
    } else if done == total {
        RenderJobPhase::Succeeded
    } else if units.is_empty() && out.create.is_empty() {
        RenderJobPhase::Pending
    } else {
        RenderJobPhase::Rendering
    };
    let placed_now: BTreeSet<i64> = out
        .create
        .iter()
        .filter(|u| u.metadata.labels.as_ref().is_none_or(|l| !l.contains_key(VERIFIES)))
        .filter_map(|u| u.metadata.labels.as_ref()?.get(CHUNK)?.parse().ok())
        .collect();
    out.awaiting_placement = if cancel {
        0
    } else {
        all_chunks
            .iter()
            .filter(|c| {
                !placed_now.contains(&c.index)
                    && states.get(&c.index).is_none_or(|s| s.accepted.is_none() && s.active.is_empty())
            })
            .count() as i64
    };
    let providers: BTreeSet<String> = done_units.iter().map(|u| member_of(u)).collect();
    let failed_chunks: Vec<FailedChunk> = all_chunks
        .iter()
        .filter_map(|c| {
            let s = states.get(&c.index)?;
            let last = s.failures.last()?;
            (s.accepted.is_none()).then(|| FailedChunk {
                first_frame: c.first,
                last_frame: c.last,
                member: Some(member_of(last)),
                attempts: s.attempts,
                reason: last
                    .status
                    .as_ref()
                    .and_then(|st| st.message.clone())
                    .unwrap_or_else(|| format!("{:?}", phase_or_pending(last))),
            })
        })
        .take(50)
        .collect();
    out.ready = match phase {
        RenderJobPhase::Succeeded => match &unverifiable {
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
                unverified.len(),
                dispute.open.len()
            ),
        ),
        RenderJobPhase::Cancelled => (false, "Cancelled", "spec.suspend is true: no chunk runs".into()),
        RenderJobPhase::Failed => (
            false,
            "ChunkFailed",
            format!(
                "frames {}-{} failed {} times, the last on {}",
                failed_for_good[0].first,
                failed_for_good[0].last,
                spec.retries_per_chunk + 1,
                failed_chunks.first().and_then(|f| f.member.clone()).unwrap_or_default()
            ),
        ),
        _ if over_budget && active.is_empty() => (
            false,
            "BudgetExhausted",
            format!(
                "the next chunk would take the job over budget.maxTotal ({})",
                format_apt(spec.budget.max_total.unwrap_or(0).max(0) as u64)
            ),
        ),
        _ => match &no_fit {
            Some(e) if active.is_empty() && out.create.is_empty() => (false, "NoMemberFits", e.to_string()),
            _ => (true, "Rendering", format!("{done} of {total} frames done")),
        },
    };
    out.dispute = dispute.condition(&disputed, &all_chunks);
    out.status = RenderJobStatus {
        observed_generation: job.metadata.generation,
        phase: Some(phase),
        frames: Some(FrameCounts { total, done, running, failed, done_of_total: format!("{done}/{total}") }),
        progress: Some(format!("{}%", if total == 0 { 100 } else { done * 100 / total })),
        cost_octas: cost,
        cost: Some(format_apt(cost.max(0) as u64)),
        providers: providers.into_iter().collect(),
        failed_chunks,
        settlements: job.status.as_ref().map(|s| s.settlements.clone()).unwrap_or_default(),
        start_time: units.iter().filter_map(|u| u.status.as_ref()?.start_time.clone()).min_by_key(|t| t.0),
        completion_time: job.status.as_ref().and_then(|s| s.completion_time.clone()),
        conditions: job.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default(),
    };
    out
}

/// Disputed chunks by where their re-verification stands, by frames.
#[derive(Default)]
struct DisputeTally {
    open: Vec<String>,
    cleared: Vec<String>,
    upheld: Vec<String>,
    too_late: Vec<String>,
}

impl DisputeTally {
    /// The job's `Dispute` condition, while its annotation names chunks.
    fn condition(&self, disputed: &[String], chunks: &[Chunk]) -> Option<(bool, &'static str, String)> {
        if disputed.is_empty() {
            return None;
        }
        let unknown: Vec<&String> =
            disputed.iter().filter(|f| !chunks.iter().any(|c| c.frames_label() == **f)).collect();
        let mut parts = Vec::new();
        let list = |v: &[String]| v.join(", ");
        if !self.open.is_empty() {
            parts.push(format!("verifying again: {}", list(&self.open)));
        }
        if !self.upheld.is_empty() {
            parts.push(format!("output rejected, not paid, rendered again: {}", list(&self.upheld)));
        }
        if !self.cleared.is_empty() {
            parts.push(format!("verified again, paid: {}", list(&self.cleared)));
        }
        if !self.too_late.is_empty() {
            parts.push(format!("dispute window closed, already payable: {}", list(&self.too_late)));
        }
        let unknown: Vec<String> = unknown.into_iter().cloned().collect();
        if !unknown.is_empty() {
            parts.push(format!(
                "no chunk has frames {} (name a chunk by its frames as `kubectl get workunits -o wide` shows them, e.g. 1-10)",
                list(&unknown)
            ));
        }
        let reason = if !self.open.is_empty() {
            "Reverifying"
        } else if !self.too_late.is_empty() || !unknown.is_empty() {
            "DisputeRefused"
        } else {
            "Decided"
        };
        Some((!self.open.is_empty(), reason, parts.join("; ")))
    }
}

impl RenderPlan {
    /// The units this plan rejects as verification mismatches.
    pub fn mismatched(&self) -> impl Iterator<Item = &UnitMark> {
        self.marks.iter().filter(|m| m.labels.get(VERDICT).is_some_and(|v| v == MISMATCH))
    }
}

/// Whether a chunk is in the job's verification sample: a stable hash of the job and the chunk,
/// so the sample does not move between reconciles.
pub fn sampled(job_uid: &str, index: i64, percent: i64) -> bool {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in job_uid.bytes().chain(index.to_le_bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (hash % 100) < percent.clamp(0, 100) as u64
}

/// Where the verification of one chunk's output stands.
#[derive(Debug, PartialEq, Eq)]
enum Verification {
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

/// The verdict a verification unit reported: `Some(passed)` from the worker's JSON result.
fn verdict(unit: &WorkUnit) -> Option<bool> {
    let message = unit.status.as_ref()?.message.as_deref()?;
    serde_json::from_str::<serde_json::Value>(message).ok()?.get("passed")?.as_bool()
}

fn verification_outcome(checks: &[&WorkUnit]) -> Verification {
    let succeeded: Vec<_> = checks.iter().filter(|u| phase(u) == Some(WorkUnitPhase::Succeeded)).collect();
    if succeeded.iter().any(|u| verdict(u) == Some(false)) {
        return Verification::Mismatch;
    }
    if succeeded.iter().any(|u| verdict(u) == Some(true)) {
        return Verification::Passed;
    }
    if checks.iter().any(|u| matches!(phase(u), None | Some(WorkUnitPhase::Pending | WorkUnitPhase::Running)))
    {
        return Verification::Running;
    }
    // Every check failed, was lost or gave no verdict.
    if checks.len() >= VERIFY_ATTEMPTS { Verification::GaveUp } else { Verification::Needed }
}

/// File name extension the render worker gives a format.
fn extension(format: pictor_crds::v1alpha1::ImageFormat) -> &'static str {
    use pictor_crds::v1alpha1::ImageFormat;
    match format {
        ImageFormat::Png => "png",
        ImageFormat::OpenExr => "exr",
        ImageFormat::Jpeg => "jpg",
        ImageFormat::Tiff => "tif",
    }
}

/// A unit that renders the chunk's first frame again on another member and compares it with
/// the accepted output.
#[allow(clippy::too_many_arguments)]
fn verification_unit(
    job: &RenderJob,
    chunk: &Chunk,
    accepted: &WorkUnit,
    earlier: &[&WorkUnit],
    dispute: bool,
    members: &[&GpuCluster],
    claims: &mut Claims,
    settings: &RenderSettings,
) -> Result<WorkUnit, placement::NoMemberFits> {
    let spec = &job.spec;
    let renderer = member_of(accepted);
    let mut excluded: Vec<String> = earlier.iter().map(|u| member_of(u)).collect();
    excluded.push(renderer.clone());
    let need = Need { gpu: &spec.gpu, pods: 1, budget: &spec.budget, tier: spec.tier, excluded: &excluded };
    let placement = placement::place(&need, members, claims)?;
    *claims.entry((placement.member.clone(), placement.model.clone())).or_default() += spec.gpu.count;
    let accepted_name = accepted.metadata.name.clone().unwrap_or_default();
    let original = format!(
        "{}/frame_{:06}.{}",
        spec.output.location.trim_end_matches('/'),
        chunk.first,
        extension(spec.output.format)
    );
    let mut pod = render_pod(job, chunk, placement.vendor, settings);
    let format = pod.args.iter().find_map(|a| a.strip_prefix("--format=")).unwrap_or("PNG").to_string();
    let engine = pod.args.iter().find_map(|a| a.strip_prefix("--engine=")).unwrap_or("Cycles").to_string();
    pod.name = "verify".into();
    pod.command = vec!["pictor-render-worker".into(), "verify".into()];
    pod.args = vec![
        format!("--scene={}", spec.scene),
        format!("--frame={}", chunk.first),
        format!("--original={original}"),
        format!("--format={format}"),
        format!("--engine={engine}"),
    ];
    if settings.fake_run_seconds.is_some() {
        let passed = settings.fake_mismatch_member.as_deref() != Some(renderer.as_str());
        let psnr = if passed { 100.0 } else { 12.5 };
        pod.annotations.insert(
            "pictor.network/fake-result".into(),
            serde_json::json!({"frame": chunk.first, "psnrDb": psnr, "passed": passed}).to_string(),
        );
    }
    let attempt = earlier.len() as i64 + 1;
    let mut labels = BTreeMap::from([(VERIFIES.to_string(), accepted_name.clone())]);
    if dispute {
        labels.insert(DISPUTE_CHECK.into(), "true".into());
    }
    let prefix = if dispute { "d" } else { "v" };
    Ok(work_units::work_unit(UnitDraft {
        name: work_units::unit_name(&accepted_name, &format!("{prefix}{attempt}")),
        job: work_units::job_reference(
            JobKind::RenderJob,
            job.metadata.namespace.as_deref().unwrap_or_default(),
            job.metadata.name.as_deref().unwrap_or_default(),
            job.metadata.uid.as_deref().unwrap_or_default(),
        ),
        placement,
        pods: vec![pod],
        frames: chunk.first.to_string(),
        attempt,
        labels,
        rendezvous_port: None,
    }))
}

fn phase_or_pending(unit: &WorkUnit) -> WorkUnitPhase {
    phase(unit).unwrap_or(WorkUnitPhase::Pending)
}

/// The render worker pod of one chunk.
fn render_pod(
    job: &RenderJob,
    chunk: &Chunk,
    vendor: pictor_crds::v1alpha1::GpuVendor,
    settings: &RenderSettings,
) -> PodTemplate {
    let spec = &job.spec;
    let format = serde_json::to_value(spec.output.format)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let engine = serde_json::to_value(spec.renderer.engine)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut annotations = BTreeMap::new();
    if let Some(seconds) = settings.fake_run_seconds {
        annotations.insert("pictor.network/fake-run-seconds".to_string(), seconds.to_string());
    }
    PodTemplate {
        name: "render".into(),
        image: spec.renderer.image.clone().unwrap_or_else(|| settings.default_image.clone()),
        command: vec!["pictor-render-worker".into(), "render".into()],
        args: vec![
            format!("--scene={}", spec.scene),
            format!("--first={}", chunk.first),
            format!("--last={}", chunk.last),
            format!("--step={}", spec.frames.step),
            format!("--output={}", spec.output.location),
            format!("--format={format}"),
            format!("--engine={engine}"),
        ],
        env: vec![],
        gpu_vendor: vendor,
        gpus: spec.gpu.count,
        cpu: None,
        memory: None,
        annotations,
    }
}

#[cfg(test)]
mod tests;
