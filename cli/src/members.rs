//! `pictor members`: the network's members at a glance.

use super::{CliError, Hub, OutputFormat, table};
use kube::api::{Api, ListParams};
use pictor_crds::contract::format_apt;
use pictor_crds::v1alpha1::{CONDITION_READY, GpuCluster};

fn apt(octas: i64) -> String {
    format_apt(octas.max(0) as u64)
}

/// Price per GPU-hour of `model` at `member`, if it offers it.
fn price(member: &GpuCluster, model: &str) -> Option<i64> {
    member.spec.price_per_gpu_hour.get(model).copied().or(member.spec.default_price_per_gpu_hour)
}

/// The members table: one row per member and GPU model (member columns only on its first row),
/// so prices and free GPUs line up by model.
pub fn members_table(members: &[GpuCluster]) -> Vec<String> {
    let mut rows = Vec::new();
    let mut sorted: Vec<&GpuCluster> = members.iter().collect();
    sorted.sort_by_key(|m| m.metadata.name.clone());
    for member in sorted {
        let status = member.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_READY)
            .map_or("Unknown".to_string(), |c| c.status.clone());
        let reputation = status.reputation.unwrap_or_default();
        let earnings = status.earnings.unwrap_or_default();
        let tier = serde_json::to_value(member.spec.tier).ok().and_then(|v| v.as_str().map(String::from));
        let mut first =
            vec![member.metadata.name.clone().unwrap_or_default(), tier.unwrap_or_default(), ready];
        let summary = vec![
            format!(
                "{} ok, {} failed, {} mismatched",
                reputation.units_succeeded, reputation.units_failed, reputation.verification_mismatches
            ),
            format!("{} / {}", apt(earnings.pending_octas), apt(earnings.paid_octas)),
        ];
        let pools = status.inventory.map(|i| i.pools).unwrap_or_default();
        if pools.is_empty() {
            first.extend(["-".to_string(), "0/0".to_string(), "-".to_string()]);
            first.extend(summary);
            rows.push(first);
            continue;
        }
        for (i, pool) in pools.iter().enumerate() {
            let mut row = if i == 0 { first.clone() } else { vec![String::new(); 3] };
            row.push(pool.model.clone());
            row.push(format!("{}/{}", pool.free, pool.total));
            row.push(price(member, &pool.model).map_or("not offered".into(), apt));
            if i == 0 {
                row.extend(summary.clone());
            } else {
                row.extend([String::new(), String::new()]);
            }
            rows.push(row);
        }
    }
    table::render(
        &[
            "NAME",
            "TIER",
            "READY",
            "GPU MODEL",
            "FREE/TOTAL",
            "PRICE/GPU-HOUR",
            "REPUTATION",
            "EARNINGS PENDING / PAID",
        ],
        &rows,
    )
}

pub(super) async fn run(hub: &Hub, output: OutputFormat) -> Result<(), CliError> {
    let members = Api::<GpuCluster>::all(hub.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(super::hub("list GpuClusters"))?
        .items;
    match output {
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&members).map_err(anyhow::Error::from)?)
        }
        OutputFormat::Table if members.is_empty() => {
            eprintln!("no members yet: admit one with `pictor member add`")
        }
        OutputFormat::Table => members_table(&members).iter().for_each(|l| println!("{l}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_row_per_model_with_its_price_and_the_members_record_once() {
        let member: GpuCluster = serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "GpuCluster",
            "metadata": {"name": "member-a"},
            "spec": {"tier": "community", "payoutAddress": "0xfeed",
                     "pricePerGpuHour": {"NVIDIA-H100-80GB-HBM3": 90_000_000}},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "Heartbeat", "message": "",
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                "inventory": {"nodes": 3, "totalGpus": 17, "freeGpus": 10, "pools": [
                    {"vendor": "nvidia", "model": "NVIDIA-H100-80GB-HBM3", "memoryMib": 81559, "nodes": 2, "total": 16, "free": 9},
                    {"vendor": "nvidia", "model": "NVIDIA-GeForce-RTX-4090", "memoryMib": 24564, "nodes": 1, "total": 1, "free": 1}]},
                "reputation": {"unitsSucceeded": 12, "unitsFailed": 1, "verificationMismatches": 0},
                "earnings": {"pendingOctas": 25_000_000, "paidOctas": 100_000_000}
            }
        }))
        .unwrap();
        let bare: GpuCluster = serde_json::from_value(json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "GpuCluster",
            "metadata": {"name": "member-b"}, "spec": {"tier": "partner", "payoutAddress": "0x1"}
        }))
        .unwrap();
        let lines = members_table(&[bare, member]);
        assert_eq!(
            lines,
            vec![
                "NAME      TIER       READY    GPU MODEL                FREE/TOTAL  PRICE/GPU-HOUR  REPUTATION                     EARNINGS PENDING / PAID",
                "member-a  community  True     NVIDIA-H100-80GB-HBM3    9/16        0.9 APT         12 ok, 1 failed, 0 mismatched  0.25 APT / 1 APT",
                "                              NVIDIA-GeForce-RTX-4090  1/1         not offered",
                "member-b  partner    Unknown  -                        0/0         -               0 ok, 0 failed, 0 mismatched   0 APT / 0 APT",
            ]
        );
    }
}
