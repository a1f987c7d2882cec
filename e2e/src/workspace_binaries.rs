//! Binaries of this workspace (the operator, the agent, the CLI) for tests that run them as
//! processes, the way they run in a cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Path of `binary` from `package`, built first (once per test process) so the test runs what
/// the source says, not a stale build.
pub fn workspace_binary(package: &str, binary: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let path = target.join("debug").join(binary);
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.iter().any(|b| b == binary) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--quiet", "-p", package, "--bin", binary])
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build {binary}: {e}"));
        assert!(status.success(), "cargo build -p {package} --bin {binary} failed");
        built.push(binary.to_string());
    }
    path
}
