//! What a transaction of each kind does in Odoo, independent of any Odoo: the kinds'
//! configuration and their mapping to steps (`mapping`), reading payloads (`payload`), and
//! the shipped kinds' payloads (`shipped`). Pure: no I/O, nothing of plantd's but itself; `config` reads kinds through it
//! and `apply` carries the steps out.

pub mod mapping;
mod payload;
pub mod shipped;

/// Why a payload value is not what its field takes (the "what" of a refusal, whose "where" is
/// the payload field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("must be an external id such as \"stock.stock_location_stock\" (module.name)")]
    NotXmlid,
    #[error("must be text, a number or true/false (Odoo's import takes one value per field)")]
    NotCell,
    /// A time without a UTC offset.
    #[error("{0:?} has no UTC offset, so the time is ambiguous; give one such as \"2026-12-06T08:00:00+01:00\" or \"2026-12-06T07:00:00Z\"")]
    NoOffset(String),
    /// Text that is no time.
    #[error("{0:?} is not a time; give ISO 8601 with a UTC offset, such as \"2026-12-06T08:00:00+01:00\"")]
    NotTime(String),
}
