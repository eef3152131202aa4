//! The lease runtime: runs the pure machines of `nosplit-lease` against
//! storage.
//!
//! This crate owns I/O for leases and nothing else: it turns the machines'
//! [`IoCmd`](nosplit_lease::io::IoCmd)s into [`Storage`](nosplit_storage::Storage)
//! requests ([`exec`]), drives one machine to completion or keeps a host
//! lease renewing on a thread ([`host_runner`]), and offers the direct,
//! daemon-less operations behind `nosplit lease ...` ([`direct`], [`index`])
//! and the lease benchmark ([`bench`]).

pub mod bench;
pub mod direct;
mod error;
pub mod exec;
pub mod host_runner;
pub mod index;
pub mod sim;
pub mod target;
pub mod watch;

pub use error::RuntimeError;
pub use target::Target;
