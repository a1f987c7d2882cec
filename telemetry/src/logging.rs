//! Logs of every Pictor binary: structured, to stderr, colours only on a terminal, `RUST_LOG`
//! overriding the default level.

/// Sets up logging with `default` as the filter when `RUST_LOG` is unset.
pub fn init(default: &str) {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into()),
        )
        .init();
}
