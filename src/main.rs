//! plantd: one binary that runs a manufacturing plant's Odoo stack and its durable shop-floor
//! journal, and (as `plantd hub`) the central hub.
//!
//! Layout (see DESIGN.md, "Parts"):
//! - `cli/`: the command line, one file per subcommand group
//! - `config`: `plant.toml`, validated with line-precise errors
//! - `plant`: `plantd up`, the plant daemon's composition root
//! - `journal/`: the durable SQLite journal (group commit, cursors, pruning)
//! - `ingest/`: the shop-floor HTTP API in front of the journal
//! - `tokens`: device tokens; `pki`: TLS material; `control`: the local control socket
//! - `listen`: every HTTP listener's timeouts, connection limit and body deadlines
//! - `health`: component health; `telemetry`: logging setup
//! - at the bottom, using nothing above them: `fsutil` (atomic writes, private directories,
//!   lock files), `digest` (hashes, hex, random secrets), `shutdown` (the daemon's signals)

mod admin;
mod apply;
mod backup;
mod cli;
mod config;
mod control;
mod digest;
mod enrollment;
mod fsutil;
mod health;
mod hub;
mod ingest;
mod journal;
mod listen;
mod odoo;
mod pki;
mod plant;
mod shutdown;
mod stack;
mod sync;
mod telemetry;
mod tokens;
mod update;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
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
