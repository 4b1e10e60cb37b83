//! Each component's health, as the daemon reports it.
//!
//! Components fail independently: one that cannot start is recorded here as unhealthy with the
//! reason and what to do, and the others go on. The status command and `/healthz` read this.

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    Starting,
    Unhealthy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    pub state: State,
    /// What it is doing, or why it is unhealthy and what to do.
    pub detail: String,
}

/// The registry of component health; cheap to read.
#[derive(Debug, Default)]
pub struct Health {
    components: RwLock<BTreeMap<String, (State, String)>>,
}

impl Health {
    pub fn set(&self, name: &str, state: State, detail: impl Into<String>) {
        let detail = detail.into();
        let mut map = self.components.write().expect("not poisoned");
        let changed = map
            .get(name)
            .is_none_or(|(s, d)| *s != state || *d != detail);
        if changed {
            match state {
                State::Unhealthy => tracing::warn!(component = name, %detail, "unhealthy"),
                _ => tracing::info!(component = name, ?state, %detail, "health"),
            }
            map.insert(name.to_string(), (state, detail));
        }
    }

    pub fn snapshot(&self) -> Vec<Component> {
        self.components
            .read()
            .expect("not poisoned")
            .iter()
            .map(|(name, (state, detail))| Component {
                name: name.clone(),
                state: *state,
                detail: detail.clone(),
            })
            .collect()
    }
}
