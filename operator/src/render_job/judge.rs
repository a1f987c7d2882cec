//! The hub judges verification itself: for a verification unit that finished, it reads the frame
//! the chunk's renderer delivered and the frame the verifier rendered, checks each against the
//! SHA-256 its member reported, and compares the pixels (pictor-frames' comparison, the render
//! worker's). The [`Judgement`] goes on the verification unit as hub-written metadata; the plan
//! reads nothing else, so no member is ever its own judge.
//!
//! Local networks on kwok write no frames: there the judge stands in for the comparison, finding
//! every render reproduced except those of `--fake-mismatch-member`.

use crate::accrual::UnitMark;
use crate::render_job::plan::{check_location, reported_frame};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use pictor_crds::contract::annotations::JUDGEMENT;
use pictor_crds::contract::labels::VERIFIES;
use pictor_crds::contract::verification::{
    REPORTED_PSNR_CEILING_DB, REPRODUCED_AT_PSNR_DB, REPRODUCED_AT_TILE_PSNR_DB,
};
use pictor_crds::contract::{Finding, Judgement};
use pictor_crds::v1alpha1::{RenderJob, WorkUnit, WorkUnitPhase};
use pictor_frames::comparison::{self, ComparisonError, FrameComparison};
use pictor_frames::storage::{StorageError, StorageObject, StorageSettings};
use sha2::{Digest, Sha256};

/// Verification units judged per reconcile of a job: each reads two frames.
pub const JUDGED_PER_RECONCILE: usize = 8;

/// How the hub compares frames.
#[derive(Clone, Debug)]
pub enum FrameJudge {
    /// Reads both frames from object storage with the job's credentials and compares them.
    Storage,
    /// Local networks on kwok: no frames exist; every render reproduces except those of this
    /// member.
    Fake { mismatch_member: Option<String> },
}

/// Why a judgement could not be made this time (it is tried again on the next reconcile).
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The job's credentials Secret could not be read.
    #[error("read the job's credentials Secret {name}: {source}")]
    Credentials { name: String, source: kube::Error },
    /// The Secret holds a key that is no storage setting.
    #[error("the job's credentials Secret {name} holds {key}, which is no storage setting")]
    UnknownSetting { name: String, key: String },
    /// Neither frame could be read: storage itself is unreachable, nobody's fault yet.
    #[error("neither frame could be read: {original}; {check}")]
    StorageUnreachable { original: StorageError, check: StorageError },
}

/// The verification units of a job that finished and wait for the hub's judgement, with the
/// unit whose output each checks.
pub fn awaiting<'a>(units: &[&'a WorkUnit]) -> Vec<(&'a WorkUnit, &'a WorkUnit)> {
    let by_name = |name: &str| units.iter().copied().find(|u| u.metadata.name.as_deref() == Some(name));
    units
        .iter()
        .copied()
        .filter(|u| u.status.as_ref().and_then(|s| s.phase) == Some(WorkUnitPhase::Succeeded))
        .filter(|u| u.metadata.annotations.as_ref().is_none_or(|a| !a.contains_key(JUDGEMENT)))
        .filter_map(|check| {
            let checked = check.metadata.labels.as_ref()?.get(VERIFIES)?;
            Some((check, by_name(checked)?))
        })
        .take(JUDGED_PER_RECONCILE)
        .collect()
}

/// What the bytes of two frames say, as a pure function: the digests each member reported, then
/// the pixels. `None` for a frame that could not be read.
pub fn judge_bytes(frame: i64, original: Option<(&[u8], &str)>, check: Option<(&[u8], &str)>) -> Judgement {
    let judgement = |finding, psnr_db: f64, detail: String| Judgement {
        frame,
        finding,
        psnr_db: psnr_db.min(REPORTED_PSNR_CEILING_DB),
        detail,
    };
    let digest_differs =
        |bytes: &[u8], reported: &str| !reported.is_empty() && hex::encode(Sha256::digest(bytes)) != reported;
    let Some((check_bytes, check_reported)) = check else {
        return judgement(Finding::CheckInvalid, 0.0, "the verification's frame could not be read".into());
    };
    if digest_differs(check_bytes, check_reported) {
        return judgement(
            Finding::CheckInvalid,
            0.0,
            "the verification's frame is not what its member reported (SHA-256)".into(),
        );
    }
    let Some((original_bytes, original_reported)) = original else {
        return judgement(Finding::Differs, 0.0, "the delivered frame could not be read".into());
    };
    if digest_differs(original_bytes, original_reported) {
        return judgement(
            Finding::Differs,
            0.0,
            "the delivered frame is not what its member reported (SHA-256)".into(),
        );
    }
    match comparison::compare_encoded_frames(original_bytes, check_bytes) {
        Err(ComparisonError::Decode { which: "original", source }) => {
            judgement(Finding::Differs, 0.0, format!("the delivered frame is no image: {source}"))
        }
        Err(ComparisonError::Decode { source, .. }) => {
            judgement(Finding::CheckInvalid, 0.0, format!("the verification's frame is no image: {source}"))
        }
        Ok(FrameComparison::SizeMismatch { original, rerendered }) => judgement(
            Finding::Differs,
            0.0,
            format!(
                "the delivered frame is {}x{}, the re-render {}x{}",
                original.0, original.1, rerendered.0, rerendered.1
            ),
        ),
        Ok(compared @ FrameComparison::Compared { psnr_db, worst_tile_psnr_db }) => {
            let finding = if compared.reproduces() { Finding::Reproduced } else { Finding::Differs };
            let detail = format!(
                "PSNR {psnr_db:.1} dB, worst tile {worst_tile_psnr_db:.1} dB (reproduced at {REPRODUCED_AT_PSNR_DB} and {REPRODUCED_AT_TILE_PSNR_DB} dB or more)"
            );
            judgement(finding, psnr_db, detail)
        }
    }
}

impl FrameJudge {
    /// Judges the verification unit `check` of `accepted`'s output.
    pub async fn judge(
        &self,
        client: &kube::Client,
        job: &RenderJob,
        check: &WorkUnit,
        accepted: &WorkUnit,
    ) -> Result<Judgement, JudgeError> {
        let frame: i64 = check.spec.frames.parse().unwrap_or_default();
        match self {
            FrameJudge::Fake { mismatch_member } => {
                let differs = mismatch_member.is_some() && accepted.member() == mismatch_member.as_deref();
                let (finding, psnr_db) =
                    if differs { (Finding::Differs, 12.5) } else { (Finding::Reproduced, 100.0) };
                Ok(Judgement {
                    frame,
                    finding,
                    psnr_db,
                    detail: "local network: no frames to compare".into(),
                })
            }
            FrameJudge::Storage => {
                let settings = credentials(client, job).await?;
                let spec = &job.spec;
                let original = reported_frame(spec, frame, accepted, &spec.output.location);
                let location = check_location(spec, check.metadata.name.as_deref().unwrap_or_default());
                let rerendered = reported_frame(spec, frame, check, &location);
                let read = |url: String| {
                    let settings = settings.clone();
                    async move { StorageObject::open(&url, &settings)?.read().await }
                };
                let (original_bytes, check_bytes) =
                    tokio::join!(read(original.url.clone()), read(rerendered.url.clone()));
                match (original_bytes, check_bytes) {
                    (Err(original), Err(check))
                        if !matches!(original, StorageError::NotFound { .. })
                            && !matches!(check, StorageError::NotFound { .. }) =>
                    {
                        Err(JudgeError::StorageUnreachable { original, check })
                    }
                    (original_bytes, check_bytes) => Ok(judge_bytes(
                        frame,
                        original_bytes.ok().as_deref().map(|b| (b, original.sha256.as_str())),
                        check_bytes.ok().as_deref().map(|b| (b, rerendered.sha256.as_str())),
                    )),
                }
            }
        }
    }
}

/// The storage settings of a job: its credentials Secret, or none (`file://`, public HTTP).
async fn credentials(client: &kube::Client, job: &RenderJob) -> Result<StorageSettings, JudgeError> {
    let Some(name) = job.spec.credentials_secret.clone() else { return Ok(StorageSettings::default()) };
    let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(&name)
        .await
        .map_err(|source| JudgeError::Credentials { name: name.clone(), source })?;
    let pairs = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()));
    StorageSettings::from_pairs(pairs).map_err(|key| JudgeError::UnknownSetting { name, key })
}

/// Judges what waits for a judgement among a job's units; a unit storage could not be read for
/// is left for the next reconcile.
pub async fn judge_awaiting(
    judge: &FrameJudge,
    client: &kube::Client,
    job: &RenderJob,
    units: &[&WorkUnit],
) -> Vec<UnitMark> {
    let mut marks = Vec::new();
    for (check, accepted) in awaiting(units) {
        match judge.judge(client, job, check, accepted).await {
            Ok(judgement) => {
                tracing::info!(unit = ?check.metadata.name, checked = ?accepted.metadata.name, finding = ?judgement.finding, psnr_db = judgement.psnr_db, "verification judged");
                marks.push(UnitMark::of(check).annotation(JUDGEMENT, &judgement.to_annotation()));
            }
            Err(error) => tracing::warn!(unit = ?check.metadata.name, %error, "verification not judged yet"),
        }
    }
    marks
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, Rgba, RgbaImage};

    fn png(shift: u8) -> Vec<u8> {
        let frame = RgbaImage::from_fn(32, 18, |x, y| {
            if (8..16).contains(&x) && (4..12).contains(&y) {
                Rgba([240u8.wrapping_sub(shift), 240, 230, 255])
            } else {
                Rgba([(x * 8) as u8, (y * 14) as u8, 64, 255])
            }
        });
        let mut out = Vec::new();
        DynamicImage::ImageRgba8(frame)
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn a_faithful_re_render_reproduces_and_a_different_frame_does_not() {
        let (a, b) = (png(0), png(1));
        let same = judge_bytes(7, Some((&a, &sha(&a))), Some((&b, &sha(&b))));
        assert_eq!(same.finding, Finding::Reproduced, "{same:?}");
        let altered = RgbaImage::from_pixel(32, 18, Rgba([0, 0, 0, 255]));
        let mut black = Vec::new();
        DynamicImage::ImageRgba8(altered)
            .write_to(&mut std::io::Cursor::new(&mut black), image::ImageFormat::Png)
            .unwrap();
        let skipped = judge_bytes(7, Some((&black, &sha(&black))), Some((&a, &sha(&a))));
        assert_eq!(skipped.finding, Finding::Differs, "{skipped:?}");
    }

    #[test]
    fn reported_digests_are_checked_on_both_sides() {
        let a = png(0);
        let lying_renderer = judge_bytes(1, Some((&a, "00")), Some((&a, &sha(&a))));
        assert_eq!(lying_renderer.finding, Finding::Differs);
        assert!(lying_renderer.detail.contains("delivered frame"), "{}", lying_renderer.detail);
        let lying_verifier = judge_bytes(1, Some((&a, &sha(&a))), Some((&a, "00")));
        assert_eq!(lying_verifier.finding, Finding::CheckInvalid);
        let missing = judge_bytes(1, None, Some((&a, &sha(&a))));
        assert_eq!(missing.finding, Finding::Differs);
        let nothing = judge_bytes(1, Some((&a, &sha(&a))), None);
        assert_eq!(nothing.finding, Finding::CheckInvalid);
        let garbage = judge_bytes(1, Some((&a, "")), Some((b"not a png", "")));
        assert_eq!(garbage.finding, Finding::CheckInvalid);
    }

    #[tokio::test]
    async fn the_storage_judge_reads_both_frames_from_where_their_members_reported_them() {
        let dir = tempfile::tempdir().unwrap();
        let output = url::Url::from_directory_path(dir.path()).unwrap().to_string();
        let job: RenderJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": "shot", "namespace": "art", "uid": "u"},
            "spec": {"scene": "s3://x/a.blend", "frames": {"start": 1, "end": 10}, "output": {"location": output}}
        }))
        .unwrap();
        let (delivered, rerendered) = (png(0), png(1));
        std::fs::write(dir.path().join("frame_000003.png"), &delivered).unwrap();
        let check_dir = dir.path().join("checks/shot-00000-1-v1");
        std::fs::create_dir_all(&check_dir).unwrap();
        std::fs::write(check_dir.join("frame_000003.png"), &rerendered).unwrap();
        let unit = |name: &str, frames: &str, outputs: serde_json::Value| -> WorkUnit {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
                "metadata": {"name": name, "namespace": "pictor-member-a"},
                "spec": {"jobRef": {"kind": "RenderJob", "namespace": "art", "name": "shot", "uid": "u"},
                         "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": 1}],
                         "frames": frames, "agreedPricePerGpuHour": 1},
                "status": {"phase": "Succeeded", "outputs": outputs}
            }))
            .unwrap()
        };
        let accepted = unit(
            "shot-00000-1",
            "1-10",
            serde_json::json!([
            {"url": format!("{output}frame_000003.png"), "sha256": sha(&delivered)}]),
        );
        // The verifier's report lists nothing: its frame is found where it was told to write.
        let check = unit("shot-00000-1-v1", "3", serde_json::json!([]));
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let judgement = FrameJudge::Storage.judge(&client, &job, &check, &accepted).await.unwrap();
        assert_eq!((judgement.frame, judgement.finding), (3, Finding::Reproduced), "{judgement:?}");

        std::fs::write(dir.path().join("frame_000003.png"), png(200)).unwrap();
        let judgement = FrameJudge::Storage.judge(&client, &job, &check, &accepted).await.unwrap();
        assert_eq!(judgement.finding, Finding::Differs, "bytes changed after the report: {judgement:?}");
    }
}
