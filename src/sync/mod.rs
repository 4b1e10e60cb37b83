//! Replication of the journal to the hub: protocol and transport only.
//!
//! - `wire`: the frame format and its decoder (pure)
//! - `session`: each side's session as a state machine without I/O (pure)
//! - `transport`: frames over a QUIC stream
//! - `plant`, `hub`: the drivers that run the sessions on quinn connections
//! - `offsite`: backup archives to and from the hub, on streams of their own
//!
//! This module knows nothing of SQLite or PostgreSQL: each side hands its driver a small trait
//! (`plant::PlantJournal`: where entries come from; `hub::HubStore`: where they go).

pub mod hub;
pub mod link;
pub mod offsite;
pub mod plant;
pub mod session;
pub mod transport;
pub mod wire;
