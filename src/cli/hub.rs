//! `plantd hub` and its management commands. Every one takes the same `--config`,
//! `--data-dir` and `--database`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::config::HubConfig;
use crate::hub::rollouts::RolloutControl;
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
    #[arg(long, value_name = "ADDR", global = true)]
    listen: Option<SocketAddr>,
    /// UDP address for QUIC replication [default: 0.0.0.0:9444].
    #[arg(long, value_name = "ADDR", global = true)]
    quic: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<HubCommand>,
}

#[derive(Debug, Subcommand)]
enum HubCommand {
    /// Rolling a release out to the fleet in waves.
    #[command(subcommand)]
    Rollout(HubRolloutCommand),
    /// Signed releases of plantd for the fleet.
    #[command(subcommand)]
    Release(HubReleaseCommand),
    /// Enrollment tokens for plants.
    #[command(subcommand)]
    Token(HubTokenCommand),
    /// Manage one plant.
    #[command(subcommand)]
    Plant(HubPlantCommand),
    /// The apply of the plants' transactions to the central Odoo ([apply] central in hub.toml).
    #[command(subcommand)]
    Apply(HubApplyCommand),
    /// Tokens for the central team's tools to read the fleet API (GET /api/v1/plants).
    #[command(name = "api-token", subcommand)]
    ApiToken(HubApiTokenCommand),
    /// List the fleet: plant, last seen, version, link, acked seq, rows stored, lag.
    Plants {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask a plant to carry out an action over its link (backup, verify, restart,
    /// diagnostics, island, apply_retry, apply_park); audited as the local user.
    Action(ActionArgs),
    /// The plants' warnings, errors and stack events, newest first.
    Logs {
        /// Only this plant's.
        #[arg(long, value_name = "NAME")]
        plant: Option<String>,
        /// Only lines containing this text (any case).
        #[arg(long, value_name = "TEXT")]
        grep: Option<String>,
        /// error, warn (warnings and errors) or info (all).
        #[arg(long, value_parser = ["error", "warn", "info"])]
        level: Option<String>,
        /// How many lines (1 to 10000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=10000))]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The hub's audit log, newest first: who did what from the command line, the fleet page
    /// and the fleet API, and how it ended.
    Audit {
        /// How many entries (1 to 10000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10000))]
        limit: i64,
        /// Print JSON.
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
enum HubApplyCommand {
    /// Each plant's applied seq, where its queue stopped and why, and what is parked.
    Status {
        /// Print JSON (plant, applied_seq, last_seq, stopped_at, message, parked).
        #[arg(long)]
        json: bool,
    },
    /// Try the transaction a plant's queue stopped at again (after fixing the cause).
    Retry { plant: String, seq: i64 },
    /// Set it aside (kept and listed) and let the plant's other transactions through.
    Park { plant: String, seq: i64 },
    /// Apply a parked transaction now.
    Replay { plant: String, seq: i64 },
}

#[derive(Debug, Subcommand)]
enum HubRolloutCommand {
    /// Show which plants each wave would update (a dry run: nothing starts).
    Plan {
        /// Cumulative waves: counts and percentages of the fleet, ending in 100%.
        #[arg(long, value_name = "LIST", default_value = "1,10%,100%")]
        waves: String,
        /// Print JSON (a list of waves, each a list of plant names).
        #[arg(long)]
        json: bool,
    },
    /// Roll release VERSION out: each wave starts once the one before is through, and the
    /// rollout pauses itself when more plants fail than --max-failures. A running or paused
    /// rollout is superseded.
    #[command(disable_version_flag = true)]
    Start {
        /// A published release, such as 1.4.0.
        version: String,
        /// Cumulative waves: counts and percentages of the fleet, ending in 100%.
        #[arg(long, value_name = "LIST", default_value = "1,10%,100%")]
        waves: String,
        /// Failed plants tolerated before the rollout pauses itself.
        #[arg(long, value_name = "N", default_value_t = 0)]
        max_failures: u32,
    },
    /// The newest rollout (or rollout ID): its state, waves and each plant's outcome.
    Status {
        /// A rollout id [default: the newest].
        #[arg(long, value_name = "ID")]
        id: Option<i64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop offering the release; plants already at it finish.
    Pause,
    /// Go on with a paused rollout; the failure threshold counts from here.
    Resume,
    /// End the rollout: nothing more is offered. Plants keep what they run.
    Abort,
}

#[derive(Debug, Subcommand)]
enum HubReleaseCommand {
    /// Make a release signing key: the secret key goes to FILE (mode 0600; keep it off the
    /// hub), the public key to pin in each plant's `[update] release_keys` is the last line.
    Keygen {
        /// Where to write the secret key; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Sign a plantd binary with KEY and store it on the hub as version V.
    #[command(disable_version_flag = true)]
    Publish {
        /// The plantd binary (the static release build).
        file: PathBuf,
        /// Its version, such as 1.4.0; one version names one binary forever.
        #[arg(long, value_name = "V")]
        version: String,
        /// The secret key file from `plantd hub release keygen`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// A bundle of stack images (`plantd images save` or `docker save`) that plants load
        /// with this release: each service whose image has the same repository as one of the
        /// bundle's tags moves to that tag, behind the stack's health gate. Give each build its
        /// own tag.
        #[arg(long, value_name = "BUNDLE")]
        images: Option<PathBuf>,
    },
    /// List the published releases.
    List {
        /// Print JSON (objects with version, size, sha256, public_key, signature, published_at).
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

#[derive(Debug, Args)]
struct ActionArgs {
    /// The plant's name.
    plant: String,
    /// backup, verify, restart, diagnostics, island, apply_retry or apply_park (a rejoin is
    /// done at the plant: `plantd rejoin`).
    action: String,
    /// The service to restart (postgres, redis or odoo).
    #[arg(long, value_name = "S")]
    service: Option<String>,
    /// The seq of apply_retry and apply_park.
    #[arg(long, value_name = "N")]
    seq: Option<u64>,
    /// The backup to verify [default: the newest].
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Log lines per container and of plantd in diagnostics [default: 200].
    #[arg(long, value_name = "N")]
    lines: Option<u64>,
    /// How long the action waits for the plant to connect before it expires.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    expires_in: Duration,
    /// Wait for the plant's answer and print it (exit 1 unless it is ok).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits before it gives up (exit 1; the action goes on at the hub)
    /// [default: --expires-in, and the time the hub gives the plant to answer: 2h for backup
    /// and verify, 10m for the others].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "wait")]
    timeout: Option<Duration>,
    /// Print the action as JSON (with the result, when waited for).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum HubPlantCommand {
    /// Refuse the plant's connections from now on.
    Revoke {
        /// The plant's name.
        name: String,
    },
    /// Keep the plant on one release: it is offered that version and left out of rollouts.
    #[command(disable_version_flag = true)]
    Pin {
        /// The plant's name.
        name: String,
        /// A published release, such as 1.4.0.
        version: String,
    },
    /// Let the plant follow rollouts again.
    Unpin {
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

impl HubArgs {
    /// `plantd hub` with no subcommand: the hub itself.
    pub fn runs_hub(&self) -> bool {
        self.command.is_none()
    }
}

pub async fn run(args: HubArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let Some(command) = args.command else {
        return crate::hub::run(config).await;
    };
    // What needs no database is served first, and arguments are checked before connecting.
    match &command {
        HubCommand::Backups { plant, json } => return backups(&config, plant, *json),
        HubCommand::Release(HubReleaseCommand::Keygen { out }) => return release_keygen(out),
        _ => {}
    }
    let waves = check_arguments(&command)?;
    let mut store = Store::connect(&config.database, &config.postgres).await?;
    let audited = audited(&command);
    let result = match command {
        HubCommand::Rollout(c) => rollout(&mut store, c, waves).await,
        HubCommand::Plant(c) => plant(&mut store, c).await,
        HubCommand::Apply(c) => apply(&mut store, &config, c).await,
        HubCommand::Release(c) => release(&mut store, c).await,
        HubCommand::Token(HubTokenCommand::Create { plant, ttl }) => {
            enrollment_token(&store, &config, &plant, ttl).await
        }
        HubCommand::ApiToken(HubApiTokenCommand::Create { name }) => api_token(&store, &name).await,
        HubCommand::Plants { json } => plants(&store, &config, json).await,
        HubCommand::Action(a) => action(&mut store, a).await,
        HubCommand::Audit { limit, json } => audit(&store, limit, json).await,
        HubCommand::Logs {
            plant,
            grep,
            level,
            limit,
            json,
        } => logs(&mut store, plant, grep, level, limit, json).await,
        HubCommand::Backups { .. } => unreachable!("served above, without the database"),
    };
    // Every change is in the hub's audit log, as the local user, done or failed.
    if let Some((what, target)) = audited {
        let who = format!("cli (uid {})", rustix::process::getuid().as_raw());
        let (outcome, detail) = match &result {
            Ok(()) => ("ok", String::new()),
            Err(e) => ("failed", format!("{e:#}")),
        };
        if let Err(e) = store
            .hub_audit(&who, what, target.as_deref(), outcome, &detail)
            .await
        {
            eprintln!("warning: the hub's audit log was not written: {e:#}");
        }
    }
    result
}

/// What a change is called in the hub's audit log, and what it is done to; `None` for what
/// only reads (and for `action`, which writes its own entries).
fn audited(command: &HubCommand) -> Option<(&'static str, Option<String>)> {
    Some(match command {
        HubCommand::Rollout(c) => match c {
            HubRolloutCommand::Start { version, .. } => ("rollout.start", Some(version.clone())),
            HubRolloutCommand::Pause => ("rollout.pause", None),
            HubRolloutCommand::Resume => ("rollout.resume", None),
            HubRolloutCommand::Abort => ("rollout.abort", None),
            HubRolloutCommand::Status { .. } | HubRolloutCommand::Plan { .. } => return None,
        },
        HubCommand::Release(HubReleaseCommand::Publish { version, .. }) => {
            ("release.publish", Some(version.clone()))
        }
        HubCommand::Token(HubTokenCommand::Create { plant, .. }) => {
            ("token.create", Some(plant.clone()))
        }
        HubCommand::Plant(c) => match c {
            HubPlantCommand::Pin { name, version } => {
                ("plant.pin", Some(format!("{name} to {version}")))
            }
            HubPlantCommand::Unpin { name } => ("plant.unpin", Some(name.clone())),
            HubPlantCommand::Revoke { name } => ("plant.revoke", Some(name.clone())),
        },
        HubCommand::Apply(c) => match c {
            HubApplyCommand::Retry { plant, seq } => {
                ("apply.retry", Some(format!("{plant} seq {seq}")))
            }
            HubApplyCommand::Park { plant, seq } => {
                ("apply.park", Some(format!("{plant} seq {seq}")))
            }
            HubApplyCommand::Replay { plant, seq } => {
                ("apply.replay", Some(format!("{plant} seq {seq}")))
            }
            HubApplyCommand::Status { .. } => return None,
        },
        HubCommand::ApiToken(HubApiTokenCommand::Create { name }) => {
            ("api_token.create", Some(name.clone()))
        }
        HubCommand::Release(_)
        | HubCommand::Plants { .. }
        | HubCommand::Action(_)
        | HubCommand::Audit { .. }
        | HubCommand::Logs { .. }
        | HubCommand::Backups { .. } => return None,
    })
}

/// `plantd hub logs`: the plants' log lines, newest first.
async fn logs(
    store: &mut Store,
    plant: Option<String>,
    grep: Option<String>,
    level: Option<String>,
    limit: i64,
    json: bool,
) -> anyhow::Result<()> {
    if let Some(p) = &plant {
        check_plant_name(p)?;
    }
    if grep.as_ref().is_some_and(|g| g.chars().count() > 200) {
        anyhow::bail!("--grep: at most 200 characters");
    }
    let lines = store
        .search_logs(&crate::hub::store::LogQuery {
            plant,
            text: grep,
            level,
            before: None,
            limit,
        })
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(());
    }
    for l in lines.iter().rev() {
        println!(
            "{} {:<12} {:<5} {} {}",
            l.at,
            l.plant,
            l.level.to_uppercase(),
            crate::cli::printable(&l.target),
            crate::cli::printable(&l.message)
        );
    }
    Ok(())
}

/// `plantd hub audit`: the hub's audit log, newest first.
async fn audit(store: &Store, limit: i64, json: bool) -> anyhow::Result<()> {
    let entries = store.hub_audit_log(limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<22} {:<16} {:<28} {:<9} DETAIL",
        "AT", "WHO", "ACTION", "TARGET", "OUTCOME"
    );
    for e in entries {
        println!(
            "{:<20} {:<22} {:<16} {:<28} {:<9} {}",
            e.at,
            crate::cli::printable(&e.who),
            e.action,
            crate::cli::printable(e.target.as_deref().unwrap_or("")),
            e.outcome,
            crate::cli::printable(&e.detail)
        );
    }
    Ok(())
}

/// The waves of `rollout plan` and `rollout start`, parsed, and the version a rollout or a pin
/// names, checked: a mistyped argument is said before the database is reached.
fn check_arguments(command: &HubCommand) -> anyhow::Result<Option<crate::update::rollout::Waves>> {
    let waves = match command {
        HubCommand::Rollout(
            HubRolloutCommand::Plan { waves, .. } | HubRolloutCommand::Start { waves, .. },
        ) => Some(crate::update::rollout::Waves::parse(waves)?),
        _ => None,
    };
    if let HubCommand::Rollout(HubRolloutCommand::Start { version, .. })
    | HubCommand::Plant(HubPlantCommand::Pin { version, .. }) = command
    {
        crate::release::check_version(version)?;
    }
    Ok(waves)
}

/// `plantd hub backups PLANT`: the copies the hub holds (its own directory, no database).
fn backups(config: &HubConfig, plant: &str, json: bool) -> anyhow::Result<()> {
    check_plant_name(plant)?;
    let held = crate::hub::backups(config).list(plant)?;
    if json {
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
    Ok(())
}

/// `plantd hub rollout …`; `waves` parsed for `plan` and `start`.
async fn rollout(
    store: &mut Store,
    command: HubRolloutCommand,
    waves: Option<crate::update::rollout::Waves>,
) -> anyhow::Result<()> {
    match command {
        HubRolloutCommand::Start {
            version,
            max_failures,
            ..
        } => {
            let waves = waves.expect("parsed before connecting");
            let plan = waves.plan(&rollout_fleet(store).await?);
            let id = store
                .start_rollout(&version, &waves.to_string(), &plan, max_failures)
                .await?;
            println!(
                "rollout {id}: version {version} in {} wave(s) ({waves}); it pauses itself after more than {max_failures} failure(s)",
                plan.len()
            );
            for (i, wave) in plan.iter().enumerate() {
                println!("wave {}: {}", i + 1, wave.join(", "));
            }
        }
        HubRolloutCommand::Status { id, json } => {
            let Some(r) = store.rollout(id).await? else {
                match id {
                    Some(id) => bail!("no rollout {id}"),
                    None => bail!("no rollout yet; `plantd hub rollout start VERSION` starts one"),
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_rollout(&r);
            }
        }
        HubRolloutCommand::Pause => {
            print_rollout(&store.control_rollout(RolloutControl::Pause).await?)
        }
        HubRolloutCommand::Resume => {
            print_rollout(&store.control_rollout(RolloutControl::Resume).await?)
        }
        HubRolloutCommand::Abort => {
            print_rollout(&store.control_rollout(RolloutControl::Abort).await?)
        }
        HubRolloutCommand::Plan { json, .. } => {
            let waves = waves.expect("parsed before connecting");
            let fleet = rollout_fleet(store).await?;
            let plan = waves.plan(&fleet);
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else if plan.is_empty() {
                println!("no enrolled plant: nothing to roll out to");
            } else {
                println!("waves {waves} over {} enrolled plants:", fleet.len());
                for (i, wave) in plan.iter().enumerate() {
                    println!("wave {}: {}", i + 1, wave.join(", "));
                }
            }
        }
    }
    Ok(())
}

/// `plantd hub plant pin|unpin|revoke NAME`.
async fn plant(store: &mut Store, command: HubPlantCommand) -> anyhow::Result<()> {
    match command {
        HubPlantCommand::Pin { name, version } => {
            store.pin(&name, Some(&version)).await?;
            println!("plant {name:?} is pinned to version {version}: it is offered that version and left out of rollouts");
        }
        HubPlantCommand::Unpin { name } => {
            store.pin(&name, None).await?;
            println!("plant {name:?} follows rollouts again");
        }
        HubPlantCommand::Revoke { name } => {
            if !store.revoke(&name).await? {
                bail!("no active plant named {name:?}; `plantd hub plants` lists them");
            }
            println!("revoked plant {name:?}: its connections are refused from now on");
        }
    }
    Ok(())
}

/// `plantd hub apply …`: the central apply's queues and their remedies.
async fn apply(
    store: &mut Store,
    config: &HubConfig,
    command: HubApplyCommand,
) -> anyhow::Result<()> {
    match command {
        HubApplyCommand::Status { json } => {
            let status = store.apply_status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!("{:<24} {:>10} {:>10}  STATE", "PLANT", "APPLIED", "STORED");
                for p in status {
                    let state = match (p.stopped_at, &p.message) {
                        (Some(seq), Some(m)) => format!("STOPPED at seq {seq}: {m}"),
                        _ if p.applied_seq < p.last_seq => "applying".to_string(),
                        _ => "caught up".to_string(),
                    };
                    println!(
                        "{:<24} {:>10} {:>10}  {state}",
                        p.plant, p.applied_seq, p.last_seq
                    );
                    for k in p.parked {
                        println!(
                            "{:<24} parked seq {} ({}, {}): {}",
                            "", k.seq, k.kind, k.parked_at, k.message
                        );
                    }
                }
            }
        }
        HubApplyCommand::Retry { plant, seq } => {
            println!("{}", store.apply_retry(&plant, seq).await?);
        }
        HubApplyCommand::Park { plant, seq } => {
            println!("{}", store.apply_park(&plant, seq).await?);
        }
        HubApplyCommand::Replay { plant, seq } => {
            let Some(central) = &config.central else {
                anyhow::bail!("hub.toml has no [apply] central = true (with [odoo]): there is no central Odoo to replay into");
            };
            println!("{}", store.apply_replay(central, &plant, seq).await?);
        }
    }
    Ok(())
}

/// `plantd hub release publish|list` (`keygen` needs no database and is served before).
async fn release(store: &mut Store, command: HubReleaseCommand) -> anyhow::Result<()> {
    match command {
        HubReleaseCommand::Publish {
            file,
            version,
            key,
            images,
        } => release_publish(store, &file, &version, &key, images.as_deref()).await,
        HubReleaseCommand::List { json } => {
            let rows = store.releases().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<14} {:>10}  {:<22} {:<64}  SIGNED BY",
                    "VERSION", "SIZE", "PUBLISHED", "SHA-256"
                );
                for r in rows {
                    println!(
                        "{:<14} {:>10}  {:<22} {:<64}  {}",
                        r.version,
                        bytesize::ByteSize(r.size.max(0) as u64).to_string(),
                        r.published_at,
                        r.sha256,
                        r.public_key
                    );
                }
            }
            Ok(())
        }
        HubReleaseCommand::Keygen { .. } => unreachable!("served before, without the database"),
    }
}

/// `plantd hub token create PLANT`: a one-time enrollment token bound to the hub's CA.
async fn enrollment_token(
    store: &Store,
    config: &HubConfig,
    plant: &str,
    ttl: Duration,
) -> anyhow::Result<()> {
    check_plant_name(plant)?;
    let ca = crate::pki::HubCa::load_or_create(&config.data_dir)?;
    let (token, hash) = crate::enrollment::make_token(&ca.fingerprint())?;
    store.add_token(&hash, plant, ttl).await?;
    println!(
        "One-time enrollment token for plant {plant:?}, valid for {}.",
        humantime::format_duration(ttl)
    );
    println!("On the plant: plantd enroll --hub HUB:PORT --token TOKEN");
    println!("{token}");
    Ok(())
}

/// `plantd hub api-token create NAME`: a bearer token for the fleet API.
async fn api_token(store: &Store, name: &str) -> anyhow::Result<()> {
    check_plant_name(name)?;
    let (token, hash) = crate::hub::make_api_token()?;
    store.add_api_token(name, &hash).await?;
    println!("Fleet API token {name:?}: send it as \"Authorization: Bearer TOKEN\" to GET /api/v1/plants");
    println!("{token}");
    Ok(())
}

/// `plantd hub plants`: every plant the hub knows, with its link and lag.
async fn plants(store: &Store, config: &HubConfig, json: bool) -> anyhow::Result<()> {
    let rows = store.plants().await?;
    let backups = crate::hub::backups(config);
    let plants = crate::hub::truth::report(rows, &backups);
    if json {
        println!("{}", serde_json::to_string_pretty(&plants)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<9} {:<22} {:<10} {:<9} {:>12} {:>12} {:>8}  last backup",
        "plant", "state", "last seen", "version", "link", "acked seq", "stored", "lag s",
    );
    for r in plants {
        let (p, t) = (&r.row, &r.truth);
        println!(
            "{:<24} {:<9} {:<22} {:<10} {:<9} {:>12} {:>12} {:>8}  {}",
            p.plant,
            t.state,
            p.last_seen.as_deref().unwrap_or("-"),
            p.version.as_deref().unwrap_or("-"),
            p.link.as_deref().unwrap_or("-"),
            p.acked_seq,
            p.stored,
            t.lag_s.map_or("-".to_string(), |l| l.to_string()),
            t.last_backup
                .as_ref()
                .map_or("-".to_string(), |b| b.id.clone()),
        );
        if let Some(reason) = &t.reason {
            // Plant-supplied words: no terminal escapes reach the admin's terminal.
            let reason = crate::cli::printable(reason);
            println!("{:<24} {reason}", "");
        }
    }
    Ok(())
}

/// The plants a rollout reaches: enrolled, not revoked.
async fn rollout_fleet(store: &Store) -> anyhow::Result<Vec<String>> {
    Ok(store
        .plants()
        .await?
        .into_iter()
        .filter(|p| p.enrolled && !p.revoked)
        .map(|p| p.plant)
        .collect())
}

fn print_rollout(r: &crate::hub::rollouts::RolloutView) {
    println!(
        "rollout {}: version {}, {}{}",
        r.id,
        r.version,
        r.state,
        r.reason
            .as_deref()
            .map_or(String::new(), |why| format!(" ({why})"))
    );
    println!(
        "waves {} (wave {} of {}), max failures {}, started {}, updated {}",
        r.waves, r.current_wave, r.wave_count, r.max_failures, r.started_at, r.updated_at
    );
    println!(
        "{:<24} {:>4}  {:<10} {:<22} REASON",
        "PLANT", "WAVE", "STATE", "UPDATED"
    );
    for p in &r.plants {
        println!(
            "{:<24} {:>4}  {:<10} {:<22} {}",
            p.plant,
            p.wave,
            p.state,
            p.updated_at,
            p.reason.as_deref().unwrap_or("-")
        );
    }
}

/// Largest binary `release publish` takes.
const MAX_RELEASE: u64 = 256 * 1024 * 1024;

fn release_keygen(out: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (secret, public) = crate::release::keygen()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| {
            format!(
                "creating {} (an existing key file is never overwritten)",
                out.display()
            )
        })?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "Secret release key written to {} (mode 0600): keep it off the hub, and back it up.",
        out.display()
    );
    println!("Pin this public key in each plant's plant.toml: [update] release_keys = [\"KEY\"]");
    println!("{public}");
    Ok(())
}

async fn release_publish(
    store: &mut Store,
    file: &std::path::Path,
    version: &str,
    key: &std::path::Path,
    images: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use crate::release::{Manifest, SigningKey};
    let key_bytes =
        std::fs::read(key).with_context(|| format!("reading the key {}", key.display()))?;
    let signing = SigningKey::parse(std::str::from_utf8(&key_bytes).unwrap_or(""))
        .with_context(|| format!("{}", key.display()))?;
    let size = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    if size > MAX_RELEASE {
        bail!(
            "{}: {} is over the {} a release may be",
            file.display(),
            bytesize::ByteSize(size),
            bytesize::ByteSize(MAX_RELEASE)
        );
    }
    let binary = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    if !binary.starts_with(b"\x7fELF") {
        bail!(
            "{}: not an ELF executable; publish the plantd binary itself",
            file.display()
        );
    }
    let mut manifest = Manifest::of(version, &binary)?;
    if let Some(bundle) = images {
        manifest.images = Some(image_bundle(bundle).await?);
    }
    let signature = signing.sign(&manifest);
    let public = signing.public().to_string();
    let new = store
        .publish_release(&manifest, &signature, &public, &binary, images)
        .await?;
    println!(
        "{} version {} ({}, sha256 {}), signed by {public}",
        if new {
            "published"
        } else {
            "already published:"
        },
        manifest.version,
        bytesize::ByteSize(manifest.size),
        manifest.sha256
    );
    if let Some(i) = &manifest.images {
        println!(
            "with stack images {} ({}, sha256 {})",
            i.tags.join(", "),
            bytesize::ByteSize(i.size),
            i.sha256
        );
    }
    Ok(())
}

/// Checks an image bundle for a release: a `docker save` tar naming at most one tag per
/// repository (so that a plant knows which tag a service moves to); its size, SHA-256 and tags.
async fn image_bundle(bundle: &std::path::Path) -> anyhow::Result<crate::release::Images> {
    let path = bundle.to_path_buf();
    let mut tags =
        tokio::task::spawn_blocking(move || crate::stack::bundle::check_bundle(&path)).await??;
    tags.sort();
    tags.dedup();
    for pair in tags.windows(2) {
        if crate::stack::bundle::repository(&pair[0]) == crate::stack::bundle::repository(&pair[1])
        {
            bail!(
                "{}: it carries two tags of one repository ({} and {}); a release moves each service to one tag, so bundle one",
                bundle.display(),
                pair[0],
                pair[1]
            );
        }
    }
    let (size, sha256) = crate::replication::transfer::digest(bundle).await?;
    Ok(crate::release::Images { size, sha256, tags })
}

/// `plantd hub action PLANT ACTION`: queued for the plant (a hub serving it sends it within
/// 2 s), audited at the hub as `cli (uid N)`; with `--wait`, followed to its end.
async fn action(store: &mut Store, a: ActionArgs) -> anyhow::Result<()> {
    check_plant_name(&a.plant)?;
    let mut args = serde_json::Map::new();
    if let Some(s) = &a.service {
        args.insert("service".into(), s.clone().into());
    }
    if let Some(n) = a.seq {
        args.insert("seq".into(), n.into());
    }
    if let Some(id) = &a.id {
        args.insert("id".into(), id.clone().into());
    }
    if let Some(n) = a.lines {
        args.insert("lines".into(), n.into());
    }
    let command = crate::replication::remote::Command::parse_request(&a.action, &args.into())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let expires_in_s = a.expires_in.as_secs() as i64;
    if !(1..=crate::hub::MAX_ACTION_EXPIRY_S).contains(&expires_in_s) {
        bail!(
            "--expires-in {}: use from 1s to 7d",
            humantime::format_duration(a.expires_in)
        );
    }
    let who = format!("cli (uid {})", rustix::process::getuid().as_raw());
    let created = store
        .create_remote_action(
            &a.plant,
            command.action().as_str(),
            &command.args(),
            &who,
            expires_in_s,
        )
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = created.id;
    if !a.wait {
        if a.json {
            println!("{}", serde_json::to_string_pretty(&created)?);
        } else {
            println!(
                "action #{id} ({}) queued for {}; it waits for the plant until {}",
                created.action, created.plant, created.expires_at
            );
        }
        return Ok(());
    }
    let timeout = a
        .timeout
        .unwrap_or(a.expires_in + crate::replication::remote::answer_deadline(command.action()));
    let deadline = std::time::Instant::now() + timeout;
    let row = loop {
        let row = store
            .remote_action(id)
            .await?
            .context("the action disappeared from the hub database")?;
        if !["pending", "sent"].contains(&row.state.as_str()) {
            break row;
        }
        if std::time::Instant::now() >= deadline {
            let what = match row.state.as_str() {
                "pending" => format!("the plant has not taken it (it waits until {}, then expires)", row.expires_at),
                _ => "the plant has it but has not answered (the hub ends it as failed once its answer is overdue)".to_string(),
            };
            bail!(
                "action #{id} ({}) at {}: still {} after {}: {what}; stopped waiting, the action goes on at the hub: follow it with GET /api/v1/fleet/actions/{id} or on the fleet page",
                row.action,
                row.plant,
                row.state,
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&row)?);
    } else {
        // The plant's words, without control characters (a terminal's escapes).
        let detail: String = row
            .detail
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .collect();
        println!(
            "action #{id} ({}) at {}: {}: {detail}",
            row.action, row.plant, row.state
        );
    }
    if row.state != "ok" {
        std::process::exit(1);
    }
    Ok(())
}

fn check_plant_name(name: &str) -> anyhow::Result<()> {
    // Plant and API token names share the rule.
    if !crate::enrollment::protocol::is_plant_name(name) {
        bail!("plant name {name:?} is not valid: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'");
    }
    Ok(())
}
