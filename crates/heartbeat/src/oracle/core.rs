//! The oracle's pure state machine: fed decoded slots and poll times, keeps
//! per-VM instance history, finds S2 violations and downtime gaps. No I/O, no
//! clock: times are passed in (ns on any monotonic clock). The rules are
//! documented on the parent module.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use super::report::{
    Gap, InstanceReport, OracleReport, Transition, Violation, ViolationKind, VmReport,
};
use crate::record::{Slot, SLOTS};

/// Seqs more than this far below an instance's highest seq are treated as
/// already seen (bounds memory; such a record cannot be new in practice).
const SEEN_WINDOW: u64 = 4096;

/// Default threshold above which a silence is reported as a gap.
pub const DEFAULT_GAP_THRESHOLD: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Inst {
    first_poll: u64,
    first_seen_ns: u64,
    first_seq: u64,
    last_new_poll: u64,
    last_new_ns: u64,
    max_seq: u64,
    records: u64,
    seen: BTreeSet<u64>,
}

impl Inst {
    /// Records `seq` as seen; true if it had not been seen before.
    fn see(&mut self, seq: u64, poll: u64, end_ns: u64) -> bool {
        let floor = self.max_seq.saturating_sub(SEEN_WINDOW);
        if (seq <= floor && self.records > 0) || !self.seen.insert(seq) {
            return false;
        }
        self.records += 1;
        self.max_seq = self.max_seq.max(seq);
        self.last_new_poll = poll;
        self.last_new_ns = end_ns;
        let floor = self.max_seq.saturating_sub(SEEN_WINDOW);
        if self.seen.first().is_some_and(|&s| s <= floor) {
            self.seen = self.seen.split_off(&(floor + 1));
        }
        true
    }
}

#[derive(Debug, Default)]
struct VmState {
    polls: u64,
    last_poll_end: Option<u64>,
    insts: BTreeMap<String, Inst>,
    last_new_end: Option<u64>,
    gaps: Vec<Gap>,
    bad_prev: Vec<Option<String>>,
    garbled: u64,
    garbled_reasons: BTreeMap<String, u64>,
    errors: u64,
    last_error: Option<String>,
}

/// The oracle's state over all VMs.
#[derive(Debug)]
pub struct OracleCore {
    gap_threshold_ns: u64,
    vms: BTreeMap<String, VmState>,
    violations: Vec<Violation>,
    reported: HashSet<(String, String, String)>,
}

impl Default for OracleCore {
    fn default() -> Self {
        Self::new(DEFAULT_GAP_THRESHOLD)
    }
}

impl OracleCore {
    /// An empty oracle reporting silences longer than `gap_threshold`.
    pub fn new(gap_threshold: Duration) -> Self {
        OracleCore {
            gap_threshold_ns: u64::try_from(gap_threshold.as_nanos()).unwrap_or(u64::MAX),
            vms: BTreeMap::new(),
            violations: Vec::new(),
            reported: HashSet::new(),
        }
    }

    /// Makes `vm` known (so it appears in reports before its first poll).
    pub fn add_vm(&mut self, vm: &str) {
        self.vms.entry(vm.to_owned()).or_default();
    }

    /// Notes that polling `vm` failed; the poll does not count.
    pub fn note_error(&mut self, vm: &str, msg: String) {
        let st = self.vms.entry(vm.to_owned()).or_default();
        st.errors += 1;
        st.last_error = Some(msg);
    }

    /// Feeds one poll of `vm`'s ring: read started at `poll_start` and ended
    /// at `poll_end` (ns). Polls of one VM must not overlap; one that starts
    /// before the previous ended is refused and counted as an error.
    pub fn observe(&mut self, vm: &str, poll_start: u64, poll_end: u64, slots: &[Slot]) {
        let st = self.vms.entry(vm.to_owned()).or_default();
        if poll_end < poll_start || st.last_poll_end.is_some_and(|e| poll_start < e) {
            st.errors += 1;
            st.last_error = Some(format!(
                "poll times out of order: start {poll_start} end {poll_end} previous end {:?}",
                st.last_poll_end
            ));
            return;
        }
        let k = st.polls;
        st.polls += 1;
        st.last_poll_end = Some(poll_end);
        st.bad_prev.resize(slots.len(), None);
        // Lowest new seq per instance in this poll.
        let mut fresh: BTreeMap<String, u64> = BTreeMap::new();
        for (i, slot) in slots.iter().enumerate() {
            let bad = match slot {
                Slot::Empty => None,
                Slot::Garbled(r) => Some(r.to_string()),
                Slot::Record(r) if r.vm != vm => Some("record of another vm".to_owned()),
                Slot::Record(r) if i >= SLOTS || r.seq % SLOTS as u64 != i as u64 => {
                    Some("record in the wrong slot".to_owned())
                }
                Slot::Record(r) => {
                    let inst = st.insts.entry(r.inst.clone()).or_insert_with(|| Inst {
                        first_poll: k,
                        first_seen_ns: poll_end,
                        first_seq: r.seq,
                        last_new_poll: k,
                        last_new_ns: poll_end,
                        max_seq: 0,
                        records: 0,
                        seen: BTreeSet::new(),
                    });
                    if inst.first_poll == k {
                        inst.first_seq = inst.first_seq.min(r.seq);
                    }
                    if inst.see(r.seq, k, poll_end) {
                        let e = fresh.entry(r.inst.clone()).or_insert(r.seq);
                        *e = (*e).min(r.seq);
                    }
                    None
                }
            };
            if let Some(reason) = &bad {
                if st.bad_prev[i].as_ref() != Some(reason) {
                    st.garbled += 1;
                    *st.garbled_reasons.entry(reason.clone()).or_default() += 1;
                }
            }
            st.bad_prev[i] = bad;
        }
        if fresh.is_empty() {
            return;
        }
        if let Some(prev) = st.last_new_end {
            let len = poll_end.saturating_sub(prev);
            if len > self.gap_threshold_ns {
                st.gaps.push(gap(prev, poll_end, false));
            }
        }
        st.last_new_end = Some(poll_end);
        let mut found = Vec::new();
        for (x_id, &x_seq) in &fresh {
            let Some(x) = st.insts.get(x_id) else {
                continue;
            };
            for (y_id, y) in &st.insts {
                if y_id == x_id || k < y.first_poll + 2 {
                    continue;
                }
                let v = |kind, older: &str, newer: &str, newer_inst: &Inst| Violation {
                    vm: vm.to_owned(),
                    kind,
                    older_inst: older.to_owned(),
                    newer_inst: newer.to_owned(),
                    newer_first_seen_ns: newer_inst.first_seen_ns,
                    newer_first_seq: newer_inst.first_seq,
                    older_seen_ns: poll_end,
                    older_seq: x_seq,
                    polls_after: k - newer_inst.first_poll,
                };
                if x.first_poll < y.first_poll {
                    found.push(v(ViolationKind::OlderWroteAfterNewer, x_id, y_id, y));
                } else if x.first_poll == y.first_poll && y.last_new_poll >= y.first_poll + 2 {
                    let (a, b) = if x_id < y_id {
                        (x_id, y_id)
                    } else {
                        (y_id, x_id)
                    };
                    found.push(v(ViolationKind::ConcurrentStart, a, b, y));
                }
            }
        }
        for v in found {
            let key = (v.vm.clone(), v.older_inst.clone(), v.newer_inst.clone());
            if self.reported.insert(key) {
                self.violations.push(v);
            }
        }
    }

    /// Number of violations found so far.
    pub fn split_brains(&self) -> usize {
        self.violations.len()
    }

    /// The verdict so far.
    pub fn report(&self) -> OracleReport {
        let vms = self
            .vms
            .iter()
            .map(|(id, st)| (id.clone(), self.vm_report(st)))
            .collect();
        OracleReport {
            gap_threshold_ms: self.gap_threshold_ns / 1_000_000,
            vms,
            violations: self.violations.clone(),
            split_brains: self.violations.len(),
        }
    }

    fn vm_report(&self, st: &VmState) -> VmReport {
        let mut insts: Vec<(&String, &Inst)> = st.insts.iter().collect();
        insts.sort_by_key(|(id, i)| (i.first_poll, i.first_seen_ns, id.as_str()));
        let transitions = insts
            .windows(2)
            .map(|w| {
                let ((from, x), (to, y)) = (w[0], w[1]);
                Transition {
                    from: from.clone(),
                    to: to.clone(),
                    from_last_new_ns: x.last_new_ns,
                    to_first_seen_ns: y.first_seen_ns,
                    failover_ms: signed_ms(y.first_seen_ns, x.last_new_ns),
                }
            })
            .collect();
        let instances = insts
            .iter()
            .map(|(id, i)| InstanceReport {
                id: (*id).clone(),
                first_poll: i.first_poll,
                first_seen_ns: i.first_seen_ns,
                first_seq: i.first_seq,
                last_new_ns: i.last_new_ns,
                max_seq: i.max_seq,
                records: i.records,
            })
            .collect();
        let total_downtime_ms = st.gaps.iter().map(|g| g.duration_ms).sum();
        let mut gaps = st.gaps.clone();
        if let (Some(last_new), Some(last_poll)) = (st.last_new_end, st.last_poll_end) {
            if last_poll.saturating_sub(last_new) > self.gap_threshold_ns {
                gaps.push(gap(last_new, last_poll, true));
            }
        }
        VmReport {
            polls: st.polls,
            instances,
            transitions,
            gaps,
            total_downtime_ms,
            garbled: st.garbled,
            garbled_reasons: st.garbled_reasons.clone(),
            errors: st.errors,
            last_error: st.last_error.clone(),
        }
    }
}

fn gap(start_ns: u64, end_ns: u64, open: bool) -> Gap {
    Gap {
        start_ns,
        end_ns,
        duration_ms: end_ns.saturating_sub(start_ns) / 1_000_000,
        open,
    }
}

fn signed_ms(later: u64, earlier: u64) -> i64 {
    let ms = |d: u64| i64::try_from(d / 1_000_000).unwrap_or(i64::MAX);
    if later >= earlier {
        ms(later - earlier)
    } else {
        -ms(earlier - later)
    }
}
