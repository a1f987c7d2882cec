//! What a real node changes on the machine outside its own folder, taken down before the first
//! node starts and put back after the last one stops: the kernel settings the kubelet and the
//! CNI bridge set, the iptables chains they add, the interfaces, and the host paths the nodes'
//! mount namespaces bind over. The same snapshot is what a test compares to prove that nothing
//! was left behind.

use super::{CGROUP_PREFIX, RealNodeError};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kernel settings the kubelet (vm.*, kernel.*) and the CNI bridge (ip_forward) write.
pub(super) const SYSCTLS: [&str; 7] = [
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
];

/// Paths the kubelet and containerd use whatever their flags say. Each node binds its own folder
/// over them inside its mount namespace; on the host they only need to exist as mount points.
pub(super) const BOUND_HOST_PATHS: [&str; 6] = [
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/run/containerd",
    "/run/netns",
    "/var/lib/cni",
];

const IPTABLES_TABLES: [&str; 3] = ["filter", "nat", "mangle"];

/// The parts of the machine a real node touches, as they are at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSnapshot {
    /// `(name, value)` of each of [`SYSCTLS`].
    pub sysctls: Vec<(String, String)>,
    /// `iptables -t <table> -S` lines (and ip6tables'), prefixed by the command and table.
    pub iptables_rules: BTreeSet<String>,
    /// Network interface names.
    pub links: BTreeSet<String>,
    /// Which of [`BOUND_HOST_PATHS`] exist.
    pub bound_paths: BTreeSet<String>,
    /// Mount points under the nodes' folder or the bound paths, seen from this mount namespace.
    pub node_mounts: BTreeSet<String>,
    /// Live processes whose command line names the nodes' folder (containerd, kubelet, shims…).
    pub node_processes: BTreeSet<String>,
    /// The nodes' cgroups (`<hierarchy>/pictor-node-…`), where their pods' processes live.
    pub node_cgroups: BTreeSet<String>,
}

impl HostSnapshot {
    /// Reads the machine now; `root` is the folder every node lives in.
    pub fn take(root: &Path) -> Self {
        let root_text = root.display().to_string();
        let sysctls =
            SYSCTLS.iter().map(|name| (name.to_string(), read_sysctl(name).unwrap_or_default())).collect();
        let mut iptables_rules = BTreeSet::new();
        for command in ["iptables", "ip6tables"] {
            for table in IPTABLES_TABLES {
                for line in command_lines(command, &["-w", "-t", table, "-S"]) {
                    iptables_rules.insert(format!("{command} -t {table} {line}"));
                }
            }
        }
        let links = command_lines("ip", &["-o", "link", "show"])
            .iter()
            .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().split('@').next().unwrap_or("").to_string()))
            .collect();
        let bound_paths =
            BOUND_HOST_PATHS.iter().filter(|p| Path::new(p).exists()).map(|p| p.to_string()).collect();
        let node_mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&root_text) || BOUND_HOST_PATHS.iter().any(|p| m.starts_with(p)))
            .collect();
        let node_processes = processes_naming(&root_text);
        let node_cgroups = cgroup_hierarchies()
            .iter()
            .flat_map(|h| std::fs::read_dir(h).into_iter().flatten().flatten())
            .filter(|e| e.file_name().to_string_lossy().starts_with(CGROUP_PREFIX))
            .map(|e| e.path().display().to_string())
            .collect();
        HostSnapshot {
            sysctls,
            iptables_rules,
            links,
            bound_paths,
            node_mounts,
            node_processes,
            node_cgroups,
        }
    }

    /// What differs in `after`, one line a difference; empty when the machine is as it was.
    pub fn differences(&self, after: &HostSnapshot) -> Vec<String> {
        let mut out = vec![];
        for ((name, before), (_, now)) in self.sysctls.iter().zip(&after.sysctls) {
            if before != now {
                out.push(format!("sysctl {name} was {before}, is {now}"));
            }
        }
        let sets = [
            ("iptables rule", &self.iptables_rules, &after.iptables_rules),
            ("interface", &self.links, &after.links),
            ("host path", &self.bound_paths, &after.bound_paths),
            ("mount", &self.node_mounts, &after.node_mounts),
            ("process", &self.node_processes, &after.node_processes),
            ("cgroup", &self.node_cgroups, &after.node_cgroups),
        ];
        for (what, before, now) in sets {
            out.extend(now.difference(before).map(|x| format!("{what} left behind: {x}")));
            out.extend(before.difference(now).map(|x| format!("{what} gone: {x}")));
        }
        out
    }
}

/// The machine as it was, and the way back to it.
pub(super) struct SavedHost {
    pub(super) before: HostSnapshot,
    root: PathBuf,
}

impl SavedHost {
    pub(super) fn save(root: &Path) -> Self {
        SavedHost { before: HostSnapshot::take(root), root: root.to_path_buf() }
    }

    /// Makes the host paths the nodes bind over exist (only those that did not are removed later).
    pub(super) fn make_bound_paths(&self) -> Result<(), RealNodeError> {
        for path in BOUND_HOST_PATHS {
            std::fs::create_dir_all(path).map_err(|e| RealNodeError::Host(format!("create {path}: {e}")))?;
        }
        Ok(())
    }

    /// Puts back every sysctl, removes every iptables rule and chain that was not there, the
    /// interfaces the nodes made and the host paths they needed. Best effort: every step runs
    /// even when one fails, and what could not be undone is returned.
    pub(super) fn restore(&self) -> Vec<String> {
        let mut failures = vec![];
        for (name, value) in &self.before.sysctls {
            if !value.is_empty() && read_sysctl(name).as_deref() != Some(value.as_str()) {
                let path = sysctl_path(name);
                if let Err(e) = std::fs::write(&path, value) {
                    failures.push(format!("restore {name}={value}: {e}"));
                }
            }
        }
        self.remove_new_iptables();
        let now = HostSnapshot::take(&self.root);
        for link in now.links.difference(&self.before.links) {
            run_quiet("ip", &["link", "delete", link]);
        }
        for path in BOUND_HOST_PATHS.iter().rev() {
            if !self.before.bound_paths.contains(*path) {
                // Only empty folders: a path that something else filled is not ours to delete.
                let _ = std::fs::remove_dir(path);
            }
        }
        failures
    }

    /// Deletes the rules that jump to (or sit in) chains that are new, then the chains: the
    /// KUBE-* chains the kubelet adds and the CNI-* ones of the bridge plugin.
    fn remove_new_iptables(&self) {
        for command in ["iptables", "ip6tables"] {
            for table in IPTABLES_TABLES {
                let before: BTreeSet<String> = self
                    .before
                    .iptables_rules
                    .iter()
                    .filter_map(|r| r.strip_prefix(&format!("{command} -t {table} ")).map(str::to_string))
                    .collect();
                let now = command_lines(command, &["-w", "-t", table, "-S"]);
                let new_chains: Vec<String> = now
                    .iter()
                    .filter(|l| !before.contains(*l))
                    .filter_map(|l| l.strip_prefix("-N ").map(str::to_string))
                    .collect();
                for rule in now.iter().filter(|l| l.starts_with("-A ") && !before.contains(*l)) {
                    // `-S` prints rules as shell words (comments quoted): let a shell split them.
                    let delete = format!("{command} -w -t {table} -D {}", &rule[3..]);
                    run_quiet("sh", &["-c", &delete]);
                }
                for chain in &new_chains {
                    run_quiet(command, &["-w", "-t", table, "-F", chain]);
                }
                for chain in &new_chains {
                    run_quiet(command, &["-w", "-t", table, "-X", chain]);
                }
            }
        }
    }
}

fn sysctl_path(name: &str) -> PathBuf {
    Path::new("/proc/sys").join(name.replace('.', "/"))
}

fn read_sysctl(name: &str) -> Option<String> {
    std::fs::read_to_string(sysctl_path(name)).ok().map(|v| v.trim().to_string())
}

/// The lines a command prints, or none when it fails or is missing.
pub(super) fn command_lines(program: &str, args: &[&str]) -> Vec<String> {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Runs a command for its effect, ignoring its output and failure (cleanup).
pub(super) fn run_quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program).args(args).output();
}

/// `pid command line` of each live process whose command line contains `needle`.
pub(super) fn processes_naming(needle: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        if process_is_zombie(pid) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.insert(format!("{pid} {}", cmdline.trim()));
        }
    }
    found
}

fn process_is_zombie(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// The mount points of the cgroup v1 hierarchies (`/sys/fs/cgroup/cpu`, …, `name=systemd`).
pub(super) fn cgroup_hierarchies() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mount_point = before.split_whitespace().nth(4)?;
            (after.split_whitespace().next() == Some("cgroup")).then(|| PathBuf::from(mount_point))
        })
        .collect()
}
