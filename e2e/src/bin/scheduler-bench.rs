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
//!
//! The default mode is a backlog: every gpu-mix pod is created first with no scheduler running,
//! then the scheduler under test starts cold and is timed to its last binding — a queue of jobs
//! meeting a scheduler after an outage or a burst. The same backlog is drained, on its own fresh
//! control plane, by `round-robin-binder`, which binds without deciding: the API server's
//! ceiling, against which each scheduler's pods/s is read. `--mode arrival` runs the schedulers
//! while the pods are created (where the creation rate bounds what can be seen).

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use pictor_crds::contract::{Vendor, annotations, labels};
use pictor_e2e::{
    Cluster, ComponentFlags, ControlPlane, ControlPlaneOptions, GpuModel, ManagedProcess, fake_nodes,
};
use pictor_scheduler::resources::Resources;
use pictor_scheduler::view::{NodeInfo, PodInfo};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
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
    /// `backlog`: the gpu-mix pods are all created before the scheduler under test starts,
    /// against the API server's ceiling (a no-decision binder). `arrival`: the schedulers run
    /// while the pods are created (the `--workloads`).
    #[arg(long, default_value = "backlog")]
    mode: String,
    /// Workloads of the arrival mode, comma-separated: gpu-mix, basic.
    #[arg(long, default_value = "gpu-mix,basic")]
    workloads: String,
    /// What to run, comma-separated: ceiling (backlog only), pictor-scheduler, kube-scheduler.
    #[arg(long, default_value = "ceiling,pictor-scheduler,kube-scheduler")]
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
    /// The no-decision binder (`round-robin-binder`): the API server's ceiling.
    Ceiling,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Self::Kube => "kube-scheduler",
            Self::Pictor => "pictor-scheduler",
            Self::Ceiling => "ceiling",
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
            "schedulerName": if which == Which::Kube { "default-scheduler" } else { "pictor-scheduler" },
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

/// Waits until every measured pod is bound, or none was bound for `stall` (`first_stall`
/// before the first binding: a scheduler meeting a backlog lists it first).
async fn wait_bound(
    timeline: &Arc<Mutex<Timeline>>,
    expected: usize,
    (first_stall, stall): (Duration, Duration),
    limit: Duration,
) {
    let started = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let bound = timeline.lock().unwrap_or_else(|e| e.into_inner()).bound.len();
        if bound >= expected || started.elapsed() > limit {
            return;
        }
        if bound != last.0 {
            last = (bound, Instant::now());
        } else if last.1.elapsed() > if bound == 0 { first_stall } else { stall } {
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

/// What a run left behind, read from the API server after it.
struct Audit {
    /// Nodes holding more than they have.
    over_committed: usize,
    /// 8-GPU nodes with no GPU in use.
    whole_free_8gpu_nodes: usize,
    /// 4×8-GPU gangs that still fit in those (per vendor).
    gangs_that_fit: usize,
    /// Gangs with some but not all members bound.
    partial_gangs: usize,
    /// Gangs with every member bound.
    gangs_bound: usize,
    /// GPUs of 8-GPU nodes, and those left free.
    gpus_8gpu_nodes: u64,
    free_gpus_8gpu_nodes: u64,
    /// Free GPUs on partly used 8-GPU nodes: no 8-GPU gang member can use them.
    stranded_gpus: u64,
}

async fn audit(client: &kube::Client) -> anyhow::Result<Audit> {
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
    let (mut total8, mut free8, mut stranded) = (0u64, 0u64, 0u64);
    for n in &nodes.items {
        let Some(info) = NodeInfo::from_node(n) else { continue };
        let u = used.get(&info.name).copied().unwrap_or_default();
        if u.first_shortfall(&info.allocatable).is_some() {
            over += 1;
        }
        for (vendor, cap) in info.allocatable.gpus.iter() {
            if cap != 8 {
                continue;
            }
            let in_use = u.gpus[vendor].clamp(0, 8);
            total8 += 8;
            free8 += (8 - in_use) as u64;
            if in_use == 0 {
                *free_whole.entry(vendor).or_default() += 1;
            } else {
                stranded += (8 - in_use) as u64;
            }
        }
    }
    Ok(Audit {
        over_committed: over,
        whole_free_8gpu_nodes: free_whole.values().sum(),
        gangs_that_fit: free_whole.values().map(|n| n / 4).sum(),
        partial_gangs: gangs.values().filter(|n| **n > 0 && **n < 4).count(),
        gangs_bound: gangs.values().filter(|n| **n >= 4).count(),
        gpus_8gpu_nodes: total8,
        free_gpus_8gpu_nodes: free8,
        stranded_gpus: stranded,
    })
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

/// A binary built next to this one (`make bench-scheduler` builds them together).
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let binary = exe.parent().expect("a folder").join(name);
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: build it first (make bench-scheduler)",
        binary.display()
    );
    Ok(binary)
}

/// Starts a workspace binary against `member`'s API server, logging into the run folder.
fn spawn_against(
    plane: &ControlPlane,
    member: &Cluster,
    binary: &str,
    args: &[String],
) -> anyhow::Result<ManagedProcess> {
    let path = sibling_binary(binary)?;
    let env: [(&str, &Path); 2] = [("KUBECONFIG", &member.kubeconfig), ("RUST_LOG", Path::new("warn"))];
    Ok(ManagedProcess::spawn_with_env(binary, &path, args, &env, plane.run_dir())?)
}

/// pictor-scheduler as deployed with one replica, its HTTP endpoints on `port`.
fn spawn_pictor(plane: &ControlPlane, member: &Cluster, port: u16) -> anyhow::Result<ManagedProcess> {
    let args = vec![
        "--no-leader-elect".to_string(),
        format!("--http-addr=127.0.0.1:{port}"),
        format!("--identity=bench-{}", std::process::id()),
    ];
    spawn_against(plane, member, "pictor-scheduler", &args)
}

/// kube-scheduler as the control plane starts it (same client QPS and burst, gangs on), but
/// started by the benchmark, after the backlog is in place.
fn spawn_kube_scheduler(plane: &ControlPlane, member: &Cluster) -> anyhow::Result<ManagedProcess> {
    let config = plane.run_dir().join("backlog-kube-scheduler.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nleaderElection:\n  leaderElect: false\nclientConnection:\n  kubeconfig: {}\n  qps: 5000\n  burst: 10000\n",
            member.kubeconfig.display()
        ),
    )?;
    let args = vec![
        format!("--config={}", config.display()),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", free_port()?),
        "--feature-gates=GenericWorkload=true".into(),
    ];
    Ok(ManagedProcess::spawn(
        "kube-scheduler",
        &plane.binaries.path("kube-scheduler"),
        &args,
        plane.run_dir(),
    )?)
}

/// A fresh control plane with one member, kube-scheduler's gang scheduling allowed, and the
/// benchmark's namespace.
async fn fresh_plane(kube_scheduler: bool) -> anyhow::Result<(ControlPlane, Cluster, kube::Client)> {
    let flags = ComponentFlags {
        api_server: vec![
            "--feature-gates=GenericWorkload=true".into(),
            "--runtime-config=scheduling.k8s.io/v1beta1=true".into(),
        ],
        kube_scheduler: vec!["--feature-gates=GenericWorkload=true".into()],
    };
    let plane =
        ControlPlane::start_with_flags(ControlPlaneOptions { members: 1, kube_scheduler }, flags).await?;
    let member = plane.members[0].clone();
    let client = member.client().await?;
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    ns.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": NS}}))?).await?;
    Ok((plane, member, client))
}

/// Records when the benchmark's own watch first sees each pod of the namespace bound.
fn watch_bindings(client: &kube::Client) -> (Arc<Mutex<Timeline>>, tokio::task::JoinHandle<()>) {
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
    (timeline, watch)
}

async fn run_one(args: &Args, workload: &str, which: Which) -> anyhow::Result<RunResult> {
    eprintln!("== {workload} on {}: starting a fresh control plane", which.name());
    let (plane, member, client) = fresh_plane(which == Which::Kube).await?;

    // Both schedulers run before the nodes arrive, so both pay for watching them.
    let mut pictor: Option<ManagedProcess> = None;
    let pid = match which {
        Which::Kube => plane.pid_of(&format!("{}-kube-scheduler", member.name)).expect("kube-scheduler runs"),
        Which::Pictor => {
            let port = free_port()?;
            let process = spawn_pictor(&plane, &member, port)?;
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
        Which::Ceiling => anyhow::bail!("the ceiling is measured on a backlog only"),
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

    let (timeline, watch) = watch_bindings(&client);

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
    let stall = Duration::from_secs(args.stall_seconds);
    wait_bound(
        &timeline,
        measured.len() + init.len(),
        (stall, stall),
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
    let audited = audit(&client).await?;
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
        whole_free_8gpu_nodes: audited.whole_free_8gpu_nodes,
        gangs_that_fit: audited.gangs_that_fit,
        over_committed: audited.over_committed,
        partial_gangs: audited.partial_gangs,
        gangs_bound: audited.gangs_bound,
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

/// One contender draining the backlog.
struct BacklogResult {
    which: Which,
    measured: usize,
    bound: usize,
    /// From the contender's start to its first and last binding, as the benchmark's watch saw them.
    first_bind_s: f64,
    drain_s: f64,
    pods_per_second: f64,
    cpu_seconds: f64,
    peak_mib: f64,
    gangs: usize,
    gangs_whole: usize,
    /// From the contender's start until the last gang had every member bound.
    gangs_s: f64,
    /// Nodes seen with a NoSchedule or NoExecute taint while it drained.
    tainted_nodes: usize,
    audit: Audit,
}

impl BacklogResult {
    fn cpu_ms_per_pod(&self) -> f64 {
        self.cpu_seconds * 1000.0 / self.bound.max(1) as f64
    }

    fn gangs_per_second(&self) -> f64 {
        if self.gangs_whole == 0 { 0.0 } else { self.gangs_whole as f64 / self.gangs_s }
    }

    /// Free GPUs of 8-GPU nodes that sit on partly used nodes, as a share of all free ones.
    fn stranded_share(&self) -> f64 {
        self.audit.stranded_gpus as f64 / self.audit.free_gpus_8gpu_nodes.max(1) as f64
    }
}

/// Names of the nodes seen with a NoSchedule or NoExecute taint from now on. On a loaded machine
/// kwok's heartbeats can fall behind and the node controller marks nodes unreachable: a
/// scheduler then has fewer nodes, and every change to them sends it back over its refused pods.
fn watch_tainted_nodes(client: &kube::Client) -> (Arc<Mutex<HashSet<String>>>, tokio::task::JoinHandle<()>) {
    let tainted = Arc::new(Mutex::new(HashSet::new()));
    let seen = tainted.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    let watch = tokio::spawn(async move {
        let stream = watcher(nodes, watcher::Config::default()).default_backoff().applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Some(Ok(node)) = stream.next().await {
            let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
            if taints.iter().any(|t| t.effect == "NoSchedule" || t.effect == "NoExecute") {
                seen.lock().unwrap_or_else(|e| e.into_inner()).insert(node.metadata.name.unwrap_or_default());
            }
        }
    });
    (tainted, watch)
}

/// Creates the whole gpu-mix workload with no scheduler running, then starts `which` and
/// times it until the last binding (or a stall).
async fn run_backlog(args: &Args, which: Which) -> anyhow::Result<BacklogResult> {
    eprintln!("== backlog on {}: starting a fresh control plane", which.name());
    let (plane, member, client) = fresh_plane(false).await?;
    let nodes = gpu_mix_nodes(args.nodes);
    let node_count = nodes.len();
    let t = Instant::now();
    create_nodes(&client, nodes, args.create_concurrency).await?;
    eprintln!("   {node_count} nodes Ready in {:.1}s", t.elapsed().as_secs_f64());
    let (timeline, watch) = watch_bindings(&client);
    let measured = gpu_mix_pods(args.pods);
    let t = Instant::now();
    create_pods(&client, &measured, which, &timeline, args.create_concurrency).await?;
    eprintln!(
        "   {} pods created in {:.1}s with no scheduler running",
        measured.len(),
        t.elapsed().as_secs_f64()
    );
    let early = timeline.lock().unwrap_or_else(|e| e.into_inner()).bound.len();
    anyhow::ensure!(early == 0, "{early} pods were bound before any scheduler ran");

    let tainted = watch_tainted_nodes(&client);
    let started = Instant::now();
    let process = match which {
        Which::Ceiling => spawn_against(&plane, &member, "round-robin-binder", &[])?,
        Which::Pictor => spawn_pictor(&plane, &member, free_port()?)?,
        Which::Kube => spawn_kube_scheduler(&plane, &member)?,
    };
    let stall = Duration::from_secs(args.stall_seconds);
    wait_bound(
        &timeline,
        measured.len(),
        (Duration::from_secs(120), stall),
        Duration::from_secs(args.run_limit_seconds),
    )
    .await;
    let pid = process.pid();
    let cpu = cpu_seconds(pid);
    let peak = peak_memory_mib(pid);
    drop(process);
    watch.abort();
    tainted.1.abort();
    let tainted_nodes = tainted.0.lock().unwrap_or_else(|e| e.into_inner()).len();

    // Bindings as seconds since the contender started, taken out of the lock at once.
    let bound: HashMap<String, Instant> =
        std::mem::take(&mut timeline.lock().unwrap_or_else(|e| e.into_inner()).bound);
    let since = |i: &Instant| i.saturating_duration_since(started).as_secs_f64();
    let times: Vec<f64> = measured.iter().filter_map(|p| bound.get(&p.name)).map(since).collect();
    let first = times.iter().copied().fold(f64::INFINITY, f64::min);
    let last = times.iter().copied().fold(0.0, f64::max);
    let mut gang_done: HashMap<&str, Vec<Option<f64>>> = HashMap::new();
    for p in &measured {
        if let Some(g) = &p.gang {
            gang_done.entry(g).or_default().push(bound.get(&p.name).map(since));
        }
    }
    let whole: Vec<f64> = gang_done
        .values()
        .filter(|m| m.iter().all(Option::is_some))
        .map(|m| m.iter().flatten().copied().fold(0.0, f64::max))
        .collect();
    let audit = audit(&client).await?;
    drop(plane);
    let result = BacklogResult {
        which,
        measured: measured.len(),
        bound: times.len(),
        first_bind_s: first,
        drain_s: last,
        pods_per_second: times.len() as f64 / last,
        cpu_seconds: cpu,
        peak_mib: peak,
        gangs: gang_done.len(),
        gangs_whole: whole.len(),
        gangs_s: whole.iter().copied().fold(0.0, f64::max),
        tainted_nodes,
        audit,
    };
    print_backlog_row(&result, None);
    Ok(result)
}

fn print_backlog_header() {
    println!(
        "{:<17} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>8} {:>6} {:>7} {:>7}",
        "contender",
        "bound",
        "first s",
        "drain s",
        "pods/s",
        "ceiling",
        "cpu s",
        "cpu ms/pod",
        "peak MiB",
        "over",
        "partial",
        "tainted"
    );
}

/// One line of the table; `ceiling` is the round-robin binder's pods/s, when measured.
fn print_backlog_row(r: &BacklogResult, ceiling: Option<f64>) {
    let share = ceiling.map_or_else(|| "-".to_string(), |c| format!("{:.0}%", 100.0 * r.pods_per_second / c));
    // The round-robin binder ignores room and gangs: its over-commits are by design, not audited.
    let (over, partial) = if r.which == Which::Ceiling {
        ("-".to_string(), "-".to_string())
    } else {
        (r.audit.over_committed.to_string(), r.audit.partial_gangs.to_string())
    };
    println!(
        "{:<17} {:>12} {:>8.1} {:>8.1} {:>8.1} {:>8} {:>8.2} {:>10.3} {:>8.0} {:>6} {:>7} {:>7}",
        r.which.name(),
        format!("{}/{}", r.bound, r.measured),
        r.first_bind_s,
        r.drain_s,
        r.pods_per_second,
        share,
        r.cpu_seconds,
        r.cpu_ms_per_pod(),
        r.peak_mib,
        over,
        partial,
        r.tainted_nodes
    );
}

fn print_gang_line(r: &BacklogResult) {
    println!(
        "gangs {:<17} {}/{} 4x8 gangs whole in {:.1}s: {:.2} gangs/s; {} partly bound; stranded: {} of the {} GPUs left free of {} on 8-GPU nodes ({:.0}%) sit on partly used nodes; {} nodes left whole",
        r.which.name(),
        r.gangs_whole,
        r.gangs,
        r.gangs_s,
        r.gangs_per_second(),
        r.audit.partial_gangs,
        r.audit.stranded_gpus,
        r.audit.free_gpus_8gpu_nodes,
        r.audit.gpus_8gpu_nodes,
        100.0 * r.stranded_share(),
        r.audit.whole_free_8gpu_nodes
    );
}

/// The backlog table: every contender, each against the ceiling, and the ratios.
fn backlog_report(args: &Args, results: &[BacklogResult]) -> bool {
    let find = |w: Which| results.iter().find(|r| r.which == w);
    let ceiling = find(Which::Ceiling).map(|c| c.pods_per_second);
    println!();
    println!(
        "backlog: {} pods ({} in 4x8-GPU gangs) created on {} GPU nodes before any scheduler ran; each contender on a fresh control plane; {} CPUs here",
        results.first().map_or(args.pods, |r| r.measured),
        results.first().map_or(0, |r| r.gangs * 4),
        args.nodes,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print_backlog_header();
    results.iter().for_each(|r| print_backlog_row(r, ceiling));
    println!();
    for r in results.iter().filter(|r| r.which != Which::Ceiling) {
        print_gang_line(r);
    }
    if let (Some(k), Some(p)) = (find(Which::Kube), find(Which::Pictor)) {
        println!(
            "pictor/kube: pods/s {:.2}x (aim >= 2x), CPU per pod {:.3}x (aim <= 0.25x), peak memory {:.2}x, gangs/s {:.2}x",
            p.pods_per_second / k.pods_per_second,
            p.cpu_ms_per_pod() / k.cpu_ms_per_pod(),
            p.peak_mib / k.peak_mib,
            p.gangs_per_second() / k.gangs_per_second()
        );
    }
    if let (Some(c), Some(p)) = (ceiling, find(Which::Pictor)) {
        println!("pictor-scheduler at {:.0}% of the ceiling (aim >= 80%)", 100.0 * p.pods_per_second / c);
    }
    let mut failed = false;
    for r in results.iter().filter(|r| r.which != Which::Ceiling) {
        if r.audit.over_committed > 0 || r.audit.partial_gangs > 0 {
            println!(
                "CHECK FAILED: backlog {}: {} over-committed nodes, {} partly bound gangs",
                r.which.name(),
                r.audit.over_committed,
                r.audit.partial_gangs
            );
            failed = true;
        }
    }
    failed
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
    let wanted = |w: Which| args.schedulers.split(',').any(|s| s.trim() == w.name());
    if args.mode == "backlog" {
        println!(
            "scheduler-bench backlog: gpu-mix {} nodes / {} pods; {} CPUs here",
            args.nodes,
            args.pods,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let mut results = Vec::new();
        for which in [Which::Ceiling, Which::Pictor, Which::Kube].into_iter().filter(|w| wanted(*w)) {
            print_backlog_header();
            results.push(run_backlog(&args, which).await?);
        }
        if backlog_report(&args, &results) {
            anyhow::bail!("a scheduler over-committed a node or left a gang partly bound");
        }
        return Ok(());
    }
    anyhow::ensure!(args.mode == "arrival", "unknown mode {}: backlog or arrival", args.mode);
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
            if !wanted(which) {
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
