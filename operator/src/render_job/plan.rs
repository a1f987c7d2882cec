//! What a RenderJob needs next, as a pure function of the job, its units and the members:
//! chunks to place, units to cancel, and the status that sums it all up.
//!
//! Every frame is accounted for exactly once: a chunk counts as done by its first Succeeded
//! unit, and a Lost unit never counts, whatever it reports later.

use crate::labels;
use crate::placement::{self, Claims, Need, NoMemberFits, cost_octas};
use crate::work_units::{self, CHUNK, UnitDraft};
use pictor_crds::v1alpha1::{
    FailedChunk, FrameCounts, FrameRange, GpuCluster, JobKind, PodTemplate, RenderJob, RenderJobPhase,
    RenderJobStatus, WorkUnit, WorkUnitPhase, format_apt,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A member that failed this many units of one job takes no more of it (as Flamenco does).
pub const JOB_BLOCKLIST_FAILURES: usize = 3;

/// Label on a verification unit: the name of the unit whose output it checks.
pub const VERIFIES: &str = "pictor.network/verifies";
/// Label the controller puts on a unit whose output failed verification.
pub const VERDICT: &str = "pictor.network/verdict";
/// Value of [`VERDICT`] for output that a second provider could not reproduce.
pub const MISMATCH: &str = "mismatch";
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
}

/// What the controller does for one job.
#[derive(Debug, Default)]
pub struct RenderPlan {
    /// Units to create.
    pub create: Vec<WorkUnit>,
    /// Units to delete (namespace, name).
    pub delete: Vec<(String, String)>,
    /// Units whose output failed verification, to be labelled [`VERDICT`]=[`MISMATCH`].
    pub mark_mismatch: Vec<(String, String)>,
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
    unit.metadata.namespace.as_deref().and_then(labels::member_of_namespace).unwrap_or_default().to_string()
}

fn unit_cost(unit: &WorkUnit) -> i64 {
    cost_octas(unit.status.as_ref().map_or(0, |s| s.gpu_seconds), unit.spec.agreed_price_per_gpu_hour)
}

/// Plans the next step of a render job.
pub fn plan(
    job: &RenderJob,
    units: &[&WorkUnit],
    members: &[&GpuCluster],
    claims: &mut Claims,
    settings: &RenderSettings,
) -> RenderPlan {
    let spec = &job.spec;
    let all_chunks = chunks(&spec.frames, spec.chunk_size);
    let mut states: BTreeMap<i64, ChunkState<'_>> = BTreeMap::new();
    let mut sorted: Vec<&WorkUnit> = units.to_vec();
    sorted.sort_by_key(|u| {
        (u.status.as_ref().and_then(|s| s.completion_time.clone()).map(|t| t.0), u.metadata.name.clone())
    });
    let mut verifications: HashMap<&str, Vec<&WorkUnit>> = HashMap::new();
    for unit in sorted {
        let labels = unit.metadata.labels.as_ref();
        if let Some(checked) = labels.and_then(|l| l.get(VERIFIES)) {
            verifications.entry(checked.as_str()).or_default().push(unit);
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
    let mut verify_cost = 0;
    let mut unverifiable: Option<String> = None;
    for chunk in &all_chunks {
        let Some(state) = states.get_mut(&chunk.index) else { continue };
        let Some(accepted) = state.accepted else { continue };
        if !sampled(&job_uid, chunk.index, spec.verification_percent) {
            continue;
        }
        let checks = verifications
            .get(accepted.metadata.name.as_deref().unwrap_or_default())
            .cloned()
            .unwrap_or_default();
        verify_cost += checks
            .iter()
            .filter(|u| phase(u) == Some(WorkUnitPhase::Succeeded))
            .map(|u| unit_cost(u))
            .sum::<i64>();
        match verification_outcome(&checks) {
            Verification::Passed | Verification::GaveUp => {}
            Verification::Mismatch => {
                out.mark_mismatch.push((
                    accepted.metadata.namespace.clone().unwrap_or_default(),
                    accepted.metadata.name.clone().unwrap_or_default(),
                ));
                state.accepted = None;
                state.failures.push(accepted);
            }
            Verification::Running => unverified.push((chunk, accepted)),
            Verification::Needed => {
                match verification_unit(job, chunk, accepted, &checks, members, claims, settings) {
                    Ok(unit) => {
                        unverified.push((chunk, accepted));
                        out.create.push(unit);
                    }
                    // Busy members free up; a network with no second provider of these GPUs never
                    // will, and the job must not wait for it forever.
                    Err(e) if e.busy => unverified.push((chunk, accepted)),
                    Err(e) => unverifiable = Some(e.message),
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

    let done_units: Vec<&WorkUnit> = states.values().filter_map(|s| s.accepted).collect();
    let cost: i64 = done_units.iter().map(|u| unit_cost(u)).sum::<i64>() + verify_cost;
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
                frames: format!("{}-{}", chunk.first, chunk.last),
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
    } else if done == total && !unverified.is_empty() {
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
            format!("all {total} frames rendered; {} sampled chunks await verification", unverified.len()),
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
fn verification_unit(
    job: &RenderJob,
    chunk: &Chunk,
    accepted: &WorkUnit,
    earlier: &[&WorkUnit],
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
    Ok(work_units::work_unit(UnitDraft {
        name: work_units::unit_name(&accepted_name, &format!("v{attempt}")),
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
        labels: BTreeMap::from([(VERIFIES.to_string(), accepted_name)]),
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
