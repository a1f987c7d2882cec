//! Benchmark: how long the hub takes to place the units of a 100,000-frame RenderJob (10,000
//! chunks) on 50 members, and the operator's peak memory.
//!
//! A real hub API server; 50 GpuClusters kept Ready by fresh Leases (renewed here, standing in
//! for agents) with inventories big enough for every chunk; the real `pictor-operator` process.
//! Baseline, in the same run: the very WorkUnits the operator made (same names, namespaces and
//! size), created again by a plain client loop with no placement at all once the operator is
//! stopped and its units deleted — the API server's own floor for this work. Prints both and the
//! ratio.
//!
//! Both runs are timed the same way: from the first request until a metadata watch (opened
//! beforehand, as cheap for the API server as a watch gets) has seen every unit. Where the
//! operator's time goes is printed beside it: how long until its first unit appeared (reading
//! the job, planning all chunks), and the CPU seconds the operator, the API server and etcd
//! spent in each run.

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use pictor_crds::contract::labels;
use pictor_crds::v1alpha1::{GpuCluster, RenderJob, WorkUnit};
use pictor_e2e::{ControlPlane, ControlPlaneOptions, Profile, network};
use std::collections::BTreeSet;
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
    /// Run a debug build of pictor-operator instead of the release build that is deployed.
    #[arg(long)]
    debug_operator: bool,
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// When a metadata watch, opened before anything is created, saw the first and the last of `n`
/// units matching `label`.
struct Arrivals {
    first: Instant,
    all: Instant,
}

/// Opens the watch, waits until it has listed, and returns what will report the arrivals.
async fn watch_arrivals(
    api: Api<PartialObjectMeta<WorkUnit>>,
    label: String,
    n: usize,
) -> tokio::task::JoinHandle<anyhow::Result<Arrivals>> {
    let (listed, listed_rx) = tokio::sync::oneshot::channel();
    let arrivals = tokio::spawn(async move {
        let events = watcher(api, watcher::Config::default().labels(&label));
        futures::pin_mut!(events);
        let mut seen = std::collections::HashSet::new();
        let mut first = None;
        let mut listed = Some(listed);
        while let Some(event) = events.next().await {
            match event? {
                watcher::Event::InitDone => {
                    if let Some(listed) = listed.take() {
                        let _ = listed.send(());
                    }
                }
                watcher::Event::Apply(unit) | watcher::Event::InitApply(unit) => {
                    seen.insert(unit.metadata.name.unwrap_or_default());
                    let now = Instant::now();
                    let first = *first.get_or_insert(now);
                    if seen.len() >= n {
                        return Ok(Arrivals { first, all: now });
                    }
                }
                _ => {}
            }
        }
        anyhow::bail!("the watch ended after {} of {n} units", seen.len())
    });
    let _ = listed_rx.await;
    arrivals
}

/// CPU seconds (user + system) a process has used, from /proc (clock ticks of 1/100 s, Linux's
/// USER_HZ on every architecture it exports to user space).
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let Some(stat) = pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()) else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces), from field 3 on: utime is 14, stime 15.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(14) + ticks(15)) / 100.0
}

/// CPU seconds of the operator, the hub's API server and etcd.
fn cpu_of(plane: &ControlPlane, operator: Option<u32>) -> [f64; 3] {
    [
        cpu_seconds(operator),
        cpu_seconds(plane.pid_of("hub-kube-apiserver")),
        cpu_seconds(plane.pid_of("etcd")),
    ]
}

fn cpu_spent(before: [f64; 3], after: [f64; 3]) -> String {
    let [operator, api_server, etcd] = [0, 1, 2].map(|i| after[i] - before[i]);
    let operator = if operator.is_nan() { String::new() } else { format!("operator {operator:.1} s, ") };
    format!("CPU: {operator}kube-apiserver {api_server:.1} s, etcd {etcd:.1} s")
}

/// Creates `units` in their namespaces, 16 requests at a time: the plain client loop both
/// baselines use.
async fn create_all(hub: &kube::Client, units: Vec<WorkUnit>) -> anyhow::Result<()> {
    futures::stream::iter(units)
        .map(|unit| {
            let namespace = unit.metadata.namespace.clone().unwrap_or_default();
            let api = Api::<WorkUnit>::namespaced(hub.clone(), &namespace);
            async move { api.create(&PostParams::default(), &unit).await.map(|_| ()) }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(())
}

/// Deletes every unit matching `label`, in every namespace, and waits until they are gone.
async fn delete_all(hub: &kube::Client, label: &str) -> anyhow::Result<()> {
    let units: Api<WorkUnit> = Api::all(hub.clone());
    let listed = units.list_metadata(&ListParams::default().labels(label)).await?;
    let namespaces: BTreeSet<String> =
        listed.items.iter().filter_map(|u| u.metadata.namespace.clone()).collect();
    for namespace in namespaces {
        Api::<WorkUnit>::namespaced(hub.clone(), &namespace)
            .delete_collection(&Default::default(), &ListParams::default().labels(label))
            .await?;
    }
    while !units.list_metadata(&ListParams::default().labels(label).limit(1)).await?.items.is_empty() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
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

    // The operator places the job.
    let profile = if args.debug_operator { Profile::Debug } else { Profile::Release };
    let in_flight = format!("--max-units-in-flight={chunks}");
    let operator = network::start_operator_built(&plane, profile, 30, None, &[&in_flight])?;
    let units: Api<WorkUnit> = Api::all(hub.clone());
    let jobs = Api::<RenderJob>::namespaced(hub.clone(), "default");
    let job: RenderJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "RenderJob", "metadata": {"name": "feature-film", "namespace": "default"},
        "spec": {"scene": "s3://scenes/film.blend", "frames": {"start": 1, "end": args.frames}, "chunkSize": args.chunk_size,
                 "output": {"location": "s3://renders/film/"}, "verificationPercent": 0}}))?;
    // The job's UID is not known before it is created: watch for render units by the chunk
    // label every one of them carries.
    let arrivals = watch_arrivals(Api::all(hub.clone()), labels::CHUNK.to_string(), chunks as usize).await;
    let cpu_before = cpu_of(&plane, Some(operator.pid()));
    let started = Instant::now();
    let job = jobs.create(&PostParams::default(), &job).await?;
    let label = format!("{}={}", labels::JOB_UID, job.metadata.uid.unwrap_or_default());
    let limit = Duration::from_secs(900);
    let placed_arrivals = tokio::select! {
        arrived = arrivals => Some(arrived??),
        () = async {
            while operator_alive(&plane).is_ok() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        } => None,
        () = tokio::time::sleep(limit) => None,
    };
    let operator_cpu = cpu_spent(cpu_before, cpu_of(&plane, Some(operator.pid())));
    operator_alive(&plane)?;
    let placed_arrivals =
        placed_arrivals.ok_or_else(|| anyhow::anyhow!("not every unit was placed in {limit:?}"))?;
    let took = placed_arrivals.all - started;
    let peak = peak_rss_mib(operator.pid());
    let placed_units = units.list(&ListParams::default().labels(&label)).await?.items;
    let placed = placed_units.len();
    let members_used =
        placed_units.iter().filter_map(|u| u.metadata.namespace.clone()).collect::<BTreeSet<_>>().len();
    drop(operator);

    // Baseline: the very units the operator made, created again by a plain client loop with
    // no placement, once the operator is stopped and its units are gone — the API server's
    // floor for this work.
    delete_all(&hub, &label).await?;
    let replay: Vec<WorkUnit> = placed_units
        .into_iter()
        .map(|unit| {
            let mut copy = WorkUnit::new(&unit.metadata.name.clone().unwrap_or_default(), unit.spec);
            copy.metadata.namespace = unit.metadata.namespace;
            copy.metadata.annotations = unit.metadata.annotations;
            let mut labels = unit.metadata.labels.unwrap_or_default();
            labels.insert("bench".into(), "baseline".into());
            copy.metadata.labels = Some(labels);
            copy
        })
        .collect();
    let arrivals = watch_arrivals(Api::all(hub.clone()), "bench=baseline".into(), replay.len()).await;
    let cpu_before = cpu_of(&plane, None);
    let baseline_started = Instant::now();
    create_all(&hub, replay).await?;
    let baseline_arrivals = arrivals.await??;
    let baseline = baseline_arrivals.all - baseline_started;
    let baseline_cpu = cpu_spent(cpu_before, cpu_of(&plane, None));

    // The floor this benchmark used before, for comparison: as many minimal units (one pod, no
    // command, env or annotations), created by the same loop into one namespace.
    delete_all(&hub, "bench=baseline").await?;
    let template: WorkUnit = serde_json::from_value(serde_json::json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
        "metadata": {"name": "x", "namespace": "pictor-member-m00", "labels": {"bench": "minimal"}},
        "spec": {"jobRef": {"kind": "RenderJob", "namespace": "default", "name": "baseline", "uid": "0"},
                 "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": 1}], "agreedPricePerGpuHour": 1}}))?;
    let arrivals = watch_arrivals(
        Api::namespaced(hub.clone(), "pictor-member-m00"),
        "bench=minimal".into(),
        chunks as usize,
    )
    .await;
    let minimal_started = Instant::now();
    let minimal_units = (0..chunks).map(|i| {
        let mut unit = template.clone();
        unit.metadata.name = Some(format!("minimal-{i:06}"));
        unit
    });
    create_all(&hub, minimal_units.collect()).await?;
    let minimal = arrivals.await??.all - minimal_started;
    renewer.abort();

    println!(
        "placement of a {}-frame RenderJob ({chunks} chunks) on {} members ({} build of pictor-operator)",
        args.frames,
        args.members,
        profile.name()
    );
    println!(
        "  pictor-operator: {placed} units placed in {:.1} s ({:.0} units/s) on {members_used} members; peak RSS {}",
        took.as_secs_f64(),
        placed as f64 / took.as_secs_f64(),
        peak.map_or("unknown".into(), |m| format!("{m:.1} MiB"))
    );
    println!(
        "    first unit after {:.2} s (reading the job, planning every chunk); the last {:.1} s after it; {operator_cpu}",
        (placed_arrivals.first - started).as_secs_f64(),
        (placed_arrivals.all - placed_arrivals.first).as_secs_f64(),
    );
    println!(
        "  baseline (the same units, created again by a plain loop): {chunks} units in {:.1} s ({:.0} units/s)",
        baseline.as_secs_f64(),
        chunks as f64 / baseline.as_secs_f64()
    );
    println!(
        "    first unit after {:.2} s; the last {:.1} s after it; {baseline_cpu}",
        (baseline_arrivals.first - baseline_started).as_secs_f64(),
        (baseline_arrivals.all - baseline_arrivals.first).as_secs_f64(),
    );
    println!("  ratio operator / baseline time: {:.2}", took.as_secs_f64() / baseline.as_secs_f64());
    println!(
        "  for comparison, {chunks} minimal units (one pod, no command or env) by the same loop: {:.1} s; ratio operator / that: {:.2}",
        minimal.as_secs_f64(),
        took.as_secs_f64() / minimal.as_secs_f64()
    );
    anyhow::ensure!(placed as i64 >= chunks, "only {placed} of {chunks} units placed in {limit:?}");
    Ok(())
}

fn operator_alive(plane: &ControlPlane) -> anyhow::Result<()> {
    plane.check_alive().map_err(anyhow::Error::from)
}
