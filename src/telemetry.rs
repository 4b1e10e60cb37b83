//! Logging setup, and the host's numbers for the plant's telemetry.
//!
//! Logging: `tracing` to stderr (journald under systemd), filtered by `RUST_LOG` (default
//! `info`), the latest lines also kept in memory for a diagnostics bundle
//! ([`recent_log_lines`]), and its warnings, errors and stack events queued for the hub
//! ([`take_shipped`]; `replication::logs` sends them). Secrets (tokens, keys) are never
//! logged.

use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(|| Tee)
                // Colours for a person at a terminal only: a redirected log (a file, journald,
                // a pipe) gets plain text.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false),
        )
        .with(Ship)
        .try_init();
}

/// How many of its own log lines the process keeps in memory (for a diagnostics bundle).
const KEPT_LINES: usize = 2000;

/// The process's latest log lines, oldest first, escape codes removed.
static RECENT: Mutex<std::collections::VecDeque<String>> =
    Mutex::new(std::collections::VecDeque::new());

/// Writes log output to stderr and keeps its lines in [`RECENT`].
struct Tee;

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = std::io::stderr().write(buf)?;
        keep(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn keep(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let Ok(mut recent) = RECENT.lock() else {
        return;
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if recent.len() == KEPT_LINES {
            recent.pop_front();
        }
        recent.push_back(strip_escapes(line));
    }
}

/// `line` without ANSI escape sequences (the colours of a terminal's log).
fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … final byte in @..~
            if chars.next() == Some('[') {
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The process's last `n` log lines (at most those kept), oldest first.
pub fn recent_log_lines(n: usize) -> Vec<String> {
    let recent = RECENT.lock().map(|r| r.clone()).unwrap_or_default();
    let skip = recent.len().saturating_sub(n);
    recent.into_iter().skip(skip).collect()
}

/// [`recent_log_lines`] to show to someone: a line with the first-run setup code (which
/// makes the first admin) is left out.
pub fn shareable_log_lines(n: usize) -> Vec<String> {
    recent_log_lines(n)
        .into_iter()
        .map(|l| {
            if l.contains("setup_code") || l.contains("setup code") {
                "(left out: a line with the first-run setup code)".to_string()
            } else {
                l
            }
        })
        .collect()
}

/// A log line for the hub.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    /// `error`, `warn` or `info`.
    pub level: String,
    pub target: String,
    /// The message and the event's fields (`key=value`), at most [`MAX_LOG_LINE`] bytes.
    pub message: String,
}

/// The target of events that stay on this machine: never queued for the hub (the first-run
/// setup code is one).
pub const LOCAL_ONLY: &str = "plantd::local_only";

/// Lines queued for the hub at most; when full, the oldest are dropped (and counted).
pub const SHIP_QUEUE: usize = 10_000;
/// The longest message shipped, in bytes.
pub const MAX_LOG_LINE: usize = 4096;

#[derive(Default)]
struct Shipped {
    lines: std::collections::VecDeque<LogLine>,
    dropped: u64,
}

static SHIPPED: Mutex<Shipped> = Mutex::new(Shipped {
    lines: std::collections::VecDeque::new(),
    dropped: 0,
});

/// Whether lines are queued for a hub: only `plantd up` sends them ([`ship_to_hub`]); the
/// hub and the command line would only fill a queue nobody reads.
static SHIPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Queues this process's warnings, errors and stack events for the hub from now on.
pub fn ship_to_hub() {
    SHIPPING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Queues warnings and errors, and the stack's events (`info` from `plantd::stack`), for the
/// hub, once [`ship_to_hub`] was called. Never blocks: a full queue drops its oldest line.
struct Ship;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Ship {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if !SHIPPING.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let meta = event.metadata();
        let level = *meta.level();
        let stack = level == tracing::Level::INFO && meta.target().starts_with("plantd::stack");
        if (level > tracing::Level::WARN && !stack) || meta.target() == LOCAL_ONLY {
            return;
        }
        let mut text = Fields(String::new(), String::new(), false);
        event.record(&mut text);
        if text.2 {
            return;
        }
        let mut message = text.0;
        message.push_str(&text.1);
        // No terminal escapes, and no credentials of a URL, leave the machine.
        let mut message: String = without_url_secrets(&message)
            .chars()
            .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
            .collect();
        if message.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let line = LogLine {
            at: jiff::Timestamp::now()
                .round(jiff::Unit::Millisecond)
                .unwrap_or_else(|_| jiff::Timestamp::now())
                .to_string(),
            level: level.as_str().to_ascii_lowercase(),
            target: meta.target().to_string(),
            message,
        };
        push_shipped(line);
    }
}

fn push_shipped(line: LogLine) {
    let Ok(mut q) = SHIPPED.lock() else { return };
    if q.lines.len() >= SHIP_QUEUE {
        q.lines.pop_front();
        q.dropped += 1;
    }
    q.lines.push_back(line);
}

/// The message (first) and the other fields (` key=value`) of an event, and whether it has a
/// field that must not leave the machine (`setup_code`).
struct Fields(String, String, bool);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "setup_code" {
            self.2 = true;
        } else if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.1, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        use std::fmt::Write;
        if field.name() == "setup_code" {
            self.2 = true;
        } else if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.1, " {}={value}", field.name());
        }
    }
}

/// `text` with the user, password and query of every URL in it replaced by `***`
/// (`https://user:pass@host/p?token=x` becomes `https://***@host/p?***`).
pub fn without_url_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']' | '`')
            })
            .unwrap_or(after.len());
        let (url, tail) = after.split_at(end);
        let (authority, path) = url.split_at(url.find('/').unwrap_or(url.len()));
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        match path.find('?') {
            Some(q) => {
                out.push_str(&path[..=q]);
                out.push_str("***");
            }
            None => out.push_str(path),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Takes the oldest queued lines, up to `max_lines` and about `max_bytes`, and how many were
/// dropped since the last take.
pub fn take_shipped(max_lines: usize, max_bytes: usize) -> (Vec<LogLine>, u64) {
    let Ok(mut q) = SHIPPED.lock() else {
        return (Vec::new(), 0);
    };
    let (mut out, mut bytes) = (Vec::new(), 0);
    while out.len() < max_lines {
        let Some(next) = q.lines.front() else { break };
        // The line as it is sent, and its comma.
        let size = serde_json::to_string(next).map_or(usize::MAX / 2, |j| j.len() + 1);
        if !out.is_empty() && bytes + size > max_bytes {
            break;
        }
        bytes += size;
        out.extend(q.lines.pop_front());
    }
    (out, std::mem::take(&mut q.dropped))
}

/// Puts lines that could not be sent back at the front of the queue (as room allows; what
/// does not fit counts as dropped).
pub fn requeue_shipped(lines: Vec<LogLine>, dropped: u64) {
    let Ok(mut q) = SHIPPED.lock() else { return };
    q.dropped += dropped;
    for line in lines.into_iter().rev() {
        if q.lines.len() >= SHIP_QUEUE {
            q.dropped += 1;
            continue;
        }
        q.lines.push_front(line);
    }
}

/// CPU, memory and disk of this host, from sysinfo and statvfs.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Host {
    /// Average CPU use since the previous reading, percent.
    pub cpu_percent: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// Free and total bytes of the file system holding the data directory.
    pub disk_free_bytes: u64,
    pub disk_total_bytes: u64,
}

/// Reads [`Host`] repeatedly; CPU use is measured between two readings.
pub struct HostProbe {
    system: Option<Mutex<sysinfo::System>>,
}

impl Default for HostProbe {
    fn default() -> Self {
        HostProbe {
            system: sysinfo::System::new().ok().map(Mutex::new),
        }
    }
}

impl HostProbe {
    pub fn read(&self, data_dir: &Path) -> Host {
        let (cpu_percent, memory_used_bytes, memory_total_bytes) = match &self.system {
            Some(s) => {
                let mut s = s.lock().expect("not poisoned");
                s.refresh_cpu_usage();
                s.refresh_memory();
                (s.global_cpu_usage(), s.used_memory(), s.total_memory())
            }
            None => (0.0, 0, 0),
        };
        let (disk_free_bytes, disk_total_bytes) = rustix::fs::statvfs(data_dir)
            .map(|v| {
                (
                    v.f_bavail.saturating_mul(v.f_frsize),
                    v.f_blocks.saturating_mul(v.f_frsize),
                )
            })
            .unwrap_or((0, 0));
        Host {
            cpu_percent,
            memory_used_bytes,
            memory_total_bytes,
            disk_free_bytes,
            disk_total_bytes,
        }
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn warnings_and_stack_events_are_queued_for_the_hub_but_not_secrets() {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(Ship);
        ship_to_hub();
        let _ = take_shipped(usize::MAX, usize::MAX);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(service = "odoo", "first {}", 1);
            tracing::info!("not shipped: info from elsewhere");
            tracing::info!(target: "plantd::stack::supervisor", "odoo restarted");
            tracing::warn!(setup_code = %"ABCD-EFGH", "code ABCD-EFGH");
            tracing::warn!(target: LOCAL_ONLY, "stays here");
            tracing::error!("{}", "é".repeat(MAX_LOG_LINE));
        });
        let (lines, dropped) = take_shipped(usize::MAX, usize::MAX);
        let texts: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(texts[..2], ["first 1 service=odoo", "odoo restarted"]);
        assert_eq!(lines.len(), 3, "{texts:?}");
        assert_eq!(lines[2].level, "error");
        assert!(lines[2].message.len() <= MAX_LOG_LINE);
        assert_eq!(dropped, 0);
        requeue_shipped(lines, 2);
        let (again, dropped) = take_shipped(1, usize::MAX);
        assert_eq!((again.len(), dropped), (1, 2));
        let _ = take_shipped(usize::MAX, usize::MAX);
    }

    #[test]
    fn urls_lose_their_credentials_and_queries() {
        assert_eq!(
            super::without_url_secrets(
                "GET https://ann:pw@odoo.example/web?token=s3 failed; see http://h/x"
            ),
            "GET https://***@odoo.example/web?*** failed; see http://h/x"
        );
        assert_eq!(super::without_url_secrets("no url here"), "no url here");
        assert_eq!(
            super::without_url_secrets("\"https://hooks.example/T/B?x=1\""),
            "\"https://hooks.example/T/B?***\""
        );
    }

    #[test]
    fn kept_lines_lose_their_escape_codes_and_stay_bounded() {
        assert_eq!(
            super::strip_escapes("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m up"),
            "2026  INFO up"
        );
        for i in 0..super::KEPT_LINES + 10 {
            super::keep(format!("line {i}\n").as_bytes());
        }
        let last = super::recent_log_lines(3);
        let want = format!("line {}", super::KEPT_LINES + 9);
        assert_eq!(last.last(), Some(&want));
        assert!(super::recent_log_lines(usize::MAX).len() <= super::KEPT_LINES);
    }
}
