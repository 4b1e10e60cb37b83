//! Commands with a time limit, and the Docker objects a run leaves behind: what the benchmarks
//! that drive the docker CLI and docker-compose share.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest a quick docker command may run.
pub const DOCKER_LIMIT: Duration = Duration::from_secs(120);

/// Runs a command to its end, or kills it after `limit`; its output, drained while it runs so
/// that a chatty command cannot block on a full pipe.
pub fn run(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut v);
            }
            v
        })
    }
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    match wait_for(&mut child, limit) {
        Some(status) => Ok(Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }),
        None => Err(format!("{cmd:?} did not finish in {} s", limit.as_secs())),
    }
}

/// Waits for `child` to exit, or kills it after `limit` (`None`).
pub fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// `docker ARGS`, its stdout split in words (ids, names); empty on any failure.
pub fn docker_words(args: &[&str]) -> Vec<String> {
    match run(Command::new("docker").args(args), DOCKER_LIMIT) {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// What carries `label` (`key=value`): containers, volumes and networks, as `kind id` strings.
pub fn leftovers(label: &str) -> Vec<String> {
    let filter = format!("label={label}");
    let mut all = Vec::new();
    for (kind, args) in [
        ("container", vec!["ps", "-aq", "--filter", &filter]),
        ("volume", vec!["volume", "ls", "-q", "--filter", &filter]),
        ("network", vec!["network", "ls", "-q", "--filter", &filter]),
    ] {
        all.extend(
            docker_words(&args)
                .into_iter()
                .map(|id| format!("{kind} {id}")),
        );
    }
    all
}

/// Unpauses the paused containers that carry `label`, so that they can be stopped.
pub fn unpause(label: &str) {
    let filter = format!("label={label}");
    let paused = docker_words(&["ps", "-q", "--filter", &filter, "--filter", "status=paused"]);
    if !paused.is_empty() {
        let _ = run(
            Command::new("docker").arg("unpause").args(&paused),
            DOCKER_LIMIT,
        );
    }
}

/// Removes by force whatever carries `label` (paused containers unpaused first, so that they
/// can be stopped), and says what is left.
pub fn remove_by_label(label: &str) {
    let filter = format!("label={label}");
    unpause(label);
    for (rm, ls) in [
        (
            vec!["rm", "-f", "-v"],
            vec!["ps", "-aq", "--filter", &filter],
        ),
        (
            vec!["volume", "rm", "-f"],
            vec!["volume", "ls", "-q", "--filter", &filter],
        ),
        (
            vec!["network", "rm"],
            vec!["network", "ls", "-q", "--filter", &filter],
        ),
    ] {
        let ids = docker_words(&ls);
        if !ids.is_empty() {
            let _ = run(Command::new("docker").args(&rm).args(&ids), DOCKER_LIMIT);
        }
    }
    let left = leftovers(label);
    if !left.is_empty() {
        eprintln!("warning: could not remove {left:?} (label {label}); remove them by hand");
    }
}
