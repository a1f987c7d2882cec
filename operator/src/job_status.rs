//! Writing a job's status on the hub: one server-side apply of the whole status under the
//! controller's field manager, the same for RenderJobs and TrainingJobs.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;

/// Applies `status` to `job`'s status subresource as `field_manager`.
pub async fn write<K>(
    client: &kube::Client,
    job: &K,
    field_manager: &str,
    status: &impl Serialize,
) -> Result<(), kube::Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&Default::default()),
        "kind": K::kind(&Default::default()),
        "status": status,
    });
    Api::<K>::namespaced(client.clone(), &job.namespace().unwrap_or_default())
        .patch_status(&job.name_any(), &PatchParams::apply(field_manager).force(), &Patch::Apply(&body))
        .await
        .map(|_| ())
}
