//! `plantd admin add|list|remove|passwd|role|sign-out`: the users of the admin UI, beside the
//! daemon or without it (the user store is SQLite in WAL mode). Passwords are read from stdin
//! (one line, so that they never show in `ps` or the shell's history). A change ends the
//! user's sessions in the running daemon at their next request; every change is audited as
//! `cli (uid N)`.

use std::io::BufRead;

use anyhow::{bail, Context};

use crate::admin::store::{self, AuditEntry, Role, Store};
use crate::config::PlantConfig;

/// Who the audit log names for a change made here.
fn actor() -> String {
    format!("cli (uid {})", rustix::process::getuid().as_raw())
}

/// One line of stdin, without its line end; `usage` names the command in the hint.
pub fn read_password(user: &str, usage: &str) -> anyhow::Result<String> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("Password for {user} (at least {} characters; it is shown as you type, so prefer `printf '%s\\n' \"$PW\" | {usage} ...`):", store::MIN_PASSWORD);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!(
            "no password on stdin; pipe it in: printf '%s\\n' \"$PASSWORD\" | {usage} {user} ..."
        );
    }
    Ok(password.to_string())
}

fn audit(store: &Store, action: &str, user: &str, detail: String) -> anyhow::Result<()> {
    store.audit(&AuditEntry {
        at: store::now(),
        user: actor(),
        action: action.into(),
        target: Some(user.into()),
        outcome: "ok".into(),
        detail,
    })?;
    Ok(())
}

pub fn add(config: &PlantConfig, user: &str, role: &str) -> anyhow::Result<()> {
    let role = Role::parse(role)?;
    store::check_name(user)?;
    let password = read_password(user, "plantd admin add")?;
    crate::fsutil::create_private_dir(&config.data_dir)?;
    let store = Store::open(&config.data_dir)?;
    store.add(user, role, &password, false)?;
    audit(
        &store,
        "admin.add",
        user,
        format!("added with role {}", role.as_str()),
    )?;
    if config.data_dir.join("ca/ca.crt").exists() {
        // A hub's data directory: its fleet page.
        println!(
            "added {user} ({}); sign in at https://THIS-HUB:9443/fleet (the hub's --listen port)",
            role.as_str()
        );
    } else {
        println!(
            "added {user} ({}); sign in at https://THIS-SERVER:{}/",
            role.as_str(),
            config.api.listen.port()
        );
    }
    Ok(())
}

/// The store of an existing data directory (never made here: a typo in `--data-dir` must not
/// leave an empty store behind).
fn open(config: &PlantConfig) -> anyhow::Result<Store> {
    if !config.data_dir.join("admin.db").exists() {
        bail!(
            "{} has no admin users yet (no admin.db): add the first with `plantd admin add NAME --role admin`",
            config.data_dir.display()
        );
    }
    Ok(Store::open(&config.data_dir)?)
}

pub fn list(config: &PlantConfig, json: bool) -> anyhow::Result<()> {
    let users = open(config)?.users()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&users)?);
        return Ok(());
    }
    println!("{:<32} {:<7} {:<21} PASSWORD SET", "USER", "ROLE", "ADDED");
    for u in &users {
        println!(
            "{:<32} {:<7} {:<21} {}",
            u.name,
            u.role.as_str(),
            u.created_at,
            u.password_set_at.as_deref().unwrap_or("when added")
        );
    }
    Ok(())
}

/// What `plantd admin` changes about a user.
pub enum Change {
    Remove,
    Password(String),
    Role(Role),
    SignOut,
    TotpReset,
}

pub fn change(config: &PlantConfig, user: &str, change: Change) -> anyhow::Result<()> {
    let store = open(config)?;
    let (action, done) = match change {
        Change::Remove => {
            store.remove(user)?;
            (
                "user.remove",
                format!("removed {user}; their sessions ended"),
            )
        }
        Change::Password(p) => {
            store.set_password(user, &p)?;
            (
                "user.password",
                format!("set a new password for {user}; their sessions ended"),
            )
        }
        Change::Role(role) => {
            store.set_role(user, role)?;
            (
                "user.role",
                format!("{user} is now {}; their sessions ended", role.as_str()),
            )
        }
        Change::SignOut => {
            store.end_sessions(user)?;
            ("user.sign_out", format!("signed {user} out everywhere"))
        }
        Change::TotpReset => {
            store.totp_reset(user)?;
            (
                "user.totp_reset",
                format!("took the second factor of {user} away; their sessions ended"),
            )
        }
    };
    audit(&store, action, user, done.clone())?;
    println!("{done}");
    Ok(())
}
