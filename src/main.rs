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
mod sqlite;
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
/// enough: the command then ends quietly (exit status 141, as a process ended by SIGPIPE),
/// as other command-line tools do, instead of a panic's message from `println!` on the closed
/// pipe. SIGPIPE itself stays ignored (Rust's default): a socket closed under the CLI (the
/// daemon's, Docker's) is an error it reports, never a silent death.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
