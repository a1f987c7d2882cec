//! The Helm charts on a real local control plane: `helm lint` passes for all three, `helm template`
//! fails with a clear message when the provider chart misses its required values, the rendered
//! objects are accepted by the real API servers (`kubectl apply --dry-run=server`), and `helm
//! install` puts the hub operator on the hub and the provider's agent, scheduler, device plugins
//! and node labeller on a member, where kwok plays their pods on fake GPU nodes. `helm uninstall`
//! removes them again.
//!
//! The hub runs no kube-scheduler, so the operator's pod is created there but stays Pending (no
//! image is pulled anywhere: kwok only plays pods); the member runs kube-scheduler, so its pods
//! are bound to the fake nodes and Running.

use pictor_e2e::{Cluster, ControlPlane, ControlPlaneOptions, fake_nodes};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const KUBE_VERSION: &str = "1.33.0";
const NAMESPACE: &str = "pictor-system";

fn chart(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts").join(name).display().to_string()
}

fn output(mut cmd: Command, stdin: Option<&str>) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("command starts");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// helm, with its own config/cache/data folders under the run folder, pointed at `cluster`.
struct Helm {
    bin: PathBuf,
    home: PathBuf,
}

impl Helm {
    fn cmd(&self, cluster: Option<&Cluster>, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_DATA_HOME", self.home.join("data"));
        match cluster {
            Some(c) => cmd.env("KUBECONFIG", &c.kubeconfig),
            None => cmd.env("KUBECONFIG", self.home.join("no-cluster")),
        };
        cmd
    }

    fn run(&self, cluster: Option<&Cluster>, args: &[&str]) -> Output {
        output(self.cmd(cluster, args), None)
    }

    fn ok(&self, cluster: Option<&Cluster>, args: &[&str]) -> String {
        ok(&format!("helm {args:?}"), self.run(cluster, args))
    }
}

fn kubectl(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = cluster.kubectl();
    cmd.args(args);
    ok(&format!("kubectl {args:?} on {}", cluster.name), output(cmd, stdin))
}

fn kinds(manifest: &str) -> Vec<String> {
    let mut kinds: Vec<String> = serde_yaml::Deserializer::from_str(manifest)
        .filter_map(|doc| {
            let v: Value = serde::Deserialize::deserialize(doc).ok()?;
            v["kind"].as_str().map(str::to_string)
        })
        .collect();
    kinds.sort();
    kinds
}

/// The release's pods in NAMESPACE by `app.kubernetes.io/name`, each with its phase and node.
fn pods(cluster: &Cluster, release: &str) -> Vec<(String, String, String)> {
    let selector = format!("app.kubernetes.io/instance={release}");
    let json = kubectl(cluster, &["get", "pods", "-n", NAMESPACE, "-l", &selector, "-o", "json"], None);
    let list: Value = serde_json::from_str(&json).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                text(&p["metadata"]["labels"]["app.kubernetes.io/name"]),
                text(&p["status"]["phase"]),
                text(&p["spec"]["nodeName"]),
            )
        })
        .collect()
}

async fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn provider_values(hub_kubeconfig: &str) -> Vec<String> {
    vec![
        "--set".into(),
        "member.name=member-a".into(),
        "--set-file".into(),
        format!("hubKubeconfig.content={hub_kubeconfig}"),
    ]
}

fn lint_and_required_values(helm: &Helm, hub_kubeconfig: &str) {
    for name in ["pictor-crds", "pictor"] {
        helm.ok(None, &["lint", "--strict", &chart(name), "--kube-version", KUBE_VERSION]);
    }
    let provider = chart("pictor-provider");
    let mut args = vec!["lint", "--strict", provider.as_str(), "--kube-version", KUBE_VERSION];
    let values = provider_values(hub_kubeconfig);
    args.extend(values.iter().map(String::as_str));
    helm.ok(None, &args);

    let template = ["template", "p", provider.as_str(), "--kube-version", KUBE_VERSION];
    let missing_member =
        helm.run(None, &[&template[..], &["--set", "hubKubeconfig.existingSecret=hub"]].concat());
    assert!(!missing_member.status.success());
    let stderr = String::from_utf8_lossy(&missing_member.stderr);
    assert!(stderr.contains("member.name is required"), "{stderr}");
    let missing_hub = helm.run(None, &[&template[..], &["--set", "member.name=member-a"]].concat());
    assert!(!missing_hub.status.success());
    let stderr = String::from_utf8_lossy(&missing_hub.stderr);
    assert!(stderr.contains("the hub kubeconfig is required"), "{stderr}");
    // An existing Secret instead of the content: no Secret is rendered, the agent mounts that one.
    let existing = helm.ok(
        None,
        &[&template[..], &["--set", "member.name=member-a", "--set", "hubKubeconfig.existingSecret=hub"]]
            .concat(),
    );
    assert!(!kinds(&existing).contains(&"Secret".to_string()));
    assert!(existing.contains("secretName: hub"));

    // The ServiceMonitor only when asked for.
    let hub = chart("pictor");
    let plain = helm.ok(None, &["template", "pictor", &hub, "--kube-version", KUBE_VERSION]);
    assert!(!kinds(&plain).contains(&"ServiceMonitor".to_string()));
    let monitored = helm.ok(
        None,
        &["template", "pictor", &hub, "--kube-version", KUBE_VERSION, "--set", "serviceMonitor.enabled=true"],
    );
    assert!(kinds(&monitored).contains(&"ServiceMonitor".to_string()));
    assert!(plain.contains("--metrics-addr=0.0.0.0:9090"), "the operator always serves /metrics");

    // The Grafana dashboard only when asked for, labelled for the sidecar, the JSON intact.
    assert!(!kinds(&plain).contains(&"ConfigMap".to_string()));
    let dashboard = helm.ok(
        None,
        &[
            "template",
            "pictor",
            &hub,
            "--kube-version",
            KUBE_VERSION,
            "--set",
            "grafana.dashboard.enabled=true",
        ],
    );
    let config_map = serde_yaml::Deserializer::from_str(&dashboard)
        .filter_map(|doc| serde_yaml::Value::deserialize(doc).ok())
        .find(|doc| doc["kind"] == "ConfigMap")
        .expect("a dashboard ConfigMap");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = config_map["data"]["pictor.json"].as_str().unwrap();
    let shipped: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(shipped["uid"], "pictor-overview");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_charts_lint_validate_install_and_uninstall() {
    let started = Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 1, kube_scheduler: true }).await.unwrap();
    eprintln!("control plane (hub + 1 member) up in {:?}", started.elapsed());
    let (hub, member) = (&plane.hub, &plane.members[0]);
    let helm = Helm { bin: plane.binaries.path("helm"), home: plane.run_dir().join("helm") };
    let hub_kubeconfig = hub.kubeconfig.display().to_string();

    lint_and_required_values(&helm, &hub_kubeconfig);
    eprintln!("helm lint and required values checked at {:?}", started.elapsed());

    let h100 = fake_nodes::model("h100").unwrap();
    let mi300x = fake_nodes::model("mi300x").unwrap();
    plane.add_nodes(member, fake_nodes::fleet("m", &[(h100, 1), (mi300x, 1)])).await.unwrap();
    plane.add_nodes(hub, vec![fake_nodes::fake_node("hub-0", &h100)]).await.unwrap();

    // Hub: the CRDs validate, then install for real so the hub chart can be validated after them.
    let crds =
        helm.ok(None, &["template", "pictor-crds", &chart("pictor-crds"), "--kube-version", KUBE_VERSION]);
    assert_eq!(kinds(&crds), vec!["CustomResourceDefinition"; 5]);
    kubectl(hub, &["apply", "--dry-run=server", "-f", "-"], Some(&crds));
    helm.ok(Some(hub), &["install", "pictor-crds", &chart("pictor-crds"), "--wait", "--timeout", "60s"]);
    kubectl(hub, &["wait", "--for=condition=Established", "crd", "--all", "--timeout=30s"], None);

    kubectl(hub, &["create", "namespace", NAMESPACE], None);
    let operator = helm
        .ok(None, &["template", "pictor", &chart("pictor"), "-n", NAMESPACE, "--kube-version", KUBE_VERSION]);
    let applied = kubectl(hub, &["apply", "--dry-run=server", "-f", "-"], Some(&operator));
    assert!(applied.contains("deployment.apps/pictor created (server dry run)"), "{applied}");

    // Member: validated in namespaces of its own (the work namespace's Role needs it to exist),
    // installed for real in pictor-system and pictor-work.
    kubectl(member, &["create", "namespace", "pictor-dryrun"], None);
    kubectl(member, &["create", "namespace", "pictor-dryrun-work"], None);
    let provider = chart("pictor-provider");
    let mut args = vec!["template", "pictor-provider", provider.as_str(), "-n", "pictor-dryrun"];
    args.extend(["--kube-version", KUBE_VERSION, "--set", "member.workNamespace=pictor-dryrun-work"]);
    let values = provider_values(&hub_kubeconfig);
    args.extend(values.iter().map(String::as_str));
    let provider_manifest = helm.ok(None, &args);
    let applied = kubectl(member, &["apply", "--dry-run=server", "-f", "-"], Some(&provider_manifest));
    for object in [
        "deployment.apps/pictor-provider-agent",
        "deployment.apps/pictor-provider-scheduler",
        "daemonset.apps/pictor-provider-node-labeller",
        "daemonset.apps/pictor-provider-nvidia-device-plugin",
        "daemonset.apps/pictor-provider-amd-device-plugin",
    ] {
        assert!(applied.contains(&format!("{object} created (server dry run)")), "{object}: {applied}");
    }
    eprintln!("helm template output accepted by both API servers at {:?}", started.elapsed());

    helm.ok(Some(hub), &["install", "pictor", &chart("pictor"), "-n", NAMESPACE, "--create-namespace"]);
    let mut args =
        vec!["install", "pictor-provider", provider.as_str(), "-n", NAMESPACE, "--create-namespace"];
    args.extend(values.iter().map(String::as_str));
    helm.ok(Some(member), &args);

    // Hub: the operator's pod is created (Pending: the hub has no kube-scheduler).
    let hub_pods = wait_for("the operator's pod on the hub", Duration::from_secs(30), || {
        let p = pods(hub, "pictor");
        (!p.is_empty()).then_some(p)
    })
    .await;
    assert_eq!(hub_pods.len(), 1, "{hub_pods:?}");
    assert_eq!(hub_pods[0].0, "pictor-operator");
    eprintln!("hub: operator pod created ({}) at {:?}", hub_pods[0].1, started.elapsed());

    // Member: every component Running on the fake nodes, the plugins only where their vendor is.
    let expected = BTreeMap::from([
        ("pictor-agent".to_string(), 1),
        ("pictor-scheduler".to_string(), 1),
        ("pictor-node-labeller".to_string(), 2),
        ("pictor-nvidia-device-plugin".to_string(), 1),
        ("pictor-amd-device-plugin".to_string(), 1),
    ]);
    let running = wait_for("the provider's pods Running on member-a", Duration::from_secs(45), || {
        let p = pods(member, "pictor-provider");
        let mut count = BTreeMap::new();
        for (name, phase, _) in &p {
            if phase == "Running" {
                *count.entry(name.clone()).or_insert(0) += 1;
            }
        }
        (count == expected).then_some(p)
    })
    .await;
    for (name, _, node) in &running {
        match name.as_str() {
            "pictor-nvidia-device-plugin" => assert_eq!(node, "m-h100-0"),
            "pictor-amd-device-plugin" => assert_eq!(node, "m-mi300x-0"),
            _ => {}
        }
    }
    kubectl(member, &["get", "namespace", "pictor-work"], None);
    let secret = kubectl(
        member,
        &["get", "secret", "-n", NAMESPACE, "pictor-provider-hub-kubeconfig", "-o", "json"],
        None,
    );
    let secret: Value = serde_json::from_str(&secret).unwrap();
    assert!(secret["data"]["kubeconfig"].as_str().is_some_and(|s| !s.is_empty()));
    eprintln!("member: {} provider pods Running at {:?}", running.len(), started.elapsed());

    // Uninstall: the pods go away.
    helm.ok(Some(member), &["uninstall", "pictor-provider", "-n", NAMESPACE, "--wait", "--timeout", "60s"]);
    helm.ok(Some(hub), &["uninstall", "pictor", "-n", NAMESPACE, "--wait", "--timeout", "60s"]);
    wait_for("the provider's pods to be gone", Duration::from_secs(45), || {
        pods(member, "pictor-provider").is_empty().then_some(())
    })
    .await;
    wait_for("the operator's pod to be gone", Duration::from_secs(30), || {
        pods(hub, "pictor").is_empty().then_some(())
    })
    .await;
    let left = helm.ok(Some(member), &["list", "-A", "-q"]);
    assert!(left.trim().is_empty(), "releases left on member-a: {left}");
    eprintln!("uninstalled, pods gone, at {:?}", started.elapsed());
}
