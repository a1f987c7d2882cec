//! Real IPFS nodes for the local network: kubo's `ipfs` (built with the control plane), one for
//! the hub (the network's pinning node) and one per member, on loopback only. Each node has its
//! own repository, started with kubo's `test` profile (no bootstrap peers, no mDNS, loopback
//! addresses on free ports): they find each other only when told to ([`KuboNode::connect`]), so
//! nothing leaves the machine. A node stops when dropped; its repository stays until its folder
//! goes, so what the hub pinned is readable after the member's node is gone.

use crate::binaries::{Binaries, BinariesError};
use crate::process::ManagedProcess;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Why a node could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum KuboError {
    /// The `ipfs` binary is missing and could not be built.
    #[error(transparent)]
    Binaries(#[from] BinariesError),
    /// A command of the node failed.
    #[error("ipfs {what} on node {node}: {detail}")]
    Command { node: String, what: String, detail: String },
    /// The daemon did not answer in time.
    #[error("the IPFS node {node} did not start within {seconds} s; its log: {log}")]
    NotStarted { node: String, seconds: u64, log: String },
}

/// One kubo node: its repository and, while it runs, its daemon.
#[derive(Debug)]
pub struct KuboNode {
    name: String,
    ipfs: PathBuf,
    repo: PathBuf,
    daemon: Option<ManagedProcess>,
}

impl KuboNode {
    /// Makes a repository `<dir>/<name>` and starts its daemon, waiting until its RPC API answers.
    pub fn start(name: &str, dir: &Path) -> Result<Self, KuboError> {
        let ipfs = Binaries::ensure()?.path("ipfs");
        let repo = dir.join(name);
        let mut node = Self { name: name.to_string(), ipfs, repo, daemon: None };
        if !node.repo.join("config").exists() {
            std::fs::create_dir_all(&node.repo).map_err(|e| node.failed("init", e.to_string()))?;
            node.offline(&["init", "--profile=test", "--empty-repo"])?;
        }
        node.resume(dir)?;
        Ok(node)
    }

    /// Starts the daemon again on the same repository (after [`Self::stop`]).
    pub fn resume(&mut self, log_dir: &Path) -> Result<(), KuboError> {
        // A stale `api` file would point at the stopped daemon's port.
        let _ = std::fs::remove_file(self.repo.join("api"));
        let daemon = ManagedProcess::spawn_with_env(
            &format!("ipfs-{}", self.name),
            &self.ipfs,
            &["daemon".to_string()],
            &[("IPFS_PATH", &self.repo)],
            log_dir,
        )
        .map_err(|e| self.failed("daemon", e.to_string()))?;
        let limit = Duration::from_secs(30);
        let started = Instant::now();
        self.daemon = Some(daemon);
        while started.elapsed() < limit {
            if self.repo.join("api").exists() && self.online(&["id", "-f", "<id>"]).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = self.daemon.as_ref().map(|d| d.log_tail(20)).unwrap_or_default();
        Err(KuboError::NotStarted { node: self.name.clone(), seconds: limit.as_secs(), log })
    }

    /// Stops the daemon; the repository and what it holds stay.
    pub fn stop(&mut self) {
        self.daemon = None;
        // Killed, the daemon leaves its `api` file, which would send commands to a dead port.
        let _ = std::fs::remove_file(self.repo.join("api"));
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of its RPC API (`http://127.0.0.1:<port>`, kubo's `/api/v0/...`).
    pub fn rpc_url(&self) -> Result<String, KuboError> {
        let api =
            std::fs::read_to_string(self.repo.join("api")).map_err(|e| self.failed("api", e.to_string()))?;
        // `/ip4/127.0.0.1/tcp/<port>`
        let port = api.trim().rsplit('/').next().unwrap_or_default().to_string();
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// Where other nodes dial it: its loopback swarm address with its peer id.
    pub fn swarm_address(&self) -> Result<String, KuboError> {
        let id = self.online(&["id", "-f", "<id>"])?;
        let addresses = self.online(&["id", "-f", "<addrs>"])?;
        let address = addresses
            .lines()
            .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
            .ok_or_else(|| self.failed("id", format!("no loopback TCP address in {addresses:?}")))?;
        let address = address.split("/p2p/").next().unwrap_or(address);
        Ok(format!("{address}/p2p/{}", id.trim()))
    }

    /// Dials `other`, so each finds the other's blocks.
    pub fn connect(&self, other: &KuboNode) -> Result<(), KuboError> {
        self.online(&["swarm", "connect", &other.swarm_address()?]).map(|_| ())
    }

    /// Adds a file or a folder (recursively) and returns its CID (v1, raw leaves).
    pub fn add(&self, path: &Path) -> Result<String, KuboError> {
        let path =
            path.to_str().ok_or_else(|| self.failed("add", format!("{} is not UTF-8", path.display())))?;
        let cid = self.online(&["add", "--quieter", "--cid-version=1", "--recursive", path])?;
        Ok(cid.trim().to_string())
    }

    /// Pins `cid`, fetching its blocks from connected nodes first.
    pub fn pin(&self, cid: &str) -> Result<(), KuboError> {
        self.online(&["pin", "add", "--progress=false", cid]).map(|_| ())
    }

    /// The bytes of `path` (a CID, or `<CID>/<name>` inside a directory), from this node's own
    /// blocks only: what it holds, not what it could fetch. Works with the daemon stopped too.
    pub fn cat_local(&self, path: &str) -> Result<Vec<u8>, KuboError> {
        self.run(&["--offline", "cat", path])
    }

    /// Runs `ipfs` against the running daemon.
    fn online(&self, args: &[&str]) -> Result<String, KuboError> {
        if self.daemon.is_none() {
            return Err(self.failed(args[0], "the daemon is stopped".into()));
        }
        self.run(args).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Runs `ipfs` on the repository itself, with no daemon.
    fn offline(&self, args: &[&str]) -> Result<String, KuboError> {
        self.run(args).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Runs `ipfs`: through the daemon while it runs (the CLI finds it by the repository's `api`
    /// file), on the repository itself otherwise.
    fn run(&self, args: &[&str]) -> Result<Vec<u8>, KuboError> {
        let mut command = Command::new(&self.ipfs);
        command.env("IPFS_PATH", &self.repo);
        let output = command.args(args).output().map_err(|e| self.failed(args[0], e.to_string()))?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(self.failed(&args.join(" "), String::from_utf8_lossy(&output.stderr).trim().to_string()))
        }
    }

    fn failed(&self, what: &str, detail: String) -> KuboError {
        KuboError::Command { node: self.name.clone(), what: what.to_string(), detail }
    }
}
