//! Names a member has on the hub: its namespace, its agent's ServiceAccount and Lease, its
//! ClusterRole, and where its units' logs are kept.

/// Name of the agent's ServiceAccount and of its Lease in the member namespace.
pub const AGENT: &str = "pictor-agent";

/// What every member's hub namespace starts with.
pub const MEMBER_NAMESPACE_PREFIX: &str = "pictor-member-";

/// Longest member name: the namespace `pictor-member-<name>` must stay a 63-character label.
pub const MAX_MEMBER_NAME: usize = 63 - MEMBER_NAMESPACE_PREFIX.len();

/// The hub namespace of a member: `pictor-member-<name>`.
pub fn member_namespace(member: &str) -> String {
    format!("{MEMBER_NAMESPACE_PREFIX}{member}")
}

/// The member a hub namespace belongs to, if it is a member namespace.
pub fn member_of_namespace(namespace: &str) -> Option<&str> {
    namespace.strip_prefix(MEMBER_NAMESPACE_PREFIX).filter(|m| !m.is_empty())
}

/// Name of the ClusterRole and ClusterRoleBinding that let a member's agent write its own
/// GpuCluster status.
pub fn member_cluster_role(member: &str) -> String {
    format!("{MEMBER_NAMESPACE_PREFIX}{member}")
}

/// Name of the ConfigMap in the member's hub namespace that holds a unit's log tail.
pub fn unit_log_config_map(unit: &str) -> String {
    format!("{unit}-log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_namespaces_round_trip_and_fit_a_label() {
        assert_eq!(member_namespace("a"), "pictor-member-a");
        assert_eq!(member_of_namespace("pictor-member-a"), Some("a"));
        assert_eq!(member_of_namespace("pictor-member-"), None);
        assert_eq!(member_of_namespace("default"), None);
        assert_eq!(member_namespace(&"m".repeat(MAX_MEMBER_NAME)).len(), 63);
    }
}
