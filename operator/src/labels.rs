//! Names the hub, the agents and the CLI agree on: member namespaces, the agent's Lease and
//! ServiceAccount, and the labels that tie pods back to WorkUnits.

/// Label on a member's namespace and RBAC objects naming the member.
pub const MEMBER: &str = "pictor.network/member";
/// Label on a member-side pod: the WorkUnit's name.
pub const WORK_UNIT: &str = "pictor.network/work-unit";
/// Label on a member-side pod: the WorkUnit's UID, so a re-created unit of the same name is a
/// different unit.
pub const WORK_UNIT_UID: &str = "pictor.network/work-unit-uid";
/// Label on WorkUnits and pods: the job's UID (cross-namespace owner references are not
/// allowed, so this is how a job finds its units).
pub const JOB_UID: &str = "pictor.network/job-uid";
/// Label on the pods of a gang: the gang's name.
pub const GANG: &str = "pictor.network/gang";
/// Annotation on the pods of a gang: how many pods it has.
pub const GANG_SIZE: &str = "pictor.network/gang-size";

/// Name of the agent's ServiceAccount and of its Lease in the member namespace.
pub const AGENT: &str = "pictor-agent";

/// Longest member name: the namespace `pictor-member-<name>` must stay a 63-character label.
pub const MAX_MEMBER_NAME: usize = 63 - MEMBER_NAMESPACE_PREFIX.len();
const MEMBER_NAMESPACE_PREFIX: &str = "pictor-member-";

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
    format!("pictor-member-{member}")
}
