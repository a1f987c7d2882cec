//! ROCm-SMI on the machine the tests run on. The backend links against librocm_smi64 (Debian's
//! 5.2.3 included); without an AMD GPU it must report "no AMD GPU" as unavailability, and the
//! binary must say so in its log instead of failing; with one, it lists the GPUs.
#![cfg(feature = "rocm")]

use pictor_device_plugins::rocm::RocmBackend;
use pictor_device_plugins::{BackendError, GpuBackend, Vendor};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn has_amd_gpu() -> bool {
    Path::new("/dev/kfd").exists()
}

#[test]
fn rocm_backend_lists_amd_gpus_or_reports_none() {
    match RocmBackend::new() {
        Err(BackendError::Unavailable { backend, reason }) => {
            assert!(!has_amd_gpu(), "/dev/kfd exists, yet {backend} is unavailable: {reason}");
            assert!(reason.contains("no AMD GPU"), "{reason}");
            eprintln!("{backend}: {reason}");
        }
        Err(other) => panic!("ROCm-SMI failed otherwise than by finding no GPU: {other}"),
        Ok(backend) => {
            let inventory = backend.inventory().expect("ROCm-SMI lists the GPUs it counted");
            assert_eq!(inventory.vendor, Vendor::Amd);
            for gpu in &inventory.gpus {
                eprintln!("{} {} {} MiB {}", gpu.id, gpu.name, gpu.memory_mib, gpu.compute);
                assert!(gpu.name.starts_with("AMD") && gpu.memory_mib > 0);
            }
        }
    }
}

#[test]
fn binary_says_plainly_when_the_node_has_no_gpu_of_its_kind() {
    if has_amd_gpu() {
        eprintln!("skipping: this machine has an AMD GPU");
        return;
    }
    let socket_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pictor-device-plugins"))
        .args(["--backend", "rocm", "--no-labeller", "--socket-dir"])
        .arg(socket_dir.path())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Every Pictor process logs to stderr (pictor_telemetry::logging); read until the verdict.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let line = stderr.lines().map_while(Result::ok).find(|l| l.contains("no GPU"));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let line = line.unwrap_or_else(|| panic!("no verdict in the log; exited {status}"));
    assert!(line.contains("ROCm-SMI not available: no AMD GPU"), "{line}");
    assert!(std::fs::read_dir(socket_dir.path()).unwrap().next().is_none(), "no socket without GPUs");
}
