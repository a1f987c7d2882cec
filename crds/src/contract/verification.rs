//! Verification: the report the render worker's `verify` command writes (a tool for a person
//! checking a frame by hand), and the hub's own [`Judgement`] of a verification unit, which is
//! what decides. A member is untrusted: its verdict is never read.

use serde::{Deserialize, Serialize};

/// PSNR is reported up to this many dB: identical frames have an infinite PSNR, which JSON
/// cannot carry.
pub const REPORTED_PSNR_CEILING_DB: f64 = 100.0;

/// What a verification render found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationReport {
    /// The frame rendered again.
    pub frame: i64,
    /// PSNR of the re-render against the original, at most [`REPORTED_PSNR_CEILING_DB`]; 0 for
    /// a size mismatch.
    pub psnr_db: f64,
    /// Whether the re-render reproduced the original: a mismatch is a successful verification
    /// with `passed: false`.
    pub passed: bool,
    /// SHA-256 of the original as read: the digest the provider's report should carry.
    pub sha256: String,
    /// SHA-256 of the re-rendered frame.
    pub rerendered_sha256: String,
    /// Why the frames could not be compared pixel by pixel, when they could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
    /// The device of the re-render.
    pub device: String,
}

impl VerificationReport {
    /// The report in a unit's `status.message`, if the message is one.
    pub fn from_message(message: &str) -> Option<Self> {
        serde_json::from_str(message).ok()
    }

    /// The report as a termination message.
    pub fn to_message(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }
}

/// The lowest PSNR, in dB, of the whole frame at which a re-render reproduces it: two honest
/// Cycles renders of one frame differ only by noise, well above it; a skipped frame is far below.
pub const REPRODUCED_AT_PSNR_DB: f64 = 30.0;

/// The lowest PSNR, in dB, of the frame's worst 16-pixel tile at which a re-render reproduces
/// it: render noise is spread evenly, while a neighbouring frame delivered instead (an object
/// moved) or an edited patch is far off in a few tiles. Set from `make bench-verification`
/// (e2e/VERIFICATION-BENCHMARK.md): honest pairs' worst tiles and cheats' on either side.
pub const REPRODUCED_AT_TILE_PSNR_DB: f64 = 35.0;

/// What the hub found comparing a verification render with the frame it checks. The hub reads
/// both frames itself, checks each against the digest its member reported and compares the
/// pixels; a verifier never judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Finding {
    /// The re-render matches the original.
    Reproduced,
    /// The original differs from the re-render, or its bytes are not what its member reported.
    Differs,
    /// The verification's own output is missing, unreadable or not what its member reported:
    /// no verdict, and the verification is not paid.
    CheckInvalid,
}

/// The hub's judgement of one verification unit, in its [`super::annotations::JUDGEMENT`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Judgement {
    /// The frame compared.
    pub frame: i64,
    /// What the hub found.
    pub finding: Finding,
    /// PSNR of the re-render against the original, at most [`REPORTED_PSNR_CEILING_DB`]; 0 when
    /// the pixels were not compared.
    pub psnr_db: f64,
    /// Why, for a person.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Judgement {
    /// The judgement in an annotation value, if it is one.
    pub fn from_annotation(value: &str) -> Option<Self> {
        serde_json::from_str(value).ok()
    }

    /// The judgement as an annotation value.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("a judgement always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_judgement_reads_back_from_its_annotation() {
        let j = Judgement { frame: 3, finding: Finding::Differs, psnr_db: 12.0, detail: "far off".into() };
        assert_eq!(Judgement::from_annotation(&j.to_annotation()), Some(j));
        assert_eq!(Judgement::from_annotation("{}"), None);
    }

    fn report(passed: bool) -> VerificationReport {
        VerificationReport {
            frame: 7,
            psnr_db: if passed { REPORTED_PSNR_CEILING_DB } else { 12.5 },
            passed,
            sha256: "ab".into(),
            rerendered_sha256: "cd".into(),
            mismatch: None,
            device: "CPU".into(),
        }
    }

    #[test]
    fn a_report_reads_back_from_its_message() {
        for passed in [true, false] {
            assert_eq!(VerificationReport::from_message(&report(passed).to_message()), Some(report(passed)));
        }
        assert!(report(true).to_message().contains(r#""psnrDb":100.0"#));
    }

    #[test]
    fn a_message_that_is_not_a_whole_report_is_no_verdict() {
        assert_eq!(VerificationReport::from_message(r#"{"passed": true}"#), None);
        assert_eq!(VerificationReport::from_message("pod verify failed: Error"), None);
    }
}
