//! Joining and leaving the network: what `pictor member add` creates on the hub for a member,
//! and what `pictor member remove` deletes.
//!
//! A member's agent gets exactly what DESIGN.md allows: watch WorkUnits and write their status in
//! its own namespace, write the status of its own GpuCluster, renew its own Lease — and apply the
//! ConfigMaps that carry its units' log tails, in its own namespace. The objects
//! are built by pure functions (tested without a cluster) and applied with server-side apply, so
//! running `add` again changes nothing but the printed token.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, ResourceQuotaSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use pictor_crds::contract::billing_marks;
use pictor_crds::contract::finalizers;
use pictor_crds::contract::format_apt;
use pictor_crds::contract::labels;
use pictor_crds::contract::member_namespace;
use pictor_crds::contract::members::{AGENT, MAX_MEMBER_NAME, member_cluster_role};
use pictor_crds::v1alpha1::{GpuCluster, GpuClusterSpec, Settlement, SettlementPhase, Tier, WorkUnit};
use pictor_telemetry::cluster::tolerate;
use std::collections::{BTreeMap, HashSet};

/// Field manager of everything `pictor member add` writes.
pub const FIELD_MANAGER: &str = "pictor-member-join";

/// What a hub admin says about a new member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    /// Member name: a DNS label of at most [`MAX_MEMBER_NAME`] characters.
    pub name: String,
    /// `community` or `partner`.
    pub tier: Tier,
    /// Aptos payout address.
    pub payout_address: String,
    /// Region.
    pub region: String,
    /// Price per GPU-hour in octas by GPU product.
    pub prices: BTreeMap<String, i64>,
    /// Price per GPU-hour in octas for other products.
    pub default_price: Option<i64>,
}

/// Why a join or removal could not be done.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The request is invalid; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// The hub refused or failed a call.
    #[error("{what}: {source}")]
    Hub { what: String, source: kube::Error },
    /// The member is still owed for verified work: removing it would leave that unpaid.
    #[error(
        "member {member} is still owed {amount} for {units} verified units not yet paid: wait until pictor-billing has paid them (`pictor earnings {member}`), or pass --forfeit-earnings to remove it anyway and give them up"
    )]
    StillOwed { member: String, units: usize, amount: String },
}

fn hub(what: impl Into<String>) -> impl FnOnce(kube::Error) -> MembershipError {
    let what = what.into();
    move |source| MembershipError::Hub { what, source }
}

impl JoinRequest {
    /// Checks what the API server would otherwise refuse later with a less direct message.
    pub fn validate(&self) -> Result<(), MembershipError> {
        let name = &self.name;
        let dns_label = !name.is_empty()
            && name.len() <= MAX_MEMBER_NAME
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !dns_label {
            return Err(MembershipError::Invalid(format!(
                "member name {name:?} must be lowercase letters, digits and '-', at most {} characters, \
                 starting and ending with a letter or digit",
                MAX_MEMBER_NAME
            )));
        }
        if self.tier == Tier::Any {
            return Err(MembershipError::Invalid("--tier must be community or partner".into()));
        }
        let hex = self.payout_address.strip_prefix("0x").unwrap_or("");
        if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MembershipError::Invalid(format!(
                "--payout {:?} must be an Aptos account address: 0x followed by 1 to 64 hex digits",
                self.payout_address
            )));
        }
        if let Some((model, price)) = self.prices.iter().find(|(_, p)| **p < 1) {
            return Err(MembershipError::Invalid(format!(
                "--price {model}={price}: prices are whole octas, at least 1"
            )));
        }
        Ok(())
    }
}

/// Everything a member has on the hub.
#[derive(Clone, Debug)]
pub struct MemberObjects {
    /// The member itself.
    pub gpu_cluster: GpuCluster,
    /// `pictor-member-<name>`.
    pub namespace: Namespace,
    /// The agent's identity.
    pub service_account: ServiceAccount,
    /// The agent's heartbeat, created here because RBAC cannot narrow `create` to one name.
    pub lease: Lease,
    /// WorkUnits and their status, the agent's Lease, in the member namespace.
    pub role: Role,
    /// Binds `role` to the agent.
    pub role_binding: RoleBinding,
    /// The status of the member's own GpuCluster.
    pub cluster_role: ClusterRole,
    /// Binds `cluster_role` to the agent.
    pub cluster_role_binding: ClusterRoleBinding,
    /// Bounds what the agent can store in its namespace: ConfigMaps by count (their size is
    /// bounded by the `pictor-member-log-configmaps` admission policy).
    pub quota: ResourceQuota,
}

/// ConfigMaps a member namespace may hold: a log tail per live unit, and room to spare.
pub const MAX_MEMBER_CONFIG_MAPS: u32 = 2000;

fn meta(name: &str, namespace: Option<&str>, member: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(BTreeMap::from([(labels::MEMBER.to_string(), member.to_string())])),
        ..Default::default()
    }
}

fn rule(api_group: &str, resources: &[&str], verbs: &[&str], names: Option<&str>) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![api_group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        resource_names: names.map(|n| vec![n.to_string()]),
        ..Default::default()
    }
}

/// The hub objects of a member, as `pictor member add` applies them.
pub fn member_objects(request: &JoinRequest) -> MemberObjects {
    let member = request.name.as_str();
    let ns = member_namespace(member);
    let cluster_role_name = member_cluster_role(member);
    let agent = Subject {
        kind: "ServiceAccount".into(),
        name: AGENT.into(),
        namespace: Some(ns.clone()),
        ..Default::default()
    };
    let mut gpu_cluster = GpuCluster::new(
        member,
        GpuClusterSpec {
            tier: request.tier,
            payout_address: request.payout_address.clone(),
            region: request.region.clone(),
            price_per_gpu_hour: request.prices.clone(),
            default_price_per_gpu_hour: request.default_price,
            cordoned: false,
            // Slices of time-sliced GPUs are priced by the hub admin on the GpuCluster itself.
            shared_price_per_gpu_hour: Default::default(),
        },
    );
    gpu_cluster.meta_mut().labels = meta(member, None, member).labels;
    let quota = ResourceQuota {
        metadata: meta(AGENT, Some(&ns), member),
        spec: Some(ResourceQuotaSpec {
            hard: Some(BTreeMap::from([(
                "count/configmaps".to_string(),
                Quantity(MAX_MEMBER_CONFIG_MAPS.to_string()),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    MemberObjects {
        quota,
        gpu_cluster,
        namespace: Namespace { metadata: meta(&ns, None, member), ..Default::default() },
        service_account: ServiceAccount { metadata: meta(AGENT, Some(&ns), member), ..Default::default() },
        lease: Lease {
            metadata: meta(AGENT, Some(&ns), member),
            spec: Some(LeaseSpec { lease_duration_seconds: Some(15), ..Default::default() }),
        },
        role: Role {
            metadata: meta(AGENT, Some(&ns), member),
            rules: Some(vec![
                rule("pictor.network", &["workunits"], &["get", "list", "watch"], None),
                rule("pictor.network", &["workunits/status"], &["get", "patch", "update"], None),
                // The tails of unit pod logs (`<unit>-log`), for `pictor logs`: the hub cannot reach
                // the member to read them. `create` cannot be narrowed by name (server-side apply of
                // a new object needs it); the namespace is the member's own and holds no secrets.
                rule("", &["configmaps"], &["get", "list", "watch", "create", "patch"], None),
                rule("coordination.k8s.io", &["leases"], &["get", "watch", "patch", "update"], Some(AGENT)),
            ]),
        },
        role_binding: RoleBinding {
            metadata: meta(AGENT, Some(&ns), member),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: AGENT.into(),
            },
            subjects: Some(vec![agent.clone()]),
        },
        cluster_role: ClusterRole {
            metadata: meta(&cluster_role_name, None, member),
            rules: Some(vec![
                rule("pictor.network", &["gpuclusters"], &["get", "watch"], Some(member)),
                rule("pictor.network", &["gpuclusters/status"], &["get", "patch", "update"], Some(member)),
            ]),
            ..Default::default()
        },
        cluster_role_binding: ClusterRoleBinding {
            metadata: meta(&cluster_role_name, None, member),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: cluster_role_name.clone(),
            },
            subjects: Some(vec![agent]),
        },
    }
}

async fn apply<K>(api: Api<K>, object: &K) -> Result<(), MembershipError>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = object.meta().name.clone().unwrap_or_default();
    // Server-side apply needs apiVersion and kind in the body; k8s-openapi types leave them out.
    let mut body = serde_json::to_value(object).expect("objects serialise");
    body["apiVersion"] = K::api_version(&Default::default()).into();
    body["kind"] = K::kind(&Default::default()).into();
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(hub(format!("apply {} {name}", K::kind(&Default::default()))))?;
    Ok(())
}

/// Applies a member's hub objects and returns a fresh agent token, valid for `token_seconds`.
pub async fn add(
    client: &kube::Client,
    request: &JoinRequest,
    token_seconds: i64,
) -> Result<String, MembershipError> {
    request.validate()?;
    let objects = member_objects(request);
    let ns = member_namespace(&request.name);
    apply(Api::<GpuCluster>::all(client.clone()), &objects.gpu_cluster).await?;
    apply(Api::<Namespace>::all(client.clone()), &objects.namespace).await?;
    apply(Api::<ServiceAccount>::namespaced(client.clone(), &ns), &objects.service_account).await?;
    apply(Api::<ResourceQuota>::namespaced(client.clone(), &ns), &objects.quota).await?;
    apply(Api::<Role>::namespaced(client.clone(), &ns), &objects.role).await?;
    apply(Api::<RoleBinding>::namespaced(client.clone(), &ns), &objects.role_binding).await?;
    apply(Api::<ClusterRole>::all(client.clone()), &objects.cluster_role).await?;
    apply(Api::<ClusterRoleBinding>::all(client.clone()), &objects.cluster_role_binding).await?;
    // The Lease is created once and never applied again: its renewTime belongs to the agent.
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    tolerate(leases.create(&PostParams::default(), &objects.lease).await, &[409])
        .map_err(hub("create the agent's Lease"))?;
    let request_body = k8s_openapi::api::authentication::v1::TokenRequest {
        spec: k8s_openapi::api::authentication::v1::TokenRequestSpec {
            expiration_seconds: Some(token_seconds),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create_token_request(AGENT, &PostParams::default(), &request_body)
        .await
        .map_err(hub("mint the agent token"))?;
    token.status.map(|s| s.token).ok_or_else(|| MembershipError::Invalid("the hub returned no token".into()))
}

fn tolerate_missing(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    tolerate(result, &[404])
}

/// Deletes everything `add` created. The namespace takes its ServiceAccount (and with it every
/// token it was given), Role, RoleBinding, Lease and WorkUnits along.
pub async fn remove(
    client: &kube::Client,
    member: &str,
    forfeit_earnings: bool,
) -> Result<(), MembershipError> {
    release_units(client, member, forfeit_earnings).await?;
    let dp = DeleteParams::background();
    let cluster_role = member_cluster_role(member);
    tolerate_missing(
        Api::<ClusterRoleBinding>::all(client.clone()).delete(&cluster_role, &dp).await.map(|_| ()),
    )
    .map_err(hub("delete the ClusterRoleBinding"))?;
    tolerate_missing(Api::<ClusterRole>::all(client.clone()).delete(&cluster_role, &dp).await.map(|_| ()))
        .map_err(hub("delete the ClusterRole"))?;
    tolerate_missing(
        Api::<Namespace>::all(client.clone()).delete(&member_namespace(member), &dp).await.map(|_| ()),
    )
    .map_err(hub("delete the member namespace"))?;
    tolerate_missing(Api::<GpuCluster>::all(client.clone()).delete(member, &dp).await.map(|_| ()))
        .map_err(hub("delete the GpuCluster"))?;
    Ok(())
}

/// Before a member goes: refuses while it is owed for work (unless the earnings are forfeited),
/// and takes billing's finalizer off its units, so its namespace can be deleted.
async fn release_units(
    client: &kube::Client,
    member: &str,
    forfeit_earnings: bool,
) -> Result<(), MembershipError> {
    let ns = member_namespace(member);
    let units_api = Api::<WorkUnit>::namespaced(client.clone(), &ns);
    let units = match units_api.list(&ListParams::default().labels(labels::BILLING)).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
        Err(source) => return Err(MembershipError::Hub { what: "list the member's units".into(), source }),
    };
    let settlements = Api::<Settlement>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(hub("list the Settlements"))?;
    let paid: HashSet<String> = settlements
        .items
        .iter()
        .filter(|s| s.status.as_ref().and_then(|st| st.phase) == Some(SettlementPhase::Confirmed))
        .flat_map(|s| s.spec.units.iter().map(|u| u.uid.clone()))
        .collect();
    let refs: Vec<&WorkUnit> = units.iter().collect();
    let (owed, octas) = billing_marks::unpaid(&refs, &paid);
    if owed > 0 && !forfeit_earnings {
        return Err(MembershipError::StillOwed {
            member: member.into(),
            units: owed,
            amount: format_apt(octas.max(0) as u64),
        });
    }
    for unit in units.iter().filter(|u| u.finalizers().iter().any(|f| f == finalizers::SETTLEMENT)) {
        let finalizers: Vec<&String> =
            unit.finalizers().iter().filter(|f| *f != finalizers::SETTLEMENT).collect();
        let body = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": unit.metadata.resource_version}});
        units_api
            .patch(&unit.name_any(), &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(hub(format!("release unit {}", unit.name_any())))?;
    }
    Ok(())
}

/// The kubeconfig a member's agent uses to reach the hub: the hub's address and CA, the token.
pub fn agent_kubeconfig(member: &str, server: &str, ca_pem: &[u8], token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let user = format!("pictor-agent@{member}");
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "pictor-hub", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "pictor-hub", "context": {"cluster": "pictor-hub", "user": user,
                      "namespace": member_namespace(member)}}],
        "current-context": "pictor-hub",
    });
    serde_yaml::to_string(&config).expect("a kubeconfig serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> JoinRequest {
        JoinRequest {
            name: "lab-berlin".into(),
            tier: Tier::Community,
            payout_address: "0xabc".into(),
            region: "eu-central".into(),
            prices: BTreeMap::from([("NVIDIA-GeForce-RTX-4090".into(), 40_000_000)]),
            default_price: None,
        }
    }

    #[test]
    fn bad_names_addresses_tiers_and_prices_are_refused_with_what_to_fix() {
        type Change = fn(&mut JoinRequest);
        let cases: [(Change, &str); 5] = [
            (|r| r.name = "Lab_Berlin".into(), "lowercase letters, digits and '-'"),
            (|r| r.name = "x".repeat(60), "at most 49 characters"),
            (|r| r.tier = Tier::Any, "--tier must be community or partner"),
            (|r| r.payout_address = "alice.apt".into(), "0x followed by 1 to 64 hex digits"),
            (|r| r.prices.insert("H100".into(), 0).map_or((), |_| ()), "at least 1"),
        ];
        for (change, message) in cases {
            let mut r = request();
            change(&mut r);
            let err = r.validate().unwrap_err().to_string();
            assert!(err.contains(message), "{err}");
        }
        assert!(request().validate().is_ok());
    }

    #[test]
    fn the_agent_may_touch_only_its_own_namespace_cluster_and_lease() {
        let objects = member_objects(&request());
        assert_eq!(objects.namespace.metadata.name.as_deref(), Some("pictor-member-lab-berlin"));
        let rules = objects.role.rules.unwrap();
        let creates = |r: &PolicyRule| r.verbs.iter().any(|v| v == "create");
        assert!(rules.iter().all(|r| !r.verbs.iter().any(|v| v == "delete" || v == "*")));
        assert!(
            rules
                .iter()
                .filter(|r| creates(r))
                .all(|r| r.resources.as_deref() == Some(&["configmaps".to_string()][..]))
        );
        assert!(
            rules.iter().all(|r| !r.resources.as_ref().unwrap().iter().any(|x| x == "secrets" || x == "*"))
        );
        let lease_rule = rules.iter().find(|r| r.resources.as_ref().unwrap() == &["leases"]).unwrap();
        let log_rule = rules.iter().find(|r| r.resources.as_ref().unwrap() == &["configmaps"]).unwrap();
        assert_eq!(log_rule.verbs, ["get", "list", "watch", "create", "patch"]);
        assert_eq!(lease_rule.resource_names.as_deref(), Some(&["pictor-agent".to_string()][..]));
        let cluster_rules = objects.cluster_role.rules.unwrap();
        assert!(
            cluster_rules
                .iter()
                .all(|r| r.resource_names.as_deref() == Some(&["lab-berlin".to_string()][..]))
        );
        let subject = &objects.cluster_role_binding.subjects.unwrap()[0];
        assert_eq!(
            (subject.kind.as_str(), subject.namespace.as_deref()),
            ("ServiceAccount", Some("pictor-member-lab-berlin"))
        );
    }

    #[test]
    fn agent_kubeconfig_embeds_the_ca_and_points_at_the_member_namespace() {
        let text = agent_kubeconfig("lab", "https://hub:6443", b"PEM", "tok");
        let config: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(config["clusters"][0]["cluster"]["certificate-authority-data"], "UEVN");
        assert_eq!(config["users"][0]["user"]["token"], "tok");
        assert_eq!(config["contexts"][0]["context"]["namespace"], "pictor-member-lab");
    }
}
