//! `pictor watch`: one live line per job — frames done of total (or the training gang's phase),
//! the job's units by member and phase, the cost so far — redrawn as watch events arrive.
//!
//! The line is a pure function of the job and its units ([`progress_line`]). On a terminal the
//! lines are redrawn in place; otherwise a job's line is printed again only when it changed, so
//! logs and tests read one line per change.

use super::{CliError, Hub};
use clap::Args;
use futures::{FutureExt, StreamExt};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use pictor_crds::contract::format_apt;
use pictor_crds::v1alpha1::{
    RenderJob, RenderJobPhase, TrainingJob, TrainingJobPhase, WorkUnit, WorkUnitPhase,
};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

#[derive(Args)]
pub(super) struct WatchArgs {
    /// RenderJobs or TrainingJobs to follow (default: every job in the namespace).
    jobs: Vec<String>,
    /// Exit once every followed job has finished (default: true when jobs are named).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    exit_on_done: Option<bool>,
}

/// A job of either kind, as the watch shows it.
#[derive(Clone, Copy, Debug)]
pub enum JobView<'a> {
    /// A render.
    Render(&'a RenderJob),
    /// A training gang.
    Training(&'a TrainingJob),
}

impl JobView<'_> {
    fn uid(&self) -> Option<&str> {
        match self {
            JobView::Render(j) => j.metadata.uid.as_deref(),
            JobView::Training(j) => j.metadata.uid.as_deref(),
        }
    }

    /// Whether the job has reached Succeeded, Failed or Cancelled.
    pub fn is_terminal(&self) -> bool {
        match self {
            JobView::Render(j) => matches!(
                j.status.as_ref().and_then(|s| s.phase),
                Some(RenderJobPhase::Succeeded | RenderJobPhase::Failed | RenderJobPhase::Cancelled)
            ),
            JobView::Training(j) => matches!(
                j.status.as_ref().and_then(|s| s.phase),
                Some(TrainingJobPhase::Succeeded | TrainingJobPhase::Failed | TrainingJobPhase::Cancelled)
            ),
        }
    }
}

const BAR_WIDTH: usize = 20;

/// `[#####---------------]` for `done` of `total`.
pub fn bar(done: i64, total: i64, width: usize) -> String {
    let filled =
        if total > 0 { ((done.clamp(0, total) as u128 * width as u128) / total as u128) as usize } else { 0 };
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// Units by member and phase: `member-a 3 Succeeded 1 Running, member-b 2 Pending`.
pub fn units_by_member(units: &[&WorkUnit]) -> String {
    let mut by_member: BTreeMap<String, BTreeMap<u8, (String, usize)>> = BTreeMap::new();
    for unit in units {
        let namespace = unit.metadata.namespace.as_deref().unwrap_or_default();
        let member = pictor_crds::contract::member_of_namespace(namespace).unwrap_or(namespace).to_string();
        let phase = unit.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
        // Finished first, then what runs, then what waits: the order a reader scans for.
        let order = match phase {
            WorkUnitPhase::Succeeded => 0,
            WorkUnitPhase::Running => 1,
            WorkUnitPhase::Pending => 2,
            WorkUnitPhase::Failed => 3,
            WorkUnitPhase::Lost => 4,
        };
        by_member.entry(member).or_default().entry(order).or_insert_with(|| (format!("{phase:?}"), 0)).1 += 1;
    }
    by_member
        .into_iter()
        .map(|(member, phases)| {
            let counts: Vec<String> = phases.into_values().map(|(p, n)| format!("{n} {p}")).collect();
            format!("{member} {}", counts.join(" "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The line of one job.
pub fn progress_line(job: JobView<'_>, units: &[&WorkUnit]) -> String {
    let members = units_by_member(units);
    let members = if members.is_empty() { "no units yet".to_string() } else { members };
    match job {
        JobView::Render(j) => {
            let status = j.status.clone().unwrap_or_default();
            let phase = status.phase.unwrap_or_default();
            let frames = status.frames.unwrap_or_default();
            let total = if frames.total > 0 { frames.total } else { j.spec.frames.len() };
            let percent = if total > 0 { frames.done * 100 / total } else { 0 };
            let mut line = format!(
                "rj/{}  {phase:?}  {}  {}/{} frames  {percent}%  {}  {members}",
                j.metadata.name.as_deref().unwrap_or_default(),
                bar(frames.done, total, BAR_WIDTH),
                frames.done,
                total,
                format_apt(status.cost_octas.max(0) as u64),
            );
            if frames.failed > 0 {
                line.push_str(&format!("  {} frames failed", frames.failed));
            }
            line
        }
        JobView::Training(j) => {
            let status = j.status.clone().unwrap_or_default();
            let phase = status.phase.unwrap_or_default();
            format!(
                "tj/{}  {phase:?}  {} workers x {} GPUs  on {}  restarts {}/{}  {}  {members}",
                j.metadata.name.as_deref().unwrap_or_default(),
                j.spec.workers,
                j.spec.gpu.count,
                status.member.as_deref().unwrap_or("-"),
                status.restarts,
                j.spec.restart_limit,
                format_apt(status.cost_octas.max(0) as u64),
            )
        }
    }
}

/// The jobs being followed, in the order they were named (else by name), with the lines to
/// show and whether every one of them is finished. `Err` names jobs that do not exist.
pub fn screen(
    names: &[String],
    render_jobs: &[&RenderJob],
    training_jobs: &[&TrainingJob],
    units: &[&WorkUnit],
) -> Result<(Vec<String>, bool), Vec<String>> {
    let mut jobs: Vec<JobView<'_>> = Vec::new();
    let mut missing = Vec::new();
    if names.is_empty() {
        jobs.extend(render_jobs.iter().map(|j| JobView::Render(j)));
        jobs.extend(training_jobs.iter().map(|j| JobView::Training(j)));
        let name = |j: &JobView<'_>| match j {
            JobView::Render(j) => ("rj", j.metadata.name.clone()),
            JobView::Training(j) => ("tj", j.metadata.name.clone()),
        };
        jobs.sort_by_key(name);
    } else {
        for wanted in names {
            let named = |n: &Option<String>| n.as_deref() == Some(wanted.as_str());
            if let Some(j) = render_jobs.iter().find(|j| named(&j.metadata.name)) {
                jobs.push(JobView::Render(j));
            } else if let Some(j) = training_jobs.iter().find(|j| named(&j.metadata.name)) {
                jobs.push(JobView::Training(j));
            } else {
                missing.push(wanted.clone());
            }
        }
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    let lines = jobs
        .iter()
        .map(|job| {
            let own: Vec<&WorkUnit> =
                units.iter().copied().filter(|u| Some(u.spec.job_ref.uid.as_str()) == job.uid()).collect();
            progress_line(*job, &own)
        })
        .collect();
    let done = !jobs.is_empty() && jobs.iter().all(JobView::is_terminal);
    Ok((lines, done))
}

/// Writes screens: in place on a terminal, changed lines only elsewhere.
struct Output {
    terminal: bool,
    shown: Vec<String>,
}

impl Output {
    fn show(&mut self, lines: Vec<String>) {
        let mut out = std::io::stdout().lock();
        if self.terminal {
            if self.shown == lines {
                return;
            }
            if !self.shown.is_empty() {
                let _ = write!(out, "\x1b[{}A", self.shown.len());
            }
            for line in &lines {
                let _ = writeln!(out, "\x1b[2K{line}");
            }
            // Lines of jobs that went away are cleared.
            for _ in lines.len()..self.shown.len() {
                let _ = writeln!(out, "\x1b[2K");
            }
        } else {
            for line in &lines {
                if !self.shown.contains(line) {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        let _ = out.flush();
        self.shown = lines;
    }
}

fn ready<K>(store: &reflector::Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok())
}

pub(super) async fn run(hub: &Hub, args: WatchArgs) -> Result<(), CliError> {
    let exit_on_done = args.exit_on_done.unwrap_or(!args.jobs.is_empty());
    let client = hub.client.clone();
    let (render_jobs, render_writer) = reflector::store::<RenderJob>();
    let (training_jobs, training_writer) = reflector::store::<TrainingJob>();
    let (units, unit_writer) = reflector::store::<WorkUnit>();
    let config = watcher::Config::default();
    // Only units of some job matter; the label is on every unit the operator makes.
    let unit_config = watcher::Config::default().labels(pictor_crds::contract::labels::JOB_UID);
    let events = futures::stream::select_all([
        reflector(
            render_writer,
            watcher(Api::<RenderJob>::namespaced(client.clone(), &hub.namespace), config.clone()),
        )
        .default_backoff()
        .map(|e| e.map(|_| ()))
        .boxed(),
        reflector(
            training_writer,
            watcher(Api::<TrainingJob>::namespaced(client.clone(), &hub.namespace), config),
        )
        .default_backoff()
        .map(|e| e.map(|_| ()))
        .boxed(),
        reflector(unit_writer, watcher(Api::<WorkUnit>::all(client), unit_config))
            .default_backoff()
            .map(|e| e.map(|_| ()))
            .boxed(),
    ]);
    futures::pin_mut!(events);
    let mut output = Output { terminal: std::io::stdout().is_terminal(), shown: Vec::new() };
    while let Some(event) = events.next().await {
        if let Err(e) = event {
            // The watcher backs off and resumes; a person still wants to know.
            tracing::warn!(error = %e, "watch interrupted; resuming");
            continue;
        }
        if !(ready(&render_jobs) && ready(&training_jobs) && ready(&units)) {
            continue;
        }
        let (rj, tj, wu) = (render_jobs.state(), training_jobs.state(), units.state());
        let rj: Vec<&RenderJob> = rj.iter().map(|j| j.as_ref()).collect();
        let tj: Vec<&TrainingJob> = tj.iter().map(|j| j.as_ref()).collect();
        let wu: Vec<&WorkUnit> = wu.iter().map(|u| u.as_ref()).collect();
        match screen(&args.jobs, &rj, &tj, &wu) {
            Ok((lines, done)) => {
                output.show(lines);
                if done && exit_on_done {
                    return Ok(());
                }
            }
            Err(missing) => {
                return Err(CliError::Usage(format!(
                    "no RenderJob or TrainingJob named {} in namespace {}",
                    missing.join(", "),
                    hub.namespace
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render_job(done: i64, phase: &str) -> RenderJob {
        serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": "classroom", "namespace": "default", "uid": "job-1"},
            "spec": {"scene": "s3://s/c.blend", "frames": {"start": 1, "end": 240}, "output": {"location": "s3://o/"}},
            "status": {"phase": phase, "frames": {"total": 240, "done": done, "running": 20, "failed": 0},
                       "costOctas": 2_791_665}
        }))
        .unwrap()
    }

    fn unit(member: &str, name: &str, phase: &str) -> WorkUnit {
        serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
            "metadata": {"name": name, "namespace": format!("pictor-member-{member}")},
            "spec": {"jobRef": {"kind": "RenderJob", "namespace": "default", "name": "classroom", "uid": "job-1"},
                     "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": 1}],
                     "agreedPricePerGpuHour": 1},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn the_bar_fills_in_proportion_and_never_overflows() {
        assert_eq!(bar(0, 240, 10), "[----------]");
        assert_eq!(bar(120, 240, 10), "[#####-----]");
        assert_eq!(bar(300, 240, 10), "[##########]");
        assert_eq!(bar(5, 0, 4), "[----]");
    }

    #[test]
    fn a_render_line_shows_frames_units_by_member_and_cost() {
        let job = render_job(120, "Rendering");
        let units = [
            unit("member-a", "c0", "Succeeded"),
            unit("member-a", "c1", "Running"),
            unit("member-b", "c2", "Pending"),
            unit("member-a", "c3", "Succeeded"),
        ];
        let refs: Vec<&WorkUnit> = units.iter().collect();
        assert_eq!(
            progress_line(JobView::Render(&job), &refs),
            "rj/classroom  Rendering  [##########----------]  120/240 frames  50%  0.02791665 APT  \
             member-a 2 Succeeded 1 Running, member-b 1 Pending"
        );
    }

    #[test]
    fn a_training_line_shows_the_gang_and_its_member() {
        let job: TrainingJob = serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "llama", "uid": "t-1"},
            "spec": {"image": "i", "workers": 4, "gpu": {"count": 2}},
            "status": {"phase": "Running", "member": "member-b", "restarts": 1, "costOctas": 0}
        }))
        .unwrap();
        assert_eq!(
            progress_line(JobView::Training(&job), &[]),
            "tj/llama  Running  4 workers x 2 GPUs  on member-b  restarts 1/3  0 APT  no units yet"
        );
    }

    #[test]
    fn the_screen_follows_named_jobs_until_all_are_terminal() {
        let running = render_job(10, "Rendering");
        let done = render_job(240, "Succeeded");
        let units = [unit("member-a", "c0", "Succeeded")];
        let refs: Vec<&WorkUnit> = units.iter().collect();
        let names = vec!["classroom".to_string()];
        let (lines, finished) = screen(&names, &[&running], &[], &refs).unwrap();
        assert_eq!(lines.len(), 1);
        assert!(!finished);
        let (lines, finished) = screen(&names, &[&done], &[], &refs).unwrap();
        assert!(lines[0].contains("240/240 frames  100%"), "{}", lines[0]);
        assert!(finished);
        assert_eq!(screen(&["nope".into()], &[&done], &[], &refs), Err(vec!["nope".to_string()]));
        let (_, finished) = screen(&[], &[], &[], &refs).unwrap();
        assert!(!finished, "an empty namespace is never 'all done'");
    }
}
