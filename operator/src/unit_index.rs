//! Every WorkUnit on the hub, keyed the ways the controllers ask for them: by the job they belong
//! to, by the member that runs them, and the GPUs promised to units not started yet. Fed one
//! watch event at a time from the hub's single WorkUnit watch, so a reconcile reads the dozens of
//! units of its job instead of filtering every unit of the network, and placement's claims are
//! kept up to date instead of summed again per decision.

use crate::placement::Claims;
use pictor_crds::contract::annotations::GPU_MODEL;
use pictor_crds::contract::labels::JOB_UID;
use pictor_crds::v1alpha1::{WorkUnit, WorkUnitPhase};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A unit's place on the hub: (namespace, name).
pub type UnitKey = (String, String);

/// The units, with their keyed views kept in step.
#[derive(Debug, Default)]
pub struct UnitIndex {
    units: HashMap<UnitKey, Arc<WorkUnit>>,
    by_job: HashMap<String, BTreeSet<UnitKey>>,
    by_member: HashMap<String, BTreeSet<UnitKey>>,
    claims: Claims,
}

fn key_of(unit: &WorkUnit) -> UnitKey {
    (unit.metadata.namespace.clone().unwrap_or_default(), unit.metadata.name.clone().unwrap_or_default())
}

fn job_of(unit: &WorkUnit) -> Option<&str> {
    unit.metadata.labels.as_ref()?.get(JOB_UID).map(String::as_str)
}

fn member_of(unit: &WorkUnit) -> Option<&str> {
    unit.member()
}

/// The GPUs a unit holds promised on its member: what it asks for, until its member starts it.
fn claim_of(unit: &WorkUnit) -> Option<((String, String), i64)> {
    let waiting = matches!(unit.status.as_ref().and_then(|s| s.phase), None | Some(WorkUnitPhase::Pending));
    let model = unit.metadata.annotations.as_ref()?.get(GPU_MODEL)?;
    let gpus = unit.spec.pods.iter().fold(0i64, |sum, p| sum.saturating_add(p.gpus));
    let member = member_of(unit)?;
    (waiting && gpus > 0).then(|| ((member.to_string(), model.clone()), gpus))
}

fn remove_key(map: &mut HashMap<String, BTreeSet<UnitKey>>, by: Option<&str>, key: &UnitKey) {
    if let Some(by) = by
        && let Some(keys) = map.get_mut(by)
    {
        keys.remove(key);
        if keys.is_empty() {
            map.remove(by);
        }
    }
}

impl UnitIndex {
    /// An index of `units`, as a watch's first list delivers them.
    pub fn of(units: impl IntoIterator<Item = WorkUnit>) -> Self {
        let mut index = Self::default();
        for unit in units {
            index.apply(unit);
        }
        index
    }

    /// Records a unit as the watch last saw it, replacing what was known of it.
    pub fn apply(&mut self, unit: WorkUnit) {
        let key = key_of(&unit);
        self.forget(&key);
        if let Some(job) = job_of(&unit) {
            self.by_job.entry(job.to_string()).or_default().insert(key.clone());
        }
        if let Some(member) = member_of(&unit) {
            self.by_member.entry(member.to_string()).or_default().insert(key.clone());
        }
        if let Some((at, gpus)) = claim_of(&unit) {
            let claimed = self.claims.entry(at).or_default();
            *claimed = claimed.saturating_add(gpus);
        }
        self.units.insert(key, Arc::new(unit));
    }

    /// Forgets a deleted unit.
    pub fn delete(&mut self, unit: &WorkUnit) {
        self.forget(&key_of(unit));
    }

    fn forget(&mut self, key: &UnitKey) {
        let Some(old) = self.units.remove(key) else { return };
        remove_key(&mut self.by_job, job_of(&old), key);
        remove_key(&mut self.by_member, member_of(&old), key);
        if let Some((at, gpus)) = claim_of(&old)
            && let Some(claimed) = self.claims.get_mut(&at)
        {
            *claimed -= gpus;
            if *claimed <= 0 {
                self.claims.remove(&at);
            }
        }
    }

    /// The units of one job, by the job's UID label.
    pub fn of_job(&self, job_uid: &str) -> Vec<Arc<WorkUnit>> {
        self.collect(self.by_job.get(job_uid))
    }

    /// The units in one member's namespace.
    pub fn of_member(&self, member: &str) -> Vec<Arc<WorkUnit>> {
        self.collect(self.by_member.get(member))
    }

    fn collect(&self, keys: Option<&BTreeSet<UnitKey>>) -> Vec<Arc<WorkUnit>> {
        keys.into_iter().flatten().filter_map(|k| self.units.get(k).cloned()).collect()
    }

    /// GPUs promised to units that their members have not started yet, by member and model.
    pub fn claims(&self) -> Claims {
        self.claims.clone()
    }

    /// Every unit, in no particular order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<WorkUnit>> {
        self.units.values()
    }

    /// How many units there are.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unit(member: &str, name: &str, job: &str, phase: Option<&str>, gpus: i64) -> WorkUnit {
        let mut u = json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
            "metadata": {"name": name, "namespace": format!("pictor-member-{member}"),
                         "labels": {JOB_UID: job}, "annotations": {GPU_MODEL: "H100"}},
            "spec": {"jobRef": {"kind": "RenderJob", "namespace": "d", "name": "j", "uid": job},
                     "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": gpus}],
                     "agreedPricePerGpuHour": 1}
        });
        if let Some(phase) = phase {
            u["status"] = json!({"phase": phase});
        }
        serde_json::from_value(u).unwrap()
    }

    fn names(units: Vec<Arc<WorkUnit>>) -> Vec<String> {
        let mut names: Vec<String> = units.iter().map(|u| u.metadata.name.clone().unwrap()).collect();
        names.sort();
        names
    }

    fn claim(index: &UnitIndex, member: &str) -> i64 {
        index.claims().get(&(member.to_string(), "H100".to_string())).copied().unwrap_or(0)
    }

    #[test]
    fn units_are_found_by_job_and_by_member() {
        let index = UnitIndex::of([
            unit("a", "j1-0", "j1", None, 1),
            unit("b", "j1-1", "j1", Some("Running"), 1),
            unit("a", "j2-0", "j2", Some("Succeeded"), 1),
        ]);
        assert_eq!(names(index.of_job("j1")), ["j1-0", "j1-1"]);
        assert_eq!(names(index.of_member("a")), ["j1-0", "j2-0"]);
        assert!(index.of_job("nobody").is_empty());
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn claims_follow_each_unit_until_its_member_starts_it() {
        let mut index =
            UnitIndex::of([unit("a", "u0", "j", None, 2), unit("a", "u1", "j", Some("Pending"), 1)]);
        assert_eq!(claim(&index, "a"), 3);
        index.apply(unit("a", "u0", "j", Some("Running"), 2));
        assert_eq!(claim(&index, "a"), 1, "a running unit holds real GPUs, not a claim");
        index.delete(&unit("a", "u1", "j", Some("Pending"), 1));
        assert_eq!(claim(&index, "a"), 0);
        assert!(index.claims().is_empty(), "no empty entries are kept");
    }

    #[test]
    fn a_unit_seen_again_replaces_what_was_known_of_it() {
        let mut index = UnitIndex::of([unit("a", "u", "j1", None, 1)]);
        index.apply(unit("a", "u", "j2", None, 4));
        assert!(index.of_job("j1").is_empty(), "relabelled away from j1");
        assert_eq!(names(index.of_job("j2")), ["u"]);
        assert_eq!(claim(&index, "a"), 4);
        index.delete(&unit("a", "u", "j2", None, 4));
        assert!(index.is_empty() && index.of_member("a").is_empty());
    }
}
