//! Jobs, members and units as the plan's tests build them.

use super::*;
use crate::placement::Claims;
use pictor_crds::contract::annotations::JUDGEMENT;
use pictor_crds::contract::{Finding, Judgement};
use serde_json::json;

pub(super) fn job(end: i64, extra: serde_json::Value) -> RenderJob {
    let mut spec = json!({"scene": "s3://scenes/a.blend", "frames": {"start": 1, "end": end}, "chunkSize": 10,
                          "output": {"location": "s3://out/a/"}, "retriesPerChunk": 2});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({"apiVersion": "pictor.network/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": "shot", "namespace": "art", "uid": "job-uid", "generation": 1}, "spec": spec}))
    .unwrap()
}

pub(super) fn member(name: &str, vendor: &str, model: &str, free: i64, price: i64) -> GpuCluster {
    serde_json::from_value(json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "GpuCluster", "metadata": {"name": name},
        "spec": {"tier": "community", "payoutAddress": "0x1", "pricePerGpuHour": {model: price}},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "r", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                   "inventory": {"nodes": 1, "totalGpus": free, "freeGpus": free,
                                 "pools": [{"vendor": vendor, "model": model, "memoryMib": 24000, "nodes": 1, "total": free, "free": free, "largestFreeOnNode": 1}]}}
    }))
    .unwrap()
}

pub(super) fn unit(
    chunk: i64,
    attempt: i64,
    member: &str,
    phase: Option<&str>,
    gpu_seconds: i64,
) -> WorkUnit {
    let mut u = json!({"apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
        "metadata": {"name": format!("shot-{chunk:05}-{attempt}"), "namespace": format!("pictor-member-{member}"),
                     "labels": {"pictor.network/chunk": chunk.to_string(), "pictor.network/job-uid": "job-uid"}},
        "spec": {"jobRef": {"kind": "RenderJob", "namespace": "art", "name": "shot", "uid": "job-uid"},
                 "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": 1}],
                 "agreedPricePerGpuHour": 3600, "attempt": attempt}});
    if let Some(p) = phase {
        u["status"] = json!({"phase": p, "gpuSeconds": gpu_seconds, "completionTime": format!("2026-01-01T00:00:{:02}Z", chunk % 60)});
    }
    serde_json::from_value(u).unwrap()
}

pub(super) fn settings() -> RenderSettings {
    RenderSettings {
        default_image: "pictor/render-worker:dev".into(),
        max_in_flight: 100,
        fake_run_seconds: Some(3),
        dispute_window: std::time::Duration::from_secs(600),
        verification_key: crate::verification_key::VerificationKey::new(b"the fixtures' verification key"),
    }
}

pub(super) fn now() -> Timestamp {
    "2026-11-25T12:00:00Z".parse().unwrap()
}

pub(super) fn run(job: &RenderJob, units: &[WorkUnit], members: &[GpuCluster]) -> RenderPlan {
    let units: Vec<&WorkUnit> = units.iter().collect();
    let members: Vec<&GpuCluster> = members.iter().collect();
    plan(job, &units, &members, &mut Claims::new(), &settings(), now())
}

/// A verification unit of `checked` on `member`; `passed` is the hub's judgement once it
/// compared the frames (`Some(true)`: reproduced, `Some(false)`: differs), `None`: not judged.
pub(super) fn verify_unit(
    checked: &str,
    member: &str,
    attempt: i64,
    phase: &str,
    passed: Option<bool>,
) -> WorkUnit {
    let mut u = json!({"apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
        "metadata": {"name": format!("{checked}-v{attempt}"), "namespace": format!("pictor-member-{member}"),
                     "labels": {"pictor.network/verifies": checked, "pictor.network/job-uid": "job-uid"}},
        "spec": {"jobRef": {"kind": "RenderJob", "namespace": "art", "name": "shot", "uid": "job-uid"},
                 "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": 1}],
                 "frames": "1", "agreedPricePerGpuHour": 3600, "attempt": attempt},
        "status": {"phase": phase, "gpuSeconds": 2}});
    if let Some(p) = passed {
        u["metadata"]["annotations"] =
            json!({JUDGEMENT: judgement(if p { Finding::Reproduced } else { Finding::Differs })});
    }
    serde_json::from_value(u).unwrap()
}

/// A judgement annotation value.
pub(super) fn judgement(finding: Finding) -> String {
    let psnr_db = if finding == Finding::Reproduced { 40.0 } else { 12.5 };
    Judgement { frame: 1, finding, psnr_db, detail: String::new() }.to_annotation()
}

pub(super) fn with_labels(
    mut u: WorkUnit,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> WorkUnit {
    let l = u.metadata.labels.get_or_insert_with(Default::default);
    l.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let a = u.metadata.annotations.get_or_insert_with(Default::default);
    a.extend(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    u
}
