//! The watches that feed the scheduler: every node, and every pod that is not finished (pods
//! of other schedulers hold room too). Each object becomes plain data at once; a re-list after
//! a broken watch reports what vanished meanwhile as deleted, so the view never drifts.

use crate::scheduling::Input;
use crate::view::{NodeInfo, PodInfo};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::collections::HashSet;
use tokio::sync::mpsc::UnboundedSender;

/// Why a watch stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The scheduler loop is gone, so there is nobody to feed.
    #[error("the scheduler loop has stopped")]
    LoopGone,
}

/// Turns one watch into inputs: `to_input` converts an object (None skips a bad one, with a
/// warning, instead of breaking the watch); `key` names it for deletions; `synced` is sent
/// after each complete listing.
async fn feed<K, S>(
    stream: S,
    tx: UnboundedSender<Input>,
    to_input: impl Fn(&K) -> Option<Input>,
    key: impl Fn(&K) -> String,
    deleted: impl Fn(String) -> Input,
    synced: Input,
) -> Result<(), WatchError>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut known: HashSet<String> = HashSet::new();
    let mut listing: HashSet<String> = HashSet::new();
    let send = |input: Input| tx.send(input).map_err(|_| WatchError::LoopGone);
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(obj)) => {
                listing.insert(key(&obj));
                if let Some(input) = to_input(&obj) {
                    send(input)?;
                }
            }
            Ok(watcher::Event::InitDone) => {
                for gone in known.difference(&listing) {
                    send(deleted(gone.clone()))?;
                }
                known = std::mem::take(&mut listing);
                send(synced.clone())?;
            }
            Ok(watcher::Event::Apply(obj)) => {
                known.insert(key(&obj));
                if let Some(input) = to_input(&obj) {
                    send(input)?;
                }
            }
            Ok(watcher::Event::Delete(obj)) => {
                let k = key(&obj);
                known.remove(&k);
                send(deleted(k))?;
            }
            Err(e) => tracing::warn!(error = %e, "watch failed; retrying with backoff"),
        }
    }
    Ok(())
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Watches nodes into `tx` until the receiver is dropped.
pub async fn watch_nodes(client: Client, tx: UnboundedSender<Input>) -> Result<(), WatchError> {
    let stream =
        watcher(Api::<Node>::all(client), watcher::Config::default().page_size(1000)).default_backoff();
    let to_input = |n: &Node| {
        let info = NodeInfo::from_node(n);
        if info.is_none() {
            tracing::warn!("skipping a node without a name");
        }
        info.map(Input::NodeApplied)
    };
    let key = |n: &Node| n.metadata.name.clone().unwrap_or_default();
    feed(stream, tx, to_input, key, Input::NodeDeleted, Input::NodesSynced).await
}

/// Watches every unfinished pod into `tx` until the receiver is dropped; `scheduler_name`
/// marks the pods this scheduler places.
pub async fn watch_pods(
    client: Client,
    scheduler_name: String,
    tx: UnboundedSender<Input>,
) -> Result<(), WatchError> {
    // Finished pods hold nothing; when a pod finishes the watch reports it deleted.
    let config =
        watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed").page_size(1000);
    let stream = watcher(Api::<Pod>::all(client), config).default_backoff();
    let to_input = move |p: &Pod| {
        let info = PodInfo::from_pod(p, &scheduler_name);
        if info.is_none() {
            tracing::warn!(pod = %pod_key(p), "skipping a pod without a spec");
        }
        info.map(Input::PodApplied)
    };
    feed(stream, tx, to_input, pod_key, Input::PodDeleted, Input::PodsSynced).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn named(name: &str) -> Node {
        Node {
            metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_relist_reports_what_vanished_while_the_watch_was_down() {
        let events = vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(named("a"))),
            Ok(watcher::Event::InitApply(named("b"))),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(named("a"))),
            Ok(watcher::Event::InitDone),
        ];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let to_input = |n: &Node| NodeInfo::from_node(n).map(Input::NodeApplied);
        let key = |n: &Node| n.metadata.name.clone().unwrap_or_default();
        feed(stream::iter(events), tx, to_input, key, Input::NodeDeleted, Input::NodesSynced).await.unwrap();
        let mut deleted = Vec::new();
        let mut synced = 0;
        while let Ok(input) = rx.try_recv() {
            match input {
                Input::NodeDeleted(n) => deleted.push(n),
                Input::NodesSynced => synced += 1,
                _ => {}
            }
        }
        assert_eq!(deleted, ["b"]);
        assert_eq!(synced, 2);
    }
}
