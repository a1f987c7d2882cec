//! A whole local Pictor network on the control plane: the hub's operator, members admitted with
//! `pictor member add`, and their agents running with the kubeconfig that command printed —
//! processes, as they run in clusters.

use crate::control_plane::{Cluster, ControlPlane};
use crate::process::ManagedProcess;
use crate::workspace_binaries::{Profile, workspace_binary, workspace_binary_built};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, panicking with `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `pictor member add` for a community `member` on the hub, writing the agent's kubeconfig to
/// `out`. `prices` are `MODEL=OCTAS` pairs.
pub fn member_add(
    hub: &Cluster,
    member: &str,
    payout: &str,
    prices: &[&str],
    out: &Path,
) -> std::io::Result<()> {
    member_add_with_tier(hub, member, "community", payout, prices, out)
}

/// [`member_add`] with a tier: `community` or `partner`.
pub fn member_add_with_tier(
    hub: &Cluster,
    member: &str,
    tier: &str,
    payout: &str,
    prices: &[&str],
    out: &Path,
) -> std::io::Result<()> {
    let pictor = workspace_binary("pictor-cli", "pictor");
    let mut cmd = std::process::Command::new(pictor);
    cmd.args(["member", "add", member, "--tier", tier, "--payout", payout, "--region", "local"]);
    for price in prices {
        cmd.args(["--price", price]);
    }
    let output = cmd.arg("--kubeconfig").arg(&hub.kubeconfig).arg("-o").arg(out).output()?;
    if !output.status.success() {
        return Err(std::io::Error::other(format!(
            "pictor member add {member}: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

/// `pictor member remove` on the hub, with more flags; the command's output.
pub fn member_remove(hub: &Cluster, member: &str, extra: &[&str]) -> std::io::Result<std::process::Output> {
    std::process::Command::new(workspace_binary("pictor-cli", "pictor"))
        .args(["member", "remove", member])
        .args(extra)
        .arg("--kubeconfig")
        .arg(&hub.kubeconfig)
        .output()
}

/// Starts a member's agent with the hub kubeconfig `member add` printed.
pub fn start_agent(
    plane: &ControlPlane,
    member: &Cluster,
    hub_kubeconfig: &Path,
    scheduler: &str,
) -> std::io::Result<ManagedProcess> {
    start_agent_with(plane, member, hub_kubeconfig, scheduler, &[])
}

/// [`start_agent`] with more of the agent's flags (`--work-env=NAME=VALUE`, …). Without an
/// `--allow-image` among them the member runs any image.
pub fn start_agent_with(
    plane: &ControlPlane,
    member: &Cluster,
    hub_kubeconfig: &Path,
    scheduler: &str,
    extra: &[String],
) -> std::io::Result<ManagedProcess> {
    let agent = workspace_binary("pictor-agent", "pictor-agent");
    let mut args = vec![
        format!("--member={}", member.name),
        format!("--hub-kubeconfig={}", hub_kubeconfig.display()),
        format!("--kubeconfig={}", member.kubeconfig.display()),
        format!("--scheduler-name={scheduler}"),
        "--heartbeat-seconds=1".into(),
        // Several processes share the machine: each takes a free port, found in its log.
        "--metrics-addr=127.0.0.1:0".into(),
    ];
    args.extend(extra.iter().cloned());
    // Test members run any image unless the test gives a policy: their pods are kwok's.
    if !extra.iter().any(|a| a.starts_with("--allow-image")) {
        args.push("--allow-image=*".into());
    }
    ManagedProcess::spawn(&format!("{}-agent", member.name), &agent, &args, plane.run_dir())
}

/// Starts pictor-scheduler in a member cluster (one replica, no leader election).
pub fn start_scheduler(plane: &ControlPlane, member: &Cluster) -> std::io::Result<ManagedProcess> {
    let scheduler = workspace_binary("pictor-scheduler", "pictor-scheduler");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let args = vec!["--no-leader-elect".to_string(), format!("--http-addr=127.0.0.1:{port}")];
    let kubeconfig = member.kubeconfig.as_path();
    ManagedProcess::spawn_with_env(
        &format!("{}-pictor-scheduler", member.name),
        &scheduler,
        &args,
        &[("KUBECONFIG", kubeconfig)],
        plane.run_dir(),
    )
}

/// Starts the hub operator; `extra` are more of its flags.
pub fn start_operator(
    plane: &ControlPlane,
    grace_seconds: u64,
    fake_run_seconds: Option<u32>,
    extra: &[&str],
) -> std::io::Result<ManagedProcess> {
    start_operator_built(plane, Profile::Debug, grace_seconds, fake_run_seconds, extra)
}

/// [`start_operator`] with the operator built in `profile`.
pub fn start_operator_built(
    plane: &ControlPlane,
    profile: Profile,
    grace_seconds: u64,
    fake_run_seconds: Option<u32>,
    extra: &[&str],
) -> std::io::Result<ManagedProcess> {
    let operator = workspace_binary_built("pictor-operator", "pictor-operator", profile);
    let mut args = vec![
        format!("--kubeconfig={}", plane.hub.kubeconfig.display()),
        format!("--member-grace-seconds={grace_seconds}"),
        "--metrics-addr=127.0.0.1:0".into(),
    ];
    if let Some(seconds) = fake_run_seconds {
        args.push(format!("--fake-run-seconds={seconds}"));
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    ManagedProcess::spawn("hub-pictor-operator", &operator, &args, plane.run_dir())
}

/// Where a process started by this module serves `/metrics`, `/healthz` and `/readyz`: the
/// address it logged after binding its free port.
pub async fn metrics_addr(process: &ManagedProcess, limit: Duration) -> SocketAddr {
    eventually(&format!("{} serving /metrics", process.name()), limit, || async {
        let log = std::fs::read_to_string(process.log()).ok()?;
        let line = log.lines().find(|l| l.contains("serving /metrics"))?;
        let addr = line.split_whitespace().find_map(|word| word.strip_prefix("addr="))?;
        addr.parse().ok()
    })
    .await
}

/// `GET path` from a process's HTTP endpoints: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, body.to_string()))
}

/// The value of one series in an OpenMetrics text, written as it appears there:
/// `name{label="value",...}` (labels in the order the exporter writes them) or a bare name.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

/// The path a member's agent kubeconfig is written to.
pub fn agent_kubeconfig_path(plane: &ControlPlane, member: &Cluster) -> PathBuf {
    plane.run_dir().join(format!("{}-agent-hub.kubeconfig", member.name))
}

/// Waits until every member's GpuCluster is Ready with an inventory.
pub async fn wait_for_members(plane: &ControlPlane, limit: Duration) -> Result<(), String> {
    use kube::api::Api;
    use pictor_crds::v1alpha1::GpuCluster;
    let client = plane.hub.client().await.map_err(|e| e.to_string())?;
    let clusters: Api<GpuCluster> = Api::all(client);
    let deadline = Instant::now() + limit;
    for member in &plane.members {
        loop {
            let status = clusters.get_opt(&member.name).await.ok().flatten().and_then(|c| c.status);
            let ready = status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready && status.is_some_and(|s| s.inventory.is_some()) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "member {} did not become Ready; logs in {}",
                    member.name,
                    plane.run_dir().display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(())
}

/// Every WorkUnit of the job with `job_uid`, from wherever `units` lists.
pub async fn units_of_job(
    units: &kube::Api<pictor_crds::v1alpha1::WorkUnit>,
    job_uid: &str,
) -> Vec<pictor_crds::v1alpha1::WorkUnit> {
    let all = units.list(&kube::api::ListParams::default()).await.expect("WorkUnits list");
    all.items.into_iter().filter(|u| u.spec.job_ref.uid == job_uid).collect()
}
