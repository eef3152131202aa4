//! faultfs: a pass-through FUSE file system with storage faults set per mount
//! at run time. It is the lab's per-host shared storage and the lease
//! daemon's hung-storage test bed.
//!
//! [`spawn`] mounts a backing directory at a mount point and serves it from
//! a background thread; the returned [`MountGuard`] unmounts on drop. Every
//! request (lookup, getattr, setattr, open, create, read, write, fsync,
//! readdir, mkdir, unlink, rmdir, rename, statfs) reads the current [`Mode`]
//! when it arrives:
//!
//! | mode | effect |
//! | --- | --- |
//! | `Ok` | pass-through |
//! | `Eio { reads, writes }` | EIO on read / on write, fsync, truncate; on open and create when both |
//! | `Delay(d)` | every request is answered `d` later (by a timer thread) |
//! | `Hang` | requests are parked and never answered while the mode stays |
//!
//! Leaving `Hang` (any [`FaultHandle::set`], or [`FaultHandle::recover`])
//! answers the parked requests with EIO, so a hung I/O completes with an
//! error rather than late data; [`FaultHandle::resume`] instead performs
//! them late. `release`, `releasedir`, `flush` and `forget` are never
//! faulted. The FUSE session thread never blocks on a fault, so the mount
//! keeps taking (and parking) requests, and [`MountGuard::abort`] (through
//! `/sys/fs/fuse/connections/N/abort`) frees processes stuck on a hung
//! mount.
//!
//! Reads and writes use `FOPEN_DIRECT_IO`: no page cache, and clients may
//! open with `O_DIRECT`. The backing file is opened without `O_DIRECT` and
//! accessed with `pread`/`pwrite`.
//!
//! Control from another process goes through a Unix socket (see
//! [`control`] and the `control` module docs for the line protocol):
//! `ok`, `recover`, `eio`, `eio-read`, `eio-write`, `delay <ms>`, `hang`,
//! `resume`, `status`, `abort` (as [`MountGuard::abort`]), answered by one
//! `ok ...` or `err ...` line.
//!
//! Mounting needs root and `/dev/fuse`; no libfuse or fusermount is used.

mod control;
mod fault;
mod fs;
mod mode;
mod mount;

use std::io;
use std::path::PathBuf;

pub use control::control;
pub use fault::{FaultHandle, Status};
pub use mode::{Mode, MAX_DELAY};
pub use mount::{run_foreground, spawn, MountGuard, FS_NAME};

/// Errors of faultfs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backing directory is missing or not a directory.
    #[error("backing directory {path}: {source}")]
    Backing {
        /// As given.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The mount point is missing or not a directory.
    #[error("mount point {path}: {source}")]
    Mountpoint {
        /// As given.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The mount point is the backing directory, or one lies inside the
    /// other.
    #[error("backing directory {backing} and mount point {mountpoint} overlap")]
    Overlap {
        /// Canonical backing directory.
        backing: PathBuf,
        /// Canonical mount point.
        mountpoint: PathBuf,
    },
    /// `/dev/fuse` is not there.
    #[error("FUSE is not available (/dev/fuse): {0}")]
    NoFuse(#[source] io::Error),
    /// mount(2) or the FUSE handshake failed.
    #[error("mounting FUSE at {path}: {source}")]
    Mount {
        /// Canonical mount point.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A helper thread could not be started.
    #[error("starting a thread: {0}")]
    Thread(#[source] io::Error),
    /// Blocking the termination signals failed.
    #[error("blocking signals: {0}")]
    Signals(#[source] io::Error),
    /// Unmounting failed.
    #[error("unmounting {path}: {source}")]
    Unmount {
        /// Canonical mount point.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The mount's FUSE connection number is unknown (not found in
    /// `/proc/self/mountinfo` when mounting).
    #[error("the FUSE connection of this mount is unknown")]
    NoConnection,
    /// fusectl could not be mounted on `/sys/fs/fuse/connections`.
    #[error("mounting fusectl on /sys/fs/fuse/connections: {0}")]
    Fusectl(#[source] io::Error),
    /// The connection was aborted already (by the guard or the control
    /// socket).
    #[error("FUSE connection {0} is aborted already")]
    Aborted(u64),
    /// Writing the connection's `abort` file failed.
    #[error("aborting FUSE connection {conn}: {source}")]
    Abort {
        /// Connection number.
        conn: u64,
        /// Why.
        source: io::Error,
    },
    /// The control socket could not be set up or talked to.
    #[error("control socket {path}: {source}")]
    Control {
        /// Socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A control command (or mode text) that does not parse.
    #[error("bad control command: {0}")]
    BadCommand(String),
    /// The control socket answered `err ...`.
    #[error("control request rejected: {0}")]
    Rejected(String),
}
