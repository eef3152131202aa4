//! The host lease (delta lease) state machine: join with collision
//! detection, renew on schedule, scan other hosts' slots, leave.
//!
//! Pure: `(state, input, now) -> outputs`. It never reads a clock and never
//! does I/O; [`HostLease::step`] returns [`IoCmd`]s and [`HostEvent`]s.
//! Deadlines are enforced here on every step, so a completion that never
//! arrives (hung storage) turns into a failure at its deadline anyway.

use std::time::Duration;

use nosplit_clock::MonoTime;

use crate::format::{is_blank, FormatError, HostSlot, LockspaceHeader, Name, OwnerId};
use crate::io::{Area, IdGen, Input, IoCmd, IoDone, IoKind, IoOutcome};
use crate::timing::Timing;
use crate::view::{HostView, Liveness};

/// How to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinMode {
    /// Start a new incarnation (generation + 1). If the slot shows a
    /// previous owner that has not left cleanly, watch it for the host-dead
    /// time first, unless `prior_gone` asserts, from local evidence, that
    /// the slot's previous owner was this host and is gone (no process of it
    /// runs and none of its lease holders do).
    New {
        /// See above.
        prior_gone: bool,
    },
    /// Continue an incarnation this host already owns (a restarted daemon
    /// whose holders still run): same generation, no wait.
    Resume {
        /// The generation to continue.
        generation: u64,
    },
}

/// Static parameters of one host lease.
#[derive(Debug, Clone)]
pub struct HostLeaseConfig {
    /// Expected lockspace name.
    pub lockspace: Name,
    /// Our host id.
    pub host_id: u32,
    /// Our host name, written in the slot.
    pub host_name: Name,
    /// The device's sector size.
    pub sector_size: u32,
    /// How to join.
    pub mode: JoinMode,
    /// Deadline for the first read, before the stored io_timeout is known.
    pub bootstrap_timeout: Duration,
}

/// Why joining failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The header is unreadable or invalid.
    #[error("lockspace header: {0}")]
    Header(FormatError),
    /// The header names another lockspace.
    #[error("storage holds lockspace {found}, not {expected}")]
    WrongLockspace {
        /// On disk.
        found: Name,
        /// Asked for.
        expected: Name,
    },
    /// The lockspace was made for another sector size.
    #[error("lockspace uses {disk}-byte sectors but the device has {device}-byte sectors")]
    SectorMismatch {
        /// On disk.
        disk: u32,
        /// Device.
        device: u32,
    },
    /// Host id outside `1..=max_hosts`.
    #[error("host id {host_id} is outside 1..={max_hosts}")]
    HostId {
        /// Asked for.
        host_id: u32,
        /// Lockspace limit.
        max_hosts: u32,
    },
    /// Our slot is corrupted.
    #[error("host slot: {0}")]
    Slot(FormatError),
    /// Another live host renews this host id.
    #[error("host id {host_id} is in use by {owner} (its lease is still being renewed)")]
    InUse {
        /// The id.
        host_id: u32,
        /// The slot's host name.
        owner: String,
    },
    /// Another host wrote our slot while we joined.
    #[error("host id {host_id} collision: {owner} joined with the same id at the same time")]
    Collision {
        /// The id.
        host_id: u32,
        /// Who overwrote us.
        owner: String,
    },
    /// `Resume` asked for an incarnation the slot does not show.
    #[error("cannot resume generation {asked}: slot shows {found}")]
    ResumeMismatch {
        /// Asked for.
        asked: u64,
        /// On disk (owner name and generation).
        found: String,
    },
    /// I/O failed.
    #[error("I/O failed while joining: {0}")]
    Io(String),
}

/// Why a joined host lost its lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LostReason {
    /// Someone else wrote our slot.
    #[error("host slot overwritten by {0}")]
    Overwritten(String),
    /// Our slot no longer decodes.
    #[error("host slot corrupted: {0}")]
    Corrupted(FormatError),
    /// No renewal succeeded before the kill deadline. Other hosts may take
    /// this incarnation's leases once they see it dead; it must never use
    /// them again. Rejoin (a new generation) once every holder is gone.
    #[error("renewals failed past the kill deadline: this incarnation's leases are void")]
    Expired,
}

/// What the owner of the host lease is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// Joined; leases may now be acquired as `(host_id, generation)`.
    Joined {
        /// Our incarnation.
        generation: u64,
    },
    /// Join failed; the machine is finished.
    JoinFailed(JoinError),
    /// A renewal write completed.
    RenewalOk {
        /// Write latency.
        latency: Duration,
    },
    /// A renewal attempt failed (it will be retried).
    RenewalError(String),
    /// No successful renewal for the warning time.
    RenewalWarning,
    /// No successful renewal for the renewal-fail time: freeze and SIGTERM
    /// every holder now.
    RenewalFailed,
    /// SIGKILL every holder still alive.
    KillHolders,
    /// Every holder must be gone now; if one is not, the watchdog must fire.
    /// Always followed by `Lost(Expired)`.
    KillDeadline,
    /// A renewal succeeded again after a warning or failure.
    RenewalRecovered,
    /// The lease is lost for good: stop every holder at once.
    Lost(LostReason),
    /// Another host's liveness changed as seen from here.
    HostChanged {
        /// The host.
        host_id: u32,
        /// Before (`None`: not seen before).
        from: Option<Liveness>,
        /// Now.
        to: Liveness,
    },
    /// Left cleanly.
    Left,
}

/// Output of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Perform this I/O.
    Io(IoCmd),
    /// Report this.
    Event(HostEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Fail,
    Kill,
    Deadline,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    id: u64,
    issued: MonoTime,
    deadline: MonoTime,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Start,
    ReadHeader(Pending),
    ReadSlots(Pending),
    Watching {
        read: Option<Pending>,
        next: MonoTime,
    },
    FirstWrite(Pending),
    Live,
    Leaving,
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Scan {
    p: Pending,
    hi: u32,
    /// Write the renewal when the scan has verified our slot.
    then_renew: bool,
}

/// One host's lease in one lockspace.
#[derive(Debug, Clone)]
pub struct HostLease {
    cfg: HostLeaseConfig,
    ids: IdGen,
    phase: Phase,
    header: Option<LockspaceHeader>,
    timing: Option<Timing>,
    view: HostView,
    generation: u64,
    seq: u64,
    renew: Option<Pending>,
    scan: Option<Scan>,
    leave: Option<Pending>,
    last_ok: Option<MonoTime>,
    next_renew: MonoTime,
    scans: u32,
    confirm_at: Option<MonoTime>,
    level: Level,
    leave_requested: bool,
}

const FULL_SCAN_EVERY: u32 = 8;

impl HostLease {
    /// A machine that starts joining on its first step.
    pub fn new(cfg: HostLeaseConfig) -> HostLease {
        HostLease {
            cfg,
            ids: IdGen::default(),
            phase: Phase::Start,
            header: None,
            timing: None,
            view: HostView::default(),
            generation: 0,
            seq: 0,
            renew: None,
            scan: None,
            leave: None,
            last_ok: None,
            next_renew: MonoTime::ZERO,
            scans: 0,
            confirm_at: None,
            level: Level::Ok,
            leave_requested: false,
        }
    }

    /// Our identity as a lease owner, once the first write is done.
    pub fn owner_id(&self) -> Option<OwnerId> {
        (self.generation > 0 && matches!(self.phase, Phase::Live | Phase::Leaving)).then_some(
            OwnerId {
                host_id: self.cfg.host_id,
                generation: self.generation,
            },
        )
    }
    /// Joined and confirmed (collision wait over).
    pub fn is_joined(&self) -> bool {
        matches!(self.phase, Phase::Live) && self.confirm_at.is_none()
    }
    /// Finished (left or failed).
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }
    /// The header, once read.
    pub fn header(&self) -> Option<&LockspaceHeader> {
        self.header.as_ref()
    }
    /// The timing, once the header is read.
    pub fn timing(&self) -> Option<&Timing> {
        self.timing.as_ref()
    }
    /// What this host has seen of the others.
    pub fn view(&self) -> &HostView {
        &self.view
    }
    /// Mutable view, for resource operations that read slots themselves.
    pub fn view_mut(&mut self) -> &mut HostView {
        &mut self.view
    }
    /// The config.
    pub fn config(&self) -> &HostLeaseConfig {
        &self.cfg
    }
    /// Issue time of the last successful renewal write.
    pub fn last_renewal(&self) -> Option<MonoTime> {
        self.last_ok
    }
    /// Until when holders may run: last successful renewal + kill deadline.
    /// A watchdog may be petted only before this.
    pub fn expiry(&self) -> Option<MonoTime> {
        Some(self.last_ok? + self.timing?.kill_deadline)
    }
    /// The earliest time the machine wants a `Tick`.
    pub fn next_wakeup(&self) -> MonoTime {
        let mut t = MonoTime::NEVER;
        let mut at = |x: MonoTime| t = t.min(x);
        match self.phase {
            Phase::Start => at(MonoTime::ZERO),
            Phase::ReadHeader(p) | Phase::ReadSlots(p) | Phase::FirstWrite(p) => at(p.deadline),
            Phase::Watching { read: Some(p), .. } => at(p.deadline),
            Phase::Watching { read: None, next } => at(next),
            Phase::Live | Phase::Leaving => {
                for p in [self.renew, self.scan.map(|s| s.p), self.leave]
                    .into_iter()
                    .flatten()
                {
                    at(p.deadline);
                }
                if !self.leave_requested && self.renew.is_none() && self.scan.is_none() {
                    at(self.next_renew);
                    if let Some(c) = self.confirm_at {
                        at(c);
                    }
                }
                if let (Some(ok), Some(tm)) = (self.last_ok, self.timing) {
                    for (lvl, d) in self.levels(&tm) {
                        if self.level < lvl {
                            at(ok + d);
                        }
                    }
                }
            }
            Phase::Done => {}
        }
        t
    }

    /// Asks to leave cleanly; holders must already be gone and every
    /// resource lease released. Emits `Left` when the slot is written.
    pub fn request_leave(&mut self) {
        self.leave_requested = true;
    }

    /// Advances the machine.
    pub fn step(&mut self, input: Input, now: MonoTime) -> Vec<Output> {
        let mut out = Vec::new();
        if let Input::Done(d) = input {
            self.on_done(d, now, &mut out);
        }
        self.on_time(now, &mut out);
        out
    }

    fn levels(&self, tm: &Timing) -> [(Level, Duration); 4] {
        [
            (Level::Warn, tm.renew_warn),
            (Level::Fail, tm.renew_fail),
            (Level::Kill, tm.sigkill_after),
            (Level::Deadline, tm.kill_deadline),
        ]
    }

    fn sector(&self) -> u64 {
        u64::from(self.cfg.sector_size)
    }

    fn io_timeout(&self) -> Duration {
        self.timing
            .map(|t| t.io_timeout)
            .unwrap_or(self.cfg.bootstrap_timeout)
    }

    fn issue(
        &mut self,
        out: &mut Vec<Output>,
        now: MonoTime,
        offset: u64,
        kind: IoKind,
    ) -> Pending {
        let p = Pending {
            id: self.ids.next(),
            issued: now,
            deadline: now + self.io_timeout(),
        };
        out.push(Output::Io(IoCmd {
            id: p.id,
            area: Area::Lockspace,
            offset,
            kind,
            deadline: p.deadline,
        }));
        p
    }

    fn fail_join(&mut self, out: &mut Vec<Output>, e: JoinError) {
        self.phase = Phase::Done;
        out.push(Output::Event(HostEvent::JoinFailed(e)));
    }

    fn my_slot(&self, now: MonoTime, released: bool) -> HostSlot {
        let h = self.header.as_ref();
        HostSlot {
            host_id: self.cfg.host_id,
            generation: self.generation,
            seq: self.seq,
            owner_time_ms: now.as_millis(),
            io_timeout_ms: h.map(|h| h.io_timeout_ms).unwrap_or(0),
            released,
            ls_uuid: h.map(|h| h.uuid).unwrap_or([0; 16]),
            host_name: self.cfg.host_name.clone(),
        }
    }

    fn write_slot(&mut self, out: &mut Vec<Output>, now: MonoTime, released: bool) -> Pending {
        self.seq += 1;
        let mut buf = vec![0u8; self.cfg.sector_size as usize];
        self.my_slot(now, released).encode(&mut buf);
        let off = self.sector() * u64::from(self.cfg.host_id);
        self.issue(out, now, off, IoKind::Write(buf))
    }

    fn on_time(&mut self, now: MonoTime, out: &mut Vec<Output>) {
        let timed_out = |p: &Pending| now >= p.deadline;
        let fail = |id| IoDone {
            id,
            outcome: IoOutcome::Failed("I/O deadline passed".into()),
        };
        // Deadlines first: a missing completion is a failure.
        let expired: Vec<u64> = match self.phase {
            Phase::ReadHeader(p) | Phase::ReadSlots(p) | Phase::FirstWrite(p) if timed_out(&p) => {
                vec![p.id]
            }
            Phase::Watching { read: Some(p), .. } if timed_out(&p) => vec![p.id],
            Phase::Live | Phase::Leaving => [self.renew, self.scan.map(|s| s.p), self.leave]
                .into_iter()
                .flatten()
                .filter(timed_out)
                .map(|p| p.id)
                .collect(),
            _ => vec![],
        };
        for id in expired {
            self.on_done(fail(id), now, out);
        }
        match self.phase {
            Phase::Start => {
                let p = self.issue(out, now, 0, IoKind::Read(self.cfg.sector_size as usize));
                self.phase = Phase::ReadHeader(p);
            }
            Phase::Watching { read: None, next } if now >= next => {
                let off = self.sector() * u64::from(self.cfg.host_id);
                let p = self.issue(out, now, off, IoKind::Read(self.cfg.sector_size as usize));
                self.phase = Phase::Watching {
                    read: Some(p),
                    next,
                };
            }
            Phase::Live | Phase::Leaving => self.live_timers(now, out),
            _ => {}
        }
    }

    fn live_timers(&mut self, now: MonoTime, out: &mut Vec<Output>) {
        let Some(tm) = self.timing else { return };
        if self.leave_requested {
            if self.renew.is_none() && self.leave.is_none() && !matches!(self.phase, Phase::Leaving)
            {
                let p = self.write_slot(out, now, true);
                self.leave = Some(p);
                self.phase = Phase::Leaving;
            }
        } else if self.renew.is_none() && self.scan.is_none() {
            // A renewal is read-verify-write: scan (which checks that our
            // slot is still ours), then write. The join confirmation is a
            // scan too.
            let renew_due = now >= self.next_renew;
            if renew_due || self.confirm_at.is_some_and(|c| now >= c) {
                self.start_scan(now, out, renew_due);
                if renew_due {
                    self.next_renew = now + tm.renew_interval;
                }
            }
        }
        if let Some(ok) = self.last_ok {
            for (lvl, d) in self.levels(&tm) {
                if self.level < lvl && now >= ok + d {
                    self.level = lvl;
                    out.push(Output::Event(match lvl {
                        Level::Warn => HostEvent::RenewalWarning,
                        Level::Fail => HostEvent::RenewalFailed,
                        Level::Kill => HostEvent::KillHolders,
                        _ => HostEvent::KillDeadline,
                    }));
                }
            }
            if self.level == Level::Deadline {
                self.phase = Phase::Done;
                out.push(Output::Event(HostEvent::Lost(LostReason::Expired)));
            }
        }
    }

    fn start_scan(&mut self, now: MonoTime, out: &mut Vec<Output>, then_renew: bool) {
        let Some(h) = &self.header else { return };
        let max = h.geometry.max_hosts();
        let full = self.scans.is_multiple_of(FULL_SCAN_EVERY);
        let hi = if full {
            max
        } else {
            self.view.highest_in_use().max(self.cfg.host_id).min(max)
        };
        let len = hi as usize * self.cfg.sector_size as usize;
        let p = self.issue(out, now, self.sector(), IoKind::Read(len));
        self.scans = self.scans.wrapping_add(1);
        self.scan = Some(Scan { p, hi, then_renew });
    }

    fn write_renewal(&mut self, now: MonoTime, out: &mut Vec<Output>) {
        let p = self.write_slot(out, now, false);
        self.renew = Some(p);
    }

    fn on_done(&mut self, d: IoDone, now: MonoTime, out: &mut Vec<Output>) {
        match self.phase {
            Phase::ReadHeader(p) if p.id == d.id => self.header_done(d.outcome, now, out),
            Phase::ReadSlots(p) if p.id == d.id => self.slots_done(d.outcome, p, now, out),
            Phase::Watching {
                read: Some(p),
                next,
            } if p.id == d.id => self.watch_done(d.outcome, p, next, now, out),
            Phase::FirstWrite(p) if p.id == d.id => self.first_write_done(d.outcome, p, out),
            Phase::Live | Phase::Leaving => {
                if self.renew.is_some_and(|p| p.id == d.id) {
                    self.renew_done(d.outcome, now, out);
                } else if self.scan.is_some_and(|s| s.p.id == d.id) {
                    self.scan_done(d.outcome, now, out);
                } else if self.leave.is_some_and(|p| p.id == d.id) {
                    self.leave = None;
                    match d.outcome {
                        IoOutcome::Written => {
                            self.phase = Phase::Done;
                            out.push(Output::Event(HostEvent::Left));
                        }
                        _ => self.phase = Phase::Live, // retried by live_timers
                    }
                }
            }
            _ => {} // late completion of an abandoned I/O
        }
    }

    fn header_done(&mut self, o: IoOutcome, now: MonoTime, out: &mut Vec<Output>) {
        let buf = match o {
            IoOutcome::Read(b) => b,
            IoOutcome::Written => {
                return self.fail_join(out, JoinError::Io("bad completion".into()))
            }
            IoOutcome::Failed(e) => return self.fail_join(out, JoinError::Io(e)),
        };
        let h = match LockspaceHeader::decode(&buf) {
            Ok(h) => h,
            Err(e) => return self.fail_join(out, JoinError::Header(e)),
        };
        if h.name != self.cfg.lockspace {
            let e = JoinError::WrongLockspace {
                found: h.name,
                expected: self.cfg.lockspace.clone(),
            };
            return self.fail_join(out, e);
        }
        if h.geometry.sector_size() != self.cfg.sector_size {
            let e = JoinError::SectorMismatch {
                disk: h.geometry.sector_size(),
                device: self.cfg.sector_size,
            };
            return self.fail_join(out, e);
        }
        if !h.geometry.valid_host(self.cfg.host_id) {
            let e = JoinError::HostId {
                host_id: self.cfg.host_id,
                max_hosts: h.geometry.max_hosts(),
            };
            return self.fail_join(out, e);
        }
        self.timing = Some(Timing::from_io_timeout_ms(h.io_timeout_ms));
        let len = h.geometry.max_hosts() as usize * self.cfg.sector_size as usize;
        self.header = Some(h);
        let p = self.issue(out, now, self.sector(), IoKind::Read(len));
        self.phase = Phase::ReadSlots(p);
    }

    /// Decodes slots `1..=hi` from a scan buffer into the view; returns our
    /// own slot's decode result.
    fn absorb(
        &mut self,
        buf: &[u8],
        hi: u32,
        p: Pending,
        now: MonoTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<HostSlot>, FormatError> {
        let s = self.cfg.sector_size as usize;
        let mut mine = Ok(None);
        let tm = self.timing;
        for (i, sector) in buf.chunks_exact(s).take(hi as usize).enumerate() {
            let host = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let decoded = if is_blank(sector) {
                Ok(None)
            } else {
                HostSlot::decode(sector, host).map(Some)
            };
            if host == self.cfg.host_id {
                mine = decoded.clone();
            }
            // A corrupted foreign slot is left out of the view: it can then
            // never look DEAD (nor LIVE) to us.
            let Ok(slot) = decoded else { continue };
            let before = tm.and_then(|t| self.view.liveness(host, &t));
            self.view.observe(host, slot, p.issued, now);
            if host != self.cfg.host_id {
                if let Some(after) = tm.and_then(|t| self.view.liveness(host, &t)) {
                    if before != Some(after) {
                        out.push(Output::Event(HostEvent::HostChanged {
                            host_id: host,
                            from: before,
                            to: after,
                        }));
                    }
                }
            }
        }
        mine
    }

    fn slots_done(&mut self, o: IoOutcome, p: Pending, now: MonoTime, out: &mut Vec<Output>) {
        let buf = match o {
            IoOutcome::Read(b) => b,
            IoOutcome::Written => {
                return self.fail_join(out, JoinError::Io("bad completion".into()))
            }
            IoOutcome::Failed(e) => return self.fail_join(out, JoinError::Io(e)),
        };
        let hi = self
            .header
            .as_ref()
            .map(|h| h.geometry.max_hosts())
            .unwrap_or(0);
        let mine = match self.absorb(&buf, hi, p, now, out) {
            Ok(m) => m,
            Err(e) => return self.fail_join(out, JoinError::Slot(e)),
        };
        let same_host = mine
            .as_ref()
            .is_some_and(|m| m.host_name == self.cfg.host_name);
        let free = mine.as_ref().is_none_or(|m| m.released);
        let prev_gen = mine.as_ref().map(|m| m.generation).unwrap_or(0);
        self.seq = mine.as_ref().map(|m| m.seq).unwrap_or(0);
        match self.cfg.mode {
            JoinMode::Resume { generation } => {
                let ok = same_host && !free && prev_gen == generation;
                if !ok {
                    let found = mine
                        .map(|m| {
                            format!(
                                "{} gen {}{}",
                                m.host_name,
                                m.generation,
                                if m.released { " (released)" } else { "" }
                            )
                        })
                        .unwrap_or_else(|| "a blank slot".into());
                    return self.fail_join(
                        out,
                        JoinError::ResumeMismatch {
                            asked: generation,
                            found,
                        },
                    );
                }
                self.generation = generation;
                self.first_write(now, out);
            }
            JoinMode::New { prior_gone } => {
                self.generation = prev_gen + 1;
                if free || (same_host && prior_gone) {
                    self.first_write(now, out);
                } else {
                    self.phase = Phase::Watching {
                        read: None,
                        next: now,
                    };
                    self.on_time(now, out);
                }
            }
        }
    }

    fn watch_done(
        &mut self,
        o: IoOutcome,
        p: Pending,
        _next: MonoTime,
        now: MonoTime,
        out: &mut Vec<Output>,
    ) {
        let (Some(tm), IoOutcome::Read(buf)) = (self.timing, o) else {
            return self.fail_join(out, JoinError::Io("reading host slot while waiting".into()));
        };
        let host = self.cfg.host_id;
        let before = self.view.get(host).cloned();
        let slot = if is_blank(&buf) {
            None
        } else {
            match HostSlot::decode(&buf, host) {
                Ok(s) => Some(s),
                Err(e) => return self.fail_join(out, JoinError::Slot(e)),
            }
        };
        if self.view.observe(host, slot.clone(), p.issued, now) {
            // It changed: a live host renews it, unless it just left.
            if slot.as_ref().is_none_or(|s| s.released) {
                self.seq = slot.map(|s| s.seq).unwrap_or(0);
                return self.first_write(now, out);
            }
            let owner = before
                .and_then(|b| b.slot)
                .map(|s| s.host_name.to_string())
                .unwrap_or_else(|| "an unknown host".into());
            return self.fail_join(
                out,
                JoinError::InUse {
                    host_id: host,
                    owner,
                },
            );
        }
        if self.view.liveness(host, &tm) == Some(Liveness::Dead) {
            return self.first_write(now, out);
        }
        self.phase = Phase::Watching {
            read: None,
            next: now + tm.renew_interval,
        };
    }

    fn first_write(&mut self, now: MonoTime, out: &mut Vec<Output>) {
        let p = self.write_slot(out, now, false);
        self.phase = Phase::FirstWrite(p);
    }

    fn first_write_done(&mut self, o: IoOutcome, p: Pending, out: &mut Vec<Output>) {
        if let IoOutcome::Failed(e) = o {
            return self.fail_join(out, JoinError::Io(e));
        }
        let Some(tm) = self.timing else { return };
        self.phase = Phase::Live;
        self.last_ok = Some(p.issued);
        self.next_renew = p.issued + tm.renew_interval;
        match self.cfg.mode {
            JoinMode::Resume { generation } => {
                out.push(Output::Event(HostEvent::Joined { generation }));
            }
            JoinMode::New { .. } => {
                // Confirm with the first scan issued after the wait.
                self.confirm_at = Some(p.issued + tm.join_wait);
            }
        }
    }

    fn renew_done(&mut self, o: IoOutcome, now: MonoTime, out: &mut Vec<Output>) {
        let Some(p) = self.renew.take() else { return };
        match o {
            IoOutcome::Written => {
                self.last_ok = Some(self.last_ok.map_or(p.issued, |t| t.max(p.issued)));
                out.push(Output::Event(HostEvent::RenewalOk {
                    latency: now - p.issued,
                }));
                if self.level != Level::Ok {
                    self.level = Level::Ok;
                    out.push(Output::Event(HostEvent::RenewalRecovered));
                }
            }
            IoOutcome::Read(_) | IoOutcome::Failed(_) => {
                let why = match o {
                    IoOutcome::Failed(e) => e,
                    _ => "bad completion".into(),
                };
                out.push(Output::Event(HostEvent::RenewalError(why)));
                if let Some(tm) = self.timing {
                    // Retry soon, but not in a hot loop on instant errors.
                    self.next_renew = now + tm.renew_interval / 4;
                }
            }
        }
    }

    fn scan_done(&mut self, o: IoOutcome, now: MonoTime, out: &mut Vec<Output>) {
        let Some(scan) = self.scan.take() else { return };
        let IoOutcome::Read(buf) = o else {
            // Unverified, but a renewal is what keeps holders alive: a failed
            // read must not also stop a write that may still work.
            if scan.then_renew {
                self.write_renewal(now, out);
            }
            return;
        };
        let mine = self.absorb(&buf, scan.hi, scan.p, now, out);
        let lost = match mine {
            Ok(Some(s))
                if s.generation == self.generation
                    && s.host_name == self.cfg.host_name
                    && !s.released =>
            {
                None
            }
            // Our own release is in flight or done: not a loss.
            Ok(Some(s))
                if s.released && s.generation == self.generation && self.leave_requested =>
            {
                None
            }
            Ok(Some(s)) => Some(LostReason::Overwritten(format!(
                "{} gen {}",
                s.host_name, s.generation
            ))),
            Ok(None) => Some(LostReason::Overwritten(
                "a blank sector (lockspace re-initialised?)".into(),
            )),
            Err(e) => Some(LostReason::Corrupted(e)),
        };
        if let Some(reason) = lost {
            let unconfirmed = self.confirm_at.is_some();
            self.phase = Phase::Done;
            let e = match (&reason, unconfirmed) {
                (LostReason::Overwritten(who), true) => {
                    HostEvent::JoinFailed(JoinError::Collision {
                        host_id: self.cfg.host_id,
                        owner: who.clone(),
                    })
                }
                _ => HostEvent::Lost(reason),
            };
            out.push(Output::Event(e));
            return;
        }
        if let Some(at) = self.confirm_at {
            if scan.p.issued >= at {
                self.confirm_at = None;
                out.push(Output::Event(HostEvent::Joined {
                    generation: self.generation,
                }));
            }
        }
        if scan.then_renew && !self.leave_requested {
            self.write_renewal(now, out);
        }
    }
}
