//! Logging setup, and the host's numbers for the plant's telemetry.
//!
//! Logging: `tracing` to stderr (journald under systemd), filtered by `RUST_LOG` (default
//! `info`). Secrets (tokens, keys) are never logged.

use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
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
