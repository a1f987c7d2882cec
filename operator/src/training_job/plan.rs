//! What a TrainingJob needs next: one gang WorkUnit per attempt, all workers in one member, with
//! the environment torchrun expects; a failed gang starts again from the checkpoint, up to the
//! restart limit.

use crate::accrual::{self, UnitMark};
use crate::placement::{self, Claims, Need};
use crate::unit_drafts::{self, UnitDraft};
use k8s_openapi::jiff::Timestamp;
use pictor_crds::contract::format_apt;
use pictor_crds::v1alpha1::{
    CONDITION_READY, EnvVar, GpuCluster, JobKind, PodTemplate, REASON_REFUSED, RestartPolicy, TrainingJob,
    TrainingJobPhase, TrainingJobStatus, WorkUnit, WorkUnitPhase,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the controller does for one job.
#[derive(Debug, Default)]
pub struct TrainingPlan {
    /// Unit to create: the next attempt, if one starts now.
    pub create: Vec<WorkUnit>,
    /// Units to delete (namespace, name).
    pub delete: Vec<(String, String)>,
    /// The job's status (conditions merged by the caller).
    pub status: TrainingJobStatus,
    /// Ready condition: status, reason, message.
    pub ready: (bool, &'static str, String),
    /// Billing marks of finished attempts ([`accrual`]).
    pub marks: Vec<UnitMark>,
}

/// Settings of the training controller.
#[derive(Clone, Debug, Default)]
pub struct TrainingSettings {
    /// For local networks on kwok: pods "run" this long (annotation kwok acts on).
    pub fake_run_seconds: Option<u32>,
    /// How long a finished attempt waits before billing pays it (the same window render chunks
    /// have; a training attempt cannot be re-run to check it, so it cannot be disputed).
    pub dispute_window: Duration,
}

/// Name of the unit of one attempt.
pub fn attempt_name(job: &str, attempt: i64) -> String {
    unit_drafts::unit_name(job, &format!("a{attempt}"))
}

/// The environment of worker `rank`, as Kubeflow's PyTorchJob sets it for torchrun.
pub fn worker_env(job: &TrainingJob, unit: &str, rank: i64) -> Vec<EnvVar> {
    let spec = &job.spec;
    let master = format!("worker-0.{unit}");
    let nproc = spec.gpu.count;
    let mut env = vec![
        ("MASTER_ADDR", master.clone()),
        ("MASTER_PORT", spec.master_port.to_string()),
        ("WORLD_SIZE", (spec.workers * nproc).to_string()),
        ("RANK", rank.to_string()),
        ("PET_MASTER_ADDR", master),
        ("PET_MASTER_PORT", spec.master_port.to_string()),
        ("PET_NNODES", spec.workers.to_string()),
        ("PET_NODE_RANK", rank.to_string()),
        ("PET_NPROC_PER_NODE", nproc.to_string()),
        ("PYTHONUNBUFFERED", "1".to_string()),
    ];
    if let Some(url) = &spec.dataset {
        env.push(("PICTOR_DATASET_URL", url.clone()));
    }
    if let Some(url) = &spec.checkpoint {
        env.push(("PICTOR_CHECKPOINT_URL", url.clone()));
    }
    let mut env: Vec<EnvVar> = env.into_iter().map(|(n, v)| EnvVar { name: n.into(), value: v }).collect();
    env.extend(spec.env.iter().cloned());
    env
}

fn phase(unit: &WorkUnit) -> Option<WorkUnitPhase> {
    unit.status.as_ref().and_then(|s| s.phase)
}

/// Whether a failed attempt may be retried under the job's policy.
fn retryable(job: &TrainingJob, unit: &WorkUnit) -> bool {
    match job.spec.restart_policy {
        RestartPolicy::Never => false,
        RestartPolicy::OnFailure => true,
        // Exit codes 1–127 are the program's own verdict; 128 and up are signals (OOM, preemption).
        RestartPolicy::ExitCode => {
            phase(unit) == Some(WorkUnitPhase::Lost)
                || unit.status.as_ref().is_some_and(|s| !s.exit_codes.iter().any(|c| (1..=127).contains(c)))
        }
    }
}

/// Whether the member refused the attempt before running it (its provider does not run the
/// image, or the pods are over its caps): the gang goes elsewhere, and the restart is free.
fn refused(unit: &WorkUnit) -> bool {
    unit.status.as_ref().is_some_and(|s| {
        s.phase == Some(WorkUnitPhase::Failed)
            && s.start_time.is_none()
            && s.conditions.iter().any(|c| c.type_ == CONDITION_READY && c.reason == REASON_REFUSED)
    })
}

/// Plans the next step of a training job.
pub fn plan(
    job: &TrainingJob,
    units: &[&WorkUnit],
    members: &[&GpuCluster],
    claims: &mut Claims,
    settings: &TrainingSettings,
    now: Timestamp,
) -> TrainingPlan {
    let spec = &job.spec;
    let fake_run_seconds = settings.fake_run_seconds;
    let mut out = TrainingPlan::default();
    let current = units.iter().max_by_key(|u| u.spec.attempt).copied();
    let attempt = current.map_or(0, |u| u.spec.attempt);
    // Each earlier attempt led to a restart; those its member refused are not counted.
    let restarts = units.iter().filter(|u| u.spec.attempt < attempt && !refused(u)).count() as i64;
    let refused_by: Vec<String> =
        units.iter().filter(|u| refused(u)).filter_map(|u| u.member().map(str::to_string)).collect();
    // GPU time of finished attempts is paid, whatever the outcome; a Lost attempt is not.
    let finished: Vec<&WorkUnit> = units
        .iter()
        .copied()
        .filter(|u| matches!(phase(u), Some(WorkUnitPhase::Succeeded | WorkUnitPhase::Failed)))
        .collect();
    let cost = crate::metering::cost_octas_of(&finished, now);
    out.marks = finished.iter().filter_map(|u| accrual::accrue(u, now, settings.dispute_window)).collect();
    let active =
        current.filter(|u| matches!(phase(u), None | Some(WorkUnitPhase::Pending | WorkUnitPhase::Running)));

    let mut place_attempt = |attempt: i64, out: &mut TrainingPlan| -> Result<(), String> {
        let need = Need {
            gpu: &spec.gpu,
            pods: spec.workers,
            budget: &spec.budget,
            tier: spec.tier,
            excluded: &refused_by,
            image: &spec.image,
            resources: &spec.resources,
        };
        let placement = placement::place(&need, members, claims).map_err(|e| e.to_string())?;
        let name = attempt_name(job.metadata.name.as_deref().unwrap_or_default(), attempt);
        let pods = (0..spec.workers)
            .map(|rank| PodTemplate {
                name: format!("worker-{rank}"),
                image: spec.image.clone(),
                command: spec.command.clone(),
                args: spec.args.clone(),
                env: worker_env(job, &name, rank),
                gpu_vendor: placement.vendor,
                gpus: spec.gpu.count,
                resources: spec.resources.clone(),
                annotations: fake_run_seconds
                    .map(|s| {
                        BTreeMap::from([(
                            pictor_crds::contract::annotations::FAKE_RUN_SECONDS.to_string(),
                            s.to_string(),
                        )])
                    })
                    .unwrap_or_default(),
            })
            .collect();
        *claims.entry((placement.member.clone(), placement.model.clone())).or_default() +=
            spec.workers * spec.gpu.count;
        out.create = vec![unit_drafts::work_unit(UnitDraft {
            name,
            job: unit_drafts::job_reference(
                JobKind::TrainingJob,
                job.metadata.namespace.as_deref().unwrap_or_default(),
                job.metadata.name.as_deref().unwrap_or_default(),
                job.metadata.uid.as_deref().unwrap_or_default(),
            ),
            placement,
            pods,
            frames: String::new(),
            attempt,
            labels: BTreeMap::new(),
            rendezvous_port: Some(spec.master_port),
        })];
        Ok(())
    };

    let (phase_now, ready) = if spec.suspend {
        if let Some(u) = active {
            out.delete.push((
                u.metadata.namespace.clone().unwrap_or_default(),
                u.metadata.name.clone().unwrap_or_default(),
            ));
        }
        (
            TrainingJobPhase::Cancelled,
            (false, "Cancelled", "spec.suspend is true: the gang is stopped".to_string()),
        )
    } else if let Some(u) = active {
        let running = phase(u) == Some(WorkUnitPhase::Running);
        let phase = if running {
            TrainingJobPhase::Running
        } else if attempt > 1 {
            TrainingJobPhase::Restarting
        } else {
            TrainingJobPhase::Pending
        };
        (
            phase,
            (
                true,
                if running { "Running" } else { "Starting" },
                format!("attempt {attempt}: {} workers", spec.workers),
            ),
        )
    } else if let Some(u) = current {
        match phase(u) {
            Some(WorkUnitPhase::Succeeded) => {
                (TrainingJobPhase::Succeeded, (true, "Succeeded", "every worker exited 0".to_string()))
            }
            _ if refused(u) => match place_attempt(attempt + 1, &mut out) {
                Ok(()) => (
                    TrainingJobPhase::Restarting,
                    (
                        true,
                        "Restarting",
                        format!(
                            "attempt {attempt} was refused by {} ({}); attempt {} is placed elsewhere",
                            u.member().unwrap_or("its member"),
                            u.status.as_ref().and_then(|s| s.message.as_deref()).unwrap_or("no reason given"),
                            attempt + 1
                        ),
                    ),
                ),
                Err(why) => (TrainingJobPhase::Restarting, (false, "NoMemberFits", why)),
            },
            _ if !retryable(job, u) => (
                TrainingJobPhase::Failed,
                (
                    false,
                    "WorkerFailed",
                    format!("attempt {attempt} failed and the restart policy does not retry it"),
                ),
            ),
            _ if restarts >= spec.restart_limit => (
                TrainingJobPhase::Failed,
                (false, "RestartLimitReached", format!("{restarts} restarts used of {}", spec.restart_limit)),
            ),
            _ => match place_attempt(attempt + 1, &mut out) {
                Ok(()) => (
                    TrainingJobPhase::Restarting,
                    (true, "Restarting", format!("attempt {} starts from the last checkpoint", attempt + 1)),
                ),
                Err(why) => (TrainingJobPhase::Restarting, (false, "NoMemberFits", why)),
            },
        }
    } else {
        match place_attempt(1, &mut out) {
            Ok(()) => (TrainingJobPhase::Pending, (true, "Placed", "the gang is placed".to_string())),
            Err(why) => (TrainingJobPhase::Pending, (false, "NoMemberFits", why)),
        }
    };
    out.ready = ready;
    let shown = out.create.first().or(active).or(current);
    out.status = TrainingJobStatus {
        observed_generation: job.metadata.generation,
        phase: Some(phase_now),
        restarts: restarts
            + i64::from(!out.create.is_empty() && attempt > 0 && !current.is_some_and(refused)),
        member: shown.and_then(|u| u.member().map(str::to_string)),
        work_unit: shown.and_then(|u| u.metadata.name.clone()),
        cost_octas: cost,
        cost: Some(format_apt(cost.max(0) as u64)),
        start_time: units.iter().filter_map(|u| u.status.as_ref()?.start_time.clone()).min_by_key(|t| t.0),
        completion_time: job.status.as_ref().and_then(|s| s.completion_time.clone()),
        conditions: job.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default(),
    };
    out
}

#[cfg(test)]
mod tests;
