//! The command line: one file per subcommand group; `main` calls [`run`].

mod admin;
mod backup;
mod config_check;
mod enroll;
mod hub;
mod release;
mod stack;
mod status;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, PlantConfig};
use crate::control::Request;

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

impl Cli {
    /// Whether this runs a daemon (`plantd up`, `plantd hub` without a subcommand), which must
    /// outlive a closed pipe on its stderr; every other command is a short-lived tool whose
    /// output may go to `head`.
    pub fn is_daemon(&self) -> bool {
        match &self.command {
            Command::Up { .. } => true,
            Command::Hub(args) => args.runs_hub(),
            _ => false,
        }
    }
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
        /// Run the stack on the images built by images/build-local.sh (stack.images = "local").
        #[arg(long)]
        local_images: bool,
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
    /// Users of the admin UI.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// plantd releases.
    #[command(subcommand)]
    Release(ReleaseCommand),
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
    /// The plant's Odoo, PostgreSQL and Redis containers, as plantd supervises them.
    #[command(subcommand)]
    Stack(StackCommand),
    /// The plant's Odoo, through plantd's configured client.
    #[command(subcommand)]
    Odoo(OdooCommand),
    /// The local apply of transactions to the plant's Odoo: where it is, and what to do when
    /// Odoo rejected one.
    #[command(subcommand)]
    Apply(ApplyCommand),
    /// The stack's images: pull them, or move them to an air-gapped plant as one file.
    #[command(subcommand)]
    Images(ImagesCommand),
    /// Backups of the plant's Odoo database and filestore: take, list, verify.
    #[command(subcommand)]
    Backup(BackupCommand),
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
enum ReleaseCommand {
    /// Check a plantd binary against the release keys this plant pins ([update] release_keys).
    #[command(disable_version_flag = true)]
    Verify {
        #[command(flatten)]
        place: Place,
        /// The binary.
        file: PathBuf,
        /// The version it was published as.
        #[arg(long, value_name = "V")]
        version: String,
        /// Its signature (`plantd hub release list --json` on the hub).
        #[arg(long, value_name = "BASE64")]
        signature: String,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Add a user of the admin UI; the password is read from stdin (one line).
    Add {
        #[command(flatten)]
        place: Place,
        /// The user's name: 1 to 32 of a-z, 0-9, '.', '_', '-'.
        user: String,
        /// viewer (sees everything, changes nothing), operator (also restarts services,
        /// islands and rejoins, retries, parks and replays transactions) or admin (everything).
        #[arg(long, value_name = "ROLE")]
        role: String,
    },
    /// List the users, their roles, and when each was added and last given a password.
    List {
        #[command(flatten)]
        place: Place,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a user; their sessions end at once. The last admin cannot be removed.
    Remove {
        #[command(flatten)]
        place: Place,
        user: String,
    },
    /// Set a user's password, read from stdin (one line); their sessions end at once.
    Passwd {
        #[command(flatten)]
        place: Place,
        user: String,
    },
    /// Make a user a viewer, an operator or an admin; their sessions end at once. The last admin
    /// stays one.
    Role {
        #[command(flatten)]
        place: Place,
        user: String,
        /// viewer, operator or admin.
        role: String,
    },
    /// End every session of a user (a lost laptop, a shared screen).
    SignOut {
        #[command(flatten)]
        place: Place,
        user: String,
    },
    /// Take a user's second factor (TOTP) away, for a lost phone; their sessions end. They
    /// sign in with their password and set up a new one.
    TotpReset {
        #[command(flatten)]
        place: Place,
        user: String,
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
        /// The kinds the device may send, such as "stock.move,quality.check"; without it,
        /// every kind the plant takes except odoo.create (granted only by name).
        #[arg(long, value_name = "KIND,KIND", value_delimiter = ',')]
        kinds: Option<Vec<String>>,
    },
    /// List the devices that have tokens, their scopes, which were revoked, when each was last
    /// seen, and how many of its requests were accepted and refused.
    List {
        #[command(flatten)]
        place: Place,
        /// Print JSON (with each device's latest refusals) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One device: its token's state and scope, when it was last seen, and its latest refusals
    /// with the status and message it got.
    Show {
        #[command(flatten)]
        place: Place,
        /// The device's name.
        device: String,
    },
    /// Revoke a device's token: its requests are refused (403) from now on.
    Revoke {
        #[command(flatten)]
        place: Place,
        /// The device's name.
        device: String,
    },
}

#[derive(Debug, Subcommand)]
enum ApplyCommand {
    /// How far the apply has got, where it stopped and why, and what is parked.
    Status {
        #[command(flatten)]
        place: Place,
        /// Print JSON (applied_seq, last_seq, stopped_at, message, waiting, parked).
        #[arg(long)]
        json: bool,
    },
    /// Try the transaction the queue stopped at again (after fixing the cause in Odoo).
    Retry {
        #[command(flatten)]
        place: Place,
        seq: u64,
    },
    /// Set the transaction the queue stopped at aside (kept, and listed), and let the rest through.
    Park {
        #[command(flatten)]
        place: Place,
        seq: u64,
    },
    /// Apply a parked transaction now.
    Replay {
        #[command(flatten)]
        place: Place,
        seq: u64,
    },
    /// Move the applied cursor back to SEQ, so that everything after it is applied again, in
    /// order: for when Odoo's data went back to an earlier point that plantd does not know
    /// (`backup restore` moves it itself). Creates find their records by external id and make
    /// nothing twice; 0 applies everything the journal still holds.
    Rewind {
        #[command(flatten)]
        place: Place,
        seq: u64,
    },
    /// Write plantd's Odoo module (plantd_apply) into DIR/plantd_apply, for an Odoo plantd does
    /// not run (the hub's central Odoo): put DIR on its addons path and install "plantd apply"
    /// from its Apps menu; the apply then sends a batch in one call. The plant's own Odoo has
    /// it already.
    OdooModule {
        /// The directory to write into (created when missing).
        dir: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum OdooCommand {
    /// Call MODEL.METHOD once and print Odoo's JSON answer: the way to check the connection
    /// ([odoo] in plant.toml). Through the running daemon.
    Call {
        #[command(flatten)]
        place: Place,
        /// Such as res.partner.
        model: String,
        /// Such as search_read.
        method: String,
        /// Positional arguments, a JSON array, such as '[[["name", "=", "Acme"]]]'.
        args: Option<String>,
        /// Named arguments, a JSON object, such as '{"fields": ["name"], "limit": 5}'.
        #[arg(long, value_name = "JSON")]
        kwargs: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum StackCommand {
    /// Each service's state, health, image, restarts, since when, and container.
    Status {
        #[command(flatten)]
        place: Place,
        /// Print JSON (a list of objects) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Restart a service now (postgres, redis or odoo).
    Restart {
        #[command(flatten)]
        place: Place,
        service: String,
    },
    /// The last lines a service's container printed.
    Logs {
        #[command(flatten)]
        place: Place,
        service: String,
        /// How many lines.
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
    /// What the supervisor did and saw: starts, restarts, probes, upgrades, rollbacks.
    Events {
        #[command(flatten)]
        place: Place,
        #[arg(long)]
        json: bool,
    },
    /// Close a service's crash-loop breaker after fixing the cause; plantd restarts it.
    Reset {
        #[command(flatten)]
        place: Place,
        service: String,
    },
    /// Stop a service and keep it stopped (maintenance), across restarts of plantd, until
    /// `plantd stack release`.
    Hold {
        #[command(flatten)]
        place: Place,
        service: String,
        /// Why, as `plantd stack status` will show it.
        #[arg(long, default_value = "held by an admin")]
        reason: String,
    },
    /// Let a held service run again.
    Release {
        #[command(flatten)]
        place: Place,
        service: String,
    },
    /// Re-read plant.toml and bring the stack to it; a new image must prove itself healthy
    /// within stack.upgrade_deadline or the previous one comes back.
    Apply {
        #[command(flatten)]
        place: Place,
    },
    /// Print one of the stack's generated secrets. `odoo-admin`: the password of the login
    /// admin of the Odoo database plantd created. Read from DATA_DIR/stack/secrets.json, so
    /// only its owner (plantd's user, or root) can.
    Secret {
        #[command(flatten)]
        place: Place,
        /// Which secret: odoo-admin.
        name: String,
    },
    /// Stop and remove the stack's containers. Volumes (the data) stay unless
    /// --delete-volumes --yes is given. `plantd stack apply` brings the stack back.
    Down {
        #[command(flatten)]
        place: Place,
        /// Also delete the stack's volumes: the database and the filestore. Needs --yes.
        #[arg(long)]
        delete_volumes: bool,
        /// Confirm --delete-volumes.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Take a backup now: DATA_DIR/backups/ID.tar.zst (database dump, filestore, config);
    /// prints the id as the last line.
    Run {
        #[command(flatten)]
        place: Place,
        #[arg(long)]
        json: bool,
        /// Verify it too, as scheduled backups and the UI's are (checksums, and a test restore
        /// into a scratch database); a failed verification fails the command.
        #[arg(long)]
        verify: bool,
    },
    /// The backups on this server, oldest first.
    List {
        #[command(flatten)]
        place: Place,
        #[arg(long)]
        json: bool,
    },
    /// Check a backup: its checksums, then a restore of its dump into a scratch database
    /// whose row counts must match the manifest (the scratch database is dropped after).
    Verify {
        #[command(flatten)]
        place: Place,
        id: String,
        /// An age identity file that opens encrypted archives (besides the plant's own key).
        #[arg(long = "identity", value_name = "FILE")]
        identities: Vec<PathBuf>,
    },
    /// Write a backup as Odoo's database-manager zip (dump.sql, filestore/, manifest.json),
    /// which Odoo's database manager and odoo.sh restore.
    Export {
        #[command(flatten)]
        place: Place,
        id: String,
        /// The zip to write (must not exist).
        #[arg(long, value_name = "FILE")]
        odoo_zip: PathBuf,
        /// An age identity file that opens encrypted archives (besides the plant's own key).
        #[arg(long = "identity", value_name = "FILE")]
        identities: Vec<PathBuf>,
    },
    /// Copy a backup back from the hub (after losing this server: enroll again, then fetch);
    /// a cut-off fetch resumes. Prints the id.
    Fetch {
        #[command(flatten)]
        place: Place,
        id: String,
    },
    /// Make a backup from an Odoo database-manager or odoo.sh zip; prints its id, which
    /// `plantd backup restore` then restores.
    Import {
        #[command(flatten)]
        place: Place,
        /// The zip.
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Put a backup's database and filestore in place of the current ones. Takes a safety
    /// backup first; Odoo is down only for the swap; if Odoo is not healthy after it, the
    /// data it had before is put back.
    Restore {
        #[command(flatten)]
        place: Place,
        id: String,
        /// How long Odoo has to answer its health probe on the restored data.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        health_deadline: std::time::Duration,
        /// An age identity file that opens encrypted archives (besides the plant's own key).
        #[arg(long = "identity", value_name = "FILE")]
        identities: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ImagesCommand {
    /// Pull the stack's images that are not on this machine (present ones are never pulled).
    Pull {
        #[command(flatten)]
        place: Place,
    },
    /// Write the stack's images to FILE (a `docker save` tar), for a plant without a registry.
    Save {
        #[command(flatten)]
        place: Place,
        file: PathBuf,
    },
    /// Load images from FILE, made by `plantd images save` or `docker save`.
    Load {
        #[command(flatten)]
        place: Place,
        file: PathBuf,
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
        Command::Up {
            place,
            listen,
            local_images,
        } => {
            let load = move || -> anyhow::Result<PlantConfig> {
                let mut c = place.load()?;
                if let Some(l) = listen {
                    c.api.listen = l;
                }
                if local_images {
                    match c.stack.as_mut() {
                        Some(s) => s.images = config::ImageSource::Local,
                        None => anyhow::bail!("--local-images needs a [stack] section in plant.toml (there is no stack to run)"),
                    }
                }
                Ok(c)
            };
            let c = load()?;
            let (data_dir, deadline) = (c.data_dir.clone(), c.gate_deadline);
            match crate::plant::up(c, std::sync::Arc::new(load)).await? {
                None => Ok(()),
                // Returns only when stopped during the trial, or when the binary that won
                // it cannot be started.
                Some(u) => {
                    crate::update::install::try_and_swap(
                        u.candidate,
                        u.healthy_before,
                        &data_dir,
                        deadline,
                    )
                    .await
                }
            }
        }
        Command::Stack(s) => match s {
            StackCommand::Status { place, json } => stack::status(&place.load()?, json).await,
            StackCommand::Restart { place, service } => {
                stack::simple(&place.load()?, Request::StackRestart { service }).await
            }
            StackCommand::Reset { place, service } => {
                stack::simple(&place.load()?, Request::StackReset { service }).await
            }
            StackCommand::Hold {
                place,
                service,
                reason,
            } => {
                let reason = Some(reason);
                stack::simple(&place.load()?, Request::StackHold { service, reason }).await
            }
            StackCommand::Release { place, service } => {
                let reason = None;
                stack::simple(&place.load()?, Request::StackHold { service, reason }).await
            }
            StackCommand::Logs {
                place,
                service,
                tail,
            } => stack::simple(&place.load()?, Request::StackLogs { service, tail }).await,
            StackCommand::Events { place, json } => stack::events(&place.load()?, json).await,
            StackCommand::Apply { place } => {
                stack::simple(&place.load()?, Request::StackApply).await
            }
            StackCommand::Secret { place, name } => stack::secret(&place.load()?, &name),
            StackCommand::Down {
                place,
                delete_volumes,
                yes,
            } => {
                if delete_volumes && !yes {
                    anyhow::bail!("--delete-volumes deletes the plant's database and filestore for good; add --yes if that is what you want");
                }
                stack::down(&place.load()?, delete_volumes).await
            }
        },
        Command::Backup(b) => match b {
            BackupCommand::Run {
                place,
                json,
                verify,
            } => backup::run(&place.load()?, json, verify).await,
            BackupCommand::List { place, json } => backup::list(&place.load()?, json),
            BackupCommand::Verify {
                place,
                id,
                identities,
            } => backup::verify(&place.load()?, &id, &identities).await,
            BackupCommand::Export {
                place,
                id,
                odoo_zip,
                identities,
            } => backup::export(&place.load()?, &id, &identities, &odoo_zip).await,
            BackupCommand::Fetch { place, id } => backup::fetch(&place.load()?, &id).await,
            BackupCommand::Import { place, file, json } => {
                backup::import(&place.load()?, &file, json).await
            }
            BackupCommand::Restore {
                place,
                id,
                health_deadline,
                identities,
                json,
            } => {
                let config = place.load()?;
                backup::restore(&config, &id, &identities, health_deadline, json).await
            }
        },
        Command::Apply(a) => match a {
            ApplyCommand::Status { place, json } => stack::apply_status(&place.load()?, json).await,
            ApplyCommand::Retry { place, seq } => {
                stack::apply_do(&place.load()?, Request::ApplyRetry { seq }).await
            }
            ApplyCommand::Park { place, seq } => {
                stack::apply_do(&place.load()?, Request::ApplyPark { seq }).await
            }
            ApplyCommand::Replay { place, seq } => {
                stack::apply_do(&place.load()?, Request::ApplyReplay { seq }).await
            }
            ApplyCommand::Rewind { place, seq } => {
                let request = Request::ApplyRewind {
                    seq,
                    backup: None,
                    why: "an admin's `plantd apply rewind`".into(),
                };
                stack::apply_do(&place.load()?, request).await
            }
            ApplyCommand::OdooModule { dir } => {
                crate::apply::odoo_module::write(&dir).map_err(|e| {
                    anyhow::anyhow!("writing the module into {}: {e}", dir.display())
                })?;
                println!(
                    "wrote {}; add {} to the Odoo's addons_path, restart it, and install \"plantd apply\" from Apps",
                    dir.join(crate::apply::odoo_module::NAME).display(),
                    dir.display()
                );
                Ok(())
            }
        },
        Command::Odoo(OdooCommand::Call {
            place,
            model,
            method,
            args,
            kwargs,
        }) => stack::odoo_call(&place.load()?, model, method, args, kwargs).await,
        Command::Images(i) => match i {
            ImagesCommand::Pull { place } => stack::pull(&place.load()?).await,
            ImagesCommand::Save { place, file } => stack::save(&place.load()?, &file).await,
            ImagesCommand::Load { place, file } => stack::load(&place.load()?, &file).await,
        },
        Command::Status { place, json } => status::run(&place.load()?, json).await,
        Command::Config(ConfigCommand::Check { file }) => config_check::run(&file),
        Command::Enroll { place, hub, token } => enroll::run(&place.load()?, &hub, &token).await,
        Command::Island { place } => enroll::island(&place.load()?, true).await,
        Command::Rejoin { place } => enroll::island(&place.load()?, false).await,
        Command::Hub(args) => hub::run(args).await,
        Command::Release(ReleaseCommand::Verify {
            place,
            file,
            version,
            signature,
        }) => release::verify(&place.load()?, &file, &version, &signature),
        Command::Admin(a) => match a {
            AdminCommand::Add { place, user, role } => admin::add(&place.load()?, &user, &role),
            AdminCommand::List { place, json } => admin::list(&place.load()?, json),
            AdminCommand::Remove { place, user } => {
                admin::change(&place.load()?, &user, admin::Change::Remove)
            }
            AdminCommand::Passwd { place, user } => {
                let password = admin::read_password(&user, "plantd admin passwd")?;
                admin::change(&place.load()?, &user, admin::Change::Password(password))
            }
            AdminCommand::Role { place, user, role } => admin::change(
                &place.load()?,
                &user,
                admin::Change::Role(crate::admin::store::Role::parse(&role)?),
            ),
            AdminCommand::SignOut { place, user } => {
                admin::change(&place.load()?, &user, admin::Change::SignOut)
            }
            AdminCommand::TotpReset { place, user } => {
                admin::change(&place.load()?, &user, admin::Change::TotpReset)
            }
        },
        Command::Token(t) => match t {
            TokenCommand::Create {
                place,
                device,
                kinds,
            } => token::create(&place.load()?, &device, kinds).await,
            TokenCommand::List { place, json } => token::list(&place.load()?, json).await,
            TokenCommand::Show { place, device } => token::show(&place.load()?, &device).await,
            TokenCommand::Revoke { place, device } => token::revoke(&place.load()?, &device).await,
        },
    }
}

/// `text` without control characters, for a terminal: words that came from elsewhere (a
/// plant, a browser) must not move its cursor or change its title.
pub fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    /// clap's own checks of every command and argument (names unique, no clash with the
    /// `--version` that every subcommand inherits); they run in debug builds only, where a
    /// clash panics at the command's first use.
    #[test]
    fn every_command_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
