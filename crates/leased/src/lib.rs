//! `leased`: the per-host lease daemon.
//!
//! This crate owns everything one host does with leases while it runs:
//! joining and renewing lockspaces ([`daemon`]), acquiring and releasing
//! resource leases for registered client processes over a Unix socket
//! ([`api`], [`client`]), freezing or stopping those processes when
//! renewal fails and revalidating the leases of frozen ones before they may
//! run again ([`supervise`], pure policy), the watchdog that backs it
//! ([`watchdog`]),
//! and the state it keeps under its run directory so a restart re-adopts
//! live holders instead of losing or leaking their leases ([`state`]).
//! Its configuration is [`config`].

pub mod api;
pub mod client;
pub mod config;
pub mod daemon;
mod proc;
pub mod state;
pub mod supervise;
pub mod watchdog;
