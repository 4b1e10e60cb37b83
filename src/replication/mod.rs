//! Replication of the journal to the hub: protocol and transport only.
//!
//! - `wire`: the frame format and its decoder (pure)
//! - `session`: each side's session as a state machine without I/O (pure)
//! - `transport`: frames over a QUIC stream
//! - `plant`, `hub`: the drivers that run the sessions on quinn connections
//! - `transfer`: a file sent whole on a stream of its own (backup copies, update downloads)
//! - `remote`: the hub's actions at a plant, on a stream of their own (arguments, the plant's side)
//! - `logs`: the plant's warnings, errors and stack events, to the hub on a stream of their own
//!
//! This module knows nothing of SQLite or PostgreSQL, backups or updates: each side hands its
//! driver small traits (`plant::PlantJournal`: where entries come from; `plant::ConnectionTask`:
//! work beside the session on each connection, such as backup uploads and update checks;
//! `hub::HubStore`: where entries go; `hub::BackupStreams`, `hub::UpdateStreams`,
//! `hub::RemoteStreams`: who serves a plant's other streams; `remote::Executor`: who carries
//! out the hub's actions at the plant).

pub mod hub;
pub mod link;
pub mod logs;
pub mod plant;
pub mod remote;
pub mod session;
pub mod transfer;
pub mod transport;
pub mod wire;
