//! Heartbeat records written by VMs to their own disks, and the oracle that
//! reads them.
//!
//! - [`record`]: the 512-byte record format (encode, decode, slot layout).
//! - [`disk`]: creating a zeroed raw disk and reading its ring of slots.
//! - [`writer`]: the main loop of a process "VM" that writes one record per tick.
//! - [`oracle`]: the live split-brain oracle (promise S2) and downtime meter.

pub mod disk;
pub mod oracle;
pub mod record;
pub mod writer;
