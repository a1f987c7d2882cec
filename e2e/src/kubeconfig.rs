//! kubeconfig files for the local clusters.

use std::path::Path;

/// A kubeconfig with one cluster, one user authenticated by bearer token, and one context.
pub fn render(cluster: &str, server: &str, ca_file: &Path, user: &str, token: &str) -> String {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority": ca_file}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
    });
    serde_yaml::to_string(&config).expect("a kubeconfig always serialises")
}
