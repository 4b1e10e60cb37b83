//! Fleet updates, the plant's side and the parts the hub shares: release signatures
//! (`release`) and the waves of a rollout (`rollout`). Running a rollout, the download over the
//! QUIC link, the binary swap, the health gate and the rollback are the next steps (see the
//! fleet updates issue).

pub mod release;
pub mod rollout;
