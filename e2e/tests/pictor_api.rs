//! The Pictor API on a real local control plane: the CRDs install, the examples apply and read
//! back, invalid manifests are refused with messages that say what to fix, `kubectl` shows the
//! printer columns and the docs, members see their fake GPU nodes, and nothing is left running.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use pictor_e2e::{Cluster, ControlPlane, ControlPlaneOptions, fake_nodes};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn run(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = cluster.kubectl();
    cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    cmd.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() });
    let mut child = cmd.spawn().expect("kubectl starts");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs kubectl and returns stdout, failing the test with stderr when it fails.
fn kubectl(cluster: &Cluster, args: &[&str]) -> String {
    let out = run(cluster, args, None);
    assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Whether every field of `expected` is present and equal in `actual` (the server adds
/// defaults and metadata, so the read-back object is a superset of what was applied).
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            e.iter().all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v)))
        }
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(x, y)| contains(x, y))
        }
        _ => actual == expected,
    }
}

fn header(text: &str, key: &str) -> Option<String> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix(&format!("# {key}: ")).map(str::to_string))
}

fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

fn apply_examples_and_read_them_back(hub: &Cluster) {
    let examples = repo("examples");
    kubectl(hub, &["apply", "--server-side", "--field-manager=pictor-e2e", "-f", examples.to_str().unwrap()]);
    let mut seen = 0;
    for path in sorted_files(&examples) {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let applied: Value = serde::Deserialize::deserialize(doc).unwrap();
            let kind = applied["kind"].as_str().unwrap().to_lowercase();
            let name = applied["metadata"]["name"].as_str().unwrap();
            let mut args = vec!["get", kind.as_str(), name, "-o", "json"];
            if let Some(ns) = applied["metadata"]["namespace"].as_str() {
                args.extend(["-n", ns]);
            }
            let stored: Value = serde_json::from_str(&kubectl(hub, &args)).unwrap();
            assert!(
                contains(&stored["spec"], &applied["spec"]),
                "{} read back differs: {}",
                path.display(),
                stored["spec"]
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 3, "examples/ holds a RenderJob, a TrainingJob and a GpuCluster");
}

fn invalid_manifests_are_refused(hub: &Cluster) -> usize {
    let mut refused = 0;
    for path in sorted_files(&repo("crds/tests/invalid")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = header(&text, "expect").expect("an `# expect:` line");
        let out = run(hub, &["create", "-f", "-"], Some(&text));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} was accepted", path.display());
        assert!(
            stderr.contains(&expect),
            "{}: expected the API server to say {expect:?}, it said: {stderr}",
            path.display()
        );
        refused += 1;
    }
    refused
}

/// `kubectl patch` of the RenderJob `started`, merge patch, on `subresource` when given.
fn patch_started(hub: &Cluster, subresource: Option<&str>, patch: &str) -> Output {
    let sub = subresource.map(|s| format!("--subresource={s}"));
    let mut args = vec!["patch", "rj", "started", "-n", "default", "--type=merge", "-p", patch];
    args.extend(sub.as_deref());
    run(hub, &args, None)
}

fn started_render_job_keeps_its_frames(hub: &Cluster) {
    let job = r#"
apiVersion: pictor.network/v1alpha1
kind: RenderJob
metadata: {name: started, namespace: default}
spec:
  scene: s3://scenes/started.blend
  frames: {start: 1, end: 100}
  output: {location: s3://renders/started/}
"#;
    let out = run(hub, &["create", "-f", "-"], Some(job));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Pending: the submitter may still fix the range.
    assert!(patch_started(hub, None, r#"{"spec":{"frames":{"end":120}}}"#).status.success());
    assert!(patch_started(hub, Some("status"), r#"{"status":{"phase":"Rendering"}}"#).status.success());

    let refused = [
        (r#"{"spec":{"frames":{"end":300}}}"#, "spec.frames cannot change once rendering has started"),
        (
            r#"{"spec":{"scene":"s3://scenes/other.blend"}}"#,
            "spec.scene cannot change once rendering has started",
        ),
        (r#"{"spec":{"chunkSize":50}}"#, "spec.chunkSize cannot change once rendering has started"),
    ];
    for (patch, message) in refused {
        let out = patch_started(hub, None, patch);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{patch} was accepted after rendering started");
        assert!(stderr.contains(message), "{patch}: expected {message:?}, got {stderr}");
    }
    // Mutable fields stay mutable: suspending a running job is how it is cancelled.
    let out = patch_started(hub, None, r#"{"spec":{"suspend":true}}"#);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The operator's status writes pass every transition rule, also on a job that leaves optional
/// lists out (a rule reading an absent field fails on the real API server).
fn status_writes_on_minimal_jobs_are_accepted(hub: &Cluster) {
    let job = "apiVersion: pictor.network/v1alpha1\nkind: TrainingJob\nmetadata: {name: minimal, namespace: default}\nspec: {image: pytorch/pytorch:2.9.0, workers: 2}\n";
    let out = run(hub, &["create", "-f", "-"], Some(job));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for phase in ["Pending", "Running", "Succeeded"] {
        let patch = format!(r#"{{"status":{{"phase":"{phase}"}}}}"#);
        let out = run(
            hub,
            &[
                "patch",
                "tj",
                "minimal",
                "-n",
                "default",
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch,
            ],
            None,
        );
        assert!(out.status.success(), "status {phase}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn kubectl_shows_columns_and_docs(hub: &Cluster) {
    kubectl(
        hub,
        &[
            "patch",
            "rj",
            "classroom",
            "-n",
            "default",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Rendering","frames":{"total":240,"done":120,"running":20,"failed":0,"doneOfTotal":"120/240"},"progress":"50%","costOctas":150000000,"cost":"1.5 APT"}}"#,
        ],
    );
    let table = kubectl(hub, &["get", "renderjobs", "-n", "default"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PHASE", "FRAMES", "PROGRESS", "COST", "AGE"], "{table}");
    let row = table.lines().find(|l| l.starts_with("classroom")).expect("the classroom row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..6], ["classroom", "Rendering", "120/240", "50%", "1.5", "APT"], "{table}");

    let explain = kubectl(hub, &["explain", "renderjob.spec.frames"]);
    for needle in [
        "Frames to render: `start` to `end` inclusive",
        "start",
        "end",
        "step",
        "Render every `step`th frame",
    ] {
        assert!(explain.contains(needle), "kubectl explain lacks {needle:?}:\n{explain}");
    }
    let short = kubectl(hub, &["get", "rj,tj,stl,wu", "-A"]);
    assert!(short.contains("classroom") && short.contains("llama-finetune"), "{short}");
    let all = kubectl(hub, &["get", "pictor", "-A"]);
    for name in [
        "renderjob.pictor.network/classroom",
        "trainingjob.pictor.network/llama-finetune",
        "gpucluster.pictor.network/lab-berlin",
    ] {
        assert!(all.contains(name), "`kubectl get pictor -A` lacks {name}:\n{all}");
    }
}

async fn member_sees_its_fake_gpu_nodes(plane: &ControlPlane) {
    let member = &plane.members[0];
    let counts: Vec<_> = fake_nodes::CATALOGUE.iter().map(|m| (*m, 1)).collect();
    plane.add_nodes(member, fake_nodes::fleet(&member.name, &counts)).await.unwrap();
    let nodes = Api::<Node>::all(member.client().await.unwrap()).list(&ListParams::default()).await.unwrap();
    assert_eq!(nodes.items.len(), 4);
    for model in fake_nodes::CATALOGUE {
        let node = nodes
            .items
            .iter()
            .find(|n| {
                n.metadata.labels.as_ref().is_some_and(|l| l["pictor.network/gpu.product"] == model.product)
            })
            .unwrap_or_else(|| panic!("no {} node", model.product));
        let allocatable = node.status.as_ref().unwrap().allocatable.as_ref().unwrap();
        assert_eq!(allocatable[model.vendor.resource_name()].0, model.gpus.to_string(), "{}", model.product);
    }
    // The other member has none: clusters are separate even on one etcd.
    let other = Api::<Node>::all(plane.members[1].client().await.unwrap())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(other.items.is_empty());
    let printed = kubectl(
        member,
        &[
            "get",
            "nodes",
            "-o",
            r#"custom-columns=NAME:.metadata.name,NVIDIA:.status.capacity.nvidia\.com/gpu,AMD:.status.capacity.amd\.com/gpu"#,
        ],
    );
    assert!(
        printed.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == [&format!("{}-h100-0", member.name), "8", "<none>"]),
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pictor_api_on_a_real_control_plane() {
    let started = std::time::Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 2, kube_scheduler: false }).await.unwrap();
    eprintln!("control plane (hub + 2 members) up in {:?}", started.elapsed());
    plane.install_crds().await.unwrap();

    apply_examples_and_read_them_back(&plane.hub);
    let refused = invalid_manifests_are_refused(&plane.hub);
    assert!(refused >= 12, "only {refused} invalid manifests");
    eprintln!("{refused} invalid manifests refused with their messages");
    started_render_job_keeps_its_frames(&plane.hub);
    status_writes_on_minimal_jobs_are_accepted(&plane.hub);
    kubectl_shows_columns_and_docs(&plane.hub);
    member_sees_its_fake_gpu_nodes(&plane).await;

    let pids = plane.pids();
    drop(plane);
    let alive: Vec<_> = pids.iter().filter(|pid| Path::new(&format!("/proc/{pid}")).exists()).collect();
    assert!(alive.is_empty(), "processes left behind: {alive:?}");
    eprintln!("e2e wall time {:?}", started.elapsed());
}
