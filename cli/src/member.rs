//! `pictor member add|remove`: admitting a member to the network and removing it.

use super::{CliError, Hub};
use crate::membership::{self, JoinRequest};
use clap::Subcommand;
use pictor_crds::v1alpha1::Tier;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum MemberCommand {
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
    /// Refused while the member is owed for verified work not yet paid.
    Remove {
        /// Member name.
        name: String,
        /// Remove it even while it is owed for verified work, giving that pay up.
        #[arg(long)]
        forfeit_earnings: bool,
    },
}

pub(super) fn parse_tier(s: &str) -> Result<Tier, String> {
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

pub(super) async fn run(hub: &Hub, command: MemberCommand) -> Result<(), CliError> {
    match command {
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
        } => {
            let request = JoinRequest {
                name: name.clone(),
                tier,
                payout_address,
                region,
                prices: prices.into_iter().collect::<BTreeMap<_, _>>(),
                default_price,
            };
            let token = membership::add(&hub.client, &request, token_hours * 3600)
                .await
                .map_err(anyhow::Error::from)?;
            let (server, ca) =
                crate::kubeconfig::server_and_ca(&hub.kubeconfig).map_err(anyhow::Error::from)?;
            let kubeconfig = membership::agent_kubeconfig(&name, &hub_server.unwrap_or(server), &ca, &token);
            match output {
                Some(file) => {
                    std::fs::write(&file, kubeconfig)
                        .map_err(|e| anyhow::anyhow!("write {}: {e}", file.display()))?;
                    eprintln!("member {name} admitted; its agent's kubeconfig is in {}", file.display());
                }
                None => print!("{kubeconfig}"),
            }
        }
        MemberCommand::Remove { name, forfeit_earnings } => {
            membership::remove(&hub.client, &name, forfeit_earnings).await.map_err(anyhow::Error::from)?;
            eprintln!("member {name} removed");
        }
    }
    Ok(())
}
