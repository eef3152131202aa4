//! The I/O vocabulary between the pure machines and their runtime.
//!
//! Machines emit [`IoCmd`]s; the runtime performs them against the right
//! storage area and feeds back an [`IoDone`] carrying the same id. Offsets
//! are relative to the start of the area. Every command has a deadline;
//! the machines also enforce it themselves on [`Input::Tick`], so a runtime
//! thread stuck in the kernel can delay a completion but never a decision.

use nosplit_clock::MonoTime;

/// Which area of shared storage a command addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Area {
    /// The lockspace (header and host slots).
    Lockspace,
    /// The resource lease the operation is about.
    Resource,
}

/// Read or write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoKind {
    /// Read this many bytes.
    Read(usize),
    /// Write these bytes.
    Write(Vec<u8>),
}

/// One I/O for the runtime to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoCmd {
    /// Echo this in the [`IoDone`].
    pub id: u64,
    /// Which area.
    pub area: Area,
    /// Byte offset within the area (sector aligned).
    pub offset: u64,
    /// What to do.
    pub kind: IoKind,
    /// Complete (or be abandoned) by then.
    pub deadline: MonoTime,
}

impl IoCmd {
    /// Bytes moved by this command.
    pub fn len(&self) -> usize {
        match &self.kind {
            IoKind::Read(n) => *n,
            IoKind::Write(d) => d.len(),
        }
    }
    /// True for a zero-length command (never emitted).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How an I/O ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoOutcome {
    /// The bytes read.
    Read(Vec<u8>),
    /// The write completed.
    Written,
    /// The I/O failed or missed its deadline; the text says why.
    Failed(String),
}

/// A completion fed back to a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoDone {
    /// The command's id.
    pub id: u64,
    /// What happened.
    pub outcome: IoOutcome,
}

/// Input to a machine's `step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed; check timers and deadlines.
    Tick,
    /// An I/O completed.
    Done(IoDone),
}

/// Hands out command ids unique within one machine.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdGen(u64);

impl IdGen {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}
