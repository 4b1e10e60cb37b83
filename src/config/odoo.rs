//! The `[odoo]` section of `plant.toml`: the plant's Odoo as plantd calls it (`plantd odoo
//! call`, and the local apply of transactions). Every field has a default for the stack plantd
//! supervises, except the API key, which only Odoo can issue.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::field::FieldError;
use crate::odoo::{ApiChoice, Target};

/// Why there is no Odoo to call: what `[odoo]` lacks, or its key file.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("the stack's Odoo is not running, and [odoo] url is not set")]
    NotRunning,
    #[error("set [odoo] url in plant.toml (this plant supervises no stack whose Odoo plantd could call)")]
    NoUrl,
    #[error("set [odoo] database in plant.toml")]
    NoDatabase,
    #[error("set [odoo] key_file in plant.toml: a file holding an API key of Odoo user {login:?} (in Odoo: Preferences, Account Security, New API Key)")]
    NoKeyFile { login: String },
    #[error("reading [odoo] key_file {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("[odoo] key_file {0} is empty")]
    EmptyKey(PathBuf),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOdoo {
    url: Option<String>,
    database: Option<String>,
    login: Option<String>,
    key_file: Option<PathBuf>,
    api: Option<ApiChoice>,
    timeout: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OdooConfig {
    /// `None`: the supervised stack's Odoo, at its address on the stack's network.
    pub url: Option<String>,
    /// `None`: the stack's `odoo_database`.
    pub database: Option<String>,
    pub login: String,
    /// A file holding the user's API key (mode 0600, owned by plantd's user).
    pub key_file: Option<PathBuf>,
    pub api: ApiChoice,
    pub timeout: Duration,
}

impl Default for OdooConfig {
    fn default() -> Self {
        OdooConfig::from_raw(RawOdoo::default()).expect("the defaults are valid")
    }
}

impl OdooConfig {
    pub(super) fn from_raw(raw: RawOdoo) -> Result<OdooConfig, FieldError> {
        let err = |field: &str, message: String| FieldError::new(format!("odoo.{field}"), message);
        let url = match raw.url {
            None => None,
            Some(u) => {
                let parsed = reqwest::Url::parse(&u)
                    .ok()
                    .filter(|p| matches!(p.scheme(), "http" | "https") && p.host_str().is_some());
                if parsed.is_none() {
                    return Err(err(
                        "url",
                        format!(
                            "{u:?} is not an http(s) URL; use one such as \"http://10.0.0.5:8069\""
                        ),
                    ));
                }
                Some(u.trim_end_matches('/').to_string())
            }
        };
        if let Some(d) = &raw.database {
            if d.trim().is_empty() {
                return Err(err(
                    "database",
                    "empty; name the Odoo database, or leave it out for the stack's".into(),
                ));
            }
        }
        let login = raw.login.unwrap_or_else(|| "admin".into());
        if login.trim().is_empty() {
            return Err(err(
                "login",
                "empty; name the Odoo user plantd acts as".into(),
            ));
        }
        if let Some(f) = &raw.key_file {
            if f.is_relative() {
                return Err(err(
                    "key_file",
                    format!(
                        "{f:?} is relative; use an absolute path such as \"/etc/plantd/odoo.key\""
                    ),
                ));
            }
        }
        let timeout = match raw.timeout.as_deref() {
            None => Duration::from_secs(60),
            Some(s) => match humantime::parse_duration(s) {
                Ok(d) if (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) => d,
                Ok(_) => {
                    return Err(err(
                        "timeout",
                        format!("{s:?} is out of range; use 1s to 1h"),
                    ))
                }
                Err(e) => {
                    return Err(err(
                        "timeout",
                        format!("{s:?} is not a duration ({e}); use one such as \"60s\""),
                    ))
                }
            },
        };
        Ok(OdooConfig {
            url,
            database: raw.database,
            login,
            key_file: raw.key_file,
            api: raw.api.unwrap_or(ApiChoice::Auto),
            timeout,
        })
    }

    /// Where to call, given the supervised stack (its config, and Odoo's address while it runs).
    pub fn target(
        &self,
        stack: Option<(&super::StackConfig, Option<IpAddr>)>,
    ) -> Result<Target, TargetError> {
        let url = match (&self.url, stack) {
            (Some(u), _) => u.clone(),
            (None, Some((_, Some(ip)))) => {
                format!("http://{}", std::net::SocketAddr::new(ip, 8069))
            }
            (None, Some((_, None))) => return Err(TargetError::NotRunning),
            (None, None) => return Err(TargetError::NoUrl),
        };
        let database = match (&self.database, stack) {
            (Some(d), _) => d.clone(),
            (None, Some((s, _))) => s.odoo_database.clone(),
            (None, None) => return Err(TargetError::NoDatabase),
        };
        let Some(key_file) = &self.key_file else {
            return Err(TargetError::NoKeyFile {
                login: self.login.clone(),
            });
        };
        let key = std::fs::read_to_string(key_file)
            .map_err(|source| TargetError::ReadKey {
                path: key_file.clone(),
                source,
            })?
            .trim()
            .to_string();
        if key.is_empty() {
            return Err(TargetError::EmptyKey(key_file.clone()));
        }
        Ok(Target {
            url,
            database,
            login: self.login.clone(),
            key,
            api: self.api,
            timeout: self.timeout,
        })
    }
}
