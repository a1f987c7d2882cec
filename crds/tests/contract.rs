//! Every `pictor.network/` key is declared once, in `crds/src/contract/keys.rs`: a second
//! spelling elsewhere is how the hub and a member end up disagreeing about a label without any
//! compiler noticing. This walks the workspace's Rust sources and names each file and line that
//! spells a key as a string literal of its own.
//!
//! Tests may spell keys out (a test that writes the literal checks the constant too), so
//! `tests/` directories, everything from a file's first `#[cfg(test)]` line on, and a
//! module its parent declares under `#[cfg(test)]` (`mod tests;`, `mod fixtures;`) are left out.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Where the keys are declared, relative to the workspace root.
const KEYS: &str = "crds/src/contract/keys.rs";
/// How every key literal starts.
const KEY_LITERAL: &str = "\"pictor.network/";
/// The API group and version, which is not a key and is written where it is used.
const API_VERSION_LITERAL: &str = "\"pictor.network/v1alpha1\"";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("the workspace root")
}

/// The `.rs` files under `dir`, leaving out build output, Git's own files and test directories.
fn rust_sources(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if !matches!(name, "target" | ".git" | "tests") {
                rust_sources(&path, found);
            }
        } else if name.ends_with(".rs") {
            found.push(path);
        }
    }
}

/// Whether `path` is a module its parent (`plan.rs` or `plan/mod.rs` for `plan/tests.rs`, or a
/// crate root) declares under `#[cfg(test)]`, such as `#[cfg(test)] mod tests;`: test code split
/// out of that file.
fn is_test_module(path: &Path) -> bool {
    let (Some(stem), Some(dir)) = (path.file_stem().and_then(|s| s.to_str()), path.parent()) else {
        return false;
    };
    let declaration = format!("mod {stem};");
    let parents = [dir.with_extension("rs"), dir.join("mod.rs"), dir.join("lib.rs"), dir.join("main.rs")];
    parents.iter().filter(|parent| parent.as_path() != path).any(|parent| {
        let text = fs::read_to_string(parent).unwrap_or_default();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        lines.windows(2).any(|pair| pair[0] == "#[cfg(test)]" && pair[1] == declaration)
    })
}

/// The lines of a file that are not test code, numbered from 1.
fn non_test_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .take_while(|(_, line)| line.trim() != "#[cfg(test)]")
}

/// The `"pictor.network/…"` literals on a line, other than the API version, quotes included.
fn key_literals(line: &str) -> Vec<&str> {
    line.match_indices(KEY_LITERAL)
        .map(|(start, _)| {
            let rest = &line[start + 1..];
            let end = rest.find('"').map_or(line.len(), |i| start + 1 + i + 1);
            &line[start..end]
        })
        .filter(|literal| *literal != API_VERSION_LITERAL)
        .collect()
}

#[test]
fn keys_are_spelled_only_in_the_contract() {
    let root = workspace_root();
    let mut sources = Vec::new();
    rust_sources(&root, &mut sources);
    assert!(sources.iter().any(|p| p.ends_with(KEYS)), "{KEYS} not found under {}", root.display());
    let mut elsewhere = Vec::new();
    for path in &sources {
        let relative = path.strip_prefix(&root).unwrap_or(path);
        if relative == Path::new(KEYS) || is_test_module(path) {
            continue;
        }
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        for (number, line) in non_test_lines(&text) {
            for literal in key_literals(line) {
                elsewhere.push(format!("{}:{number}: {literal}", relative.display()));
            }
        }
    }
    assert!(
        elsewhere.is_empty(),
        "pictor.network/ keys spelled outside {KEYS}; use the pictor_crds::contract constants instead:\n{}",
        elsewhere.join("\n")
    );
}

#[test]
fn the_contract_declares_each_key_once() {
    let text = fs::read_to_string(workspace_root().join(KEYS)).expect("reading the keys");
    let mut declared: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (number, line) in non_test_lines(&text) {
        for literal in key_literals(line) {
            declared.entry(literal).or_default().push(number);
        }
    }
    assert!(declared.len() > 10, "too few keys read from {KEYS}: {declared:?}");
    let twice: Vec<String> = declared
        .iter()
        .filter(|(_, lines)| lines.len() > 1)
        .map(|(key, lines)| format!("{key} on lines {lines:?}"))
        .collect();
    assert!(twice.is_empty(), "{KEYS} declares a key more than once:\n{}", twice.join("\n"));
}

#[test]
fn literals_are_found_in_code_and_not_after_the_tests_start() {
    assert_eq!(
        key_literals(r#"get("pictor.network/gang").or(Some("pictor.network/v1alpha1"))"#),
        ["\"pictor.network/gang\""]
    );
    assert_eq!(key_literals(r#"json!({"a": "pictor.network/x", "b": 1})"#), ["\"pictor.network/x\""]);
    let text = "let a = 1;\n#[cfg(test)]\nconst B: &str = \"pictor.network/b\";\n";
    assert_eq!(non_test_lines(text).map(|(n, _)| n).collect::<Vec<_>>(), [1]);
}
