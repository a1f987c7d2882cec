//! The Grafana dashboard the `pictor` chart ships names only series some component exports, so
//! a renamed or removed metric fails here instead of leaving an empty panel. The names come from
//! the components' own registrations (a family with no samples yet is still known).

use std::collections::BTreeSet;
use std::path::Path;

/// Series of the billing controller the dashboard's settlement panels use.
const BILLING: &[&str] = &["pictor_settlements_total", "pictor_settlement_octas_total"];

fn exported_series() -> BTreeSet<String> {
    let mut series = BTreeSet::new();
    series.extend(pictor_operator::metrics::OperatorMetrics::new().series().iter().cloned());
    series.extend(pictor_agent::metrics::AgentMetrics::new().series().iter().cloned());
    series.extend(pictor_scheduler::metrics::Metrics::default().series().iter().cloned());
    series.extend(pictor_device_plugins::metrics::DeviceMetrics::new().series().iter().cloned());
    series.extend(pictor_billing::metrics::BillingMetrics::new().series().iter().cloned());
    series
}

/// Every PromQL expression of the dashboard's panels (rows included), with the panel's title.
fn expressions(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dashboard];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(targets)) = map.get("targets") {
                    let title = map.get("title").and_then(|t| t.as_str()).unwrap_or_default();
                    for target in targets {
                        if let Some(expr) = target.get("expr").and_then(|e| e.as_str()) {
                            out.push((title.to_string(), expr.to_string()));
                        }
                    }
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out
}

/// The metric names in a PromQL expression: identifiers starting with `pictor_`, outside quoted
/// strings (label values) and `[...]` ranges.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.chars().peekable();
    let mut word = String::new();
    let mut flush = |word: &mut String| {
        if word.starts_with("pictor_") {
            names.insert(word.clone());
        }
        word.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                flush(&mut word);
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == ':' => word.push(c),
            _ => flush(&mut word),
        }
    }
    flush(&mut word);
    names
}

#[test]
fn names_are_read_from_promql_without_label_values() {
    let names = metric_names(
        r#"sum by (le) (rate(pictor_a_bucket{x="pictor_not_a_metric"}[5m])) / on() pictor_b_total"#,
    );
    assert_eq!(names, BTreeSet::from(["pictor_a_bucket".to_string(), "pictor_b_total".to_string()]));
}

#[test]
fn every_dashboard_expression_names_only_exported_series() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/pictor/dashboards/pictor.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("the dashboard is JSON");
    let exported = exported_series();
    let known = exported.clone();
    let exprs = expressions(&dashboard);
    assert!(exprs.len() >= 10, "the dashboard has its panels: {exprs:?}");
    let mut used = BTreeSet::new();
    for (title, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "panel {title:?} queries no Pictor metric: {expr}");
        for name in names {
            assert!(
                known.contains(&name),
                "panel {title:?} queries {name}, which no component exports (exported: {exported:?})"
            );
            used.insert(name);
        }
    }
    for billing in BILLING {
        assert!(used.contains(*billing), "the settlement panels use {billing}");
    }
    for area in [
        "pictor_render_job_frames",
        "pictor_work_units",
        "pictor_operator_reconcile_errors_total",
        "pictor_placement_latency_seconds_bucket",
        "pictor_members",
    ] {
        assert!(used.contains(area), "the dashboard shows {area}");
    }
}
