#![allow(clippy::unwrap_used)]
//! Properties over any sequence of inputs:
//! - a VM is only started when no instance of it may still be alive: its
//!   last host's lease was read Dead, and every earlier start of it either
//!   failed or went to a host whose lease was then read Dead (so it only
//!   restarts VMs of hosts whose lease is Dead, and never starts one VM
//!   twice at once);
//! - starts in flight to a host never go above the per-host limit.
//!
//! Start outcomes follow the VM lease: a start may only succeed when no
//! other instance may be alive (otherwise the lease answers busy).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{vm, Cluster};
use nosplit_engine_core::detect::PLANES;
use nosplit_engine_core::model::{Desired, HaSettings};
use nosplit_engine_core::{Command, Input, LeaseState, StartOutcome};
use proptest::prelude::*;

const HOSTS: usize = 4;
const VMS: usize = 6;

#[derive(Debug, Clone)]
enum Op {
    BeatAllBut(usize),
    Beat(usize, u8),
    Lease(usize, LeaseState),
    Advance(u64),
    Complete(usize, u8),
    Stop(usize),
    Limits(u32, u32, bool),
    Maintenance(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let lease = prop_oneof![
        2 => Just(LeaseState::Live),
        1 => Just(LeaseState::Fail),
        3 => Just(LeaseState::Dead),
        1 => Just(LeaseState::Free),
    ];
    prop_oneof![
        4 => (0..HOSTS + 1).prop_map(Op::BeatAllBut),
        1 => (0..HOSTS, 0u8..8).prop_map(|(h, m)| Op::Beat(h, m)),
        3 => (0..HOSTS, lease).prop_map(|(h, l)| Op::Lease(h, l)),
        4 => (1u64..3000).prop_map(Op::Advance),
        5 => (0usize..16, 0u8..3).prop_map(|(i, o)| Op::Complete(i, o)),
        1 => (0..VMS).prop_map(Op::Stop),
        1 => (0u32..4, 0u32..3, any::<bool>()).prop_map(|(r, p, d)| Op::Limits(r, p, d)),
        1 => (0..HOSTS, any::<bool>()).prop_map(|(h, on)| Op::Maintenance(h, on)),
    ]
}

/// What the test knows, independently of the core.
#[derive(Default)]
struct Model {
    lease: BTreeMap<String, LeaseState>,
    /// Per VM: hosts where an instance may be alive.
    alive: BTreeMap<String, BTreeSet<String>>,
    /// Unanswered tasks: id -> (vm, host, abandoned).
    open: BTreeMap<u64, (String, String, bool)>,
    per_host_limit: u32,
}

impl Model {
    fn check(&mut self, cmds: &[Command]) -> Result<(), TestCaseError> {
        for c in cmds {
            if let Command::StartVm { vm, host, task } = c {
                let alive = self.alive.entry(vm.clone()).or_default();
                prop_assert!(
                    alive.is_empty(),
                    "start of {vm} on {host} while it may be alive on {alive:?}"
                );
                alive.insert(host.clone());
                self.open.insert(*task, (vm.clone(), host.clone(), false));
                let n = self
                    .open
                    .values()
                    .filter(|(_, h, ab)| h == host && !ab)
                    .count();
                let limit = self.per_host_limit as usize;
                prop_assert!(
                    limit == 0 || n <= limit,
                    "{n} starts in flight to {host}, limit {limit}"
                );
            }
        }
        Ok(())
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let settings = HaSettings {
        defense_pct: 0,
        grace_ms: 300,
        ..HaSettings::default()
    };
    let mut c = Cluster::new(HOSTS, settings);
    let mut m = Model::default();
    for h in 0..HOSTS {
        m.lease.insert(format!("h{h}"), LeaseState::Live);
    }
    for i in 0..VMS {
        let (id, host) = (format!("v{i}"), format!("h{}", i % HOSTS));
        c.add_vm(vm(&id, &host, i != 5, u8::try_from(i * 17 % 100).unwrap()));
        m.alive.entry(id).or_default().insert(host);
    }
    for op in ops {
        let out = match op {
            Op::BeatAllBut(skip) => {
                for h in (0..HOSTS).filter(|h| *h != skip) {
                    for p in PLANES {
                        c.input(Input::Heartbeat {
                            host: format!("h{h}"),
                            plane: p,
                        });
                    }
                }
                Vec::new()
            }
            Op::Beat(h, mask) => {
                for (i, p) in PLANES.iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        c.input(Input::Heartbeat {
                            host: format!("h{h}"),
                            plane: *p,
                        });
                    }
                }
                Vec::new()
            }
            Op::Lease(h, l) => {
                let host = format!("h{h}");
                m.lease.insert(host.clone(), l);
                if l == LeaseState::Dead {
                    for a in m.alive.values_mut() {
                        a.remove(&host);
                    }
                    for t in m.open.values_mut() {
                        if t.1 == host {
                            t.2 = true;
                        }
                    }
                }
                c.lease(&host, l)
            }
            Op::Advance(d) => {
                c.now = c.now + Duration::from_millis(d);
                Vec::new()
            }
            Op::Complete(i, o) => {
                let Some((&task, (vm, host, _))) = m.open.iter().nth(i % m.open.len().max(1))
                else {
                    continue;
                };
                let (vm, host) = (vm.clone(), host.clone());
                m.open.remove(&task);
                let others = m
                    .alive
                    .get(&vm)
                    .map(|a| a.iter().any(|h| *h != host))
                    .unwrap_or(false);
                let outcome = match o {
                    0 if !others => StartOutcome::Ok,
                    0 | 1 => StartOutcome::Busy,
                    _ => StartOutcome::Failed("simulated".into()),
                };
                let dead = m.lease.get(&host) == Some(&LeaseState::Dead);
                let alive = m.alive.entry(vm).or_default();
                if outcome == StartOutcome::Ok {
                    if !dead {
                        alive.insert(host);
                    }
                } else {
                    alive.remove(&host);
                }
                c.result(task, outcome)
            }
            Op::Stop(v) => c.input(Input::SetDesired {
                vm: format!("v{v}"),
                desired: Desired::Stopped,
            }),
            Op::Limits(rate, per_host, defense) => {
                m.per_host_limit = per_host;
                let s = HaSettings {
                    global_rate: rate,
                    per_host_limit: per_host,
                    defense_pct: if defense { 50 } else { 0 },
                    grace_ms: 300,
                    ..HaSettings::default()
                };
                c.input(Input::Settings(s))
            }
            Op::Maintenance(h, on) => c.input(Input::HostMaintenance {
                host: format!("h{h}"),
                on,
            }),
        };
        m.check(&out)?;
        let out = c.tick();
        m.check(&out)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn starts_are_safe_and_limited(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}

#[test]
fn the_properties_can_fail() {
    // A start while the VM may be alive is caught.
    let mut m = Model::default();
    m.alive.entry("v".into()).or_default().insert("h0".into());
    let start = Command::StartVm {
        vm: "v".into(),
        host: "h1".into(),
        task: 1,
    };
    assert!(m.check(std::slice::from_ref(&start)).is_err());
    // Above the per-host limit is caught.
    let mut m = Model {
        per_host_limit: 1,
        ..Model::default()
    };
    let a = Command::StartVm {
        vm: "a".into(),
        host: "h1".into(),
        task: 1,
    };
    let b = Command::StartVm {
        vm: "b".into(),
        host: "h1".into(),
        task: 2,
    };
    assert!(m.check(&[a, b]).is_err());
}
