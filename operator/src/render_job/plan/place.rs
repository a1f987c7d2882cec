//! Stage 4, place: units for the chunks that need one — new chunks and retries — in chunk
//! order, while the job has room in flight and budget left. A retry never goes back to a member
//! that failed the chunk, and no chunk goes to a member blocklisted for the job.

use super::tally::Tally;
use super::{Chunk, FIRST_CHUNK_ESTIMATE_SECONDS, UnitPlacer, member_of, pods};
use crate::placement::{Claims, NoMemberFits};
use crate::unit_drafts::{self, UnitDraft};
use pictor_crds::contract::labels::CHUNK;
use pictor_crds::contract::{billing_marks, cost_octas};
use pictor_crds::v1alpha1::{JobKind, WorkUnit};
use std::collections::{BTreeMap, BTreeSet};

/// What the job may still spend, in octas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Spend {
    /// Paid for and promised: the cost so far plus what the running units are expected to cost.
    pub committed: i64,
    /// The job's `budget.maxTotal`.
    pub max_total: Option<i64>,
    /// GPU-seconds a chunk is expected to take.
    pub chunk_gpu_seconds: i64,
}

impl Spend {
    /// The spend of a job that has cost `cost` so far with `active` units running: each
    /// running unit is expected to take as long as the chunks done did on average.
    pub fn new(
        cost: i64,
        done: &[&WorkUnit],
        active: &[&WorkUnit],
        gpus: i64,
        max_total: Option<i64>,
    ) -> Self {
        // What the hub metered where it did, else what the member reported; sums saturate, a
        // member's figures never wrap them.
        let seconds_of = |u: &WorkUnit| {
            billing_marks::metered_gpu_seconds(u)
                .unwrap_or_else(|| u.status.as_ref().map_or(0, |s| s.gpu_seconds.max(0)))
        };
        let chunk_gpu_seconds = if done.is_empty() {
            FIRST_CHUNK_ESTIMATE_SECONDS.saturating_mul(gpus)
        } else {
            done.iter().fold(0i64, |sum, u| sum.saturating_add(seconds_of(u))) / done.len() as i64
        };
        let committed = active
            .iter()
            .map(|u| cost_octas(chunk_gpu_seconds, u.spec.agreed_price_per_gpu_hour))
            .fold(cost, i64::saturating_add);
        Spend { committed, max_total, chunk_gpu_seconds }
    }

    /// Commits one more chunk at `price_per_gpu_hour`, or says it would go over budget.
    pub fn commit(&mut self, price_per_gpu_hour: i64) -> bool {
        let estimate = cost_octas(self.chunk_gpu_seconds, price_per_gpu_hour);
        if self.max_total.is_some_and(|max| self.committed.saturating_add(estimate) > max) {
            return false;
        }
        self.committed = self.committed.saturating_add(estimate);
        true
    }
}

/// The units this reconcile places, and why it stopped short.
#[derive(Debug, Default)]
pub(super) struct Placed {
    /// New render units.
    pub create: Vec<WorkUnit>,
    /// The chunks they render.
    pub chunks: BTreeSet<i64>,
    /// No member fits the next chunk.
    pub no_fit: Option<NoMemberFits>,
    /// The next chunk would take the job over `budget.maxTotal`.
    pub over_budget: bool,
}

/// Places a unit for each chunk that needs one, in order, at most `room` of them.
pub(super) fn place_chunks(
    placer: &UnitPlacer<'_>,
    chunks: &[Chunk],
    tally: &Tally<'_>,
    mut room: usize,
    mut spend: Spend,
    claims: &mut Claims,
) -> Placed {
    let job = placer.job;
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let job_ref = unit_drafts::job_reference(
        JobKind::RenderJob,
        job.metadata.namespace.as_deref().unwrap_or_default(),
        &job_name,
        job.metadata.uid.as_deref().unwrap_or_default(),
    );
    let blocklisted = tally.blocklisted();
    let mut placed = Placed::default();
    for chunk in chunks {
        if room == 0 {
            break;
        }
        let units = tally.chunks.get(&chunk.index);
        if units.is_some_and(|u| !u.needs_unit()) {
            continue;
        }
        let mut excluded = blocklisted.clone();
        excluded.extend(units.iter().flat_map(|u| &u.failures).map(|u| member_of(u)));
        let placement = match placer.place(&excluded, claims) {
            Ok(p) => p,
            Err(e) => {
                placed.no_fit = Some(e);
                break;
            }
        };
        if !spend.commit(placement.price_per_gpu_hour) {
            placed.over_budget = true;
            break;
        }
        placer.claim(&placement, claims);
        let attempt = units.map_or(0, |u| u.attempts) + 1;
        placed.create.push(unit_drafts::work_unit(UnitDraft {
            name: unit_drafts::unit_name(&job_name, &format!("{:05}-{attempt}", chunk.index)),
            job: job_ref.clone(),
            pods: vec![pods::render_pod(job, chunk, placement.vendor, placer.settings)],
            frames: chunk.frames_label(),
            attempt,
            labels: BTreeMap::from([(CHUNK.to_string(), chunk.index.to_string())]),
            placement,
            rendezvous_port: None,
        }));
        placed.chunks.insert(chunk.index);
        room -= 1;
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render_job::plan::fixtures::{job, member, settings, unit};
    use crate::render_job::plan::{chunks, tally::tally};
    use pictor_crds::v1alpha1::GpuCluster;
    use serde_json::json;

    fn open_spend() -> Spend {
        Spend { committed: 0, max_total: None, chunk_gpu_seconds: 600 }
    }

    #[test]
    fn a_members_absurd_figures_neither_wrap_the_spend_nor_outweigh_what_the_hub_metered() {
        let mut absurd = unit(0, 1, "a", Some("Succeeded"), i64::MAX);
        let greedy = unit(1, 1, "a", Some("Succeeded"), i64::MAX);
        let running = unit(2, 1, "a", Some("Running"), 0);
        let mut spend = Spend::new(i64::MAX - 1, &[&absurd, &greedy], &[&running], 1, Some(i64::MAX - 1));
        assert_eq!(spend.committed, i64::MAX, "saturated, not wrapped");
        assert!(!spend.commit(3600), "nothing more fits a saturated spend");
        absurd.metadata.annotations = Some(
            [(pictor_crds::contract::annotations::METERED_GPU_SECONDS.to_string(), "100".to_string())].into(),
        );
        let metered = Spend::new(0, &[&absurd], &[], 1, None);
        assert_eq!(metered.chunk_gpu_seconds, 100, "the hub's figure, not the member's");
    }

    #[test]
    fn the_estimate_is_the_mean_of_the_chunks_done_and_running_units_count_against_the_budget() {
        let done = [unit(0, 1, "a", Some("Succeeded"), 100), unit(1, 1, "a", Some("Succeeded"), 300)];
        let running = unit(2, 1, "a", Some("Running"), 0);
        let spend = Spend::new(50, &done.iter().collect::<Vec<_>>(), &[&running], 1, Some(1000));
        assert_eq!(spend.chunk_gpu_seconds, 200);
        assert_eq!(spend.committed, 50 + 200, "200 GPU-seconds at 3600 octas/GPU-hour");
        let fresh = Spend::new(0, &[], &[], 2, None);
        assert_eq!(fresh.chunk_gpu_seconds, 2 * FIRST_CHUNK_ESTIMATE_SECONDS);

        let mut tight = Spend { committed: 0, max_total: Some(250), chunk_gpu_seconds: 200 };
        assert!(tight.commit(3600) && !tight.commit(3600), "the second chunk would pass maxTotal");
    }

    #[test]
    fn chunks_are_placed_in_order_within_the_room_skipping_done_and_running_ones() {
        let j = job(50, json!({}));
        let members: Vec<GpuCluster> = vec![member("a", "nvidia", "RTX-4090", 8, 100)];
        let refs: Vec<&GpuCluster> = members.iter().collect();
        let s = settings();
        let placer = UnitPlacer { job: &j, members: &refs, settings: &s };
        let (done, running) = (unit(0, 1, "a", Some("Succeeded"), 10), unit(1, 1, "a", Some("Running"), 0));
        let t = tally(&[&done, &running]);
        let all = chunks(&j.spec.frames, j.spec.chunk_size);
        let placed = place_chunks(&placer, &all, &t, 2, open_spend(), &mut Claims::new());
        assert_eq!(placed.chunks, BTreeSet::from([2, 3]));
        assert_eq!(placed.create[0].spec.frames, "21-30");
        assert!(placed.no_fit.is_none() && !placed.over_budget);
    }

    #[test]
    fn a_retry_avoids_the_member_that_failed_it_and_stops_where_no_member_fits() {
        let j = job(20, json!({}));
        let members = [member("a", "nvidia", "RTX-4090", 8, 100)];
        let refs: Vec<&GpuCluster> = members.iter().collect();
        let s = settings();
        let placer = UnitPlacer { job: &j, members: &refs, settings: &s };
        let failed = unit(0, 1, "a", Some("Failed"), 0);
        let t = tally(&[&failed]);
        let all = chunks(&j.spec.frames, j.spec.chunk_size);
        let placed = place_chunks(&placer, &all, &t, 10, open_spend(), &mut Claims::new());
        assert!(placed.create.is_empty(), "chunk 0 may not go back to a, and placement stops there");
        assert!(placed.no_fit.unwrap().message.contains("1 excluded for this job"));
    }

    #[test]
    fn placement_stops_at_the_budget_and_claims_only_what_it_places() {
        let j = job(30, json!({}));
        let members = [member("a", "nvidia", "RTX-4090", 8, 3600)];
        let refs: Vec<&GpuCluster> = members.iter().collect();
        let s = settings();
        let placer = UnitPlacer { job: &j, members: &refs, settings: &s };
        let all = chunks(&j.spec.frames, j.spec.chunk_size);
        let spend = Spend { committed: 0, max_total: Some(1000), chunk_gpu_seconds: 600 };
        let mut claims = Claims::new();
        let placed = place_chunks(&placer, &all, &tally(&[]), 10, spend, &mut claims);
        assert_eq!((placed.create.len(), placed.over_budget), (1, true));
        assert_eq!(claims[&("a".to_string(), "RTX-4090".to_string())], 1);
    }
}
