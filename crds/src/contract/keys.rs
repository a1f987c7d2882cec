//! Every `pictor.network/` label, annotation and finalizer key the hub, the agents, billing, the
//! scheduler and the node labeller agree on, each declared here and nowhere else (a test in
//! `crds/tests/contract.rs` greps the workspace for a second declaration).

/// Labels: on WorkUnits, member namespaces, member-side pods and log ConfigMaps.
pub mod labels {
    /// On a member's hub namespace and RBAC objects: the member's name.
    pub const MEMBER: &str = "pictor.network/member";
    /// On a member-side pod: the name of the WorkUnit it runs.
    pub const WORK_UNIT: &str = "pictor.network/work-unit";
    /// On a member-side pod: the WorkUnit's UID, so a re-created unit of the same name is a
    /// different unit.
    pub const WORK_UNIT_UID: &str = "pictor.network/work-unit-uid";
    /// On WorkUnits and their pods: the job's UID (cross-namespace owner references are not
    /// allowed, so this is how a job finds its units).
    pub const JOB_UID: &str = "pictor.network/job-uid";
    /// On the pods of a gang: the gang's name (DESIGN.md, "Gang").
    pub const GANG: &str = "pictor.network/gang";
    /// On a render unit: the index of the chunk it renders.
    pub const CHUNK: &str = "pictor.network/chunk";
    /// On a verification unit: the name of the unit whose output it checks.
    pub const VERIFIES: &str = "pictor.network/verifies";
    /// On a verification unit that re-checks a disputed chunk.
    pub const DISPUTE_CHECK: &str = "pictor.network/dispute-check";
    /// On a verification unit that settles a disagreement between a chunk's renderer and its
    /// first verifier, on a third member with another payout address.
    pub const TIE_BREAK: &str = "pictor.network/tie-break";
    /// On a unit whose output failed verification: [`super::MISMATCH`].
    pub const VERDICT: &str = "pictor.network/verdict";
    /// On a unit its job controller judged: `accrued`, `held` or `forfeited`
    /// ([`crate::contract::BillingState`]).
    pub const BILLING: &str = "pictor.network/billing";
    /// On a unit's log ConfigMap in the member's hub namespace: the WorkUnit's name.
    pub const UNIT_LOG: &str = "pictor.network/unit-log";
}

/// Annotations: on WorkUnits, jobs, pods and log ConfigMaps.
pub mod annotations {
    /// On the pods of a gang: how many pods it has.
    pub const GANG_SIZE: &str = "pictor.network/gang-size";
    /// On a WorkUnit: the GPU model placement chose (the agent turns it into a nodeSelector).
    pub const GPU_MODEL: &str = "pictor.network/gpu-model";
    /// On a pod, optional: comma-separated `pictor.network/gpu.product` values it accepts.
    pub const GPU_MODELS: &str = "pictor.network/gpu-models";
    /// On a pod, optional: the GPU vendor it needs (`nvidia`, `amd`).
    pub const GPU_VENDOR: &str = "pictor.network/gpu-vendor";
    /// On a pod, optional: the least memory per GPU, in MiB.
    pub const GPU_MIN_MEMORY_MIB: &str = "pictor.network/gpu-min-memory-mib";
    /// On a pod, optional: the GPU memory in MiB it needs of one shared (time-sliced) GPU. A
    /// pod with it takes one replica and pictor-scheduler packs it onto a shared GPU with that
    /// much memory free.
    pub const GPU_MEMORY_MIB: &str = "pictor.network/gpu-memory-mib";
    /// On an accrued unit: when it may be settled (RFC 3339, hub clock); until then the
    /// submitter may dispute it.
    pub const PAYABLE_AFTER: &str = "pictor.network/payable-after";
    /// On a job: the chunks its submitter disputes, by their frames (`11-20,31-40`).
    pub const DISPUTE: &str = "pictor.network/dispute";
    /// On a unit, written by the hub when it first sees the unit Running (RFC 3339, hub clock):
    /// where the time it pays for starts.
    pub const RUNNING_OBSERVED_AT: &str = "pictor.network/running-observed-at";
    /// On a unit, written by the hub when it first sees the unit finished (RFC 3339, hub
    /// clock): where the time it pays for ends.
    pub const FINISHED_OBSERVED_AT: &str = "pictor.network/finished-observed-at";
    /// On a succeeded unit, written once by the hub when it first sees it finished: the
    /// GPU-seconds it will pay, never more than the member reported nor than the unit's GPUs
    /// held over the time the hub itself observed (plus a stated tolerance), and within the
    /// job's budget. Billing pays this and nothing else; a member cannot write metadata.
    pub const METERED_GPU_SECONDS: &str = "pictor.network/metered-gpu-seconds";
    /// On a verification unit, written by the hub once it compared the unit's frame with the
    /// original itself: a [`crate::contract::Judgement`] as JSON.
    pub const JUDGEMENT: &str = "pictor.network/judgement";
    /// On a unit whose dispute was decided in its provider's favour: when.
    pub const DISPUTE_CLEARED: &str = "pictor.network/dispute-cleared";
    /// On a GpuCluster the hub cordoned for verification mismatches: how many it had then, so
    /// an admin who uncordons it is not overruled until it is caught again.
    pub const CORDONED_AT_MISMATCHES: &str = "pictor.network/cordoned-at-mismatches";
    /// On a log ConfigMap: when the logs were read.
    pub const LOG_CAPTURED_AT: &str = "pictor.network/log-captured-at";
    /// On a log ConfigMap: `true` once the unit had finished when the logs were read.
    pub const LOG_FINAL: &str = "pictor.network/log-final";
    /// Local networks on kwok only: the pod "runs" this many seconds, then kwok completes it.
    pub const FAKE_RUN_SECONDS: &str = "pictor.network/fake-run-seconds";
    /// Local networks that play pods on kwok (`--fake-run-seconds`) only: a RenderJob annotated
    /// `true` runs its pods for real (on real nodes) and the hub judges its frames from storage.
    /// It can only make a job stricter: on a real network every job runs and is judged so.
    pub const REAL_RUN: &str = "pictor.network/real-run";
    /// Local networks on kwok only: what kwok writes as the pod's termination message.
    pub const FAKE_RESULT: &str = "pictor.network/fake-result";
}

/// Finalizers.
pub mod finalizers {
    /// On a job: deleting it deletes its units first.
    pub const WORK_UNITS: &str = "pictor.network/work-units";
    /// On an accrued unit: billing removes it once the unit is paid or forfeited, so deleting a
    /// job never loses what its providers are owed.
    pub const SETTLEMENT: &str = "pictor.network/settlement";
}

/// Node labels the node labeller publishes and placement, the agent and pictor-scheduler read.
pub mod node_labels {
    /// Every node label the labeller owns starts with this.
    pub const PREFIX: &str = "pictor.network/gpu.";
    /// The GPU vendor, as [`crate::contract::Vendor::label_value`] spells it.
    pub const VENDOR: &str = "pictor.network/gpu.vendor";
    /// The GPU product name, e.g. `NVIDIA-H100-80GB-HBM3`.
    pub const PRODUCT: &str = "pictor.network/gpu.product";
    /// Memory per GPU in MiB.
    pub const MEMORY_MIB: &str = "pictor.network/gpu.memory-mib";
    /// GPUs on the node.
    pub const COUNT: &str = "pictor.network/gpu.count";
    /// The GPU driver's version.
    pub const DRIVER_VERSION: &str = "pictor.network/gpu.driver-version";
    /// Compute capability (NVIDIA) or GFX target (AMD).
    pub const COMPUTE: &str = "pictor.network/gpu.compute";
    /// How the node's GPUs are shared: `time-slicing`; absent when each GPU is whole.
    pub const SHARING: &str = "pictor.network/gpu.sharing";
    /// With [`SHARING`]: how many replicas (pods) each GPU is advertised as.
    pub const REPLICAS: &str = "pictor.network/gpu.replicas";
    /// `mixed` when some GPU is in MIG mode and its MIG devices are resources of their own.
    pub const MIG: &str = "pictor.network/gpu.mig";
    /// Set by the provider, not the labeller: the name of the device plugin's sharing config
    /// this node uses (like NVIDIA's `nvidia.com/device-plugin.config`).
    pub const SHARING_CONFIG: &str = "pictor.network/device-plugin.config";
}

/// Node conditions the node labeller writes.
pub mod node_conditions {
    /// `True` while every GPU of the node is healthy.
    pub const GPU_HEALTHY: &str = "PictorGPUHealthy";
}

/// Value of [`labels::VERDICT`] for output a second provider could not reproduce.
pub const MISMATCH: &str = "mismatch";
