//! Amounts of the resources pictor-scheduler accounts for. Quantities are read as the agent and
//! placement read them (`pictor_crds::contract::quantity`).

use pictor_crds::contract::Vendor;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Index, IndexMut};

pub use pictor_crds::contract::quantity::{QuantityError, parse_milli, parse_units};

/// GPUs of each vendor (its device plugin's extended resource), indexed by [`Vendor`]. A fixed
/// array rather than a map: [`Resources`] stays `Copy` and its arithmetic never allocates, and a
/// vendor added to the contract gets its slot here without a change to the scheduler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GpuCounts([i64; Vendor::ALL.len()]);

impl GpuCounts {
    /// `count` GPUs of `vendor`, none of the others.
    pub fn only(vendor: Vendor, count: i64) -> Self {
        let mut counts = Self::default();
        counts[vendor] = count;
        counts
    }

    /// GPUs of every vendor together.
    pub fn total(&self) -> i64 {
        self.0.iter().sum()
    }

    /// Each vendor with its count, in [`Vendor::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Vendor, i64)> + '_ {
        Vendor::ALL.into_iter().map(|v| (v, self[v]))
    }

    fn zip_with(&self, o: &Self, f: impl Fn(i64, i64) -> i64) -> Self {
        Self(std::array::from_fn(|i| f(self.0[i], o.0[i])))
    }
}

impl Index<Vendor> for GpuCounts {
    type Output = i64;

    fn index(&self, vendor: Vendor) -> &i64 {
        &self.0[vendor.index()]
    }
}

impl IndexMut<Vendor> for GpuCounts {
    fn index_mut(&mut self, vendor: Vendor) -> &mut i64 {
        &mut self.0[vendor.index()]
    }
}

/// CPU in millicores, memory in bytes, GPUs and pods as counts. Integers only, so that adding
/// and removing the same pod always returns a node to exactly where it was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    /// Millicores.
    pub cpu_milli: i64,
    /// Bytes.
    pub memory: i64,
    /// Per vendor, its [`Vendor::resource_name`] (`nvidia.com/gpu`, `amd.com/gpu`).
    pub gpus: GpuCounts,
    /// Pod slots (allocatable `pods`); a pod's request is always 1.
    pub pods: i64,
}

/// One dimension of [`Resources`], named as Kubernetes names it (used in reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceName {
    /// `cpu`
    Cpu,
    /// `memory`
    Memory,
    /// The vendor's GPU resource, e.g. `nvidia.com/gpu`.
    Gpu(Vendor),
    /// `pods`
    Pods,
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Gpu(vendor) => vendor.resource_name(),
            Self::Pods => "pods",
        })
    }
}

impl Resources {
    /// The resources of a Kubernetes resource map (allocatable, requests, limits); unknown
    /// names are ignored and malformed quantities count as zero (one bad object must not stop
    /// the scheduler).
    pub fn from_map<'a>(map: impl IntoIterator<Item = (&'a String, &'a str)>) -> Self {
        let mut r = Self::default();
        for (name, value) in map {
            match name.as_str() {
                "cpu" => r.cpu_milli = parse_milli(value).unwrap_or(0),
                "memory" => r.memory = parse_units(value).unwrap_or(0),
                "pods" => r.pods = parse_units(value).unwrap_or(0),
                other => {
                    if let Some(vendor) = Vendor::from_resource_name(other) {
                        r.gpus[vendor] = parse_units(value).unwrap_or(0);
                    }
                }
            }
        }
        r
    }

    /// Same as [`Resources::from_map`] for a k8s-openapi quantity map.
    pub fn from_quantities(
        map: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    ) -> Self {
        Self::from_map(map.iter().map(|(k, v)| (k, v.0.as_str())))
    }

    /// Each dimension with its amount: cpu, memory, each vendor's GPUs, pods.
    pub fn dimensions(&self) -> impl Iterator<Item = (ResourceName, i64)> + '_ {
        [(ResourceName::Cpu, self.cpu_milli), (ResourceName::Memory, self.memory)]
            .into_iter()
            .chain(self.gpus.iter().map(|(vendor, n)| (ResourceName::Gpu(vendor), n)))
            .chain([(ResourceName::Pods, self.pods)])
    }

    /// Sum, dimension by dimension.
    pub fn plus(&self, o: &Self) -> Self {
        Self {
            cpu_milli: self.cpu_milli + o.cpu_milli,
            memory: self.memory + o.memory,
            gpus: self.gpus.zip_with(&o.gpus, |a, b| a + b),
            pods: self.pods + o.pods,
        }
    }

    /// Difference, dimension by dimension (may go negative on an over-committed node).
    pub fn minus(&self, o: &Self) -> Self {
        Self {
            cpu_milli: self.cpu_milli - o.cpu_milli,
            memory: self.memory - o.memory,
            gpus: self.gpus.zip_with(&o.gpus, |a, b| a - b),
            pods: self.pods - o.pods,
        }
    }

    /// Per dimension, the larger of the two (init containers run one at a time).
    pub fn max(&self, o: &Self) -> Self {
        Self {
            cpu_milli: self.cpu_milli.max(o.cpu_milli),
            memory: self.memory.max(o.memory),
            gpus: self.gpus.zip_with(&o.gpus, i64::max),
            pods: self.pods.max(o.pods),
        }
    }

    /// The first dimension where `self` asks for more than `free` has, if any.
    pub fn first_shortfall(&self, free: &Self) -> Option<ResourceName> {
        // Every decision asks this of every node: plain comparisons in the order of
        // `dimensions()`, no iterator chain.
        let short = |want: i64, have: i64| want > 0 && want > have;
        if short(self.cpu_milli, free.cpu_milli) {
            return Some(ResourceName::Cpu);
        }
        if short(self.memory, free.memory) {
            return Some(ResourceName::Memory);
        }
        if let Some(vendor) = Vendor::ALL.into_iter().find(|v| short(self.gpus[*v], free.gpus[*v])) {
            return Some(ResourceName::Gpu(vendor));
        }
        short(self.pods, free.pods).then_some(ResourceName::Pods)
    }

    /// GPUs of every vendor together.
    pub fn total_gpus(&self) -> i64 {
        self.gpus.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortfall_names_the_first_missing_dimension() {
        let nvidia = |n| GpuCounts::only(Vendor::Nvidia, n);
        let want = Resources { cpu_milli: 1000, gpus: nvidia(2), pods: 1, ..Default::default() };
        let free = Resources { cpu_milli: 4000, memory: 1, gpus: nvidia(1), pods: 10 };
        assert_eq!(want.first_shortfall(&free), Some(ResourceName::Gpu(Vendor::Nvidia)));
        let enough = Resources { gpus: nvidia(2), ..free };
        assert_eq!(want.first_shortfall(&enough), None);
        let no_slot = Resources { pods: 0, ..enough };
        assert_eq!(want.first_shortfall(&no_slot), Some(ResourceName::Pods));
        let no_cpu_no_slot = Resources { cpu_milli: 500, ..no_slot };
        assert_eq!(
            want.first_shortfall(&no_cpu_no_slot),
            Some(ResourceName::Cpu),
            "the first one short is named"
        );
    }

    #[test]
    fn unknown_names_and_bad_values_are_ignored() {
        let name = |s: &str| s.to_string();
        let (cpu, junk, gpu) = (name("cpu"), name("example.com/foo"), name(Vendor::Nvidia.resource_name()));
        let r = Resources::from_map([(&cpu, "bad"), (&junk, "3"), (&gpu, "4")]);
        assert_eq!(r, Resources { gpus: GpuCounts::only(Vendor::Nvidia, 4), ..Default::default() });
    }

    #[test]
    fn every_vendor_is_read_from_its_own_resource_and_summed() {
        let names: Vec<String> = Vendor::ALL.iter().map(|v| v.resource_name().to_string()).collect();
        let r = Resources::from_map(names.iter().map(|n| (n, "2")));
        for vendor in Vendor::ALL {
            assert_eq!(r.gpus[vendor], 2, "{vendor}");
        }
        assert_eq!(r.total_gpus(), 2 * Vendor::ALL.len() as i64);
        assert_eq!(r.plus(&r).minus(&r), r);
    }
}
