//! `pictor-render-worker render …` renders a chunk of frames; `pictor-render-worker verify …`
//! re-renders one frame and compares it with a delivered one. Both print a JSON result on
//! stdout and write it to the result file (the container's termination message).
#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use pictor_crds::v1alpha1::{ImageFormat, RenderEngine};
use pictor_render_worker::blender::{FrameSelection, RequestedDevice};
use pictor_render_worker::chunk::{self, ChunkRequest};
use pictor_render_worker::storage::StorageSettings;
use pictor_render_worker::termination::{self, DEFAULT_RESULT_FILE};
use pictor_render_worker::verification::{self, VerificationRequest};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pictor-render-worker",
    version,
    about = "Renders a Pictor chunk or verifies a frame with Blender"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render frames of a scene and store them as frame_NNNNNN.<ext> under the output URL.
    Render(RenderArgs),
    /// Render one frame again and compare it with the stored original (PSNR).
    Verify(VerifyArgs),
}

/// What both commands share.
#[derive(Args)]
struct CommonArgs {
    /// URL of the .blend scene: file://, s3://, gs://, az://, http(s):// or a local path.
    #[arg(long)]
    scene: String,
    /// Blender render engine.
    #[arg(long, default_value = "Cycles", value_parser = parse_engine)]
    engine: RenderEngine,
    /// Cycles device: auto picks the node's GPU when Blender can use it, else the CPU.
    #[arg(long, value_enum, default_value_t = RequestedDevice::Auto)]
    device: RequestedDevice,
    /// The Blender executable.
    #[arg(long, env = "PICTOR_BLENDER", default_value = "blender")]
    blender: PathBuf,
    /// Folder of storage credentials, one file per setting (AWS_ACCESS_KEY_ID, …), as a mounted
    /// Secret gives them; they win over the environment variables of the same names.
    #[arg(long)]
    credentials_dir: Option<PathBuf>,
    /// Where the JSON result also goes (Kubernetes' termination message by default).
    #[arg(long, default_value = DEFAULT_RESULT_FILE)]
    result_file: PathBuf,
}

#[derive(Args)]
struct RenderArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// First frame.
    #[arg(long)]
    first: i64,
    /// Last frame, included.
    #[arg(long)]
    last: i64,
    /// Render every Sth frame.
    #[arg(long, default_value_t = 1)]
    step: i64,
    /// URL of the folder the frames go to.
    #[arg(long)]
    output: String,
    /// Image format: PNG, OPEN_EXR, JPEG or TIFF.
    #[arg(long, default_value = "PNG", value_parser = parse_format)]
    format: ImageFormat,
}

#[derive(Args)]
struct VerifyArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The frame to render again.
    #[arg(long)]
    frame: i64,
    /// URL of the frame as it was delivered.
    #[arg(long)]
    original: String,
    /// The lowest PSNR, in dB, that passes.
    #[arg(long, default_value_t = 30.0)]
    threshold_db: f64,
    /// Image format to render in; by default that of the original's file extension.
    #[arg(long, value_parser = parse_format)]
    format: Option<ImageFormat>,
}

/// Parses a value the way the RenderJob API spells it (`Cycles`, `OPEN_EXR`, …).
fn parse_api_name<T: serde::de::DeserializeOwned>(value: &str, expected: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(value.into()))
        .map_err(|_| format!("{value:?} is not one of {expected}"))
}

fn parse_engine(value: &str) -> Result<RenderEngine, String> {
    parse_api_name(value, "Cycles, Eevee")
}

fn parse_format(value: &str) -> Result<ImageFormat, String> {
    parse_api_name(value, "PNG, OPEN_EXR, JPEG, TIFF")
}

fn settings(common: &CommonArgs) -> Result<StorageSettings, String> {
    let settings = StorageSettings::from_environment();
    match &common.credentials_dir {
        Some(dir) => settings.with_credentials_dir(dir).map_err(|e| e.to_string()),
        None => Ok(settings),
    }
}

async fn render(args: RenderArgs) -> Result<String, String> {
    let settings = settings(&args.common)?;
    let request = ChunkRequest {
        scene: args.common.scene,
        frames: FrameSelection::new(args.first, args.last, args.step).map_err(|e| e.to_string())?,
        output: args.output,
        format: args.format,
        engine: args.common.engine,
        device: args.common.device,
        blender: args.common.blender,
    };
    let report = chunk::render_chunk(&request, &settings).await.map_err(|e| e.to_string())?;
    let message =
        chunk::termination_message(&request, &report, &settings).await.map_err(|e| e.to_string())?;
    println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    Ok(message)
}

async fn verify(args: VerifyArgs) -> Result<String, String> {
    let settings = settings(&args.common)?;
    let request = VerificationRequest {
        scene: args.common.scene,
        frame: args.frame,
        original: args.original,
        threshold_db: args.threshold_db,
        engine: args.common.engine,
        format: args.format,
        device: args.common.device,
        blender: args.common.blender,
    };
    let report = verification::verify_frame(&request, &settings).await.map_err(|e| e.to_string())?;
    tracing::info!(frame = report.frame, psnr_db = report.psnr_db, passed = report.passed, "verified");
    let message = report.to_message();
    println!("{message}");
    Ok(message)
}

/// Waits for SIGTERM (pod deletion) or SIGINT and names it.
async fn termination_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let result_file = match &cli.command {
        Command::Render(args) => args.common.result_file.clone(),
        Command::Verify(args) => args.common.result_file.clone(),
    };
    let work = async {
        match cli.command {
            Command::Render(args) => render(args).await,
            Command::Verify(args) => verify(args).await,
        }
    };
    // As a container's PID 1 the worker gets no default signal handling: without this, a
    // deleted pod would wait out its grace period. Dropping the work kills Blender with it.
    let outcome = tokio::select! {
        outcome = work => outcome,
        signal = termination_signal() => Err(format!("stopped by {signal} before the work was done")),
    };
    match outcome {
        Ok(message) => match termination::write_result_file(&result_file, &message) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("error: {error}");
            if let Err(e) =
                termination::write_result_file(&result_file, &termination::failure_message(&error))
            {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
