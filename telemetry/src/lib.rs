//! What every long-running Pictor process serves to the people who run it (DESIGN.md, "Crates":
//! telemetry — metrics, probes, logging): `/metrics` (the
//! OpenMetrics text of one prometheus-client [`Registry`]), `/healthz`, `/readyz`, and the
//! `--metrics-addr` flag that says where. The operator, the agent, the scheduler and the device
//! plugins all serve them through [`serve`]; each keeps its own metric families next to its code.
//!
//! Also what every Pictor binary does first, so no two start the same way by copy: its logs
//! ([`logging`]), its connection to an API server ([`cluster`]) and watches one bad object cannot
//! stop ([`watch`]).
#![forbid(unsafe_code)]

pub mod cluster;
pub mod logging;
pub mod watch;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where `/metrics`, `/healthz` and `/readyz` are served unless a flag says otherwise.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9090";

/// The content type Prometheus expects for the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `--metrics-addr` flag, for a binary's arguments (`#[command(flatten)]`).
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct MetricsArgs {
    /// Address of /metrics, /healthz and /readyz; port 0 picks a free port (tests).
    #[arg(long, env = "PICTOR_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: SocketAddr,
}

/// Why the endpoints could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Nothing could listen on the address (taken, or not this host's).
    #[error("listen on {0} for /metrics: {1}")]
    Listen(SocketAddr, std::io::Error),
}

/// Whether the process is ready for work, as `/readyz` answers it; shared between the code that
/// knows (a watch that listed, a lease taken) and the endpoint.
#[derive(Clone, Debug)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    waiting_for: &'static str,
}

impl Readiness {
    /// Not ready until [`Readiness::set`]; `waiting_for` is what `/readyz` says meanwhile.
    pub fn new(waiting_for: &'static str) -> Self {
        Self { ready: Arc::new(AtomicBool::new(false)), waiting_for }
    }

    /// Ready from the start: for processes that have nothing to wait for.
    pub fn always() -> Self {
        let readiness = Self::new("");
        readiness.set(true);
        readiness
    }

    /// Records whether the process is ready now.
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the process is ready now.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// A prometheus-client [`Registry`] that remembers the name of every series it exports, so a
/// test can check that a dashboard or an alert names only series some component exports — a
/// family without samples yet is not in the `/metrics` text.
#[derive(Debug)]
pub struct NamedRegistry {
    registry: Registry,
    prefix: String,
    series: BTreeSet<String>,
}

impl NamedRegistry {
    /// An empty registry whose names all start with `prefix` and `_`.
    pub fn with_prefix(prefix: &str) -> Self {
        Self { registry: Registry::with_prefix(prefix), prefix: prefix.to_string(), series: BTreeSet::new() }
    }

    /// Registers `metric` as prometheus-client's `Registry::register` does, and records its series:
    /// `<name>_total` for a counter, `_bucket`, `_sum` and `_count` for a histogram.
    pub fn register<M: Metric + TypedMetric>(&mut self, name: &str, help: &str, metric: M) {
        let full = format!("{}_{name}", self.prefix);
        let suffixes: &[&str] = match M::TYPE {
            MetricType::Counter => &["_total"],
            MetricType::Histogram => &["_bucket", "_sum", "_count"],
            MetricType::Info => &["_info"],
            _ => &[""],
        };
        self.series.extend(suffixes.iter().map(|s| format!("{full}{s}")));
        self.registry.register(name, help, metric);
    }

    /// The names of the series registered so far.
    pub fn series(&self) -> &BTreeSet<String> {
        &self.series
    }

    /// The registry, ready to be served, and the names of its series.
    pub fn finish(self) -> (Arc<Registry>, BTreeSet<String>) {
        (Arc::new(self.registry), self.series)
    }
}

/// The OpenMetrics text of every metric in `registry`.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

/// The three endpoints as a router, for callers that serve them themselves.
pub fn router(registry: Arc<Registry>, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let answer = if readiness.is_ready() {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, readiness.waiting_for)
                };
                async move { answer }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = encode(&registry);
                async move {
                    match text {
                        Ok(t) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], t).into_response(),
                        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
                    }
                }
            }),
        )
}

/// How every long-running Pictor process starts, written once: its logs (`log_filter` unless
/// `RUST_LOG` says otherwise), then `/metrics`, `/healthz` and `/readyz` on `--metrics-addr` —
/// ready at once, or not until the caller sets the returned [`Readiness`] (`waiting_for` is what
/// `/readyz` says meanwhile).
pub async fn start(
    log_filter: &str,
    args: &MetricsArgs,
    registry: Arc<Registry>,
    waiting_for: Option<&'static str>,
) -> Result<Readiness, ServeError> {
    logging::init(log_filter);
    let readiness = waiting_for.map_or_else(Readiness::always, Readiness::new);
    serve(args.metrics_addr, registry, readiness.clone()).await?;
    Ok(readiness)
}

/// Listens on `addr` and serves the endpoints in the background for the life of the process;
/// returns the address bound (the real port when `addr` asked for port 0).
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    readiness: Readiness,
) -> Result<SocketAddr, ServeError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| ServeError::Listen(addr, e))?;
    let bound = listener.local_addr().map_err(|e| ServeError::Listen(addr, e))?;
    let app = router(registry, readiness);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the /metrics endpoint stopped");
        }
    });
    tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness_on_a_free_port() {
        let mut registry = Registry::with_prefix("pictor_test");
        let hits = Counter::<u64>::default();
        registry.register("hits", "Hits", hits.clone());
        hits.inc();
        let readiness = Readiness::new("still listing");
        let addr =
            serve("127.0.0.1:0".parse().unwrap(), Arc::new(registry), readiness.clone()).await.unwrap();
        assert_ne!(addr.port(), 0, "the bound port is returned");

        let metrics = get(addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("application/openmetrics-text"), "{metrics}");
        assert!(metrics.contains("pictor_test_hits_total 1"), "{metrics}");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let not_ready = get(addr, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.1 503") && not_ready.ends_with("still listing"), "{not_ready}");
        readiness.set(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn a_named_registry_knows_its_series_before_any_sample() {
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        use prometheus_client::metrics::histogram::Histogram;
        let mut registry = NamedRegistry::with_prefix("pictor_test");
        registry.register("hits", "Hits", Counter::<u64>::default());
        registry.register("queue", "Queue", Family::<Vec<(String, String)>, Gauge>::default());
        registry.register("wait_seconds", "Wait", Histogram::new([1.0]));
        let (_, series) = registry.finish();
        let expected = [
            "pictor_test_hits_total",
            "pictor_test_queue",
            "pictor_test_wait_seconds_bucket",
            "pictor_test_wait_seconds_count",
            "pictor_test_wait_seconds_sum",
        ];
        assert_eq!(series.iter().map(String::as_str).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn the_flag_defaults_to_every_interface_and_takes_a_test_address() {
        #[derive(Parser)]
        struct Args {
            #[command(flatten)]
            metrics: MetricsArgs,
        }
        let default = Args::try_parse_from(["x"]).unwrap();
        assert_eq!(default.metrics.metrics_addr, DEFAULT_METRICS_ADDR.parse().unwrap());
        let test = Args::try_parse_from(["x", "--metrics-addr=127.0.0.1:0"]).unwrap();
        assert_eq!(test.metrics.metrics_addr.port(), 0);
    }

    #[tokio::test]
    async fn a_taken_address_is_an_error_that_names_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = serve(addr, Arc::new(Registry::default()), Readiness::always()).await.unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
