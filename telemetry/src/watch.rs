//! Watches one bad object cannot stop. kube's typed watcher decodes a whole LIST at once, so a
//! single object the types cannot read (stored under an older schema, say) fails every list:
//! the watch retries forever and the process never becomes ready. These watches list and follow
//! objects untyped and decode each on its own; one that does not decode is skipped and reported
//! (`skipped(name, why)`: a log line and a metric in the caller) and everything else flows.

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;

/// What the caller hears of an object skipped: `namespace/name` and why it did not decode.
pub type Skipped = std::sync::Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Decodes one watched object as `K`, or tells `skipped` why not.
pub fn decode<K: DeserializeOwned>(object: DynamicObject, skipped: &Skipped) -> Option<K> {
    let name = format!(
        "{}/{}",
        object.metadata.namespace.as_deref().unwrap_or_default(),
        object.metadata.name.as_deref().unwrap_or_default()
    );
    let decoded = serde_json::to_value(&object).and_then(serde_json::from_value::<K>);
    match decoded {
        Ok(typed) => Some(typed),
        Err(error) => {
            skipped(&name, &error.to_string());
            None
        }
    }
}

/// Maps an untyped watch event to a typed one; `None` when its object does not decode (the
/// markers of a list, `Init` and `InitDone`, always pass).
pub fn typed_event<K: DeserializeOwned>(
    event: watcher::Event<DynamicObject>,
    skipped: &Skipped,
) -> Option<watcher::Event<K>> {
    use watcher::Event::*;
    match event {
        Init => Some(Init),
        InitDone => Some(InitDone),
        InitApply(object) => decode(object, skipped).map(InitApply),
        Apply(object) => decode(object, skipped).map(Apply),
        Delete(object) => decode(object, skipped).map(Delete),
    }
}

/// A watcher of `K` (in `namespace`, or every namespace) that skips and reports what it cannot
/// decode.
pub fn watch_objects<K>(
    client: kube::Client,
    namespace: Option<&str>,
    config: watcher::Config,
    skipped: Skipped,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Send + 'static,
{
    let resource = ApiResource::erase::<K>(&());
    let api = match namespace {
        Some(namespace) => Api::<DynamicObject>::namespaced_with(client, namespace, &resource),
        None => Api::<DynamicObject>::all_with(client, &resource),
    };
    watcher(api, config).filter_map(move |event| {
        let typed = match event {
            Ok(event) => typed_event(event, &skipped).map(Ok),
            Err(error) => Some(Err(error)),
        };
        futures::future::ready(typed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::sync::{Arc, Mutex};

    #[test]
    fn an_object_that_does_not_decode_is_skipped_and_reported_and_the_rest_flows() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        let skipped: Skipped = Arc::new(move |name, why| log.lock().unwrap().push(format!("{name}: {why}")));
        let object = |data: serde_json::Value| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "n"}, "data": data
            }))
            .unwrap()
        };
        let good =
            typed_event::<ConfigMap>(watcher::Event::Apply(object(serde_json::json!({"k": "v"}))), &skipped);
        assert!(matches!(good, Some(watcher::Event::Apply(c)) if c.data.as_ref().unwrap()["k"] == "v"));
        let bad = typed_event::<ConfigMap>(
            watcher::Event::InitApply(object(serde_json::json!({"k": 5}))),
            &skipped,
        );
        assert!(bad.is_none());
        assert!(matches!(
            typed_event::<ConfigMap>(watcher::Event::InitDone, &skipped),
            Some(watcher::Event::InitDone)
        ));
        let heard = heard.lock().unwrap();
        assert_eq!(heard.len(), 1);
        assert!(heard[0].starts_with("n/c: "), "{heard:?}");
    }
}
