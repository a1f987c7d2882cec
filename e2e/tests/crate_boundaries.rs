//! Each binary links only what it runs: the member agent a provider installs carries neither the
//! Aptos SDK nor the image codecs and object-store clients of the CLI's previews; billing, which
//! holds the treasury key, links neither the hub nor the render worker; the hub links no Aptos
//! SDK (whose serde_json features would break its untagged enums) and no render worker (it
//! compares frames with pictor-frames and runs no Blender). Read from `cargo metadata`'s
//! resolved graph, normal dependencies only, as `cargo tree -e normal` shows them.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Every package `package` links, by name, through normal dependencies.
fn links(graph: &serde_json::Value, package: &str) -> BTreeSet<String> {
    let packages: BTreeMap<&str, &str> = graph["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: BTreeMap<&str, &serde_json::Value> = graph["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = packages.iter().find(|(_, name)| **name == package).map(|(id, _)| *id);
    let root = root.unwrap_or_else(|| panic!("no package {package} in the workspace"));
    let (mut seen, mut todo) = (BTreeSet::new(), vec![root]);
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().into_iter().flatten() {
            let normal = dep["dep_kinds"].as_array().into_iter().flatten().any(|k| k["kind"].is_null());
            if normal {
                todo.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    seen.iter().map(|id| packages[id].to_string()).collect()
}

#[test]
fn each_binary_links_only_what_it_runs() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let graph: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let refused: [(&str, &[&str]); 4] = [
        (
            "pictor-agent",
            &["aptos-sdk", "image", "object_store", "pictor-operator", "pictor-cli", "pictor-render-worker"],
        ),
        (
            "pictor-billing",
            &["pictor-operator", "pictor-render-worker", "pictor-agent", "pictor-cli", "image"],
        ),
        // The hub reads and compares two frames to judge a verification (pictor-frames), but
        // runs no Blender.
        ("pictor-operator", &["aptos-sdk", "pictor-render-worker", "pictor-agent", "pictor-cli"]),
        ("pictor-cli", &["aptos-sdk", "pictor-operator", "pictor-agent"]),
    ];
    for (package, never) in refused {
        let linked = links(&graph, package);
        let wrong: Vec<&&str> = never.iter().filter(|n| linked.contains(**n)).collect();
        assert!(wrong.is_empty(), "{package} links {wrong:?}");
        println!("{package}: {} packages, none of {never:?}", linked.len());
    }
    assert!(links(&graph, "pictor-billing").contains("aptos-sdk"), "the graph is read at all");
}
