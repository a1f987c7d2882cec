//! `scheduler-bench`: the same workloads through kube-scheduler and pictor-scheduler, each on
//! a fresh local control plane with kwok nodes, and the ratios between them.
//!
//! Workloads: `gpu-mix` (GPU nodes from the catalogue; mostly 1- and 2-GPU pods, some CPU-only,
//! and 4×8-GPU training gangs — for kube-scheduler through its own gang scheduling, the
//! Workload API's PodGroup behind the `GenericWorkload` gate) and `basic` (scheduler_perf's
//! SchedulingBasic: 4-CPU nodes, pause-sized pods, the first batch placed before the measured
//! one). Per run: pods bound per second (creation to bound), p50/p99 latency, the scheduler's
//! CPU-seconds and peak memory from /proc, and afterwards how many 4×8-GPU gangs still fit.
//! Each run is checked: no node over-committed, no gang partly bound.

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use pictor_crds::contract::{Vendor, annotations, labels};
use pictor_e2e::{ComponentFlags, ControlPlane, ControlPlaneOptions, GpuModel, ManagedProcess, fake_nodes};
use pictor_scheduler::resources::Resources;
use pictor_scheduler::view::{NodeInfo, PodInfo};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "bench";

#[derive(Parser, Debug, Clone)]
#[command(about = "kube-scheduler against pictor-scheduler on fresh local control planes")]
struct Args {
    /// GPU nodes of the gpu-mix workload.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods of the gpu-mix workload.
    #[arg(long, default_value_t = 20_000)]
    pods: usize,
    /// Nodes of the SchedulingBasic workload.
    #[arg(long, default_value_t = 5000)]
    basic_nodes: usize,
    /// Pods placed before measuring in SchedulingBasic.
    #[arg(long, default_value_t = 1000)]
    basic_init_pods: usize,
    /// Pods measured in SchedulingBasic.
    #[arg(long, default_value_t = 1000)]
    basic_measured_pods: usize,
    /// Workloads to run, comma-separated: gpu-mix, basic.
    #[arg(long, default_value = "gpu-mix,basic")]
    workloads: String,
    /// Schedulers to run, comma-separated: kube-scheduler, pictor-scheduler.
    #[arg(long, default_value = "kube-scheduler,pictor-scheduler")]
    schedulers: String,
    /// Pod creations in flight at once.
    #[arg(long, default_value_t = 32)]
    create_concurrency: usize,
    /// A run ends when no pod was bound for this long.
    #[arg(long, default_value_t = 30)]
    stall_seconds: u64,
    /// Upper bound on one run's measured phase.
    #[arg(long, default_value_t = 600)]
    run_limit_seconds: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Kube,
    Pictor,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Self::Kube => "kube-scheduler",
            Self::Pictor => "pictor-scheduler",
        }
    }
}

/// One pod to create.
#[derive(Clone, Debug)]
struct PodPlan {
    name: String,
    /// `(resource, count)` of GPUs, if any.
    gpus: Option<(&'static str, u32)>,
    cpu: String,
    memory: String,
    gang: Option<String>,
}

/// Deterministic pseudo-random numbers (the same workload for both schedulers).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn gpu_mix_nodes(n: usize) -> Vec<Node> {
    let m = |s| fake_nodes::model(s).expect("catalogue model");
    let split = [(m("h100"), 0.5), (m("mi300x"), 0.2), (m("rtx4090"), 0.2), (m("rx7900xtx"), 0.1)];
    let counts: Vec<(GpuModel, usize)> =
        split.iter().map(|(g, f)| (*g, (n as f64 * f).round() as usize)).collect();
    fake_nodes::fleet("b", &counts)
}

/// Mostly 1- and 2-GPU pods, some CPU-only, and a 4×8-GPU gang after every ~80 pods.
fn gpu_mix_pods(n: usize) -> Vec<PodPlan> {
    let mut rng = Lcg(42);
    let gangs = n * 5 / 100 / 4;
    let every = if gangs == 0 { usize::MAX } else { n / gangs.max(1) };
    let mut plans = Vec::with_capacity(n);
    let mut gang_index = 0;
    while plans.len() < n {
        let i = plans.len();
        if gang_index < gangs && i % every == every / 2 && plans.len() + 4 <= n {
            let resource = if rng.next() < 0.75 { Vendor::Nvidia } else { Vendor::Amd }.resource_name();
            let gang = format!("gang-{gang_index}");
            for k in 0..4 {
                plans.push(PodPlan {
                    name: format!("{gang}-{k}"),
                    gpus: Some((resource, 8)),
                    cpu: "16".into(),
                    memory: "64Gi".into(),
                    gang: Some(gang.clone()),
                });
            }
            gang_index += 1;
            continue;
        }
        let kind = rng.next();
        let resource = if rng.next() < 0.7 { Vendor::Nvidia } else { Vendor::Amd }.resource_name();
        let (gpus, cpu, memory) = if kind < 0.58 {
            (Some((resource, 1)), "2", "8Gi")
        } else if kind < 0.79 {
            (Some((resource, 2)), "4", "16Gi")
        } else {
            (None, "1", "2Gi")
        };
        plans.push(PodPlan {
            name: format!("pod-{i}"),
            gpus,
            cpu: cpu.into(),
            memory: memory.into(),
            gang: None,
        });
    }
    plans
}

/// scheduler_perf's node-default.yaml: 4 CPUs, 32Gi, 110 pods.
fn basic_nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let name = format!("perf-{i}");
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {"kubernetes.io/hostname": name, "type": "kwok"}},
                "spec": {},
                "status": {"capacity": {"pods": "110", "cpu": "4", "memory": "32Gi"},
                    "allocatable": {"pods": "110", "cpu": "4", "memory": "32Gi"}},
            }))
            .expect("a valid node")
        })
        .collect()
}

/// scheduler_perf's pod-default.yaml: 100m CPU, 500Mi.
fn basic_pods(prefix: &str, n: usize) -> Vec<PodPlan> {
    (0..n)
        .map(|i| PodPlan {
            name: format!("{prefix}-{i}"),
            gpus: None,
            cpu: "100m".into(),
            memory: "500Mi".into(),
            gang: None,
        })
        .collect()
}

fn pod_json(plan: &PodPlan, which: Which) -> Value {
    let mut requests = json!({"cpu": plan.cpu, "memory": plan.memory});
    if let Some((resource, n)) = plan.gpus {
        requests[resource] = json!(n.to_string());
    }
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": plan.name, "namespace": NS},
        "spec": {
            "schedulerName": if which == Which::Pictor { "pictor-scheduler" } else { "default-scheduler" },
            "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10.2",
                "resources": {"requests": requests, "limits": requests}}],
            "terminationGracePeriodSeconds": 0,
        },
    });
    if let Some(gang) = &plan.gang {
        pod["metadata"]["labels"] = json!({labels::GANG: gang});
        pod["metadata"]["annotations"] = json!({annotations::GANG_SIZE: "4"});
        if which == Which::Kube {
            pod["spec"]["schedulingGroup"] = json!({"podGroupName": gang});
        }
    }
    pod
}

/// Creation and binding times of the measured pods.
#[derive(Default)]
struct Timeline {
    created: HashMap<String, Instant>,
    bound: HashMap<String, Instant>,
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the file (utime, stime), counted after the command name.
    let ticks: u64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

fn peak_memory_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct RunResult {
    workload: String,
    scheduler: Which,
    measured: usize,
    bound: usize,
    pods_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_seconds: f64,
    cpu_seconds_total: f64,
    peak_mib: f64,
    whole_free_8gpu_nodes: usize,
    gangs_that_fit: usize,
    over_committed: usize,
    partial_gangs: usize,
    gangs_bound: usize,
}

async fn create_nodes(client: &kube::Client, nodes: Vec<Node>, concurrency: usize) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let total = nodes.len();
    futures::stream::iter(nodes)
        .map(|n| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &n).await.map(|_| ()) }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    let started = Instant::now();
    loop {
        let ready = api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|n| {
                let ready = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                let tainted = n.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| !t.is_empty());
                ready && !tainted
            })
            .count();
        if ready == total {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "only {ready}/{total} nodes became Ready"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn create_pods(
    client: &kube::Client,
    plans: &[PodPlan],
    which: Which,
    timeline: &Arc<Mutex<Timeline>>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let pods: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &ApiResource::erase::<Pod>(&()));
    let groups: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &ApiResource {
            group: "scheduling.k8s.io".into(),
            version: "v1beta1".into(),
            api_version: "scheduling.k8s.io/v1beta1".into(),
            kind: "PodGroup".into(),
            plural: "podgroups".into(),
        },
    );
    futures::stream::iter(plans.iter())
        .map(|plan| {
            let (pods, groups, timeline) = (pods.clone(), groups.clone(), timeline.clone());
            async move {
                if which == Which::Kube
                    && let Some(gang) = &plan.gang
                    && plan.name.ends_with("-0")
                {
                    let group: DynamicObject = serde_json::from_value(json!({
                        "apiVersion": "scheduling.k8s.io/v1beta1", "kind": "PodGroup",
                        "metadata": {"name": gang, "namespace": NS},
                        "spec": {"schedulingPolicy": {"gang": {"minCount": 4}}},
                    }))?;
                    groups.create(&PostParams::default(), &group).await?;
                }
                let obj: DynamicObject = serde_json::from_value(pod_json(plan, which))?;
                pods.create(&PostParams::default(), &obj).await?;
                timeline
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .created
                    .insert(plan.name.clone(), Instant::now());
                anyhow::Ok(())
            }
        })
        // Gang pods are created in order so a PodGroup exists before its pods.
        .buffered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Waits until every measured pod is bound, or none was bound for `stall`.
async fn wait_bound(timeline: &Arc<Mutex<Timeline>>, expected: usize, stall: Duration, limit: Duration) {
    let started = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let bound = timeline.lock().unwrap_or_else(|e| e.into_inner()).bound.len();
        if bound >= expected || started.elapsed() > limit {
            return;
        }
        if bound != last.0 {
            last = (bound, Instant::now());
        } else if last.1.elapsed() > stall {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// Over-committed nodes, whole free 8-GPU nodes, 4×8 gangs that fit, partial and whole gangs.
async fn audit(client: &kube::Client) -> anyhow::Result<(usize, usize, usize, usize, usize)> {
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?;
    let pods = Api::<Pod>::all(client.clone()).list(&ListParams::default()).await?;
    let mut used: HashMap<String, Resources> = HashMap::new();
    let mut gangs: HashMap<String, usize> = HashMap::new();
    for p in &pods.items {
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else { continue };
        if let Some(g) = p.metadata.labels.as_ref().and_then(|l| l.get(labels::GANG)) {
            *gangs.entry(g.clone()).or_default() += 1;
        }
        // What the pod asks for, read exactly as the scheduler reads it; finished pods hold nothing.
        if let Some(info) = PodInfo::from_pod(p, "").filter(|i| !i.done) {
            let entry = used.entry(node).or_default();
            *entry = entry.plus(&info.requests);
        }
    }
    let mut over = 0;
    let mut free_whole: BTreeMap<Vendor, usize> = BTreeMap::new();
    for n in &nodes.items {
        let Some(info) = NodeInfo::from_node(n) else { continue };
        let u = used.get(&info.name).copied().unwrap_or_default();
        if u.first_shortfall(&info.allocatable).is_some() {
            over += 1;
        }
        for (vendor, cap) in info.allocatable.gpus.iter() {
            if cap == 8 && u.gpus[vendor] == 0 {
                *free_whole.entry(vendor).or_default() += 1;
            }
        }
    }
    let whole: usize = free_whole.values().sum();
    let fit: usize = free_whole.values().map(|n| n / 4).sum();
    let partial = gangs.values().filter(|n| **n > 0 && **n < 4).count();
    let complete = gangs.values().filter(|n| **n >= 4).count();
    Ok((over, whole, fit, partial, complete))
}

fn readyz(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn run_one(args: &Args, workload: &str, which: Which) -> anyhow::Result<RunResult> {
    eprintln!("== {workload} on {}: starting a fresh control plane", which.name());
    let flags = ComponentFlags {
        api_server: vec![
            "--feature-gates=GenericWorkload=true".into(),
            "--runtime-config=scheduling.k8s.io/v1beta1=true".into(),
        ],
        kube_scheduler: vec!["--feature-gates=GenericWorkload=true".into()],
    };
    let plane = ControlPlane::start_with_flags(
        ControlPlaneOptions { members: 1, kube_scheduler: which == Which::Kube },
        flags,
    )
    .await?;
    let member = plane.members[0].clone();
    let client = member.client().await?;
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    ns.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": NS}}))?).await?;

    // Both schedulers run before the nodes arrive, so both pay for watching them.
    let mut pictor: Option<ManagedProcess> = None;
    let pid = match which {
        Which::Kube => plane.pid_of(&format!("{}-kube-scheduler", member.name)).expect("kube-scheduler runs"),
        Which::Pictor => {
            let exe = std::env::current_exe()?;
            let binary: PathBuf = exe.parent().expect("a folder").join("pictor-scheduler");
            anyhow::ensure!(
                binary.exists(),
                "{} is missing: build it first (make bench-scheduler)",
                binary.display()
            );
            let port = free_port()?;
            let args = vec![
                "--no-leader-elect".to_string(),
                format!("--http-addr=127.0.0.1:{port}"),
                format!("--identity=bench-{}", std::process::id()),
            ];
            let wrapper = plane.run_dir().join("pictor-scheduler.sh");
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\nexport KUBECONFIG={}\nexport RUST_LOG=warn\nexec {} \"$@\"\n",
                    member.kubeconfig.display(),
                    binary.display()
                ),
            )?;
            std::process::Command::new("chmod").arg("+x").arg(&wrapper).status()?;
            let process = ManagedProcess::spawn("pictor-scheduler", &wrapper, &args, plane.run_dir())?;
            let started = Instant::now();
            while !readyz(port) {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "pictor-scheduler never became ready"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let pid = process.pid();
            pictor = Some(process);
            pid
        }
    };

    let (nodes, init, measured) = match workload {
        "gpu-mix" => (gpu_mix_nodes(args.nodes), Vec::new(), gpu_mix_pods(args.pods)),
        "basic" => (
            basic_nodes(args.basic_nodes),
            basic_pods("init", args.basic_init_pods),
            basic_pods("measured", args.basic_measured_pods),
        ),
        other => anyhow::bail!("unknown workload {other}"),
    };
    let node_count = nodes.len();
    let t = Instant::now();
    create_nodes(&client, nodes, args.create_concurrency).await?;
    eprintln!("   {node_count} nodes Ready in {:.1}s", t.elapsed().as_secs_f64());

    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let watch_timeline = timeline.clone();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let watch = tokio::spawn(async move {
        let stream = watcher(pods_api, watcher::Config::default()).default_backoff().applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Some(Ok(pod)) = stream.next().await {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                let name = pod.metadata.name.unwrap_or_default();
                watch_timeline
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .bound
                    .entry(name)
                    .or_insert_with(Instant::now);
            }
        }
    });

    if !init.is_empty() {
        let warmup = Arc::new(Mutex::new(Timeline::default()));
        create_pods(&client, &init, which, &warmup, args.create_concurrency).await?;
        let started = Instant::now();
        loop {
            let bound = {
                let t = timeline.lock().unwrap_or_else(|e| e.into_inner());
                init.iter().filter(|p| t.bound.contains_key(&p.name)).count()
            };
            if bound == init.len() || started.elapsed() > Duration::from_secs(300) {
                eprintln!("   {bound}/{} init pods bound", init.len());
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    let cpu_before = cpu_seconds(pid);
    let t = Instant::now();
    eprintln!("   creating {} measured pods", measured.len());
    create_pods(&client, &measured, which, &timeline, args.create_concurrency).await?;
    eprintln!("   created in {:.1}s", t.elapsed().as_secs_f64());
    wait_bound(
        &timeline,
        measured.len() + init.len(),
        Duration::from_secs(args.stall_seconds),
        Duration::from_secs(args.run_limit_seconds),
    )
    .await;
    let cpu_after = cpu_seconds(pid);
    let peak = peak_memory_mib(pid);
    watch.abort();

    let (bound_n, pods_per_second, p50, p99) = {
        let t = timeline.lock().unwrap_or_else(|e| e.into_inner());
        let first_created = measured.iter().filter_map(|p| t.created.get(&p.name)).min().copied();
        let mut latencies = Vec::new();
        let mut last_bound = None;
        for p in &measured {
            if let (Some(c), Some(b)) = (t.created.get(&p.name), t.bound.get(&p.name)) {
                latencies.push(b.saturating_duration_since(*c).as_secs_f64() * 1000.0);
                last_bound = last_bound.max(Some(*b));
            }
        }
        latencies.sort_by(f64::total_cmp);
        let span = match (first_created, last_bound) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
            _ => f64::NAN,
        };
        (
            latencies.len(),
            latencies.len() as f64 / span,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
        )
    };
    let (over, whole, fit, partial, complete) = audit(&client).await?;
    drop(pictor);
    drop(plane);
    let result = RunResult {
        workload: workload.into(),
        scheduler: which,
        measured: measured.len(),
        bound: bound_n,
        pods_per_second,
        p50_ms: p50,
        p99_ms: p99,
        cpu_seconds: cpu_after - cpu_before,
        cpu_seconds_total: cpu_after,
        peak_mib: peak,
        whole_free_8gpu_nodes: whole,
        gangs_that_fit: fit,
        over_committed: over,
        partial_gangs: partial,
        gangs_bound: complete,
    };
    eprintln!(
        "   {}: {:.2} CPU-seconds during the measured phase, {:.2} since start (nodes included)",
        which.name(),
        result.cpu_seconds,
        result.cpu_seconds_total
    );
    print_row(&result);
    Ok(result)
}

fn print_header() {
    println!(
        "{:<8} {:<17} {:>12} {:>9} {:>9} {:>9} {:>8} {:>9} {:>8} {:>9} {:>8} {:>6} {:>6} {:>7}",
        "workload",
        "scheduler",
        "bound",
        "pods/s",
        "p50 ms",
        "p99 ms",
        "cpu s",
        "cpu ms/pod",
        "peak MiB",
        "free 8gpu",
        "4x8 fit",
        "gangs",
        "over",
        "partial"
    );
}

fn print_row(r: &RunResult) {
    println!(
        "{:<8} {:<17} {:>12} {:>9.1} {:>9.0} {:>9.0} {:>8.2} {:>9.3} {:>8.0} {:>9} {:>8} {:>6} {:>6} {:>7}",
        r.workload,
        r.scheduler.name(),
        format!("{}/{}", r.bound, r.measured),
        r.pods_per_second,
        r.p50_ms,
        r.p99_ms,
        r.cpu_seconds,
        r.cpu_seconds * 1000.0 / r.bound.max(1) as f64,
        r.peak_mib,
        r.whole_free_8gpu_nodes,
        r.gangs_that_fit,
        r.gangs_bound,
        r.over_committed,
        r.partial_gangs
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube=off,kube_client=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    println!(
        "scheduler-bench: gpu-mix {} nodes / {} pods; basic {} nodes / {}+{} pods; {} CPUs here",
        args.nodes,
        args.pods,
        args.basic_nodes,
        args.basic_init_pods,
        args.basic_measured_pods,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut results = Vec::new();
    for workload in args.workloads.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        for which in [Which::Kube, Which::Pictor] {
            if !args.schedulers.split(',').any(|s| s.trim() == which.name()) {
                continue;
            }
            print_header();
            results.push(run_one(&args, workload, which).await?);
        }
    }
    println!();
    print_header();
    results.iter().for_each(print_row);
    println!();
    let mut failed = false;
    for r in &results {
        if r.over_committed > 0 || r.partial_gangs > 0 {
            println!(
                "CHECK FAILED: {} {}: {} over-committed nodes, {} partly bound gangs",
                r.workload,
                r.scheduler.name(),
                r.over_committed,
                r.partial_gangs
            );
            failed = true;
        }
    }
    for workload in args.workloads.split(',').map(str::trim) {
        let find = |w: Which| results.iter().find(|r| r.workload == workload && r.scheduler == w);
        if let (Some(k), Some(p)) = (find(Which::Kube), find(Which::Pictor)) {
            let per_pod = |r: &RunResult| r.cpu_seconds / r.bound.max(1) as f64;
            println!(
                "{workload}: pictor/kube pods/s {:.2}x, p50 {:.3}x, p99 {:.3}x, CPU per pod {:.3}x, peak memory {:.2}x, 4x8 gangs that still fit {} vs {}",
                p.pods_per_second / k.pods_per_second,
                p.p50_ms / k.p50_ms,
                p.p99_ms / k.p99_ms,
                per_pod(p) / per_pod(k),
                p.peak_mib / k.peak_mib,
                p.gangs_that_fit,
                k.gangs_that_fit
            );
        }
    }
    if failed {
        anyhow::bail!("a run over-committed a node or left a gang partly bound");
    }
    Ok(())
}
