//! The hub's member controller: a member is Ready while its agent's Lease is fresh; a member
//! silent past the grace period turns NotReady and its unfinished WorkUnits become Lost, so the
//! job controllers place that work again elsewhere.

use crate::events;
use crate::runner::{Hub, Reconciler, SharedWatch};
use crate::unit_writes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use pictor_crds::contract::annotations::CORDONED_AT_MISMATCHES;
use pictor_crds::contract::member_namespace;
use pictor_crds::v1alpha1::{CONDITION_READY, GpuCluster, Reputation, WorkUnit, WorkUnitPhase};
use pictor_crds::v1alpha1::{Observation, set_condition};
use std::sync::Arc;
use std::time::Duration;

/// A member whose outputs other providers could not reproduce this many times (its
/// `status.reputation.verificationMismatches`) is cordoned by the hub: no new work until an admin
/// looks (`kubectl patch gpucluster <name> --type merge -p '{"spec":{"cordoned":false}}'`).
pub const CORDON_AFTER_MISMATCHES: i64 = 3;

/// Field manager of what the member controller writes.
pub const FIELD_MANAGER: &str = "pictor-member-controller";

/// What the heartbeat says about a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Heartbeat fresh.
    pub ready: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// For a person.
    pub message: String,
    /// Last renewal seen.
    pub last_heartbeat: Option<Time>,
}

/// The controller's own link to the hub's API server. Silence is only the member's fault when
/// the controller itself has heard the hub continuously for the whole grace period: after a hub
/// outage every Lease looks stale, yet no member stopped.
#[derive(Clone, Copy, Debug)]
pub struct HubLink {
    last_contact: std::time::Instant,
    reachable_since: std::time::Instant,
}

impl HubLink {
    /// A link first heard at `now`.
    pub fn new(now: std::time::Instant) -> Self {
        Self { last_contact: now, reachable_since: now }
    }

    /// Records an answer from the hub at `now`; a gap longer than `outage` restarts the count.
    pub fn contact(&mut self, now: std::time::Instant, outage: Duration) {
        if now.saturating_duration_since(self.last_contact) > outage {
            self.reachable_since = now;
        }
        self.last_contact = now;
    }

    /// How long the hub has answered without a gap.
    pub fn reachable_for(&self, now: std::time::Instant) -> Duration {
        now.saturating_duration_since(self.reachable_since)
    }
}

/// Judges a member by when the hub last saw its agent renew its Lease (`heard`, on the hub's
/// clock: [`crate::heartbeats`]); `None` while a stale Lease cannot be blamed on the member
/// because the hub itself has not been reachable for `grace` yet.
pub fn judge(
    heard: Option<Time>,
    now: Time,
    grace: Duration,
    hub_reachable_for: Duration,
) -> Option<Verdict> {
    let verdict = judge_lease(heard, now, grace);
    let blames_member = !verdict.ready && verdict.last_heartbeat.is_some();
    (!blames_member || hub_reachable_for >= grace).then_some(verdict)
}

fn judge_lease(heard: Option<Time>, now: Time, grace: Duration) -> Verdict {
    match heard {
        None => Verdict {
            ready: false,
            reason: "AgentNeverConnected",
            message: "the member's agent has not renewed its Lease yet; install pictor-provider with the kubeconfig `pictor member add` printed".into(),
            last_heartbeat: None,
        },
        Some(at) => {
            let silent = now.0.duration_since(at.0).as_secs_f64().max(0.0);
            if silent <= grace.as_secs_f64() {
                Verdict { ready: true, reason: "HeartbeatFresh", message: format!("heartbeat {silent:.0}s ago"), last_heartbeat: Some(at) }
            } else {
                Verdict {
                    ready: false,
                    reason: "HeartbeatMissed",
                    message: format!("no heartbeat for {silent:.0}s (grace {}s); unfinished units are Lost", grace.as_secs()),
                    last_heartbeat: Some(at),
                }
            }
        }
    }
}

/// Units of a silent member that must be given up: those not finished (and not already Lost).
pub fn units_to_lose<'a>(units: impl IntoIterator<Item = &'a WorkUnit>) -> Vec<&'a WorkUnit> {
    units
        .into_iter()
        .filter(|u| {
            matches!(
                u.status.as_ref().and_then(|s| s.phase),
                None | Some(WorkUnitPhase::Pending | WorkUnitPhase::Running)
            )
        })
        .collect()
}

/// A member's record from the units in its namespace: succeeded, failed or lost, and outputs
/// another provider could not reproduce.
pub fn reputation<'a>(units: impl IntoIterator<Item = &'a WorkUnit>) -> Reputation {
    let mut record = Reputation::default();
    for unit in units {
        let mismatch = unit
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(pictor_crds::contract::labels::VERDICT))
            .is_some_and(|v| v == pictor_crds::contract::MISMATCH);
        match unit.status.as_ref().and_then(|s| s.phase) {
            _ if mismatch => record.verification_mismatches += 1,
            Some(WorkUnitPhase::Succeeded) => record.units_succeeded += 1,
            Some(WorkUnitPhase::Failed | WorkUnitPhase::Lost) => record.units_failed += 1,
            _ => {}
        }
    }
    record
}

/// Whether the hub cordons a member now: its verification mismatches reached
/// [`CORDON_AFTER_MISMATCHES`] and grew since the hub last cordoned it (`cordoned_at`), so an
/// admin who uncordons a member is not overruled until it is caught again.
pub fn cordon_now(mismatches: i64, cordoned: bool, cordoned_at: Option<i64>) -> bool {
    !cordoned && mismatches >= CORDON_AFTER_MISMATCHES && cordoned_at.is_none_or(|at| mismatches > at)
}

/// Why a member reconcile failed; every variant is retried with a backoff.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// A write to the hub failed.
    #[error("{what}: {source}")]
    Hub { what: String, source: kube::Error },
    /// Marking a unit of the member Lost failed.
    #[error(transparent)]
    Units(Box<unit_writes::UnitWriteError>),
}

/// The controller's link to the hub, shared with the watches that prove it answers.
pub type SharedHubLink = Arc<std::sync::Mutex<HubLink>>;

/// Records an answer from the hub on a shared link.
pub fn hub_answered(link: &SharedHubLink, grace: Duration) {
    link.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contact(std::time::Instant::now(), grace / 2);
}

/// The member controller, for the runner.
pub struct MemberController {
    /// How long a member may be silent before it is NotReady and its unfinished units Lost.
    pub grace: Duration,
    /// The controller's own link to the hub.
    pub hub_link: SharedHubLink,
}

impl MemberController {
    fn hub_reachable_for(&self) -> Duration {
        self.hub_link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .reachable_for(std::time::Instant::now())
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

impl Reconciler for MemberController {
    type Object = GpuCluster;
    type Error = MemberError;
    const CONTROLLER: &'static str = "gpucluster";
    // A member owns nothing on the hub that its deletion must release first: `pictor member
    // remove` deletes its namespace, units and RBAC.
    const FINALIZER: Option<&'static str> = None;

    fn api(client: kube::Client, _: &GpuCluster) -> Api<GpuCluster> {
        Api::all(client)
    }

    fn metric_label(error: &MemberError) -> &'static str {
        match error {
            MemberError::Hub { .. } => "hub_write_failed",
            MemberError::Units(_) => "unit_write_failed",
        }
    }

    fn retry_after(&self) -> Duration {
        Duration::from_secs(2)
    }

    fn shared_watch(hub: &Hub) -> Option<SharedWatch<GpuCluster>> {
        hub.index.take_cluster_events()
    }

    async fn apply(&self, cluster: Arc<GpuCluster>, hub: &Hub) -> Result<Action, MemberError> {
        let member = cluster.name_any();
        let namespace = member_namespace(&member);
        let heard = hub.index.heard_at(&namespace).map(Time);
        let now = now();
        let Some(verdict) = judge(heard.clone(), now.clone(), self.grace, self.hub_reachable_for()) else {
            tracing::info!(member = %member, "heartbeat stale right after a hub outage; waiting a grace period before judging");
            return Ok(Action::requeue(self.grace / 3));
        };

        let mut conditions = cluster.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
        let was_ready = conditions.iter().find(|c| c.type_ == CONDITION_READY).map(|c| c.status == "True");
        let observation = Observation {
            type_: CONDITION_READY,
            status: verdict.ready,
            reason: verdict.reason,
            message: verdict.message.clone(),
        };
        set_condition(&mut conditions, observation, cluster.meta().generation, now.clone());
        let units_here = hub.index.units_of_member(&member);
        let reputation = reputation(units_here.iter().map(|u| u.as_ref()));
        let body = serde_json::json!({
            "apiVersion": GpuCluster::api_version(&()),
            "kind": GpuCluster::kind(&()),
            "status": {"lastHeartbeat": verdict.last_heartbeat, "conditions": conditions, "reputation": reputation,
                       "observedGeneration": cluster.meta().generation},
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        Api::<GpuCluster>::all(hub.client.clone())
            .patch_status(&member, &params, &Patch::Apply(&body))
            .await
            .map_err(|source| MemberError::Hub { what: format!("write status of {member}"), source })?;
        hub_answered(&self.hub_link, self.grace);
        if let Some(event) = events::member_event(was_ready, verdict.ready, verdict.reason, &verdict.message)
        {
            if verdict.ready {
                tracing::info!(member = %member, reason = verdict.reason, "member Ready");
            } else {
                tracing::warn!(member = %member, reason = verdict.reason, message = %verdict.message, "member NotReady");
            }
            events::publish(&hub.recorder, &cluster.object_ref(&()), vec![event]).await;
        }

        let cordoned_at = cluster.annotations().get(CORDONED_AT_MISMATCHES).and_then(|v| v.parse().ok());
        if cordon_now(reputation.verification_mismatches, cluster.spec.cordoned, cordoned_at) {
            let mismatches = reputation.verification_mismatches;
            let body = serde_json::json!({
                "metadata": {"annotations": {CORDONED_AT_MISMATCHES: mismatches.to_string()}},
                "spec": {"cordoned": true},
            });
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
            Api::<GpuCluster>::all(hub.client.clone())
                .patch(&member, &params, &Patch::Merge(&body))
                .await
                .map_err(|source| MemberError::Hub { what: format!("cordon {member}"), source })?;
            tracing::warn!(member = %member, mismatches, "member cordoned: its outputs were not reproduced");
            events::publish(
                &hub.recorder,
                &cluster.object_ref(&()),
                vec![events::member_cordoned(mismatches)],
            )
            .await;
        }

        if !verdict.ready && verdict.last_heartbeat.is_some() {
            for unit in units_to_lose(units_here.iter().map(|u| u.as_ref())) {
                let name = unit.name_any();
                let message = format!("member {member} went silent: {}", verdict.message);
                unit_writes::mark_lost(&hub.client, FIELD_MANAGER, unit, "MemberLost", message, now.clone())
                    .await
                    .map_err(|source| MemberError::Units(Box::new(source)))?;
                tracing::warn!(member = %member, unit = %name, job = %unit.spec.job_ref.name, "unit Lost: its member is silent");
                let lost = || events::unit_lost(&name, &member, &verdict.message);
                events::publish(&hub.recorder, &unit.object_ref(&()), vec![lost()]).await;
                events::publish(&hub.recorder, &events::job_reference(&unit.spec.job_ref), vec![lost()])
                    .await;
            }
        }
        // Staleness is a matter of time, not of events: look again well within the grace period,
        // and just after it would run out, so a silent member is judged on time.
        let left = heard
            .and_then(|h| Duration::try_from(now.0.duration_since(h.0)).ok())
            .map_or(self.grace, |silent| self.grace.saturating_sub(silent));
        let next = if verdict.ready { left + Duration::from_millis(250) } else { self.grace / 3 };
        Ok(Action::requeue(next.min(self.grace / 3).max(Duration::from_millis(250))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn fresh_lease_is_ready_and_stale_one_is_not() {
        let grace = Duration::from_secs(30);
        let up = grace;
        assert!(judge(Some(at(100)), at(120), grace, up).unwrap().ready);
        let stale = judge(Some(at(100)), at(131), grace, up).unwrap();
        assert_eq!((stale.ready, stale.reason), (false, "HeartbeatMissed"));
        assert_eq!(stale.last_heartbeat, Some(at(100)));
        let never = judge(None, at(0), grace, Duration::ZERO).unwrap();
        assert_eq!((never.ready, never.reason), (false, "AgentNeverConnected"));
    }

    #[test]
    fn a_stale_lease_right_after_a_hub_outage_is_not_blamed_on_the_member() {
        let grace = Duration::from_secs(30);
        assert_eq!(judge(Some(at(100)), at(200), grace, Duration::from_secs(5)), None);
        assert!(
            judge(Some(at(195)), at(200), grace, Duration::from_secs(5)).unwrap().ready,
            "fresh is fresh"
        );

        let start = std::time::Instant::now();
        let mut link = HubLink::new(start);
        link.contact(start + Duration::from_secs(10), Duration::from_secs(15));
        assert_eq!(link.reachable_for(start + Duration::from_secs(10)), Duration::from_secs(10));
        // A 20 s silence of the hub itself restarts the count.
        link.contact(start + Duration::from_secs(30), Duration::from_secs(15));
        assert_eq!(link.reachable_for(start + Duration::from_secs(31)), Duration::from_secs(1));
    }

    #[test]
    fn repeated_mismatches_cordon_once_and_an_admins_uncordon_holds_until_the_next() {
        assert!(!cordon_now(CORDON_AFTER_MISMATCHES - 1, false, None));
        assert!(cordon_now(CORDON_AFTER_MISMATCHES, false, None));
        assert!(!cordon_now(CORDON_AFTER_MISMATCHES, true, None), "cordoned already");
        assert!(
            !cordon_now(CORDON_AFTER_MISMATCHES, false, Some(CORDON_AFTER_MISMATCHES)),
            "uncordoned by an admin"
        );
        assert!(
            cordon_now(CORDON_AFTER_MISMATCHES + 1, false, Some(CORDON_AFTER_MISMATCHES)),
            "caught again"
        );
    }

    #[test]
    fn only_unfinished_units_are_lost() {
        let unit = |phase: Option<&str>| -> WorkUnit {
            let mut u = serde_json::json!({"apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
                "metadata": {"name": phase.unwrap_or("none")},
                "spec": {"jobRef": {"kind": "RenderJob", "namespace": "d", "name": "j", "uid": "1"},
                         "pods": [{"name": "p", "image": "i", "gpuVendor": "nvidia", "gpus": 1}], "agreedPricePerGpuHour": 1}});
            if let Some(p) = phase {
                u["status"] = serde_json::json!({"phase": p});
            }
            serde_json::from_value(u).unwrap()
        };
        let units = [
            unit(None),
            unit(Some("Pending")),
            unit(Some("Running")),
            unit(Some("Succeeded")),
            unit(Some("Failed")),
            unit(Some("Lost")),
        ];
        let lost: Vec<_> = units_to_lose(&units).into_iter().map(|u| u.name_any()).collect();
        assert_eq!(lost, ["none", "Pending", "Running"]);
        let mut rejected = unit(Some("Succeeded"));
        rejected.metadata.labels =
            Some([("pictor.network/verdict".to_string(), "mismatch".to_string())].into());
        let record = reputation(units.iter().chain([&rejected]));
        assert_eq!((record.units_succeeded, record.units_failed, record.verification_mismatches), (1, 2, 1));
    }
}
