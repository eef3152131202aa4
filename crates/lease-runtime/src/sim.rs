//! Seeded, deterministic simulation of a cluster of hosts sharing one
//! simulated disk, with an S1 oracle.
//!
//! Every host runs the real pure machines ([`HostLease`], [`ResourceOp`])
//! on its own [`SimHandle`] of one [`SimDisk`], all on one simulated clock,
//! stepped from one thread: the same seed gives the same run. A worker on
//! each host loops acquire (exclusive or shared), hold, release on one
//! resource. Faults come from the seed: storage hangs, I/O errors, latency
//! spikes and power-offs per host.
//!
//! "Holders" are simulated processes: one starts when an acquire succeeds
//! and stops before the release is issued, when its host powers off, or,
//! with `protection`, when its host lease reports renewal failure (after a
//! random SIGTERM delay, at the latest at the kill deadline). The oracle
//! checks after every step that no two hosts run an exclusive holder and
//! that no exclusive holder runs beside a shared one (S1). With
//! `protection: false` holders are never stopped by renewal failure: the
//! control run, in which the oracle must fire.

use std::time::Duration;

use nosplit_clock::MonoTime;
use nosplit_lease::format::{Geometry, Name};
use nosplit_lease::host::{HostEvent, HostLease, HostLeaseConfig, JoinMode, Output};
use nosplit_lease::io::{Area, Input, IoDone};
use nosplit_lease::paxos::{LeaseMode, OpKind, OpOutput, OpResult, ResourceOp, ResourceSpec};
use nosplit_lease::timing::Timing;
use nosplit_storage::sim::{Faults, SimDisk, SimHandle};
use nosplit_storage::{SectorSize, Storage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::exec::{to_done, to_request};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed for everything random.
    pub seed: u64,
    /// Number of hosts.
    pub hosts: u32,
    /// The lockspace's io_timeout.
    pub io_timeout_ms: u32,
    /// Simulated time to run.
    pub duration: Duration,
    /// Stop holders when renewal fails (the real behaviour). `false` is
    /// the control run.
    pub protection: bool,
    /// Mean time between faults per host (`None`: no faults).
    pub fault_every: Option<Duration>,
    /// Share of acquires in shared mode.
    pub shared_ratio: f64,
}

/// An S1 violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// When.
    pub at: MonoTime,
    /// Hosts with an exclusive holder running.
    pub exclusive: Vec<u32>,
    /// Hosts with a shared holder running.
    pub shared: Vec<u32>,
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// S1 violations (must be empty with protection).
    pub violations: Vec<Violation>,
    /// Successful exclusive acquires.
    pub exclusive_acquired: u64,
    /// Successful shared acquires.
    pub shared_acquired: u64,
    /// Exclusive acquires of a lease whose leader named another host's
    /// incarnation that had stopped renewing (takeovers).
    pub takeovers: u64,
    /// Holders stopped because renewal failed.
    pub holders_killed: u64,
    /// Faults injected: (hangs, error bursts, power-offs).
    pub faults: (u64, u64, u64),
    /// Steps at which two or more shared holders ran together (shared mode
    /// really shares).
    pub shared_overlaps: u64,
    /// Joins that completed.
    pub joins: u64,
    /// Simulation steps taken.
    pub steps: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    None,
    Running(LeaseMode),
}

#[derive(Debug)]
struct SimHost {
    id: u32,
    handle: SimHandle,
    lease: Option<HostLease>,
    op: Option<(ResourceOp, OpKind)>,
    /// The leader's owner when the current op started (another host's
    /// incarnation there means an exclusive acquire is a takeover).
    prior_owner: Option<u32>,
    op_seq: u64,
    holder: Holder,
    hold_until: MonoTime,
    kill_at: Option<MonoTime>,
    next_try: MonoTime,
    powered: bool,
    power_on_at: MonoTime,
    fault_end: MonoTime,
    rejoin_at: MonoTime,
    next_fault: MonoTime,
}

const LEASE_TAG: u64 = 1 << 60;
const OP_TAG: u64 = 2 << 60;

fn name(s: &str) -> Name {
    Name::new(s).unwrap_or_else(|_| unreachable!("constant simulation names are valid"))
}

/// Runs one simulation.
pub fn run(cfg: &SimConfig) -> SimReport {
    let g = Geometry::new(512, 8, 1 << 16).unwrap_or_else(|_| unreachable!("valid constant geometry"));
    let timing = Timing::from_io_timeout_ms(cfg.io_timeout_ms);
    let disk = SimDisk::new(cfg.seed, 2 << 16, SectorSize::B512);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed);
    let ls_base = 0u64;
    let res_base = 1u64 << 16;
    // Lockspace and resource, written directly.
    let header = nosplit_lease::format::LockspaceHeader {
        name: name("simls"),
        geometry: g,
        io_timeout_ms: cfg.io_timeout_ms,
        uuid: [1; 16],
    };
    let mut sec = vec![0u8; 512];
    header.encode(&mut sec);
    disk.write_raw(ls_base, &sec);
    let leader = nosplit_lease::format::Leader {
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
    let spec = ResourceSpec { lockspace: name("simls"), resource: name("vm"), geometry: g };

    let mut hosts: Vec<SimHost> = (1..=cfg.hosts)
        .map(|id| SimHost {
            id,
            handle: disk.handle(&format!("h{id}")),
            lease: None,
            op: None,
            prior_owner: None,
            op_seq: 0,
            holder: Holder::None,
            hold_until: MonoTime::ZERO,
            kill_at: None,
            next_try: MonoTime::ZERO,
            powered: true,
            power_on_at: MonoTime::NEVER,
            fault_end: MonoTime::NEVER,
            rejoin_at: MonoTime::ZERO,
            next_fault: MonoTime::NEVER,
        })
        .collect();
    let mut rep = SimReport::default();
    let end = MonoTime::ZERO + cfg.duration;
    let jitter = |rng: &mut ChaCha8Rng, max: Duration| {
        Duration::from_micros(rng.gen_range(0..=max.as_micros().max(1) as u64))
    };
    for h in &mut hosts {
        if let Some(every) = cfg.fault_every {
            h.next_fault = MonoTime::ZERO + every / 2 + jitter(&mut rng, every);
        }
    }
    loop {
        let now = disk.now();
        if now >= end {
            break;
        }
        for h in hosts.iter_mut() {
            step_host(h, now, cfg, &timing, &spec, ls_base, res_base, &mut rng, &mut rep);
        }
        oracle(&hosts, now, &mut rep);
        rep.steps += 1;
        // Next event.
        let mut next = disk.next_event_time().unwrap_or(MonoTime::NEVER);
        for h in &hosts {
            for t in [
                h.lease.as_ref().map_or(MonoTime::NEVER, |l| l.next_wakeup()),
                h.op.as_ref().map_or(MonoTime::NEVER, |(o, _)| o.next_wakeup()),
                h.next_try,
                h.hold_until,
                h.kill_at.unwrap_or(MonoTime::NEVER),
                h.power_on_at,
                h.fault_end,
                h.rejoin_at,
                h.next_fault,
            ] {
                if t > now {
                    next = next.min(t);
                }
            }
        }
        let next = next.max(now + Duration::from_micros(50)).min(end);
        disk.advance_to(next);
    }
    rep
}

#[allow(clippy::too_many_arguments)]
fn step_host(
    h: &mut SimHost,
    now: MonoTime,
    cfg: &SimConfig,
    timing: &Timing,
    spec: &ResourceSpec,
    ls_base: u64,
    res_base: u64,
    rng: &mut ChaCha8Rng,
    rep: &mut SimReport,
) {
    // Power.
    if !h.powered {
        if now >= h.power_on_at {
            h.powered = true;
            h.power_on_at = MonoTime::NEVER;
            h.handle.disk().power_on(h.handle.name());
            h.rejoin_at = now;
        } else {
            return;
        }
    }
    // Faults.
    if now >= h.next_fault {
        let every = cfg.fault_every.unwrap_or(Duration::from_secs(3600));
        h.next_fault = now + every / 2 + Duration::from_micros(rng.gen_range(0..=every.as_micros() as u64));
        let span = timing.io_timeout * rng.gen_range(1..=12);
        match rng.gen_range(0..3) {
            0 => {
                rep.faults.0 += 1;
                h.handle.set_faults(Faults { late_write_rate: 0.3, late_write_delay: timing.io_timeout / 2, ..Faults::hung() });
                h.fault_end = now + span;
            }
            1 => {
                rep.faults.1 += 1;
                h.handle.set_faults(Faults { read_error_rate: 0.5, write_error_rate: 0.5, ..Faults::default() });
                h.fault_end = now + span;
            }
            _ => {
                rep.faults.2 += 1;
                h.handle.disk().power_off(h.handle.name());
                h.powered = false;
                h.power_on_at = now + span;
                h.lease = None;
                h.op = None;
                h.holder = Holder::None;
                h.kill_at = None;
                h.fault_end = MonoTime::NEVER;
                h.handle.set_faults(Faults::default());
                return;
            }
        }
    }
    if now >= h.fault_end {
        h.fault_end = MonoTime::NEVER;
        h.handle.set_faults(Faults::default());
    }
    // (Re)join.
    if h.lease.is_none() && now >= h.rejoin_at && h.holder == Holder::None {
        h.lease = Some(HostLease::new(HostLeaseConfig {
            lockspace: spec.lockspace.clone(),
            host_id: h.id,
            host_name: name(&format!("h{}", h.id)),
            sector_size: 512,
            // Every process of the previous incarnation is gone (powered
            // off, or its holder stopped): local evidence, as a daemon has.
            mode: JoinMode::New { prior_gone: true },
            bootstrap_timeout: timing.io_timeout,
        }));
        h.rejoin_at = MonoTime::NEVER;
    }
    // Completions.
    while let Some(c) = h.handle.wait(now) {
        let tag = c.id.0 & (3 << 60);
        let mut done: IoDone = to_done(c);
        done.id &= (1 << 60) - 1;
        if tag == LEASE_TAG {
            host_lease_step(h, Input::Done(done), now, cfg, timing, ls_base, rng, rep);
        } else if tag == OP_TAG && (done.id >> 32) == h.op_seq {
            done.id &= (1 << 32) - 1;
            op_step(h, Input::Done(done), now, ls_base, res_base, timing, rng, rep);
        }
    }
    host_lease_step(h, Input::Tick, now, cfg, timing, ls_base, rng, rep);
    op_step(h, Input::Tick, now, ls_base, res_base, timing, rng, rep);
    // Holder kill (protection).
    if let Some(t) = h.kill_at {
        if now >= t {
            if h.holder != Holder::None {
                rep.holders_killed += 1;
            }
            h.holder = Holder::None;
            h.kill_at = None;
        }
    }
    // Worker.
    let joined = h.lease.as_ref().is_some_and(|l| l.is_joined());
    if h.op.is_none() {
        if h.holder != Holder::None && now >= h.hold_until && joined {
            let mode = match h.holder {
                Holder::Running(m) => m,
                Holder::None => LeaseMode::Exclusive,
            };
            h.holder = Holder::None; // stops before the release is issued
            start_op(h, OpKind::Release { mode }, spec, timing, rng);
        } else if h.holder == Holder::None && joined && now >= h.next_try {
            let mode = if rng.gen_bool(cfg.shared_ratio) { LeaseMode::Shared } else { LeaseMode::Exclusive };
            let raw = h.handle.disk().read_raw(res_base, 512);
            h.prior_owner = nosplit_lease::format::Leader::decode(&raw).ok().and_then(|l| l.owner).map(|o| o.host_id);
            start_op(h, OpKind::Acquire { mode, expect_lver: None, revalidate: false }, spec, timing, rng);
        }
    }
}

fn start_op(h: &mut SimHost, kind: OpKind, spec: &ResourceSpec, timing: &Timing, rng: &mut ChaCha8Rng) {
    let Some(me) = h.lease.as_ref().and_then(|l| l.owner_id()) else { return };
    h.op_seq += 1;
    h.op = Some((ResourceOp::new(spec.clone(), me, kind, *timing, rng.gen()), kind));
}

#[allow(clippy::too_many_arguments)]
fn host_lease_step(
    h: &mut SimHost,
    input: Input,
    now: MonoTime,
    cfg: &SimConfig,
    timing: &Timing,
    ls_base: u64,
    rng: &mut ChaCha8Rng,
    rep: &mut SimReport,
) {
    let Some(lease) = h.lease.as_mut() else { return };
    for out in lease.step(input, now) {
        match out {
            Output::Io(mut cmd) => {
                cmd.id |= LEASE_TAG;
                h.handle.submit(to_request(&cmd, ls_base));
            }
            Output::Event(e) => match e {
                HostEvent::Joined { .. } => rep.joins += 1,
                HostEvent::RenewalFailed if cfg.protection && h.holder != Holder::None => {
                    // SIGTERM now; the holder exits some time before the
                    // kill deadline.
                    let grace = timing.kill_deadline - timing.renew_fail;
                    let delay = Duration::from_micros(rng.gen_range(0..=grace.as_micros() as u64));
                    h.kill_at = Some(now + delay);
                }
                HostEvent::KillDeadline if cfg.protection => {
                    if h.holder != Holder::None {
                        rep.holders_killed += 1;
                    }
                    h.holder = Holder::None;
                    h.kill_at = None;
                }
                HostEvent::JoinFailed(_) | HostEvent::Lost(_) => {
                    h.rejoin_at = now + timing.renew_interval;
                }
                _ => {}
            },
        }
    }
    if lease.is_done() {
        h.lease = None;
        h.op = None;
        if h.rejoin_at == MonoTime::NEVER {
            h.rejoin_at = now + timing.renew_interval;
        }
        if !cfg.protection {
            // Control: the holder keeps running; the host rejoins anyway.
            h.rejoin_at = now + timing.renew_interval;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn op_step(
    h: &mut SimHost,
    input: Input,
    now: MonoTime,
    ls_base: u64,
    res_base: u64,
    timing: &Timing,
    rng: &mut ChaCha8Rng,
    rep: &mut SimReport,
) {
    let (Some((op, kind)), Some(lease)) = (h.op.as_mut(), h.lease.as_mut()) else { return };
    let kind = *kind;
    for out in op.step(input, now, lease.view_mut()) {
        match out {
            OpOutput::Io(mut cmd) => {
                cmd.id |= OP_TAG | (h.op_seq << 32);
                let base = if cmd.area == Area::Lockspace { ls_base } else { res_base };
                h.handle.submit(to_request(&cmd, base));
            }
            OpOutput::Done(r) => {
                h.op = None;
                h.next_try = now + Duration::from_micros(rng.gen_range(0..=timing.io_timeout.as_micros() as u64));
                if let (Ok(OpResult::Acquired { mode, already: false, .. }), OpKind::Acquire { .. }) = (&r, kind) {
                    h.holder = Holder::Running(*mode);
                    h.hold_until = now + Duration::from_micros(rng.gen_range(0..=(timing.io_timeout * 15).as_micros() as u64));
                    if *mode == LeaseMode::Exclusive && h.prior_owner.is_some_and(|o| o != h.id) {
                        rep.takeovers += 1;
                    }
                    match mode {
                        LeaseMode::Exclusive => rep.exclusive_acquired += 1,
                        LeaseMode::Shared => rep.shared_acquired += 1,
                    }
                }
                return;
            }
        }
    }
}

fn oracle(hosts: &[SimHost], now: MonoTime, rep: &mut SimReport) {
    let running = |m| hosts.iter().filter(|h| h.holder == Holder::Running(m)).map(|h| h.id).collect::<Vec<_>>();
    let (ex, sh) = (running(LeaseMode::Exclusive), running(LeaseMode::Shared));
    if ex.len() > 1 || (!ex.is_empty() && !sh.is_empty()) {
        if rep.violations.last().is_none_or(|v| v.exclusive != ex || v.shared != sh) {
            rep.violations.push(Violation { at: now, exclusive: ex, shared: sh });
        }
    } else if sh.len() > 1 {
        rep.shared_overlaps += 1;
    }
}
