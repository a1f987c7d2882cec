//! What `pictor-billing` exports on `/metrics`: settlements by outcome, octas paid, failures by
//! reason, what providers are owed, and their units the hub has not metered.

use pictor_telemetry::NamedRegistry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

/// Outcome of a settlement step.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `recorded`, `confirmed`, `signed_again`, `failed`.
    pub outcome: String,
}

/// Why a billing pass stopped.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The condition reason, e.g. `NodeUnreachable`.
    pub reason: String,
}

/// A provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// The provider's GpuCluster.
    pub provider: String,
}

/// Every family of the billing controller.
#[derive(Debug)]
pub struct BillingMetrics {
    registry: Arc<Registry>,
    series: BTreeSet<String>,
    /// Settlements by outcome.
    pub settlements: Family<OutcomeLabels, Counter>,
    /// Octas paid in confirmed settlements.
    pub octas_paid: Counter,
    /// Billing failures, by reason: passes that stopped, settlements that wait or were refused.
    pub errors: Family<ReasonLabels, Counter>,
    /// Octas each provider is owed and not yet paid (accrued, held or in flight).
    pub pending_octas: Family<ProviderLabels, Gauge<i64, AtomicI64>>,
    /// Accrued or held units of each provider the hub has not metered, so not paid.
    pub unmetered_units: Family<ProviderLabels, Gauge<i64, AtomicI64>>,
}

impl Default for BillingMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl BillingMetrics {
    /// Registers every family under the `pictor_` prefix.
    pub fn new() -> Self {
        let mut registry = NamedRegistry::with_prefix("pictor");
        let settlements = Family::<OutcomeLabels, Counter>::default();
        registry.register("settlements", "Settlements by outcome", settlements.clone());
        let octas_paid = Counter::default();
        registry.register("settlement_octas", "Octas paid in confirmed settlements", octas_paid.clone());
        let errors = Family::<ReasonLabels, Counter>::default();
        registry.register("billing_errors", "Billing failures, by reason", errors.clone());
        let pending_octas = Family::<ProviderLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "provider_pending_octas",
            "Octas a provider is owed and not yet paid",
            pending_octas.clone(),
        );
        let unmetered_units = Family::<ProviderLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "provider_unmetered_units",
            "Accrued or held units of a provider the hub has not metered, so not paid",
            unmetered_units.clone(),
        );
        let (registry, series) = registry.finish();
        Self { registry, series, settlements, octas_paid, errors, pending_octas, unmetered_units }
    }

    /// Counts a settlement outcome.
    pub fn outcome(&self, outcome: &str) {
        self.settlements.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
    }

    /// The name of every series `/metrics` may export.
    pub fn series(&self) -> &BTreeSet<String> {
        &self.series
    }

    /// The registry `/metrics` serves.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }
}
