//! What a provider lets a stranger's unit do on its machines: which images run, how much CPU,
//! memory and scratch disk one pod may take, and the Pod Security Standard `restricted` every
//! unit pod meets (non-root, no privilege escalation, no capabilities, `RuntimeDefault` seccomp,
//! a read-only root filesystem with an `emptyDir` scratch at `/tmp`). Pure: the agent checks a
//! unit here before it makes a pod, and the same policy is what it advertises to the hub.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, PodSecurityContext, PodSpec, SeccompProfile,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use pictor_crds::contract::quantity::{QuantityError, parse_milli, parse_units};
use pictor_crds::contract::runtime_env;
use pictor_crds::contract::work_policy::{image_allowed, over_caps};
use pictor_crds::v1alpha1::{PodResources, PodTemplate, WorkPolicy};
use std::collections::BTreeMap;

/// The user and group unit containers run as: not root, whatever the image says.
pub const UNIT_USER: i64 = 65532;

/// Where a unit's writable scratch folder is mounted (also its `HOME` and `TMPDIR`).
pub const SCRATCH_PATH: &str = "/tmp";

/// The labels that make the API server enforce the Pod Security Standard `restricted` in a
/// namespace, and warn and audit against it.
pub fn pod_security_labels() -> BTreeMap<String, String> {
    ["enforce", "warn", "audit"]
        .into_iter()
        .map(|mode| (format!("pod-security.kubernetes.io/{mode}"), "restricted".to_string()))
        .collect()
}

/// A provider's rules for units: the policy it advertises, and the CPU, memory and disk a pod
/// gets when its unit leaves them to the member.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderPolicy {
    /// Allowed images and caps per pod, as advertised in the GpuCluster status.
    pub advertised: WorkPolicy,
    /// What a pod gets for the needs its unit leaves out.
    pub defaults: PodResources,
}

/// A provider policy that cannot work as given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// A cap or default is not a quantity.
    #[error("{flag}: {source}")]
    Quantity { flag: &'static str, source: QuantityError },
    /// A default is above its own cap: every unit relying on it would be refused.
    #[error("--default-{what} {default} is above --max-{what} {cap}; lower the default or raise the cap")]
    DefaultOverCap { what: &'static str, default: String, cap: String },
    /// No image allowed: every unit would be refused.
    #[error(
        "no --allow-image given: this member would refuse every unit; allow the network's render image at least"
    )]
    NoImages,
}

impl ProviderPolicy {
    /// Checks that the caps and defaults read as quantities and that every default is within
    /// its cap.
    pub fn new(advertised: WorkPolicy, defaults: PodResources) -> Result<Self, PolicyError> {
        if advertised.images.is_empty() {
            return Err(PolicyError::NoImages);
        }
        type Parse = fn(&str) -> Result<i64, QuantityError>;
        let pairs: [(&'static str, &Option<String>, &Option<String>, Parse); 3] = [
            ("cpu", &defaults.cpu, &advertised.max_cpu, parse_milli),
            ("memory", &defaults.memory, &advertised.max_memory, parse_units),
            (
                "ephemeral-storage",
                &defaults.ephemeral_storage,
                &advertised.max_ephemeral_storage,
                parse_units,
            ),
        ];
        for (what, default, cap, parse) in pairs {
            let read = |flag: &'static str, value: &Option<String>| {
                value
                    .as_deref()
                    .map(parse)
                    .transpose()
                    .map_err(|source| PolicyError::Quantity { flag, source })
            };
            let (d, c) = (read("default", default)?, read("max", cap)?);
            if let (Some(d), Some(c)) = (d, c)
                && d > c
            {
                return Err(PolicyError::DefaultOverCap {
                    what,
                    default: default.clone().unwrap_or_default(),
                    cap: cap.clone().unwrap_or_default(),
                });
            }
        }
        Ok(Self { advertised, defaults })
    }

    /// A policy that runs any image with no caps and these defaults: for tests.
    pub fn permissive(defaults: PodResources) -> Self {
        Self { advertised: WorkPolicy { images: vec!["*".into()], ..Default::default() }, defaults }
    }

    /// The CPU, memory and disk a pod of `template` gets, or why this provider refuses it.
    pub fn admit(&self, template: &PodTemplate) -> Result<PodResources, Refusal> {
        let pod = template.name.clone();
        if !image_allowed(&self.advertised, &template.image) {
            return Err(Refusal::Image {
                pod,
                image: template.image.clone(),
                allowed: self.advertised.images.join(", "),
            });
        }
        if let Some(name) = template.env.iter().map(|e| &e.name).find(|n| runtime_env::steers_runtime(n)) {
            return Err(Refusal::RuntimeEnv { pod, name: name.clone() });
        }
        if let Some(what) = over_caps(&self.advertised, &template.resources) {
            return Err(Refusal::OverCaps { pod, what });
        }
        let asked = &template.resources;
        Ok(PodResources {
            cpu: asked.cpu.clone().or_else(|| self.defaults.cpu.clone()),
            memory: asked.memory.clone().or_else(|| self.defaults.memory.clone()),
            ephemeral_storage: asked
                .ephemeral_storage
                .clone()
                .or_else(|| self.defaults.ephemeral_storage.clone()),
        })
    }
}

/// Why this provider does not run a unit: the words the unit's Failed message carries to the
/// hub, where the job's events show them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// The image is not on the provider's allowlist.
    #[error("pod {pod}: image {image} is not allowed by this provider (it runs: {allowed})")]
    Image { pod: String, image: String, allowed: String },
    /// A variable that steers the GPU runtime or the loader.
    #[error("pod {pod}: variable {name} steers the GPU runtime or the loader and is not accepted")]
    RuntimeEnv { pod: String, name: String },
    /// A need above the provider's caps.
    #[error("pod {pod}: {what}")]
    OverCaps { pod: String, what: String },
}

/// Makes a unit's pod meet the Pod Security Standard `restricted` and hold to `resources`
/// (requests equal to limits, beside its GPUs): non-root as [`UNIT_USER`], no privilege
/// escalation, every capability dropped, `RuntimeDefault` seccomp, a read-only root filesystem
/// with a scratch `emptyDir` at [`SCRATCH_PATH`], no service-account token and no Service
/// variables.
pub fn confine(spec: &mut PodSpec, resources: &PodResources) {
    spec.automount_service_account_token = Some(false);
    spec.enable_service_links = Some(false);
    spec.security_context = Some(PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(UNIT_USER),
        run_as_group: Some(UNIT_USER),
        fs_group: Some(UNIT_USER),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    });
    spec.volumes = Some(vec![Volume {
        name: "scratch".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }]);
    for container in &mut spec.containers {
        confine_container(container, resources);
    }
}

fn confine_container(container: &mut Container, resources: &PodResources) {
    container.security_context = Some(SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        ..Default::default()
    });
    container.volume_mounts = Some(vec![VolumeMount {
        name: "scratch".into(),
        mount_path: SCRATCH_PATH.into(),
        ..Default::default()
    }]);
    // Programs that write to their home or the temporary folder write to the scratch.
    let env = container.env.get_or_insert_with(Vec::new);
    for name in ["HOME", "TMPDIR"] {
        if !env.iter().any(|e| e.name == name) {
            env.push(EnvVar { name: name.into(), value: Some(SCRATCH_PATH.into()), ..Default::default() });
        }
    }
    let sized = [
        ("cpu", &resources.cpu),
        ("memory", &resources.memory),
        ("ephemeral-storage", &resources.ephemeral_storage),
    ];
    let requirements = container.resources.get_or_insert_with(Default::default);
    for (name, value) in sized {
        let Some(value) = value else { continue };
        for map in [&mut requirements.requests, &mut requirements.limits] {
            map.get_or_insert_with(BTreeMap::new).insert(name.to_string(), Quantity(value.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(image: &str, resources: serde_json::Value, env: serde_json::Value) -> PodTemplate {
        let mut t = json!({"name": "render", "image": image, "gpuVendor": "nvidia", "gpus": 1, "env": env});
        t.as_object_mut().unwrap().extend(resources.as_object().unwrap().clone());
        serde_json::from_value(t).unwrap()
    }

    fn policy() -> ProviderPolicy {
        ProviderPolicy::new(
            WorkPolicy {
                images: vec!["ghcr.io/pictor-network/render-worker".into()],
                max_cpu: Some("8".into()),
                max_memory: Some("32Gi".into()),
                max_ephemeral_storage: Some("100Gi".into()),
            },
            PodResources {
                cpu: Some("2".into()),
                memory: Some("8Gi".into()),
                ephemeral_storage: Some("20Gi".into()),
            },
        )
        .unwrap()
    }

    const WORKER: &str = "ghcr.io/pictor-network/render-worker:0.1.0";

    #[test]
    fn a_unit_gets_its_own_needs_and_the_members_defaults_for_the_rest() {
        let admitted = policy().admit(&template(WORKER, json!({"memory": "16Gi"}), json!([]))).unwrap();
        assert_eq!(
            admitted,
            PodResources {
                cpu: Some("2".into()),
                memory: Some("16Gi".into()),
                ephemeral_storage: Some("20Gi".into())
            }
        );
    }

    #[test]
    fn an_image_off_the_allowlist_a_runtime_variable_or_a_pod_over_the_caps_is_refused_with_why() {
        let p = policy();
        let image = p.admit(&template("docker.io/miner/xmrig:latest", json!({}), json!([]))).unwrap_err();
        assert_eq!(
            image.to_string(),
            "pod render: image docker.io/miner/xmrig:latest is not allowed by this provider (it runs: ghcr.io/pictor-network/render-worker)"
        );
        let env = p.admit(&template(WORKER, json!({}), json!([{"name": "LD_PRELOAD", "value": "/x.so"}])));
        assert!(matches!(env, Err(Refusal::RuntimeEnv { ref name, .. }) if name == "LD_PRELOAD"), "{env:?}");
        let big = p.admit(&template(WORKER, json!({"cpu": "16"}), json!([]))).unwrap_err();
        assert_eq!(big.to_string(), "pod render: cpu 16 is over this provider's limit of 8 per pod");
    }

    #[test]
    fn a_policy_that_would_refuse_everything_or_breaks_its_own_caps_does_not_start() {
        let caps =
            WorkPolicy { images: vec!["*".into()], max_memory: Some("4Gi".into()), ..Default::default() };
        let over = ProviderPolicy::new(
            caps.clone(),
            PodResources { memory: Some("8Gi".into()), ..Default::default() },
        );
        assert_eq!(
            over.unwrap_err().to_string(),
            "--default-memory 8Gi is above --max-memory 4Gi; lower the default or raise the cap"
        );
        let bad =
            ProviderPolicy::new(caps.clone(), PodResources { cpu: Some("two".into()), ..Default::default() });
        assert!(matches!(bad, Err(PolicyError::Quantity { flag: "default", .. })));
        let none = ProviderPolicy::new(WorkPolicy::default(), PodResources::default());
        assert_eq!(none, Err(PolicyError::NoImages));
    }

    #[test]
    fn a_confined_pod_meets_the_restricted_standard_and_carries_its_limits() {
        let mut spec = PodSpec {
            containers: vec![Container { name: "work".into(), ..Default::default() }],
            ..Default::default()
        };
        let resources = PodResources {
            cpu: Some("2".into()),
            memory: Some("8Gi".into()),
            ephemeral_storage: Some("20Gi".into()),
        };
        confine(&mut spec, &resources);
        let pod = spec.security_context.as_ref().unwrap();
        assert_eq!((pod.run_as_non_root, pod.run_as_user), (Some(true), Some(UNIT_USER)));
        assert_eq!(pod.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(spec.automount_service_account_token, Some(false));
        let c = &spec.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(c.volume_mounts.as_ref().unwrap()[0].mount_path, SCRATCH_PATH);
        let r = c.resources.as_ref().unwrap();
        for map in [r.requests.as_ref().unwrap(), r.limits.as_ref().unwrap()] {
            assert_eq!(map["cpu"], Quantity("2".into()));
            assert_eq!(map["memory"], Quantity("8Gi".into()));
            assert_eq!(map["ephemeral-storage"], Quantity("20Gi".into()));
        }
        let home = c.env.as_ref().unwrap().iter().find(|e| e.name == "HOME").unwrap();
        assert_eq!(home.value.as_deref(), Some(SCRATCH_PATH));
    }
}
