//! Integration tests: each drives the real `plantd` binary as a device, an admin and a
//! crash would. One test binary, one module per concern; what they share with the benchmarks
//! is the `plantd-testkit` crate (tests/testkit/), reached here as `crate::harness`, `crate::fleet`,
//! and through `stack`, `odoo` and `real_odoo`, which add their tests to its helpers.

pub use plantd_testkit::{fleet, harness};

mod admin;
mod alerts;
mod apply_chaos;
mod apply_ui;
mod backup;
mod bad_input;
mod bounded;
mod chaos;
mod cli;
mod crash;
mod disk_full;
mod floods;
mod history;
mod hub_limits;
mod identity;
mod import_hostile;
mod installer;
mod odoo;
mod oidc;
mod real_odoo;
mod real_odoo_stack;
mod releases;
mod remote;
mod replication;
mod restore_apply;
mod scopes;
mod smoke;
mod stack;
mod units;
mod update;
