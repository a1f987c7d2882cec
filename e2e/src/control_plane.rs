//! Starting and stopping the local control plane.

use crate::binaries::{Binaries, BinariesError};
use crate::kubeconfig;
use crate::process::ManagedProcess;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The admin token every local API server accepts (group `system:masters`).
const ADMIN_TOKEN: &str = "pictor-local-admin";
/// Field manager for what the harness applies.
const FIELD_MANAGER: &str = "pictor-e2e";

/// What to start.
#[derive(Clone, Debug)]
pub struct ControlPlaneOptions {
    /// Member clusters beside the hub.
    pub members: usize,
    /// Start kube-scheduler in every member (the baseline pictor-scheduler is measured against).
    pub kube_scheduler: bool,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self { members: 2, kube_scheduler: false }
    }
}

/// Extra flags for components of every cluster (feature gates, runtime config): what a
/// baseline needs beyond the defaults, e.g. kube-scheduler's gang scheduling behind
/// `GenericWorkload`.
#[derive(Clone, Debug, Default)]
pub struct ComponentFlags {
    /// Appended to every kube-apiserver's arguments.
    pub api_server: Vec<String>,
    /// Appended to every kube-scheduler's arguments.
    pub kube_scheduler: Vec<String>,
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The binaries are missing and could not be built.
    #[error(transparent)]
    Binaries(#[from] BinariesError),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A process exited while starting.
    #[error("{name} exited during start-up ({status}); last lines of {log}:\n{tail}")]
    Exited { name: String, status: String, log: String, tail: String },
    /// A component did not become ready in time.
    #[error("{0} was not ready after {1:?}; logs are in {2}")]
    NotReady(String, Duration, String),
    /// A Kubernetes call failed.
    #[error("{what}: {source}")]
    Kube { what: String, source: kube::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ControlPlaneError {
    let what = what.into();
    move |source| ControlPlaneError::Io { what, source }
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ControlPlaneError {
    let what = what.into();
    move |source| ControlPlaneError::Kube { what, source }
}

/// One Kubernetes cluster of the local control plane: its API server and how to reach it.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// `hub`, `member-a`, `member-b`, …
    pub name: String,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// kubeconfig with the admin token.
    pub kubeconfig: PathBuf,
    /// The API server's CA bundle.
    pub ca_file: PathBuf,
    kubectl: PathBuf,
}

impl Cluster {
    /// An admin client of this cluster.
    pub async fn client(&self) -> Result<Client, ControlPlaneError> {
        client_from(&self.kubeconfig).await
    }

    /// `kubectl` pointed at this cluster.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }

    /// A kubeconfig for another identity (a ServiceAccount token, say) on this cluster.
    pub fn kubeconfig_for(&self, user: &str, token: &str) -> String {
        kubeconfig::render(&self.name, &self.server, &self.ca_file, user, token)
    }
}

async fn client_from(path: &Path) -> Result<Client, ControlPlaneError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| ControlPlaneError::Kube {
        what: format!("read {}", path.display()),
        source: e.into(),
    })?;
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.map_err(|e| {
            ControlPlaneError::Kube { what: format!("load {}", path.display()), source: e.into() }
        })?;
    Client::try_from(config).map_err(kube_err("build a client"))
}

/// A running local control plane: one etcd, a hub and `members` member clusters. Dropping it
/// stops every process; after a panic it keeps the run folder with every log and prints it.
pub struct ControlPlane {
    /// The hub cluster, where jobs are submitted.
    pub hub: Cluster,
    /// Member clusters, named `member-a`, `member-b`, …
    pub members: Vec<Cluster>,
    /// The binaries in use.
    pub binaries: Binaries,
    run_dir: PathBuf,
    etcd_data_dir: Option<PathBuf>,
    processes: Mutex<Vec<ManagedProcess>>,
    keep_run_dir: bool,
    flags: ComponentFlags,
}

/// Member names: `member-a`, `member-b`, …, `member-z`, then `member-26`, …
fn member_name(index: usize) -> String {
    match u8::try_from(index).ok().filter(|i| *i < 26) {
        Some(i) => format!("member-{}", (b'a' + i) as char),
        None => format!("member-{index}"),
    }
}

/// Namespace whose pods kwok gives [`FAKE_POD_LOG`] (where members' agents run unit pods).
pub const FAKE_LOG_NAMESPACE: &str = "pictor-work";

/// What every pod in [`FAKE_LOG_NAMESPACE`] logs, in the CRI log format kwok reads.
pub const FAKE_POD_LOG: &str = "2026-01-01T00:00:00.000000000Z stdout F fake render: loading the scene\n\
     2026-01-01T00:00:01.000000000Z stdout F fake render: frames written\n";

fn free_port() -> Result<u16, ControlPlaneError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("pick a free port"))?;
    Ok(listener.local_addr().map_err(io("read the free port"))?.port())
}

impl ControlPlane {
    /// Builds what is missing, then starts etcd, the hub and the members, and waits until every
    /// API server answers `/readyz` and has its `default` namespace.
    pub async fn start(options: ControlPlaneOptions) -> Result<Self, ControlPlaneError> {
        Self::start_with_flags(options, ComponentFlags::default()).await
    }

    /// [`ControlPlane::start`] with extra component flags.
    pub async fn start_with_flags(
        options: ControlPlaneOptions,
        flags: ComponentFlags,
    ) -> Result<Self, ControlPlaneError> {
        let binaries = Binaries::ensure()?;
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        // Tests of one binary start planes in parallel, often within the same millisecond.
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run_dir = std::env::temp_dir().join(format!(
            "pictor-control-plane-{}-{}-{}",
            std::process::id(),
            stamp.as_millis(),
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&run_dir).map_err(io(format!("create {}", run_dir.display())))?;
        let mut plane = Self {
            hub: Cluster {
                name: String::new(),
                server: String::new(),
                kubeconfig: PathBuf::new(),
                ca_file: PathBuf::new(),
                kubectl: binaries.path("kubectl"),
            },
            members: Vec::new(),
            binaries,
            run_dir,
            etcd_data_dir: None,
            processes: Mutex::new(Vec::new()),
            keep_run_dir: std::env::var_os("PICTOR_KEEP_LOGS").is_some(),
            flags,
        };
        let started = Instant::now();
        let etcd_url = plane.start_etcd()?;
        let sa_key = plane.service_account_key()?;
        let tokens = plane.run_dir.join("tokens.csv");
        std::fs::write(&tokens, format!("{ADMIN_TOKEN},admin,admin,system:masters\n"))
            .map_err(io("write the token file"))?;

        let names: Vec<String> =
            std::iter::once("hub".to_string()).chain((0..options.members).map(member_name)).collect();
        let mut clusters = Vec::new();
        for name in &names {
            clusters.push(plane.start_api_server(name, &etcd_url, &sa_key, &tokens)?);
        }
        for cluster in &clusters {
            plane.wait_ready(cluster).await?;
        }
        for (i, cluster) in clusters.iter().enumerate() {
            plane.start_controller_manager(cluster, &sa_key)?;
            plane.start_kwok(cluster)?;
            if options.kube_scheduler && i > 0 {
                plane.start_kube_scheduler(cluster)?;
            }
        }
        let mut clusters = clusters.into_iter();
        plane.hub = clusters.next().expect("the hub is always started");
        plane.members = clusters.collect();
        tracing::info!(
            elapsed = ?started.elapsed(),
            run_dir = %plane.run_dir.display(),
            "local control plane ready: hub and {} members",
            plane.members.len()
        );
        Ok(plane)
    }

    /// Folder with the logs, kubeconfigs and etcd data of this run.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Process ids of everything this control plane started.
    pub fn pids(&self) -> Vec<u32> {
        self.processes().iter().map(ManagedProcess::pid).collect()
    }

    /// Freezes the process started as `name` (e.g. `hub-kube-apiserver`) until [`Self::resume`]:
    /// an outage as its clients see it.
    pub fn suspend(&self, name: &str) -> std::io::Result<()> {
        self.with_process(name, ManagedProcess::suspend)
    }

    /// Lets a suspended process go on.
    pub fn resume(&self, name: &str) -> std::io::Result<()> {
        self.with_process(name, ManagedProcess::resume)
    }

    fn with_process(&self, name: &str, f: fn(&ManagedProcess) -> std::io::Result<()>) -> std::io::Result<()> {
        let processes = self.processes();
        let process = processes
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no process {name}")))?;
        f(process)
    }

    /// Process id of the component started under `name` (e.g. `member-a-kube-scheduler`).
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        self.processes().iter().find(|p| p.name() == name).map(ManagedProcess::pid)
    }

    /// Keeps the run folder after drop (logs, kubeconfigs), as a failed run does.
    pub fn keep_logs(&mut self) {
        self.keep_run_dir = true;
    }

    fn spawn(&mut self, name: &str, binary: &str, args: Vec<String>) -> Result<(), ControlPlaneError> {
        let process = ManagedProcess::spawn(name, &self.binaries.path(binary), &args, &self.run_dir)
            .map_err(io(format!("start {binary}")))?;
        self.processes().push(process);
        Ok(())
    }

    fn processes(&self) -> std::sync::MutexGuard<'_, Vec<ManagedProcess>> {
        self.processes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fails with the log tail of the first process that has exited: every process of the
    /// control plane runs until it is dropped.
    pub fn check_alive(&self) -> Result<(), ControlPlaneError> {
        for p in self.processes().iter_mut() {
            if let Some(status) = p.exited() {
                return Err(ControlPlaneError::Exited {
                    name: p.name().to_string(),
                    status: status.to_string(),
                    log: p.log().display().to_string(),
                    tail: p.log_tail(20),
                });
            }
        }
        Ok(())
    }

    fn start_etcd(&mut self) -> Result<String, ControlPlaneError> {
        let client = free_port()?;
        let peer = free_port()?;
        // etcd's data lives in memory where the machine has /dev/shm: the tests never need it
        // to survive, and fsyncs on a shared disk are the slowest part of an API write.
        let shm = Path::new("/dev/shm");
        let data_root = if shm.is_dir() { shm.to_path_buf() } else { self.run_dir.clone() };
        let data_dir = data_root.join(format!("pictor-etcd-{}-{client}", std::process::id()));
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        self.spawn(
            "etcd",
            "etcd",
            vec![
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                "--unsafe-no-fsync=true".into(),
                "--quota-backend-bytes=8589934592".into(),
                "--log-level=warn".into(),
            ],
        )?;
        self.etcd_data_dir = Some(data_dir);
        Ok(client_url)
    }

    fn service_account_key(&self) -> Result<PathBuf, ControlPlaneError> {
        let key = self.run_dir.join("service-account.key");
        let status = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&key)
            .arg("2048")
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(io("run openssl to make the service-account key (install openssl)"))?;
        if !status.success() {
            return Err(ControlPlaneError::Io {
                what: "openssl genrsa".into(),
                source: std::io::Error::other(status.to_string()),
            });
        }
        Ok(key)
    }

    fn start_api_server(
        &mut self,
        name: &str,
        etcd_url: &str,
        sa_key: &Path,
        tokens: &Path,
    ) -> Result<Cluster, ControlPlaneError> {
        let port = free_port()?;
        let cert_dir = self.run_dir.join(format!("{name}-certs"));
        self.spawn(
            &format!("{name}-kube-apiserver"),
            "kube-apiserver",
            vec![
                format!("--etcd-servers={etcd_url}"),
                format!("--etcd-prefix=/registry-{name}/"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                // 1.37 refuses a loopback advertise address for the `kubernetes` Service's
                // endpoints; the local clusters need no such endpoints.
                "--endpoint-reconciler-type=none".into(),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", cert_dir.display()),
                format!("--service-account-issuer=https://{name}.pictor.local"),
                format!("--service-account-signing-key-file={}", sa_key.display()),
                format!("--service-account-key-file={}", sa_key.display()),
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                "--authorization-mode=RBAC".into(),
                format!("--token-auth-file={}", tokens.display()),
                "--enable-priority-and-fairness=false".into(),
                "--max-requests-inflight=0".into(),
                "--max-mutating-requests-inflight=0".into(),
                "--profiling=false".into(),
                // kwok plays each node's kubelet on 127.0.0.1 (pod logs); node names resolve to nothing.
                "--kubelet-preferred-address-types=InternalIP".into(),
                // As kubeadm, k3s and the managed clusters providers run: privileged pods are
                // allowed in general, and Pod Security admission confines a namespace.
                "--allow-privileged=true".into(),
            ]
            .into_iter()
            .chain(self.flags.api_server.clone())
            .collect(),
        )?;
        let server = format!("https://127.0.0.1:{port}");
        let ca_file = cert_dir.join("apiserver.crt");
        let kubeconfig = self.run_dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&kubeconfig, kubeconfig::render(name, &server, &ca_file, "admin", ADMIN_TOKEN))
            .map_err(io("write a kubeconfig"))?;
        Ok(Cluster {
            name: name.to_string(),
            server,
            kubeconfig,
            ca_file,
            kubectl: self.binaries.path("kubectl"),
        })
    }

    async fn wait_ready(&self, cluster: &Cluster) -> Result<(), ControlPlaneError> {
        let limit = Duration::from_secs(120);
        let started = Instant::now();
        loop {
            self.check_alive()?;
            if started.elapsed() > limit {
                return Err(ControlPlaneError::NotReady(
                    format!("{} kube-apiserver", cluster.name),
                    limit,
                    self.run_dir.display().to_string(),
                ));
            }
            // The CA file appears once the API server has written its self-signed certificate.
            if cluster.ca_file.exists()
                && let Ok(client) = cluster.client().await
            {
                let ready = client
                    .request_text(http::Request::get("/readyz").body(Vec::new()).expect("a valid request"))
                    .await
                    .is_ok_and(|body| body.trim() == "ok");
                if ready
                    && Api::<Namespace>::all(client).get_opt("default").await.is_ok_and(|ns| ns.is_some())
                {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn start_controller_manager(
        &mut self,
        cluster: &Cluster,
        sa_key: &Path,
    ) -> Result<(), ControlPlaneError> {
        let kubeconfig = cluster.kubeconfig.display().to_string();
        self.spawn(
            &format!("{}-kube-controller-manager", cluster.name),
            "kube-controller-manager",
            vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                format!("--service-account-private-key-file={}", sa_key.display()),
                format!("--root-ca-file={}", cluster.ca_file.display()),
                format!("--cluster-name={}", cluster.name),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()?),
                "--use-service-account-credentials=false".into(),
                "--kube-api-qps=500".into(),
                "--kube-api-burst=1000".into(),
            ],
        )
    }

    fn start_kwok(&mut self, cluster: &Cluster) -> Result<(), ControlPlaneError> {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("kwok/stages.yaml");
        // kwok also plays the kubelet's server, so the API server can serve pod logs: every pod
        // in the members' work namespace prints the same short log.
        let log_file = self.run_dir.join("fake-pod.log");
        std::fs::write(&log_file, FAKE_POD_LOG).map_err(io("write the fake pod log"))?;
        let logs_config = self.run_dir.join(format!("{}-kwok-logs.yaml", cluster.name));
        let logs = format!(
            "apiVersion: kwok.x-k8s.io/v1alpha1\nkind: ClusterLogs\nmetadata:\n  name: work-pods\nspec:\n  \
             selector:\n    matchNamespaces: [{FAKE_LOG_NAMESPACE}]\n  logs:\n  - logsFile: {}\n",
            log_file.display()
        );
        std::fs::write(&logs_config, logs).map_err(io("write the kwok logs config"))?;
        let port = free_port()?;
        // The API server does not verify a kubelet's certificate unless told to; its own serves.
        let cert_dir = self.run_dir.join(format!("{}-certs", cluster.name));
        self.spawn(
            &format!("{}-kwok", cluster.name),
            "kwok",
            vec![
                format!("--kubeconfig={}", cluster.kubeconfig.display()),
                format!("--config={}", config.display()),
                format!("--config={}", logs_config.display()),
                format!("--server-address=127.0.0.1:{port}"),
                "--node-ip=127.0.0.1".into(),
                format!("--node-port={port}"),
                format!("--tls-cert-file={}", cert_dir.join("apiserver.crt").display()),
                format!("--tls-private-key-file={}", cert_dir.join("apiserver.key").display()),
            ],
        )
    }

    /// Starts kube-scheduler on the hub too, so pods of the hub's own components (the Helm
    /// charts' operator and billing) land on its fake nodes.
    pub fn start_hub_scheduler(&mut self) -> Result<(), ControlPlaneError> {
        let hub = self.hub.clone();
        self.start_kube_scheduler(&hub)
    }

    fn start_kube_scheduler(&mut self, cluster: &Cluster) -> Result<(), ControlPlaneError> {
        let config = self.run_dir.join(format!("{}-kube-scheduler.yaml", cluster.name));
        let body = format!(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nleaderElection:\n  leaderElect: false\nclientConnection:\n  kubeconfig: {}\n  qps: 5000\n  burst: 10000\n",
            cluster.kubeconfig.display()
        );
        std::fs::write(&config, body).map_err(io("write the kube-scheduler config"))?;
        self.spawn(
            &format!("{}-kube-scheduler", cluster.name),
            "kube-scheduler",
            vec![
                format!("--config={}", config.display()),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()?),
            ]
            .into_iter()
            .chain(self.flags.kube_scheduler.clone())
            .collect(),
        )
    }

    /// Applies the Pictor CRDs to the hub and waits until each is Established, then the admission
    /// policies that bound what member agents write.
    pub async fn install_crds(&self) -> Result<(), ControlPlaneError> {
        let client = self.hub.client().await?;
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        for crd in pictor_crds::crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            api.patch(&name, &params, &Patch::Apply(&crd))
                .await
                .map_err(kube_err(format!("apply CRD {name}")))?;
        }
        for crd in pictor_crds::crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let cond = kube::runtime::conditions::is_crd_established();
            tokio::time::timeout(
                Duration::from_secs(30),
                kube::runtime::wait::await_condition(api.clone(), &name, cond),
            )
            .await
            .map_err(|_| {
                ControlPlaneError::NotReady(
                    format!("CRD {name}"),
                    Duration::from_secs(30),
                    self.run_dir.display().to_string(),
                )
            })?
            .map_err(|e| ControlPlaneError::Io {
                what: format!("wait for CRD {name}"),
                source: std::io::Error::other(e),
            })?;
        }
        self.install_admission_policies(client.clone()).await
    }

    /// Applies the admission policies that bound what member agents write, and waits until the
    /// API server has type-checked each (then it enforces them).
    async fn install_admission_policies(&self, client: kube::Client) -> Result<(), ControlPlaneError> {
        use k8s_openapi::api::admissionregistration::v1::{
            ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
        };
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        for (policy, binding) in pictor_crds::admission::policies() {
            let name = policy.metadata.name.clone().unwrap_or_default();
            policies
                .patch(&name, &params, &Patch::Apply(&policy))
                .await
                .map_err(kube_err(format!("apply ValidatingAdmissionPolicy {name}")))?;
            bindings
                .patch(&name, &params, &Patch::Apply(&binding))
                .await
                .map_err(kube_err(format!("apply ValidatingAdmissionPolicyBinding {name}")))?;
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let current = policies.get(&name).await.map_err(kube_err(format!("read policy {name}")))?;
                let status = current.status.as_ref();
                if let Some(warnings) = status
                    .and_then(|s| s.type_checking.as_ref())
                    .and_then(|t| t.expression_warnings.as_ref())
                    .filter(|w| !w.is_empty())
                {
                    return Err(ControlPlaneError::Io {
                        what: format!("type-check policy {name}"),
                        source: std::io::Error::other(format!("{warnings:?}")),
                    });
                }
                if status.and_then(|s| s.observed_generation) == current.metadata.generation {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(ControlPlaneError::NotReady(
                        format!("ValidatingAdmissionPolicy {name}"),
                        Duration::from_secs(30),
                        self.run_dir.display().to_string(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// Creates fake GPU nodes in `cluster` and waits until kwok reports each Ready.
    pub async fn add_nodes(&self, cluster: &Cluster, nodes: Vec<Node>) -> Result<(), ControlPlaneError> {
        let client = cluster.client().await?;
        let api: Api<Node> = Api::all(client);
        let names: Vec<String> = nodes.iter().filter_map(|n| n.metadata.name.clone()).collect();
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            api.create(&PostParams::default(), &node)
                .await
                .map_err(kube_err(format!("create node {name}")))?;
        }
        let limit = Duration::from_secs(60);
        let started = Instant::now();
        for name in names {
            loop {
                let node = api.get(&name).await.map_err(kube_err(format!("read node {name}")))?;
                let ready = node
                    .status
                    .and_then(|s| s.conditions)
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if ready {
                    break;
                }
                self.check_alive()?;
                if started.elapsed() > limit {
                    return Err(ControlPlaneError::NotReady(
                        format!("node {name} (kwok)"),
                        limit,
                        self.run_dir.display().to_string(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Reverse start order: controllers and kwok first, etcd last.
        while let Some(process) = self.processes().pop() {
            drop(process);
        }
        if let Some(data) = self.etcd_data_dir.take() {
            let _ = std::fs::remove_dir_all(data);
        }
        if std::thread::panicking() || self.keep_run_dir {
            eprintln!("local control plane logs kept in {}", self.run_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}
