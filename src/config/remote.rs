//! The `[remote]` section of `plant.toml`: which actions the hub may carry out on this plant
//! over the replication link (`allow`), and the names of those actions, which the hub, the
//! wire and the plant share.
//!
//! Default: every action is allowed; `allow = []` forbids them all. An unknown name is refused
//! at load, so that a typo never silently forbids (or allows) something.

use serde::Deserialize;

use crate::field::FieldError;

/// An action the hub can ask a plant to carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RemoteAction {
    /// Take a backup now.
    Backup,
    /// Verify a backup (`id`, default the newest).
    Verify,
    /// Restart a stack service (`service`).
    Restart,
    /// Collect a diagnostics bundle (status, stack events, recent log lines, the config).
    Diagnostics,
    /// Island the plant on purpose (it answers before its link goes).
    Island,
    /// Rejoin after an island.
    Rejoin,
    /// Retry the local apply's stopped transaction (`seq`).
    ApplyRetry,
    /// Park the local apply's stopped transaction (`seq`).
    ApplyPark,
}

impl RemoteAction {
    /// Every action, in the order they are documented.
    pub const ALL: [RemoteAction; 8] = [
        RemoteAction::Backup,
        RemoteAction::Verify,
        RemoteAction::Restart,
        RemoteAction::Diagnostics,
        RemoteAction::Island,
        RemoteAction::Rejoin,
        RemoteAction::ApplyRetry,
        RemoteAction::ApplyPark,
    ];

    /// The action's name in plant.toml, on the wire and in the hub's API.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteAction::Backup => "backup",
            RemoteAction::Verify => "verify",
            RemoteAction::Restart => "restart",
            RemoteAction::Diagnostics => "diagnostics",
            RemoteAction::Island => "island",
            RemoteAction::Rejoin => "rejoin",
            RemoteAction::ApplyRetry => "apply_retry",
            RemoteAction::ApplyPark => "apply_park",
        }
    }

    /// The action named `name`, if there is one.
    pub fn parse(name: &str) -> Option<RemoteAction> {
        RemoteAction::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The names of every action, for messages.
    pub fn names() -> String {
        RemoteAction::ALL
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for RemoteAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemote {
    allow: Option<Vec<String>>,
}

/// `[remote]`: the actions the hub may carry out here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    pub allow: Vec<RemoteAction>,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            allow: RemoteAction::ALL.to_vec(),
        }
    }
}

impl RemoteConfig {
    pub(super) fn from_raw(raw: RawRemote) -> Result<RemoteConfig, FieldError> {
        let Some(names) = raw.allow else {
            return Ok(RemoteConfig::default());
        };
        let mut allow = Vec::new();
        for name in &names {
            let action = RemoteAction::parse(name).ok_or_else(|| {
                FieldError::new(
                    "remote.allow",
                    format!(
                        "{name:?} is not a remote action; use some of {} (or [] to forbid all)",
                        RemoteAction::names()
                    ),
                )
            })?;
            if !allow.contains(&action) {
                allow.push(action);
            }
        }
        Ok(RemoteConfig { allow })
    }

    /// Whether the hub may carry out `action` here.
    pub fn allows(&self, action: RemoteAction) -> bool {
        self.allow.contains(&action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in RemoteAction::ALL {
            assert_eq!(RemoteAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(RemoteAction::parse("Backup"), None);
        assert_eq!(RemoteAction::parse(""), None);
    }
}
