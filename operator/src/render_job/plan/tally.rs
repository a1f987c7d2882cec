//! Stage 1, tally: what each chunk's units say — the output accepted, the units running, the
//! attempts that failed or were lost — and which units verify another's output.

use super::{Chunk, member_of, phase};
use crate::render_job::plan::JOB_BLOCKLIST_FAILURES;
use pictor_crds::contract::MISMATCH;
use pictor_crds::contract::labels::{CHUNK, DISPUTE_CHECK, VERDICT, VERIFIES};
use pictor_crds::v1alpha1::{WorkUnit, WorkUnitPhase};
use std::collections::{BTreeMap, HashMap};

/// The units of one chunk, by what they say.
#[derive(Debug, Default)]
pub(super) struct ChunkUnits<'a> {
    /// The first unit that succeeded and was not rejected: its output is the chunk's.
    pub accepted: Option<&'a WorkUnit>,
    /// Units Pending or Running.
    pub active: Vec<&'a WorkUnit>,
    /// Units that failed, were lost, or whose output was rejected, oldest first.
    pub failures: Vec<&'a WorkUnit>,
    /// The highest attempt number so far.
    pub attempts: i64,
}

impl ChunkUnits<'_> {
    /// Whether the chunk needs a unit: nothing accepted, nothing running.
    pub fn needs_unit(&self) -> bool {
        self.accepted.is_none() && self.active.is_empty()
    }
}

/// A job's units, sorted by what they are and what they say.
#[derive(Debug, Default)]
pub(super) struct Tally<'a> {
    /// Render units by chunk index.
    pub chunks: BTreeMap<i64, ChunkUnits<'a>>,
    /// Verification units of sampled chunks, by the name of the unit whose output they check.
    pub sample_checks: HashMap<&'a str, Vec<&'a WorkUnit>>,
    /// Re-verification units of disputed chunks, by the name of the unit they check.
    pub dispute_checks: HashMap<&'a str, Vec<&'a WorkUnit>>,
    /// Every verification unit, of either kind.
    pub checks: Vec<&'a WorkUnit>,
}

/// Sorts a job's units. They are read in the order they finished, so "the first Succeeded unit"
/// of a chunk is the same one on every reconcile.
pub(super) fn tally<'a>(units: &[&'a WorkUnit]) -> Tally<'a> {
    let mut sorted: Vec<&WorkUnit> = units.to_vec();
    sorted.sort_by_key(|u| {
        (u.status.as_ref().and_then(|s| s.completion_time.clone()).map(|t| t.0), u.metadata.name.clone())
    });
    let mut tally = Tally::default();
    for unit in sorted {
        let labels = unit.metadata.labels.as_ref();
        if let Some(checked) = labels.and_then(|l| l.get(VERIFIES)) {
            let by_checked = if labels.is_some_and(|l| l.contains_key(DISPUTE_CHECK)) {
                &mut tally.dispute_checks
            } else {
                &mut tally.sample_checks
            };
            by_checked.entry(checked.as_str()).or_default().push(unit);
            tally.checks.push(unit);
            continue;
        }
        let Some(index) = labels.and_then(|l| l.get(CHUNK)).and_then(|c| c.parse().ok()) else { continue };
        let chunk = tally.chunks.entry(index).or_default();
        chunk.attempts = chunk.attempts.max(unit.spec.attempt);
        let rejected = labels.and_then(|l| l.get(VERDICT)).is_some_and(|v| v == MISMATCH);
        match phase(unit) {
            Some(WorkUnitPhase::Succeeded) if rejected => chunk.failures.push(unit),
            Some(WorkUnitPhase::Succeeded) if chunk.accepted.is_none() => chunk.accepted = Some(unit),
            // A duplicate success of a chunk already done: never counted, never paid.
            Some(WorkUnitPhase::Succeeded) => {}
            Some(WorkUnitPhase::Failed | WorkUnitPhase::Lost) => chunk.failures.push(unit),
            _ => chunk.active.push(unit),
        }
    }
    tally
}

impl<'a> Tally<'a> {
    /// The verification units of `checked`'s output: the sample's, and for a disputed chunk the
    /// dispute's.
    pub fn checks_of(&self, checked: &str, dispute: bool) -> Vec<&'a WorkUnit> {
        let by_checked = if dispute { &self.dispute_checks } else { &self.sample_checks };
        by_checked.get(checked).cloned().unwrap_or_default()
    }

    /// Rejects a chunk's accepted output: it counts as a failure and the chunk is rendered again.
    pub fn reject(&mut self, index: i64) {
        if let Some(chunk) = self.chunks.get_mut(&index)
            && let Some(accepted) = chunk.accepted.take()
        {
            chunk.failures.push(accepted);
        }
    }

    /// The accepted unit of every chunk that has one.
    pub fn accepted(&self) -> Vec<&'a WorkUnit> {
        self.chunks.values().filter_map(|c| c.accepted).collect()
    }

    /// Render units Pending or Running.
    pub fn active(&self) -> Vec<&'a WorkUnit> {
        self.chunks.values().flat_map(|c| c.active.iter().copied()).collect()
    }

    /// Members whose output of this job another provider could not reproduce.
    pub fn caught(&self) -> std::collections::BTreeSet<String> {
        self.chunks
            .values()
            .flat_map(|c| &c.failures)
            .filter(|u| {
                u.metadata.labels.as_ref().and_then(|l| l.get(VERDICT)).is_some_and(|v| v == MISMATCH)
            })
            .map(|u| member_of(u))
            .collect()
    }

    /// Members that failed [`JOB_BLOCKLIST_FAILURES`] units of this job or more: they take no more
    /// of it.
    pub fn blocklisted(&self) -> Vec<String> {
        let mut failures_by_member: BTreeMap<String, usize> = BTreeMap::new();
        for unit in self.chunks.values().flat_map(|c| &c.failures) {
            *failures_by_member.entry(member_of(unit)).or_default() += 1;
        }
        failures_by_member.into_iter().filter(|(_, n)| *n >= JOB_BLOCKLIST_FAILURES).map(|(m, _)| m).collect()
    }

    /// Chunks that failed more often than the job retries one, with nothing running.
    pub fn failed_for_good<'c>(&self, chunks: &'c [Chunk], retries_per_chunk: i64) -> Vec<&'c Chunk> {
        chunks
            .iter()
            .filter(|c| {
                self.chunks
                    .get(&c.index)
                    .is_some_and(|s| s.needs_unit() && s.failures.len() as i64 > retries_per_chunk)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render_job::plan::fixtures::{unit, verify_unit};

    #[test]
    fn a_chunk_is_done_by_its_first_success_and_a_rejected_output_counts_as_a_failure() {
        let first = unit(0, 1, "a", Some("Succeeded"), 10);
        let duplicate = unit(0, 2, "b", Some("Succeeded"), 10);
        let lost = unit(1, 1, "c", Some("Lost"), 99);
        let mut rejected = unit(2, 1, "a", Some("Succeeded"), 10);
        rejected.metadata.labels.get_or_insert_with(Default::default).insert(VERDICT.into(), MISMATCH.into());
        let running = unit(2, 2, "b", Some("Running"), 0);
        let t = tally(&[&duplicate, &first, &lost, &rejected, &running]);
        assert_eq!(t.chunks[&0].accepted.map(|u| u.spec.attempt), Some(1));
        assert!(t.chunks[&0].failures.is_empty(), "a duplicate success is neither done nor failed");
        assert_eq!((t.chunks[&1].failures.len(), t.chunks[&1].needs_unit()), (1, true));
        assert_eq!(
            (t.chunks[&2].failures.len(), t.chunks[&2].active.len(), t.chunks[&2].attempts),
            (1, 1, 2)
        );
        assert_eq!(t.active().len(), 1);
    }

    #[test]
    fn verification_units_are_kept_apart_by_kind() {
        let sample = verify_unit("shot-00000-1", "b", 1, "Succeeded", Some(true));
        let mut dispute = verify_unit("shot-00000-1", "c", 2, "Running", None);
        dispute
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(DISPUTE_CHECK.into(), "true".into());
        let t = tally(&[&sample, &dispute]);
        assert!(t.chunks.is_empty(), "a check renders no chunk");
        assert_eq!(t.checks_of("shot-00000-1", false).len(), 1);
        assert_eq!(t.checks_of("shot-00000-1", true)[0].spec.attempt, 2);
    }

    #[test]
    fn repeated_failures_blocklist_a_member_and_exhausted_chunks_fail_for_good() {
        let units: Vec<WorkUnit> = (0..3).map(|i| unit(i, 1, "a", Some("Failed"), 0)).collect();
        let refs: Vec<&WorkUnit> = units.iter().collect();
        let mut t = tally(&refs);
        assert_eq!(t.blocklisted(), ["a"]);
        let chunks =
            super::super::chunks(&pictor_crds::v1alpha1::FrameRange { start: 1, end: 30, step: 1 }, 10);
        assert_eq!(t.failed_for_good(&chunks, 0).len(), 3);
        assert!(t.failed_for_good(&chunks, 1).is_empty(), "one retry left each");

        let ok = unit(0, 2, "b", Some("Succeeded"), 10);
        t = tally(&[&ok]);
        t.reject(0);
        assert_eq!((t.chunks[&0].accepted.is_none(), t.chunks[&0].failures.len()), (true, 1));
    }
}
