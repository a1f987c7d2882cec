//! Crash points for the crash tests: the process exits at the n-th time it reaches a step
//! (`signed`, `recorded`, `submitted`, `confirming`), as if it had been killed there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Exit code of a crash point, so a test tells it from a real failure.
pub const EXIT_CODE: i32 = 86;

/// Steps a crash point can name.
pub const STEPS: [&str; 4] = ["signed", "recorded", "submitted", "confirming"];

/// Where to exit.
#[derive(Clone, Debug)]
pub struct CrashPoint {
    step: String,
    at: u32,
    seen: Arc<AtomicU32>,
}

impl CrashPoint {
    /// Parses `STEP` or `STEP:N` (the n-th time, from 1).
    pub fn parse(value: &str) -> Result<Self, String> {
        let (step, at) = value.split_once(':').unwrap_or((value, "1"));
        if !STEPS.contains(&step) {
            return Err(format!("{step:?} is not a crash step: use one of {}", STEPS.join(", ")));
        }
        let at: u32 = at
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{at:?}: write STEP:N with N from 1"))?;
        Ok(CrashPoint { step: step.to_string(), at, seen: Arc::default() })
    }

    /// Exits the process if this is the step and the time.
    pub fn reached(&self, step: &str) {
        if step == self.step && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.at {
            eprintln!("crash point: exiting at step {step} (time {})", self.at);
            std::process::exit(EXIT_CODE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_points_name_a_known_step() {
        assert!(CrashPoint::parse("recorded:3").is_ok());
        assert!(CrashPoint::parse("signed").is_ok());
        assert!(CrashPoint::parse("typo:1").unwrap_err().contains("signed, recorded"));
        assert!(CrashPoint::parse("signed:0").is_err());
    }
}
