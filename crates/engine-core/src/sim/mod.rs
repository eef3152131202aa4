//! A deterministic simulation of a mass recovery (seed 002's test: 20 of 38
//! hosts fail at once, 1000 HA VMs of 1741 to restart) driving [`Core`]
//! with a simulated clock that jumps to the next interesting time.
//!
//! Layout: host names `h00..`; the first `failed_hosts` fail at t = 0. The
//! `ha_vms` HA VMs run on the failing hosts (round robin), the other VMs on
//! all hosts (round robin). VM sizes and priorities, start durations and
//! the VMs whose first start fails are drawn from `seed`. A failed host
//! stops heartbeating at t = 0; the engine reads its lease as Fail at
//! `lease_fail_after` and Dead at `host_dead_after`. Optionally the first
//! `returning_hosts` failed hosts come back (heartbeats, lease Live) at
//! `return_at`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use nosplit_clock::MonoTime;

use crate::detect::LeaseState;
use crate::engine::{Core, CoreConfig, CoreError, Input};
use crate::model::{Desired, HaSettings, Host, Strategy, Vm, VmKind};

mod world;

use world::{host_name, vm_name, Ev, Rng, Sim};

/// What to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimParams {
    /// Seed of every random draw.
    pub seed: u64,
    /// Hosts.
    pub hosts: usize,
    /// Hosts that fail at t = 0.
    pub failed_hosts: usize,
    /// VMs in all.
    pub vms: usize,
    /// HA VMs (all on the failing hosts).
    pub ha_vms: usize,
    /// Host capacity, vCPUs.
    pub host_cpus: u32,
    /// Host capacity, MiB.
    pub host_memory_mib: u64,
    /// Settings of the core.
    pub settings: HaSettings,
    /// Heartbeat period of live hosts.
    pub heartbeat_every: Duration,
    /// When the engine reads a failed host's lease as Fail.
    pub lease_fail_after: Duration,
    /// When it reads it as Dead (host-dead time).
    pub host_dead_after: Duration,
    /// Shortest simulated start.
    pub start_min: Duration,
    /// Longest simulated start.
    pub start_max: Duration,
    /// Percent of restarted VMs whose first start fails.
    pub fail_once_pct: u32,
    /// Failed hosts that come back at `return_at`.
    pub returning_hosts: usize,
    /// When they come back.
    pub return_at: Duration,
    /// Simulated time limit.
    pub limit: Duration,
}

impl Default for SimParams {
    /// Seed 002's test: 38 hosts (128 vCPUs = 64 cores at 2:1, 256 GiB),
    /// 20 fail, 1741 VMs of which 1000 HA; io_timeout 1 s (host dead after
    /// 5.5 s); starts of 1 to 3 s, 2% fail once; self-defense at 60% so
    /// that 52.6% lost does not stop the recovery.
    fn default() -> Self {
        SimParams {
            seed: 2,
            hosts: 38,
            failed_hosts: 20,
            vms: 1741,
            ha_vms: 1000,
            host_cpus: 128,
            host_memory_mib: 256 * 1024,
            settings: HaSettings {
                defense_pct: 60,
                ..HaSettings::default()
            },
            heartbeat_every: Duration::from_millis(500),
            lease_fail_after: Duration::from_secs(2),
            host_dead_after: Duration::from_millis(5500),
            start_min: Duration::from_secs(1),
            start_max: Duration::from_secs(3),
            fail_once_pct: 2,
            returning_hosts: 0,
            return_at: Duration::from_secs(30),
            limit: Duration::from_secs(3600),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimReport {
    /// From the failure to the last HA VM of a failed host running again
    /// (`None`: not all within the limit).
    pub recovery_time: Option<Duration>,
    /// First restart ordered, from the failure.
    pub first_start: Option<Duration>,
    /// Mean time from the failure to a VM running again.
    pub mean_vm_recovery: Duration,
    /// HA VMs of failed hosts (to restart).
    pub to_restart: usize,
    /// Of those, running again.
    pub restarted: usize,
    /// VMs that started successfully more than once.
    pub double_starts: usize,
    /// Starts ordered for VMs that were not to be restarted.
    pub unexpected_starts: usize,
    /// Starts ordered on a host that was down.
    pub starts_on_dead_hosts: usize,
    /// Starts ordered in all.
    pub start_commands: usize,
    /// Starts that failed.
    pub failed_starts: usize,
    /// Most starts in flight to one host at once.
    pub max_in_flight_per_host: u32,
    /// Whether self-defense was raised.
    pub self_defense_raised: bool,
    /// Starts ordered before the failed hosts came back (with `returning_hosts`).
    pub starts_before_return: usize,
    /// Events emitted.
    pub events: usize,
    /// VMs given up.
    pub gave_up: usize,
}

/// Runs the simulation.
pub fn simulate_mass_recovery(p: &SimParams) -> Result<SimReport, CoreError> {
    let t0 = MonoTime::ZERO;
    let core = Core::new(
        CoreConfig::default(),
        p.settings,
        Strategy::default_table(),
        t0,
    )?;
    let mut sim = Sim {
        p: *p,
        rng: Rng(p.seed),
        core,
        queue: BinaryHeap::new(),
        seq: 0,
        alive: (p.failed_hosts..p.hosts).collect(),
        expected: BTreeSet::new(),
        fail_once: BTreeSet::new(),
        successes: BTreeMap::new(),
        in_flight: BTreeMap::new(),
        recovered_at: Vec::new(),
        r: SimReport::default(),
    };
    for i in 0..p.hosts {
        let host = Host {
            name: host_name(i),
            host_id: u32::try_from(i + 1).unwrap_or(u32::MAX),
            agent: format!("10.0.0.{}:7000", i + 1),
            planes: Vec::new(),
            cpus: p.host_cpus,
            memory_mib: p.host_memory_mib,
            maintenance: false,
        };
        sim.feed(Input::UpsertHost(host), t0)?;
        sim.feed(
            Input::Lease {
                host: host_name(i),
                state: LeaseState::Live,
            },
            t0,
        )?;
    }
    for i in 0..p.vms {
        let ha = i < p.ha_vms;
        let host = if ha {
            i % p.failed_hosts.max(1)
        } else {
            (i - p.ha_vms) % p.hosts.max(1)
        };
        let vm = Vm {
            id: vm_name(i),
            kind: VmKind::Process,
            vcpus: if sim.rng.below(10) < 7 { 1 } else { 2 },
            memory_mib: [1024, 2048, 4096][usize::try_from(sim.rng.below(3)).unwrap_or(0)],
            domain: "sim".into(),
            ha,
            priority: u8::try_from(sim.rng.below(101)).unwrap_or(0),
            lease_offset: 0,
            desired: Desired::Running,
            host: Some(host_name(host)),
        };
        if ha && host < p.failed_hosts {
            sim.expected.insert(i);
            if sim.rng.below(100) < u64::from(p.fail_once_pct) {
                sim.fail_once.insert(i);
            }
        }
        sim.feed(Input::UpsertVm(vm), t0)?;
    }
    sim.r.to_restart = sim.expected.len();
    sim.push(t0, Ev::Heartbeats);
    for h in 0..p.failed_hosts {
        sim.push(t0 + p.lease_fail_after, Ev::Lease(h, LeaseState::Fail));
        sim.push(t0 + p.host_dead_after, Ev::Lease(h, LeaseState::Dead));
    }
    for h in 0..p.returning_hosts.min(p.failed_hosts) {
        sim.push(t0 + p.return_at, Ev::Return(h));
    }
    let limit = t0 + p.limit;
    let mut now = t0;
    loop {
        while let Some(Reverse((at, _, _))) = sim.queue.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, _, ev))) = sim.queue.pop() else {
                break;
            };
            sim.step(ev, now)?;
        }
        let cmds = sim.core.tick(now);
        sim.handle(cmds, now);
        if sim.r.restarted == sim.r.to_restart && sim.r.recovery_time.is_none() {
            sim.r.recovery_time = Some(now.saturating_since(t0));
            break;
        }
        let next_ev = sim.queue.peek().map(|Reverse((at, _, _))| *at);
        let next = match (next_ev, sim.core.next_wakeup(now)) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => break,
            },
        };
        if next > limit {
            break;
        }
        now = next.max(now);
    }
    let n = u32::try_from(sim.recovered_at.len())
        .unwrap_or(u32::MAX)
        .max(1);
    sim.r.mean_vm_recovery = sim.recovered_at.iter().sum::<Duration>() / n;
    Ok(sim.r)
}
