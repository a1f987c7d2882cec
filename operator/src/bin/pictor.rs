//! `pictor`: the command line of the Pictor network (also usable as `kubectl pictor`).

use clap::{Parser, Subcommand};
use pictor_crds::v1alpha1::Tier;
use pictor_operator::membership::{self, JoinRequest};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "pictor", about = "The Pictor GPU network: members, jobs, earnings")]
struct Cli {
    /// kubeconfig of the hub (default: KUBECONFIG, ~/.kube/config).
    #[arg(long, global = true, env = "PICTOR_HUB_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Members of the network: join and leave.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Admits a member: creates its GpuCluster, namespace, agent identity and narrow RBAC on the
    /// hub, and prints the kubeconfig its agent needs. Running it again changes nothing but the
    /// token.
    Add {
        /// Member name (lowercase letters, digits, '-').
        name: String,
        /// community or partner.
        #[arg(long, value_parser = parse_tier)]
        tier: Tier,
        /// Aptos account address the provider is paid to.
        #[arg(long = "payout")]
        payout_address: String,
        /// Region of the member's GPUs.
        #[arg(long, default_value = "")]
        region: String,
        /// Price per GPU-hour in octas for one GPU product: MODEL=OCTAS (repeatable).
        #[arg(long = "price", value_parser = parse_price)]
        prices: Vec<(String, i64)>,
        /// Price per GPU-hour in octas for products without their own price.
        #[arg(long)]
        default_price: Option<i64>,
        /// Lifetime of the agent's token, in hours.
        #[arg(long, default_value_t = 24 * 365)]
        token_hours: i64,
        /// Hub address as the member reaches it (default: the server of --kubeconfig).
        #[arg(long)]
        hub_server: Option<String>,
        /// Write the kubeconfig here instead of to standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Removes a member and everything `member add` created for it; its tokens stop working.
    Remove {
        /// Member name.
        name: String,
    },
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    match s {
        "community" => Ok(Tier::Community),
        "partner" => Ok(Tier::Partner),
        other => Err(format!("{other:?} is not a member tier: use community or partner")),
    }
}

fn parse_price(s: &str) -> Result<(String, i64), String> {
    let (model, octas) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write MODEL=OCTAS, e.g. NVIDIA-GeForce-RTX-4090=40000000"))?;
    let octas =
        octas.parse().map_err(|_| format!("{s:?}: the price is a whole number of octas per GPU-hour"))?;
    Ok((model.to_string(), octas))
}

fn kubeconfig_path(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit.or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from)) {
        return Ok(path);
    }
    let home = std::env::var_os("HOME").ok_or_else(|| anyhow::anyhow!("set --kubeconfig or KUBECONFIG"))?;
    Ok(PathBuf::from(home).join(".kube/config"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pictor_operator::logging::init("warn");
    let cli = Cli::parse();
    let path = kubeconfig_path(cli.kubeconfig)?;
    let client = pictor_operator::kubeconfig::client(Some(&path)).await?;
    match cli.command {
        Command::Member {
            command:
                MemberCommand::Add {
                    name,
                    tier,
                    payout_address,
                    region,
                    prices,
                    default_price,
                    token_hours,
                    hub_server,
                    output,
                },
        } => {
            let request = JoinRequest {
                name: name.clone(),
                tier,
                payout_address,
                region,
                prices: prices.into_iter().collect::<BTreeMap<_, _>>(),
                default_price,
            };
            let token = membership::add(&client, &request, token_hours * 3600).await?;
            let (server, ca) = pictor_operator::kubeconfig::server_and_ca(&path)?;
            let kubeconfig = membership::agent_kubeconfig(&name, &hub_server.unwrap_or(server), &ca, &token);
            match output {
                Some(file) => {
                    std::fs::write(&file, kubeconfig)?;
                    eprintln!("member {name} admitted; its agent's kubeconfig is in {}", file.display());
                }
                None => print!("{kubeconfig}"),
            }
        }
        Command::Member { command: MemberCommand::Remove { name } } => {
            membership::remove(&client, &name).await?;
            eprintln!("member {name} removed");
        }
    }
    Ok(())
}
