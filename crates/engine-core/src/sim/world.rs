//! The simulated world around the core: hosts that heartbeat or not,
//! leases read by the engine, agents that take 1 to 3 s to start a VM, and
//! the bookkeeping that checks what the core ordered.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use nosplit_clock::MonoTime;

use super::{SimParams, SimReport};
use crate::command::{kind, Command};
use crate::detect::{LeaseState, PLANES};
use crate::engine::{Core, CoreError, Input};
use crate::recovery::StartOutcome;

/// SplitMix64: a small seeded generator, enough for a simulation.
#[derive(Debug, Clone)]
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Ev {
    Heartbeats,
    Lease(usize, LeaseState),
    Return(usize),
    Done {
        task: u64,
        vm: usize,
        host: usize,
        ok: bool,
    },
}

pub(super) fn host_name(i: usize) -> String {
    format!("h{i:02}")
}

pub(super) fn vm_name(i: usize) -> String {
    format!("vm{i:04}")
}

fn index(name: &str, prefix: &str) -> usize {
    name.trim_start_matches(prefix)
        .parse()
        .unwrap_or(usize::MAX)
}

pub(super) struct Sim {
    pub(super) p: SimParams,
    pub(super) rng: Rng,
    pub(super) core: Core,
    pub(super) queue: BinaryHeap<Reverse<(MonoTime, u64, Ev)>>,
    pub(super) seq: u64,
    pub(super) alive: BTreeSet<usize>,
    pub(super) expected: BTreeSet<usize>,
    pub(super) fail_once: BTreeSet<usize>,
    pub(super) successes: BTreeMap<usize, u32>,
    pub(super) in_flight: BTreeMap<usize, u32>,
    pub(super) recovered_at: Vec<Duration>,
    pub(super) r: SimReport,
}

impl Sim {
    pub(super) fn push(&mut self, at: MonoTime, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, ev)));
    }

    pub(super) fn feed(&mut self, input: Input, now: MonoTime) -> Result<(), CoreError> {
        let cmds = self.core.on_event(input, now)?;
        self.handle(cmds, now);
        Ok(())
    }

    pub(super) fn handle(&mut self, cmds: Vec<Command>, now: MonoTime) {
        for c in cmds {
            match c {
                Command::Event(e) => {
                    self.r.events += 1;
                    self.r.self_defense_raised |= e.kind == kind::SELF_DEFENSE;
                    self.r.gave_up += usize::from(e.kind == kind::VM_GAVE_UP);
                }
                Command::TaskUpdate(_) => {}
                Command::StartVm { vm, host, task } => self.start(&vm, &host, task, now),
            }
        }
    }

    fn start(&mut self, vm: &str, host: &str, task: u64, now: MonoTime) {
        let (v, h) = (index(vm, "vm"), index(host, "h"));
        self.r.start_commands += 1;
        self.r
            .first_start
            .get_or_insert(now.saturating_since(MonoTime::ZERO));
        self.r.unexpected_starts += usize::from(!self.expected.contains(&v));
        self.r.starts_on_dead_hosts += usize::from(!self.alive.contains(&h));
        if self.p.returning_hosts > 0 && now < MonoTime::ZERO + self.p.return_at {
            self.r.starts_before_return += 1;
        }
        let n = self.in_flight.entry(h).or_default();
        *n += 1;
        self.r.max_in_flight_per_host = self.r.max_in_flight_per_host.max(*n);
        let span = self
            .p
            .start_max
            .saturating_sub(self.p.start_min)
            .as_millis();
        let dur = self.p.start_min
            + Duration::from_millis(self.rng.below(u64::try_from(span).unwrap_or(0) + 1));
        let ok = !self.fail_once.remove(&v);
        self.push(
            now + dur,
            Ev::Done {
                task,
                vm: v,
                host: h,
                ok,
            },
        );
    }

    pub(super) fn step(&mut self, ev: Ev, now: MonoTime) -> Result<(), CoreError> {
        match ev {
            Ev::Heartbeats => {
                for h in self.alive.clone() {
                    for plane in PLANES {
                        self.feed(
                            Input::Heartbeat {
                                host: host_name(h),
                                plane,
                            },
                            now,
                        )?;
                    }
                }
                self.push(now + self.p.heartbeat_every, Ev::Heartbeats);
            }
            Ev::Lease(h, state) => self.feed(
                Input::Lease {
                    host: host_name(h),
                    state,
                },
                now,
            )?,
            Ev::Return(h) => {
                self.alive.insert(h);
                self.feed(
                    Input::Lease {
                        host: host_name(h),
                        state: LeaseState::Live,
                    },
                    now,
                )?;
                for plane in PLANES {
                    self.feed(
                        Input::Heartbeat {
                            host: host_name(h),
                            plane,
                        },
                        now,
                    )?;
                }
            }
            Ev::Done { task, vm, host, ok } => {
                if let Some(n) = self.in_flight.get_mut(&host) {
                    *n = n.saturating_sub(1);
                }
                let outcome = if ok {
                    StartOutcome::Ok
                } else {
                    self.r.failed_starts += 1;
                    StartOutcome::Failed("simulated start failure".into())
                };
                self.feed(Input::StartResult { task, outcome }, now)?;
                if ok {
                    let n = self.successes.entry(vm).or_default();
                    *n += 1;
                    if *n == 2 {
                        self.r.double_starts += 1;
                    }
                    if *n == 1 && self.expected.contains(&vm) {
                        self.r.restarted += 1;
                        self.recovered_at.push(now.saturating_since(MonoTime::ZERO));
                    }
                }
            }
        }
        Ok(())
    }
}
