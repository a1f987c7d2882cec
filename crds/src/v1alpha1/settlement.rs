//! Settlement: one payout to one provider on Aptos for a set of verified WorkUnits.

use super::conditions::conditions_schema;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A payout to one provider for verified work. The billing controller writes the signed
/// transaction's sequence number and hash into the status before it submits, so a restart can
/// confirm instead of paying twice.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "pictor.network",
    version = "v1alpha1",
    kind = "Settlement",
    namespaced,
    status = "SettlementStatus",
    shortname = "stl",
    category = "pictor",
    doc = "A payout on Aptos to one Pictor provider for verified work units.",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(name = "Amount", type_ = "string", json_path = ".spec.amount"),
    printcolumn(name = "Units", type_ = "integer", json_path = ".spec.unitCount"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Transaction", type_ = "string", json_path = ".status.transactionHash", priority = 1)
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("a Settlement's spec is immutable: what is owed must not change after it is recorded"))]
#[x_kube(validation = Rule::new("self.amountOctas == self.units.map(u, u.amountOctas).sum()").message("spec.amountOctas must equal the sum of the units' amountOctas"))]
#[x_kube(validation = Rule::new("self.unitCount == size(self.units)").message("spec.unitCount must equal the number of units"))]
pub struct SettlementSpec {
    /// GpuCluster (member) being paid.
    #[schemars(length(min = 1, max = 253))]
    pub provider: String,
    /// Aptos address paid, copied from the GpuCluster when the settlement was made.
    #[schemars(length(max = 66))]
    #[x_kube(validation = Rule::new("self.matches('^0x[0-9a-fA-F]{1,64}$')").message("spec.payoutAddress must be an Aptos account address: 0x followed by 1 to 64 hex digits"))]
    pub payout_address: String,
    /// Total paid, in octas.
    #[x_kube(validation = Rule::new("self >= 1").message("spec.amountOctas must be at least 1 octa"))]
    pub amount_octas: i64,
    /// `amountOctas` as a person reads it.
    #[schemars(length(max = 64))]
    pub amount: String,
    /// Units covered.
    pub unit_count: i64,
    /// The units this payout covers; a unit appears in at most one settlement.
    #[schemars(length(min = 1, max = 1000))]
    pub units: Vec<SettledUnit>,
}

/// One unit paid by a settlement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettledUnit {
    /// Namespace of the WorkUnit (`pictor-member-<cluster>`).
    #[schemars(length(max = 63))]
    pub namespace: String,
    /// Name of the WorkUnit.
    #[schemars(length(max = 253))]
    pub name: String,
    /// UID of the WorkUnit, so a re-created unit of the same name is never mistaken for it.
    #[schemars(length(max = 36))]
    pub uid: String,
    /// Octas owed for it.
    #[x_kube(validation = Rule::new("self >= 0").message("units[].amountOctas must not be negative"))]
    pub amount_octas: i64,
    /// The record of the work this unit paid for: which job, what it produced, on what GPUs, for
    /// how long. Kept here, immutable with the rest of the spec, until an on-chain module holds
    /// it beside the payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<WorkRecord>,
}

/// What a paid unit did, for validation and for providers' performance records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkRecord {
    /// `RenderJob` or `TrainingJob`.
    #[schemars(length(max = 32))]
    pub job_kind: String,
    /// `<namespace>/<name>` of the job on the hub.
    #[schemars(length(max = 317))]
    pub job: String,
    /// SHA-256 over the unit's output digests in order (lowercase hex); empty when the unit
    /// reported no outputs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 64))]
    pub outputs_digest: String,
    /// GPU vendor the unit ran on (`nvidia`, `amd`).
    #[schemars(length(max = 16))]
    pub gpu_vendor: String,
    /// GPU product the unit ran on, as the member's node labels name it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 128))]
    pub gpu_model: String,
    /// GPUs × seconds the unit held.
    pub gpu_seconds: i64,
    /// Price agreed at placement, octas per GPU-hour.
    pub price_per_gpu_hour: i64,
}

/// Where a payout stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SettlementPhase {
    /// Recorded, transaction not signed yet.
    #[default]
    Pending,
    /// Signed and submitted; sequence number and hash recorded.
    Submitted,
    /// Committed on chain with success.
    Confirmed,
    /// Rejected for a reason retrying does not fix.
    Failed,
}

/// The payout's transaction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettlementStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Submitted, Confirmed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SettlementPhase>,
    /// Sequence number of the treasury account the transaction uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<i64>,
    /// Hash of the signed transaction, recorded before it is submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_hash: Option<String>,
    /// The signed transaction, BCS-encoded in base64: recorded before it is submitted, so after
    /// a restart the same transaction is submitted again instead of a new one signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_transaction: Option<String>,
    /// Transactions of this settlement that committed without paying (an empty treasury, say),
    /// by hash, oldest first; the settlement was signed again after each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_transactions: Vec<String>,
    /// Expiry of the signed transaction (seconds since the epoch, chain time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_seconds: Option<i64>,
    /// Ledger version the transaction was committed at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_version: Option<i64>,
    /// When it was submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<Time>,
    /// When it was confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<Time>,
    /// `Ready` is True once confirmed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}
