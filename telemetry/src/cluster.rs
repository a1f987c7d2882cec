//! Reaching a Kubernetes API server: a client from a kubeconfig file (the hub's or a member's),
//! and reading its answers — which failures mean "already done".

use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::Path;

/// Why a kubeconfig could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// The file could not be read or parsed.
    #[error("kubeconfig {path}: {message}")]
    Unreadable { path: String, message: String },
    /// No client could be built from it.
    #[error("kubeconfig {path}: {message}")]
    Unusable { path: String, message: String },
}

/// A client from `path`, or from the usual places (`KUBECONFIG`, `~/.kube/config`, in-cluster)
/// when `path` is `None`.
pub async fn client(path: Option<&Path>) -> Result<kube::Client, KubeconfigError> {
    let shown = path.map_or_else(|| "(default)".to_string(), |p| p.display().to_string());
    let config = match path {
        Some(p) => {
            let file = Kubeconfig::read_from(p)
                .map_err(|e| KubeconfigError::Unreadable { path: shown.clone(), message: e.to_string() })?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| KubeconfigError::Unusable { path: shown.clone(), message: e.to_string() })?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| KubeconfigError::Unusable { path: shown.clone(), message: e.to_string() })?,
    };
    kube::Client::try_from(config)
        .map_err(|e| KubeconfigError::Unusable { path: shown, message: e.to_string() })
}

/// Whether `error` is the API server answering with HTTP `code` (409: exists, 404: gone).
pub fn is_code(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// `Ok` for success and for the listed codes: the idempotent outcome of a create (409) or a
/// delete (404).
pub fn tolerate<T>(result: Result<T, kube::Error>, codes: &[u16]) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if codes.iter().any(|c| is_code(&e, *c)) => Ok(()),
        Err(e) => Err(e),
    }
}
