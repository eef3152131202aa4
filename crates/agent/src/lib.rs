//! `nosplit agent`, one per host (ARCHITECTURE sections 3 to 5): it runs
//! VMs bound to their leases through `leased`, sends heartbeats on every
//! network plane, reports events, and answers the engine's commands over an
//! authenticated HTTP API.
//!
//! - [`model`]: the API's data types and the [`model::AgentOps`] seam
//!   between the HTTP layer and the agent's core.
//! - [`config`]: the agent's TOML configuration, checked into
//!   [`config::AgentConfig`].
//! - [`http`]: the authenticated HTTP API serving an [`model::AgentOps`].
//! - [`register`]: registration with the engine (host facts, own token).

pub mod client;
pub mod config;
pub mod core;
pub mod freeze;
pub mod heartbeat;
pub mod http;
pub mod model;
pub mod register;
