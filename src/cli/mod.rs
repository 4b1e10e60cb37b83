//! The command line: one file per subcommand group; `main` calls [`run`].

mod config_check;
mod enroll;
mod hub;
mod status;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, PlantConfig};

/// plantd runs Odoo at a manufacturing plant: it journals shop-floor transactions durably on
/// this server, keeps the plant working when the link to the head office is down, and sends
/// everything on to the central hub once the link is back.
#[derive(Debug, Parser)]
#[command(
    name = "plantd",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the plant daemon (the ingest API, the journal, and the control socket).
    ///
    /// With no config file it starts on defaults: data in /var/lib/plantd (root) or
    /// ~/.local/share/plantd, HTTPS on 0.0.0.0:8443 with a self-signed certificate made on first
    /// start. Stop it with Ctrl-C or SIGTERM; every accepted transaction is already on disk.
    Up {
        #[command(flatten)]
        place: Place,
        /// HTTPS address of the ingest API [default: 0.0.0.0:8443, or api.listen].
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Show what the running daemon is doing: journal depth, positions, component health.
    Status {
        #[command(flatten)]
        place: Place,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Work with the config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage the tokens that shop-floor devices use to post transactions.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Enroll this plant with its hub, using a token from `plantd hub token create`.
    ///
    /// Makes the plant's key, checks the hub against the CA fingerprint in the token before
    /// sending anything, and records the hub's QUIC addresses; the next `plantd up` replicates.
    Enroll {
        #[command(flatten)]
        place: Place,
        /// The hub's enrollment address, such as hub.example.com:9443.
        #[arg(long, value_name = "HOST:PORT")]
        hub: String,
        /// The one-time token printed by `plantd hub token create`.
        #[arg(long, value_name = "TOKEN")]
        token: String,
    },
    /// Stop replicating on purpose, for planned WAN work; devices keep posting.
    Island {
        #[command(flatten)]
        place: Place,
    },
    /// Replicate again after `plantd island`; the backlog drains.
    Rejoin {
        #[command(flatten)]
        place: Place,
    },
    /// Run the central hub, or manage it (tokens, plants).
    Hub(hub::HubArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a config file; errors name the line, the field and the fix.
    Check {
        /// The config file, such as /etc/plantd/plant.toml.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token for a device; it is printed once, as the last line, and stored hashed.
    Create {
        #[command(flatten)]
        place: Place,
        /// The device's name, such as "scanner-line-3" (letters, digits, '.', '_', '-').
        #[arg(long, value_name = "NAME")]
        device: String,
    },
    /// List the devices that have tokens, and which were revoked.
    List {
        #[command(flatten)]
        place: Place,
    },
    /// Revoke a device's token: its requests are refused (403) from now on.
    Revoke {
        #[command(flatten)]
        place: Place,
        /// The device's name.
        device: String,
    },
}

/// Which plant: its config file and data directory.
#[derive(Debug, Args)]
struct Place {
    /// Config file [default: /etc/plantd/plant.toml if it exists, else built-in defaults].
    #[arg(long, value_name = "FILE", env = "PLANTD_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (journal, TLS, control socket) [default: data_dir from the config].
    #[arg(long, value_name = "DIR", env = "PLANTD_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl Place {
    fn load(&self) -> anyhow::Result<PlantConfig> {
        let mut c = config::load(self.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            c.data_dir = std::path::absolute(d)?;
        }
        Ok(c)
    }
}

/// Parses the command line and runs the chosen command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up { place, listen } => {
            let mut c = place.load()?;
            if let Some(l) = listen {
                c.api.listen = l;
            }
            crate::plant::up(c).await
        }
        Command::Status { place, json } => status::run(&place.load()?, json).await,
        Command::Config(ConfigCommand::Check { file }) => config_check::run(&file),
        Command::Enroll { place, hub, token } => enroll::run(&place.load()?, &hub, &token).await,
        Command::Island { place } => enroll::island(&place.load()?, true).await,
        Command::Rejoin { place } => enroll::island(&place.load()?, false).await,
        Command::Hub(args) => hub::run(args).await,
        Command::Token(t) => match t {
            TokenCommand::Create { place, device } => token::create(&place.load()?, &device).await,
            TokenCommand::List { place } => token::list(&place.load()?).await,
            TokenCommand::Revoke { place, device } => token::revoke(&place.load()?, &device).await,
        },
    }
}
