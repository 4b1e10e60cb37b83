//! Replication of the journal to the hub: protocol and transport only.
//!
//! - `wire`: the frame format and its decoder (pure)
//! - `session`: each side's session as a state machine without I/O (pure)
//!
//! This module knows nothing of SQLite or PostgreSQL: each side's driver hands it entries and
//! stores what it passes on.

// The quinn drivers that run these machines (plant replicator, hub listener) are the next step
// of the replication issue; until they land only the tests use this module.
#![cfg_attr(not(test), allow(dead_code))]

pub mod session;
pub mod wire;
