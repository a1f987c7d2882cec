//! Where the control-plane binaries are, building them when the cache lacks them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned Kubernetes release, as `e2e/control-plane/build.sh` builds it.
pub const KUBE_VERSION: &str = "v1.37.2";

/// Paths of the control-plane binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// Folder holding every binary.
    pub dir: PathBuf,
}

/// Why the binaries could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    /// The build script failed; its output was printed.
    #[error("building the control plane failed ({0}); run e2e/control-plane/build.sh to see why")]
    BuildFailed(String),
    /// A binary is still missing after the build.
    #[error("{0} is missing from {1} after the build")]
    Missing(&'static str, PathBuf),
}

const REQUIRED: [&str; 8] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
    "ipfs",
];

impl Binaries {
    /// The cache folder the build script uses by default.
    pub fn default_dir() -> PathBuf {
        if let Ok(dir) = std::env::var("PICTOR_CONTROL_PLANE_BIN") {
            return PathBuf::from(dir);
        }
        let cache = std::env::var("PICTOR_CACHE").map(PathBuf::from).unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            Path::new(&home).join(".cache/pictor")
        });
        cache.join("control-plane").join(KUBE_VERSION).join("bin")
    }

    /// The binaries, running the build script first when one is missing.
    pub fn ensure() -> Result<Self, BinariesError> {
        let dir = Self::default_dir();
        if REQUIRED.iter().any(|b| !dir.join(b).exists()) {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("control-plane/build.sh");
            eprintln!("control plane missing from {}; building it with {}", dir.display(), script.display());
            let status = Command::new("bash")
                .arg(&script)
                .env("PICTOR_CONTROL_PLANE_BIN", &dir)
                .status()
                .map_err(|e| BinariesError::BuildFailed(e.to_string()))?;
            if !status.success() {
                return Err(BinariesError::BuildFailed(status.to_string()));
            }
        }
        for b in REQUIRED {
            if !dir.join(b).exists() {
                return Err(BinariesError::Missing(b, dir));
            }
        }
        Ok(Self { dir })
    }

    /// Path of one binary.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}
