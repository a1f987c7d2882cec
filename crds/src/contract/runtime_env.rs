//! Environment variables that steer the container runtime or the dynamic loader rather than the
//! program: which GPUs the NVIDIA or AMD runtime hands a container (`NVIDIA_VISIBLE_DEVICES`,
//! `CUDA_VISIBLE_DEVICES`, …), with which capabilities (`NVIDIA_DRIVER_CAPABILITIES`), and what
//! the loader injects into every process (`LD_PRELOAD`, `LD_LIBRARY_PATH`). A submitter who set
//! them could see GPUs the scheduler gave to someone else or run code before the program's own.
//! The CRDs refuse them (the rule below) and the member agent refuses a unit that carries one
//! anyway, from this one list.

/// Name prefixes no submitted variable may start with.
pub const PREFIXES: [&str; 2] = ["NVIDIA_", "LD_"];

/// Whole names no submitted variable may have.
pub const NAMES: [&str; 4] =
    ["CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL"];

/// The CEL rule on a variable's name; a test checks it says what [`PREFIXES`] and [`NAMES`] say.
pub const RULE: &str = "!self.startsWith('NVIDIA_') && !self.startsWith('LD_') && !(self in ['CUDA_VISIBLE_DEVICES', 'HIP_VISIBLE_DEVICES', 'ROCR_VISIBLE_DEVICES', 'GPU_DEVICE_ORDINAL'])";

/// The message that goes with [`RULE`].
pub const MESSAGE: &str = "env names starting with NVIDIA_ or LD_, and CUDA_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES and GPU_DEVICE_ORDINAL, steer the GPU runtime or the loader on the provider's machine and cannot be set; the GPUs a pod sees are the ones its member allocates";

/// Whether a variable of this name steers the runtime or the loader.
pub fn steers_runtime(name: &str) -> bool {
    PREFIXES.iter().any(|p| name.starts_with(p)) || NAMES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cel_rule_and_the_message_name_every_prefix_and_name() {
        for prefix in PREFIXES {
            assert!(RULE.contains(&format!("!self.startsWith('{prefix}')")), "{prefix}");
            assert!(MESSAGE.contains(prefix), "{prefix}");
        }
        for name in NAMES {
            assert!(RULE.contains(&format!("'{name}'")), "{name}");
            assert!(MESSAGE.contains(name), "{name}");
        }
        assert_eq!(RULE.matches("startsWith").count(), PREFIXES.len());
    }

    #[test]
    fn runtime_variables_are_told_from_the_programs_own() {
        for name in ["LD_PRELOAD", "LD_LIBRARY_PATH", "NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"] {
            assert!(steers_runtime(name), "{name}");
        }
        for name in ["PYTHONPATH", "OMP_NUM_THREADS", "CUDA_LAUNCH_BLOCKING", "OLD_PRELOAD"] {
            assert!(!steers_runtime(name), "{name}");
        }
    }
}
