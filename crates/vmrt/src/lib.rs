//! nosplit VM runtime layer.
//!
//! - [`image`]: builds (and caches) the guest kernel + initramfs whose `/init` writes
//!   heartbeat records to `/dev/vda`.
//! - [`qmp`]: a small synchronous QMP client.
//! - [`driver`]: the [`driver::VmDriver`] trait with a QEMU backend and a plain-process
//!   backend, sharing the prepare -> start life cycle and `adopt` after a restart.
//! - [`conformance`]: one behaviour suite run against every backend.

pub mod conformance;
pub mod driver;
pub mod image;
pub mod qmp;
