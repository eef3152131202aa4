//! The engine's pure core (ARCHITECTURE section 5): what the engine knows
//! ([`model`]) and how it decides. No I/O, no clock: the runtime feeds
//! inputs with the time and carries out the commands.
//!
//! - [`detect`]: heartbeats per plane, the storage truth (host leases), the
//!   host state machine, the HA strategy, the lease gate, self-defense.
//! - [`recovery`]: the restart scheduler (priorities, placement, rate and
//!   per-host limits, retries with backoff, tasks).
//! - [`engine`]: [`Core`], both behind `on_event` / `tick`.
//! - [`sim`]: a deterministic simulation of a mass recovery (seed 002's test).

pub mod bucket;
pub mod command;
pub mod defense;
pub mod detect;
pub mod engine;
pub mod model;
pub mod placement;
pub mod recovery;
pub mod sim;

pub use command::Command;
pub use detect::LeaseState;
pub use engine::{Core, CoreConfig, CoreError, Input};
pub use recovery::StartOutcome;
