//! The API contract: the plant's and the hub's OpenAPI documents are valid OpenAPI 3.1, list
//! exactly the routes the servers have, and every answer of a live plant and a live hub matches
//! them, as Schemathesis (pinned in `tests/contract/requirements.txt`, installed by
//! `tests/run.sh` into `target/contract-venv`) checks with all of its checks, a fixed seed and a
//! bounded number of cases. Each run's summary goes to the test log unconditionally.

pub use plantd_testkit::{fleet, harness};

mod hub;
mod plant;
mod routes;
mod schemathesis;
mod why;
