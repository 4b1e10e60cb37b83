//! Logging setup, and the host's numbers for the plant's telemetry.
//!
//! Logging: `tracing` to stderr (journald under systemd), filtered by `RUST_LOG` (default
//! `info`), the latest lines also kept in memory for a diagnostics bundle
//! ([`recent_log_lines`]). Secrets (tokens, keys) are never logged.

use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Tee)
        .with_target(false)
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
