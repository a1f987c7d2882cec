//! The plan as a whole: what a job's owner sees reconcile after reconcile. Each stage has its
//! own tests next to it.

use super::fixtures::*;
use super::*;
use pictor_crds::contract::labels::{CHUNK, DISPUTE_CHECK, VERIFIES};
use pictor_crds::v1alpha1::RenderJobPhase;
use serde_json::json;

#[test]
fn chunks_cover_every_selected_frame_once() {
    let range = FrameRange { start: 1, end: 240, step: 1 };
    let c = chunks(&range, 10);
    assert_eq!(c.len(), 24);
    assert_eq!((c[23].first, c[23].last, c[23].frames), (231, 240, 10));
    let stepped = chunks(&FrameRange { start: 1, end: 25, step: 2 }, 5);
    let shape: Vec<_> = stepped.iter().map(|c| (c.first, c.last, c.frames)).collect();
    assert_eq!(shape, [(1, 9, 5), (11, 19, 5), (21, 25, 3)]);
}

#[test]
fn a_new_job_places_chunks_on_the_cheapest_members_within_their_free_gpus() {
    let members = [member("a", "nvidia", "RTX-4090", 3, 100), member("b", "amd", "RX-7900", 10, 200)];
    let p = run(&job(100, json!({})), &[], &members);
    assert_eq!(p.create.len(), 10);
    let on_a = p.create.iter().filter(|u| u.metadata.namespace.as_deref() == Some("pictor-member-a")).count();
    assert_eq!(on_a, 3, "a has 3 free GPUs, the rest go to b");
    let first = &p.create[0];
    assert_eq!(first.metadata.name.as_deref(), Some("shot-00000-1"));
    assert_eq!(first.spec.frames, "1-10");
    assert!(first.spec.pods[0].args.contains(&"--first=1".to_string()));
    assert_eq!(first.spec.pods[0].annotations["pictor.network/fake-run-seconds"], "3");
    assert_eq!(p.status.phase, Some(RenderJobPhase::Rendering));
    assert_eq!(p.status.frames.as_ref().unwrap().running, 100);
}

#[test]
fn every_frame_is_counted_once_and_lost_units_are_never_paid() {
    let members = [member("a", "nvidia", "RTX-4090", 8, 100)];
    let units = [
        unit(0, 1, "a", Some("Succeeded"), 10),
        unit(0, 2, "a", Some("Succeeded"), 10), // a duplicate success of the same chunk
        unit(1, 1, "b", Some("Lost"), 99),
        unit(1, 2, "a", Some("Succeeded"), 20),
    ];
    let p = run(&job(20, json!({})), &units, &members);
    assert!(p.create.is_empty());
    let frames = p.status.frames.unwrap();
    assert_eq!((frames.done, frames.total), (20, 20));
    assert_eq!(p.status.phase, Some(RenderJobPhase::Succeeded));
    assert_eq!(
        p.status.cost_octas,
        10 + 20,
        "GPU-seconds × 3600 octas/GPU-hour: the Lost unit and the duplicate are not paid"
    );
    assert_eq!(p.status.providers, ["a"]);
    assert_eq!(p.status.progress.as_deref(), Some("100%"));
}

#[test]
fn a_failed_chunk_goes_to_another_member_and_fails_the_job_after_its_retries() {
    let members = [member("a", "nvidia", "RTX-4090", 8, 100), member("b", "nvidia", "RTX-4090", 8, 200)];
    let p = run(&job(10, json!({})), &[unit(0, 1, "a", Some("Failed"), 0)], &members);
    assert_eq!(p.create.len(), 1);
    assert_eq!(p.create[0].metadata.namespace.as_deref(), Some("pictor-member-b"), "not again on a");
    assert_eq!(p.create[0].spec.attempt, 2);
    assert_eq!(p.status.failed_chunks.len(), 1);

    let exhausted = [
        unit(0, 1, "a", Some("Failed"), 0),
        unit(0, 2, "b", Some("Failed"), 0),
        unit(0, 3, "a", Some("Lost"), 0),
    ];
    let p = run(
        &job(20, json!({})),
        &[exhausted.to_vec(), vec![unit(1, 1, "b", Some("Running"), 0)]].concat(),
        &members,
    );
    assert_eq!(p.status.phase, Some(RenderJobPhase::Failed));
    assert!(p.create.is_empty());
    assert_eq!(
        p.delete,
        [("pictor-member-b".to_string(), "shot-00001-1".to_string())],
        "the rest is cancelled"
    );
    assert_eq!(p.ready.1, "ChunkFailed");
}

#[test]
fn a_member_failing_three_units_of_a_job_gets_no_more_of_it() {
    let members = [member("a", "nvidia", "RTX-4090", 8, 100), member("b", "nvidia", "RTX-4090", 8, 200)];
    let units = [
        unit(0, 1, "a", Some("Failed"), 0),
        unit(1, 1, "a", Some("Failed"), 0),
        unit(2, 1, "a", Some("Failed"), 0),
    ];
    let p = run(&job(40, json!({})), &units, &members);
    assert_eq!(p.create.len(), 4);
    assert!(p.create.iter().all(|u| u.metadata.namespace.as_deref() == Some("pictor-member-b")));
}

#[test]
fn a_budget_no_member_meets_keeps_the_job_pending_with_the_reason() {
    let members = [member("a", "nvidia", "RTX-4090", 8, 90_000_000)];
    let p = run(&job(10, json!({"budget": {"maxPricePerGpuHour": 1000}})), &[], &members);
    assert!(p.create.is_empty());
    assert_eq!(p.status.phase, Some(RenderJobPhase::Pending));
    assert_eq!(p.ready.1, "NoMemberFits");
    assert_eq!(p.awaiting_placement, 1, "the one chunk waits for a member");
    assert!(
        p.ready.2.contains("under 0.00001 APT/GPU-hour") && p.ready.2.contains("too expensive"),
        "{}",
        p.ready.2
    );

    let total = run(&job(100, json!({"budget": {"maxTotal": 1}})), &[], &members);
    assert!(total.create.is_empty());
    assert_eq!(total.ready.1, "BudgetExhausted");
}

#[test]
fn suspending_cancels_the_running_units() {
    let members = [member("a", "nvidia", "RTX-4090", 8, 100)];
    let p = run(&job(20, json!({"suspend": true})), &[unit(0, 1, "a", Some("Running"), 0)], &members);
    assert_eq!(p.status.phase, Some(RenderJobPhase::Cancelled));
    assert_eq!(p.delete.len(), 1);
    assert_eq!(p.awaiting_placement, 0, "a cancelled job waits for nothing");
    assert!(p.create.is_empty());
}

#[test]
fn in_flight_units_are_bounded() {
    let members = [member("a", "nvidia", "RTX-4090", 1000, 100)];
    let j = job(100_000, json!({}));
    let units: Vec<&WorkUnit> = vec![];
    let ms: Vec<&GpuCluster> = members.iter().collect();
    let s = RenderSettings { max_in_flight: 25, ..settings() };
    let p = plan(&j, &units, &ms, &mut Claims::new(), &s, now());
    assert_eq!(p.create.len(), 25, "100,000 frames do not mean 10,000 objects at once");
    assert_eq!(p.awaiting_placement, 10_000 - 25, "the rest wait for room");
}

#[test]
fn a_rendered_chunk_is_verified_on_another_member_before_the_job_succeeds() {
    let members = [member("a", "nvidia", "RTX-4090", 8, 100), member("b", "nvidia", "RTX-4090", 8, 200)];
    let all = job(10, json!({"verificationPercent": 100}));
    let rendered = unit(0, 1, "a", Some("Succeeded"), 10);
    let p = run(&all, std::slice::from_ref(&rendered), &members);
    assert_eq!(p.status.phase, Some(RenderJobPhase::Verifying));
    assert_eq!(p.create.len(), 1);
    let check = &p.create[0];
    assert_eq!(
        check.metadata.namespace.as_deref(),
        Some("pictor-member-b"),
        "never the member that rendered it"
    );
    assert_eq!(check.metadata.labels.as_ref().unwrap()[VERIFIES], "shot-00000-1");
    // An ordinary render of one frame, drawn from the hub's key, into the check's own folder.
    assert_eq!(check.spec.pods[0].command, ["pictor-render-worker", "render"]);
    let frame: i64 = check.spec.frames.parse().unwrap();
    assert!((1..=10).contains(&frame), "{frame}");
    let args = &check.spec.pods[0].args;
    assert!(
        args.contains(&format!("--first={frame}")) && args.contains(&format!("--last={frame}")),
        "{args:?}"
    );
    assert!(args.contains(&"--output=s3://out/a/checks/shot-00000-1-v1/".to_string()), "{args:?}");

    let passed = run(
        &all,
        &[rendered.clone(), verify_unit("shot-00000-1", "b", 1, "Succeeded", Some(true))],
        &members,
    );
    assert_eq!(passed.status.phase, Some(RenderJobPhase::Succeeded));
    assert_eq!(passed.status.cost_octas, 10 + 2, "the verification render is paid too");
}

#[test]
fn a_mismatch_rejects_the_output_and_renders_the_chunk_again_elsewhere() {
    let members = [member("a", "nvidia", "RTX-4090", 8, 100), member("b", "nvidia", "RTX-4090", 8, 200)];
    let all = job(10, json!({"verificationPercent": 100}));
    let units = [
        unit(0, 1, "a", Some("Succeeded"), 10),
        verify_unit("shot-00000-1", "b", 1, "Succeeded", Some(false)),
    ];
    let p = run(&all, &units, &members);
    let mismatched: Vec<_> = p
        .marks
        .iter()
        .filter(|m| m.labels.get(VERDICT).is_some_and(|v| v == MISMATCH))
        .map(|m| (m.namespace.as_str(), m.name.as_str()))
        .collect();
    assert_eq!(mismatched, [("pictor-member-a", "shot-00000-1")]);
    assert_eq!(p.status.cost_octas, 2, "rejected output is not paid");
    let again = p
        .create
        .iter()
        .find(|u| u.metadata.labels.as_ref().unwrap().contains_key(CHUNK))
        .expect("the chunk again");
    assert_eq!((again.metadata.namespace.as_deref(), again.spec.attempt), (Some("pictor-member-b"), 2));
    assert_eq!(p.status.phase, Some(RenderJobPhase::Rendering));
}

#[test]
fn without_a_second_provider_of_the_gpus_the_job_finishes_unverified_and_says_so() {
    let members = [member("a", "nvidia", "RTX-4090", 8, 100), member("b", "amd", "RX-7900", 8, 200)];
    let nvidia_only = job(10, json!({"verificationPercent": 100, "gpu": {"vendor": "nvidia"}}));
    let p = run(&nvidia_only, &[unit(0, 1, "a", Some("Succeeded"), 10)], &members);
    assert!(p.create.is_empty());
    assert_eq!(p.status.phase, Some(RenderJobPhase::Succeeded));
    assert_eq!(p.ready.1, "SucceededUnverified");
    assert_eq!(
        p.marks[0].labels[pictor_crds::contract::labels::BILLING],
        "accrued",
        "accepted unverified, and paid"
    );
    assert!(p.ready.2.contains("no Ready member offers nvidia GPUs"), "{}", p.ready.2);
}

fn marks_of<'a>(p: &'a RenderPlan, name: &str) -> Vec<&'a crate::accrual::UnitMark> {
    p.marks.iter().filter(|m| m.name == name).collect()
}

#[test]
fn verified_units_accrue_with_their_dispute_window_and_unverified_ones_wait() {
    let members = [member("a", "nvidia", "RTX-4090", 8, 100), member("b", "nvidia", "RTX-4090", 8, 200)];
    let all = job(10, json!({"verificationPercent": 100}));
    let rendered = unit(0, 1, "a", Some("Succeeded"), 10);
    let running =
        run(&all, &[rendered.clone(), verify_unit("shot-00000-1", "b", 1, "Running", None)], &members);
    assert!(running.marks.is_empty(), "output awaiting verification does not accrue: {:?}", running.marks);

    let passed =
        run(&all, &[rendered, verify_unit("shot-00000-1", "b", 1, "Succeeded", Some(true))], &members);
    let accrued: Vec<&str> = passed.marks.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(accrued, ["shot-00000-1", "shot-00000-1-v1"], "the output and its verification are paid");
    let mark = &passed.marks[0];
    assert_eq!(mark.labels[pictor_crds::contract::labels::BILLING], "accrued");
    assert_eq!(
        mark.annotations[pictor_crds::contract::annotations::PAYABLE_AFTER],
        "2026-11-25T12:10:00Z",
        "now + the window"
    );
    assert_eq!(
        mark.finalizers.as_deref(),
        Some(&[pictor_crds::contract::finalizers::SETTLEMENT.to_string()][..])
    );
    assert_eq!(passed.status.cost_octas, 10 + 2);
}

#[test]
fn a_disputed_chunk_is_held_verified_again_and_then_paid_or_forfeited() {
    let members = [member("a", "nvidia", "RTX-4090", 8, 100), member("b", "nvidia", "RTX-4090", 8, 200)];
    let mut disputed_job = job(10, json!({}));
    disputed_job.metadata.annotations =
        Some([(pictor_crds::contract::annotations::DISPUTE.to_string(), "1-10".to_string())].into());
    let mut rendered = unit(0, 1, "a", Some("Succeeded"), 10);
    rendered.spec.frames = "1-10".into();
    let accrued = with_labels(
        rendered.clone(),
        &[(pictor_crds::contract::labels::BILLING, "accrued")],
        &[(pictor_crds::contract::annotations::PAYABLE_AFTER, "2026-11-25T12:05:00Z")],
    );

    // Inside the window: held, and a dispute check placed on another member.
    let p = run(&disputed_job, std::slice::from_ref(&accrued), &members);
    assert_eq!(marks_of(&p, "shot-00000-1")[0].labels[pictor_crds::contract::labels::BILLING], "held");
    assert_eq!(p.create.len(), 1);
    let check = &p.create[0];
    assert_eq!(check.metadata.namespace.as_deref(), Some("pictor-member-b"));
    assert!(check.metadata.labels.as_ref().unwrap().contains_key(DISPUTE_CHECK));
    assert_eq!(p.status.phase, Some(RenderJobPhase::Verifying));
    assert_eq!(p.dispute.as_ref().map(|d| d.1), Some("Reverifying"));

    let held = with_labels(accrued.clone(), &[(pictor_crds::contract::labels::BILLING, "held")], &[]);
    let dispute_check = |passed| {
        with_labels(
            verify_unit("shot-00000-1", "b", 1, "Succeeded", Some(passed)),
            &[(DISPUTE_CHECK, "true")],
            &[],
        )
    };
    // It reproduces: paid at once, and the dispute is decided.
    let cleared = run(&disputed_job, &[held.clone(), dispute_check(true)], &members);
    let release = marks_of(&cleared, "shot-00000-1");
    assert_eq!(release[0].labels[pictor_crds::contract::labels::BILLING], "accrued");
    assert!(release[0].annotations.contains_key(pictor_crds::contract::annotations::DISPUTE_CLEARED));
    assert_eq!(cleared.status.phase, Some(RenderJobPhase::Succeeded));
    let after = with_labels(
        held.clone(),
        &[(pictor_crds::contract::labels::BILLING, "accrued")],
        &[(pictor_crds::contract::annotations::DISPUTE_CLEARED, "x")],
    );
    let settled = run(&disputed_job, &[after, dispute_check(true)], &members);
    assert_eq!(settled.dispute.as_ref().map(|d| d.1), Some("Decided"));
    assert!(marks_of(&settled, "shot-00000-1").is_empty(), "decided once");

    // It does not: forfeited, never paid, and the chunk rendered again elsewhere.
    let upheld = run(&disputed_job, &[held.clone(), dispute_check(false)], &members);
    let forfeit = marks_of(&upheld, "shot-00000-1");
    assert_eq!(forfeit[0].labels[pictor_crds::contract::labels::BILLING], "forfeited");
    assert_eq!(forfeit[0].labels[VERDICT], MISMATCH);
    assert_eq!(upheld.create.len(), 1);
    assert_eq!(upheld.create[0].metadata.namespace.as_deref(), Some("pictor-member-b"));
    assert_eq!(upheld.status.cost_octas, 2, "only the dispute check is paid");

    // The new render of the chunk is not disputed again.
    let forfeited =
        with_labels(held, &[(pictor_crds::contract::labels::BILLING, "forfeited"), (VERDICT, MISMATCH)], &[]);
    let mut again = unit(0, 2, "b", Some("Succeeded"), 12);
    again.spec.frames = "1-10".into();
    let next = run(&disputed_job, &[forfeited, dispute_check(false), again], &members);
    assert_eq!(marks_of(&next, "shot-00000-2")[0].labels[pictor_crds::contract::labels::BILLING], "accrued");
    assert_eq!(next.dispute.as_ref().map(|d| d.1), Some("Decided"));
    assert_eq!(next.status.phase, Some(RenderJobPhase::Succeeded));
}

#[test]
fn a_dispute_after_the_window_or_of_unknown_frames_is_refused_with_what_to_do() {
    let members = [member("a", "nvidia", "RTX-4090", 8, 100), member("b", "nvidia", "RTX-4090", 8, 200)];
    let mut late = job(10, json!({}));
    late.metadata.annotations =
        Some([(pictor_crds::contract::annotations::DISPUTE.to_string(), "1-10,5-7".to_string())].into());
    let mut rendered = unit(0, 1, "a", Some("Succeeded"), 10);
    rendered.spec.frames = "1-10".into();
    let accrued = with_labels(
        rendered,
        &[(pictor_crds::contract::labels::BILLING, "accrued")],
        &[(pictor_crds::contract::annotations::PAYABLE_AFTER, "2026-11-25T11:00:00Z")],
    );
    let p = run(&late, &[accrued], &members);
    assert!(p.marks.is_empty() && p.create.is_empty(), "a payable unit is not held");
    let (open, reason, message) = p.dispute.unwrap();
    assert!(!open);
    assert_eq!(reason, "DisputeRefused");
    assert!(message.contains("window closed") && message.contains("no chunk has frames 5-7"), "{message}");
}

#[test]
fn a_member_caught_in_a_job_has_its_other_chunks_checked_and_is_paid_nothing_for_the_job() {
    let members = [member("a", "nvidia", "RTX-4090", 8, 100), member("b", "nvidia", "RTX-4090", 8, 200)];
    let none_sampled = job(30, json!({"verificationPercent": 0}));
    let caught = with_labels(unit(0, 1, "a", Some("Succeeded"), 10), &[(VERDICT, MISMATCH)], &[]);
    let accrued = with_labels(
        unit(1, 1, "a", Some("Succeeded"), 10),
        &[(BILLING, "accrued")],
        &[(pictor_crds::contract::annotations::PAYABLE_AFTER, "2026-11-25T12:05:00Z")],
    );
    let fresh = unit(2, 1, "a", Some("Succeeded"), 10);
    let honest = unit(0, 2, "b", Some("Succeeded"), 10);
    let p = run(&none_sampled, &[caught, accrued, fresh, honest], &members);
    // Chunks 1 and 2 of the caught member are checked though the job samples none...
    let checked: Vec<&str> = p
        .create
        .iter()
        .filter_map(|u| u.metadata.labels.as_ref()?.get(VERIFIES).map(String::as_str))
        .collect();
    assert_eq!(checked, ["shot-00001-1", "shot-00002-1"]);
    // ...and nothing of the job is paid to it, while the honest member's chunk accrues.
    for name in ["shot-00001-1", "shot-00002-1"] {
        let marks = marks_of(&p, name);
        assert!(
            marks.iter().any(|m| m.labels.get(BILLING).is_some_and(|b| b == "forfeited")),
            "{name}: {marks:?}"
        );
    }
    assert!(marks_of(&p, "shot-00000-2").iter().any(|m| m.labels[BILLING] == "accrued"));
}
