//! The nosplit lease core.
//!
//! This crate owns the lease protocol and nothing else: the on-disk format
//! ([`format`]), the timing model ([`timing`]), the liveness view of other
//! hosts ([`view`]), and the state machines for host leases ([`host`]),
//! Disk Paxos resource leases ([`paxos`]) and the lease index ([`index`]).
//!
//! Everything here is pure: machines take `(input, now)` and return I/O
//! commands and events ([`io`]). No clock is read and no I/O is done; the
//! runtime (`nosplit-lease-runtime`) does that. This is what lets the same
//! code run against real disks, a seeded simulated disk and the model
//! checker's assumptions.

pub mod format;
pub mod host;
pub mod index;
pub mod io;
pub mod paxos;
pub mod timing;
pub mod view;

pub use format::{Geometry, Name, OwnerId};
pub use timing::Timing;
pub use view::{HostView, Liveness};
