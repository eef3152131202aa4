//! Human-readable replay of a trace (for counterexamples and examples).

use std::fmt;

use stateright::Model;

use crate::model::LeaseModel;
use crate::types::{Action, BallotBlock, LeaderRecord, Mode, Op, OwnerId, State, Write, MAX_HOSTS};

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h{}.g{}", self.host, self.gen)
    }
}

impl fmt::Display for LeaderRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.owner {
            Some(o) => write!(f, "{{owner {o}, lver {}}}", self.lver),
            None => write!(f, "{{free, lver {}}}", self.lver),
        }
    }
}

impl fmt::Display for BallotBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{mbal {}, bal {}, inp {}, lver {}",
            self.mbal,
            self.bal,
            self.inp.map_or("-".to_string(), |o| o.to_string()),
            self.lver
        )?;
        if let Some(g) = self.shared {
            write!(f, ", shared g{g}")?;
        }
        f.write_str("}")
    }
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Write::Leader(l) => write!(f, "leader := {l}"),
            Write::Block(b) => write!(f, "own block := {b}"),
        }
    }
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Exclusive => "exclusive",
        Mode::Shared => "shared",
    }
}

impl LeaseModel {
    /// Describes `action` taken in state `before`, including its visible effects.
    pub fn describe(&self, before: &State, action: Action) -> String {
        let after = self.next_state(before, action);
        let Some(after) = after else {
            return format!("{action:?}: no effect");
        };
        let mut text = match action {
            Action::Tick => "tick".to_string(),
            Action::StorageFail(h) => format!("h{h}: host-lease storage fails, renewals stop"),
            Action::Crash(h) => format!("h{h}: crashes (holder stops at once)"),
            Action::Restart(h) => {
                format!(
                    "h{h}: rejoins as generation {}",
                    after.hosts[usize::from(h)].gen
                )
            }
            Action::Acquire(h, mode) => {
                let mut t = format!(
                    "h{h}: acquire {}: reads leader {}",
                    mode_name(mode),
                    before.disk.leader
                );
                if let Op::Phase1Write(at) = after.hosts[usize::from(h)].op {
                    t.push_str(&format!(", ballot {} for lver {}", at.ballot, at.lver));
                    if let Some(o) = at.from {
                        t.push_str(&format!(", taking over from {o}"));
                    }
                }
                t
            }
            Action::Release(h) => format!("h{h}: holder stops, release starts"),
            Action::Io(h) => self.describe_io(before, &after, usize::from(h)),
            Action::IoLate(h) => {
                let f = after.hosts[usize::from(h)].in_flight;
                format!(
                    "h{h}: issues {} and gives up on it (in flight); operation abandoned",
                    f.map_or("?".to_string(), |f| f.write.to_string())
                )
            }
            Action::Land(h) => {
                let f = before.hosts[usize::from(h)].in_flight;
                format!(
                    "h{h}: in-flight write lands late: {}",
                    f.map_or("?".to_string(), |f| f.write.to_string())
                )
            }
            Action::Lose(h) => format!("h{h}: in-flight write is lost"),
        };
        for (i, (b, a)) in before.hosts.iter().zip(after.hosts.iter()).enumerate() {
            if usize::from(self.bounds.hosts) <= i {
                break;
            }
            if b.holder != a.holder {
                match a.holder {
                    Some(m) => text.push_str(&format!(" => h{i} holder STARTS ({})", mode_name(m))),
                    None if action != Action::Release(u8::try_from(i).unwrap_or(0)) => {
                        text.push_str(&format!(" => h{i} holder stopped"));
                    }
                    None => {}
                }
            }
            if b.up && !a.up && action == Action::Tick {
                text.push_str(&format!(" => h{i} lockspace failed, host down"));
            }
            for j in 0..MAX_HOSTS {
                let (vb, va) = (b.views[j], a.views[j]);
                if let (Some(vb), Some(va)) = (vb, va) {
                    if va.age > vb.age && va.age == self.dead_after() + 1 {
                        text.push_str(&format!(" => h{i} sees h{j} gone"));
                    }
                }
            }
        }
        if after.early_takeover && !before.early_takeover {
            text.push_str(" => EARLY TAKEOVER");
        }
        text
    }

    fn describe_io(&self, before: &State, after: &State, h: usize) -> String {
        let op = before.hosts[h].op;
        let next = after.hosts[h].op;
        let aborted = next == Op::Idle && !matches!(op, Op::Idle);
        match op {
            Op::Idle => format!("h{h}: nothing to do"),
            Op::Phase1Write(_) | Op::Phase2Write { .. } | Op::MarkShared | Op::ClearMark => {
                let phase = match op {
                    Op::Phase1Write(_) => "phase 1: ",
                    Op::Phase2Write { .. } => "phase 2: ",
                    Op::MarkShared => "shared mark: ",
                    _ => "shared release: ",
                };
                format!("h{h}: {phase}own block := {}", after.disk.blocks[h])
            }
            Op::Phase1Read { next: j, .. } | Op::Phase2Read { next: j, .. } => {
                let phase = if matches!(op, Op::Phase1Read { .. }) {
                    1
                } else {
                    2
                };
                let mut t = format!(
                    "h{h}: phase {phase}: reads block {j} = {}",
                    before.disk.blocks[usize::from(j)]
                );
                if aborted {
                    t.push_str(", higher ballot: aborts");
                }
                t
            }
            Op::Commit { at, value } => {
                let me = OwnerId {
                    host: u8::try_from(h).unwrap_or(0),
                    gen: before.hosts[h].gen,
                };
                let mut t = format!(
                    "h{h}: commit: leader := {}",
                    LeaderRecord {
                        owner: Some(value),
                        lver: at.lver
                    }
                );
                if value != me {
                    t.push_str(" (another host's value: fails)");
                }
                t
            }
            Op::SharedCheck { next: j, .. } => {
                let mut t = format!(
                    "h{h}: shared check: reads block {j} = {}",
                    before.disk.blocks[usize::from(j)]
                );
                if matches!(next, Op::ReleaseRead { .. }) {
                    t.push_str(", live shared holder: busy, releasing");
                }
                t
            }
            Op::ReleaseRead { .. } => {
                format!("h{h}: release: reads leader {}", before.disk.leader)
            }
            Op::ReleaseWrite { .. } => {
                format!("h{h}: release: leader := {}", after.disk.leader)
            }
        }
    }

    /// Replays `trace` from the initial state, one described line per step.
    pub fn explain(&self, trace: &[Action]) -> Vec<String> {
        let mut lines = Vec::with_capacity(trace.len());
        let Some(mut s) = self.init_states().into_iter().next() else {
            return lines;
        };
        for (i, &a) in trace.iter().enumerate() {
            lines.push(format!("{:>3}. {}", i + 1, self.describe(&s, a)));
            match self.next_state(&s, a) {
                Some(n) => s = n,
                None => break,
            }
        }
        lines
    }
}
