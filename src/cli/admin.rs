//! `plantd admin add USER --role admin|viewer`: adds a user of the admin UI, the password read
//! from stdin (one line, so that it never shows in `ps` or the shell's history). Works whether
//! or not the daemon runs: the user store is SQLite in WAL mode.

use std::io::BufRead;

use anyhow::{bail, Context};

use crate::admin::store::{self, AuditEntry, Role, Store};
use crate::config::PlantConfig;

pub fn add(config: &PlantConfig, user: &str, role: &str) -> anyhow::Result<()> {
    let role = Role::parse(role)?;
    store::check_name(user)?;
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("Password for {user} (at least {} characters; it is shown as you type, so prefer `printf '%s\\n' \"$PW\" | plantd admin add ...`):", store::MIN_PASSWORD);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("no password on stdin; pipe it in: printf '%s\\n' \"$PASSWORD\" | plantd admin add {user} --role {}", role.as_str());
    }
    crate::fsutil::create_private_dir(&config.data_dir)?;
    let store = Store::open(&config.data_dir)?;
    store.add(user, role, password, false)?;
    store.audit(&AuditEntry {
        at: store::now(),
        user: "cli".into(),
        action: "admin.add".into(),
        target: Some(user.into()),
        outcome: "ok".into(),
        detail: format!("added with role {}", role.as_str()),
    })?;
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
