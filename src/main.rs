//! plantd: one binary that runs a manufacturing plant's Odoo stack and its durable shop-floor
//! journal, and (as `plantd hub`) the central hub.
//!
//! The modules, by layer (docs/architecture.md has the table that `tests/layers.rs` holds
//! them to: each uses only lower layers):
//! - 0: `digest`, `fsutil`, `clock`, `shutdown`, `field` (a refused input's field and message),
//!   `telemetry` (logging), `health`
//! - 1: `listen` (every listener's limits), `odoo` (Odoo's APIs), `kinds` (what each kind does
//!   in Odoo), `retention` (backup schedule and policy), `release` (signed releases)
//! - 2: `config`: `plant.toml` and `hub.toml`, validated with line-precise errors
//! - 3: `journal` (the durable SQLite journal), `tokens` (device tokens), `pki` (TLS material)
//! - 4: `apply`, `ingest` (the shop-floor API), `stack`, `backup`, `replication` (protocol
//!   and transport), `update`, `enrollment`, `admin`, `control` (the local control socket)
//! - 5: `plant` (`plantd up`), `hub` (`plantd hub`)
//! - 6: `cli`, one file per subcommand group

mod admin;
mod alerts;
mod apply;
mod backup;
mod cli;
mod clock;
mod config;
mod control;
mod digest;
mod enrollment;
mod field;
mod fsutil;
mod health;
mod hub;
mod ingest;
mod journal;
mod kinds;
mod listen;
mod odoo;
mod pki;
mod plant;
mod release;
mod replication;
mod retention;
mod shutdown;
mod stack;
mod telemetry;
mod tokens;
mod update;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if !cli.is_daemon() {
        quiet_broken_pipe();
    }
    telemetry::init_logging();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A command's output piped into `head` (`plantd status | head -1`) ends when `head` has read
/// enough: the process ends quietly, as other command-line tools do, instead of panicking in
/// `println!` on the closed pipe. Rust ignores SIGPIPE at start; this puts back the default for
/// the short-lived commands only (a daemon must outlive a closed stderr).
fn quiet_broken_pipe() {
    // SAFETY: called first in main, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
