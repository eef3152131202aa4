//! On-disk format v1: byte layouts of every record nosplit keeps on shared
//! storage, their encoders and their decoders.
//!
//! This module owns the bytes. Every record starts with a 4-byte magic and a
//! 2-byte version and ends with a crc32c of everything before it; the rest
//! of its sector is zero. Decoders take untrusted bytes and return a typed
//! [`FormatError`] for anything malformed; they never panic (fuzzed under
//! `fuzz/`). The layouts are documented byte by byte in
//! `docs/on-disk-format.md`; keep the two in step.

mod codec;
mod geometry;
mod index;
mod lockspace;
mod name;
mod resource;

pub use geometry::{Geometry, GeometryError, DEFAULT_ALIGN, DEFAULT_MAX_HOSTS, MAX_MAX_HOSTS};
pub use index::{
    IndexHeader, IndexRecord, RecordState, INDEX_MAGIC, INDEX_RECORD_LEN, MAX_INDEX_SLOTS,
};
pub use lockspace::{
    check_io_timeout, HostSlot, LockspaceHeader, HOST_MAGIC, LOCKSPACE_MAGIC, MAX_IO_TIMEOUT_MS,
    MIN_IO_TIMEOUT_MS,
};
pub use name::{Name, NameError, NAME_LEN};
pub use resource::{Ballot, Leader, OwnerId, Request, BALLOT_MAGIC, LEADER_MAGIC, REQUEST_MAGIC};

/// The format version written by this code and the only one it reads.
pub const VERSION: u16 = 1;

/// Which record a decoding error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// Sector 0 of a lockspace.
    LockspaceHeader,
    /// One host's sector in a lockspace.
    HostSlot,
    /// Sector 0 of a resource lease.
    Leader,
    /// Sector 1 of a resource lease.
    Request,
    /// One host's ballot sector in a resource lease.
    Ballot,
    /// Sector 0 of a lease index.
    IndexHeader,
    /// One entry of a lease index.
    IndexRecord,
}

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Record::LockspaceHeader => "lockspace header",
            Record::HostSlot => "host slot",
            Record::Leader => "resource leader record",
            Record::Request => "resource request record",
            Record::Ballot => "ballot block",
            Record::IndexHeader => "lease index header",
            Record::IndexRecord => "lease index record",
        })
    }
}

/// A sector that does not hold a valid record of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Fewer bytes than the record needs.
    #[error("{record}: {len} bytes, need at least {need}")]
    TooShort {
        /// Record kind.
        record: Record,
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// All zero: never written.
    #[error("{record}: sector is blank (never initialised)")]
    Blank {
        /// Record kind.
        record: Record,
    },
    /// Not this kind of record (or not nosplit data at all).
    #[error("{record}: bad magic {found:#010x}, expected {expected:#010x} (not a nosplit {record}, or overwritten)")]
    BadMagic {
        /// Record kind.
        record: Record,
        /// Magic found.
        found: u32,
        /// Magic expected.
        expected: u32,
    },
    /// Written by an unknown format version.
    #[error("{record}: unsupported format version {found} (this build reads version 1)")]
    BadVersion {
        /// Record kind.
        record: Record,
        /// Version found.
        found: u16,
    },
    /// Corrupted.
    #[error("{record}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): sector corrupted")]
    BadChecksum {
        /// Record kind.
        record: Record,
        /// Stored crc32c.
        stored: u32,
        /// Computed crc32c.
        computed: u32,
    },
    /// A field holds an impossible value although the checksum matches.
    #[error("{record}: field {field}: {reason}")]
    BadField {
        /// Record kind.
        record: Record,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// True when every byte is zero (a sector never written).
pub fn is_blank(sector: &[u8]) -> bool {
    sector.iter().all(|&b| b == 0)
}
