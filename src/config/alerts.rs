//! The `[alerts]` section of `plant.toml` and `hub.toml`: which conditions alert, how urgent
//! each is, when people may be told of the less urgent ones, and where alerts are sent.
//!
//! ```toml
//! [alerts]
//! repeat = "4h"                       # said again this often while the condition holds
//!
//! [alerts.calendar]                   # business hours; info alerts outside them wait
//! timezone = "Europe/Berlin"
//! days = ["mon", "tue", "wed", "thu", "fri"]
//! hours = "07:00-18:00"
//! holidays = ["2026-12-24", "2026-12-25"]
//!
//! [[alerts.rules]]                    # without any, the defaults of [`default_rules`]
//! when = "offline"
//! for = "5m"
//! tier = "production"
//!
//! [[alerts.webhooks]]
//! url = "https://alerts.example.com/plantd"
//! secret_file = "/etc/plantd/alert-webhook.key"   # HMAC-SHA256 key of the signature
//!
//! [alerts.email]
//! server = "smtp.example.com"         # STARTTLS on port 587, always
//! from = "plantd@plant.example.com"
//! to = ["maintenance@plant.example.com"]
//! ```
//!
//! The hub also takes a calendar per plant: `[alerts.calendars.PLANT]`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::field::FieldError;

/// How urgent an alert is: production-impacting alerts always go at once; info alerts wait
/// for business hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Info,
    Production,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Info => "info",
            Tier::Production => "production",
        }
    }
}

/// The conditions an alert rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// At the hub: a plant not heard from. At a plant: its link to the hub down.
    Offline,
    /// A component not ok (the plant's verdict `degraded`).
    Degraded,
    /// A component unhealthy (the plant's verdict `action needed`).
    Failing,
    BackupFailed,
    /// The newest backup (at the hub: the newest copy it holds) older than `after`.
    BackupOverdue,
    /// The apply to Odoo stopped at a transaction it cannot apply.
    ApplyStopped,
    /// Less than `below` percent of the data disk free.
    DiskLow,
    /// A certificate plantd relies on expires within `within`.
    CertExpiry,
    /// A fleet rollout paused (at the hub).
    RolloutPaused,
}

pub const WHENS: [When; 9] = [
    When::Offline,
    When::Degraded,
    When::Failing,
    When::BackupFailed,
    When::BackupOverdue,
    When::ApplyStopped,
    When::DiskLow,
    When::CertExpiry,
    When::RolloutPaused,
];

impl When {
    pub fn as_str(self) -> &'static str {
        match self {
            When::Offline => "offline",
            When::Degraded => "degraded",
            When::Failing => "failing",
            When::BackupFailed => "backup_failed",
            When::BackupOverdue => "backup_overdue",
            When::ApplyStopped => "apply_stopped",
            When::DiskLow => "disk_low",
            When::CertExpiry => "cert_expiry",
            When::RolloutPaused => "rollout_paused",
        }
    }

    fn parse(s: &str) -> Option<When> {
        WHENS.into_iter().find(|w| w.as_str() == s)
    }
}

/// One alert rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub when: When,
    pub tier: Tier,
    /// How long the condition must hold before the alert fires.
    pub hold: Duration,
    /// `backup_overdue`: the age; `cert_expiry`: the time left.
    pub age: Option<Duration>,
    /// `disk_low`: percent free.
    pub below_percent: Option<f64>,
}

/// The rules used when `[alerts]` lists none.
pub fn default_rules() -> Vec<Rule> {
    let rule = |when, tier, hold_s: u64| Rule {
        when,
        tier,
        hold: Duration::from_secs(hold_s),
        age: match when {
            When::BackupOverdue => Some(Duration::from_secs(26 * 3600)),
            When::CertExpiry => Some(Duration::from_secs(14 * 86400)),
            _ => None,
        },
        below_percent: (when == When::DiskLow).then_some(10.0),
    };
    vec![
        rule(When::Offline, Tier::Production, 300),
        rule(When::Failing, Tier::Production, 300),
        rule(When::Degraded, Tier::Info, 1800),
        rule(When::BackupFailed, Tier::Info, 0),
        rule(When::BackupOverdue, Tier::Info, 0),
        rule(When::ApplyStopped, Tier::Production, 0),
        rule(When::DiskLow, Tier::Production, 0),
        rule(When::CertExpiry, Tier::Info, 0),
        rule(When::RolloutPaused, Tier::Info, 0),
    ]
}

/// Business hours in a time zone, with holidays: when info alerts may go.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    pub timezone: jiff::tz::TimeZone,
    /// Monday first.
    pub days: [bool; 7],
    pub opens: jiff::civil::Time,
    /// Before `opens`: the hours run past midnight.
    pub closes: jiff::civil::Time,
    pub holidays: BTreeSet<jiff::civil::Date>,
}

impl Calendar {
    /// Whether `now` is within business hours. A shift past midnight belongs to the day it
    /// started on.
    pub fn is_open(&self, now: jiff::Timestamp) -> bool {
        let local = now.to_zoned_datetime(self.timezone.clone());
        let (date, time) = (local.date(), local.time());
        let worked = |d: jiff::civil::Date| {
            self.days[d.weekday().to_monday_zero_offset() as usize] && !self.holidays.contains(&d)
        };
        if self.opens <= self.closes {
            worked(date) && self.opens <= time && time < self.closes
        } else if time >= self.opens {
            worked(date)
        } else {
            time < self.closes && date.yesterday().is_ok_and(worked)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub url: reqwest::Url,
    /// The file holding the HMAC-SHA256 key of the signature (read at each send, so that it
    /// can be rotated without a restart; checked by [`AlertsConfig::check_files`]).
    pub secret_file: PathBuf,
    pub tiers: BTreeSet<Tier>,
    /// A CA certificate (PEM) to trust beside the system's.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub server: String,
    pub port: u16,
    pub from: String,
    pub to: Vec<String>,
    /// SMTP AUTH: the user and the file holding the password (read at each send).
    pub user: Option<(String, PathBuf)>,
    pub ca_file: Option<PathBuf>,
    pub tiers: BTreeSet<Tier>,
}

/// `[alerts]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    pub rules: Vec<Rule>,
    pub repeat: Duration,
    /// `None`: any hour is business hours.
    pub calendar: Option<Calendar>,
    /// The hub's calendar per plant (a plant without one has `calendar`).
    pub calendars: BTreeMap<String, Calendar>,
    pub webhooks: Vec<Webhook>,
    pub email: Option<Email>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            rules: default_rules(),
            repeat: Duration::from_secs(4 * 3600),
            calendar: None,
            calendars: BTreeMap::new(),
            webhooks: Vec::new(),
            email: None,
        }
    }
}

impl AlertsConfig {
    /// Checks that the files the routes name for secrets can be read and hold one: `parse`
    /// never touches the disk, a daemon's start does.
    pub fn check_files(&self) -> Result<(), FieldError> {
        for (i, w) in self.webhooks.iter().enumerate() {
            read_webhook_secret(&w.secret_file).map_err(|m| {
                FieldError::new(format!("alerts.webhooks[{}].secret_file", i + 1), m)
            })?;
        }
        if let Some((_, file)) = self.email.as_ref().and_then(|e| e.user.as_ref()) {
            read_password(file).map_err(|m| FieldError::new("alerts.email.password_file", m))?;
        }
        Ok(())
    }

    /// The calendar info alerts about `subject` keep to.
    pub fn calendar_of(&self, subject: &str) -> Option<&Calendar> {
        self.calendars.get(subject).or(self.calendar.as_ref())
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    repeat: Option<String>,
    calendar: Option<RawCalendar>,
    #[serde(default)]
    calendars: BTreeMap<String, RawCalendar>,
    rules: Option<Vec<RawRule>>,
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
    email: Option<RawEmail>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    timezone: Option<String>,
    days: Option<Vec<String>>,
    hours: Option<String>,
    #[serde(default)]
    holidays: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    when: String,
    tier: Option<String>,
    #[serde(rename = "for")]
    hold: Option<String>,
    after: Option<String>,
    within: Option<String>,
    below: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    secret_file: PathBuf,
    tiers: Option<Vec<String>>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    server: String,
    port: Option<u16>,
    from: String,
    to: Vec<String>,
    user: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    tiers: Option<Vec<String>>,
}

fn duration(field: &str, text: &str) -> Result<Duration, FieldError> {
    humantime::parse_duration(text).map_err(|e| {
        FieldError::new(
            field,
            format!(
                "{text:?} is not a duration ({e}); write one such as \"5m\", \"4h\" or \"14d\""
            ),
        )
    })
}

fn tiers(field: &str, names: Option<Vec<String>>) -> Result<BTreeSet<Tier>, FieldError> {
    let Some(names) = names else {
        return Ok([Tier::Info, Tier::Production].into());
    };
    let mut set = BTreeSet::new();
    for name in names {
        set.insert(tier(field, &name)?);
    }
    if set.is_empty() {
        return Err(FieldError::new(
            field,
            "is empty: name \"production\", \"info\" or both (or leave it out for both)",
        ));
    }
    Ok(set)
}

fn tier(field: &str, name: &str) -> Result<Tier, FieldError> {
    match name {
        "info" => Ok(Tier::Info),
        "production" => Ok(Tier::Production),
        other => Err(FieldError::new(
            field,
            format!("{other:?} is not a tier; use \"production\" (always sent at once) or \"info\" (waits for business hours)"),
        )),
    }
}

/// The webhook key in `path`: at least 16 bytes once white space around it is trimmed.
pub fn read_webhook_secret(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let trimmed = text.trim_ascii().to_vec();
    if trimmed.len() < 16 {
        return Err(format!(
            "{} holds {} bytes; use a secret of at least 16, such as `openssl rand -hex 32`",
            path.display(),
            trimmed.len()
        ));
    }
    Ok(trimmed)
}

/// The SMTP password in `path`, without its line end.
pub fn read_password(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

fn read_calendar(field: &str, raw: RawCalendar) -> Result<Calendar, FieldError> {
    let timezone = match &raw.timezone {
        None => jiff::tz::TimeZone::system(),
        Some(name) => jiff::tz::TimeZone::get(name).map_err(|_| {
            FieldError::new(
                format!("{field}.timezone"),
                format!("{name:?} is not a time zone this server knows; use an IANA name such as \"Europe/Paris\""),
            )
        })?,
    };
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let mut days = [false; 7];
    match raw.days {
        None => days[..5].fill(true),
        Some(list) if list.is_empty() => {
            return Err(FieldError::new(
                format!("{field}.days"),
                "is empty: info alerts would wait for ever; name the days business hours are kept, such as [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]",
            ))
        }
        Some(list) => {
            for d in list {
                let i = NAMES
                    .iter()
                    .position(|n| d.eq_ignore_ascii_case(n))
                    .ok_or_else(|| {
                        FieldError::new(
                            format!("{field}.days"),
                            format!("{d:?} is not a day; use mon, tue, wed, thu, fri, sat, sun"),
                        )
                    })?;
                days[i] = true;
            }
        }
    }
    let hours = raw.hours.as_deref().unwrap_or("08:00-17:00");
    let bad = || {
        FieldError::new(
            format!("{field}.hours"),
            format!("{hours:?} is not a span of hours; write \"HH:MM-HH:MM\", such as \"07:00-18:00\" (or \"22:00-06:00\" for a night shift)"),
        )
    };
    let (a, b) = hours.split_once('-').ok_or_else(bad)?;
    let time = |s: &str| jiff::civil::Time::strptime("%H:%M", s.trim()).map_err(|_| bad());
    let (opens, closes) = (time(a)?, time(b)?);
    if opens == closes {
        return Err(bad());
    }
    let mut holidays = BTreeSet::new();
    for h in raw.holidays {
        let date: jiff::civil::Date = h.parse().map_err(|_| {
            FieldError::new(
                format!("{field}.holidays"),
                format!("{h:?} is not a date; write \"YYYY-MM-DD\""),
            )
        })?;
        holidays.insert(date);
    }
    Ok(Calendar {
        timezone,
        days,
        opens,
        closes,
        holidays,
    })
}

impl AlertsConfig {
    pub(super) fn from_raw(raw: RawAlerts) -> Result<AlertsConfig, FieldError> {
        let repeat = match raw.repeat {
            None => Duration::from_secs(4 * 3600),
            Some(s) => {
                let d = duration("alerts.repeat", &s)?;
                if d < Duration::from_secs(60) {
                    return Err(FieldError::new(
                        "alerts.repeat",
                        format!("{s:?} is too often; use at least \"1m\""),
                    ));
                }
                d
            }
        };
        let calendar = raw
            .calendar
            .map(|c| read_calendar("alerts.calendar", c))
            .transpose()?;
        let mut calendars = BTreeMap::new();
        for (plant, c) in raw.calendars {
            let field = format!("alerts.calendars.{plant}");
            calendars.insert(plant, read_calendar(&field, c)?);
        }
        let rules = match raw.rules {
            None => default_rules(),
            Some(list) => {
                let mut rules: Vec<Rule> = Vec::new();
                for (i, r) in list.into_iter().enumerate() {
                    let field = |name: &str| format!("alerts.rules[{}].{name}", i + 1);
                    let when = When::parse(&r.when).ok_or_else(|| {
                        FieldError::new(
                            field("when"),
                            format!(
                                "{:?} is not a condition; use one of {}",
                                r.when,
                                WHENS.map(When::as_str).join(", ")
                            ),
                        )
                    })?;
                    if rules.iter().any(|other| other.when == when) {
                        return Err(FieldError::new(
                            field("when"),
                            format!(
                                "a rule for {:?} is already listed; keep one per condition",
                                r.when
                            ),
                        ));
                    }
                    let defaults = default_rules()
                        .into_iter()
                        .find(|d| d.when == when)
                        .expect("every condition has a default");
                    let tier = match &r.tier {
                        None => defaults.tier,
                        Some(t) => tier(&field("tier"), t)?,
                    };
                    let hold = match &r.hold {
                        None => defaults.hold,
                        Some(s) => duration(&field("for"), s)?,
                    };
                    let (age_key, age_text) = match when {
                        When::BackupOverdue => ("after", r.after.as_deref()),
                        When::CertExpiry => ("within", r.within.as_deref()),
                        _ => ("", None),
                    };
                    let misplaced = [
                        ("after", r.after.is_some() && when != When::BackupOverdue),
                        ("within", r.within.is_some() && when != When::CertExpiry),
                        ("below", r.below.is_some() && when != When::DiskLow),
                    ];
                    if let Some((key, _)) = misplaced.iter().find(|(_, bad)| *bad) {
                        return Err(FieldError::new(
                            field(key),
                            format!(
                                "does not apply to {:?}: after is for backup_overdue, within for cert_expiry, below for disk_low",
                                r.when
                            ),
                        ));
                    }
                    let age = match age_text {
                        Some(s) => Some(duration(&field(age_key), s)?),
                        None => defaults.age,
                    };
                    let below_percent = match r.below {
                        Some(p) if !(p > 0.0 && p < 100.0) => {
                            return Err(FieldError::new(
                                field("below"),
                                format!("{p} is not a percentage between 0 and 100 (exclusive)"),
                            ))
                        }
                        Some(p) => Some(p),
                        None => defaults.below_percent,
                    };
                    rules.push(Rule {
                        when,
                        tier,
                        hold,
                        age,
                        below_percent,
                    });
                }
                rules
            }
        };
        let mut webhooks = Vec::new();
        for (i, w) in raw.webhooks.into_iter().enumerate() {
            let field = |name: &str| format!("alerts.webhooks[{}].{name}", i + 1);
            // Every connection off the host is TLS (DESIGN.md): plain http only to this host.
            // The URL is not repeated in the message: its path may be the webhook's key.
            let loopback = |u: &reqwest::Url| match u.host_str() {
                Some("localhost") => true,
                Some(h) => h
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback()),
                None => false,
            };
            let url = reqwest::Url::parse(&w.url)
                .ok()
                .filter(|u| u.host().is_some())
                .filter(|u| u.scheme() == "https" || (u.scheme() == "http" && loopback(u)))
                .ok_or_else(|| {
                    FieldError::new(
                        field("url"),
                        "is not an https URL (plain http is taken only to this host, such as http://127.0.0.1:9000/hook)",
                    )
                })?;
            webhooks.push(Webhook {
                url,
                secret_file: w.secret_file,
                tiers: tiers(&field("tiers"), w.tiers)?,
                ca_file: w.ca_file,
            });
        }
        let email = match raw.email {
            None => None,
            Some(e) => {
                if e.server.trim().is_empty() || e.server.contains([':', '/', ' ']) {
                    return Err(FieldError::new(
                        "alerts.email.server",
                        format!("{:?} is not a host name; give the port in `port`", e.server),
                    ));
                }
                let address = |field: &str, a: &str| {
                    a.parse::<lettre::Address>().map_err(|_| {
                        FieldError::new(field, format!("{a:?} is not an e-mail address"))
                    })
                };
                address("alerts.email.from", &e.from)?;
                if e.to.is_empty() {
                    return Err(FieldError::new(
                        "alerts.email.to",
                        "is empty; name at least one recipient",
                    ));
                }
                for a in &e.to {
                    address("alerts.email.to", a)?;
                }
                let user = match (e.user, e.password_file) {
                    (None, None) => None,
                    (Some(u), Some(p)) => Some((u, p)),
                    (Some(_), None) => {
                        return Err(FieldError::new(
                            "alerts.email.password_file",
                            "missing; `user` needs a file holding the password",
                        ))
                    }
                    (None, Some(_)) => {
                        return Err(FieldError::new(
                            "alerts.email.user",
                            "missing; `password_file` needs the user it is the password of",
                        ))
                    }
                };
                if e.port == Some(465) {
                    return Err(FieldError::new(
                        "alerts.email.port",
                        "465 is SMTP over TLS from the first byte; plantd speaks STARTTLS (required), on 587 (the default) or 25",
                    ));
                }
                Some(Email {
                    server: e.server,
                    port: e.port.unwrap_or(587),
                    from: e.from,
                    to: e.to,
                    user,
                    ca_file: e.ca_file,
                    tiers: tiers("alerts.email.tiers", e.tiers)?,
                })
            }
        };
        Ok(AlertsConfig {
            rules,
            repeat,
            calendar,
            calendars,
            webhooks,
            email,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AlertsConfig, FieldError> {
        let raw: RawAlerts = toml::from_str(text).unwrap();
        AlertsConfig::from_raw(raw)
    }

    #[test]
    fn rules_take_their_defaults_and_refuse_what_does_not_fit() {
        let c = parse("[[rules]]\nwhen = \"offline\"\nfor = \"1m\"\n").unwrap();
        assert_eq!(c.rules.len(), 1);
        assert_eq!(c.rules[0].tier, Tier::Production);
        assert_eq!(c.rules[0].hold, Duration::from_secs(60));
        let e = parse("[[rules]]\nwhen = \"offline\"\nbelow = 5.0\n").unwrap_err();
        assert_eq!(e.field, "alerts.rules[1].below");
        let e = parse("[[rules]]\nwhen = \"sunburn\"\n").unwrap_err();
        assert!(e.message.contains("disk_low"), "{}", e.message);
        let e =
            parse("[[rules]]\nwhen = \"disk_low\"\n[[rules]]\nwhen = \"disk_low\"\n").unwrap_err();
        assert_eq!(e.field, "alerts.rules[2].when");
        let e = parse("[[rules]]\nwhen = \"disk_low\"\ntier = \"urgent\"\n").unwrap_err();
        assert_eq!(e.field, "alerts.rules[1].tier");
        assert_eq!(parse("").unwrap().rules, default_rules());
    }

    #[test]
    fn business_hours_keep_to_days_holidays_and_night_shifts() {
        let c = parse(
            "[calendar]\ntimezone = \"Europe/Berlin\"\nhours = \"07:00-18:00\"\nholidays = [\"2026-12-24\"]\n",
        )
        .unwrap()
        .calendar
        .unwrap();
        let at = |s: &str| -> jiff::Timestamp { s.parse().unwrap() };
        // Monday 2026-12-07, 09:00 in Berlin is 08:00 UTC.
        assert!(c.is_open(at("2026-12-07T08:00:00Z")));
        assert!(!c.is_open(at("2026-12-07T05:59:00Z")));
        assert!(!c.is_open(at("2026-12-07T17:00:00Z")));
        // Saturday, and a holiday (a Thursday).
        assert!(!c.is_open(at("2026-12-12T10:00:00Z")));
        assert!(!c.is_open(at("2026-12-24T10:00:00Z")));
        let night =
            parse("[calendar]\ntimezone = \"UTC\"\ndays = [\"fri\"]\nhours = \"22:00-06:00\"\n")
                .unwrap()
                .calendar
                .unwrap();
        // Friday 23:00 and Saturday 05:00 belong to Friday's shift; Friday 05:00 does not.
        assert!(night.is_open(at("2026-12-11T23:00:00Z")));
        assert!(night.is_open(at("2026-12-12T05:00:00Z")));
        assert!(!night.is_open(at("2026-12-11T05:00:00Z")));
        let e = parse("[calendar]\nhours = \"7-18\"\n").unwrap_err();
        assert_eq!(e.field, "alerts.calendar.hours");
    }

    #[test]
    fn routes_need_their_secrets_and_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "tiny\n").unwrap();
        let c = parse(&format!(
            "[[webhooks]]\nurl = \"https://x.example/h\"\nsecret_file = {:?}\n",
            short
        ))
        .unwrap();
        let e = c.check_files().unwrap_err();
        assert_eq!(e.field, "alerts.webhooks[1].secret_file");
        for url in [
            "ftp://x.example/h",
            "http://x.example/h",
            "http://10.0.0.9/h",
        ] {
            let text = format!("[[webhooks]]\nurl = \"{url}\"\nsecret_file = \"/k\"\n");
            assert_eq!(
                parse(&text).unwrap_err().field,
                "alerts.webhooks[1].url",
                "{url}"
            );
        }
        for url in [
            "https://x.example/h",
            "http://127.0.0.1:9/h",
            "http://[::1]:9/h",
        ] {
            let text = format!("[[webhooks]]\nurl = \"{url}\"\nsecret_file = \"/k\"\n");
            assert!(parse(&text).is_ok(), "{url}");
        }
        let e = parse(
            "[email]\nserver = \"smtp.example.com:25\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n",
        )
        .unwrap_err();
        assert_eq!(e.field, "alerts.email.server");
        let e =
            parse("[email]\nserver = \"smtp.example.com\"\nfrom = \"a@b.c\"\nto = [\"nobody\"]\n")
                .unwrap_err();
        assert_eq!(e.field, "alerts.email.to");
        let c = parse("[email]\nserver = \"smtp.example.com\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\ntiers = [\"production\"]\n")
            .unwrap();
        assert_eq!(c.email.unwrap().port, 587);
    }
}
