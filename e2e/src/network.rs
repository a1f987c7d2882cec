//! A whole local Pictor network on the control plane: the hub's operator, members admitted with
//! `pictor member add`, and their agents running with the kubeconfig that command printed —
//! processes, as they run in clusters.

use crate::control_plane::{Cluster, ControlPlane};
use crate::process::ManagedProcess;
use crate::workspace_binaries::workspace_binary;
use std::future::Future;
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
    let pictor = workspace_binary("pictor-operator", "pictor");
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

/// Starts a member's agent with the hub kubeconfig `member add` printed.
pub fn start_agent(
    plane: &ControlPlane,
    member: &Cluster,
    hub_kubeconfig: &Path,
    scheduler: &str,
) -> std::io::Result<ManagedProcess> {
    let agent = workspace_binary("pictor-operator", "pictor-agent");
    let args = vec![
        format!("--member={}", member.name),
        format!("--hub-kubeconfig={}", hub_kubeconfig.display()),
        format!("--kubeconfig={}", member.kubeconfig.display()),
        format!("--scheduler-name={scheduler}"),
        "--heartbeat-seconds=1".into(),
    ];
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
    let operator = workspace_binary("pictor-operator", "pictor-operator");
    let mut args = vec![
        format!("--kubeconfig={}", plane.hub.kubeconfig.display()),
        format!("--member-grace-seconds={grace_seconds}"),
    ];
    if let Some(seconds) = fake_run_seconds {
        args.push(format!("--fake-run-seconds={seconds}"));
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    ManagedProcess::spawn("hub-pictor-operator", &operator, &args, plane.run_dir())
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
