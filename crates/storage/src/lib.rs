//! Sector storage for leases.
//!
//! This crate owns the I/O boundary between the pure lease protocol and the
//! media it lives on. Every backend implements [`Storage`]: requests are
//! *submitted* (never blocking the caller) and their completions are
//! *collected* with [`Storage::wait`], which returns by the caller's chosen
//! time whatever the media does. A request that has not completed by its
//! deadline completes with [`IoError::TimedOut`]; a hung NFS server can
//! therefore never stall the caller's clock.
//!
//! Backends:
//! - [`file::FileStorage`]: a regular file or block device opened with
//!   `O_DIRECT`, I/O on worker threads, aligned buffers.
//! - [`sim::SimDisk`]: an in-memory disk on a simulated clock with seeded
//!   fault injection (errors, delays, hangs, late and reordered writes).
//!
//! [`conformance`] is one suite that every backend must pass.

mod buf;
pub mod conformance;
pub mod file;
pub mod sim;

pub use buf::{AlignedBuf, BUF_ALIGN};
pub use file::{FileStorage, OpenOpts};
pub use nosplit_clock::MonoTime;
pub use sim::{Faults, SimDisk, SimHandle};

use std::fmt;
use std::time::Duration;

/// Logical sector size of a lease area. Every I/O offset and length is a
/// multiple of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectorSize {
    /// 512-byte sectors.
    B512,
    /// 4096-byte sectors (4Kn devices).
    B4096,
}

impl SectorSize {
    /// The size in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            SectorSize::B512 => 512,
            SectorSize::B4096 => 4096,
        }
    }

    /// Parses a byte count (512 or 4096).
    pub fn from_bytes(n: u64) -> Option<Self> {
        match n {
            512 => Some(SectorSize::B512),
            4096 => Some(SectorSize::B4096),
            _ => None,
        }
    }
}

impl fmt::Display for SectorSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bytes())
    }
}

/// Caller-chosen identity of one request, echoed in its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IoId(pub u64);

/// What a request does.
#[derive(Debug, Clone)]
pub enum IoOp {
    /// Read `len` bytes at `offset`.
    Read {
        /// Byte offset, a multiple of the sector size.
        offset: u64,
        /// Byte count, a non-zero multiple of the sector size.
        len: usize,
    },
    /// Write `data` at `offset`.
    Write {
        /// Byte offset, a multiple of the sector size.
        offset: u64,
        /// The bytes; the length is a non-zero multiple of the sector size.
        data: AlignedBuf,
    },
}

/// One submitted request.
#[derive(Debug, Clone)]
pub struct IoRequest {
    /// Echoed in the completion.
    pub id: IoId,
    /// The operation.
    pub op: IoOp,
    /// The time by which the request completes, successfully or with
    /// [`IoError::TimedOut`].
    pub deadline: MonoTime,
}

/// A successful result.
#[derive(Debug, Clone)]
pub enum IoOk {
    /// The bytes read.
    Read(AlignedBuf),
    /// The write reached the media (as far as the backend can tell).
    Written,
}

/// The result of one request.
#[derive(Debug)]
pub struct IoCompletion {
    /// The request's id.
    pub id: IoId,
    /// Its outcome.
    pub result: Result<IoOk, IoError>,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    /// Offset or length is not a multiple of the sector size, or length is 0.
    #[error("misaligned I/O: offset {offset} length {len} (sector size {sector})")]
    Misaligned {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: usize,
        /// The backend's sector size.
        sector: usize,
    },
    /// The request reaches past the end of the storage.
    #[error("I/O past the end: offset {offset} length {len}, storage is {size} bytes")]
    OutOfBounds {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: usize,
        /// Storage size.
        size: u64,
    },
    /// The deadline passed before the media answered. The request may still
    /// complete later (a write may still land); its result is discarded.
    #[error("I/O did not complete before its deadline")]
    TimedOut,
    /// Too many earlier requests are stuck in the media; refusing new ones
    /// rather than piling up threads.
    #[error("storage is hung: {stuck} requests stuck")]
    Hung {
        /// Requests still stuck past their deadline.
        stuck: usize,
    },
    /// The operating system reported an error.
    #[error("{op} failed: {message} (errno {errno})")]
    Os {
        /// "read" or "write".
        op: &'static str,
        /// The raw errno.
        errno: i32,
        /// Its text.
        message: String,
    },
    /// A short read or write.
    #[error("short {op}: {done} of {len} bytes")]
    Short {
        /// "read" or "write".
        op: &'static str,
        /// Bytes transferred.
        done: usize,
        /// Bytes requested.
        len: usize,
    },
    /// A fault injected by a simulation.
    #[error("injected fault: {0}")]
    Injected(&'static str),
    /// An earlier write to these sectors has not finished; retry after it
    /// does. The refused write was not performed (see the write-ordering
    /// rule on [`Storage`]).
    #[error("write in flight: an earlier write overlapping offset {offset} length {len} has not finished; retry after it does")]
    WriteInFlight {
        /// Offset of the refused write.
        offset: u64,
        /// Length of the refused write.
        len: usize,
    },
}

/// Errors opening a backend.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The path could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file's size or the device's sector size could not be read.
    #[error("cannot inspect {path}: {source}")]
    Inspect {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The device's logical sector size differs from the one asked for.
    #[error("{path}: device sector size is {device} bytes but {requested} was asked for")]
    SectorMismatch {
        /// The path.
        path: String,
        /// The device's logical sector size.
        device: u64,
        /// What the caller asked for.
        requested: usize,
    },
    /// Neither a regular file nor a block device.
    #[error("{path}: not a regular file or block device")]
    NotStorage {
        /// The path.
        path: String,
    },
}

/// Counters of I/O that reached the media and transferred its bytes
/// (rejected, failed, timed-out-before-start requests are not counted; a
/// write that lands after its caller gave up is).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Completed reads.
    pub reads: u64,
    /// Completed (landed) writes.
    pub writes: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
}

impl IoStats {
    /// Counts one completed operation.
    pub(crate) fn count(&mut self, write: bool, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        if write {
            self.writes += 1;
            self.bytes_written = self.bytes_written.saturating_add(bytes);
        } else {
            self.reads += 1;
            self.bytes_read = self.bytes_read.saturating_add(bytes);
        }
    }
}

impl IoOp {
    /// The byte offset.
    pub fn offset(&self) -> u64 {
        match self {
            IoOp::Read { offset, .. } | IoOp::Write { offset, .. } => *offset,
        }
    }

    /// The byte count.
    pub fn len(&self) -> usize {
        match self {
            IoOp::Read { len, .. } => *len,
            IoOp::Write { data, .. } => data.len(),
        }
    }

    /// Whether the byte count is zero (such a request is invalid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a write.
    pub fn is_write(&self) -> bool {
        matches!(self, IoOp::Write { .. })
    }

    /// Checks alignment and bounds against a backend's geometry: the error a
    /// backend completes an invalid request with.
    pub fn validate(&self, sector: SectorSize, size: u64) -> Result<(), IoError> {
        let (offset, len) = (self.offset(), self.len());
        let sec = sector.bytes();
        // `sec` is 512 or 4096; widening to u64 is lossless.
        let sec64 = sec as u64;
        if len == 0 || len % sec != 0 || offset % sec64 != 0 {
            return Err(IoError::Misaligned {
                offset,
                len,
                sector: sec,
            });
        }
        let end = u64::try_from(len).ok().and_then(|l| offset.checked_add(l));
        match end {
            Some(end) if end <= size => Ok(()),
            _ => Err(IoError::OutOfBounds { offset, len, size }),
        }
    }
}

/// A sector-addressed store with deadline-bounded, non-blocking submission.
///
/// Contract (checked by [`conformance`]):
/// - `submit` never blocks on the media; an invalid request (misaligned, out
///   of bounds) completes with an error through `wait`, it is not dropped.
/// - Every submitted request completes exactly once through `wait`: with its
///   result, or with [`IoError::TimedOut`] once `now() >= deadline`.
/// - `wait(until)` returns `None` only when nothing completed by `until`;
///   it returns no later than `until` (on the backend's clock) and
///   immediately if `until <= now()`.
/// - A write never overtakes an earlier *unfinished* write to overlapping
///   bytes: a write that overlaps one still unfinished completes at once
///   with [`IoError::WriteInFlight`] and is not performed. A write is
///   unfinished from its submit until the media has finished with it (or it
///   is certain never to be performed), whatever its caller was told: one
///   that completed [`IoError::TimedOut`] but may still land is unfinished,
///   and so is one still queued that a worker may yet start. Without this
///   rule a stale write that timed out could land after the same host's
///   next write to the same sectors and roll them back, which breaks Disk
///   Paxos. The scope is the same media as seen from this process: for
///   [`FileStorage`] every handle open on the same file or block device in
///   this process; for [`SimHandle`] the same simulated host's handle.
///   Reads are never refused this way, and writes to disjoint bytes are
///   unaffected.
pub trait Storage: Send + fmt::Debug {
    /// A name for messages (the path, or "sim").
    fn describe(&self) -> String;
    /// The logical sector size.
    fn sector_size(&self) -> SectorSize;
    /// Size in bytes.
    fn size(&self) -> u64;
    /// The backend's clock.
    fn now(&self) -> MonoTime;
    /// Queues a request.
    fn submit(&mut self, req: IoRequest);
    /// Collects the next completion, waiting at most until `until`.
    fn wait(&mut self, until: MonoTime) -> Option<IoCompletion>;

    /// I/O counters, if the backend keeps them (both built-in backends do).
    fn stats(&self) -> Option<IoStats> {
        None
    }

    /// Blocking convenience: read with a timeout. Completions of other
    /// outstanding requests that arrive meanwhile are dropped, so use this
    /// only when nothing else is in flight.
    fn read_sync(
        &mut self,
        offset: u64,
        len: usize,
        timeout: Duration,
    ) -> Result<AlignedBuf, IoError> {
        let id = IoId(u64::MAX - 1);
        let deadline = self.now() + timeout;
        self.submit(IoRequest {
            id,
            op: IoOp::Read { offset, len },
            deadline,
        });
        match wait_for(self, id, deadline)? {
            IoOk::Read(b) => Ok(b),
            IoOk::Written => Err(IoError::Injected("backend answered a read with a write")),
        }
    }

    /// Blocking convenience: write with a timeout (see [`Storage::read_sync`]).
    fn write_sync(
        &mut self,
        offset: u64,
        data: AlignedBuf,
        timeout: Duration,
    ) -> Result<(), IoError> {
        let id = IoId(u64::MAX - 2);
        let deadline = self.now() + timeout;
        self.submit(IoRequest {
            id,
            op: IoOp::Write { offset, data },
            deadline,
        });
        wait_for(self, id, deadline).map(|_| ())
    }
}

impl<S: Storage + ?Sized> Storage for Box<S> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn sector_size(&self) -> SectorSize {
        (**self).sector_size()
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn now(&self) -> MonoTime {
        (**self).now()
    }
    fn submit(&mut self, req: IoRequest) {
        (**self).submit(req)
    }
    fn wait(&mut self, until: MonoTime) -> Option<IoCompletion> {
        (**self).wait(until)
    }
    fn stats(&self) -> Option<IoStats> {
        (**self).stats()
    }
}

fn wait_for<S: Storage + ?Sized>(s: &mut S, id: IoId, deadline: MonoTime) -> Result<IoOk, IoError> {
    loop {
        // Allow a little slack past the deadline for the backend to report
        // its own TimedOut completion; after that, give up ourselves.
        let until = deadline + Duration::from_millis(50);
        match s.wait(until) {
            Some(c) if c.id == id => return c.result,
            Some(_) => continue,
            None if s.now() >= until => return Err(IoError::TimedOut),
            None => continue,
        }
    }
}
