use super::*;
use serde_json::json;

fn job(extra: serde_json::Value) -> TrainingJob {
    let mut spec = json!({"image": "pytorch/pytorch:2.9.0", "workers": 4, "gpu": {"count": 8},
                          "checkpoint": "s3://ckpt/run/", "restartLimit": 2});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"apiVersion": "pictor.network/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "llm", "namespace": "ai", "uid": "job-uid", "generation": 1}, "spec": spec}))
    .unwrap()
}

fn member(name: &str, free: i64, largest: i64) -> GpuCluster {
    serde_json::from_value(json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "GpuCluster", "metadata": {"name": name},
        "spec": {"tier": "partner", "payoutAddress": "0x1", "defaultPricePerGpuHour": 100},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "r", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                   "inventory": {"nodes": 4, "totalGpus": free, "freeGpus": free,
                                 "pools": [{"vendor": "nvidia", "model": "H100", "memoryMib": 81559, "nodes": 4, "total": free, "free": free, "largestFreeOnNode": largest}]}}
    }))
    .unwrap()
}

fn unit(attempt: i64, phase: &str, exit_codes: &[i32]) -> WorkUnit {
    serde_json::from_value(json!({"apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
        "metadata": {"name": format!("llm-a{attempt}"), "namespace": "pictor-member-farm"},
        "spec": {"jobRef": {"kind": "TrainingJob", "namespace": "ai", "name": "llm", "uid": "job-uid"},
                 "pods": [{"name": "worker-0", "image": "i", "gpuVendor": "nvidia", "gpus": 8}],
                 "agreedPricePerGpuHour": 3600, "attempt": attempt},
        "status": {"phase": phase, "gpuSeconds": 100, "exitCodes": exit_codes}}))
    .unwrap()
}

fn run(job: &TrainingJob, units: &[WorkUnit]) -> TrainingPlan {
    let members = [member("small", 8, 8), member("farm", 32, 8)];
    let ms: Vec<&GpuCluster> = members.iter().collect();
    let us: Vec<&WorkUnit> = units.iter().collect();
    plan(job, &us, &ms, &mut Claims::new(), &TrainingSettings::default(), Timestamp::now())
}

#[test]
fn the_gang_lands_whole_in_the_member_that_holds_it_with_torchrun_env() {
    let p = run(&job(json!({})), &[]);
    let unit = p.create.into_iter().next().expect("a gang unit");
    assert_eq!(unit.metadata.namespace.as_deref(), Some("pictor-member-farm"));
    assert_eq!(unit.metadata.name.as_deref(), Some("llm-a1"));
    assert_eq!(unit.spec.pods.len(), 4);
    assert_eq!(unit.spec.rendezvous_port, Some(23456));
    let env: BTreeMap<_, _> =
        unit.spec.pods[2].env.iter().map(|e| (e.name.as_str(), e.value.as_str())).collect();
    assert_eq!(env["MASTER_ADDR"], "worker-0.llm-a1");
    assert_eq!(env["PET_MASTER_ADDR"], "worker-0.llm-a1");
    assert_eq!(env["MASTER_PORT"], "23456");
    assert_eq!(env["WORLD_SIZE"], "32");
    assert_eq!((env["RANK"], env["PET_NODE_RANK"]), ("2", "2"));
    assert_eq!((env["PET_NNODES"], env["PET_NPROC_PER_NODE"]), ("4", "8"));
    assert_eq!(env["PICTOR_CHECKPOINT_URL"], "s3://ckpt/run/");
    assert_eq!(p.status.phase, Some(TrainingJobPhase::Pending));
}

#[test]
fn a_failed_gang_restarts_until_the_limit() {
    let p = run(&job(json!({})), &[unit(1, "Failed", &[1])]);
    assert_eq!(p.create[0].metadata.name.as_deref(), Some("llm-a2"));
    assert_eq!((p.status.phase, p.status.restarts), (Some(TrainingJobPhase::Restarting), 1));
    assert_eq!(p.status.cost_octas, 100, "the failed attempt's GPU time is paid");

    let p = run(&job(json!({})), &[unit(1, "Failed", &[1]), unit(2, "Lost", &[]), unit(3, "Failed", &[137])]);
    assert!(p.create.is_empty());
    assert_eq!(p.status.phase, Some(TrainingJobPhase::Failed));
    assert_eq!(p.ready.1, "RestartLimitReached");
}

#[test]
fn exit_code_policy_retries_signals_only() {
    let policy = json!({"restartPolicy": "ExitCode"});
    assert_eq!(
        run(&job(policy.clone()), &[unit(1, "Failed", &[137])]).status.phase,
        Some(TrainingJobPhase::Restarting)
    );
    let p = run(&job(policy), &[unit(1, "Failed", &[2])]);
    assert_eq!((p.status.phase, p.ready.1), (Some(TrainingJobPhase::Failed), "WorkerFailed"));
}

#[test]
fn no_member_holds_a_bigger_gang_and_the_job_says_why() {
    let p = run(&job(json!({"workers": 5})), &[]);
    assert!(p.create.is_empty());
    assert_eq!(p.ready.1, "NoMemberFits");
    assert!(p.ready.2.contains("5 pods × 8 GPUs in one member"), "{}", p.ready.2);
}

/// An attempt its member refused before running it, as the agent reports one.
fn refused_unit(attempt: i64) -> WorkUnit {
    let mut u = unit(attempt, "Failed", &[]);
    let status = u.status.as_mut().unwrap();
    status.gpu_seconds = 0;
    status.message = Some("refused by this provider: pod worker-0: image i is not allowed".into());
    status.conditions = vec![serde_json::from_value(json!({"type": "Ready", "status": "False", "reason": "Refused",
        "message": "refused by this provider: pod worker-0: image i is not allowed", "lastTransitionTime": "2026-01-01T00:00:00Z"}))
    .unwrap()];
    u
}

#[test]
fn a_gang_its_member_refused_goes_elsewhere_for_free_whatever_the_restart_policy() {
    let never = job(json!({"restartPolicy": "Never", "workers": 1}));
    let p = run(&never, &[refused_unit(1)]);
    let next = p.create.first().expect("placed again despite restartPolicy Never");
    assert_eq!(next.metadata.name.as_deref(), Some("llm-a2"));
    assert_eq!(
        next.metadata.namespace.as_deref(),
        Some("pictor-member-small"),
        "not back to the refusing member"
    );
    assert_eq!(p.status.restarts, 0, "a refusal is no restart");
    assert_eq!(
        p.ready.2,
        "attempt 1 was refused by farm (refused by this provider: pod worker-0: image i is not allowed); attempt 2 is placed elsewhere"
    );

    // A gang that ran and failed is no refusal, even with the reason: it counts.
    let mut ran = refused_unit(1);
    ran.status.as_mut().unwrap().start_time =
        Some(pictor_crds::v1alpha1::Time(Timestamp::from_second(1_800_000_000).unwrap()));
    assert_eq!(run(&never, &[ran]).status.phase, Some(TrainingJobPhase::Failed));

    // Refusals do not use up the restart limit (2 here): two refusals and two failures restart again.
    let limit = job(json!({"workers": 1}));
    let units = [refused_unit(1), unit(2, "Failed", &[1]), refused_unit(3), unit(4, "Failed", &[1])];
    let p = run(&limit, &units);
    assert_eq!(p.create[0].metadata.name.as_deref(), Some("llm-a5"));
    assert_eq!(p.status.restarts, 2);
}
