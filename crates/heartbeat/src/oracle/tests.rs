//! Unit tests of the pure oracle core, one per rule.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::record::{GarbleReason, Record, Slot, SLOTS};

const MS: u64 = 1_000_000;

/// A simulated disk ring and a poller: poll i runs from i*100 ms to i*100+1 ms.
struct Sim {
    ring: Vec<Slot>,
    core: OracleCore,
    poll: u64,
}

impl Sim {
    fn new() -> Self {
        Sim {
            ring: vec![Slot::Empty; SLOTS],
            core: OracleCore::default(),
            poll: 0,
        }
    }
    fn write(&mut self, inst: &str, seq: u64) -> &mut Self {
        let rec = Record {
            vm: "vm1".into(),
            inst: inst.into(),
            seq,
            time_ms: 0,
        };
        self.ring[usize::try_from(seq % SLOTS as u64).unwrap()] = Slot::Record(rec);
        self
    }
    fn poll(&mut self) -> &mut Self {
        let start = self.poll * 100 * MS;
        self.core.observe("vm1", start, start + MS, &self.ring);
        self.poll += 1;
        self
    }
    fn end_of(poll: u64) -> u64 {
        poll * 100 * MS + MS
    }
    fn report(&self) -> OracleReport {
        self.core.report()
    }
}

#[test]
fn clean_handover_is_silent_and_measured() {
    let mut s = Sim::new();
    for seq in 1..=5 {
        s.write("a", seq).poll(); // polls 0..=4
    }
    s.poll(); // poll 5: silence
    for seq in 1..=5 {
        s.write("b", seq).poll(); // polls 6..=10
    }
    let r = s.report();
    assert_eq!(r.split_brains, 0, "{r:?}");
    let vm = &r.vms["vm1"];
    assert_eq!(vm.instances.len(), 2);
    assert_eq!(
        (vm.instances[0].id.as_str(), vm.instances[0].records),
        ("a", 5)
    );
    assert_eq!(vm.instances[1].first_poll, 6);
    assert_eq!(vm.transitions.len(), 1);
    let t = &vm.transitions[0];
    assert_eq!((t.from.as_str(), t.to.as_str()), ("a", "b"));
    assert_eq!(t.from_last_new_ns, Sim::end_of(4));
    assert_eq!(t.to_first_seen_ns, Sim::end_of(6));
    assert_eq!(t.failover_ms, 200);
    assert!(vm.gaps.is_empty());
}

#[test]
fn older_writing_two_polls_after_newer_fires_once() {
    let mut s = Sim::new();
    s.write("a", 1).poll().write("a", 2).poll(); // polls 0, 1
    s.write("b", 1).poll(); // poll 2: b starts
    s.poll(); // poll 3
    s.write("a", 3).poll(); // poll 4 = kB + 2
    s.write("a", 4).poll().write("b", 2).poll();
    let r = s.report();
    assert_eq!(r.split_brains, 1, "{r:?}");
    let v = &r.violations[0];
    assert_eq!(v.kind, ViolationKind::OlderWroteAfterNewer);
    assert_eq!((v.older_inst.as_str(), v.newer_inst.as_str()), ("a", "b"));
    assert_eq!((v.older_seq, v.newer_first_seq, v.polls_after), (3, 1, 2));
    assert_eq!(v.newer_first_seen_ns, Sim::end_of(2));
    assert_eq!(v.older_seen_ns, Sim::end_of(4));
    assert!(r.summary_line().starts_with("SPLIT BRAIN: 1 violation"));
    // Overlap shows as a negative failover.
    assert!(r.vms["vm1"].transitions[0].failover_ms < 0);
}

#[test]
fn older_write_within_one_poll_after_newer_is_silent() {
    let mut s = Sim::new();
    s.write("a", 1).poll(); // poll 0
    s.write("b", 1).poll(); // poll 1: b starts
    s.write("a", 2).poll(); // poll 2 = kB + 1: may predate b's first write
    for seq in 2..6 {
        s.write("b", seq).poll();
    }
    let r = s.report();
    assert_eq!(r.split_brains, 0, "{r:?}");
    assert!(r.summary_line().starts_with("OK: no split brain"));
}

#[test]
fn same_poll_start_fires_only_if_both_continue() {
    let mut s = Sim::new();
    // b's seqs start at 33 so the two do not share slots.
    s.write("a", 1).write("b", 33).poll(); // poll 0: both first seen
    s.poll();
    s.write("b", 34).poll(); // poll 2: only b continues: fine
    assert_eq!(s.report().split_brains, 0);
    s.write("a", 2).poll(); // poll 3: a continues too
    let r = s.report();
    assert_eq!(r.split_brains, 1, "{r:?}");
    let v = &r.violations[0];
    assert_eq!(v.kind, ViolationKind::ConcurrentStart);
    assert_eq!((v.older_inst.as_str(), v.newer_inst.as_str()), ("a", "b"));
    s.write("b", 35).write("a", 3).poll();
    assert_eq!(s.report().split_brains, 1);
}

#[test]
fn stale_leftover_with_live_instance_is_silent() {
    let mut s = Sim::new();
    s.write("old", 10).write("new", 1).poll();
    for seq in 2..10 {
        s.write("new", seq).poll();
    }
    assert_eq!(s.report().split_brains, 0);
}

#[test]
fn gaps_are_measured_and_open_gap_reported() {
    let mut s = Sim::new();
    s.write("a", 1).poll().write("a", 2).poll(); // polls 0, 1
    for _ in 2..15 {
        s.poll();
    }
    s.write("a", 3).poll(); // poll 15: 1.4 s after poll 1
    s.write("a", 4).poll(); // poll 16
    let vm = s.report().vms["vm1"].clone();
    assert_eq!(vm.gaps.len(), 1, "{vm:?}");
    let g = &vm.gaps[0];
    assert_eq!((g.start_ns, g.end_ns), (Sim::end_of(1), Sim::end_of(15)));
    assert_eq!((g.duration_ms, g.open), (1400, false));
    assert_eq!(vm.total_downtime_ms, 1400);
    // A silence under the threshold is not a gap.
    for _ in 17..26 {
        s.poll();
    }
    assert_eq!(s.report().vms["vm1"].gaps.len(), 1);
    // A longer one is reported as open until a record appears.
    for _ in 26..30 {
        s.poll();
    }
    let vm = s.report().vms["vm1"].clone();
    assert_eq!(vm.gaps.len(), 2);
    assert!(vm.gaps[1].open);
    assert_eq!(vm.gaps[1].duration_ms, 1300);
    assert_eq!(vm.total_downtime_ms, 1400);
}

#[test]
fn garbled_misplaced_and_foreign_are_counted_not_recorded() {
    let mut s = Sim::new();
    s.ring[3] = Slot::Garbled(GarbleReason::BadSeq);
    s.ring[5] = Slot::Record(Record {
        vm: "vm1".into(),
        inst: "x".into(),
        seq: 6,
        time_ms: 0,
    });
    s.ring[7] = Slot::Record(Record {
        vm: "vm2".into(),
        inst: "y".into(),
        seq: 7,
        time_ms: 0,
    });
    s.poll().poll();
    let vm = s.report().vms["vm1"].clone();
    assert_eq!(vm.garbled, 3, "{vm:?}");
    assert!(vm.instances.is_empty());
    s.ring[3] = Slot::Garbled(GarbleReason::NoNewline);
    s.poll();
    let vm = s.report().vms["vm1"].clone();
    assert_eq!(vm.garbled, 4);
    assert_eq!(vm.garbled_reasons["record in the wrong slot"], 1);
}

#[test]
fn overlapping_poll_times_are_refused() {
    let mut c = OracleCore::default();
    let ring = vec![Slot::Empty; SLOTS];
    c.observe("vm1", 10, 20, &ring);
    c.observe("vm1", 15, 30, &ring);
    c.observe("vm1", 40, 35, &ring);
    c.note_error("vm1", "disk missing".into());
    let vm = &c.report().vms["vm1"];
    assert_eq!((vm.polls, vm.errors), (1, 3));
    assert_eq!(vm.last_error.as_deref(), Some("disk missing"));
}

#[test]
fn report_round_trips_through_json() {
    let mut s = Sim::new();
    s.write("a", 1)
        .poll()
        .write("b", 1)
        .poll()
        .poll()
        .write("a", 2)
        .poll();
    let r = s.report();
    assert_eq!(r.split_brains, 1);
    let json = serde_json::to_string(&r).unwrap();
    let back: OracleReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    assert!(json.contains("\"older_wrote_after_newer\""));
}
