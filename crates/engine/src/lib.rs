//! `nosplit engine`'s runtime: the I/O around the pure core
//! (`nosplit-engine-core`): heartbeat listeners on the three planes
//! ([`beats`]), the storage truth per domain (a lockspace watcher from
//! `nosplit-lease-runtime`), storage domain and lease creation
//! ([`domainops`]), commands to the agents, the store and the REST API.

pub mod agent_tokens;
pub mod beats;
pub mod config;
pub mod domainops;
mod ops;
mod register;
pub mod runtime;

pub use runtime::Engine;
