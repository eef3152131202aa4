//! The engine's REST API (ARCHITECTURE section 3 and 5).
//!
//! - [`ops::EngineOps`] is the seam to the engine runtime: the server only
//!   checks, authorises and translates; the runtime does the work.
//! - [`types`] holds the request and response shapes that
//!   [`nosplit_engine_core::model`] does not, and [`types::EngineError`].
//! - [`auth`]: bearer tokens with two roles, `admin` and `user`.
//! - [`validate`]: every input checked at the edge, all problems in one 400.
//! - [`server`]: the axum 0.8 server ([`server::spawn_server`] for a
//!   synchronous `main`), driven by one route table that the test suite
//!   checks against `crates/engine-api/openapi.yaml`.
//! - [`client`]: a blocking client with one method per route, for the CLI.

pub mod auth;
pub mod client;
pub mod ops;
pub mod server;
pub mod types;
pub mod validate;
