//! The result a worker leaves behind: JSON on stdout and in the result file, by default
//! `/dev/termination-log`, which Kubernetes turns into the container's termination message for
//! the member agent to read from the pod's status.

use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where Kubernetes looks for the termination message unless the pod says otherwise.
pub const DEFAULT_RESULT_FILE: &str = "/dev/termination-log";
/// Kubernetes keeps at most this many bytes of a termination message.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// What can go wrong writing the result.
#[derive(Debug, thiserror::Error)]
pub enum TerminationError {
    #[error("cannot write the result file {path}: {source}; pass --result-file PATH")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot encode the result as JSON: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Whether `message` fits in a termination message whole.
pub fn fits_termination_message(message: &str) -> bool {
    message.len() <= TERMINATION_MESSAGE_LIMIT
}

/// `{"error": …}` for a worker that failed, cut to fit in a termination message.
pub fn failure_message(error: &str) -> String {
    #[derive(Serialize)]
    struct Failure<'a> {
        error: &'a str,
    }
    let encode = |end: usize| serde_json::to_string(&Failure { error: &error[..end] }).unwrap_or_default();
    let whole = encode(error.len());
    if fits_termination_message(&whole) {
        return whole;
    }
    // The longest head of the error that fits once escaped (escaping makes the length of the
    // JSON grow faster than that of the text, so search rather than compute); the head says
    // what failed, so that is what is kept.
    let (mut fits, mut too_long) = (0, error.len());
    while too_long - fits > 1 {
        let mut middle = fits + (too_long - fits) / 2;
        while !error.is_char_boundary(middle) {
            middle -= 1;
        }
        if middle <= fits {
            break;
        }
        if fits_termination_message(&encode(middle)) {
            fits = middle;
        } else {
            too_long = middle;
        }
    }
    encode(fits)
}

/// Writes `message` to the result file. Outside Kubernetes the default file's folder may be
/// missing or not writable; that is only worth a warning, since stdout has the result too.
pub fn write_result_file(path: &Path, message: &str) -> Result<(), TerminationError> {
    match std::fs::write(path, message) {
        Ok(()) => Ok(()),
        Err(source) if path == Path::new(DEFAULT_RESULT_FILE) => {
            tracing::warn!(path = %path.display(), error = %source, "no termination log here; the result is on stdout only");
            Ok(())
        }
        Err(source) => Err(TerminationError::Write { path: path.into(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_failures_are_cut_to_the_limit_and_stay_json() {
        let error = "Blender failed: \"quoted\" ünïcode\n".repeat(400);
        let message = failure_message(&error);
        assert!(fits_termination_message(&message), "{} bytes", message.len());
        assert!(message.len() > TERMINATION_MESSAGE_LIMIT - 64, "cut too much: {} bytes", message.len());
        let parsed: serde_json::Value = serde_json::from_str(&message).unwrap();
        assert!(parsed["error"].as_str().unwrap().starts_with("Blender failed"));
        assert_eq!(failure_message("short"), r#"{"error":"short"}"#);
    }

    #[test]
    fn an_explicit_result_file_must_be_writable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("result.json");
        write_result_file(&file, "{}").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "{}");
        assert!(write_result_file(&dir.path().join("missing/result.json"), "{}").is_err());
    }
}
