//! Logging: `tracing` to stderr (journald under systemd), filtered by `RUST_LOG`
//! (default `info`). Secrets (tokens, keys) are never logged.

use tracing_subscriber::EnvFilter;

pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
