//! pictor-billing: turns accrued WorkUnits into Settlements and pays each on Aptos exactly once
//! (DESIGN.md, "Billing and settlement on Aptos").
//!
//! - [`ledger`]: what each provider is owed and which Settlements to make (pure).
//! - [`audit`]: whether a Settlement matches the hub's record, before it is signed (pure).
//! - [`queue`]: which Settlement a pass takes next, and what one's failure holds up (pure).
//! - [`settle`]: the next step of one Settlement given what the chain says (pure).
//! - [`treasury`]: the signing key, from a Secret.
//! - [`chain`]: the Aptos node, through aptos-sdk.
//!
//! One payout is in flight at a time: the treasury has one sequence of sequence numbers, and
//! a settlement is signed only when no other is Submitted and unsettled. One the treasury cannot
//! cover waits, Pending, while the others are tried. Run one replica: two controllers with
//! different views could batch the same unit twice.

pub mod audit;
pub mod chain;
pub mod crash;
#[cfg(test)]
mod fixtures;
pub mod ledger;
pub mod metrics;
pub mod queue;
pub mod settle;
pub mod treasury;

use base64::Engine;
use chain::Refusal;
use chain::{AptosChain, ChainError, LedgerView};
use crash::CrashPoint;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use ledger::BatchPolicy;
use pictor_crds::contract::{finalizers, format_apt, labels};
use pictor_crds::v1alpha1::{
    CONDITION_READY, Earnings, GpuCluster, Observation, Settlement, SettlementPhase, WorkUnit, set_condition,
};
use pictor_telemetry::watch::{Skipped, watch_objects};
use queue::Reach;
use settle::{Evidence, Lookup, NODE_UNREACHABLE, Signed, Step, TREASURY_EMPTY};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use treasury::{Gas, Treasury};

/// Field manager of what billing writes.
pub const FIELD_MANAGER: &str = "pictor-billing";

/// Reason when the API server refuses a Settlement billing made.
pub const SETTLEMENT_REFUSED: &str = "SettlementRefused";

/// Settings of the billing controller.
#[derive(Clone, Debug)]
pub struct BillingSettings {
    /// Namespace the Settlements live in.
    pub namespace: String,
    /// When to make a Settlement.
    pub batch: BatchPolicy,
    /// Seconds a signed payout stays valid (chain time).
    pub transaction_ttl_seconds: u64,
    /// Gas of payouts.
    pub gas: Gas,
    /// The chain billing pays on (`--chain-id`): a node serving another is not used, and a
    /// transaction recorded for another chain is signed again only for this one. `None`: the
    /// node's.
    pub chain_id: Option<u8>,
    /// Crash tests only: exit at this step.
    pub crash: Option<CrashPoint>,
}

/// Why a billing pass stopped; it is retried with backoff, and the settlement concerned carries
/// the reason as its Ready condition.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// The node was unreachable or refused a request.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Signing failed.
    #[error(transparent)]
    Treasury(#[from] treasury::TreasuryError),
    /// The treasury cannot cover the payout and its gas.
    #[error(
        "the treasury {address} holds {have} but the payout needs {need} including gas: fund the treasury account"
    )]
    TreasuryShort { address: String, need: String, have: String },
    /// A hub call failed.
    #[error("{what}: {source}")]
    Hub { what: String, source: kube::Error },
    /// Another writer changed the settlement first; it is read again.
    #[error("settlement {0} changed meanwhile; reading it again")]
    Conflict(String),
    /// The sequence number read was used already: signing with it made the very transaction
    /// another settlement recorded. Read again.
    #[error(
        "settlement {settlement}: sequence number {sequence_number} from the node makes the transaction settlement {other} recorded; reading the treasury again"
    )]
    StaleSequenceNumber { settlement: String, other: String, sequence_number: u64 },
    /// The node serves another chain than `--chain-id`.
    #[error("{0}")]
    WrongChain(String),
    /// The settlement waits for an operator (see the message).
    #[error("{message}")]
    Hold { reason: &'static str, message: String },
}

impl BillingError {
    /// Condition reason, Event reason and metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            BillingError::Chain(ChainError::Unreachable { .. }) => NODE_UNREACHABLE,
            BillingError::Chain(ChainError::RateLimited { .. }) => "NodeRateLimited",
            BillingError::Chain(ChainError::Busy { .. }) => "NodeBusy",
            BillingError::Chain(ChainError::Refused { refusal, .. }) => match refusal {
                Refusal::FeeUnaffordable => TREASURY_EMPTY,
                Refusal::BadChainId => settle::CHAIN_CHANGED,
                Refusal::KeyRejected => "TreasuryKeyRejected",
                Refusal::GasOutOfBounds => "GasSettingsRejected",
                _ => "NodeRefused",
            },
            BillingError::Chain(ChainError::Unexpected { .. }) => "NodeAnswerUnexpected",
            BillingError::Treasury(_) => "SigningFailed",
            BillingError::TreasuryShort { .. } => TREASURY_EMPTY,
            BillingError::Hub { .. } => "HubCallFailed",
            BillingError::Conflict(_) => "Conflict",
            BillingError::WrongChain(_) => "WrongChain",
            BillingError::StaleSequenceNumber { .. } => "StaleSequenceNumber",
            BillingError::Hold { reason, .. } => reason,
        }
    }

    /// Whether the settlement that met this error holds up the others.
    pub fn reach(&self) -> Reach {
        match self {
            // Nothing was signed for it; a smaller payout may still be covered.
            BillingError::TreasuryShort { .. } => Reach::Settlement,
            // A hold is a payout recorded on another chain than the node serves: nothing more is
            // signed there until an operator names the chain.
            _ => Reach::Pass,
        }
    }

    /// The least time to wait before the next pass: what a rate-limiting gateway asks for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            BillingError::Chain(ChainError::RateLimited { retry_after, .. }) => *retry_after,
            _ => None,
        }
    }
}

fn hub(what: impl Into<String>) -> impl FnOnce(kube::Error) -> BillingError {
    let what = what.into();
    move |source| match source {
        kube::Error::Api(ref status) if status.code == 409 => BillingError::Conflict(what),
        source => BillingError::Hub { what, source },
    }
}

/// The billing controller.
pub struct Billing {
    client: kube::Client,
    chain: AptosChain,
    treasury: Treasury,
    settings: BillingSettings,
    recorder: Recorder,
    units: Store<WorkUnit>,
    settlements: Store<Settlement>,
    clusters: Store<GpuCluster>,
    wake: Arc<Notify>,
    metrics: Arc<metrics::BillingMetrics>,
    /// Settlements as this process last wrote them, newer than the watch may show yet.
    written: HashMap<String, Settlement>,
    /// Earnings as last written, by provider.
    earnings: HashMap<String, Earnings>,
    /// Why each provider is withheld, as last reported, by provider and reason.
    withheld: HashMap<(String, &'static str), String>,
}

/// What advancing one settlement came to.
enum Progress {
    /// Confirmed or Failed.
    Settled,
    /// Its transaction is in flight.
    InFlight,
}

fn rv(s: &Settlement) -> u64 {
    s.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn phase(s: &Settlement) -> SettlementPhase {
    s.status.as_ref().and_then(|st| st.phase).unwrap_or_default()
}

fn now() -> Time {
    Time(Timestamp::now())
}

impl Billing {
    /// Starts the watches and waits for their first lists.
    pub async fn start(
        client: kube::Client,
        chain: AptosChain,
        treasury: Treasury,
        settings: BillingSettings,
        metrics: Arc<metrics::BillingMetrics>,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        let (units, unit_writer) = reflector::store::<WorkUnit>();
        let (settlements, settlement_writer) = reflector::store::<Settlement>();
        let (clusters, cluster_writer) = reflector::store::<GpuCluster>();
        let accrued = watcher::Config::default().labels(labels::BILLING);
        let skipping = |kind: &'static str| -> Skipped {
            let metrics = metrics.clone();
            Arc::new(move |name: &str, why: &str| {
                tracing::warn!(kind, object = name, error = why, "skipped an object billing cannot decode");
                metrics
                    .errors
                    .get_or_create(&metrics::ReasonLabels { reason: "UndecodableObject".into() })
                    .inc();
            })
        };
        let units_watch = watch_objects::<WorkUnit>(client.clone(), None, accrued, skipping("WorkUnit"));
        spawn_reflector(unit_writer, units_watch, wake.clone());
        let settlements_watch = watch_objects::<Settlement>(
            client.clone(),
            Some(&settings.namespace),
            watcher::Config::default(),
            skipping("Settlement"),
        );
        spawn_reflector(settlement_writer, settlements_watch, wake.clone());
        let clusters_watch = watch_objects::<GpuCluster>(
            client.clone(),
            None,
            watcher::Config::default(),
            skipping("GpuCluster"),
        );
        spawn_reflector(cluster_writer, clusters_watch, wake.clone());
        let _ = tokio::join!(
            units.wait_until_ready(),
            settlements.wait_until_ready(),
            clusters.wait_until_ready()
        );
        let recorder = Recorder::new(
            client.clone(),
            Reporter { controller: FIELD_MANAGER.into(), instance: Some(instance()) },
        );
        tracing::info!(treasury = %treasury.address(), node = %chain.url(), namespace = %settings.namespace, "billing ready");
        Billing {
            client,
            chain,
            treasury,
            settings,
            recorder,
            units,
            settlements,
            clusters,
            wake,
            metrics,
            written: HashMap::new(),
            earnings: HashMap::new(),
            withheld: HashMap::new(),
        }
    }

    /// Runs passes until the process is told to stop: on every watch event, and periodically
    /// for dispute windows that close and transactions in flight.
    pub async fn run(mut self) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let delay = match self.pass().await {
                Ok(delay) => {
                    backoff = Duration::from_millis(500);
                    delay
                }
                Err(e) => {
                    self.count_error(e.reason());
                    tracing::warn!(reason = e.reason(), error = %e, retry_in = ?backoff, "billing pass failed");
                    let delay = backoff.max(e.retry_after().unwrap_or_default());
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    delay
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(delay) => {}
                _ = tokio::signal::ctrl_c() => return,
            }
        }
    }

    /// Settlements as the watch shows them, each replaced by this process's own later write.
    fn settlements_now(&mut self) -> Vec<Settlement> {
        let mut by_name: HashMap<String, Settlement> =
            self.settlements.state().iter().map(|s| (s.name_any(), s.as_ref().clone())).collect();
        self.written.retain(|name, mine| match by_name.get(name) {
            Some(seen) if rv(seen) >= rv(mine) => false,
            _ => {
                by_name.insert(name.clone(), mine.clone());
                true
            }
        });
        let mut all: Vec<Settlement> = by_name.into_values().collect();
        all.sort_by(|a, b| {
            let key = |s: &Settlement| (s.metadata.creation_timestamp.clone().map(|t| t.0), s.name_any());
            key(a).cmp(&key(b))
        });
        all
    }

    /// One pass: advance the payouts in flight, make new Settlements, record earnings, let
    /// paid units go. Returns when to look again.
    async fn pass(&mut self) -> Result<Duration, BillingError> {
        let settlements = self.settlements_now();
        for s in queue::pass_order(&settlements) {
            match self.advance(s.clone()).await {
                Ok(Progress::Settled) => {}
                Ok(Progress::InFlight) => return Ok(Duration::from_millis(200)),
                Err(BillingError::Conflict(what)) => {
                    tracing::debug!(%what, "conflict; reading again");
                    return Ok(Duration::from_millis(100));
                }
                Err(e @ BillingError::StaleSequenceNumber { .. }) => {
                    tracing::info!(error = %e, "stale sequence number; reading again");
                    return Ok(Duration::from_millis(200));
                }
                Err(e) => {
                    self.report(s, e.reason(), &e.to_string()).await;
                    if e.reach() == Reach::Pass {
                        return Err(e);
                    }
                    self.count_error(e.reason());
                    tracing::info!(settlement = %s.name_any(), reason = e.reason(), error = %e, "settlement waits; trying the others");
                }
            }
        }

        let settlements = self.settlements_now();
        let refs: Vec<&Settlement> = settlements.iter().collect();
        let units = self.units.state();
        let unit_refs: Vec<&WorkUnit> = units.iter().map(|u| u.as_ref()).collect();
        let ledger = ledger::ledger(&unit_refs, &refs);
        let clusters = self.clusters.state();
        let cluster_refs: Vec<&GpuCluster> = clusters.iter().map(|c| c.as_ref()).collect();
        let batches = ledger::batches(
            &ledger,
            &cluster_refs,
            &refs,
            &self.settings.batch,
            &self.settings.namespace,
            Timestamp::now(),
        );
        let mut created = false;
        // One Settlement the API server refuses must not keep the others from being made.
        for settlement in batches.create {
            match self.create(settlement).await {
                Ok(()) => created = true,
                Err(refused) => self.report_withheld(&refused).await,
            }
        }
        for withheld in &batches.withheld {
            self.report_withheld(withheld).await;
        }
        for (provider, account) in &ledger.providers {
            let labels = metrics::ProviderLabels { provider: provider.clone() };
            self.metrics.pending_octas.get_or_create(&labels).set(account.earnings.pending_octas);
            self.metrics.unmetered_units.get_or_create(&labels).set(account.unmetered.len() as i64);
            self.record_earnings(provider, &account.earnings).await?;
        }
        for unit in ledger::releasable(&unit_refs, &ledger) {
            self.release(unit).await?;
        }
        Ok(if created { Duration::ZERO } else { Duration::from_secs(2) })
    }

    fn count_error(&self, reason: &str) {
        self.metrics.errors.get_or_create(&metrics::ReasonLabels { reason: reason.into() }).inc();
    }

    /// Creates a Settlement; when the API server refuses it, says why, for its provider.
    async fn create(&mut self, settlement: Settlement) -> Result<(), ledger::Withheld> {
        let api: Api<Settlement> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        let name = settlement.name_any();
        match api
            .create(
                &PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() },
                &settlement,
            )
            .await
        {
            Ok(created) => {
                self.metrics.outcome("recorded");
                tracing::info!(settlement = %name, provider = %created.spec.provider, amount = %created.spec.amount, units = created.spec.unit_count, "settlement recorded");
                self.publish(
                    &created,
                    EventType::Normal,
                    "Recorded",
                    format!(
                        "{} owed to {} for {} verified units",
                        created.spec.amount, created.spec.provider, created.spec.unit_count
                    ),
                )
                .await;
                self.written.insert(name, created);
                Ok(())
            }
            // Made before by this controller (same units, same name).
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(source) => {
                self.count_error(SETTLEMENT_REFUSED);
                Err(ledger::Withheld {
                    provider: settlement.spec.provider.clone(),
                    reason: SETTLEMENT_REFUSED,
                    message: format!(
                        "settlement {name} ({} for {} units) could not be recorded: {source}; it is made again on the next pass",
                        settlement.spec.amount, settlement.spec.unit_count
                    ),
                })
            }
        }
    }

    /// Advances one settlement as far as it goes now.
    async fn advance(&mut self, mut s: Settlement) -> Result<Progress, BillingError> {
        for _ in 0..50 {
            let ledger_view = self.chain.ledger().await?;
            settle::check_chain(self.settings.chain_id, ledger_view.chain_id, self.chain.url())
                .map_err(BillingError::WrongChain)?;
            let status = s.status.clone().unwrap_or_default();
            let lookup = match (phase(&s), status.transaction_hash.as_deref()) {
                (SettlementPhase::Submitted, Some(hash)) => Some(self.chain.lookup(hash).await?),
                _ => None,
            };
            let signed = recorded_transaction(&s)?.map(|t| Signed {
                sequence_number: t.raw_txn.sequence_number,
                expires_at_seconds: t.raw_txn.expiration_timestamp_secs,
                chain_id: t.raw_txn.chain_id.id(),
            });
            let expected = self.settings.chain_id;
            let mut step = settle::next_step(&s, lookup.as_ref(), None, signed.as_ref(), expected);
            if step == Step::Prove
                && let Some(recorded) = &signed
            {
                // Not found by hash, perhaps by a lagging backend: decide from one view.
                let treasury = self.treasury.address();
                let view = self.chain.treasury_view(treasury).await?;
                let sent_at = if settle::needs_sent_at(&view, recorded) {
                    self.chain.sent_at(treasury, recorded.sequence_number).await?
                } else {
                    None
                };
                let evidence = Evidence { view, sent_at };
                step = settle::next_step(&s, lookup.as_ref(), Some(&evidence), signed.as_ref(), expected);
            }
            // Nothing is signed that the hub's own record does not back, whoever made it.
            if step == Step::Sign
                && let Err(mismatch) = self.audit(&s)
            {
                let message = format!(
                    "settlement does not match the hub's record: {mismatch}; it is never signed, and what is owed is settled anew"
                );
                self.count_error(audit::DOES_NOT_MATCH_LEDGER);
                self.fail(&s, audit::DOES_NOT_MATCH_LEDGER, message).await?;
                return Ok(Progress::Settled);
            }
            let payout = settle::payout_address(&s.spec.payout_address, &self.treasury.address());
            match step {
                Step::Done => return Ok(Progress::Settled),
                Step::Wait | Step::Prove => return Ok(Progress::InFlight),
                Step::Hold { reason, message } => return Err(BillingError::Hold { reason, message }),
                Step::Sign if payout.is_err() => {
                    let message = payout.err().unwrap_or_default();
                    self.fail(&s, settle::PAYOUT_REJECTED, message).await?;
                    return Ok(Progress::Settled);
                }
                Step::Sign => {
                    s = self.sign_and_record(&s, ledger_view).await?;
                    self.submit(&s).await?;
                    self.crash_at("submitted");
                }
                Step::Resubmit => {
                    self.submit(&s).await?;
                    self.crash_at("submitted");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Step::Confirm { version } => {
                    self.crash_at("confirming");
                    let body = serde_json::json!({"status": {
                        "phase": SettlementPhase::Confirmed,
                        "ledgerVersion": version,
                        "confirmedAt": now(),
                        "conditions": self.conditions(&s, true, "Confirmed", format!(
                            "{} paid to {} in transaction {} (ledger version {version})",
                            s.spec.amount, s.spec.payout_address, status.transaction_hash.clone().unwrap_or_default()
                        )),
                    }});
                    s = self.write_status(&s, body).await?;
                    self.metrics.outcome("confirmed");
                    self.metrics.octas_paid.inc_by(s.spec.amount_octas.max(0) as u64);
                    tracing::info!(settlement = %s.name_any(), provider = %s.spec.provider, amount = %s.spec.amount, version, "settlement confirmed");
                    self.publish(
                        &s,
                        EventType::Normal,
                        "Confirmed",
                        format!("{} paid to {} at ledger version {version}", s.spec.amount, s.spec.provider),
                    )
                    .await;
                    return Ok(Progress::Settled);
                }
                Step::SignAgain { reason, message } => {
                    let mut failed = status.failed_transactions.clone();
                    // A transaction that committed without paying is on chain for good.
                    if matches!(lookup, Some(Lookup::Committed { .. })) || reason == TREASURY_EMPTY {
                        failed.extend(status.transaction_hash.clone());
                    }
                    let body = serde_json::json!({"status": {
                        "phase": SettlementPhase::Pending,
                        "sequenceNumber": null, "transactionHash": null, "signedTransaction": null,
                        "expiresAtSeconds": null, "submittedAt": null,
                        "failedTransactions": failed,
                        "conditions": self.conditions(&s, false, reason, message.clone()),
                    }});
                    s = self.write_status(&s, body).await?;
                    self.metrics.outcome("signed_again");
                    tracing::warn!(settlement = %s.name_any(), reason, %message, "settlement signed again");
                    self.publish(&s, EventType::Warning, reason, message).await;
                }
                Step::Fail { reason, message } => {
                    self.fail(&s, reason, message).await?;
                    return Ok(Progress::Settled);
                }
            }
        }
        Ok(Progress::InFlight)
    }

    /// Checks a settlement against billing's watches of the units, settlements and members.
    fn audit(&mut self, s: &Settlement) -> Result<(), audit::Mismatch> {
        let units = self.units.state();
        let unit_refs: Vec<&WorkUnit> = units.iter().map(|u| u.as_ref()).collect();
        let clusters = self.clusters.state();
        let cluster_refs: Vec<&GpuCluster> = clusters.iter().map(|c| c.as_ref()).collect();
        let settlements = self.settlements_now();
        audit::check(s, &unit_refs, &settlements, &cluster_refs, Timestamp::now())
    }

    /// Ends a settlement as Failed: its units are settled again (once the reason clears).
    async fn fail(
        &mut self,
        s: &Settlement,
        reason: &'static str,
        message: String,
    ) -> Result<(), BillingError> {
        let body = serde_json::json!({"status": {
            "phase": SettlementPhase::Failed,
            "conditions": self.conditions(s, false, reason, message.clone()),
        }});
        let s = self.write_status(s, body).await?;
        self.metrics.outcome("failed");
        tracing::warn!(settlement = %s.name_any(), reason, %message, "settlement failed");
        self.publish(&s, EventType::Warning, reason, message).await;
        Ok(())
    }

    /// Signs the payout and records it on the Settlement, compare-and-swap, before anything is
    /// submitted.
    async fn sign_and_record(
        &mut self,
        s: &Settlement,
        ledger: LedgerView,
    ) -> Result<Settlement, BillingError> {
        let to = settle::payout_address(&s.spec.payout_address, &self.treasury.address())
            .map_err(treasury::TreasuryError::Sign)?;
        let amount = s.spec.amount_octas.max(0) as u64;
        let address = self.treasury.address();
        let have = self.chain.balance(address).await?;
        let need = amount.saturating_add(self.settings.gas.max_fee());
        if have < need {
            return Err(BillingError::TreasuryShort {
                address: address.to_string(),
                need: format_apt(need),
                have: format_apt(have),
            });
        }
        // Behind a load balancer one answer may come from a lagging backend, with a used
        // sequence number and an old clock (so a payout that expires at once): sign from the
        // freshest of a few views. A stale pick is still safe, only slower: the number is
        // refused as used, and the proof signs again.
        let mut view = self.chain.treasury_view(address).await?;
        for _ in 0..2 {
            let again = self.chain.treasury_view(address).await?;
            if (again.ledger_version, again.timestamp_seconds) > (view.ledger_version, view.timestamp_seconds)
            {
                view = again;
            }
        }
        settle::check_chain(self.settings.chain_id, view.chain_id, self.chain.url())
            .map_err(BillingError::WrongChain)?;
        let sequence_number = view.sequence_number;
        let ledger = LedgerView {
            chain_id: view.chain_id,
            now_seconds: ledger.now_seconds.max(view.timestamp_seconds),
        };
        let signed = self.treasury.sign_transfer(
            to,
            amount,
            sequence_number,
            ledger,
            self.settings.transaction_ttl_seconds,
            self.settings.gas,
        )?;
        self.crash_at("signed");
        let bytes = signed.to_bcs().map_err(|e| treasury::TreasuryError::Sign(e.to_string()))?;
        let hash = signed.hash().map_err(|e| treasury::TreasuryError::Sign(e.to_string()))?;
        let hash = hash.to_hex();
        let all = self.settlements_now();
        if let Some(other) = settle::hash_in_use(&hash, &s.name_any(), &all) {
            return Err(BillingError::StaleSequenceNumber {
                settlement: s.name_any(),
                other: other.to_string(),
                sequence_number,
            });
        }
        let expiry = ledger.now_seconds + self.settings.transaction_ttl_seconds;
        let body = serde_json::json!({"status": {
            "observedGeneration": s.metadata.generation,
            "phase": SettlementPhase::Submitted,
            "sequenceNumber": sequence_number,
            "transactionHash": hash,
            "signedTransaction": base64::engine::general_purpose::STANDARD.encode(&bytes),
            "expiresAtSeconds": expiry,
            "submittedAt": now(),
            "conditions": self.conditions(s, false, "Submitted", format!(
                "transaction {hash} pays {} to {}; sequence number {sequence_number}, valid until {expiry}",
                s.spec.amount, s.spec.payout_address
            )),
        }});
        let recorded = self.write_status(s, body).await?;
        tracing::info!(settlement = %s.name_any(), transaction = %hash, sequence_number, "payout signed and recorded");
        self.crash_at("recorded");
        Ok(recorded)
    }

    /// Submits the recorded transaction. A refusal that only says the transaction cannot be
    /// taken now (its sequence number is used, this backend's clock says it expired, another
    /// transaction with that number waits) is no verdict: the lookup by hash and the treasury's
    /// view decide next.
    async fn submit(&self, s: &Settlement) -> Result<(), BillingError> {
        let Some(signed) = recorded_transaction(s)? else {
            return Ok(());
        };
        match self.chain.submit(&signed).await {
            Ok(()) => Ok(()),
            Err(ChainError::Refused {
                refusal:
                    Refusal::SequenceNumberTooOld
                    | Refusal::SequenceNumberTooNew
                    | Refusal::Expired
                    | Refusal::InvalidUpdate,
                ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A settlement's conditions with Ready replaced.
    fn conditions(&self, s: &Settlement, ready: bool, reason: &str, message: String) -> serde_json::Value {
        let mut conditions = s.status.as_ref().map(|st| st.conditions.clone()).unwrap_or_default();
        let observed = Observation { type_: CONDITION_READY, status: ready, reason, message };
        set_condition(&mut conditions, observed, s.metadata.generation, now());
        serde_json::json!(conditions)
    }

    /// Writes a settlement's status only if nobody changed it since `s` was read: a merge patch
    /// carrying the resourceVersion is a compare-and-swap (a 409 otherwise).
    async fn write_status(
        &mut self,
        s: &Settlement,
        mut body: serde_json::Value,
    ) -> Result<Settlement, BillingError> {
        body["metadata"] = serde_json::json!({"resourceVersion": s.metadata.resource_version});
        let api: Api<Settlement> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        let name = s.name_any();
        let written = api
            .patch_status(&name, &params, &Patch::Merge(&body))
            .await
            .map_err(hub(format!("write the status of settlement {name}")))?;
        self.written.insert(name, written.clone());
        Ok(written)
    }

    /// Puts an error on the settlement's Ready condition and in an Event, once per change.
    async fn report(&mut self, s: &Settlement, reason: &str, message: &str) {
        let current =
            s.status.as_ref().and_then(|st| st.conditions.iter().find(|c| c.type_ == CONDITION_READY));
        if current.is_some_and(|c| c.reason == reason && c.message == message) {
            return;
        }
        let body = serde_json::json!({"status": {"conditions": self.conditions(s, false, reason, message.to_string())}});
        let api: Api<Settlement> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        match api.patch_status(&s.name_any(), &params, &Patch::Merge(&body)).await {
            Ok(written) => {
                self.written.insert(s.name_any(), written);
            }
            Err(e) => {
                tracing::warn!(settlement = %s.name_any(), error = %e, "could not record the settlement's condition")
            }
        }
        self.publish(s, EventType::Warning, reason, message.to_string()).await;
    }

    async fn report_withheld(&mut self, withheld: &ledger::Withheld) {
        let key = (withheld.provider.clone(), withheld.reason);
        if self.withheld.get(&key) == Some(&withheld.message) {
            return;
        }
        tracing::warn!(provider = %withheld.provider, reason = withheld.reason, message = %withheld.message, "provider's payment withheld");
        self.withheld.insert(key, withheld.message.clone());
        let cluster = self.clusters.get(&ObjectRef::new(&withheld.provider));
        if let Some(cluster) = cluster {
            let event = Event {
                type_: EventType::Warning,
                reason: withheld.reason.into(),
                note: Some(withheld.message.clone()),
                action: "Settle".into(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &cluster.object_ref(&())).await {
                tracing::warn!(error = %e, "event not recorded");
            }
        }
    }

    /// Writes a provider's earnings into its GpuCluster status when they changed.
    async fn record_earnings(&mut self, provider: &str, earnings: &Earnings) -> Result<(), BillingError> {
        if self.earnings.get(provider) == Some(earnings) {
            return Ok(());
        }
        let Some(cluster) = self.clusters.get(&ObjectRef::new(provider)) else {
            return Ok(());
        };
        let body = serde_json::json!({
            "apiVersion": "pictor.network/v1alpha1", "kind": "GpuCluster",
            "status": {"earnings": earnings},
        });
        let api: Api<GpuCluster> = Api::all(self.client.clone());
        api.patch_status(
            &cluster.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(hub(format!("record the earnings of {provider}")))?;
        self.earnings.insert(provider.to_string(), earnings.clone());
        Ok(())
    }

    /// Removes billing's finalizer from a deleted unit that is paid for (or owed nothing).
    async fn release(&self, unit: &WorkUnit) -> Result<(), BillingError> {
        let finalizers: Vec<String> = unit
            .metadata
            .finalizers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != finalizers::SETTLEMENT)
            .collect();
        let body = serde_json::json!({"metadata": {
            "finalizers": finalizers, "resourceVersion": unit.metadata.resource_version,
        }});
        let api: Api<WorkUnit> = Api::namespaced(self.client.clone(), &unit.namespace().unwrap_or_default());
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        match api.patch(&unit.name_any(), &params, &Patch::Merge(&body)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(source) => {
                Err(BillingError::Hub { what: format!("release unit {}", unit.name_any()), source })
            }
        }
    }

    async fn publish(&self, s: &Settlement, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Settle".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &s.object_ref(&())).await {
            tracing::warn!(error = %e, "event not recorded");
        }
    }

    fn crash_at(&self, step: &str) {
        if let Some(crash) = &self.settings.crash {
            crash.reached(step);
        }
    }
}

/// The signed transaction a settlement recorded, if any.
fn recorded_transaction(
    s: &Settlement,
) -> Result<Option<aptos_sdk::transaction::SignedTransaction>, BillingError> {
    let Some(encoded) = s.status.as_ref().and_then(|st| st.signed_transaction.as_deref()) else {
        return Ok(None);
    };
    let unreadable = |e: String| {
        treasury::TreasuryError::Sign(format!(
            "the transaction recorded on settlement {} is unreadable: {e}",
            s.name_any()
        ))
    };
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|e| unreadable(e.to_string()))?;
    let signed = aptos_sdk::aptos_bcs::from_bytes(&bytes).map_err(|e| unreadable(e.to_string()))?;
    Ok(Some(signed))
}

/// This process, as Events and the leader Lease name it (the API server requires a reporting
/// instance): the pod, else the host, with the process id, so a restarted process is a new
/// holder.
pub fn instance() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| FIELD_MANAGER.to_string());
    format!("{host}-{}", std::process::id())
}

/// Keeps `writer`'s store fed by `watch` (an object that does not decode is skipped, not fatal)
/// and wakes the billing loop on every change.
fn spawn_reflector<K>(
    writer: reflector::store::Writer<K>,
    watch: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    wake: Arc<Notify>,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    tokio::spawn(reflector::reflector(writer, watch).default_backoff().touched_objects().for_each(
        move |_| {
            wake.notify_one();
            futures::future::ready(())
        },
    ));
}
