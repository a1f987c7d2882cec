//! `round-robin-binder`: the API server's ceiling for `scheduler-bench`. It makes no decision:
//! each pending pod of `--scheduler-name` goes to the next node in turn, through the same
//! `pods/binding` request and the same client (kube-rs, no client-side rate limit) with the same
//! number of bindings in flight as pictor-scheduler. What it reaches is what the API server (and
//! the machine it shares) allows a binder; a scheduler cannot bind faster. It ignores room,
//! taints and gangs, so its placements are meaningless and the benchmark does not audit them.
#![forbid(unsafe_code)]

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use pictor_scheduler::api::{ClusterWriter, KubeWriter};
use pictor_scheduler::scheduling::Binding;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
#[command(about = "Binds every pending pod of a scheduler name to the next node in turn")]
struct Args {
    /// The `spec.schedulerName` whose pods are bound.
    #[arg(long, default_value = pictor_scheduler::SCHEDULER_NAME)]
    scheduler_name: String,
    /// Bindings in flight at once (pictor-scheduler's default).
    #[arg(long, default_value_t = 64)]
    bind_concurrency: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = kube::Client::try_default().await?;
    let nodes: Vec<String> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    anyhow::ensure!(!nodes.is_empty(), "no nodes to bind to");
    let writer = KubeWriter::new(client.clone(), "round-robin-binder");
    let in_flight = Arc::new(Semaphore::new(args.bind_concurrency.max(1)));
    let fields = format!("spec.schedulerName={},spec.nodeName=", args.scheduler_name);
    let config = watcher::Config::default().fields(&fields).page_size(1000);
    let mut stream = std::pin::pin!(watcher(Api::<Pod>::all(client), config));
    let mut sent: HashSet<String> = HashSet::new();
    let mut next = 0usize;
    while let Some(event) = stream.next().await {
        let pod = match event {
            Ok(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod)) => pod,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("round-robin-binder: watch failed, retrying: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let (Some(namespace), Some(name)) = (pod.metadata.namespace, pod.metadata.name) else { continue };
        let key = format!("{namespace}/{name}");
        if !sent.insert(key.clone()) {
            continue;
        }
        let binding = Binding {
            key,
            namespace,
            name,
            uid: pod.metadata.uid.unwrap_or_default(),
            node: nodes[next % nodes.len()].clone(),
        };
        next += 1;
        // Waiting for a permit here, as pictor-scheduler's binder tasks do, keeps at most
        // `bind_concurrency` requests open.
        let permit = in_flight.clone().acquire_owned().await?;
        let writer = writer.clone();
        tokio::spawn(async move {
            if let Err(e) = writer.bind(&binding).await {
                eprintln!("round-robin-binder: {e}");
            }
            drop(permit);
        });
    }
    Ok(())
}
