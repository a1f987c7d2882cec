//! The verdict of a verification render: the render worker writes it as its termination
//! message, the member agent passes it on in the WorkUnit's `status.message`, and the hub reads
//! it back here. A member is untrusted: a message that is not a whole report is no verdict.

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

#[cfg(test)]
mod tests {
    use super::*;

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
