//! The render worker's pods: what the hub asks `pictor-render-worker render` and `verify` to
//! do, written once from the job's spec (the worker's arguments are never read back).

use super::{Chunk, RenderSettings};
use pictor_crds::contract::VerificationReport;
use pictor_crds::contract::annotations::{FAKE_RESULT, FAKE_RUN_SECONDS};
use pictor_crds::v1alpha1::{GpuVendor, OutputObject, PodTemplate, RenderJob};
use serde::Serialize;
use std::collections::BTreeMap;

/// A value as the RenderJob API spells it (`Cycles`, `OPEN_EXR`), which is how the worker's
/// flags take it.
fn api_name(value: impl Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The pod every worker of the job shares: image, GPUs, and on kwok how long it "runs".
fn worker_pod(job: &RenderJob, name: &str, vendor: GpuVendor, settings: &RenderSettings) -> PodTemplate {
    let spec = &job.spec;
    let mut annotations = BTreeMap::new();
    if let Some(seconds) = settings.fake_run_seconds {
        annotations.insert(FAKE_RUN_SECONDS.to_string(), seconds.to_string());
    }
    PodTemplate {
        name: name.into(),
        image: spec.renderer.image.clone().unwrap_or_else(|| settings.default_image.clone()),
        command: vec!["pictor-render-worker".into(), name.into()],
        args: vec![],
        env: vec![],
        gpu_vendor: vendor,
        gpus: spec.gpu.count,
        cpu: None,
        memory: None,
        annotations,
    }
}

/// The pod that renders one chunk into the job's output folder.
pub(super) fn render_pod(
    job: &RenderJob,
    chunk: &Chunk,
    vendor: GpuVendor,
    settings: &RenderSettings,
) -> PodTemplate {
    let spec = &job.spec;
    let mut pod = worker_pod(job, "render", vendor, settings);
    pod.args = vec![
        format!("--scene={}", spec.scene),
        format!("--first={}", chunk.first),
        format!("--last={}", chunk.last),
        format!("--step={}", spec.frames.step),
        format!("--output={}", spec.output.location),
        format!("--format={}", api_name(spec.output.format)),
        format!("--engine={}", api_name(spec.renderer.engine)),
    ];
    pod
}

/// The pod that renders `frame` again, in the job's format and engine, and compares it with
/// `original`. On kwok, `fake_verdict` is what the pod "reports".
pub(super) fn verify_pod(
    job: &RenderJob,
    frame: i64,
    original: &OutputObject,
    vendor: GpuVendor,
    settings: &RenderSettings,
    fake_verdict: Option<bool>,
) -> PodTemplate {
    let spec = &job.spec;
    let mut pod = worker_pod(job, "verify", vendor, settings);
    pod.args = vec![
        format!("--scene={}", spec.scene),
        format!("--frame={frame}"),
        format!("--original={}", original.url),
        format!("--format={}", api_name(spec.output.format)),
        format!("--engine={}", api_name(spec.renderer.engine)),
    ];
    if let Some(passed) = fake_verdict {
        let report = VerificationReport {
            frame,
            psnr_db: if passed { 100.0 } else { 12.5 },
            passed,
            sha256: original.sha256.clone(),
            rerendered_sha256: if passed { original.sha256.clone() } else { String::new() },
            mismatch: None,
            device: "CPU".into(),
        };
        pod.annotations.insert(FAKE_RESULT.into(), report.to_message());
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render_job::plan::fixtures::{job, settings};
    use serde_json::json;

    #[test]
    fn the_render_pod_names_the_chunk_format_and_engine_as_the_api_spells_them() {
        let exr = job(
            20,
            json!({"output": {"location": "s3://out/a/", "format": "OPEN_EXR"}, "renderer": {"engine": "Eevee"}}),
        );
        let chunk = Chunk { index: 1, first: 11, last: 20, frames: 10 };
        let pod = render_pod(&exr, &chunk, GpuVendor::Any, &settings());
        assert_eq!(pod.command, ["pictor-render-worker", "render"]);
        for arg in ["--first=11", "--last=20", "--format=OPEN_EXR", "--engine=Eevee", "--output=s3://out/a/"]
        {
            assert!(pod.args.contains(&arg.to_string()), "{arg} in {:?}", pod.args);
        }
        assert_eq!(pod.annotations[FAKE_RUN_SECONDS], "3");
    }

    #[test]
    fn the_verify_pod_reads_the_original_it_is_given_and_fakes_a_typed_verdict_on_kwok() {
        let original = OutputObject { url: "s3://out/a/frame_000011.png".into(), sha256: "ab".into() };
        let pod = verify_pod(&job(20, json!({})), 11, &original, GpuVendor::Any, &settings(), Some(false));
        assert_eq!(pod.command, ["pictor-render-worker", "verify"]);
        assert!(pod.args.contains(&"--original=s3://out/a/frame_000011.png".to_string()), "{:?}", pod.args);
        assert!(
            pod.args.contains(&"--format=PNG".to_string())
                && pod.args.contains(&"--engine=Cycles".to_string())
        );
        let verdict = VerificationReport::from_message(&pod.annotations[FAKE_RESULT]).unwrap();
        assert_eq!((verdict.frame, verdict.passed, verdict.sha256.as_str()), (11, false, "ab"));
    }
}
