//! Binaries of this workspace (the operator, the agent, the CLI) for tests that run them as
//! processes, the way they run in a cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Which build of a binary: tests run debug builds (quick to build); a benchmark runs what is
/// deployed, a release build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `cargo build` (target/debug).
    Debug,
    /// `cargo build --release` (target/release).
    Release,
}

impl Profile {
    /// The folder under the target directory, which is also how the benchmarks print it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// Path of the debug build of `binary` from `package`, built first (once per test process) so the
/// test runs what the source says, not a stale build.
pub fn workspace_binary(package: &str, binary: &str) -> PathBuf {
    workspace_binary_built(package, binary, Profile::Debug)
}

/// Path of `binary` from `package` in `profile`, built first (once per process and profile).
pub fn workspace_binary_built(package: &str, binary: &str, profile: Profile) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let path = target.join(profile.name()).join(binary);
    let key = format!("{}/{binary}", profile.name());
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.contains(&key) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command.current_dir(&root).args(["build", "--quiet", "-p", package, "--bin", binary]);
        if profile == Profile::Release {
            command.arg("--release");
        }
        let status = command.status().unwrap_or_else(|e| panic!("cannot run cargo to build {binary}: {e}"));
        assert!(status.success(), "cargo build -p {package} --bin {binary} ({}) failed", profile.name());
        built.push(key);
    }
    path
}
