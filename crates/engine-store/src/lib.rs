//! The engine's persistent state (ARCHITECTURE section 5): inventory
//! (domains, hosts, VMs), the HA strategy and settings, restart tasks and
//! events, behind the [`Store`] trait.
//!
//! Backends:
//! - [`RedbStore`]: an embedded, transactional file (the default); the
//!   on-disk layout is documented in [`redb_store`].
//! - [`MemStore`]: the same semantics in memory, for tests and simulations.
//! - [`faulty::FaultyStore`]: a test double around either that fails the
//!   chosen writes.
//!
//! [`conformance::run_all`] checks every rule of the trait against any
//! backend; both backends run it in their tests, and a future one (etcd)
//! must pass it too.

pub mod conformance;
mod error;
pub mod faulty;
mod mem;
mod record;
pub mod redb_store;
mod store;

pub use error::StoreError;
pub use mem::MemStore;
pub use redb_store::RedbStore;
pub use store::{EventQuery, Limits, Store, DEFAULT_LOG_LIMIT};
