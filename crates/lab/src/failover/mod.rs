//! The lab's recovery policy until the engine drives the lab: which VM to
//! start where, and when. Pure: `(state, event, now) -> commands`; the lab
//! runtime feeds it what it observes and carries out the [`Command`]s.
//!
//! What it may know is what an engine could know:
//! - each host's liveness as read from the lockspace on shared storage (the
//!   storage truth: a host is DEAD only after its lease stopped changing for
//!   the host-dead time);
//! - what the hosts' agents report: a VM started, failed to start (busy:
//!   its lease is still held elsewhere), or exited. A powered-off host
//!   reports nothing.
//!
//! Policy:
//! - an HA VM whose host is DEAD, or which exited without being asked to,
//!   is restarted on the live host that runs the fewest VMs, never on the
//!   host it was lost on while that host is not LIVE;
//! - a start refused because the lease is busy is retried every
//!   `busy_retry` without limit: the lease decides when it is safe;
//! - any other failure is retried with doubling backoff, at most
//!   `max_attempts` times, then the VM is given up (reported);
//! - a VM stopped on purpose is never restarted.
//!
//! Lease protection is what makes this safe: the policy may be wrong about
//! a host (DEAD on storage but still running, say), and the lease refuses.

use std::collections::BTreeMap;
use std::time::Duration;

use nosplit_clock::MonoTime;
use nosplit_lease::Liveness;

/// Knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Wait before trying a busy lease again.
    pub busy_retry: Duration,
    /// First backoff after another failure; doubles per attempt.
    pub backoff: Duration,
    /// Failures (other than busy) before giving a VM up.
    pub max_attempts: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            busy_retry: Duration::from_millis(250),
            backoff: Duration::from_millis(500),
            max_attempts: 5,
        }
    }
}

/// Where a VM is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not placed yet (or given up); `reason` says why it is not running.
    Down {
        /// Why.
        reason: String,
    },
    /// A start was ordered and not answered yet.
    Starting {
        /// Target host.
        host: u32,
    },
    /// Running on `host`.
    Running {
        /// Host.
        host: u32,
    },
    /// Lost: waiting to be started again at `at`.
    Waiting {
        /// Host it was lost on.
        lost_on: Option<u32>,
        /// Earliest next try.
        at: MonoTime,
    },
    /// Stopped on purpose: never restarted.
    Stopped,
    /// Gave up after too many failures.
    GaveUp,
}

/// One VM as the policy tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmTrack {
    /// Restart it when lost.
    pub ha: bool,
    /// Current phase.
    pub phase: Phase,
    /// Failures (not busy) since the last successful start.
    pub failures: u32,
    /// Host it was last lost on (avoided while not LIVE).
    pub lost_on: Option<u32>,
}

/// What the runtime tells the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A host's liveness as read from storage.
    Host {
        /// Host id.
        host: u32,
        /// Liveness.
        liveness: Liveness,
    },
    /// A VM to run (first placement on `host`, or anywhere when `None`).
    Add {
        /// VM id.
        vm: String,
        /// HA flag.
        ha: bool,
        /// Wanted host.
        host: Option<u32>,
    },
    /// A start succeeded.
    Started {
        /// VM id.
        vm: String,
        /// Host.
        host: u32,
    },
    /// A start failed.
    StartFailed {
        /// VM id.
        vm: String,
        /// Host.
        host: u32,
        /// The lease is held elsewhere (retry without limit).
        busy: bool,
    },
    /// The VM's process exited on a host that reported it.
    Exited {
        /// VM id.
        vm: String,
        /// Host.
        host: u32,
    },
    /// A reachable host reports the VM running there (reconciles a VM
    /// presumed lost on a host that was only cut off).
    Reported {
        /// VM id.
        vm: String,
        /// Host.
        host: u32,
    },
    /// The operator stopped it: do not restart.
    StoppedOnPurpose {
        /// VM id.
        vm: String,
    },
}

/// What the policy asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start `vm` on `host`.
    Start {
        /// VM id.
        vm: String,
        /// Host.
        host: u32,
    },
    /// Tell the operator: `vm` will not be restarted.
    GiveUp {
        /// VM id.
        vm: String,
        /// Why.
        reason: String,
    },
}

/// The policy's state.
#[derive(Debug, Clone, Default)]
pub struct Failover {
    policy: Policy,
    hosts: BTreeMap<u32, Liveness>,
    vms: BTreeMap<String, VmTrack>,
    /// First placements not yet ordered: vm -> wanted host.
    wanted: BTreeMap<String, Option<u32>>,
}

impl Failover {
    /// An empty policy state.
    pub fn new(policy: Policy) -> Failover {
        Failover {
            policy,
            ..Failover::default()
        }
    }

    /// The tracked VMs.
    pub fn vms(&self) -> &BTreeMap<String, VmTrack> {
        &self.vms
    }

    /// Takes one event in.
    pub fn on_event(&mut self, ev: Event, now: MonoTime) {
        match ev {
            Event::Host { host, liveness } => {
                self.hosts.insert(host, liveness);
                if liveness == Liveness::Dead {
                    for t in self.vms.values_mut() {
                        let on_it = matches!(t.phase, Phase::Running { host: h } | Phase::Starting { host: h } if h == host);
                        if on_it {
                            t.lost_on = Some(host);
                            t.phase = Phase::Waiting {
                                lost_on: Some(host),
                                at: now,
                            };
                        }
                    }
                }
            }
            Event::Add { vm, ha, host } => {
                self.vms.insert(
                    vm.clone(),
                    VmTrack {
                        ha,
                        phase: Phase::Down {
                            reason: "not started yet".into(),
                        },
                        failures: 0,
                        lost_on: None,
                    },
                );
                self.wanted.insert(vm, host);
            }
            Event::Started { vm, host } => {
                if let Some(t) = self.vms.get_mut(&vm) {
                    t.phase = Phase::Running { host };
                    t.failures = 0;
                }
            }
            Event::StartFailed { vm, host, busy } => {
                let p = self.policy;
                if let Some(t) = self.vms.get_mut(&vm) {
                    if t.phase != (Phase::Starting { host }) {
                        return;
                    }
                    let wait = if busy {
                        p.busy_retry
                    } else {
                        t.failures += 1;
                        p.backoff * 2u32.saturating_pow(t.failures.saturating_sub(1).min(16))
                    };
                    t.phase = Phase::Waiting {
                        lost_on: t.lost_on,
                        at: now + wait,
                    };
                }
            }
            Event::Exited { vm, host } => {
                if let Some(t) = self.vms.get_mut(&vm) {
                    if matches!(t.phase, Phase::Running { host: h } if h == host) {
                        t.lost_on = Some(host);
                        t.phase = if t.ha {
                            Phase::Waiting {
                                lost_on: Some(host),
                                at: now,
                            }
                        } else {
                            Phase::Down {
                                reason: format!("exited on host {host} (not HA)"),
                            }
                        };
                    }
                }
            }
            Event::Reported { vm, host } => {
                if let Some(t) = self.vms.get_mut(&vm) {
                    if matches!(t.phase, Phase::Waiting { .. } | Phase::Down { .. }) {
                        t.phase = Phase::Running { host };
                        t.failures = 0;
                    }
                }
            }
            Event::StoppedOnPurpose { vm } => {
                if let Some(t) = self.vms.get_mut(&vm) {
                    t.phase = Phase::Stopped;
                }
                self.wanted.remove(&vm);
            }
        }
    }

    /// Decides what to start now.
    pub fn tick(&mut self, now: MonoTime) -> Vec<Command> {
        let mut out = Vec::new();
        let mut load = self.load();
        let wanted = std::mem::take(&mut self.wanted);
        for (vm, host) in wanted {
            let target = host
                .filter(|h| self.hosts.get(h) == Some(&Liveness::Live))
                .or_else(|| self.pick(&load, None));
            match target {
                Some(h) => {
                    *load.entry(h).or_default() += 1;
                    if let Some(t) = self.vms.get_mut(&vm) {
                        t.phase = Phase::Starting { host: h };
                    }
                    out.push(Command::Start { vm, host: h });
                }
                None => {
                    self.wanted.insert(vm, host);
                }
            }
        }
        let max = self.policy.max_attempts;
        let due: Vec<String> = self
            .vms
            .iter()
            .filter(|(_, t)| matches!(t.phase, Phase::Waiting { at, .. } if at <= now))
            .map(|(v, _)| v.clone())
            .collect();
        for vm in due {
            let Some(t) = self.vms.get(&vm) else { continue };
            if t.failures >= max {
                let reason = format!("{} failed starts", t.failures);
                if let Some(t) = self.vms.get_mut(&vm) {
                    t.phase = Phase::GaveUp;
                }
                out.push(Command::GiveUp { vm, reason });
                continue;
            }
            let avoid = t.lost_on;
            if let Some(h) = self.pick(&load, avoid) {
                *load.entry(h).or_default() += 1;
                if let Some(t) = self.vms.get_mut(&vm) {
                    t.phase = Phase::Starting { host: h };
                }
                out.push(Command::Start { vm, host: h });
            }
        }
        out
    }

    /// VMs running or starting per host.
    fn load(&self) -> BTreeMap<u32, usize> {
        let mut m = BTreeMap::new();
        for t in self.vms.values() {
            if let Phase::Running { host } | Phase::Starting { host } = t.phase {
                *m.entry(host).or_default() += 1;
            }
        }
        m
    }

    /// The LIVE host with the fewest VMs; `avoid` only if it is LIVE again
    /// and nothing else is.
    fn pick(&self, load: &BTreeMap<u32, usize>, avoid: Option<u32>) -> Option<u32> {
        let live = || {
            self.hosts
                .iter()
                .filter(|(_, l)| **l == Liveness::Live)
                .map(|(h, _)| *h)
        };
        let by_load = |h: &u32| (load.get(h).copied().unwrap_or(0), *h);
        live()
            .filter(|h| Some(*h) != avoid)
            .min_by_key(by_load)
            .or_else(|| live().min_by_key(by_load))
    }
}

#[cfg(test)]
mod tests;
