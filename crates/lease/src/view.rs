//! The liveness view: what this host has seen of every other host's delta
//! lease, judged only by changes observed on this host's monotonic clock.

use std::collections::BTreeMap;
use std::time::Duration;

use nosplit_clock::MonoTime;

use crate::format::HostSlot;
use crate::timing::Timing;

/// What a host looks like from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Liveness {
    /// Never joined, or left cleanly: holds nothing.
    Free,
    /// Renewing.
    Live,
    /// Stopped renewing for at least the renewal-fail time: its holders are
    /// being stopped, but it may not be taken over yet.
    Fail,
    /// Unchanged for at least the host-dead time: its leases may be taken.
    Dead,
}

impl std::fmt::Display for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Liveness::Free => "FREE",
            Liveness::Live => "LIVE",
            Liveness::Fail => "FAIL",
            Liveness::Dead => "DEAD",
        })
    }
}

/// The observed content of one host slot (`None`: blank sector).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Last content read.
    pub slot: Option<HostSlot>,
    /// Completion time of the read that first showed this content.
    pub changed_at: MonoTime,
    /// Issue time of the latest read that showed this same content.
    pub confirmed_at: MonoTime,
}

/// Observations of every host slot read so far.
#[derive(Debug, Clone, Default)]
pub struct HostView {
    hosts: BTreeMap<u32, Observed>,
}

fn same(a: &Option<HostSlot>, b: &Option<HostSlot>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            (
                a.generation,
                a.seq,
                a.released,
                &a.host_name,
                a.owner_time_ms,
            ) == (
                b.generation,
                b.seq,
                b.released,
                &b.host_name,
                b.owner_time_ms,
            )
        }
        _ => false,
    }
}

impl HostView {
    /// Records a read of `host_id`'s slot issued at `issued` and completed at
    /// `done`. Returns true if the content changed (or was first seen).
    pub fn observe(
        &mut self,
        host_id: u32,
        slot: Option<HostSlot>,
        issued: MonoTime,
        done: MonoTime,
    ) -> bool {
        match self.hosts.get_mut(&host_id) {
            Some(o) if same(&o.slot, &slot) => {
                o.confirmed_at = o.confirmed_at.max(issued);
                false
            }
            Some(o) if issued < o.changed_at => {
                // A read issued before we saw the current content: its
                // (older or newer) content says nothing reliable; ignore.
                false
            }
            _ => {
                self.hosts.insert(
                    host_id,
                    Observed {
                        slot,
                        changed_at: done,
                        confirmed_at: done,
                    },
                );
                true
            }
        }
    }

    /// The observation of one host, if any.
    pub fn get(&self, host_id: u32) -> Option<&Observed> {
        self.hosts.get(&host_id)
    }

    /// Every observed host.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Observed)> {
        self.hosts.iter().map(|(&h, o)| (h, o))
    }

    /// Highest host id whose slot was seen non-blank.
    pub fn highest_in_use(&self) -> u32 {
        self.hosts
            .iter()
            .rev()
            .find(|(_, o)| o.slot.is_some())
            .map(|(&h, _)| h)
            .unwrap_or(0)
    }

    /// Liveness of `host_id`, as confirmed by reads: a host is only called
    /// FAIL or DEAD on the strength of a read that still showed the old
    /// content, never merely because no read happened.
    pub fn liveness(&self, host_id: u32, timing: &Timing) -> Option<Liveness> {
        let o = self.hosts.get(&host_id)?;
        Some(match &o.slot {
            None => Liveness::Free,
            Some(s) if s.released => Liveness::Free,
            Some(_) => classify(o.confirmed_at.saturating_since(o.changed_at), timing),
        })
    }

    /// When `host_id` will be DEAD if its slot stays unchanged (for "retry
    /// after" hints); `None` if not observed or free.
    pub fn dead_at(&self, host_id: u32, timing: &Timing) -> Option<MonoTime> {
        let o = self.hosts.get(&host_id)?;
        match &o.slot {
            Some(s) if !s.released => Some(o.changed_at + timing.host_dead),
            _ => None,
        }
    }
}

/// Liveness for a slot unchanged for `age`.
pub fn classify(age: Duration, timing: &Timing) -> Liveness {
    if age >= timing.host_dead {
        Liveness::Dead
    } else if age >= timing.renew_fail {
        Liveness::Fail
    } else {
        Liveness::Live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Name;

    fn slot(seq: u64) -> Option<HostSlot> {
        Some(HostSlot {
            host_id: 2,
            generation: 1,
            seq,
            owner_time_ms: seq,
            io_timeout_ms: 1000,
            released: false,
            ls_uuid: [0; 16],
            host_name: Name::new("b").unwrap(),
        })
    }

    fn ms(v: u64) -> MonoTime {
        MonoTime::from_millis(v)
    }

    #[test]
    fn live_fail_dead_by_confirmed_reads_only() {
        let t = Timing::from_io_timeout_ms(1000);
        let mut v = HostView::default();
        assert!(v.observe(2, slot(1), ms(0), ms(10)));
        assert_eq!(v.liveness(2, &t), Some(Liveness::Live));
        // Without a new read, time alone never makes it FAIL or DEAD.
        assert!(!v.observe(2, slot(1), ms(3010), ms(3011)));
        assert_eq!(v.liveness(2, &t), Some(Liveness::Fail));
        assert!(!v.observe(2, slot(1), ms(5530), ms(5531)));
        assert_eq!(v.liveness(2, &t), Some(Liveness::Dead));
        // A change makes it live again.
        assert!(v.observe(2, slot(2), ms(5600), ms(5601)));
        assert_eq!(v.liveness(2, &t), Some(Liveness::Live));
    }

    #[test]
    fn released_and_blank_are_free() {
        let t = Timing::from_io_timeout_ms(1000);
        let mut v = HostView::default();
        v.observe(3, None, ms(0), ms(1));
        assert_eq!(v.liveness(3, &t), Some(Liveness::Free));
        let mut s = slot(4);
        if let Some(s) = s.as_mut() {
            s.released = true;
        }
        v.observe(2, s, ms(0), ms(1));
        assert_eq!(v.liveness(2, &t), Some(Liveness::Free));
        assert_eq!(v.liveness(9, &t), None);
    }

    #[test]
    fn stale_read_is_ignored() {
        let mut v = HostView::default();
        v.observe(2, slot(5), ms(100), ms(110));
        // A read issued earlier that returns older content.
        assert!(!v.observe(2, slot(4), ms(90), ms(120)));
        assert_eq!(v.get(2).unwrap().slot, slot(5));
    }
}
