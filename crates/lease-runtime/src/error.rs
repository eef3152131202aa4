//! Errors of the lease runtime, each naming the storage path involved.

use nosplit_lease::format::{FormatError, GeometryError, NameError};
use nosplit_lease::host::JoinError;
use nosplit_lease::index::IndexError;
use nosplit_lease::paxos::LeaseError;
use nosplit_storage::{IoError, OpenError};

/// Why a lease operation on storage failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A `PATH[:OFFSET]` argument is malformed.
    #[error("bad storage target {0:?}: expected PATH or PATH:OFFSET (offset in bytes, may end in K, M or G)")]
    BadTarget(String),
    /// Opening the storage failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// An I/O failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// Storage path.
        path: String,
        /// What was being done.
        what: String,
        /// The error.
        source: IoError,
    },
    /// A record does not decode.
    #[error("{path} at offset {offset}: {source}")]
    Format {
        /// Storage path.
        path: String,
        /// Byte offset of the area.
        offset: u64,
        /// The error.
        source: FormatError,
    },
    /// An invalid geometry was asked for.
    #[error(transparent)]
    Geometry(#[from] GeometryError),
    /// An invalid name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A watcher thread could not start.
    #[error("starting a lockspace watcher for {path}: {source}")]
    Thread {
        /// Storage path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// An invalid io_timeout.
    #[error("io_timeout: {0}")]
    IoTimeout(String),
    /// The area does not fit the storage.
    #[error("{path}: the area needs bytes {offset}..{end} but the storage has {size} bytes")]
    TooSmall {
        /// Storage path.
        path: String,
        /// Area start.
        offset: u64,
        /// Area end.
        end: u64,
        /// Storage size.
        size: u64,
    },
    /// An index slot count out of range.
    #[error("lease index slots {slots} is outside 1 to {max}")]
    BadSlots {
        /// Asked for.
        slots: u32,
        /// Limit.
        max: u32,
    },
    /// The area's sector size differs from the storage's.
    #[error("{path}: the area uses {area}-byte sectors but the storage has {device}-byte sectors")]
    SectorMismatch {
        /// Storage path.
        path: String,
        /// The area's sector size.
        area: usize,
        /// The storage's.
        device: usize,
    },
    /// Offset not aligned to the sector size.
    #[error("{path}: offset {offset} is not a multiple of the {sector}-byte sector size")]
    Misaligned {
        /// Storage path.
        path: String,
        /// Offset.
        offset: u64,
        /// Sector size.
        sector: usize,
    },
    /// Joining failed.
    #[error("{path}: join failed: {source}")]
    Join {
        /// Storage path.
        path: String,
        /// The error.
        source: JoinError,
    },
    /// A lease operation failed.
    #[error("{path}: {source}")]
    Lease {
        /// Storage path.
        path: String,
        /// The error.
        source: LeaseError,
    },
    /// A lease index operation failed.
    #[error("{path}: {source}")]
    Index {
        /// Storage path.
        path: String,
        /// The error.
        source: IndexError,
    },
    /// The host lease was lost or stopped renewing while in use.
    #[error("{path}: host lease lost: {reason}")]
    HostLost {
        /// Storage path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A machine did not finish in time.
    #[error("{path}: {what} did not finish within {secs} s")]
    Timeout {
        /// Storage path.
        path: String,
        /// What.
        what: String,
        /// Limit.
        secs: u64,
    },
}
