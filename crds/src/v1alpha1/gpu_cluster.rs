//! GpuCluster: one member cluster of the network, as the hub knows it.

use super::conditions::conditions_schema;
use super::requirements::{GpuVendor, QUANTITY_RULE, Tier};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A member cluster that lends its GPUs to the network. The hub admin creates it when the member
/// joins; the member's agent reports heartbeat and inventory into its status.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "pictor.network",
    version = "v1alpha1",
    kind = "GpuCluster",
    status = "GpuClusterStatus",
    shortname = "gpuc",
    category = "pictor",
    doc = "A member cluster of the Pictor network: its provider, payout address, prices and GPUs.",
    printcolumn(name = "Tier", type_ = "string", json_path = ".spec.tier"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "GPUs", type_ = "integer", json_path = ".status.inventory.totalGpus"),
    printcolumn(name = "Free", type_ = "integer", json_path = ".status.inventory.freeGpus"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Payout", type_ = "string", json_path = ".spec.payoutAddress", priority = 1)
)]
#[serde(rename_all = "camelCase")]
pub struct GpuClusterSpec {
    /// `community` (a gaming PC, a small lab) or `partner` (a render farm under contract).
    #[x_kube(validation = Rule::new("self == 'community' || self == 'partner'").message("spec.tier of a member is community or partner"))]
    pub tier: Tier,

    /// Aptos account address the provider is paid to: `0x` and up to 64 hex digits, not one of
    /// the framework's special addresses 0x0–0xf (a transfer there commits and the APT is lost).
    #[schemars(length(max = 66))]
    #[x_kube(validation = Rule::new("self.matches('^0x[0-9a-fA-F]{1,64}$')").message("spec.payoutAddress must be an Aptos account address: 0x followed by 1 to 64 hex digits"))]
    #[x_kube(validation = Rule::new("!self.matches('^0x0*[0-9a-fA-F]$')").message("spec.payoutAddress must not be a reserved address of the Aptos framework (0x0 to 0xf): a payout there is lost; give the provider's own account"))]
    pub payout_address: String,

    /// Region the member's GPUs are in, e.g. `eu-central`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 63))]
    pub region: String,

    /// Price per GPU-hour in octas, by GPU product name (`pictor.network/gpu.product`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("self.all(model, self[model] >= 1)").message("spec.pricePerGpuHour values are whole octas per GPU-hour, at least 1"))]
    pub price_per_gpu_hour: BTreeMap<String, i64>,

    /// Price per GPU-hour in octas for a model missing from `pricePerGpuHour`; unset means such
    /// GPUs are not offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.defaultPricePerGpuHour is whole octas per GPU-hour, at least 1"))]
    pub default_price_per_gpu_hour: Option<i64>,

    /// Takes no new work while true; running work finishes.
    #[serde(default)]
    pub cordoned: bool,

    /// Price per replica-hour in octas of a time-sliced GPU (a slice of one, shared with other
    /// pods), by GPU product name; a model missing here is not offered in slices.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("self.all(model, self[model] >= 1)").message("spec.sharedPricePerGpuHour values are whole octas per replica-hour, at least 1"))]
    pub shared_price_per_gpu_hour: BTreeMap<String, i64>,
}

/// GPUs of one vendor and model in a member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuPool {
    /// `nvidia` or `amd`.
    pub vendor: GpuVendor,
    /// Product name, as `pictor.network/gpu.product`.
    #[schemars(length(max = 128))]
    pub model: String,
    /// Memory of one GPU, in MiB.
    pub memory_mib: i64,
    /// Nodes with this model.
    pub nodes: i64,
    /// GPUs allocatable in total.
    pub total: i64,
    /// GPUs no bound pod holds.
    pub free: i64,
    /// Most free GPUs on one node: the largest pod (or gang member) that fits now.
    #[serde(default)]
    pub largest_free_on_node: i64,
}

/// GPUs of one vendor and model shared by time-slicing (on nodes labelled
/// `pictor.network/gpu.sharing`): counted here, apart from the whole GPUs of `pools`, so a
/// replica is never taken for a GPU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharedGpuPool {
    /// `nvidia` or `amd`.
    pub vendor: GpuVendor,
    /// Product name, as `pictor.network/gpu.product`.
    #[schemars(length(max = 128))]
    pub model: String,
    /// Memory of one GPU, in MiB: what its replicas share.
    #[schemars(range(min = 0, max = 16_777_216))]
    pub memory_mib: i64,
    /// Nodes with this model shared.
    #[schemars(range(min = 0, max = 1_000_000))]
    pub nodes: i64,
    /// Physical GPUs shared.
    #[schemars(range(min = 0, max = 1_000_000))]
    pub gpus: i64,
    /// Replicas they are advertised as: how many pods can share them.
    #[schemars(range(min = 0, max = 64_000_000))]
    pub replicas: i64,
    /// Replicas no bound pod holds.
    #[schemars(range(min = 0, max = 64_000_000))]
    pub free_replicas: i64,
}

/// What a member has, summarised by its agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuInventory {
    /// Ready nodes with GPUs.
    pub nodes: i64,
    /// GPUs allocatable in total.
    pub total_gpus: i64,
    /// GPUs no bound pod holds.
    pub free_gpus: i64,
    /// GPUs by vendor and model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub pools: Vec<GpuPool>,
    /// Time-sliced GPUs by vendor and model, in none of the counts above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub shared_pools: Vec<SharedGpuPool>,
}

/// What the member runs, as its provider set it (the chart's `work` values): the agent refuses
/// any other unit, and placement skips the member for work it would refuse.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkPolicy {
    /// Images it runs: `*`, `registry/path/*`, a repository (any tag), or
    /// `repository@sha256:<digest>` (that content only). Empty runs nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(i, size(i) >= 1 && size(i) <= 256)").message("workPolicy.images entries are image patterns of 1 to 256 characters"))]
    pub images: Vec<String>,
    /// Most CPU one pod may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(QUANTITY_RULE).message("workPolicy.maxCpu must be a Kubernetes quantity"))]
    pub max_cpu: Option<String>,
    /// Most memory one pod may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(QUANTITY_RULE).message("workPolicy.maxMemory must be a Kubernetes quantity"))]
    pub max_memory: Option<String>,
    /// Most scratch disk one pod may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(QUANTITY_RULE).message("workPolicy.maxEphemeralStorage must be a Kubernetes quantity"))]
    pub max_ephemeral_storage: Option<String>,
}

/// A member's record, counted by the hub.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reputation {
    /// WorkUnits that succeeded.
    pub units_succeeded: i64,
    /// WorkUnits that failed or were lost.
    pub units_failed: i64,
    /// Verification renders that disagreed with this member's output.
    pub verification_mismatches: i64,
}

/// What the provider has earned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Earnings {
    /// Octas accrued for verified units and not yet paid.
    pub pending_octas: i64,
    /// Octas paid in confirmed settlements.
    pub paid_octas: i64,
}

/// Heartbeat, inventory and record of a member.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the member's agent last renewed its Lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,
    /// The member's GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<GpuInventory>,
    /// What the member runs, as its agent advertises it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_policy: Option<WorkPolicy>,
    /// The member's record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reputation: Option<Reputation>,
    /// What the provider has earned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earnings: Option<Earnings>,
    /// `Ready` is True while the heartbeat is fresh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}
