//! The oracle's verdict: serializable report types and the one-line summary.
//!
//! Timestamps (`*_ns`) are on the oracle's monotonic clock and mean "the end
//! of the poll that first saw it" (an upper bound on when it was written);
//! durations are in milliseconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which S2 rule a violation broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// An instance first seen earlier wrote a record first seen two or more
    /// polls after a newer instance's first record.
    OlderWroteAfterNewer,
    /// Two instances first seen in the same poll both wrote new records two
    /// or more polls later (which one is older is unknown; `older_inst` is
    /// the smaller id).
    ConcurrentStart,
}

/// One split brain, reported once per (vm, older inst, newer inst).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The VM.
    pub vm: String,
    /// Which rule.
    pub kind: ViolationKind,
    /// The instance that wrote when it must not have.
    pub older_inst: String,
    /// The instance that had started before that write.
    pub newer_inst: String,
    /// When the newer instance's first record was first seen.
    pub newer_first_seen_ns: u64,
    /// The seq of the newer instance's first record seen.
    pub newer_first_seq: u64,
    /// When the offending record was first seen.
    pub older_seen_ns: u64,
    /// The offending record's seq.
    pub older_seq: u64,
    /// Polls between the newer instance's first poll and the offending one.
    pub polls_after: u64,
}

/// One instance of a VM, as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// The instance id.
    pub id: String,
    /// Index (per VM) of the poll that first saw a record of it.
    pub first_poll: u64,
    /// When its first record was first seen.
    pub first_seen_ns: u64,
    /// The seq of that first record.
    pub first_seq: u64,
    /// When its most recent new record was first seen.
    pub last_new_ns: u64,
    /// Highest seq seen.
    pub max_seq: u64,
    /// Distinct records seen.
    pub records: u64,
}

/// A handover from one instance to the next (in first-seen order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The earlier instance.
    pub from: String,
    /// The later instance.
    pub to: String,
    /// When the earlier instance's last new record was seen.
    pub from_last_new_ns: u64,
    /// When the later instance's first record was seen.
    pub to_first_seen_ns: u64,
    /// `to_first_seen - from_last_new` in ms; negative if they overlapped.
    pub failover_ms: i64,
}

/// A stretch with no new record of the VM longer than the threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// End of the last poll that saw a new record before the gap.
    pub start_ns: u64,
    /// End of the poll that saw the next new record (or the latest poll, if open).
    pub end_ns: u64,
    /// `end - start` in ms.
    pub duration_ms: u64,
    /// Still going at the time of the report (no new record since).
    pub open: bool,
}

/// Everything observed about one VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmReport {
    /// Successful polls of its disk.
    pub polls: u64,
    /// Instances in first-seen order.
    pub instances: Vec<InstanceReport>,
    /// Handovers between consecutive instances.
    pub transitions: Vec<Transition>,
    /// Gaps longer than the threshold (closed ones, then an open one if any).
    pub gaps: Vec<Gap>,
    /// Sum of the closed gaps, in ms.
    pub total_downtime_ms: u64,
    /// Slots that turned garbled (bad format, wrong slot, other VM's id).
    pub garbled: u64,
    /// `garbled` broken down by reason.
    pub garbled_reasons: BTreeMap<String, u64>,
    /// Polls that failed (disk missing, short, unreadable, bad times).
    pub errors: u64,
    /// The most recent error.
    pub last_error: Option<String>,
}

/// The oracle's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OracleReport {
    /// Gap threshold used, in ms.
    pub gap_threshold_ms: u64,
    /// Per VM.
    pub vms: BTreeMap<String, VmReport>,
    /// S2 violations, in the order found.
    pub violations: Vec<Violation>,
    /// `violations.len()`.
    pub split_brains: usize,
}

impl OracleReport {
    /// One human line: the verdict first, then the counts.
    pub fn summary_line(&self) -> String {
        let vms = self.vms.values();
        let polls: u64 = vms.clone().map(|v| v.polls).sum();
        let transitions: Vec<&Transition> = vms.clone().flat_map(|v| &v.transitions).collect();
        let max_failover = transitions.iter().map(|t| t.failover_ms).max();
        let gaps: usize = vms
            .clone()
            .map(|v| v.gaps.iter().filter(|g| !g.open).count())
            .sum();
        let open: usize = vms
            .clone()
            .map(|v| v.gaps.iter().filter(|g| g.open).count())
            .sum();
        let downtime: u64 = vms.clone().map(|v| v.total_downtime_ms).sum();
        let garbled: u64 = vms.clone().map(|v| v.garbled).sum();
        let errors: u64 = vms.map(|v| v.errors).sum();
        let verdict = if self.split_brains == 0 {
            "OK: no split brain".to_owned()
        } else {
            let first = self.violations.first().map_or(String::new(), |v| {
                format!(
                    " (first: vm {} inst {} seq {} after {} started)",
                    v.vm, v.older_inst, v.older_seq, v.newer_inst
                )
            });
            format!("SPLIT BRAIN: {} violation(s){first}", self.split_brains)
        };
        let failover = max_failover.map_or("-".to_owned(), |m| format!("{m} ms"));
        format!(
            "{verdict}; {} vms, {polls} polls, {} transitions (max failover {failover}), \
             {gaps} gaps > {} ms (downtime {downtime} ms), {open} vms silent now, \
             {garbled} garbled, {errors} read errors",
            self.vms.len(),
            transitions.len(),
            self.gap_threshold_ms,
        )
    }
}
