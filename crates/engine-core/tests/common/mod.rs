//! Helpers for the core's tests: a small cluster driven step by step.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use nosplit_clock::MonoTime;
use nosplit_engine_core::detect::PLANES;
use nosplit_engine_core::model::{Desired, HaSettings, Host, Plane, Strategy, Vm, VmKind};
use nosplit_engine_core::{Command, Core, CoreConfig, Input, LeaseState, StartOutcome};

pub fn host(name: &str, cpus: u32, mem_gib: u64) -> Host {
    Host {
        name: name.into(),
        host_id: 1,
        agent: "127.0.0.1:1".into(),
        planes: Vec::new(),
        cpus,
        memory_mib: mem_gib * 1024,
        maintenance: false,
    }
}

pub fn vm(id: &str, host: &str, ha: bool, priority: u8) -> Vm {
    Vm {
        id: id.into(),
        kind: VmKind::Process,
        vcpus: 1,
        memory_mib: 1024,
        domain: "d".into(),
        ha,
        priority,
        lease_offset: 0,
        desired: Desired::Running,
        host: Some(host.into()),
    }
}

pub fn ms(v: u64) -> MonoTime {
    MonoTime::from_millis(v)
}

/// A cluster under test: the core, the time, which hosts heartbeat on
/// which planes, and everything the core emitted.
pub struct Cluster {
    pub core: Core,
    pub now: MonoTime,
    /// Per host: planes that heartbeat.
    pub beating: Vec<(String, Vec<Plane>)>,
    pub log: Vec<Command>,
}

impl Cluster {
    /// `n` hosts `h0..` (64 vCPUs, 256 GiB), all heartbeating, leases Live.
    pub fn new(n: usize, settings: HaSettings) -> Cluster {
        let core = Core::new(
            CoreConfig::default(),
            settings,
            Strategy::default_table(),
            ms(0),
        )
        .unwrap();
        let mut c = Cluster {
            core,
            now: ms(0),
            beating: Vec::new(),
            log: Vec::new(),
        };
        for i in 0..n {
            let name = format!("h{i}");
            c.input(Input::UpsertHost(host(&name, 64, 256)));
            c.input(Input::Lease {
                host: name.clone(),
                state: LeaseState::Live,
            });
            c.beating.push((name, PLANES.to_vec()));
        }
        c
    }

    pub fn input(&mut self, i: Input) -> Vec<Command> {
        let out = self.core.on_event(i, self.now).unwrap();
        self.log.extend(out.clone());
        out
    }

    pub fn add_vm(&mut self, v: Vm) {
        self.input(Input::UpsertVm(v));
    }

    pub fn set_planes(&mut self, host: &str, planes: &[Plane]) {
        for (h, p) in &mut self.beating {
            if h == host {
                *p = planes.to_vec();
            }
        }
    }

    pub fn lease(&mut self, host: &str, state: LeaseState) -> Vec<Command> {
        self.input(Input::Lease {
            host: host.into(),
            state,
        })
    }

    /// Advances in 100 ms steps (heartbeats every 500 ms), ticking each step.
    pub fn run_for(&mut self, d: Duration) -> Vec<Command> {
        let end = self.now + d;
        let mut out = Vec::new();
        while self.now < end {
            self.now = (self.now + Duration::from_millis(100)).min(end);
            if self.now.as_millis() % 500 < 100 {
                for (h, planes) in self.beating.clone() {
                    for p in planes {
                        out.extend(self.input(Input::Heartbeat {
                            host: h.clone(),
                            plane: p,
                        }));
                    }
                }
            }
            out.extend(self.tick());
        }
        out
    }

    /// Heartbeats from every beating host, now.
    pub fn beat(&mut self) {
        for (h, planes) in self.beating.clone() {
            for p in planes {
                self.input(Input::Heartbeat {
                    host: h.clone(),
                    plane: p,
                });
            }
        }
    }

    pub fn tick(&mut self) -> Vec<Command> {
        let out = self.core.tick(self.now);
        self.log.extend(out.clone());
        out
    }

    pub fn result(&mut self, task: u64, outcome: StartOutcome) -> Vec<Command> {
        self.input(Input::StartResult { task, outcome })
    }
}

/// StartVm commands as (vm, host, task).
pub fn starts(cmds: &[Command]) -> Vec<(String, String, u64)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::StartVm { vm, host, task } => Some((vm.clone(), host.clone(), *task)),
            _ => None,
        })
        .collect()
}

/// Events of `kind` as (host, vm, detail).
pub fn events(cmds: &[Command], kind: &str) -> Vec<(Option<String>, Option<String>, String)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Event(e) if e.kind == kind => {
                Some((e.host.clone(), e.vm.clone(), e.detail.clone()))
            }
            _ => None,
        })
        .collect()
}
