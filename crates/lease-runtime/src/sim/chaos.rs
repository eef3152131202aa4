//! A random workload with seeded faults on a [`Cluster`], checked by an S1
//! oracle.
//!
//! A worker on each host loops acquire (exclusive or shared), hold,
//! release on one resource. Faults come from the seed: storage hangs (with
//! writes that land late), I/O error bursts and power-offs, per host.
//! "Holders" are simulated processes: one starts when an acquire succeeds
//! and stops before its release is issued, when its host powers off, or,
//! with `protection`, when its host lease reports renewal failure (after a
//! random SIGTERM delay, at the latest at the kill deadline). The oracle
//! checks after every step that no two hosts run an exclusive holder and
//! that no exclusive holder runs beside a shared one (S1). With
//! `protection: false` holders are never stopped by renewal failure: the
//! control run, in which the oracle must fire.
//!
//! All hosts share one clock: clock-rate drift is not simulated here (the
//! timing argument covers it; see `docs/timing.md`).

use std::time::Duration;

use nosplit_clock::MonoTime;
use nosplit_lease::host::{HostEvent, JoinMode};
use nosplit_lease::paxos::{LeaseMode, OpKind, OpResult};
use nosplit_storage::sim::Faults;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Cluster;

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
    /// Exclusive acquires of a lease whose leader named another host
    /// (an incarnation that stopped renewing without releasing).
    pub takeovers: u64,
    /// Holders stopped because renewal failed.
    pub holders_killed: u64,
    /// Faults injected: (hangs, error bursts, power-offs).
    pub faults: (u64, u64, u64),
    /// Steps at which two or more shared holders ran together.
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
struct Chaos {
    holder: Holder,
    hold_until: MonoTime,
    kill_at: MonoTime,
    next_try: MonoTime,
    powered: bool,
    power_on_at: MonoTime,
    fault_end: MonoTime,
    rejoin_at: MonoTime,
    next_fault: MonoTime,
    prior_owner: Option<u32>,
    releasing: bool,
}

impl Chaos {
    fn timers(&self) -> [MonoTime; 7] {
        [
            self.hold_until,
            self.kill_at,
            self.next_try,
            self.power_on_at,
            self.fault_end,
            self.rejoin_at,
            self.next_fault,
        ]
    }
}

fn upto(rng: &mut ChaCha8Rng, max: Duration) -> Duration {
    let max = u64::try_from(max.as_micros()).unwrap_or(u64::MAX).max(1);
    Duration::from_micros(rng.gen_range(0..=max))
}

/// Runs one simulation.
pub fn run(cfg: &SimConfig) -> SimReport {
    let mut c = Cluster::new(cfg.seed, cfg.hosts, cfg.io_timeout_ms);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed);
    let mut st: Vec<Chaos> = (0..cfg.hosts)
        .map(|_| Chaos {
            holder: Holder::None,
            hold_until: MonoTime::NEVER,
            kill_at: MonoTime::NEVER,
            next_try: MonoTime::ZERO,
            powered: true,
            power_on_at: MonoTime::NEVER,
            fault_end: MonoTime::NEVER,
            rejoin_at: MonoTime::ZERO,
            next_fault: MonoTime::NEVER,
            prior_owner: None,
            releasing: false,
        })
        .collect();
    if let Some(every) = cfg.fault_every {
        for s in &mut st {
            s.next_fault = MonoTime::ZERO + every / 2 + upto(&mut rng, every);
        }
    }
    let mut rep = SimReport::default();
    let end = MonoTime::ZERO + cfg.duration;
    c.step();
    while c.now() < end {
        for id in 1..=cfg.hosts {
            chaos_host(
                &mut c,
                id,
                &mut st[id as usize - 1],
                cfg,
                &mut rng,
                &mut rep,
            );
        }
        // Start what the workload just created (joins, operations).
        c.step();
        oracle(&st, c.now(), &mut rep);
        rep.steps += 1;
        let now = c.now();
        let mut next = c.next_time();
        for t in st.iter().flat_map(Chaos::timers) {
            if t > now {
                next = next.min(t);
            }
        }
        c.advance_to(next.max(now + Duration::from_micros(50)).min(end));
    }
    rep
}

fn chaos_host(
    c: &mut Cluster,
    id: u32,
    s: &mut Chaos,
    cfg: &SimConfig,
    rng: &mut ChaCha8Rng,
    rep: &mut SimReport,
) {
    let now = c.now();
    let t = c.timing;
    if !s.powered {
        if now < s.power_on_at {
            return;
        }
        s.powered = true;
        s.power_on_at = MonoTime::NEVER;
        c.power_on(id);
        s.rejoin_at = now;
    }
    if now >= s.next_fault {
        let every = cfg.fault_every.unwrap_or(Duration::from_secs(3600));
        s.next_fault = now + every / 2 + upto(rng, every);
        let span = t.io_timeout * rng.gen_range(1..=12);
        let handle = c.node(id).handle.clone();
        match rng.gen_range(0..3) {
            0 => {
                rep.faults.0 += 1;
                handle.set_faults(Faults {
                    late_write_rate: 0.3,
                    late_write_delay: t.io_timeout / 2,
                    ..Faults::hung()
                });
                s.fault_end = now + span;
            }
            1 => {
                rep.faults.1 += 1;
                handle.set_faults(Faults {
                    read_error_rate: 0.5,
                    write_error_rate: 0.5,
                    ..Faults::default()
                });
                s.fault_end = now + span;
            }
            _ => {
                rep.faults.2 += 1;
                c.power_off(id);
                handle.set_faults(Faults::default());
                *s = Chaos {
                    powered: false,
                    power_on_at: now + span,
                    next_fault: s.next_fault,
                    ..fresh()
                };
                return;
            }
        }
    }
    if now >= s.fault_end {
        s.fault_end = MonoTime::NEVER;
        c.node(id).handle.set_faults(Faults::default());
    }
    // (Re)join once the previous incarnation and its holder are gone:
    // local evidence, as a daemon has, so `prior_gone`.
    if c.node(id).lease.is_none()
        && now >= s.rejoin_at
        && (s.holder == Holder::None || !cfg.protection)
    {
        c.join(id, JoinMode::New { prior_gone: true });
        s.rejoin_at = MonoTime::NEVER;
    }
    for (_, e) in std::mem::take(&mut c.node(id).events) {
        match e {
            HostEvent::Joined { .. } => rep.joins += 1,
            HostEvent::RenewalFailed if cfg.protection && s.holder != Holder::None => {
                // SIGTERM: the holder exits some time before the deadline.
                s.kill_at = now + upto(rng, t.kill_deadline - t.renew_fail);
            }
            HostEvent::KillDeadline if cfg.protection => {
                if s.holder != Holder::None {
                    rep.holders_killed += 1;
                }
                s.holder = Holder::None;
                s.kill_at = MonoTime::NEVER;
            }
            _ => {}
        }
    }
    if c.node(id).lease.as_ref().is_some_and(|l| l.is_done()) {
        c.node(id).lease = None;
        c.node(id).op = None;
        s.releasing = false;
        s.rejoin_at = now + t.renew_interval;
    }
    if now >= s.kill_at {
        if s.holder != Holder::None {
            rep.holders_killed += 1;
        }
        s.holder = Holder::None;
        s.kill_at = MonoTime::NEVER;
    }
    for (_, r) in std::mem::take(&mut c.node(id).results) {
        s.next_try = now + upto(rng, t.io_timeout);
        if s.releasing {
            s.releasing = false;
            continue;
        }
        if let Ok(OpResult::Acquired {
            mode,
            already: false,
            ..
        }) = r
        {
            s.holder = Holder::Running(mode);
            s.hold_until = now + upto(rng, t.io_timeout * 15);
            match mode {
                LeaseMode::Exclusive => {
                    rep.exclusive_acquired += 1;
                    if s.prior_owner.is_some_and(|o| o != id) {
                        rep.takeovers += 1;
                    }
                }
                LeaseMode::Shared => rep.shared_acquired += 1,
            }
        }
    }
    // Worker.
    let joined = c.node(id).joined();
    if c.node(id).op.is_some() || !joined {
        return;
    }
    if let Holder::Running(mode) = s.holder {
        if now >= s.hold_until {
            s.holder = Holder::None; // stops before the release is issued
            s.hold_until = MonoTime::NEVER;
            s.releasing = true;
            c.start_op(id, OpKind::Release { mode }, rng.gen());
        }
    } else if now >= s.next_try {
        let mode = if rng.gen_bool(cfg.shared_ratio) {
            LeaseMode::Shared
        } else {
            LeaseMode::Exclusive
        };
        s.prior_owner = c.leader().and_then(|l| l.owner).map(|o| o.host_id);
        c.start_op(
            id,
            OpKind::Acquire {
                mode,
                expect_lver: None,
                revalidate: false,
            },
            rng.gen(),
        );
    }
}

fn fresh() -> Chaos {
    Chaos {
        holder: Holder::None,
        hold_until: MonoTime::NEVER,
        kill_at: MonoTime::NEVER,
        next_try: MonoTime::ZERO,
        powered: true,
        power_on_at: MonoTime::NEVER,
        fault_end: MonoTime::NEVER,
        rejoin_at: MonoTime::NEVER,
        next_fault: MonoTime::NEVER,
        prior_owner: None,
        releasing: false,
    }
}

fn oracle(st: &[Chaos], now: MonoTime, rep: &mut SimReport) {
    let running = |m| {
        st.iter()
            .enumerate()
            .filter(|(_, s)| s.holder == Holder::Running(m))
            .filter_map(|(i, _)| u32::try_from(i + 1).ok())
            .collect::<Vec<_>>()
    };
    let (ex, sh) = (running(LeaseMode::Exclusive), running(LeaseMode::Shared));
    if ex.len() > 1 || (!ex.is_empty() && !sh.is_empty()) {
        if rep
            .violations
            .last()
            .is_none_or(|v| v.exclusive != ex || v.shared != sh)
        {
            rep.violations.push(Violation {
                at: now,
                exclusive: ex,
                shared: sh,
            });
        }
    } else if sh.len() > 1 {
        rep.shared_overlaps += 1;
    }
}
