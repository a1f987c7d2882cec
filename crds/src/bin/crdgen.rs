//! Writes the Pictor CRDs and admission policies as YAML into the `pictor-crds` chart, or checks that the committed
//! files match the types (`--check`).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/pictor-crds/templates");
    if !check {
        std::fs::create_dir_all(&dir).expect("create the chart's templates folder");
    }
    let mut stale = Vec::new();
    for (file, yaml) in pictor_crds::chart_files() {
        let path = dir.join(file);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::write(&path, yaml).expect("write the chart file");
            println!("wrote {}", path.display());
        }
    }
    if stale.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "CRDs or admission policies out of date (run `cargo run -p pictor-crds --bin crdgen`): {}",
            stale.join(", ")
        );
        ExitCode::FAILURE
    }
}
