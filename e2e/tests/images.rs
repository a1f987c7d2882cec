//! The container images, checked without building them (no registry or container runtime is
//! needed): every image the charts reference has its `images/<name>.Dockerfile`, every binary a
//! Dockerfile builds, copies or runs is a real bin target of the workspace (from `cargo
//! metadata`), builds start from rust:1.95-bookworm, and what runs is debian:bookworm-slim or an
//! image built here, as a non-root user.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Image references in a values file or manifest: the values of `repository`, `image` and
/// `*Image` keys, without their tags.
fn image_refs(value: &serde_yaml::Value, key: Option<&str>, out: &mut BTreeSet<String>) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map {
                image_refs(v, k.as_str(), out);
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|v| image_refs(v, key, out)),
        serde_yaml::Value::String(s) => {
            let is_image_key = key.is_some_and(|k| k == "repository" || k == "image" || k.ends_with("Image"));
            if is_image_key && !s.is_empty() {
                let last = s.rsplit('/').next().unwrap_or(s);
                let untagged = last.split(':').next().unwrap_or(last);
                out.insert(s[..s.len() - last.len()].to_string() + untagged);
            }
        }
        _ => {}
    }
}

fn referenced_images() -> BTreeSet<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("charts"))
        .unwrap()
        .map(|e| e.unwrap().path().join("values.yaml"))
        .filter(|p| p.exists())
        .collect();
    files.extend(std::fs::read_dir(root().join("device-plugins/deploy")).unwrap().map(|e| e.unwrap().path()));
    let mut images = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
            image_refs(&value, None, &mut images);
        }
    }
    images
}

/// Every bin target of the workspace, by package.
fn bin_targets() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .current_dir(root())
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut bins = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let names: BTreeSet<String> = package["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect();
        bins.insert(package["name"].as_str().unwrap().to_string(), names);
    }
    bins
}

/// What a Dockerfile says about the workspace: packages built (`-p`), binaries named (`--bin`,
/// `target/release/<bin>`, `/out/<bin>`, `/usr/local/bin/<bin>`), base images (`FROM`) and users.
#[derive(Debug, Default)]
struct Dockerfile {
    packages: BTreeSet<String>,
    binaries: BTreeSet<String>,
    froms: Vec<String>,
    users: Vec<String>,
}

fn parse(text: &str) -> Dockerfile {
    let mut file = Dockerfile::default();
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let split = |s: &str| -> Vec<String> {
        s.split(|c: char| c.is_whitespace() || matches!(c, '"' | '[' | ']' | ','))
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    for line in joined.lines() {
        if let Some(from) = line.strip_prefix("FROM ") {
            file.froms.push(from.split_whitespace().next().unwrap_or_default().to_string());
        }
        if let Some(user) = line.strip_prefix("USER ") {
            file.users.push(user.trim().to_string());
        }
        for command in line.split("&&") {
            let words = split(command);
            // `-p` and `--bin` only of cargo; `mkdir -p` is no package.
            if let Some(cargo) = words.iter().position(|w| w == "cargo") {
                for pair in words[cargo..].windows(2) {
                    match pair[0].as_str() {
                        "-p" | "--package" => file.packages.insert(pair[1].clone()),
                        "--bin" => file.binaries.insert(pair[1].clone()),
                        _ => false,
                    };
                }
            }
            for word in &words {
                for prefix in ["target/release/", "/out/", "/usr/local/bin/"] {
                    if let Some(bin) = word.strip_prefix(prefix).filter(|b| !b.is_empty()) {
                        file.binaries.insert(bin.to_string());
                    }
                }
            }
        }
    }
    file
}

#[test]
fn every_image_the_charts_reference_has_a_dockerfile_of_real_binaries() {
    let images = referenced_images();
    let names: BTreeSet<&str> = images.iter().map(|i| i.rsplit('/').next().unwrap()).collect();
    for expected in
        ["pictor-operator", "pictor-agent", "pictor-scheduler", "pictor-device-plugins", "render-worker"]
    {
        assert!(names.contains(expected), "the charts reference {expected}: {images:?}");
    }
    let bins = bin_targets();
    let all_bins: BTreeSet<&String> = bins.values().flatten().collect();
    let mut built_here = BTreeSet::new();
    for name in &names {
        let path = root().join("images").join(format!("{name}.Dockerfile"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("the charts reference {name}, but {} cannot be read: {e}", path.display())
        });
        let file = parse(&text);
        assert!(!file.binaries.is_empty(), "{name}.Dockerfile names no binary");
        for package in &file.packages {
            assert!(
                bins.contains_key(package),
                "{name}.Dockerfile builds -p {package}, not a workspace package"
            );
        }
        for binary in &file.binaries {
            assert!(
                all_bins.contains(binary),
                "{name}.Dockerfile copies or runs {binary}, which is no bin target of the workspace ({bins:?})"
            );
            if !file.packages.is_empty() {
                let of_built = file.packages.iter().any(|p| bins[p].contains(binary));
                assert!(
                    of_built,
                    "{name}.Dockerfile copies {binary}, which none of {:?} builds",
                    file.packages
                );
            }
        }
        let runtime = file.froms.last().unwrap();
        if file.packages.is_empty() {
            built_here.insert((name.to_string(), runtime.clone()));
        } else {
            assert_eq!(
                file.froms.first().map(String::as_str),
                Some("rust:1.95-bookworm"),
                "{name}: build stage"
            );
            assert_eq!(runtime, "debian:bookworm-slim", "{name}: runtime stage");
        }
        let user = file.users.last().unwrap_or_else(|| panic!("{name}.Dockerfile sets no USER"));
        assert!(!user.starts_with('0') && !user.starts_with("root"), "{name} runs as {user}");
    }
    // An image on top of another must be on one built here.
    for (name, base) in built_here {
        let base_name = base.rsplit('/').next().unwrap().split(':').next().unwrap();
        assert!(names.contains(base_name), "{name} is built on {base}, which no Dockerfile here builds");
    }
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    assert!(makefile.contains("\nimages:"), "make images builds them");
}

#[test]
fn dockerfile_words_are_read_as_binaries() {
    let file = parse(
        "FROM rust:1.95-bookworm AS build\nRUN cargo build -p pictor-scheduler \\\n    --bin pictor-scheduler \\\n && mkdir -p /out && cp target/release/pictor-scheduler /out/\nFROM debian:bookworm-slim\nUSER 65532:65532\nENTRYPOINT [\"/usr/local/bin/pictor-x\"]\n",
    );
    assert_eq!(file.packages, BTreeSet::from(["pictor-scheduler".to_string()]));
    assert_eq!(file.binaries, BTreeSet::from(["pictor-scheduler".to_string(), "pictor-x".to_string()]));
    assert_eq!(file.froms, ["rust:1.95-bookworm", "debian:bookworm-slim"]);
    assert_eq!(file.users, ["65532:65532"]);
}

/// The render worker's Debian packages are listed once: the Dockerfile installs the list, and
/// the builder of the real nodes' image reads the same file; neither names a package itself.
#[test]
fn the_render_worker_packages_live_in_one_list_both_image_builders_read() {
    let list = std::fs::read_to_string(root().join("images/render-worker.packages")).unwrap();
    let packages: Vec<&str> =
        list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert!(packages.contains(&"blender"), "{packages:?}");
    let dockerfile = std::fs::read_to_string(root().join("images/render-worker.Dockerfile")).unwrap();
    let builder = std::fs::read_to_string(root().join("e2e/real-node/build-images.sh")).unwrap();
    for (what, text) in
        [("images/render-worker.Dockerfile", &dockerfile), ("e2e/real-node/build-images.sh", &builder)]
    {
        assert!(text.contains("render-worker.packages"), "{what} reads images/render-worker.packages");
        let installs = text.lines().filter(|l| l.contains("apt-get install") || l.contains("--include="));
        for line in installs {
            for package in &packages {
                assert!(
                    !line.split_whitespace().any(|w| w == *package),
                    "{what} names {package} itself: {line}"
                );
            }
        }
    }
}
