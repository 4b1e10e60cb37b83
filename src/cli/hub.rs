//! `plantd hub` and its management commands. Every one takes the same `--config`,
//! `--data-dir` and `--database`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::config::HubConfig;
use crate::hub::store::Store;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = false)]
pub struct HubArgs {
    /// Hub config file (hub.toml) [default: built-in defaults].
    #[arg(long, value_name = "FILE", global = true, env = "PLANTD_HUB_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (the hub CA lives in DIR/ca/) [default: /var/lib/plantd-hub].
    #[arg(long, value_name = "DIR", global = true, env = "PLANTD_HUB_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL, such as postgres://plantd@db/plantd.
    #[arg(long, value_name = "URL", global = true, env = "PLANTD_DATABASE_URL")]
    database: Option<String>,
    /// HTTPS address for enrollment [default: 0.0.0.0:9443].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// UDP address for QUIC replication [default: 0.0.0.0:9444].
    #[arg(long, value_name = "ADDR")]
    quic: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<HubCommand>,
}

#[derive(Debug, Subcommand)]
enum HubCommand {
    /// Enrollment tokens for plants.
    #[command(subcommand)]
    Token(HubTokenCommand),
    /// Manage one plant.
    #[command(subcommand)]
    Plant(HubPlantCommand),
    /// Tokens for the central team's tools to read the fleet API (GET /api/v1/plants).
    #[command(name = "api-token", subcommand)]
    ApiToken(HubApiTokenCommand),
    /// List the fleet: plant, last seen, version, link, acked seq, rows stored, lag.
    Plants {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The offsite backup copies the hub holds for a plant (in DATA_DIR/backups/PLANT/).
    Backups {
        #[arg(long, value_name = "NAME")]
        plant: String,
        /// Print JSON (objects with id, name, size, sha256, created_at).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum HubTokenCommand {
    /// Print a one-time enrollment token for a plant (last line); it carries the CA fingerprint.
    Create {
        /// The plant's name, such as "lyon".
        #[arg(long, value_name = "NAME")]
        plant: String,
        /// How long the token stays valid.
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

#[derive(Debug, Subcommand)]
enum HubApiTokenCommand {
    /// Print a new fleet API token (last line), replacing the one of the same name.
    Create {
        /// Who uses it, such as "grafana".
        #[arg(long, value_name = "NAME")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum HubPlantCommand {
    /// Refuse the plant's connections from now on.
    Revoke {
        /// The plant's name.
        name: String,
    },
}

impl HubArgs {
    fn config(&self) -> anyhow::Result<HubConfig> {
        let mut c = HubConfig::load(self.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            c.data_dir = std::path::absolute(d)?;
        }
        if let Some(db) = &self.database {
            c.database = db.clone();
        }
        if let Some(l) = self.listen {
            c.listen = l;
        }
        if let Some(q) = self.quic {
            c.quic = q;
        }
        Ok(c)
    }
}

pub async fn run(args: HubArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let Some(command) = args.command else {
        return crate::hub::run(config).await;
    };
    if let HubCommand::Backups { plant, json } = &command {
        // The hub's own directory: no database needed.
        check_plant_name(plant)?;
        let held = crate::hub::backups(&config).list(plant)?;
        if *json {
            println!("{}", serde_json::to_string_pretty(&held)?);
        } else {
            println!("{:<24} {:>10}  {:<22} SHA-256", "ID", "SIZE", "CREATED");
            for c in &held {
                println!(
                    "{:<24} {:>10}  {:<22} {}",
                    c.id,
                    bytesize::ByteSize(c.size).to_string(),
                    c.created_at,
                    c.sha256
                );
            }
        }
        return Ok(());
    }
    let store = Store::connect(&config.database).await?;
    match command {
        HubCommand::Token(HubTokenCommand::Create { plant, ttl }) => {
            check_plant_name(&plant)?;
            let ca = crate::pki::HubCa::load_or_create(&config.data_dir)?;
            let (token, hash) = crate::hub::make_token(&ca.fingerprint())?;
            store.add_token(&hash, &plant, ttl).await?;
            println!(
                "One-time enrollment token for plant {plant:?}, valid for {}.",
                humantime::format_duration(ttl)
            );
            println!("On the plant: plantd enroll --hub HUB:PORT --token TOKEN");
            println!("{token}");
        }
        HubCommand::ApiToken(HubApiTokenCommand::Create { name }) => {
            check_plant_name(&name)?;
            let (token, hash) = crate::hub::make_api_token()?;
            store.add_api_token(&name, &hash).await?;
            println!("Fleet API token {name:?}: send it as \"Authorization: Bearer TOKEN\" to GET /api/v1/plants");
            println!("{token}");
        }
        HubCommand::Plant(HubPlantCommand::Revoke { name }) => {
            if !store.revoke(&name).await? {
                bail!("no active plant named {name:?}; `plantd hub plants` lists them");
            }
            println!("revoked plant {name:?}: its connections are refused from now on");
        }
        HubCommand::Plants { json } => {
            let rows = store.plants().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<24} {:<9} {:<22} {:<10} {:<9} {:>12} {:>12} {:>8}",
                    "plant",
                    "state",
                    "last seen",
                    "version",
                    "link",
                    "acked seq",
                    "stored",
                    "lag s"
                );
                for r in rows {
                    let state = match (r.revoked, r.enrolled) {
                        (true, _) => "revoked",
                        (false, true) => "enrolled",
                        (false, false) => "invited",
                    };
                    println!(
                        "{:<24} {:<9} {:<22} {:<10} {:<9} {:>12} {:>12} {:>8}",
                        r.plant,
                        state,
                        r.last_seen.as_deref().unwrap_or("-"),
                        r.version.as_deref().unwrap_or("-"),
                        r.link.as_deref().unwrap_or("-"),
                        r.acked_seq,
                        r.stored,
                        r.lag_s.map_or("-".to_string(), |l| l.to_string()),
                    );
                }
            }
        }
        HubCommand::Backups { .. } => unreachable!("served above, without the database"),
    }
    Ok(())
}

fn check_plant_name(name: &str) -> anyhow::Result<()> {
    // Plant and API token names share the rule.
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        // A plant's name is also its directory of backup copies at the hub.
        && !name.starts_with('.');
    if !ok {
        bail!("plant name {name:?} is not valid: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'");
    }
    Ok(())
}
