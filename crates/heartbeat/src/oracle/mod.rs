//! The split-brain oracle (promise S2: no VM process writes to a disk after
//! another instance of that VM has run since) and the downtime meter.
//!
//! Instances overwrite each other's slots, so the disk at the end of a run
//! proves nothing: the oracle watches every VM disk LIVE, reading its 64
//! slots in polls, and judges only from what it saw. The verdict needs no
//! clock agreement with the writers (record times are ignored).
//!
//! # The rule
//!
//! Polls of one VM are numbered 0, 1, 2, ...; poll k starts after poll k-1
//! ended. A record (inst, seq) is *new* at the first poll that reads it.
//! Instance Y *starts* at poll kY, the first poll that saw any record of Y;
//! its first write happened before poll kY ended.
//!
//! - **Older wrote after newer** (`kX < kY`): if X has a record new at poll
//!   k >= kY + 2, then that record was absent when poll k-1 read its slot,
//!   and poll k-1 began after poll kY ended, so X wrote it after Y's first
//!   write: a violation. (A record new at kY + 1 may have been written
//!   just before Y's first write and read after it within poll kY, so it
//!   is not proof.) If in truth Y's early records were overwritten and Y is
//!   the older one, X and Y still both wrote after each other: a violation
//!   either way.
//! - **Concurrent start** (`kX == kY`): which one is older is unknown, so a
//!   violation needs both to have records new at polls >= kX + 2.
//!
//! Each violation is reported once per (vm, older inst, newer inst). The
//! rule can only miss (a record overwritten before any poll read it), never
//! invent: a clean handover is silent however the polls fall. Poll faster
//! than the writers' interval to miss less.
//!
//! Slots that do not decode, hold another VM's record, or hold a record
//! whose seq does not map to that slot are counted as garbled (once per
//! change of the slot's content kind) and otherwise ignored.
//!
//! # Downtime
//!
//! Per VM, a *gap* is the time between two successive polls that saw a new
//! record of the VM (poll end to poll end), reported when longer than the
//! threshold (default 1 s); an ongoing silence at report time is an open
//! gap. A *transition* X -> Y between instances consecutive in first-seen
//! order measures failover: from X's last new record to Y's first record.
//! All times are poll end times, so they are late by at most one poll.

mod core;
mod report;
mod runtime;

pub use self::core::{OracleCore, DEFAULT_GAP_THRESHOLD};
pub use self::report::{
    Gap, InstanceReport, OracleReport, Transition, Violation, ViolationKind, VmReport,
};
pub use self::runtime::{Oracle, OracleHandle};

#[cfg(test)]
mod tests;
