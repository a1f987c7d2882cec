//! What a provider runs: the images it allows and the most CPU, memory and disk one pod may ask
//! for. The member's agent enforces its policy on every unit and advertises it in its
//! GpuCluster's status; placement reads it there to skip members that would refuse. Both sides
//! judge with the functions here, so a unit placement sends is one the agent accepts.

use super::quantity::{QuantityError, parse_milli, parse_units};
use crate::v1alpha1::{PodResources, WorkPolicy};

/// An image reference split into its normalised repository (`docker.io/library/ubuntu` for
/// `ubuntu`) and digest, as the container runtime resolves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReference {
    /// Registry and path, without tag or digest.
    pub repository: String,
    /// `sha256:<hex>` when the reference pins one.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Reads `[registry/]path[:tag][@digest]`; Docker Hub names get their implicit registry.
    pub fn parse(reference: &str) -> ImageReference {
        let (name, digest) = match reference.split_once('@') {
            Some((name, digest)) => (name, Some(digest.to_string())),
            None => (reference, None),
        };
        // A tag is a `:` after the last `/`; one before it is a registry's port.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let name = match name[last_slash..].rfind(':') {
            Some(colon) => &name[..last_slash + colon],
            None => name,
        };
        ImageReference { repository: normalise(name), digest }
    }
}

/// `ubuntu` → `docker.io/library/ubuntu`, `pytorch/pytorch` → `docker.io/pytorch/pytorch`;
/// names whose first part is a registry (has a `.` or `:`, or is `localhost`) stay as they are.
fn normalise(name: &str) -> String {
    match name.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => name.to_string(),
        Some(_) => format!("docker.io/{name}"),
        None if name == "*" => name.to_string(),
        None => format!("docker.io/library/{name}"),
    }
}

/// Whether `pattern` from a provider's allowlist admits `image`. A pattern is `*` (anything),
/// `registry/path/*` (every repository under that path), `repository@sha256:<hex>` (that exact
/// content only), or a repository (any tag or digest of it).
pub fn image_matches(pattern: &str, image: &str) -> bool {
    let pattern = pattern.trim();
    if pattern == "*" {
        return true;
    }
    let image = ImageReference::parse(image);
    if let Some(prefix) = pattern.strip_suffix("/*") {
        let prefix = normalise(&format!("{prefix}/x"));
        let prefix = prefix.strip_suffix('x').unwrap_or(&prefix);
        return image.repository.starts_with(prefix);
    }
    let wanted = ImageReference::parse(pattern);
    wanted.repository == image.repository && (wanted.digest.is_none() || wanted.digest == image.digest)
}

/// Whether a policy's allowlist admits `image` (an empty list admits nothing).
pub fn image_allowed(policy: &WorkPolicy, image: &str) -> bool {
    policy.images.iter().any(|pattern| image_matches(pattern, image))
}

/// What a pod asks for, in numbers: millicores and bytes. `None` where the unit leaves it to the
/// member's default, which is within the member's caps by construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodNeeds {
    /// CPU in millicores.
    pub cpu_milli: Option<i64>,
    /// Memory in bytes.
    pub memory: Option<i64>,
    /// Scratch disk in bytes.
    pub ephemeral_storage: Option<i64>,
}

impl PodNeeds {
    /// The numbers of a job's or unit's `resources`.
    pub fn of(resources: &PodResources) -> Result<PodNeeds, QuantityError> {
        Ok(PodNeeds {
            cpu_milli: resources.cpu.as_deref().map(parse_milli).transpose()?,
            memory: resources.memory.as_deref().map(parse_units).transpose()?,
            ephemeral_storage: resources.ephemeral_storage.as_deref().map(parse_units).transpose()?,
        })
    }
}

/// The first of a pod's needs above a policy's caps, as `<what> <asked> is over this provider's
/// limit of <cap>`; `None` when every need fits (an unreadable cap caps nothing: the agent checks
/// its own caps when it starts).
pub fn over_caps(policy: &WorkPolicy, resources: &PodResources) -> Option<String> {
    let dimensions = [
        ("cpu", &resources.cpu, &policy.max_cpu, parse_milli as fn(&str) -> Result<i64, QuantityError>),
        ("memory", &resources.memory, &policy.max_memory, parse_units),
        ("ephemeral-storage", &resources.ephemeral_storage, &policy.max_ephemeral_storage, parse_units),
    ];
    dimensions.into_iter().find_map(|(what, asked, cap, parse)| {
        let (asked, cap) = (asked.as_deref()?, cap.as_deref()?);
        let over = match (parse(asked), parse(cap)) {
            (Ok(a), Ok(c)) => a > c,
            (Err(_), _) => true,
            (_, Err(_)) => false,
        };
        over.then(|| format!("{what} {asked} is over this provider's limit of {cap} per pod"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(images: &[&str]) -> WorkPolicy {
        WorkPolicy { images: images.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn references_split_into_repository_and_digest_with_docker_hubs_names_filled_in() {
        let digest = "sha256:".to_string() + &"a".repeat(64);
        assert_eq!(
            ImageReference::parse(&format!("ghcr.io/pictor-network/render-worker:0.1.0@{digest}")),
            ImageReference {
                repository: "ghcr.io/pictor-network/render-worker".into(),
                digest: Some(digest)
            }
        );
        assert_eq!(ImageReference::parse("ubuntu:24.04").repository, "docker.io/library/ubuntu");
        assert_eq!(ImageReference::parse("pytorch/pytorch:2.9.0").repository, "docker.io/pytorch/pytorch");
        assert_eq!(ImageReference::parse("localhost:5000/worker:1").repository, "localhost:5000/worker");
        assert_eq!(
            ImageReference::parse("localhost/pictor/pause:local").repository,
            "localhost/pictor/pause"
        );
    }

    #[test]
    fn an_allowlist_admits_repositories_prefixes_and_exact_digests_only() {
        let digest = "sha256:".to_string() + &"b".repeat(64);
        let list = policy(&[
            "ghcr.io/pictor-network/render-worker",
            "docker.io/pytorch/*",
            &format!("nvcr.io/nvidia/pytorch@{digest}"),
        ]);
        assert!(image_allowed(&list, "ghcr.io/pictor-network/render-worker:0.1.0"));
        assert!(image_allowed(&list, "ghcr.io/pictor-network/render-worker@sha256:00"));
        assert!(image_allowed(&list, "pytorch/pytorch:2.9.0"), "Docker Hub's implicit registry");
        assert!(image_allowed(&list, &format!("nvcr.io/nvidia/pytorch:24.01@{digest}")));
        for refused in [
            "ghcr.io/pictor-network/render-worker-evil:1",
            "ghcr.io/someone/render-worker:0.1.0",
            "nvcr.io/nvidia/pytorch:24.01",
            "nvcr.io/nvidia/pytorch@sha256:cc",
            "docker.io/pytorchx/pytorch:1",
            "evil.io/docker.io/pytorch/x",
        ] {
            assert!(!image_allowed(&list, refused), "{refused}");
        }
        assert!(
            !image_allowed(&policy(&[]), "ghcr.io/pictor-network/render-worker:0.1.0"),
            "empty admits nothing"
        );
        assert!(image_allowed(&policy(&["*"]), "anything:at-all"));
    }

    #[test]
    fn needs_above_a_cap_are_named_and_needs_left_to_the_member_never_are() {
        let caps = WorkPolicy {
            max_cpu: Some("4".into()),
            max_memory: Some("16Gi".into()),
            max_ephemeral_storage: Some("50Gi".into()),
            ..Default::default()
        };
        let asks = |cpu: &str, memory: &str| PodResources {
            cpu: Some(cpu.into()),
            memory: Some(memory.into()),
            ephemeral_storage: None,
        };
        assert_eq!(over_caps(&caps, &asks("4", "16Gi")), None);
        assert_eq!(
            over_caps(&caps, &asks("4500m", "1Gi")).unwrap(),
            "cpu 4500m is over this provider's limit of 4 per pod"
        );
        assert!(over_caps(&caps, &asks("1", "17Gi")).unwrap().starts_with("memory 17Gi"));
        assert_eq!(over_caps(&caps, &PodResources::default()), None);
        assert_eq!(over_caps(&WorkPolicy::default(), &asks("512", "1Ti")), None, "no caps, nothing over");
    }
}
