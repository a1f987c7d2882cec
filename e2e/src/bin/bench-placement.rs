//! Benchmark: how long the hub takes to place the units of a 100,000-frame RenderJob (10,000
//! chunks) on 50 members, and the operator's peak memory.
//!
//! A real hub API server; 50 GpuClusters kept Ready by fresh Leases (renewed here, standing in
//! for agents) with inventories big enough for every chunk; the real `pictor-operator` process.
//! Baseline, in the same run and on a fresh namespace: the same number of WorkUnits created by a
//! plain client loop with no placement at all — the API server's own floor. Prints both and the
//! ratio.

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use pictor_crds::v1alpha1::{GpuCluster, RenderJob, WorkUnit};
use pictor_e2e::{ControlPlane, ControlPlaneOptions, network};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Frames of the job.
    #[arg(long, default_value_t = 100_000)]
    frames: i64,
    /// Frames per chunk.
    #[arg(long, default_value_t = 10)]
    chunk_size: i64,
    /// Members.
    #[arg(long, default_value_t = 50)]
    members: usize,
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn count_units(api: &Api<WorkUnit>, label: &str) -> usize {
    let params = ListParams::default().labels(label);
    let mut continue_token: Option<String> = None;
    let mut count = 0;
    loop {
        let mut p = params.clone().limit(5000);
        if let Some(t) = &continue_token {
            p = p.continue_token(t);
        }
        let Ok(page) = api.list_metadata(&p).await else { return count };
        count += page.items.len();
        continue_token = page.metadata.continue_.filter(|t| !t.is_empty());
        if continue_token.is_none() {
            return count;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let chunks = (args.frames + args.chunk_size - 1) / args.chunk_size;
    let plane = ControlPlane::start(ControlPlaneOptions { members: 0, kube_scheduler: false }).await?;
    plane.install_crds().await?;
    let hub = plane.hub.client().await?;
    let gpus_each = (chunks as usize).div_ceil(args.members) as i64 + 8;

    // Members with inventories and fresh Leases, as their agents would keep them.
    let clusters: Api<GpuCluster> = Api::all(hub.clone());
    let namespaces: Api<Namespace> = Api::all(hub.clone());
    for i in 0..args.members {
        let name = format!("m{i:02}");
        let ns = format!("pictor-member-{name}");
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?,
            )
            .await?;
        let cluster: GpuCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "GpuCluster", "metadata": {"name": name},
            "spec": {"tier": "community", "payoutAddress": "0xfeed", "defaultPricePerGpuHour": 40_000_000 + i as i64 * 1_000_000}}))?;
        clusters.create(&PostParams::default(), &cluster).await?;
        let status = serde_json::json!({"apiVersion": "pictor.network/v1alpha1", "kind": "GpuCluster",
            "status": {"inventory": {"nodes": 1, "totalGpus": gpus_each, "freeGpus": gpus_each, "pools": [
                {"vendor": "nvidia", "model": "NVIDIA-GeForce-RTX-4090", "memoryMib": 24564, "nodes": 1,
                 "total": gpus_each, "free": gpus_each, "largestFreeOnNode": 8}]}}});
        clusters.patch_status(&name, &PatchParams::apply("bench").force(), &Patch::Apply(&status)).await?;
        let lease: Lease = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "pictor-agent", "namespace": ns}, "spec": {}}),
        )?;
        Api::<Lease>::namespaced(hub.clone(), &ns).create(&PostParams::default(), &lease).await?;
    }
    let renewer = {
        let hub = hub.clone();
        let members = args.members;
        tokio::spawn(async move {
            loop {
                for i in 0..members {
                    let body = serde_json::json!({"spec": {"renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now())}});
                    let api = Api::<Lease>::namespaced(hub.clone(), &format!("pictor-member-m{i:02}"));
                    let _ = api.patch("pictor-agent", &PatchParams::default(), &Patch::Merge(&body)).await;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };

    // Baseline: the same number of WorkUnits created by a plain loop, no placement.
    let baseline_api: Api<WorkUnit> = Api::namespaced(hub.clone(), "pictor-member-m00");
    let template: WorkUnit = serde_json::from_value(serde_json::json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit", "metadata": {"name": "x", "labels": {"bench": "baseline"}},
        "spec": {"jobRef": {"kind": "RenderJob", "namespace": "default", "name": "baseline", "uid": "0"},
                 "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": 1}], "agreedPricePerGpuHour": 1}}))?;
    let started = Instant::now();
    futures::stream::iter(0..chunks)
        .map(|i| {
            let api = baseline_api.clone();
            let mut unit = template.clone();
            unit.metadata.name = Some(format!("baseline-{i:06}"));
            async move { api.create(&PostParams::default(), &unit).await.map(|_| ()) }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let baseline = started.elapsed();
    // The baseline's units would claim GPUs on m00; remove them before the measured run.
    baseline_api
        .delete_collection(&Default::default(), &ListParams::default().labels("bench=baseline"))
        .await?;

    let operator = network::start_operator(&plane, 30, None, &[&format!("--max-units-in-flight={chunks}")])?;
    let units: Api<WorkUnit> = Api::all(hub.clone());
    let started = Instant::now();
    let job: RenderJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "RenderJob", "metadata": {"name": "feature-film", "namespace": "default"},
        "spec": {"scene": "s3://scenes/film.blend", "frames": {"start": 1, "end": args.frames}, "chunkSize": args.chunk_size,
                 "output": {"location": "s3://renders/film/"}, "verificationPercent": 0}}))?;
    let job =
        Api::<RenderJob>::namespaced(hub.clone(), "default").create(&PostParams::default(), &job).await?;
    let label = format!("pictor.network/job-uid={}", job.metadata.uid.unwrap_or_default());
    let limit = Duration::from_secs(900);
    let mut placed = 0;
    while started.elapsed() < limit {
        placed = count_units(&units, &label).await;
        if placed as i64 >= chunks {
            break;
        }
        operator_alive(&plane)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = started.elapsed();
    let peak = peak_rss_mib(operator.pid());
    renewer.abort();
    let members_used = {
        let all = units.list_metadata(&ListParams::default().labels(&label)).await?;
        all.items
            .iter()
            .filter_map(|u| u.metadata.namespace.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };

    println!(
        "placement of a {}-frame RenderJob ({chunks} chunks) on {} members (debug build of pictor-operator)",
        args.frames, args.members
    );
    println!(
        "  pictor-operator: {placed} units placed in {:.1} s ({:.0} units/s) on {members_used} members; peak RSS {}",
        took.as_secs_f64(),
        placed as f64 / took.as_secs_f64(),
        peak.map_or("unknown".into(), |m| format!("{m:.1} MiB"))
    );
    println!(
        "  baseline (plain create loop, no placement): {chunks} units in {:.1} s ({:.0} units/s)",
        baseline.as_secs_f64(),
        chunks as f64 / baseline.as_secs_f64()
    );
    println!("  ratio operator / baseline time: {:.2}", took.as_secs_f64() / baseline.as_secs_f64());
    anyhow::ensure!(placed as i64 >= chunks, "only {placed} of {chunks} units placed in {limit:?}");
    drop(operator);
    Ok(())
}

fn operator_alive(plane: &ControlPlane) -> anyhow::Result<()> {
    plane.check_alive().map_err(anyhow::Error::from)
}
