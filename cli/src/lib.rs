//! `pictor`: the command line of the Pictor network, also run as `kubectl pictor` (the
//! `kubectl-pictor` binary on PATH), for submitters, providers and the hub's admins (DESIGN.md,
//! "What Pictor is"; `member add` writes the RBAC of "The member agent speaks to the hub…"). One module per command; each turns what it read from the
//! hub into lines through pure functions, which is what the unit tests check.

mod earnings;
mod kubeconfig;
mod logs;
mod member;
mod members;
pub mod membership;
mod preview;
mod submit;
mod table;
mod watch;

use clap::{Parser, Subcommand, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::PathBuf;
use std::process::ExitCode;

/// Field manager of everything the CLI applies for a submitter.
pub const FIELD_MANAGER: &str = "pictor-cli";

#[derive(Parser)]
#[command(name = "pictor", about = "The Pictor GPU network: members, jobs, earnings")]
struct Cli {
    /// kubeconfig of the hub (default: KUBECONFIG, ~/.kube/config).
    #[arg(long, global = true, env = "PICTOR_HUB_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the jobs (default: the kubeconfig context's namespace, else `default`).
    #[arg(long, short = 'n', global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// How a listing is printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned plain-text columns.
    #[default]
    Table,
    /// JSON, for scripts.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Members of the network: join and leave.
    Member {
        #[command(subcommand)]
        command: Box<member::MemberCommand>,
    },
    /// Submits a RenderJob or TrainingJob from flags, or jobs from a YAML file (server-side apply).
    Submit(Box<submit::SubmitArgs>),
    /// Follows jobs live: frames, units per member, cost. Exits when the named jobs finish.
    Watch(watch::WatchArgs),
    /// Prints the log tail of each unit of a job, as the members' agents stored it on the hub.
    Logs(logs::LogsArgs),
    /// Lists the members: tier, Ready, GPUs free/total by model, prices, reputation, earnings.
    Members {
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// What providers earned: paid and pending, and their settlements on Aptos.
    Earnings(earnings::EarningsArgs),
    /// Writes a contact sheet PNG of a RenderJob's finished frames.
    Preview(preview::PreviewArgs),
}

/// A command's failure, printed on stderr with a non-zero exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The user asked for something impossible; the message says what to change.
    #[error("{0}")]
    Usage(String),
    /// The hub refused or failed a call.
    #[error("{what}: {}", brief(.source))]
    Hub { what: String, source: kube::Error },
    /// The hub refused a submitted object; the message lists what to fix.
    #[error("{0}")]
    Refused(String),
    /// Anything else (files, kubeconfig, storage).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The API server's own message for a refusal (what a person acts on), else the error.
fn brief(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// Wraps a hub call's error with what was being done.
pub(crate) fn hub(what: impl Into<String>) -> impl FnOnce(kube::Error) -> CliError {
    let what = what.into();
    move |source| CliError::Hub { what, source }
}

/// Where the hub is and which namespace the user works in.
pub(crate) struct Hub {
    pub client: kube::Client,
    pub namespace: String,
    pub kubeconfig: PathBuf,
}

fn kubeconfig_path(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit.or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from)) {
        return Ok(path);
    }
    let home = std::env::var_os("HOME").ok_or_else(|| anyhow::anyhow!("set --kubeconfig or KUBECONFIG"))?;
    Ok(PathBuf::from(home).join(".kube/config"))
}

async fn connect(kubeconfig: Option<PathBuf>, namespace: Option<String>) -> Result<Hub, CliError> {
    let path = kubeconfig_path(kubeconfig)?;
    let file =
        Kubeconfig::read_from(&path).map_err(|e| anyhow::anyhow!("kubeconfig {}: {e}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("kubeconfig {}: {e}", path.display()))?;
    let namespace = namespace.unwrap_or_else(|| config.default_namespace.clone());
    let client =
        kube::Client::try_from(config).map_err(|e| anyhow::anyhow!("kubeconfig {}: {e}", path.display()))?;
    Ok(Hub { client, namespace, kubeconfig: path })
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let hub = connect(cli.kubeconfig, cli.namespace).await?;
    match cli.command {
        Command::Member { command } => member::run(&hub, *command).await,
        Command::Submit(args) => submit::run(&hub, *args).await,
        Command::Watch(args) => watch::run(&hub, args).await,
        Command::Logs(args) => logs::run(&hub, args).await,
        Command::Members { output } => members::run(&hub, output).await,
        Command::Earnings(args) => earnings::run(&hub, args).await,
        Command::Preview(args) => preview::run(&hub, args).await,
    }
}

/// The entry point of both `pictor` and `kubectl-pictor`.
pub fn main() -> ExitCode {
    pictor_telemetry::logging::init("warn");
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
