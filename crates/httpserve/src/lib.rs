//! HTTP plumbing shared by the agent's and the engine's APIs; each API
//! builds its own router, routes and auth middleware on top.
//!
//! - [`token`]: a bearer [`Token`] (constant-time compare, never printed)
//!   and [`bearer`], which finds the one a request presents.
//! - [`error`]: [`ApiError`], every failure as `{"error": kind, "message": ...}`,
//!   plus the 401/404/405 answers and extractor-rejection mapping.
//! - [`validate`]: collecting every problem of a request into one
//!   [`validate::Invalid`].
//! - [`server`]: [`serve`] an axum router until shutdown (with a grace
//!   period), or [`spawn_server`] it on its own thread and runtime.
//! - `testing` (feature `test-support`): a raw HTTP/1.1 client for tests.
//! - `openapi` (feature `test-support`): an OpenAPI 3.1 document as a
//!   checker of answers and requests (JSON Schema 2020-12).

pub mod error;
pub mod server;
pub mod token;
pub mod validate;

#[cfg(feature = "test-support")]
pub mod openapi;
#[cfg(feature = "test-support")]
pub mod testing;

pub use error::ApiError;
pub use server::{serve, spawn_server, ServeError, ServerHandle, BODY_LIMIT, SHUTDOWN_GRACE};
pub use token::{bearer, Token, TokenError, MAX_TOKEN_LEN, MIN_TOKEN_LEN};
