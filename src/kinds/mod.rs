//! What a transaction of each kind does in Odoo, independent of any Odoo: the kinds'
//! configuration and their mapping to steps (`mapping`), reading payloads (`payload`), and
//! the shipped kinds' payloads (`shipped`). Pure: no I/O, nothing of plantd's but itself; `config` reads kinds through it
//! and `apply` carries the steps out.

pub mod mapping;
mod payload;
pub mod shipped;
