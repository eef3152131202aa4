//! Deterministic simulation of hosts sharing one simulated disk.
//!
//! [`Cluster`] runs the real pure machines ([`HostLease`], [`ResourceOp`])
//! of several hosts on their own [`SimHandle`]s of one [`SimDisk`], all on
//! one simulated clock and stepped from one thread: the same seed gives the
//! same run. Tests drive it step by step; [`chaos`] drives it with a random
//! workload, seeded faults and an S1 oracle.

pub mod chaos;

use std::time::Duration;

use nosplit_clock::MonoTime;
use nosplit_lease::format::{Geometry, Leader, LockspaceHeader, Name, OwnerId};
use nosplit_lease::host::{HostEvent, HostLease, HostLeaseConfig, JoinMode, Output};
use nosplit_lease::io::{Area, Input, IoDone};
use nosplit_lease::paxos::{LeaseError, OpKind, OpOutput, OpResult, ResourceOp, ResourceSpec};
use nosplit_lease::timing::Timing;
use nosplit_storage::sim::{SimDisk, SimHandle};
use nosplit_storage::{SectorSize, Storage};

use crate::exec::{to_done, to_request};

const LEASE_TAG: u64 = 1 << 60;
const OP_TAG: u64 = 2 << 60;
const TAG_MASK: u64 = 3 << 60;

/// Byte offset of the lockspace on the simulated disk.
pub const LS_BASE: u64 = 0;

fn name(s: &str) -> Name {
    Name::new(s).unwrap_or_else(|_| unreachable!("simulation names are valid"))
}

/// One simulated host.
#[derive(Debug)]
pub struct Node {
    /// Host id.
    pub id: u32,
    /// Its view of the disk (faults are set per handle).
    pub handle: SimHandle,
    /// Its host lease, while it runs one.
    pub lease: Option<HostLease>,
    /// The resource operation in progress, if any.
    pub op: Option<ResourceOp>,
    op_seq: u64,
    /// Host lease events not yet taken.
    pub events: Vec<(MonoTime, HostEvent)>,
    /// Finished operations not yet taken.
    pub results: Vec<(MonoTime, Result<OpResult, LeaseError>)>,
}

impl Node {
    /// Our incarnation, if joined.
    pub fn owner(&self) -> Option<OwnerId> {
        self.lease.as_ref().and_then(|l| l.owner_id())
    }
    /// Joined and confirmed.
    pub fn joined(&self) -> bool {
        self.lease.as_ref().is_some_and(|l| l.is_joined())
    }
}

/// Hosts, one lockspace and one resource lease on a simulated disk.
#[derive(Debug)]
pub struct Cluster {
    /// The disk.
    pub disk: SimDisk,
    /// The resource lease.
    pub spec: ResourceSpec,
    /// The lockspace timing.
    pub timing: Timing,
    /// The hosts, `nodes[i].id == i + 1`.
    pub nodes: Vec<Node>,
    /// Byte offset of the resource lease.
    pub res_base: u64,
}

impl Cluster {
    /// A cluster of `hosts` hosts (ids 1..=hosts), a fresh lockspace and a
    /// free resource lease "vm".
    pub fn new(seed: u64, hosts: u32, io_timeout_ms: u32) -> Cluster {
        let g = Geometry::new(512, 8, 1 << 16).unwrap_or_else(|_| unreachable!("valid geometry"));
        let res_base = g.lockspace_len();
        let disk = SimDisk::new(seed, res_base + g.resource_len(), SectorSize::B512);
        let mut sec = vec![0u8; 512];
        LockspaceHeader {
            name: name("simls"),
            geometry: g,
            io_timeout_ms,
            uuid: [1; 16],
        }
        .encode(&mut sec);
        disk.write_raw(LS_BASE, &sec);
        let leader = Leader {
            lockspace: name("simls"),
            resource: name("vm"),
            geometry: g,
            lver: 0,
            owner: None,
            writer: None,
            write_time_ms: 0,
        };
        leader.encode(&mut sec);
        disk.write_raw(res_base, &sec);
        let nodes = (1..=hosts)
            .map(|id| Node {
                id,
                handle: disk.handle(&format!("h{id}")),
                lease: None,
                op: None,
                op_seq: 0,
                events: Vec::new(),
                results: Vec::new(),
            })
            .collect();
        Cluster {
            disk,
            spec: ResourceSpec {
                lockspace: name("simls"),
                resource: name("vm"),
                geometry: g,
            },
            timing: Timing::from_io_timeout_ms(io_timeout_ms),
            nodes,
            res_base,
        }
    }

    /// The simulated time.
    pub fn now(&self) -> MonoTime {
        self.disk.now()
    }

    /// Host `id`.
    pub fn node(&mut self, id: u32) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    /// Starts joining as host `id` with host name `name`.
    pub fn join_as(&mut self, id: u32, host_name: &str, mode: JoinMode) {
        let cfg = HostLeaseConfig {
            lockspace: self.spec.lockspace.clone(),
            host_id: id,
            host_name: name(host_name),
            sector_size: 512,
            mode,
            bootstrap_timeout: self.timing.io_timeout,
        };
        self.node(id).lease = Some(HostLease::new(cfg));
    }

    /// Starts joining as host `id` named `h<id>`.
    pub fn join(&mut self, id: u32, mode: JoinMode) {
        self.join_as(id, &format!("h{id}"), mode);
    }

    /// Starts a resource operation on host `id` (which must be joined).
    pub fn start_op(&mut self, id: u32, kind: OpKind, seed: u64) {
        let (spec, timing) = (self.spec.clone(), self.timing);
        let n = self.node(id);
        if let Some(me) = n.owner() {
            n.op_seq += 1;
            n.op = Some(ResourceOp::new(spec, me, kind, timing, seed));
        }
    }

    /// Host `id` loses power: machines gone, in-flight I/O dropped or
    /// landed at random.
    pub fn power_off(&mut self, id: u32) {
        let n = self.node(id);
        n.handle.disk().power_off(n.handle.name());
        n.lease = None;
        n.op = None;
    }

    /// Host `id` gets power back (nothing runs until it joins).
    pub fn power_on(&mut self, id: u32) {
        let n = self.node(id);
        n.handle.disk().power_on(n.handle.name());
    }

    /// Steps every host once at the current time.
    pub fn step(&mut self) {
        let now = self.now();
        let res_base = self.res_base;
        for n in &mut self.nodes {
            while let Some(c) = n.handle.wait(now) {
                let tag = c.id.0 & TAG_MASK;
                let mut done: IoDone = to_done(c);
                done.id &= !TAG_MASK;
                if tag == LEASE_TAG {
                    step_lease(n, Input::Done(done), now);
                } else if tag == OP_TAG && (done.id >> 32) == n.op_seq {
                    done.id &= (1 << 32) - 1;
                    step_op(n, Input::Done(done), now, res_base);
                }
            }
            step_lease(n, Input::Tick, now);
            step_op(n, Input::Tick, now, res_base);
        }
    }

    /// The earliest time a host machine or the disk has something to do.
    pub fn next_time(&self) -> MonoTime {
        let now = self.now();
        let mut next = self.disk.next_event_time().unwrap_or(MonoTime::NEVER);
        for n in &self.nodes {
            let l = n
                .lease
                .as_ref()
                .map_or(MonoTime::NEVER, |l| l.next_wakeup());
            let o = n.op.as_ref().map_or(MonoTime::NEVER, |o| o.next_wakeup());
            for t in [l, o] {
                if t > now {
                    next = next.min(t);
                }
            }
        }
        next
    }

    /// Moves time to `t` (never back) and steps.
    pub fn advance_to(&mut self, t: MonoTime) {
        self.disk.advance_to(t);
        self.step();
    }

    /// Steps until `stop` holds or `until` passes; returns whether `stop` held.
    pub fn run_until(
        &mut self,
        until: MonoTime,
        mut stop: impl FnMut(&mut Cluster) -> bool,
    ) -> bool {
        self.step();
        loop {
            if stop(self) {
                return true;
            }
            let now = self.now();
            if now >= until {
                return false;
            }
            let next = self
                .next_time()
                .max(now + Duration::from_micros(50))
                .min(until);
            self.advance_to(next);
        }
    }

    /// Runs for `d`.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now() + d;
        self.run_until(until, |_| false);
    }

    /// Runs until host `id`'s operation finishes (at most `limit`); returns
    /// its result.
    pub fn finish_op(&mut self, id: u32, limit: Duration) -> Option<Result<OpResult, LeaseError>> {
        let until = self.now() + limit;
        self.run_until(until, |c| !c.node(id).results.is_empty());
        self.node(id).results.pop().map(|(_, r)| r)
    }

    /// The resource leader as on disk now.
    pub fn leader(&self) -> Option<Leader> {
        Leader::decode(&self.disk.read_raw(self.res_base, 512)).ok()
    }
}

fn step_lease(n: &mut Node, input: Input, now: MonoTime) {
    let Some(lease) = n.lease.as_mut() else {
        return;
    };
    for out in lease.step(input, now) {
        match out {
            Output::Io(mut cmd) => {
                cmd.id |= LEASE_TAG;
                n.handle.submit(to_request(&cmd, LS_BASE));
            }
            Output::Event(e) => n.events.push((now, e)),
        }
    }
}

fn step_op(n: &mut Node, input: Input, now: MonoTime, res_base: u64) {
    let (Some(op), Some(lease)) = (n.op.as_mut(), n.lease.as_mut()) else {
        return;
    };
    for out in op.step(input, now, lease.view_mut()) {
        match out {
            OpOutput::Io(mut cmd) => {
                cmd.id |= OP_TAG | (n.op_seq << 32);
                let base = if cmd.area == Area::Lockspace {
                    LS_BASE
                } else {
                    res_base
                };
                n.handle.submit(to_request(&cmd, base));
            }
            OpOutput::Done(r) => {
                n.op = None;
                n.results.push((now, r));
                return;
            }
        }
    }
}
