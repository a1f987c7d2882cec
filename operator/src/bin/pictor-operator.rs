//! `pictor-operator`: the hub's controllers. Each kind of job is registered here, once.

use clap::Parser;
use pictor_operator::hub_index::HubIndex;
use pictor_operator::job_controller::JobController;
use pictor_operator::member_controller::{self, HubLink, MemberController};
use pictor_operator::metrics::{self, OperatorMetrics};
use pictor_operator::render_job::{RenderJobs, judge::FrameJudge, plan::RenderSettings};
use pictor_operator::runner::{self, Hub};
use pictor_operator::training_job::{TrainingJobs, plan::TrainingSettings};
use pictor_operator::verification_key::VerificationKey;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "The Pictor hub operator")]
struct Args {
    /// kubeconfig of the hub (default: in-cluster or KUBECONFIG).
    #[arg(long, env = "PICTOR_HUB_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Seconds a member may be silent before it is NotReady and its unfinished units Lost.
    #[arg(long, default_value_t = 30)]
    member_grace_seconds: u64,
    /// Render worker image for jobs that name none.
    #[arg(long, env = "PICTOR_RENDER_IMAGE", default_value = "ghcr.io/pictor-network/render-worker:0.1.0")]
    render_image: String,
    /// WorkUnits of one render job Pending or Running at once.
    #[arg(long, default_value_t = 200)]
    max_units_in_flight: usize,
    /// Local networks on kwok only: unit pods "run" this many seconds (kwok completes them).
    #[arg(long)]
    fake_run_seconds: Option<u32>,
    /// Local networks on kwok only: verification of this member's renders reports a mismatch.
    #[arg(long, requires = "fake_run_seconds")]
    fake_mismatch_member: Option<String>,
    /// Seconds after a unit is accepted during which its submitter may dispute it (annotation
    /// `pictor.network/dispute` on the job); billing pays it only afterwards.
    #[arg(long, default_value_t = 3600)]
    dispute_window_seconds: u64,
    /// File holding the hub's secret that draws which chunks are verified and which frame of
    /// each (at least 16 random bytes; the chart keeps one in a Secret). Without one, a random
    /// secret is drawn at start and the sample of unfinished jobs moves on a restart.
    #[arg(long, env = "PICTOR_VERIFICATION_SECRET_FILE")]
    verification_secret_file: Option<PathBuf>,
    #[command(flatten)]
    metrics: pictor_telemetry::MetricsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let metrics = Arc::new(OperatorMetrics::new());
    let waiting_for = Some("the hub's watches have not listed yet");
    let readiness = pictor_telemetry::start("info", &args.metrics, metrics.registry(), waiting_for).await?;
    let client = pictor_telemetry::cluster::client(args.kubeconfig.as_deref()).await?;
    let grace = Duration::from_secs(args.member_grace_seconds);
    let hub_link = Arc::new(Mutex::new(HubLink::new(Instant::now())));
    let lease_link = hub_link.clone();
    let on_lease = Arc::new(move || member_controller::hub_answered(&lease_link, grace));
    let index = HubIndex::start(client.clone(), &metrics, on_lease).await;
    readiness.set(true);
    tokio::spawn(metrics::refresh_hub(index.clone(), metrics.clone()));
    tracing::info!(grace_seconds = args.member_grace_seconds, "hub index ready; controllers starting");
    let dispute_window = Duration::from_secs(args.dispute_window_seconds);
    let verification_key = match &args.verification_secret_file {
        Some(path) => VerificationKey::from_file(path)?,
        None => {
            tracing::warn!(
                "no --verification-secret-file: drew a random verification secret; the sample of unfinished jobs moves if the operator restarts"
            );
            VerificationKey::generate()?
        }
    };
    // On kwok no frames are written: the judge stands in for the comparison there.
    let judge = match args.fake_run_seconds {
        Some(_) => FrameJudge::Fake { mismatch_member: args.fake_mismatch_member.clone() },
        None => FrameJudge::Storage,
    };
    let render = RenderJobs {
        judge,
        settings: RenderSettings {
            default_image: args.render_image,
            max_in_flight: args.max_units_in_flight,
            fake_run_seconds: args.fake_run_seconds,
            dispute_window,
            verification_key,
        },
    };
    let training = TrainingJobs {
        settings: TrainingSettings { fake_run_seconds: args.fake_run_seconds, dispute_window },
    };
    let hub = Hub::new(client, index, metrics);
    tokio::join!(
        runner::run(MemberController { grace, hub_link }, hub.clone()),
        runner::run(JobController(render), hub.clone()),
        runner::run(JobController(training), hub),
    );
    Ok(())
}
