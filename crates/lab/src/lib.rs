//! The one-machine lab (ARCHITECTURE section 7): a whole cluster on one
//! machine. Hosts are network namespaces with three planes, each with its
//! own FUSE view of the shared storage and its own daemons in its own
//! cgroup (its power domain); VMs run under leases; faults are injected per
//! host; the split-brain oracle watches every VM disk.
//!
//! Layers: [`failover`] is the pure recovery policy used until the engine
//! drives the lab (`(state, event, now) -> commands`); the other modules do
//! the I/O.

pub mod control;
pub mod domain;
pub mod engine;
mod error;
pub mod failover;
pub mod host;
mod lab;
pub mod layout;
pub mod netprobe;
pub mod scenario;

pub use error::LabError;
pub use lab::{down, existing, net_fault, HostRt, Instance, Lab, LabSpec, LaunchError};
