//! Spec pieces every job kind shares: what GPUs it needs, what it may spend, which providers it
//! accepts, and where its data lives.

use crate::contract::Vendor;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// GPU vendor a job accepts: `any`, or one of the network's [`Vendor`]s as the node labeller
/// publishes it in `pictor.network/gpu.vendor`. Its schema lists `any` and every vendor, so a
/// vendor added to [`Vendor`] is accepted here too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GpuVendor {
    /// Any vendor the renderer or image supports.
    #[default]
    Any,
    /// Only this vendor's GPUs.
    Only(Vendor),
}

impl GpuVendor {
    /// The vendor as the API and `pictor.network/gpu.vendor` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            GpuVendor::Any => "any",
            GpuVendor::Only(vendor) => vendor.label_value(),
        }
    }

    /// The extended resource a pod asks for; `None` for `any`, which placement resolves.
    pub fn resource_name(self) -> Option<&'static str> {
        self.vendor().map(Vendor::resource_name)
    }

    /// The one vendor accepted, if the job names one.
    pub fn vendor(self) -> Option<Vendor> {
        match self {
            GpuVendor::Any => None,
            GpuVendor::Only(vendor) => Some(vendor),
        }
    }

    /// Whether GPUs of `vendor` are acceptable.
    pub fn accepts(self, vendor: Vendor) -> bool {
        self.vendor().is_none_or(|v| v == vendor)
    }
}

impl From<Vendor> for GpuVendor {
    fn from(vendor: Vendor) -> Self {
        GpuVendor::Only(vendor)
    }
}

impl Serialize for GpuVendor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for GpuVendor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        if value == "any" {
            return Ok(GpuVendor::Any);
        }
        Vendor::from_label_value(&value).map(GpuVendor::Only).ok_or_else(|| {
            let known: Vec<&str> = Vendor::ALL.iter().map(|v| v.label_value()).collect();
            serde::de::Error::custom(format!("unknown GPU vendor {value:?}: use any, {}", known.join(", ")))
        })
    }
}

impl JsonSchema for GpuVendor {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GpuVendor".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let values: Vec<&str> =
            std::iter::once("any").chain(Vendor::ALL.iter().map(|v| v.label_value())).collect();
        schemars::json_schema!({"type": "string", "enum": values})
    }
}

/// Which providers may run the work: community members (gaming PCs, small labs), partner render
/// farms, or either.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Community members and partner farms alike.
    #[default]
    Any,
    /// Community providers only.
    Community,
    /// Partner render farms only.
    Partner,
}

/// The GPUs each pod of the job needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuRequirements {
    /// GPU vendor: `any`, `nvidia` or `amd`.
    #[serde(default)]
    pub vendor: GpuVendor,

    /// Allowed GPU models as `pictor.network/gpu.product` names them (for example
    /// `NVIDIA-H100-80GB-HBM3`). Empty means any model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(m, size(m) > 0 && size(m) <= 63)").message("gpu.models entries must be non-empty GPU product names of at most 63 characters"))]
    pub models: Vec<String>,

    /// Least memory per GPU, in GiB. Unset means any.
    #[serde(default, rename = "minMemoryGiB", skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 4096").message("gpu.minMemoryGiB must be between 1 and 4096 GiB; leave it out to accept any memory size"))]
    pub min_memory_gib: Option<i64>,

    /// GPUs per pod: per render chunk, or per worker of a training job.
    #[serde(default = "one")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 16").message("gpu.count must be between 1 and 16 GPUs per pod"))]
    pub count: i64,
}

impl Default for GpuRequirements {
    fn default() -> Self {
        Self { vendor: GpuVendor::Any, models: Vec::new(), min_memory_gib: None, count: 1 }
    }
}

/// For `skip_serializing_if`: a field left at its default is not written back.
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

pub(crate) fn one() -> i64 {
    1
}

/// CPU, memory and scratch disk of each pod of a job, as Kubernetes quantities. What is left out
/// is the member's default (its provider sets one within its own caps); a pod gets these as both
/// requests and limits, and a member whose caps are lower is skipped by placement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodResources {
    /// CPU, e.g. `4` or `500m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(QUANTITY_RULE).message("resources.cpu must be a Kubernetes quantity such as 4 or 500m"))]
    pub cpu: Option<String>,
    /// Memory, e.g. `16Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(QUANTITY_RULE).message("resources.memory must be a Kubernetes quantity such as 16Gi"))]
    pub memory: Option<String>,
    /// Scratch disk for the pod's writable folders, e.g. `20Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(QUANTITY_RULE).message("resources.ephemeralStorage must be a Kubernetes quantity such as 20Gi"))]
    pub ephemeral_storage: Option<String>,
}

/// What a job may spend, in octas (1 APT = 100,000,000 octas). Integers only: money is never a
/// float.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Highest price per GPU-hour the job accepts, in octas. Unset means any price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("budget.maxPricePerGpuHour is a whole number of octas per GPU-hour and must be at least 1"))]
    pub max_price_per_gpu_hour: Option<i64>,

    /// Most the whole job may cost, in octas. Placement never starts work that would exceed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("budget.maxTotal is a whole number of octas and must be at least 1"))]
    pub max_total: Option<i64>,
}

/// CEL rule of every field that holds a resource quantity: a non-negative number with an optional
/// Kubernetes suffix, as `contract::quantity` reads it.
pub(crate) const QUANTITY_RULE: &str =
    "self.matches('^([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][0-9]+|[numkMGTPE]|[KMGTPE]i)?$')";

/// CEL rule shared by every field that holds an object-storage URL.
pub(crate) const STORAGE_URL_RULE: &str = "self.matches('^(file|s3|gs|az|http|https)://.+$')";
