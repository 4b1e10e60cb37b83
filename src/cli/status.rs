//! `plantd status`: asks the running daemon over its control socket.

use anyhow::bail;

use crate::config::PlantConfig;
use crate::control::{self, Request, Response};
use crate::health::State;

pub async fn run(config: &PlantConfig, json: bool) -> anyhow::Result<()> {
    let socket = control::socket_path(&config.data_dir);
    let report = match control::call(&socket, &Request::Status).await? {
        Response::Status(r) => r,
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from the daemon: {other:?}"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let j = &report.journal;
    println!(
        "plantd {}, up {}, data dir {}",
        report.version,
        humantime::format_duration(std::time::Duration::from_secs(report.uptime_s)),
        report.data_dir.display()
    );
    let oldest = match j.oldest_unacked_age_s {
        Some(s) => humantime::format_duration(std::time::Duration::from_secs(s)).to_string(),
        None => "-".into(),
    };
    println!(
        "journal: depth {}, last seq {}, hub-acknowledged seq {}, oldest unacknowledged {}",
        j.depth, j.last_seq, j.hub_acked_seq, oldest
    );
    println!("components:");
    for c in &report.components {
        let state = match c.state {
            State::Ok => "ok",
            State::Starting => "starting",
            State::Unhealthy => "UNHEALTHY",
        };
        println!("  {:<12} {:<10} {}", c.name, state, c.detail);
    }
    Ok(())
}
