//! `pictor earnings`: what each provider was paid and is owed, from its GpuCluster's
//! `status.earnings` and the Settlements the billing controller records on the hub.

use super::{CliError, Hub, OutputFormat, table};
use clap::Args;
use kube::api::{Api, ListParams};
use pictor_crds::contract::format_apt;
use pictor_crds::v1alpha1::{GpuCluster, Settlement};
use serde::Serialize;

#[derive(Args)]
pub(super) struct EarningsArgs {
    /// Only this provider (member name).
    provider: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: OutputFormat,
}

/// One payout as the table and JSON show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Payout {
    /// Settlement name.
    pub name: String,
    /// Octas paid.
    pub amount_octas: i64,
    /// Units it covers.
    pub units: i64,
    /// Pending, Submitted, Confirmed or Failed.
    pub phase: String,
    /// Aptos transaction hash, once signed.
    pub transaction_hash: Option<String>,
    /// When it was confirmed, else submitted, else recorded.
    pub when: Option<String>,
}

/// A provider's earnings.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderEarnings {
    /// Member name.
    pub provider: String,
    /// Octas paid in confirmed settlements (the GpuCluster's count).
    pub paid_octas: i64,
    /// Octas accrued and not yet paid.
    pub pending_octas: i64,
    /// Its settlements, oldest first.
    pub settlements: Vec<Payout>,
}

fn payout(settlement: &Settlement) -> Payout {
    let status = settlement.status.clone().unwrap_or_default();
    let when = status
        .confirmed_at
        .or(status.submitted_at)
        .or(settlement.metadata.creation_timestamp.clone())
        .map(|t| t.0.to_string());
    Payout {
        name: settlement.metadata.name.clone().unwrap_or_default(),
        amount_octas: settlement.spec.amount_octas,
        units: settlement.spec.unit_count,
        phase: format!("{:?}", status.phase.unwrap_or_default()),
        transaction_hash: status.transaction_hash,
        when,
    }
}

/// Earnings of every provider that has a GpuCluster or a Settlement (or only of `provider`).
pub fn earnings(
    members: &[GpuCluster],
    settlements: &[Settlement],
    provider: Option<&str>,
) -> Vec<ProviderEarnings> {
    let mut names: Vec<String> = members
        .iter()
        .filter_map(|m| m.metadata.name.clone())
        .chain(settlements.iter().map(|s| s.spec.provider.clone()))
        .filter(|n| provider.is_none_or(|p| p == n))
        .collect();
    names.sort();
    names.dedup();
    if let Some(p) = provider
        && names.is_empty()
    {
        names.push(p.to_string());
    }
    names
        .into_iter()
        .map(|name| {
            let recorded = members
                .iter()
                .find(|m| m.metadata.name.as_deref() == Some(name.as_str()))
                .and_then(|m| m.status.as_ref()?.earnings.clone())
                .unwrap_or_default();
            let mut own: Vec<&Settlement> = settlements.iter().filter(|s| s.spec.provider == name).collect();
            own.sort_by_key(|s| {
                (s.metadata.creation_timestamp.clone().map(|t| t.0), s.metadata.name.clone())
            });
            ProviderEarnings {
                provider: name,
                paid_octas: recorded.paid_octas,
                pending_octas: recorded.pending_octas,
                settlements: own.into_iter().map(payout).collect(),
            }
        })
        .collect()
}

fn apt(octas: i64) -> String {
    format_apt(octas.max(0) as u64)
}

/// The earnings as text: a summary table, then each provider's settlements.
pub fn earnings_lines(all: &[ProviderEarnings]) -> Vec<String> {
    let summary: Vec<Vec<String>> = all
        .iter()
        .map(|p| {
            vec![p.provider.clone(), apt(p.paid_octas), apt(p.pending_octas), p.settlements.len().to_string()]
        })
        .collect();
    let mut lines = table::render(&["PROVIDER", "PAID", "PENDING", "SETTLEMENTS"], &summary);
    for provider in all.iter().filter(|p| !p.settlements.is_empty()) {
        lines.push(String::new());
        lines.push(format!("settlements of {}:", provider.provider));
        let rows: Vec<Vec<String>> = provider
            .settlements
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    apt(s.amount_octas),
                    s.units.to_string(),
                    s.phase.clone(),
                    s.transaction_hash.clone().unwrap_or_else(|| "-".into()),
                    s.when.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        lines
            .extend(table::render(&["SETTLEMENT", "AMOUNT", "UNITS", "PHASE", "TRANSACTION", "WHEN"], &rows));
    }
    lines
}

pub(super) async fn run(hub: &Hub, args: EarningsArgs) -> Result<(), CliError> {
    let members = Api::<GpuCluster>::all(hub.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(super::hub("list GpuClusters"))?
        .items;
    let settlements = match Api::<Settlement>::all(hub.client.clone()).list(&ListParams::default()).await {
        Ok(list) => list.items,
        // Settlements are read where the hub allows it; earnings on GpuClusters still show.
        Err(kube::Error::Api(s)) if s.code == 403 || s.code == 404 => {
            eprintln!("note: settlements not readable ({}); showing GpuCluster earnings only", s.message);
            Vec::new()
        }
        Err(e) => return Err(CliError::Hub { what: "list Settlements".into(), source: e }),
    };
    let all = earnings(&members, &settlements, args.provider.as_deref());
    match args.output {
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&all).map_err(anyhow::Error::from)?)
        }
        OutputFormat::Table => earnings_lines(&all).iter().for_each(|l| println!("{l}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settlement(name: &str, provider: &str, octas: i64, status: serde_json::Value) -> Settlement {
        serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "Settlement",
            "metadata": {"name": name, "namespace": "pictor-system", "creationTimestamp": format!("2026-01-0{}T00:00:00Z", &name[1..])},
            "spec": {"provider": provider, "payoutAddress": "0xfeed", "amountOctas": octas, "amount": "", "unitCount": 1,
                     "units": [{"namespace": "pictor-member-a", "name": "u", "uid": "1", "amountOctas": octas}]},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn each_provider_shows_paid_pending_and_its_settlements_in_order() {
        let member: GpuCluster = serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "GpuCluster", "metadata": {"name": "a"},
            "spec": {"tier": "community", "payoutAddress": "0xfeed"},
            "status": {"earnings": {"pendingOctas": 5, "paidOctas": 150_000_000}}
        }))
        .unwrap();
        let settlements = [
            settlement(
                "s2",
                "a",
                50_000_000,
                json!({"phase": "Submitted", "transactionHash": "0xabc",
                                                    "submittedAt": "2026-01-02T10:00:00Z"}),
            ),
            settlement(
                "s1",
                "a",
                100_000_000,
                json!({"phase": "Confirmed", "transactionHash": "0x123",
                                                     "confirmedAt": "2026-01-01T12:00:00Z"}),
            ),
            settlement("s3", "b", 7, json!({})),
        ];
        let all = earnings(std::slice::from_ref(&member), &settlements, None);
        assert_eq!(all.iter().map(|p| p.provider.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let lines = earnings_lines(&all);
        assert_eq!(
            lines,
            vec![
                "PROVIDER  PAID     PENDING         SETTLEMENTS",
                "a         1.5 APT  0.00000005 APT  2",
                "b         0 APT    0 APT           1",
                "",
                "settlements of a:",
                "SETTLEMENT  AMOUNT   UNITS  PHASE      TRANSACTION  WHEN",
                "s1          1 APT    1      Confirmed  0x123        2026-01-01T12:00:00Z",
                "s2          0.5 APT  1      Submitted  0xabc        2026-01-02T10:00:00Z",
                "",
                "settlements of b:",
                "SETTLEMENT  AMOUNT          UNITS  PHASE    TRANSACTION  WHEN",
                "s3          0.00000007 APT  1      Pending  -            2026-01-03T00:00:00Z",
            ]
        );
        let only_b = earnings(&[member], &settlements, Some("b"));
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].settlements[0].name, "s3");
    }
}
