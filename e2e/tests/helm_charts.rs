//! The Helm charts on a real local control plane: `helm lint` passes for all three, `helm template`
//! fails with a clear message when the provider chart or the hub chart's billing misses its
//! required values, the rendered objects are accepted by the real API servers (`kubectl apply
//! --dry-run=server`), and `helm install` puts the hub operator and the billing controller (with
//! its own ServiceAccount and least-privilege RBAC, checked with `kubectl auth can-i`) on the hub
//! and the provider's agent, scheduler, device plugins and node labeller on a member, where kwok
//! plays their pods on fake GPU nodes. `helm uninstall` removes them again.
//!
//! Both clusters run kube-scheduler here, so every component's pod is bound to a fake node and
//! Running (no image is pulled anywhere: kwok only plays pods).

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
/// The hub chart's billing controller needs an Aptos node; nothing is asked of it here (kwok
/// plays the pods: no process runs).
const APTOS_NODE_URL: &str = "https://fullnode.testnet.aptoslabs.com/v1";
const BILLING_ACCOUNT: &str = "system:serviceaccount:pictor-system:pictor-billing";
const OPERATOR_ACCOUNT: &str = "system:serviceaccount:pictor-system:pictor";
/// What the hub chart installs for billing: kind, name, namespace.
const BILLING_OBJECTS: [(&str, &str, &str); 8] = [
    ("deployment", "pictor-billing", NAMESPACE),
    ("serviceaccount", "pictor-billing", NAMESPACE),
    ("role", "pictor-billing", NAMESPACE),
    ("rolebinding", "pictor-billing", NAMESPACE),
    ("role", "pictor-billing-events", "default"),
    ("rolebinding", "pictor-billing-events", "default"),
    ("clusterrole", "pictor-billing", "default"),
    ("clusterrolebinding", "pictor-billing", "default"),
];

fn hub_values() -> [String; 2] {
    ["--set".into(), format!("billing.aptosNodeUrl={APTOS_NODE_URL}")]
}

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

/// Asserts what `account` may do on `cluster`, by `kubectl auth can-i`: each row is a verb, a
/// resource (`kind/status` for the status subresource), a namespace (`None`: all) and the answer.
fn assert_can_i(cluster: &Cluster, account: &str, rows: &[(&str, &str, Option<&str>, &str)]) {
    for (verb, resource, namespace, expected) in rows {
        let mut cmd = cluster.kubectl();
        cmd.args(["auth", "can-i", verb, "--as", account]);
        match resource.split_once('/') {
            Some((kind, "status")) => cmd.args([kind, "--subresource=status"]),
            _ => cmd.arg(resource),
        };
        match namespace {
            Some(ns) => cmd.args(["-n", ns]),
            None => cmd.arg("--all-namespaces"),
        };
        let out = cmd.output().unwrap();
        let answer = String::from_utf8_lossy(&out.stdout);
        assert_eq!(answer.trim(), *expected, "can {account} {verb} {resource} in {namespace:?}?");
    }
}

fn kubectl(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = cluster.kubectl();
    cmd.args(args);
    ok(&format!("kubectl {args:?} on {}", cluster.name), output(cmd, stdin))
}

/// The object of `kind` named `name` in the rendered `manifest`.
fn object(manifest: &str, kind: &str, name: &str) -> serde_yaml::Value {
    serde_yaml::Deserializer::from_str(manifest)
        .filter_map(|doc| serde_yaml::Value::deserialize(doc).ok())
        .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {manifest}"))
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
    helm.ok(None, &["lint", "--strict", &chart("pictor-crds"), "--kube-version", KUBE_VERSION]);
    let hub = chart("pictor");
    let hub_values = hub_values();
    let mut args = vec!["lint", "--strict", hub.as_str(), "--kube-version", KUBE_VERSION];
    args.extend(hub_values.iter().map(String::as_str));
    helm.ok(None, &args);
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

    // Provider safety: the work namespace enforces the restricted standard, the agent gets the
    // provider's images, caps and defaults, and unit pods reach DNS and storage only.
    let namespace = object(&existing, "Namespace", "pictor-work");
    assert_eq!(namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted");
    let agent = object(&existing, "Deployment", "p-pictor-provider-agent");
    let agent_args = &agent["spec"]["template"]["spec"]["containers"][0]["args"];
    for flag in [
        "--allow-image=ghcr.io/pictor-network/render-worker",
        "--max-cpu=16",
        "--max-memory=64Gi",
        "--default-ephemeral-storage=20Gi",
    ] {
        assert!(
            agent_args.as_sequence().unwrap().iter().any(|a| a.as_str() == Some(flag)),
            "{flag}: {agent_args:?}"
        );
    }
    let policy = object(&existing, "NetworkPolicy", "p-pictor-provider-work");
    let egress = policy["spec"]["egress"].as_sequence().unwrap();
    assert_eq!(egress[0]["ports"][0]["port"], 53, "DNS first");
    let everywhere = &egress[1]["to"][0]["ipBlock"];
    assert_eq!(everywhere["cidr"], "0.0.0.0/0");
    let except: Vec<&str> =
        everywhere["except"].as_sequence().unwrap().iter().filter_map(|c| c.as_str()).collect();
    assert!(except.contains(&"169.254.0.0/16") && except.contains(&"192.168.0.0/16"), "{except:?}");
    // A store on the provider's LAN is listed by its own address, and only that is opened.
    let lan = helm.ok(
        None,
        &[
            &template[..],
            &["--set", "member.name=member-a", "--set", "hubKubeconfig.existingSecret=hub"],
            &["--set", "work.networkPolicy.storageEndpoints[0].cidr=192.168.1.20/32"],
            &["--set", "work.networkPolicy.storageEndpoints[0].ports[0]=9000"],
        ]
        .concat(),
    );
    let lan_policy = object(&lan, "NetworkPolicy", "p-pictor-provider-work");
    let lan_block = &lan_policy["spec"]["egress"][1]["to"][0]["ipBlock"];
    assert_eq!((lan_block["cidr"].as_str(), lan_block.get("except")), (Some("192.168.1.20/32"), None));
    let no_images = helm.run(
        None,
        &[
            &template[..],
            &["--set", "member.name=member-a", "--set", "hubKubeconfig.existingSecret=hub"],
            &["--set-json", "work.allowedImages=[]"],
        ]
        .concat(),
    );
    assert!(!no_images.status.success(), "a provider that allows no image would refuse every unit");

    // Billing is on by default and needs an Aptos node: without one the hub chart says so.
    let hub_args = ["template", "pictor", hub.as_str(), "-n", NAMESPACE, "--kube-version", KUBE_VERSION];
    let template = |extra: &[&str]| helm.ok(None, &[&hub_args[..], extra].concat());
    let no_node = helm.run(None, &hub_args);
    assert!(!no_node.status.success());
    let stderr = String::from_utf8_lossy(&no_node.stderr);
    assert!(
        stderr.contains("billing.aptosNodeUrl is required")
            && stderr.contains("https://fullnode.testnet.aptoslabs.com/v1"),
        "{stderr}"
    );
    let unbilled = template(&["--set", "billing.enabled=false"]);
    assert!(!unbilled.contains("pictor-billing"), "billing disabled renders none of it: {unbilled}");
    let bad_url =
        helm.run(None, &[&hub_args[..], &["--set", "billing.aptosNodeUrl=fullnode.testnet"]].concat());
    assert!(!bad_url.status.success(), "the schema wants an http(s) URL");

    // The ServiceMonitor only when asked for.
    let url = format!("billing.aptosNodeUrl={APTOS_NODE_URL}");
    let plain = template(&["--set", &url]);
    assert!(!kinds(&plain).contains(&"ServiceMonitor".to_string()));
    // The verification secret: generated by the chart and mounted, or the operator's own.
    assert!(plain.contains("name: pictor-verification") && plain.contains("--verification-secret-file="));
    let own_secret = template(&["--set", &url, "--set", "operator.verificationSecret.existingSecret=mine"]);
    assert!(!own_secret.contains("name: pictor-verification") && own_secret.contains("secretName: mine"));
    let monitored = template(&["--set", &url, "--set", "serviceMonitor.enabled=true"]);
    assert_eq!(
        kinds(&monitored).iter().filter(|k| *k == "ServiceMonitor").count(),
        2,
        "operator and billing"
    );
    object(&monitored, "Service", "pictor-billing-metrics");
    assert!(plain.contains("--metrics-addr=0.0.0.0:9090"), "the operator always serves /metrics");
    let operator = object(&plain, "Deployment", "pictor");
    let operator_args = &operator["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        operator_args
            .as_sequence()
            .unwrap()
            .iter()
            .any(|a| a.as_str() == Some("--dispute-window-seconds=3600")),
        "{operator_args:?}"
    );

    // Billing: one replica, never two at once, the operator's image running pictor-billing with
    // the values as flags, the namespace and pod name from the downward API.
    let billing = object(&plain, "Deployment", "pictor-billing");
    assert_eq!(billing["spec"]["replicas"], 1);
    assert_eq!(billing["spec"]["strategy"]["type"], "Recreate");
    let pod = &billing["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "pictor-billing");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "ghcr.io/pictor-network/pictor-operator:0.1.0");
    assert_eq!(container["command"][0], "pictor-billing");
    let args: Vec<&str> =
        container["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    for expected in [
        format!("--aptos-node-url={APTOS_NODE_URL}"),
        "--treasury-secret=pictor-treasury".to_string(),
        "--settle-min-octas=100000000".to_string(),
        "--max-units-per-settlement=500".to_string(),
        "--metrics-addr=0.0.0.0:9090".to_string(),
    ] {
        assert!(args.contains(&expected.as_str()), "{expected} in {args:?}");
    }
    let env = container["env"].as_sequence().unwrap();
    for (name, field) in [("POD_NAMESPACE", "metadata.namespace"), ("POD_NAME", "metadata.name")] {
        let var = env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("{name}: {env:?}"));
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], field);
    }
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    // Another treasury Secret name moves the flag and the one Secret billing may read.
    let other = template(&["--set", &url, "--set", "billing.treasurySecret.name=vault-key"]);
    let role = object(&other, "Role", "pictor-billing");
    let secrets =
        role["rules"].as_sequence().unwrap().iter().find(|r| r["resources"][0] == "secrets").unwrap();
    assert_eq!(secrets["resourceNames"][0], "vault-key");
    assert!(other.contains("--treasury-secret=vault-key"));

    // The Grafana dashboard only when asked for, labelled for the sidecar, the JSON intact.
    assert!(!kinds(&plain).contains(&"ConfigMap".to_string()));
    let dashboard = template(&["--set", &url, "--set", "grafana.dashboard.enabled=true"]);
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
    let mut plane =
        ControlPlane::start(ControlPlaneOptions { members: 1, kube_scheduler: true }).await.unwrap();
    plane.start_hub_scheduler().unwrap();
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
    let mut expected = vec!["CustomResourceDefinition"; 5];
    expected.extend(["ValidatingAdmissionPolicy"; 3]);
    expected.extend(["ValidatingAdmissionPolicyBinding"; 3]);
    assert_eq!(kinds(&crds), expected, "the CRDs, and the admission policies that bound what members write");
    kubectl(hub, &["apply", "--dry-run=server", "-f", "-"], Some(&crds));
    helm.ok(Some(hub), &["install", "pictor-crds", &chart("pictor-crds"), "--wait", "--timeout", "60s"]);
    kubectl(hub, &["wait", "--for=condition=Established", "crd", "--all", "--timeout=30s"], None);

    kubectl(hub, &["create", "namespace", NAMESPACE], None);
    let hub_chart = chart("pictor");
    let hub_values = hub_values();
    let mut args = vec!["template", "pictor", &hub_chart, "-n", NAMESPACE, "--kube-version", KUBE_VERSION];
    args.extend(hub_values.iter().map(String::as_str));
    let operator = helm.ok(None, &args);
    let applied = kubectl(hub, &["apply", "--dry-run=server", "-f", "-"], Some(&operator));
    for object in [
        "deployment.apps/pictor",
        "deployment.apps/pictor-billing",
        "serviceaccount/pictor-billing",
        "clusterrole.rbac.authorization.k8s.io/pictor-billing",
        "clusterrolebinding.rbac.authorization.k8s.io/pictor-billing",
        "role.rbac.authorization.k8s.io/pictor-billing",
        "rolebinding.rbac.authorization.k8s.io/pictor-billing",
        "role.rbac.authorization.k8s.io/pictor-billing-events",
        "rolebinding.rbac.authorization.k8s.io/pictor-billing-events",
    ] {
        assert!(applied.contains(&format!("{object} created (server dry run)")), "{object}: {applied}");
    }

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
        "networkpolicy.networking.k8s.io/pictor-provider-work",
    ] {
        assert!(applied.contains(&format!("{object} created (server dry run)")), "{object}: {applied}");
    }
    eprintln!("helm template output accepted by both API servers at {:?}", started.elapsed());

    let mut args = vec!["install", "pictor", &hub_chart, "-n", NAMESPACE, "--create-namespace"];
    args.extend(hub_values.iter().map(String::as_str));
    helm.ok(Some(hub), &args);
    let mut args =
        vec!["install", "pictor-provider", provider.as_str(), "-n", NAMESPACE, "--create-namespace"];
    args.extend(values.iter().map(String::as_str));
    helm.ok(Some(member), &args);

    // Hub: the operator's and billing's pods Running on the hub's fake node.
    let hub_pods =
        wait_for("the operator's and billing's pods Running on the hub", Duration::from_secs(45), || {
            let p = pods(hub, "pictor");
            (p.len() >= 2 && p.iter().all(|(_, phase, _)| phase == "Running")).then_some(p)
        })
        .await;
    let mut names: Vec<&str> = hub_pods.iter().map(|p| p.0.as_str()).collect();
    names.sort();
    assert_eq!(names, ["pictor-billing", "pictor-operator"], "{hub_pods:?}");
    eprintln!("hub: operator and billing pods Running ({:?}) at {:?}", hub_pods, started.elapsed());

    // Billing's own objects, and what its ServiceAccount may do: exactly what billing does.
    for (kind, name, namespace) in BILLING_OBJECTS {
        kubectl(hub, &["get", kind, name, "-n", namespace, "-o", "name"], None);
    }
    let billing_may = [
        ("get", "secret/pictor-treasury", Some(NAMESPACE), "yes"),
        ("get", "secret/other", Some(NAMESPACE), "no"),
        ("list", "secrets", Some(NAMESPACE), "no"),
        ("watch", "settlements.pictor.network", Some(NAMESPACE), "yes"),
        ("create", "settlements.pictor.network", Some(NAMESPACE), "yes"),
        ("delete", "settlements.pictor.network", Some(NAMESPACE), "no"),
        ("create", "settlements.pictor.network", Some("default"), "no"),
        ("patch", "settlements.pictor.network/status", Some(NAMESPACE), "yes"),
        ("list", "workunits.pictor.network", None, "yes"),
        ("patch", "workunits.pictor.network", Some("team-a"), "yes"),
        ("delete", "workunits.pictor.network", Some("team-a"), "no"),
        ("watch", "gpuclusters.pictor.network", None, "yes"),
        ("patch", "gpuclusters.pictor.network", None, "no"),
        ("patch", "gpuclusters.pictor.network/status", None, "yes"),
        ("create", "renderjobs.pictor.network", Some("team-a"), "no"),
        ("create", "events.events.k8s.io", Some(NAMESPACE), "yes"),
        ("patch", "events.events.k8s.io", Some("default"), "yes"),
        ("create", "events.events.k8s.io", Some("team-a"), "no"),
        ("patch", "leases.coordination.k8s.io", Some(NAMESPACE), "yes"),
        ("patch", "leases.coordination.k8s.io", Some("kube-system"), "no"),
    ];
    assert_can_i(hub, BILLING_ACCOUNT, &billing_may);
    // Only billing writes what is paid: the operator, which owns every other Pictor object,
    // can neither make a Settlement nor change one.
    let operator_may = [
        ("create", "workunits.pictor.network", Some("pictor-member-a"), "yes"),
        ("create", "settlements.pictor.network", Some(NAMESPACE), "no"),
        ("create", "settlements.pictor.network", None, "no"),
        ("update", "settlements.pictor.network", Some(NAMESPACE), "no"),
        ("patch", "settlements.pictor.network", Some(NAMESPACE), "no"),
        ("delete", "settlements.pictor.network", Some(NAMESPACE), "no"),
        ("patch", "settlements.pictor.network/status", Some(NAMESPACE), "no"),
    ];
    assert_can_i(hub, OPERATOR_ACCOUNT, &operator_may);
    eprintln!("hub: billing's ServiceAccount, RBAC and Deployment in place at {:?}", started.elapsed());

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
    wait_for("the operator's and billing's pods to be gone", Duration::from_secs(30), || {
        pods(hub, "pictor").is_empty().then_some(())
    })
    .await;
    wait_for("billing's Deployment, ServiceAccount and RBAC to be gone", Duration::from_secs(30), || {
        BILLING_OBJECTS
            .iter()
            .all(|(kind, name, namespace)| {
                kubectl(hub, &["get", kind, name, "-n", namespace, "--ignore-not-found", "-o", "name"], None)
                    .trim()
                    .is_empty()
            })
            .then_some(())
    })
    .await;
    let left = helm.ok(Some(member), &["list", "-A", "-q"]);
    assert!(left.trim().is_empty(), "releases left on member-a: {left}");
    eprintln!("uninstalled, pods gone, at {:?}", started.elapsed());
}
