//! The CRDs' CEL rules, evaluated without an API server on the generated schemas: every example
//! passes, every invalid manifest marked `# by: cel` is refused with its message, and the
//! transition rules guard the fields that must not change once work started.

use serde_json::{Value, json};
use std::path::Path;

fn schema_of(kind: &str) -> Value {
    let crd = pictor_crds::crds().into_iter().find(|c| c.spec.names.kind == kind).expect("a Pictor kind");
    let schema = crd.spec.versions[0].schema.clone().unwrap().open_api_v3_schema.unwrap();
    serde_json::to_value(schema).unwrap()
}

fn messages(object: &Value, old: Option<&Value>) -> Vec<String> {
    let kind = object["kind"].as_str().expect("a kind");
    match kube_cel::validate(&schema_of(kind), object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

/// `# key: value` header lines of a test manifest.
fn header(path: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix(&format!("# {key}: ")).map(str::to_string))
}

fn files(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

#[test]
fn examples_pass_every_rule() {
    for path in files("../examples") {
        for object in yaml_documents(&path) {
            assert_eq!(messages(&object, None), Vec::<String>::new(), "{}", path.display());
        }
    }
}

#[test]
fn invalid_manifests_are_refused_with_the_message_that_says_what_to_fix() {
    let mut checked = 0;
    for path in files("tests/invalid") {
        if header(&path, "by").as_deref() != Some("cel") {
            continue;
        }
        let expect = header(&path, "expect").expect("an `# expect:` line");
        let object = yaml_documents(&path).remove(0);
        let got = messages(&object, None);
        assert!(
            got.iter().any(|m| m.contains(&expect)),
            "{}: expected {expect:?}, got {got:?}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} CEL cases");
}

fn render_job(phase: Option<&str>, end: i64) -> Value {
    let mut job = json!({
        "apiVersion": "pictor.network/v1alpha1",
        "kind": "RenderJob",
        "metadata": {"name": "shot", "namespace": "default"},
        "spec": {"scene": "s3://scenes/shot.blend", "frames": {"start": 1, "end": end},
                 "output": {"location": "s3://renders/shot/"}}
    });
    if let Some(phase) = phase {
        job["status"] = json!({"phase": phase});
    }
    job
}

#[test]
fn frames_can_change_while_pending_but_not_once_rendering() {
    let pending = render_job(Some("Pending"), 100);
    assert!(messages(&render_job(Some("Pending"), 200), Some(&pending)).is_empty());
    let never_reconciled = render_job(None, 100);
    assert!(messages(&render_job(None, 200), Some(&never_reconciled)).is_empty());

    let rendering = render_job(Some("Rendering"), 100);
    let got = messages(&render_job(Some("Rendering"), 200), Some(&rendering));
    assert!(
        got.iter().any(|m| m.contains("spec.frames cannot change once rendering has started")),
        "{got:?}"
    );
    assert!(
        messages(&render_job(Some("Rendering"), 100), Some(&rendering)).is_empty(),
        "an unchanged spec is fine"
    );
}

#[test]
fn training_world_size_is_fixed_once_running() {
    let job = |workers: i64, phase: &str| {
        json!({"apiVersion": "pictor.network/v1alpha1", "kind": "TrainingJob",
               "metadata": {"name": "t", "namespace": "default"},
               "spec": {"image": "pytorch/pytorch:2.9.0", "workers": workers},
               "status": {"phase": phase}})
    };
    let got = messages(&job(8, "Running"), Some(&job(4, "Running")));
    assert!(got.iter().any(|m| m.contains("spec.workers and spec.gpu cannot change")), "{got:?}");
    assert!(messages(&job(8, "Pending"), Some(&job(4, "Pending"))).is_empty());
    // The operator's status writes on a job without command or args must pass every rule.
    assert_eq!(messages(&job(4, "Succeeded"), Some(&job(4, "Running"))), Vec::<String>::new());
    let mut with_args = job(4, "Running");
    with_args["spec"]["args"] = json!(["--epochs=3"]);
    let got = messages(&with_args, Some(&job(4, "Running")));
    assert!(
        got.iter().any(|m| m.contains("spec.image, spec.command and spec.args cannot change")),
        "{got:?}"
    );
}

#[test]
fn work_unit_and_settlement_specs_are_immutable() {
    let unit = |price: i64| {
        json!({"apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
               "metadata": {"name": "u", "namespace": "pictor-member-a"},
               "spec": {"jobRef": {"kind": "RenderJob", "namespace": "default", "name": "shot", "uid": "u1"},
                        "pods": [{"name": "render", "image": "pictor/render-worker", "gpuVendor": "nvidia", "gpus": 1}],
                        "agreedPricePerGpuHour": price}})
    };
    let got = messages(&unit(2), Some(&unit(1)));
    assert!(got.iter().any(|m| m.contains("a WorkUnit's spec is immutable")), "{got:?}");

    let settlement = |amount: i64| {
        json!({"apiVersion": "pictor.network/v1alpha1", "kind": "Settlement",
               "metadata": {"name": "s", "namespace": "pictor-system"},
               "spec": {"provider": "lab", "payoutAddress": "0xab", "amountOctas": amount, "amount": "x",
                        "unitCount": 1,
                        "units": [{"namespace": "n", "name": "u", "uid": "1", "amountOctas": amount}]}})
    };
    assert!(messages(&settlement(5), None).is_empty());
    let got = messages(&settlement(6), Some(&settlement(5)));
    assert!(got.iter().any(|m| m.contains("a Settlement's spec is immutable")), "{got:?}");
}
