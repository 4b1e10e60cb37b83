//! The `[backup]` section of `plant.toml`: when the daemon takes backups, which it keeps, in
//! which time zone its days are counted, and whom archives are encrypted to.

use std::str::FromStr;

use serde::Deserialize;

use crate::field::FieldError;
use crate::retention::{Policy, Schedule};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackup {
    schedule: Option<Schedule>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    timezone: Option<String>,
    encrypt_to: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackupConfig {
    /// "daily HH:MM" (plant time) or "off"; default daily at 02:00.
    pub schedule: Schedule,
    pub policy: Policy,
    /// An IANA time zone such as "Europe/Paris"; `None`: the server's own (`/etc/localtime`).
    pub timezone: Option<String>,
    /// age recipients ("age1..."); when there are any, archives are `.tar.zst.age`.
    pub encrypt_to: Vec<String>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig::from_raw(RawBackup::default()).expect("the defaults are valid")
    }
}

impl BackupConfig {
    pub(super) fn from_raw(raw: RawBackup) -> Result<BackupConfig, FieldError> {
        let defaults = Policy::default();
        let timezone = match raw.timezone {
            None => None,
            Some(name) => {
                jiff::tz::TimeZone::get(&name).map_err(|_| {
                    FieldError::new(
                        "backup.timezone",
                        format!("{name:?} is not a time zone this server knows; use an IANA name such as \"Europe/Paris\", or leave it out for the server's own"),
                    )
                })?;
                Some(name)
            }
        };
        let encrypt_to = raw.encrypt_to.unwrap_or_default();
        for (i, r) in encrypt_to.iter().enumerate() {
            if age::x25519::Recipient::from_str(r).is_err() {
                return Err(FieldError::new(
                    "backup.encrypt_to",
                    format!("entry {} ({r:?}) is not an age recipient; use a public key such as \"age1...\" from `age-keygen -y KEYFILE`", i + 1),
                ));
            }
        }
        Ok(BackupConfig {
            schedule: raw.schedule.unwrap_or_default(),
            policy: Policy {
                keep_daily: raw.keep_daily.unwrap_or(defaults.keep_daily),
                keep_weekly: raw.keep_weekly.unwrap_or(defaults.keep_weekly),
                keep_monthly: raw.keep_monthly.unwrap_or(defaults.keep_monthly),
            },
            timezone,
            encrypt_to,
        })
    }

    /// The time zone the schedule and the retention's days are in.
    pub fn tz(&self) -> jiff::tz::TimeZone {
        self.timezone
            .as_deref()
            .and_then(|name| jiff::tz::TimeZone::get(name).ok())
            .unwrap_or_else(jiff::tz::TimeZone::system)
    }
}
