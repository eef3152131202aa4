//! Failure detection: per host, the last heartbeat on each plane and the
//! storage truth (the host's lease in the domain lockspace as the engine
//! reads it), the host state machine, the HA strategy lookup, the lease
//! gate and self-defense.
//!
//! - A plane is down when no heartbeat came for `plane_timeout`.
//! - `Up -> Suspect` when a plane is down or the lease is not renewed
//!   (Fail, Dead, Free); `Suspect -> Up` when that clears within the grace.
//! - Past `grace_ms` the host is lost: `Recovering` if the strategy row for
//!   its plane state says recover AND its lease is Dead on storage AND
//!   neither HA maintenance (host or cluster) nor self-defense holds;
//!   `NonResponsive` otherwise, with an event naming the reason. A
//!   NonResponsive host is decided again at every evaluation.
//! - `Recovering -> Down` when the scheduler has nothing left for it.
//! - Any lost state `-> Up` when every plane heartbeats and the lease is
//!   Live again.
//!
//! Heartbeats alone never make a host Recovering or Down: the lease must be
//! Dead, which is what makes restarting its VMs safe (they were stopped by
//! their host's lease manager before the lease could be seen dead).
//!
//! Self-defense: when at least `defense_pct`% of hosts are lost
//! (NonResponsive, Recovering or Down) automatic recovery stops (alarm)
//! until at least `recover_pct`% are Up again. `defense_pct = 0` disables it.

use std::collections::BTreeMap;
use std::time::Duration;

use nosplit_clock::MonoTime;
use serde::{Deserialize, Serialize};

use crate::command::{event, kind, Command, INFO, WARNING};
use crate::defense::{self, Census};
use crate::model::{HaSettings, Host, HostState, Plane, Strategy};

/// Errors of the detector's inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    /// The host is not in the inventory.
    #[error("unknown host {0:?}")]
    UnknownHost(String),
}

/// A host's lease in the domain lockspace, as the engine reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// Not read yet.
    Unknown,
    /// Renewed.
    Live,
    /// Renewals stopped; not dead yet.
    Fail,
    /// Not renewed for the host-dead time: its holders are stopped.
    Dead,
    /// The slot is free (the host is not in the lockspace).
    Free,
}

/// The planes, in strategy-index order.
pub const PLANES: [Plane; 3] = [Plane::Mgmt, Plane::Svc, Plane::Stor];

fn plane_ix(p: Plane) -> usize {
    match p {
        Plane::Mgmt => 0,
        Plane::Svc => 1,
        Plane::Stor => 2,
    }
}

/// One host as the detector tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTrack {
    /// The inventory record.
    pub host: Host,
    /// Last heartbeat per plane (mgmt, svc, stor); the registration time at first.
    pub last_hb: [MonoTime; 3],
    /// Lease state.
    pub lease: LeaseState,
    /// State.
    pub state: HostState,
    /// When it entered `state`.
    pub since: MonoTime,
    /// The lease was seen Dead since the host was last Up.
    pub lease_died: bool,
    /// Last reason reported for not recovering (to report changes only).
    pub hold: Option<String>,
}

/// What the detector decided, for the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Restart the host's HA VMs elsewhere.
    Recover(String),
    /// The host is Up again after its lease died: its VMs were stopped.
    Returned(String),
}

/// The detector.
#[derive(Debug, Clone)]
pub struct Detector {
    plane_timeout: Duration,
    hosts: BTreeMap<String, HostTrack>,
    defense: bool,
}

/// `(mgmt, svc, stor)` up flags at `now`.
pub fn planes_up(t: &HostTrack, now: MonoTime, timeout: Duration) -> [bool; 3] {
    t.last_hb.map(|last| now < last + timeout)
}

/// "row 3 (mgmt down, svc up, stor up): recover" (index = mgmt*4+svc*2+stor).
pub fn row_text(up: [bool; 3], strategy: &Strategy) -> String {
    let ix = usize::from(up[0]) * 4 + usize::from(up[1]) * 2 + usize::from(up[2]);
    let ud = |b: bool| if b { "up" } else { "down" };
    let what = if strategy.recover(up[0], up[1], up[2]) {
        "recover"
    } else {
        "leave it"
    };
    format!(
        "strategy row {ix} (mgmt {}, svc {}, stor {}): {what}",
        ud(up[0]),
        ud(up[1]),
        ud(up[2])
    )
}

fn cause(up: [bool; 3], lease: LeaseState) -> String {
    let down: Vec<&str> = PLANES
        .iter()
        .zip(up)
        .filter(|(_, u)| !u)
        .map(|(p, _)| p.name())
        .collect();
    let down = if down.is_empty() {
        "none".to_string()
    } else {
        down.join(",")
    };
    format!("planes down: {down}; lease {lease:?}")
}

fn is_lost(s: HostState) -> bool {
    matches!(
        s,
        HostState::NonResponsive | HostState::Recovering | HostState::Down
    )
}

impl Detector {
    /// An empty detector.
    pub fn new(plane_timeout: Duration) -> Detector {
        Detector {
            plane_timeout,
            hosts: BTreeMap::new(),
            defense: false,
        }
    }

    /// Adds a host (Up, heartbeats counted from `now`, lease Unknown) or
    /// updates its inventory record, keeping its state.
    pub fn upsert_host(&mut self, host: Host, now: MonoTime) {
        match self.hosts.get_mut(&host.name) {
            Some(t) => t.host = host,
            None => {
                let t = HostTrack {
                    host: host.clone(),
                    last_hb: [now; 3],
                    lease: LeaseState::Unknown,
                    state: HostState::Up,
                    since: now,
                    lease_died: false,
                    hold: None,
                };
                self.hosts.insert(host.name, t);
            }
        }
    }

    /// Forgets a host.
    pub fn remove_host(&mut self, name: &str) -> Result<HostTrack, DetectError> {
        self.hosts
            .remove(name)
            .ok_or_else(|| DetectError::UnknownHost(name.to_string()))
    }

    fn get_mut(&mut self, name: &str) -> Result<&mut HostTrack, DetectError> {
        self.hosts
            .get_mut(name)
            .ok_or_else(|| DetectError::UnknownHost(name.to_string()))
    }

    /// A heartbeat arrived on `plane`.
    pub fn heartbeat(
        &mut self,
        name: &str,
        plane: Plane,
        now: MonoTime,
    ) -> Result<(), DetectError> {
        let t = self.get_mut(name)?;
        let slot = &mut t.last_hb[plane_ix(plane)];
        *slot = (*slot).max(now);
        Ok(())
    }

    /// The engine read the host's lease; returns the previous state.
    pub fn set_lease(&mut self, name: &str, lease: LeaseState) -> Result<LeaseState, DetectError> {
        let t = self.get_mut(name)?;
        if lease == LeaseState::Dead {
            t.lease_died = true;
        }
        Ok(std::mem::replace(&mut t.lease, lease))
    }

    /// Switches a host's HA maintenance.
    pub fn set_maintenance(&mut self, name: &str, on: bool) -> Result<(), DetectError> {
        self.get_mut(name)?.host.maintenance = on;
        Ok(())
    }

    /// One host.
    pub fn host(&self, name: &str) -> Option<&HostTrack> {
        self.hosts.get(name)
    }

    /// All hosts, by name.
    pub fn hosts(&self) -> &BTreeMap<String, HostTrack> {
        &self.hosts
    }

    /// Whether self-defense holds automatic recovery.
    pub fn self_defense(&self) -> bool {
        self.defense
    }

    /// The plane timeout.
    pub fn plane_timeout(&self) -> Duration {
        self.plane_timeout
    }

    /// Moves every host's state machine to `now`; returns events and decisions.
    pub fn evaluate(
        &mut self,
        now: MonoTime,
        s: &HaSettings,
        strategy: &Strategy,
        at_ms: u64,
    ) -> (Vec<Command>, Vec<Decision>) {
        let (timeout, grace) = (self.plane_timeout, Duration::from_millis(s.grace_ms));
        let mut out = Vec::new();
        let mut decisions = Vec::new();
        let mut to_decide = Vec::new();
        for (name, t) in self.hosts.iter_mut() {
            let up = planes_up(t, now, timeout);
            let all_up = up.iter().all(|u| *u);
            let lease_bad = matches!(
                t.lease,
                LeaseState::Fail | LeaseState::Dead | LeaseState::Free
            );
            let h = Some(name.as_str());
            match t.state {
                HostState::Up if !all_up || lease_bad => {
                    t.state = HostState::Suspect;
                    t.since = now;
                    let d = format!("{}; grace {} ms", cause(up, t.lease), s.grace_ms);
                    out.push(event(at_ms, WARNING, kind::HOST_SUSPECT, h, None, d));
                }
                HostState::Up => {}
                HostState::Suspect if all_up && !lease_bad => {
                    t.state = HostState::Up;
                    t.since = now;
                    let d = format!("recovered within the grace; lease {:?}", t.lease);
                    out.push(event(at_ms, INFO, kind::HOST_UP, h, None, d));
                }
                HostState::Suspect => {
                    if now >= t.since + grace {
                        t.state = HostState::NonResponsive;
                        t.since = now;
                        t.hold = None;
                        to_decide.push(name.clone());
                    }
                }
                lost => {
                    if all_up && t.lease == LeaseState::Live {
                        t.state = HostState::Up;
                        t.since = now;
                        t.hold = None;
                        let d = format!("every plane heartbeats, lease Live (was {lost:?})");
                        out.push(event(at_ms, INFO, kind::HOST_UP, h, None, d));
                        if std::mem::take(&mut t.lease_died) {
                            decisions.push(Decision::Returned(name.clone()));
                        }
                    } else if lost == HostState::NonResponsive {
                        to_decide.push(name.clone());
                    }
                }
            }
        }
        self.update_defense(s, at_ms, &mut out);
        let defense = self.defense;
        for name in to_decide {
            let Some(t) = self.hosts.get_mut(&name) else {
                continue;
            };
            let up = planes_up(t, now, timeout);
            let row = row_text(up, strategy);
            let hold = if t.host.maintenance {
                Some((INFO, "host in HA maintenance: not recovered".to_string()))
            } else if s.maintenance {
                Some((INFO, "cluster in HA maintenance: not recovered".to_string()))
            } else if !strategy.recover(up[0], up[1], up[2]) {
                Some((WARNING, format!("{row}: not recovered")))
            } else if t.lease != LeaseState::Dead {
                let why = match t.lease {
                    LeaseState::Live => "recovery held: lease still renewed",
                    LeaseState::Fail => "recovery held: lease renewal failing, not dead yet",
                    _ => "recovery held: lease not seen dead",
                };
                Some((WARNING, format!("{why} ({row})")))
            } else if defense {
                Some((WARNING, "recovery held: self-defense".to_string()))
            } else {
                None
            };
            let h = Some(name.as_str());
            match hold {
                Some((sev, reason)) => {
                    if t.hold.as_deref() != Some(reason.as_str()) {
                        let k = if sev == INFO {
                            kind::RECOVERY_SKIPPED
                        } else {
                            kind::RECOVERY_HELD
                        };
                        let d = format!("{reason}; {}", cause(up, t.lease));
                        out.push(event(at_ms, sev, k, h, None, d));
                        t.hold = Some(reason);
                    }
                }
                None => {
                    t.state = HostState::Recovering;
                    t.since = now;
                    t.hold = None;
                    let d = format!("{}; {row}; lease dead on storage", cause(up, t.lease));
                    out.push(event(at_ms, WARNING, kind::HOST_RECOVERING, h, None, d));
                    decisions.push(Decision::Recover(name));
                }
            }
        }
        (out, decisions)
    }

    fn update_defense(&mut self, s: &HaSettings, at_ms: u64, out: &mut Vec<Command>) {
        let count = |f: fn(HostState) -> bool| self.hosts.values().filter(|t| f(t.state)).count();
        let census = Census {
            total: self.hosts.len(),
            lost: count(is_lost),
            up: count(|s| s == HostState::Up),
        };
        let (active, ev) = defense::step(self.defense, census, s, at_ms);
        self.defense = active;
        out.extend(ev);
    }

    /// Recovering -> Down once nothing is left to restart for it.
    pub fn mark_down(&mut self, name: &str, now: MonoTime, at_ms: u64) -> Option<Command> {
        let t = self.hosts.get_mut(name)?;
        if t.state != HostState::Recovering {
            return None;
        }
        t.state = HostState::Down;
        t.since = now;
        let d = "recovery finished: nothing left to restart".to_string();
        Some(event(at_ms, INFO, kind::HOST_DOWN, Some(name), None, d))
    }

    /// The next time after `now` a plane times out or a grace ends.
    pub fn next_wakeup(&self, s: &HaSettings, now: MonoTime) -> Option<MonoTime> {
        let grace = Duration::from_millis(s.grace_ms);
        let mut next: Option<MonoTime> = None;
        let mut consider = |t: MonoTime| {
            if t > now {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for t in self.hosts.values() {
            for last in t.last_hb {
                consider(last + self.plane_timeout);
            }
            if t.state == HostState::Suspect {
                consider(t.since + grace);
            }
        }
        next
    }
}
