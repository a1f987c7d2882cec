//! Billing on the local network: the treasury Secret, `pictor-billing` against an Aptos node,
//! and accrued WorkUnits made directly on the hub for tests that exercise billing alone.

use crate::control_plane::ControlPlane;
use crate::process::ManagedProcess;
use crate::workspace_binaries::workspace_binary;
use aptos_sdk::AccountAddress;
use aptos_sdk::account::Ed25519Account;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use pictor_crds::contract::{BillingState, annotations, finalizers, labels};
use pictor_crds::v1alpha1::{Settlement, SettlementPhase, WorkUnit};
use std::collections::BTreeMap;

/// Namespace of the Settlements and the treasury Secret.
pub const NAMESPACE: &str = "pictor-system";
/// Name of the treasury Secret.
pub const TREASURY_SECRET: &str = "pictor-treasury";
/// A treasury key for local networks only: it holds test-node coins and nothing else.
pub const LOCAL_TREASURY_KEY: &str = "0x4c0e7b1a5d3f2e9c8b7a6d5c4b3a29180f7e6d5c4b3a291807f6e5d4c3b2a190";

/// The treasury's account address.
pub fn treasury_address(key: &str) -> AccountAddress {
    Ed25519Account::from_private_key_hex(key).expect("a valid test key").address()
}

/// A provider's payout address for tests: `0xbeef` followed by `n` in hex.
pub fn payout_address(n: u64) -> String {
    format!("0xbeef{n:04x}")
}

/// Creates the billing namespace and the treasury Secret on the hub.
pub async fn install_treasury(hub: &kube::Client, key: &str) -> Result<(), kube::Error> {
    let namespaces: Api<Namespace> = Api::all(hub.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}})).unwrap();
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e),
    }
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": TREASURY_SECRET, "namespace": NAMESPACE},
        "stringData": {"privateKey": key},
    }))
    .unwrap();
    Api::<Secret>::namespaced(hub.clone(), NAMESPACE)
        .patch(TREASURY_SECRET, &PatchParams::apply("pictor-e2e").force(), &Patch::Apply(&secret))
        .await?;
    Ok(())
}

/// The local chain of a test or the demo: an Aptos test node whose genesis gives the treasury of
/// [`LOCAL_TREASURY_KEY`] `octas` (none when 0), and that key's Secret on the hub.
pub async fn local_chain(hub: &kube::Client, octas: u64) -> anyhow::Result<pictor_aptos_test_node::TestNode> {
    local_chain_like(hub, octas, pictor_aptos_test_node::Realism::default()).await
}

/// [`local_chain`] imitating what real networks do (see `pictor_aptos_test_node::Realism`).
pub async fn local_chain_like(
    hub: &kube::Client,
    octas: u64,
    realism: pictor_aptos_test_node::Realism,
) -> anyhow::Result<pictor_aptos_test_node::TestNode> {
    let treasury = treasury_address(LOCAL_TREASURY_KEY);
    let genesis = if octas == 0 { Vec::new() } else { vec![(treasury, octas)] };
    let config = pictor_aptos_test_node::TestNodeConfig { genesis, realism, ..Default::default() };
    let node = pictor_aptos_test_node::TestNode::start(config).await?;
    install_treasury(hub, LOCAL_TREASURY_KEY).await?;
    Ok(node)
}

/// Starts `pictor-billing` against the node at `node_url`; `extra` are more of its flags.
pub fn start_billing(
    plane: &ControlPlane,
    name: &str,
    node_url: &str,
    extra: &[String],
) -> std::io::Result<ManagedProcess> {
    let billing = workspace_binary("pictor-billing", "pictor-billing");
    let mut args = vec![
        format!("--kubeconfig={}", plane.hub.kubeconfig.display()),
        format!("--namespace={NAMESPACE}"),
        format!("--aptos-node-url={node_url}"),
        format!("--treasury-secret={TREASURY_SECRET}"),
        "--metrics-addr=127.0.0.1:0".into(),
        // Tests restart billing often; a killed holder's Lease lapses in two seconds.
        "--lease-duration-seconds=2".into(),
    ];
    args.extend(extra.iter().cloned());
    ManagedProcess::spawn(name, &billing, &args, plane.run_dir())
}

/// Flags that settle every payable unit at once (tests and the demo).
pub fn settle_at_once() -> Vec<String> {
    ["--settle-min-octas=1", "--settle-max-wait-seconds=0", "--dispute-margin-seconds=0"]
        .map(String::from)
        .to_vec()
}

/// Creates `count` Succeeded WorkUnits of `member`, accrued and payable now, as a job
/// controller would leave them: `gpu_seconds` each, reported by the member and metered by the
/// hub, at `price` octas per GPU-hour.
pub async fn accrued_units(
    hub: &kube::Client,
    member: &str,
    count: usize,
    gpu_seconds: i64,
    price: i64,
) -> Result<Vec<WorkUnit>, kube::Error> {
    accrued_units_named(hub, member, "bill", count, gpu_seconds, price).await
}

/// [`accrued_units`] with names `<prefix>-<member>-<n>`.
pub async fn accrued_units_named(
    hub: &kube::Client,
    member: &str,
    prefix: &str,
    count: usize,
    gpu_seconds: i64,
    price: i64,
) -> Result<Vec<WorkUnit>, kube::Error> {
    use futures::StreamExt;
    let namespace = format!("pictor-member-{member}");
    let api: Api<WorkUnit> = Api::namespaced(hub.clone(), &namespace);
    let made: Vec<Result<WorkUnit, kube::Error>> = futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let name = format!("{prefix}-{member}-{i:04}");
            let unit: WorkUnit = serde_json::from_value(serde_json::json!({
                "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
                "metadata": {"name": name, "namespace": namespace,
                             "labels": {labels::BILLING: BillingState::Accrued.as_str(), labels::JOB_UID: "billing-test"},
                             "annotations": {annotations::PAYABLE_AFTER: "2026-01-01T00:00:00Z",
                                             annotations::GPU_MODEL: "NVIDIA-H100-80GB-HBM3",
                                             annotations::METERED_GPU_SECONDS: gpu_seconds.to_string()},
                             "finalizers": [finalizers::SETTLEMENT]},
                "spec": {"jobRef": {"kind": "RenderJob", "namespace": "default", "name": "billing-test", "uid": "billing-test"},
                         "pods": [{"name": "render", "image": "render-worker", "gpuVendor": "nvidia", "gpus": 1}],
                         "frames": format!("{}-{}", i * 10 + 1, i * 10 + 10),
                         "agreedPricePerGpuHour": price}
            }))
            .unwrap();
            async move {
                api.create(&PostParams::default(), &unit).await?;
                let status = serde_json::json!({"status": {"phase": "Succeeded", "gpuSeconds": gpu_seconds,
                    "outputs": [{"url": format!("file:///renders/{name}.png"), "sha256": format!("{i:064x}")}]}});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await
            }
        })
        .buffered(16)
        .collect()
        .await;
    made.into_iter().collect()
}

/// The Settlements on the hub.
pub async fn settlements(hub: &kube::Client) -> Result<Vec<Settlement>, kube::Error> {
    Ok(Api::<Settlement>::namespaced(hub.clone(), NAMESPACE).list(&Default::default()).await?.items)
}

/// Octas paid per payout address by Confirmed Settlements, and every unit UID they cover
/// (a UID twice means a unit was paid twice).
pub fn confirmed(settlements: &[Settlement]) -> (BTreeMap<String, u64>, Vec<String>) {
    let mut paid: BTreeMap<String, u64> = BTreeMap::new();
    let mut uids = Vec::new();
    for s in settlements {
        if s.status.as_ref().and_then(|st| st.phase) == Some(SettlementPhase::Confirmed) {
            *paid.entry(s.spec.payout_address.clone()).or_default() += s.spec.amount_octas as u64;
            uids.extend(s.spec.units.iter().map(|u| u.uid.clone()));
        }
    }
    (paid, uids)
}

/// Whether every Settlement is Confirmed.
pub fn all_confirmed(settlements: &[Settlement]) -> bool {
    settlements.iter().all(|s| s.status.as_ref().and_then(|st| st.phase) == Some(SettlementPhase::Confirmed))
}
