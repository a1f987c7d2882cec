//! The render worker's pods: what the hub asks `pictor-render-worker render` to do, for a chunk
//! and for a verification, written once from the job's spec (the worker's arguments are never read back).

use super::{Chunk, RenderSettings};
use pictor_crds::contract::annotations::FAKE_RUN_SECONDS;
use pictor_crds::v1alpha1::{GpuVendor, PodTemplate, RenderJob};
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
    if let Some(seconds) = settings.fake_run_seconds.filter(|_| !super::runs_for_real(job)) {
        annotations.insert(FAKE_RUN_SECONDS.to_string(), seconds.to_string());
    }
    PodTemplate {
        name: name.into(),
        image: settings.image_of(job).to_string(),
        command: vec!["pictor-render-worker".into(), name.into()],
        args: vec![],
        env: vec![],
        gpu_vendor: vendor,
        gpus: spec.gpu.count,
        resources: spec.resources.clone(),
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

/// The pod of a verification unit: an ordinary render of one `frame` into `location`, its own
/// folder. It is told nothing of the frame it will be compared with: the hub reads both and
/// judges them itself.
pub(super) fn verify_pod(
    job: &RenderJob,
    frame: i64,
    location: &str,
    vendor: GpuVendor,
    settings: &RenderSettings,
) -> PodTemplate {
    let one = Chunk { index: 0, first: frame, last: frame, frames: 1 };
    let mut pod = render_pod(job, &one, vendor, settings);
    for arg in pod.args.iter_mut() {
        if arg.starts_with("--output=") {
            *arg = format!("--output={location}");
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render_job::plan::fixtures::{job, settings};
    use pictor_crds::contract::annotations::REAL_RUN;
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
        let mut real = job(20, json!({}));
        real.metadata.annotations = Some([(REAL_RUN.to_string(), "true".to_string())].into());
        let pod = render_pod(&real, &chunk, GpuVendor::Any, &settings());
        assert!(!pod.annotations.contains_key(FAKE_RUN_SECONDS), "a real-run job's pods really run");
    }

    #[test]
    fn the_verify_pod_is_a_render_of_one_frame_into_its_own_folder() {
        let pod = verify_pod(&job(20, json!({})), 11, "s3://out/a/checks/u-v1/", GpuVendor::Any, &settings());
        assert_eq!(pod.command, ["pictor-render-worker", "render"]);
        for arg in
            ["--first=11", "--last=11", "--output=s3://out/a/checks/u-v1/", "--format=PNG", "--engine=Cycles"]
        {
            assert!(pod.args.contains(&arg.to_string()), "{arg} in {:?}", pod.args);
        }
        assert!(!pod.args.iter().any(|a| a.contains("original")), "the verifier is not told the original");
    }
}
