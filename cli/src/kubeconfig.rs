//! The hub's address and CA from a kubeconfig file, for the kubeconfig `pictor member add`
//! writes for a member's agent.

use kube::config::Kubeconfig;
use pictor_telemetry::cluster::KubeconfigError;
use std::path::Path;

/// The API server URL and CA bundle (PEM) of the current context of a kubeconfig file.
pub fn server_and_ca(path: &Path) -> Result<(String, Vec<u8>), KubeconfigError> {
    let unreadable =
        |message: String| KubeconfigError::Unreadable { path: path.display().to_string(), message };
    let file = Kubeconfig::read_from(path).map_err(|e| unreadable(e.to_string()))?;
    let context_name = file.current_context.clone().ok_or_else(|| unreadable("no current-context".into()))?;
    let context = file
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.clone())
        .ok_or_else(|| unreadable(format!("context {context_name} not found")))?;
    let cluster = file
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| unreadable(format!("cluster {} not found", context.cluster)))?;
    let server = cluster.server.ok_or_else(|| unreadable("the cluster has no server".into()))?;
    let ca = if let Some(data) = cluster.certificate_authority_data {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| unreadable(format!("certificate-authority-data: {e}")))?
    } else if let Some(file) = cluster.certificate_authority {
        let ca_path = Path::new(&file);
        let ca_path = if ca_path.is_relative() {
            path.parent().unwrap_or(Path::new(".")).join(ca_path)
        } else {
            ca_path.to_path_buf()
        };
        std::fs::read(&ca_path)
            .map_err(|e| unreadable(format!("certificate-authority {}: {e}", ca_path.display())))?
    } else {
        Vec::new()
    };
    Ok((server, ca))
}
