//! Self-defense with hysteresis: when at least `defense_pct`% of hosts are
//! lost at once, automatic recovery stops (alarm); it resumes when at least
//! `recover_pct`% are Up again. Hosts that are Suspect count as neither.
//! `defense_pct = 0` disables it.

use crate::command::{event, kind, Command, ALARM, INFO};
use crate::model::HaSettings;

/// How many hosts there are, are lost, are Up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    /// Hosts in the inventory.
    pub total: usize,
    /// NonResponsive, Recovering or Down.
    pub lost: usize,
    /// Up.
    pub up: usize,
}

/// The next self-defense state from the current one, and the event of a change.
pub fn step(active: bool, c: Census, s: &HaSettings, at_ms: u64) -> (bool, Option<Command>) {
    let pct = |n: usize| (n * 100).checked_div(c.total).unwrap_or(0);
    if s.defense_pct == 0 {
        let ev = active.then(|| {
            let d = "self-defense disabled: automatic recovery resumed".to_string();
            event(at_ms, INFO, kind::SELF_RECOVERY, None, None, d)
        });
        return (false, ev);
    }
    if !active && c.total > 0 && c.lost * 100 >= usize::from(s.defense_pct) * c.total {
        let d = format!(
            "{} of {} hosts lost ({}%) >= {}%: automatic recovery stopped until {}% are up",
            c.lost,
            c.total,
            pct(c.lost),
            s.defense_pct,
            s.recover_pct
        );
        return (
            true,
            Some(event(at_ms, ALARM, kind::SELF_DEFENSE, None, None, d)),
        );
    }
    if active && c.up * 100 >= usize::from(s.recover_pct) * c.total {
        let d = format!(
            "{} of {} hosts up ({}%) >= {}%: automatic recovery resumed",
            c.up,
            c.total,
            pct(c.up),
            s.recover_pct
        );
        return (
            false,
            Some(event(at_ms, INFO, kind::SELF_RECOVERY, None, None, d)),
        );
    }
    (active, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn census(total: usize, lost: usize, up: usize) -> Census {
        Census { total, lost, up }
    }

    #[test]
    fn thresholds_are_inclusive_and_hysteresis_holds() {
        let s = HaSettings::default(); // 50% / 70%
                                       // 20 of 38 lost = 52.6%: on. 18 of 38 = 47.4%: off.
        assert!(step(false, census(38, 20, 18), &s, 0).0);
        assert!(!step(false, census(38, 18, 20), &s, 0).0);
        // Exactly 50%: on.
        assert!(step(false, census(10, 5, 5), &s, 0).0);
        // Active: 69% up stays on, 70% up resumes.
        assert_eq!(step(true, census(100, 10, 69), &s, 0), (true, None));
        let (on, ev) = step(true, census(100, 10, 70), &s, 0);
        assert!(!on && ev.is_some());
        // Fewer lost than the threshold but not enough up: still on.
        assert!(step(true, census(10, 2, 6), &s, 0).0);
        // Disabled.
        let off = HaSettings {
            defense_pct: 0,
            ..s
        };
        assert!(!step(false, census(10, 10, 0), &off, 0).0);
        assert!(step(true, census(10, 10, 0), &off, 0).1.is_some());
        assert!(!step(false, census(0, 0, 0), &s, 0).0);
    }
}
