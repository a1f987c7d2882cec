//! `make bench-device-plugin`: how fast pictor's device plugin answers the kubelet, and how fast
//! a sick GPU leaves a node.
//!
//! 1. In-process, as the kubelet calls it over its socket: Allocate latency (p50, p99) for one
//!    GPU at a time, and the time from a backend's health event to the ListAndWatch update that
//!    carries it. Aims: Allocate p99 under 1 ms, health to ListAndWatch under 100 ms.
//! 2. Through a real kubelet on a real node (where this machine can run one): the time from a GPU
//!    turning unhealthy in the plugin's inventory file to the node's allocatable dropping, as the
//!    scheduler would see it. The plugin process looks at its file every 20 ms.

use anyhow::Context;
use clap::Parser;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use pictor_device_plugins::plugin::{self, PluginConfig};
use pictor_device_plugins::registration::unix_channel;
use pictor_device_plugins::v1beta1::device_plugin_client::DevicePluginClient;
use pictor_device_plugins::v1beta1::{AllocateRequest, ContainerAllocateRequest, Empty};
use pictor_device_plugins::{FakeBackend, GpuBackend, Health};
use pictor_e2e::real_node::{RealNodeSpec, RealNodes};
use pictor_e2e::{ControlPlane, ControlPlaneOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Allocate latency and health propagation of pictor's device plugin")]
struct Args {
    /// Allocate calls to time.
    #[arg(long, default_value_t = 5000)]
    allocations: usize,
    /// Health flips to time through ListAndWatch.
    #[arg(long, default_value_t = 200)]
    health_flips: usize,
    /// Health flips to time through a real kubelet (0: skip that part).
    #[arg(long, default_value_t = 10)]
    kubelet_flips: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(what: &str, mut samples: Vec<Duration>, aim_ms: Option<f64>) {
    samples.sort();
    let (p50, p99, max) = (percentile(&samples, 0.5), percentile(&samples, 0.99), samples[samples.len() - 1]);
    let aim = aim_ms.map_or(String::new(), |a| {
        let met = if ms(p99) < a { "met" } else { "MISSED" };
        format!("  aim p99 < {a} ms: {met} ({:.2}x of the aim)", ms(p99) / a)
    });
    println!(
        "{what:<44} n={:<5} p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms{aim}",
        samples.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
}

async fn in_process(args: &Args) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("pictor-bench-dp-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let fake = FakeBackend::new(FakeBackend::preset("h100", 8).context("preset")?);
    let ids: Vec<String> = fake.inventory()?.gpus.iter().map(|g| g.id.clone()).collect();
    let mut config = PluginConfig::new("nvidia.com/gpu", &dir);
    config.poll_interval = Duration::from_millis(200);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let backend: Arc<dyn GpuBackend> = Arc::new(fake.clone());
    let running = tokio::spawn(plugin::run(config, backend, async {
        let _ = stopped.await;
    }));
    // The plugin serves before any kubelet registers it: call it the way the kubelet would.
    let deadline = Instant::now() + Duration::from_secs(10);
    let socket = loop {
        let found = std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "sock"));
        if let Some(socket) = found {
            break socket;
        }
        anyhow::ensure!(Instant::now() < deadline, "the plugin made no socket in {}", dir.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut client = DevicePluginClient::new(unix_channel(&socket).await?);

    let mut allocations = Vec::with_capacity(args.allocations);
    for i in 0..args.allocations {
        let request = AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec![ids[i % ids.len()].clone()],
            }],
        };
        let started = Instant::now();
        client.allocate(request).await?;
        allocations.push(started.elapsed());
    }
    report("Allocate (1 GPU, over the unix socket)", allocations, Some(1.0));

    let mut stream = client.list_and_watch(Empty {}).await?.into_inner();
    stream.message().await?.context("the first device list")?;
    let mut updates = Vec::with_capacity(args.health_flips);
    for i in 0..args.health_flips {
        let health = if i % 2 == 0 { Health::Unhealthy } else { Health::Healthy };
        let started = Instant::now();
        fake.set_health(&ids[3], health);
        let list = stream.message().await?.context("a ListAndWatch update")?;
        updates.push(started.elapsed());
        let seen = list.devices.iter().find(|d| d.id == ids[3]).map(|d| d.health.clone());
        anyhow::ensure!(seen.as_deref() == Some(health.as_str()), "update carried {seen:?}, not {health:?}");
    }
    report("health event to ListAndWatch update", updates, Some(100.0));
    let _ = stop.send(());
    running.await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn through_kubelet(args: &Args) -> anyhow::Result<()> {
    if let Some(reason) = RealNodes::unavailable() {
        println!("through a real kubelet: skipped: {reason}");
        return Ok(());
    }
    let plane = ControlPlane::start(ControlPlaneOptions { members: 1, ..Default::default() }).await?;
    let member = plane.members[0].clone();
    let name = format!("{}-real", member.name);
    let spec =
        RealNodeSpec { cluster: member.clone(), name: name.clone(), gpu_model: "rtx4090".into(), gpus: 4 };
    let nodes = RealNodes::start(&plane, vec![spec]).await?;
    let node_api: Api<Node> = Api::all(member.client().await?);
    let file = nodes.node(&name).inventory_file.clone();
    let inventory: serde_json::Value = serde_json::from_slice(&std::fs::read(&file)?)?;
    let allocatable =
        |n: &Node| n.status.as_ref()?.allocatable.as_ref()?.get("nvidia.com/gpu").map(|q| q.0.clone());
    let mut drops = vec![];
    for _ in 0..args.kubelet_flips {
        for (health, want) in [("Unhealthy", "3"), ("Healthy", "4")] {
            let mut edited = inventory.clone();
            edited["gpus"][2]["health"] = serde_json::json!(health);
            let started = Instant::now();
            std::fs::write(&file, serde_json::to_vec(&edited)?)?;
            loop {
                let node = node_api.get(&name).await?;
                if allocatable(&node).as_deref() == Some(want) {
                    break;
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "allocatable never became {want}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if health == "Unhealthy" {
                drops.push(started.elapsed());
            }
        }
    }
    report("unhealthy in the file to allocatable dropping", drops, None);
    let failures = nodes.stop();
    anyhow::ensure!(failures.is_empty(), "could not undo: {failures:?}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("bench-device-plugin: fake backend, {} CPUs here", std::thread::available_parallelism()?.get());
    in_process(&args).await?;
    if args.kubelet_flips > 0 {
        through_kubelet(&args).await?;
    }
    Ok(())
}
